"""The IMU on the real V1_02_medium flight (../shared/data/euroc_V1_02_medium_imu_gt):
pre-integration against the ground truth with its covariance, online biases, moving start."""

import numpy as np
import pytest

from prism_ros.core.imu import ImuNoise
from prism_ros.datasets.euroc_files import read_euroc_imu_csv
from prism_ros.eval import imu_check as ic


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
    else:
        # known shortfall: over 0.5 s the model's velocity-position correlation (0.99, from
        # the bias terms) is higher than the residuals' (0.95-0.98): joint 9-dof coverage 0.78
        assert 0.70 <= c["joint"] < 0.90, c
    # sensor.yaml's static densities alone are far too confident in flight
    c0 = ic.coverage(T["res"], ic._total_cov(T, ImuNoise(), ic.GtNoise(), 1.0))["coverage95"]
    assert c0["vel"] < 0.2 and c0["pos"] < 0.2, c0


def test_preintegration_check_matches_the_terms(flight, windows):
    """preintegration_check (the closing note's entry point) == window_terms + coverage; the
    residuals are real: 0.5 s velocity increments err by about 1.5 cm/s."""
    imu, gt = flight
    t0, terms = windows
    t1 = t0 + 10.0
    r = ic.preintegration_check(
        imu, gt, 0.5, ImuNoise(), ic.EUROC_GRAVITY, ic.EUROC_GT_NOISE, ic.EUROC_DENSITY_SCALE, t0, t1
    )
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


def _gt_track(gt, stamps):
    S = [gt.interp(x) for x in stamps]
    return np.stack([s[0] for s in S]), np.stack([s[1] for s in S]), S[0][3], S[0][4]


@pytest.mark.parametrize("start_s", [6.0, 16.0, 26.0, 34.0])
def test_online_biases_against_the_gt_bias_columns(flight, start_s):
    """2 s sliding window, poses at 20 Hz (the camera rate), biases started at zero."""
    from prism_ros.core.imu import estimate_biases

    imu, gt = flight
    stamps = imu.t[0] + start_s + np.arange(41) * 0.05
    R, p, bg_gt, ba_gt = _gt_track(gt, stamps)
    est = estimate_biases(imu, stamps, R, p, ic.EUROC_GRAVITY, ImuNoise(), rot_sigma_rad=5e-5, pos_sigma_m=5e-5)
    assert np.linalg.norm(bg_gt) > 0.07  # the z bias is large: the check is not trivial
    assert np.max(np.abs(est.bg - bg_gt)) < 3e-3, est.bg - bg_gt
    # the ground truth's own accel bias is uncertain by ~0.03 m/s^2 (EUROC_GT_NOISE)
    assert np.max(np.abs(est.ba - ba_gt)) < 0.06, est.ba - ba_gt
    assert np.linalg.norm(ba_gt) > 0.13
    v_gt = np.stack([gt.interp(x)[2] for x in stamps])
    assert np.max(np.abs(est.v_w - v_gt)) < 0.03


