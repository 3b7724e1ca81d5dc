"""The motion controls the node feeds the pipeline (prism_ros.core.controls): the IMU
buffer's control (the same gyro + accelerometer integration as the offline path, on
synthetic IMU samples) and the odometry increment with the message's own covariance."""

import numpy as np
import pytest

from prism_ros.core import se3
from prism_ros.core.controls import OdomBuffer
from prism_ros.core.imu import ImuBuffer, ImuNoise
from prism_ros.pipeline import imu_noise_from_config

G = 9.81
RATE = 200.0


def _T_from_rpy(rpy_deg, xyz=(0.0, 0.0, 0.0)):
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("xyz", rpy_deg, degrees=True).as_matrix()
    T[:3, 3] = xyz
    return T


#: REP-103 optical camera in the base frame, 10 cm ahead and 5 cm up (lever arm)
T_BASE_CAM = _T_from_rpy([-90.0, 0.0, -90.0], [0.10, 0.0, 0.05])


def _fill(buf, t_start, t0, t1, w_rot, R_tilt=np.eye(3), bias=np.zeros(3), t_end=None):
    """Static on [t_start, t0), then a pure rotation of the base (= IMU) about its own
    origin at constant rate ``w_rot`` (base frame) on [t0, ...).  The base starts tilted
    by ``R_tilt`` relative to gravity; the gyro carries ``bias``."""
    t_end = t1 + 0.02 if t_end is None else t_end
    g_w = np.array([0.0, 0.0, -G])
    n = 0
    for k in range(int(round((t_end - t_start) * RATE)) + 1):
        t = t_start + k / RATE
        tau = max(t - t0, 0.0)
        R = R_tilt @ se3.so3_exp(np.asarray(w_rot) * tau)
        f = R.T @ (-g_w)  # specific force of a body at rest in translation
        w = (np.asarray(w_rot) if t >= t0 else np.zeros(3)) + bias
        assert buf.add(t, w, acc=f)
        n += 1
    return n


@pytest.mark.parametrize("tilt_deg", [0.0, 25.0])
def test_pure_rotation_increment(tilt_deg):
    buf = ImuBuffer(T_I_C=T_BASE_CAM, noise=ImuNoise(), init_window_s=1.0)  # IMU at the base frame
    t0, t1 = 10.0, 10.1
    w_rot = np.array([0.3, -0.2, 0.8])
    bias = np.array([0.004, -0.003, 0.002])
    _fill(buf, t0 - 1.0, t0, t1, w_rot, R_tilt=_T_from_rpy([tilt_deg, -10.0, 0.0])[:3, :3], bias=bias)
    # the filter's world: camera starts at T_base_camera (base at the identity), at rest
    ctl = buf.control(t0, t1, T_BASE_CAM, np.zeros(6), P_nu=np.eye(6) * 1e-6, Sigma=np.eye(6) * 1e-8)
    assert ctl is not None
    assert buf.static_start is True
    dT_base = se3.make_T(se3.so3_exp(w_rot * (t1 - t0)), np.zeros(3))
    expected = se3.inv(T_BASE_CAM) @ dT_base @ T_BASE_CAM  # camera increment of a base rotation
    err = se3.log(se3.inv(expected) @ ctl.T_prev_curr)
    assert np.linalg.norm(err[3:]) < 2e-4, err  # gyro bias removed by the static-start estimate
    assert np.linalg.norm(err[:3]) < 1e-3, err  # gravity cancelled; lever arm through the extrinsic
    # the camera really moves (lever arm): the check above is not trivial
    assert np.linalg.norm(expected[:3, 3]) > 5e-3
    # covariance: symmetric PSD, tight (noise densities over 0.1 s)
    C = ctl.cov
    assert C.shape == (6, 6) and np.allclose(C, C.T)
    assert np.all(np.linalg.eigvalsh(C) > -1e-15)
    assert np.sqrt(np.max(np.diag(C)[3:])) < 2e-3
    assert np.sqrt(np.max(np.diag(C)[:3])) < 1e-2
    # the error is within a few sigma of the reported covariance
    assert np.all(np.abs(err[3:]) < 5 * np.sqrt(np.diag(C)[3:]) + 1e-6)


