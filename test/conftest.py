# --- shared by the CLI / end-to-end tests (tools helper) -------------------------------
import os as _os
import subprocess as _subprocess
import sys as _sys
from pathlib import Path as _Path

import pytest as _pytest

PRISM_ROOT = _Path(__file__).resolve().parents[1]


def prism_data_dir() -> _Path:
    """Real data: $PRISM_DATA_DIR, else ../shared/data next to the repository."""
    env = _os.environ.get("PRISM_DATA_DIR")
    return _Path(env) if env else PRISM_ROOT.parent / "shared" / "data"


#: The fixtures that hand out ../shared/data (each skips its test when the data is absent).
REALDATA_FIXTURES = {"data_dir", "redkitchen_dir", "euroc_micro_dir", "euroc_mh01_dir"}


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: end-to-end acceptance run on real or synthetic data (long; runs in CI)")
    config.addinivalue_line("markers", "ros: needs the ROS 2 Python packages (rclpy or ROS messages)")
    config.addinivalue_line("markers", "realdata: reads ../shared/data (skipped when it is absent)")
    config.addinivalue_line("markers", "slow: takes seconds or more (a whole run, a replay, a soak)")


def pytest_collection_modifyitems(config, items):
    """A test that uses one of the real-data fixtures (directly or through another) is ``realdata``;
    ``e2e`` tests are ``slow``."""
    for item in items:
        if REALDATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(_pytest.mark.realdata)
        if item.get_closest_marker("e2e") is not None:
            item.add_marker(_pytest.mark.slow)


@_pytest.fixture(scope="session")
def redkitchen_dir() -> _Path:
    p = prism_data_dir() / "7scenes_redkitchen"
    if not (p / "camera-intrinsics.txt").is_file() or not (p / "frame-000000.depth.png").is_file():
        _pytest.skip(f"real 7-Scenes data absent at {p} (put shared/data next to the repository or set PRISM_DATA_DIR)")
    return p


@_pytest.fixture(scope="session")
def euroc_micro_dir() -> _Path:
    p = prism_data_dir() / "euroc_V1_01_easy_micro"
    if not (p / "mav0" / "cam0" / "data.csv").is_file() or not (p / "mav0" / "imu0" / "data.csv").is_file():
        _pytest.skip(
            f"real EuRoC micro data absent at {p} (put shared/data next to the repository or set PRISM_DATA_DIR)"
        )
    return p


@_pytest.fixture(scope="session")
def euroc_mh01_dir() -> _Path:
    p = prism_data_dir() / "euroc_MH01_easy_slice"
    if not (p / "mav0" / "cam0" / "data.csv").is_file() or not (p / "groundtruth").is_dir():
        _pytest.skip(
            f"real EuRoC MH_01 slice absent at {p} (put shared/data next to the repository or set PRISM_DATA_DIR)"
        )
    return p


@_pytest.fixture
def redkitchen_copy(redkitchen_dir, tmp_path) -> _Path:
    """A writable 7-Scenes folder with the first 6 redkitchen frames (to corrupt in a test)."""
    import shutil

    d = tmp_path / "seq"
    d.mkdir()
    shutil.copy(redkitchen_dir / "camera-intrinsics.txt", d)
    for i in range(6):
        for suffix in ("color.jpg", "depth.png", "pose.txt"):
            shutil.copy(redkitchen_dir / f"frame-{i:06d}.{suffix}", d)
    return d


#: frames of :func:`euroc_bad_pairs` made bad, and the FrameLoadError kind each gets
EUROC_BAD_PAIRS = {3: "missing_right", 4: "missing_right", 6: "black", 7: "black", 9: "saturated"}


def make_euroc_copy(src: _Path, dst: _Path, frames: int) -> _Path:
    """A writable EuRoC folder with the first ``frames`` stereo pairs of ``src`` (all of
    its IMU and ground truth)."""
    import shutil

    m_src, m_dst = src / "mav0", dst / "mav0"
    for sub in ("imu0", "state_groundtruth_estimate0"):
        if (m_src / sub).is_dir():
            shutil.copytree(m_src / sub, m_dst / sub)
    for f in m_src.glob("*.yaml"):
        shutil.copy(f, m_dst / f.name)
    c0 = [ln for ln in (m_src / "cam0" / "data.csv").read_text().splitlines() if ln and not ln.startswith("#")]
    c1 = {
        ln.split(",")[0]
        for ln in (m_src / "cam1" / "data.csv").read_text().splitlines()
        if ln and not ln.startswith("#")
    }
    rows = [ln for ln in c0 if ln.split(",")[0] in c1][:frames]
    for cam in ("cam0", "cam1"):
        (m_dst / cam / "data").mkdir(parents=True)
        shutil.copy(m_src / cam / "sensor.yaml", m_dst / cam)
        (m_dst / cam / "data.csv").write_text("#timestamp [ns],filename\n" + "\n".join(rows) + "\n")
        for ln in rows:
            name = ln.split(",")[1].strip()
            shutil.copy(m_src / cam / "data" / name, m_dst / cam / "data" / name)
    return dst


@_pytest.fixture
def euroc_bad_pairs(euroc_micro_dir, tmp_path) -> _Path:
    """The first 12 pairs of the micro clip with the bad pairs of :data:`EUROC_BAD_PAIRS`:
    cam1 images of frames 3 and 4 deleted, cam0 images of 6 and 7 black (all 0) and of 9
    saturated (all 255)."""
    import numpy as np
    import cv2

    d = make_euroc_copy(euroc_micro_dir, tmp_path / "euroc_bad", 12)
    rows = [ln for ln in (d / "mav0" / "cam0" / "data.csv").read_text().splitlines() if not ln.startswith("#")]
    for i, kind in EUROC_BAD_PAIRS.items():
        name = rows[i].split(",")[1].strip()
        if kind == "missing_right":
            (d / "mav0" / "cam1" / "data" / name).unlink()
        else:
            cv2.imwrite(
                str(d / "mav0" / "cam0" / "data" / name), np.full((480, 752), 0 if kind == "black" else 255, np.uint8)
            )
    return d


def prism_cli_cmd():
    """The installed console script when there is one, else `python -m prism_ros.cli`."""
    exe = _Path(_sys.executable).parent / "prism-ros"
    if exe.is_file() and _os.access(exe, _os.X_OK):
        return [str(exe)]
    return [_sys.executable, "-m", "prism_ros.cli"]


def run_prism_cli(args, timeout=1200, cwd=None):
    env = dict(_os.environ)
    env["PYTHONPATH"] = str(PRISM_ROOT) + _os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("MPLBACKEND", "Agg")
    return _subprocess.run(
        prism_cli_cmd() + [str(a) for a in args],
        cwd=str(cwd or PRISM_ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- shared by the dataset tests (datasets helper) ----------------------------------------
@_pytest.fixture(scope="session")
def data_dir() -> _Path:
    """The real-data folder (see prism_data_dir); skips the test when it is absent."""
    p = prism_data_dir()
    if not p.is_dir():
        _pytest.skip(f"real data folder absent at {p} (put shared/data next to the repository or set PRISM_DATA_DIR)")
    return p
