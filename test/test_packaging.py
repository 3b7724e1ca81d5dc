"""Packaging: README's two commands, .ci/run, package.xml and setup.py agree."""
import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    lines = text.splitlines()
    assert lines[0].startswith("# "), "README must open with its title"
    m = re.search(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert m, "README has no code block"
    before = text[: m.start()].strip().splitlines()
    assert len(before) <= 2, "only the title (and a tagline) may come before the two commands"
    cmds = [c for c in m.group(1).strip().splitlines() if c.strip()]
    return cmds


def test_readme_opens_with_exactly_two_commands():
    cmds = _readme_commands()
    assert len(cmds) == 2
    setup, tests = cmds
    assert "python3 -m venv .venv" in setup and "pip install" in setup and "prism-ros demo" in setup
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command():
    _, tests = _readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in ci
    assert tests.strip() in ci.splitlines(), ".ci/run must run the README's test command verbatim"
    assert "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST" in ci
    assert re.search(r'"\$rc" -eq 5', ci), ".ci/run must turn pytest's 'no tests' (5) into a failure"


def test_package_xml():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "prism_ros"
    assert root.find("export").findtext("build_type") == "ament_python"
    deps = [e.text for e in root.findall("exec_depend")]
    assert len(deps) == len(set(deps)), "one exec_depend per dependency"
    for d in ("rclpy", "sensor_msgs", "geometry_msgs", "nav_msgs", "std_msgs", "std_srvs", "python3-numpy", "python3-scipy", "python3-yaml"):
        assert d in deps, d
    assert "python3-pytest" in [e.text for e in root.findall("test_depend")]
    assert (ROOT / "resource" / "prism_ros").is_file()
    # setup.py and package.xml carry the same version
    assert root.findtext("version") in (ROOT / "setup.py").read_text()


def test_setup_py_entry_points_and_extras():
    src = (ROOT / "setup.py").read_text()
    tree = ast.parse(src)
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    for ep in ("prism-ros = prism_ros.cli:main", "prism_node = prism_ros.ros.node:main", "prism_player = prism_ros.ros.player:main"):
        assert ep in strings, ep
    assert "ros-rclpy" in strings and "ros-rmw-fastrtps-cpp" in strings
    assert "share/ament_index/resource_index/packages" in strings
    cfg = (ROOT / "setup.cfg").read_text()
    assert "script_dir=$base/lib/prism_ros" in cfg and "install_scripts=$base/lib/prism_ros" in cfg