def test_same_integration_as_offline_path():
    """ImuBuffer.control == core.imu.ImuIntegrator.control on the same samples."""
    from prism_ros.core.imu import ImuIntegrator

    buf = ImuBuffer(T_I_C=T_BASE_CAM, init_window_s=1.0)
    t0, t1 = 5.0, 5.05
    _fill(buf, 4.0, t0, t1, np.array([0.0, 0.5, 0.1]), bias=np.array([0.01, 0.0, 0.0]))
    nu = np.array([0.1, 0.0, 0.2, 0.0, 0.05, 0.0])
    ctl = buf.control(t0, t1, T_BASE_CAM, nu, np.eye(6) * 1e-4, np.eye(6) * 1e-6)
    ref = ImuIntegrator(buf.data(), T_BASE_CAM, ImuNoise())
    ref.initialise(T_BASE_CAM, t0 - 0.5, 1.0, t_end=t0)  # the buffer's window: the second before t0
    want = ref.control(t0, t1, T_BASE_CAM, nu, np.eye(6) * 1e-4, np.eye(6) * 1e-6)
    assert np.allclose(ctl.T_prev_curr, want.T_prev_curr, atol=1e-12)
    assert np.allclose(ctl.cov, want.cov, atol=1e-15, rtol=1e-9)
    # a second interval reuses the alignment
    ctl2 = buf.control(t1, t1 + 0.01, T_BASE_CAM @ ctl.T_prev_curr, nu)
    assert ctl2 is not None


def test_nan_rejected_coverage_and_reset():
    buf = ImuBuffer()
    assert not buf.add(1.0, [np.nan, 0.0, 0.0], acc=[0.0, 0.0, G])
    assert not buf.add(1.0, [0.0, 0.0, 0.0], acc=[0.0, np.inf, G])
    assert not buf.add(np.nan, [0.0, 0.0, 0.0], acc=[0.0, 0.0, G])
    assert len(buf) == 0
    _fill(buf, 1.0, 1.5, 1.6, np.zeros(3), t_end=1.6)
    assert buf.control(1.5, 1.8, np.eye(4), np.zeros(6)) is None  # not covered: CV fallback
    assert buf.control(1.5, 1.6, np.eye(4), np.zeros(6)) is not None
    assert buf._integ is not None
    buf.reset_alignment()
    assert buf._integ is None and buf.static_start is None and len(buf) > 0
    assert not buf.add(1.2, [0.0, 0.0, 0.0], acc=[0.0, 0.0, G])  # out of order: dropped
    assert buf.add(0.1, [0.0, 0.0, 0.0], acc=[0.0, 0.0, G])  # jumped back > 1 s: new timeline
    assert len(buf) == 1


def test_noise_from_config():
    from prism_ros.config import PrismConfig

    cfg = PrismConfig.from_dict(
        {"imu_gyro_noise_density": 1e-3, "imu_accel_noise_density": 0.02, "imu_noise_density_scale": 2.0}
    )
    n = imu_noise_from_config(cfg)
    assert n.gyro_noise_density == 2e-3 and n.accel_noise_density == 0.04
    assert n == ImuNoise(gyro_noise_density=1e-3, accel_noise_density=0.02).scaled(2.0)
    assert n.gyro_random_walk == ImuNoise().gyro_random_walk