def test_moving_start_refused_then_gravity_from_poses(flight):
    """In flight every 1 s init window is refused; gravity then comes from 1 s of poses."""
    from prism_ros.core import se3
    from prism_ros.core.imu import ImuIntegrator
    from prism_ros.core.imu import detect_motion

    imu, gt = flight
    t_imu0 = float(imu.t[0])
    for s in np.arange(4.0, 38.0, 0.25):
        chk = detect_motion(imu, t_imu0 + s, t_imu0 + s + 1.0)
        assert not chk.static and chk.reasons, (s, chk.stats)
    # the MAV stands on the ground for the first second: alignment allowed there
    still = detect_motion(imu, t_imu0, t_imu0 + 1.0)
    assert still.static, still.reasons
    t0 = t_imu0 + 10.0
    R, p, bg_gt, _ = _gt_track(gt, [t0])
    T_I_C = se3.make_T(se3.so3_exp(np.array([1.2, -1.1, 0.3])), np.array([-0.02, -0.06, 0.01]))
    integ = ImuIntegrator(imu, T_I_C, ImuNoise())
    T_w_c0 = se3.make_T(R[0], p[0]) @ T_I_C
    assert integ.initialise(T_w_c0, t0, 1.0) is False
    assert integ.g_w is None and integ.static_start is False
    assert integ.control(t0, t0 + 0.05, T_w_c0, np.zeros(6)) is None  # no IMU prior while unaligned
    stamps = t0 + np.arange(21) * 0.05
    Rs, ps, _, _ = _gt_track(gt, stamps)
    T_w_c = np.stack([se3.make_T(Ri, pi) @ T_I_C for Ri, pi in zip(Rs, ps)])
    est = integ.initialise_from_poses(stamps, T_w_c, pos_sigma_m=5e-5, rot_sigma_rad=5e-5)
    # the unestimated accelerometer bias (|ba| = 0.14 m/s^2) leaks into gravity: 0.16 m/s^2,
    # a tilt of ~15 mrad
    assert np.linalg.norm(integ.g_w - ic.EUROC_GRAVITY) < 0.25, integ.g_w
    assert np.arccos(-integ.g_w[2] / np.linalg.norm(integ.g_w)) < 0.02
    assert np.max(np.abs(integ.bg - bg_gt)) < 3e-3
    assert est.cov_ba.shape == (3, 3)
    assert integ.control(t0, t0 + 0.05, T_w_c[0], np.zeros(6)) is not None


def test_static_micro_clip_alignment_allowed(data_dir):
    """V1_01 micro clip (the MAV stands still): the static alignment runs; gravity points down."""
    from prism_ros.core.imu import detect_motion

    csv = data_dir / "euroc_V1_01_easy_micro" / "mav0" / "imu0" / "data.csv"
    if not csv.is_file():
        pytest.skip(f"micro clip IMU absent at {csv}")
    imu = read_euroc_imu_csv(csv)
    t_cam0 = 1403715273.262143  # first stereo pair
    for s in np.arange(0.0, 3.8, 0.25):  # rotors running: accelerometer MAD std up to 1.0 m/s^2
        chk = detect_motion(imu, t_cam0 + s, t_cam0 + s + 1.0)
        assert chk.static, (s, chk.reasons)
        assert abs(np.linalg.norm(chk.f_mean) - 9.81) < 0.05


def test_imu_buffer_moving_start(flight):
    """The node's buffer on the real flight: refuses the static alignment (no control, reasons
    kept), then aligns from 1 s of poses and gives controls."""
    from prism_ros.core.imu import ImuBuffer

    imu, gt = flight
    buf = ImuBuffer(max_gap_s=0.025)
    t_imu0 = float(imu.t[0])
    m = (imu.t >= t_imu0 + 8.0) & (imu.t <= t_imu0 + 12.0)
    for t, w, a in zip(imu.t[m], imu.gyro[m], imu.acc[m]):
        assert buf.add(t, w, acc=a)
    t0 = t_imu0 + 10.0
    R, p, _, _ = _gt_track(gt, [t0])
    from prism_ros.core import se3

    T0 = se3.make_T(R[0], p[0])
    assert buf.control(t0, t0 + 0.05, T0, np.zeros(6)) is None
    assert buf.static_start is False and buf.init_check.reasons
    stamps = t0 + np.arange(21) * 0.05
    Rs, ps, _, _ = _gt_track(gt, stamps)
    est = buf.align_from_poses(stamps, np.stack([se3.make_T(a, b) for a, b in zip(Rs, ps)]), 5e-5, 5e-5)
    assert est is not None and np.linalg.norm(est.g_w - ic.EUROC_GRAVITY) < 0.25
    assert buf.control(stamps[-1], stamps[-1] + 0.05, se3.make_T(Rs[-1], ps[-1]), np.zeros(6)) is not None
    assert buf.refine_biases(stamps, np.stack([se3.make_T(a, b) for a, b in zip(Rs, ps)]), 5e-5, 5e-5) is not None


