"""The IMU on the real V1_02_medium flight (../shared/data/euroc_V1_02_medium_imu_gt):
pre-integration against the ground truth with its covariance, online biases, moving start."""
import numpy as np
import pytest

from prism_ros.core.imu import ImuNoise, read_euroc_imu_csv
from prism_ros.tools import imu_check as ic


@pytest.fixture(scope="module")
def flight(data_dir):
    m = data_dir / "euroc_V1_02_medium_imu_gt" / "mav0"
    if not (m / "imu0" / "data.csv").is_file() or not (m / "state_groundtruth_estimate0" / "data.csv").is_file():
        pytest.skip(f"real V1_02 IMU + ground truth absent at {m}")
    imu = read_euroc_imu_csv(m / "imu0" / "data.csv")
    gt = ic.read_euroc_state_gt(m / "state_groundtruth_estimate0" / "data.csv")
    return imu, gt


@pytest.fixture(scope="module")
def windows(flight):
    imu, gt = flight
    t0, t1 = float(gt.t[0]), min(float(imu.t[-1]), float(gt.t[-1]))
    return t0, {w: ic.window_terms(imu, gt, w, ImuNoise(), ic.EUROC_GRAVITY, t0, t1) for w in (0.05, 0.5)}


@pytest.mark.parametrize("window_s", [0.05, 0.5])
def test_preintegration_coverage_on_validation_blocks(windows, window_s):
    """Coverage95 of the rotation, velocity and position increments on the held-out blocks."""
    t0, terms = windows
    T = ic.select(terms[window_s], ~ic.split_blocks(terms[window_s]["t"], t0))
    assert len(T["res"]) >= (370 if window_s == 0.05 else 35)  # 19 s of held-out flight
    cov = ic._total_cov(T, ImuNoise(), ic.EUROC_GT_NOISE, ic.EUROC_DENSITY_SCALE)
    c = ic.coverage(T["res"], cov)["coverage95"]
    for block in ("rot", "vel", "pos"):
        assert 0.90 <= c[block] <= 0.98, (window_s, c)
    if window_s == 0.05:
        assert 0.90 <= c["joint"] <= 0.98, c
    # sensor.yaml's static densities alone are far too confident in flight
    c0 = ic.coverage(T["res"], ic._total_cov(T, ImuNoise(), ic.GtNoise(), 1.0))["coverage95"]
    assert c0["vel"] < 0.2 and c0["pos"] < 0.2, c0


def test_preintegration_check_matches_the_terms(flight, windows):
    """preintegration_check (the closing note's entry point) == window_terms + coverage; the
    residuals are real: 0.5 s velocity increments err by about 1.5 cm/s."""
    imu, gt = flight
    t0, terms = windows
    t1 = t0 + 10.0
    r = ic.preintegration_check(imu, gt, 0.5, ImuNoise(), ic.EUROC_GRAVITY, ic.EUROC_GT_NOISE,
                                ic.EUROC_DENSITY_SCALE, t0, t1)
    assert len(r["t"]) == 20
    np.testing.assert_allclose(r["res"], terms[0.5]["res"][:20], atol=1e-12)
    assert 0.008 < r["rms"]["vel"] / np.sqrt(3) < 0.03
    assert 1e-4 < r["rms"]["rot"] / np.sqrt(3) < 2e-3


def test_gravity_from_the_flight(flight):
    """|g| and its direction from the fit blocks agree with the held-out blocks and with z up."""
    imu, gt = flight
    t0, t1 = float(gt.t[0]), min(float(imu.t[-1]), float(gt.t[-1]))
    s = ic.window_starts(t0, t1, 0.5)
    g_fit = ic.fit_gravity(imu, gt, s[ic.split_blocks(s, t0)], 0.5)
    g_val = ic.fit_gravity(imu, gt, s[~ic.split_blocks(s, t0)], 0.5)
    np.testing.assert_allclose(g_fit, ic.EUROC_GRAVITY, atol=2e-4)
    assert np.linalg.norm(g_fit - g_val) < 0.02
    assert abs(np.linalg.norm(g_fit) - 9.81) < 0.02
    assert np.arccos(-g_fit[2] / np.linalg.norm(g_fit)) < 5e-3  # z up within 5 mrad