def test_odometry_increment_uses_the_message_covariance():
    """A twist covariance in the messages sets the increment's covariance (sigma_v^2 dt^2 plus
    the floor); without one (all zeros) the relative model applies."""
    T_b_c = np.eye(4)
    T_b_c[:3, :3] = _T_from_rpy((-90.0, 0.0, -90.0))[:3, :3]  # optical camera on the base
    cov = np.diag([0.01, 0.04, 0.09, 1e-4, 4e-4, 9e-4])  # (m/s)^2, (rad/s)^2 in the base frame
    with_cov, without = OdomBuffer(), OdomBuffer()
    for k in range(11):
        T = np.eye(4)
        T[0, 3] = 0.1 * k  # 1 m/s forward
        with_cov.add(0.1 * k, T, cov)
        without.add(0.1 * k, T, np.zeros((6, 6)))
    c1 = with_cov.increment(0.2, 0.7, T_b_c)
    c0 = without.increment(0.2, 0.7, T_b_c)
    np.testing.assert_allclose(c1.T_prev_curr, c0.T_prev_curr)
    np.testing.assert_allclose(c1.T_prev_curr[:3, 3], T_b_c[:3, :3].T @ [0.5, 0, 0], atol=1e-12)
    # base x (forward) is the optical z axis: its variance is 0.01 * 0.5^2 + floor^2
    floor = with_cov.min_sigma_m**2
    assert c1.cov[2, 2] == pytest.approx(0.01 * 0.25 + floor)
    assert c1.cov[0, 0] == pytest.approx(0.04 * 0.25 + floor)  # base y -> optical -x
    assert c1.cov[1, 1] == pytest.approx(0.09 * 0.25 + floor)  # base z -> optical -y
    # the relative model: (min + 5 % of 0.5 m)^2 on every axis
    assert c0.cov[2, 2] == pytest.approx((without.min_sigma_m + 0.05 * 0.5) ** 2)


def test_imu_buffer_keeps_the_newest_maxlen_samples_and_their_windows():
    """Past its bound the buffer keeps exactly the newest ``maxlen`` samples, through the
    moves of its arrays; windows hold the samples on [t0, t1] plus one on each side."""
    rng = np.random.default_rng(1)
    buf = ImuBuffer(maxlen=50)
    rows = []
    for k in range(237):  # several moves of the kept rows to the front
        t, w, a = 1.0 + 0.005 * k, rng.standard_normal(3), rng.standard_normal(3)
        assert buf.add(t, w, acc=a)
        rows.append((t, w, a))
        kept = rows[-50:]
        assert len(buf) == len(kept)
        if k % 17 == 0 or k == 236:
            d = buf.data()
            np.testing.assert_array_equal(d.t, [r[0] for r in kept])
            np.testing.assert_array_equal(d.gyro, [r[1] for r in kept])
            np.testing.assert_array_equal(d.acc, [r[2] for r in kept])
    t = np.array([r[0] for r in rows[-50:]])
    w = buf.data(t[10] + 1e-4, t[20] - 1e-4)  # the samples inside, t[11..19], and one each side
    np.testing.assert_array_equal(w.t, t[10:21])
    np.testing.assert_array_equal(buf.data(t[10] - 1e-4, t[20] + 1e-4).t, t[9:22])  # the ends' neighbours too
    assert buf.median_period_s() == pytest.approx(0.005)
    assert buf.max_gap_in(t[0], t[-1]) == pytest.approx(0.005)


def test_imu_buffer_time_jump_after_its_arrays_moved_and_bad_bounds():
    """A jump back by more than 1 s after the kept rows were moved starts a new timeline; a
    bound below 1 is refused."""
    buf = ImuBuffer(maxlen=10)
    for k in range(35):
        assert buf.add(5.0 + 0.005 * k, [0.0, 0.0, 0.1 * k], acc=[0.0, 0.0, G])
    assert len(buf) == 10 and buf.data().gyro[-1, 2] == pytest.approx(3.4)
    assert buf.add(1.0, [0.0, 0.0, 7.0], acc=[0.0, 0.0, G])  # jumped back: only this sample
    d = buf.data()
    assert len(buf) == 1 and d.t.tolist() == [1.0] and d.gyro.tolist() == [[0.0, 0.0, 7.0]]
    with pytest.raises(ValueError):
        ImuBuffer(maxlen=0)


