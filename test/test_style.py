"""Style: the package, tests and launch files are formatted by ruff and pass its lint (ruff.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["prism_ros", "test", "launch", "setup.py"]


def _ruff():
    exe = Path(sys.executable).parent / "ruff"
    if exe.is_file():
        return str(exe)
    found = shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed: pip install -e '.[test]' installs it")
    return found


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(args):
    r = subprocess.run([_ruff(), *args, *TARGETS], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (
        f"ruff {' '.join(args)} found problems (ruff format / ruff check --fix):\n{r.stdout}{r.stderr}"
    )