@pytest.mark.slow
def test_stored_noise_model_is_the_fit_blocks_fit(flight, windows):
    """EUROC_DENSITY_SCALE / EUROC_GT_NOISE are what fit_noise_model gives on the fit blocks."""
    t0, terms = windows
    k, gn = ic.fit_noise_model([ic.select(T, ic.split_blocks(T["t"], t0)) for T in terms.values()], ImuNoise())
    assert k == pytest.approx(ic.EUROC_DENSITY_SCALE, rel=0.03)
    assert gn.sigma_ba_mps2 == pytest.approx(ic.EUROC_GT_NOISE.sigma_ba_mps2, rel=0.05)
    assert gn.sigma_bg_radps == pytest.approx(ic.EUROC_GT_NOISE.sigma_bg_radps, rel=0.05)
    assert gn.sigma_pos_m == pytest.approx(ic.EUROC_GT_NOISE.sigma_pos_m, rel=0.05)
    assert gn.sigma_rot_rad < 1e-6 and gn.sigma_vel_mps < 1e-5  # fitted to zero


def test_node_default_density_scale_is_the_fitted_one():
    from prism_ros.config import PARAMS

    default = {p.name: p.default for p in PARAMS}["imu_noise_density_scale"]
    assert default == ic.EUROC_DENSITY_SCALE


@pytest.mark.parametrize("path", ["offline", "node"])
def test_moving_start_pose_fallback_runs_by_itself(flight, path):
    """Controls fed the (noisy: 5 mm, 2 mrad) pose track of a moving start: none for the first
    second (constant velocity), then gravity from the poses and IMU controls; later the
    gated bias refinement takes the biases of a precise track and refuses a noisy one's."""
    from prism_ros.core import se3
    from prism_ros.core.imu import ImuIntegrator
    from prism_ros.core.imu import ImuBuffer

    imu, gt = flight
    rng = np.random.default_rng(3)
    t_imu0 = float(imu.t[0])
    stamps = t_imu0 + 20.0 + np.arange(41) * 0.05
    Rs, ps, bg_gt, _ = _gt_track(gt, stamps)
    noisy = np.stack(
        [se3.make_T(R @ se3.so3_exp(rng.normal(0, 2e-3, 3)), p + rng.normal(0, 5e-3, 3)) for R, p in zip(Rs, ps)]
    )
    if path == "offline":
        src = ImuIntegrator(imu, np.eye(4), ImuNoise())
    else:
        src = ImuBuffer(max_gap_s=0.025)
        m = (imu.t >= stamps[0] - 1.5) & (imu.t <= stamps[-1] + 0.1)
        for t, w, a in zip(imu.t[m], imu.gyro[m], imu.acc[m]):
            assert src.add(t, w, acc=a)
    got = []
    for k in range(len(stamps) - 1):
        if path == "offline" and src.g_w is None:
            assert src.initialise(noisy[k], stamps[k], 1.0) is False  # moving: refused every time
        got.append(src.control(stamps[k], stamps[k + 1], noisy[k], np.zeros(6)) is not None)
    first = got.index(True)
    assert first == 20 and all(got[first:])  # 1 s of poses (21 stamps), then every frame
    integ = src if path == "offline" else src._integ
    assert np.linalg.norm(integ.g_w - ic.EUROC_GRAVITY) < 0.25 and integ.static_start is False
    assert np.max(np.abs(integ.bg - bg_gt)) < 0.01
    if path == "node":
        # 2 mrad pose noise: the 2 s estimate (sigma ~9e-3 rad/s) is no better than the prior
        est = src.refine_biases(stamps, noisy, 5e-3, 2e-3)
        assert est.applied[0] is False
        fine = np.stack(
            [se3.make_T(R @ se3.so3_exp(rng.normal(0, 2e-4, 3)), p + rng.normal(0, 2e-4, 3)) for R, p in zip(Rs, ps)]
        )
        est = src.refine_biases(stamps, fine, 2e-4, 2e-4)
        assert est.applied == (True, True) and np.max(np.abs(integ.bg - bg_gt)) < 3e-3
        very = noisy.copy()
        very[:, :3, 3] += rng.normal(0, 0.05, (len(very), 3))
        ba_before = integ.ba.copy()
        est = src.refine_biases(stamps, very, 0.05, 2e-3)
        assert est.applied[1] is False and np.array_equal(integ.ba, ba_before)
