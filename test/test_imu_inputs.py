"""Bad input on the drone path (prism_ros.ros.imu_inputs, ImuBuffer gaps): pure checks, no rclpy."""

import numpy as np
import pytest

from prism_ros.core.imu import ImuBuffer
from prism_ros.core.stereo import check_exposure, check_stereo_pair
from prism_ros.ros import imu_inputs
from prism_ros.ros.imu_inputs import ImuStreamMonitor

G = [0.0, 0.0, 9.81]
W = [0.01, -0.02, 0.03]


def _feed(mon, stamps):
    return [mon.check(t, W, G) for t in stamps]


def test_clean_stream_passes():
    mon = ImuStreamMonitor(200.0)
    rng = np.random.default_rng(0)
    stamps = 10.0 + np.arange(600) / 200.0 + rng.uniform(-2e-4, 2e-4, 600)  # 0.2 ms jitter
    assert all(v.code == "" and v.keep for v in _feed(mon, stamps))
    assert mon.measured_rate_hz() == pytest.approx(200.0, rel=0.01)


def test_nan_backwards_duplicate_dropped_gap_flagged():
    mon = ImuStreamMonitor(200.0)
    _feed(mon, 1.0 + np.arange(10) / 200.0)
    v = mon.check(1.05, [np.nan, 0, 0], G)
    assert v.code == "nan" and not v.keep and "non-finite" in v.message
    assert mon.check(np.inf, W, G).code == "nan"
    v = mon.check(1.0, W, G)
    assert v.code == "backwards" and not v.keep and "0.045" in v.message
    assert mon.check(1.045, W, G).code == "duplicate"
    v = mon.check(1.3, W, G)  # 255 ms after the last sample (> 5 periods = 25 ms)
    assert v.code == "gap" and v.keep and "0.255" in v.message
    assert mon.check(1.305, W, G).code == ""  # the stream resumes


def test_a_jump_back_of_more_than_a_second_starts_a_new_timeline():
    """A replay that restarts: the monitor and the buffer both follow the new timeline (the monitor used to
    drop every sample until the stamps passed the old last one, so the IMU control was gone for a loop)."""
    mon, buf = ImuStreamMonitor(200.0), ImuBuffer()
    first = 100.0 + np.arange(400) / 200.0
    for t in first:
        assert mon.check(t, W, G).keep and buf.add(t, W, acc=G)
    v = mon.check(100.5, W, G)  # 1.495 s back: more than TIMELINE_JUMP_S
    assert v.code == "timeline" and v.keep and "1.495" in v.message
    assert buf.add(100.5, W, acc=G)
    again = 100.5 + np.arange(1, 400) / 200.0
    assert all(v.code == "" for v in _feed(mon, again))
    for t in again:
        assert buf.add(t, W, acc=G)
    assert buf.covers(101.0, 102.0) and not buf.covers(100.2, 100.6)  # the old timeline is gone
    assert mon.check(again[-1] - 0.5, W, G).code == "backwards"  # a short step back is still dropped


@pytest.mark.parametrize("true_hz, flagged", [(200.0, False), (100.0, True), (400.0, True), (230.0, False)])
def test_rate_mismatch(true_hz, flagged):
    mon = ImuStreamMonitor(200.0, max_gap_s=0.05)
    verdicts = _feed(mon, 5.0 + np.arange(300) / true_hz)
    codes = {v.code for v in verdicts[150:]}
    assert codes == ({"rate"} if flagged else {""}), codes
    if flagged:
        assert f"{true_hz:.1f} Hz" in verdicts[-1].message and "declared 200.0 Hz" in verdicts[-1].message


def test_buffer_reports_an_interval_with_a_gap_uncovered():
    buf = ImuBuffer(max_gap_s=0.025)
    stamps = np.concatenate([np.arange(0.0, 1.0, 0.005), np.arange(1.2, 2.0, 0.005)])  # 200 ms hole
    for t in stamps:
        assert buf.add(t, [0, 0, 0], acc=G)
    assert buf.max_gap_in(0.9, 1.3) == pytest.approx(0.205, abs=1e-9)
    assert not buf.covers(0.9, 1.3) and buf.control(0.9, 1.3, np.eye(4), np.zeros(6)) is None
    assert buf.covers(1.3, 1.4) and buf.covers(0.5, 0.6)
    assert ImuBuffer().covers(0.0, 0.05) is False  # empty


def test_stereo_pair_checks(data_dir):
    import cv2

    cam = data_dir / "euroc_V1_01_easy_micro" / "mav0" / "cam0" / "data"
    files = sorted(cam.glob("*.png"))
    if not files:
        pytest.skip(f"micro clip images absent at {cam}")
    L = cv2.imread(str(files[0]), cv2.IMREAD_GRAYSCALE)
    R = cv2.imread(str(files[0]).replace("cam0", "cam1"), cv2.IMREAD_GRAYSCALE)
    assert check_stereo_pair(L, R, (752, 480)) == []
    codes = lambda *a: [(p.code, p.side) for p in check_stereo_pair(*a)]  # noqa: E731
    assert codes(L, None) == [("missing_right", "right")]
    assert codes(None, R) == [("missing_left", "left")]
    assert codes(np.zeros_like(L), R) == [("black", "left")]
    assert codes(L, np.full_like(R, 255)) == [("saturated", "right")]
    # a real frame under-exposed 50x is black, over-exposed 20x saturated
    assert check_exposure((L / 50).astype(np.uint8)).startswith("black")
    assert check_exposure(np.clip(L.astype(int) * 20, 0, 255).astype(np.uint8)).startswith("saturated")
    # dim / bright but usable (StereoSGBM still matches them: see core.stereo.EXPOSURE_DARK_LEVEL)
    assert check_exposure((L / 16).astype(np.uint8)) == ""
    assert check_exposure(np.clip(L.astype(int) * 3, 0, 255).astype(np.uint8)) == ""
    assert codes(L, R[:, :700], (752, 480)) == [("size", "right")]
    assert codes(L, R[:, :700]) == [("size", "right")]  # left and right differ
    assert imu_inputs.check_stereo_pair is check_stereo_pair  # still importable from the ros module