def test_still_imu_gives_a_zero_velocity_update():
    """At rest (the IMU still over the last ZUPT_WINDOW_S), the control carries no translation and
    a zero linear velocity whatever velocity the filter had (a wrong one made a lost filter at rest
    drift 4 mm a frame on the real MH_01 slice); the gyro's rotation (here none) is kept.  While it
    rotates, it is an ordinary control."""
    from prism_ros.core.imu import ZUPT_SIGMA_MPS

    buf = ImuBuffer(T_I_C=T_BASE_CAM, init_window_s=1.0)
    t0, t1 = 10.0, 10.05
    _fill(buf, t0 - 1.5, t1 + 1.0, t1 + 1.0, np.zeros(3), bias=np.array([0.004, -0.003, 0.002]))
    nu = np.array([0.08, 0.0, 0.0, 0.0, 0.0, 0.0])  # the filter believes it moves at 8 cm/s
    ctl = buf.control(t0, t1, T_BASE_CAM, nu, np.eye(6) * 1e-4, np.eye(6) * 1e-6)
    assert ctl.still
    assert np.allclose(ctl.T_prev_curr[:3, 3], 0.0) and np.allclose(ctl.nu_curr[:3], 0.0)
    assert np.sqrt(ctl.nu_cov[0, 0]) == pytest.approx(ZUPT_SIGMA_MPS)
    assert np.sqrt(ctl.cov[0, 0]) == pytest.approx(ZUPT_SIGMA_MPS * (t1 - t0), rel=1e-3)
    assert np.linalg.norm(se3.log(ctl.T_prev_curr)[3:]) < 1e-4
    # without the IMU's stillness (the same interval, a rotation starting inside the window)
    moving = ImuBuffer(T_I_C=T_BASE_CAM, init_window_s=1.0)
    _fill(moving, t0 - 1.5, t0, t1, np.array([0.0, 0.0, 0.5]))  # still before t0 (the static start)
    ctl_m = moving.control(t0, t1, T_BASE_CAM, nu, np.eye(6) * 1e-4, np.eye(6) * 1e-6)
    assert ctl_m is not None and not ctl_m.still
    assert np.linalg.norm(ctl_m.T_prev_curr[:3, 3]) > 1e-3  # it moves on at the filter's velocity


def test_still_imu_reports_the_interval_mean_rate_not_one_vibrating_sample():
    """A MAV at rest with its rotors running: the gyro cycles through +0.015, 0, -0.015 rad/s about z sample to
    sample (mean and median zero, within the stillness test).  The zero-velocity control's angular velocity is the
    interval's mean rate (about zero, inside its sigma), not the last sample (0.015 rad/s, about 5 sigma of the
    gyro's noise and bias)."""
    buf = ImuBuffer(T_I_C=T_BASE_CAM, init_window_s=1.0)
    g_w = np.array([0.0, 0.0, -G])
    t_start, t1 = 8.0, 10.05
    for k in range(int(round((t1 + 0.02 - t_start) * RATE)) + 1):
        assert buf.add(t_start + k / RATE, np.array([0.0, 0.0, 0.015 * (1 - k % 3)]), acc=-g_w)
    ctl = buf.control(10.0, t1, T_BASE_CAM, np.zeros(6), np.eye(6) * 1e-4, np.eye(6) * 1e-6)
    assert ctl.still
    w, P_w = ctl.nu_curr[3:], ctl.nu_cov[3:, 3:]
    last = 0.015 * (1 - round((t1 - t_start) * RATE) % 3)
    assert abs(last) == 0.015  # the interval's last sample: what the control used to report
    assert np.linalg.norm(w) < 2e-3, w
    assert w @ np.linalg.solve(P_w, w) < 7.81  # chi2_3 95 %
    assert np.sqrt(P_w[2, 2]) < 0.015 / 3


def test_a_steady_turn_is_not_still():
    """A steady yaw about gravity keeps every dispersion test of detect_motion quiet (constant
    rate, constant specific force); the bias-corrected rate tells it from rest."""
    from prism_ros.core.imu import ZUPT_MAX_RATE_RADPS, ZUPT_WINDOW_S
    from prism_ros.core.imu import detect_motion

    buf = ImuBuffer(T_I_C=T_BASE_CAM, init_window_s=1.0)
    t0, t1 = 10.0, 11.0
    w = np.array([0.0, 0.0, 4 * ZUPT_MAX_RATE_RADPS])
    _fill(buf, t0 - 1.5, t0, t1, w)
    assert detect_motion(buf.data(), t1 - ZUPT_WINDOW_S, t1).static  # the dispersion tests pass
    ctl = buf.control(t0, t0 + 0.05, T_BASE_CAM, np.zeros(6), np.eye(6) * 1e-4, np.eye(6) * 1e-6)
    assert ctl is not None
    ctl = buf.control(t1 - 0.05, t1, T_BASE_CAM, np.zeros(6), np.eye(6) * 1e-4, np.eye(6) * 1e-6)
    assert not ctl.still
