"""prism_ros.core (and the offline tools) must not import ROS."""

import os
import re
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
ROS_IMPORT = re.compile(
    r"^\s*(?:from|import)\s+(rclpy|rcl_interfaces|rosidl\w*|rmw\w*|ament_index_python|tf2\w*|message_filters|\w+_msgs|\w+_srvs)\b",
    re.MULTILINE,
)

_PROBE = r"""
import importlib, pkgutil, sys
import prism_ros.core as core
mods = ['prism_ros.core'] + [m.name for m in pkgutil.walk_packages(core.__path__, 'prism_ros.core.')]
for m in mods:
    importlib.import_module(m)
for extra in sys.argv[1:]:
    importlib.import_module(extra)
bad = sorted(n for n in sys.modules
             if n.split('.')[0] in ('rclpy', 'rcl_interfaces', 'rmw_implementation', 'ament_index_python',
                                    'message_filters')
             or n.split('.')[0].endswith(('_msgs', '_srvs')) or n.startswith('rosidl'))
print('MODULES', len(mods))
print('BAD', ','.join(bad))
"""


def _probe(*extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run(
        [sys.executable, "-c", _PROBE, *extra], cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    out = dict(line.split(" ", 1) if " " in line else (line, "") for line in r.stdout.splitlines())
    return int(out["MODULES"]), [b for b in out["BAD"].strip().split(",") if b]


def test_importing_all_of_core_loads_no_ros_module():
    n, bad = _probe()
    assert n >= 5, "expected prism_ros.core to have several submodules"
    assert not bad, f"prism_ros.core pulled in ROS modules: {bad}"


def test_offline_tools_and_cli_load_no_ros_module():
    mods = [
        "prism_ros.cli",
        "prism_ros.config",
        "prism_ros.eval.metrics",
        "prism_ros.tools.export",
        "prism_ros.eval.report",
        "prism_ros.tools.runner",
    ]
    if (ROOT / "prism_ros" / "datasets" / "__init__.py").is_file():
        mods.append("prism_ros.datasets")
    _, bad = _probe(*mods)
    assert not bad, f"offline tools pulled in ROS modules: {bad}"


def test_static_no_ros_imports_in_core():
    files = sorted((ROOT / "prism_ros" / "core").rglob("*.py"))
    assert files
    offenders = []
    for f in files:
        for m in ROS_IMPORT.finditer(f.read_text(encoding="utf-8")):
            offenders.append(f"{f.relative_to(ROOT)}: {m.group(0).strip()}")
    assert not offenders, "ROS imports in prism_ros/core:\n" + "\n".join(offenders)
