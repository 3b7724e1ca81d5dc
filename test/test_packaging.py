"""Packaging: README's two commands, .ci/run, package.xml and setup.py agree; the README and docs/ links resolve."""

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

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
    for d in (
        "rclpy",
        "sensor_msgs",
        "geometry_msgs",
        "nav_msgs",
        "std_msgs",
        "std_srvs",
        "python3-numpy",
        "python3-scipy",
        "python3-yaml",
    ):
        assert d in deps, d
    assert "python3-pytest" in [e.text for e in root.findall("test_depend")]
    assert (ROOT / "resource" / "prism_ros").is_file()
    # setup.py and package.xml carry the same version
    assert root.findtext("version") in (ROOT / "setup.py").read_text()


def test_setup_py_entry_points_and_extras():
    src = (ROOT / "setup.py").read_text()
    tree = ast.parse(src)
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    for ep in (
        "prism-ros = prism_ros.cli:main",
        "prism_node = prism_ros.ros.node:main",
        "prism_player = prism_ros.ros.player:main",
    ):
        assert ep in strings, ep
    assert "ros-rclpy" in strings and "ros-rmw-fastrtps-cpp" in strings
    assert "share/ament_index/resource_index/packages" in strings
    cfg = (ROOT / "setup.cfg").read_text()
    assert "script_dir=$base/lib/prism_ros" in cfg and "install_scripts=$base/lib/prism_ros" in cfg


_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(md: Path) -> set:
    """GitHub's heading anchors of a Markdown file (code blocks left out)."""
    text = _FENCE.sub("", md.read_text(encoding="utf-8"))
    heads = re.findall(r"^#{1,6}\s+(.*?)\s*$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def _md_files():
    return [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("md", _md_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(md):
    """Every relative link of the README and docs/ names an existing file (and heading, for #anchors)."""
    text = _FENCE.sub("", md.read_text(encoding="utf-8"))
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(target)
    assert not broken, f"{md.relative_to(ROOT)}: broken links {broken}"


def test_readme_is_a_short_guide_without_work_history():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 350, "README.md is the user guide; measurements and notes go to docs/"
    assert not re.search(r"\b(stop|round|issue)\s+\d", text, re.I), "no work-item numbers in the README"


def test_layout_doc_names_every_module():
    """docs/layout.md lists every module of the package (it is the map a newcomer reads first)."""
    text = (ROOT / "docs" / "layout.md").read_text(encoding="utf-8")
    names = {p.stem if p.name != "__init__.py" else p.parent.name for p in (ROOT / "prism_ros").rglob("*.py")}
    missing = sorted(n for n in names if not re.search(rf"\b{re.escape(n)}\b", text))
    assert not missing, f"docs/layout.md does not name: {missing}"
