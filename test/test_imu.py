"""IMU pre-integration against analytic motion, gravity alignment, and IMU control vs constant velocity."""

import numpy as np

from prism_ros.core import se3
from prism_ros.core.dynamics import MotionModel, MotionState
from prism_ros.core.imu import (
    ImuData,
    ImuIntegrator,
    ImuNoise,
    align_gravity,
    preintegrate,
    static_bias_and_gravity,
)

G_W = np.array([0.0, 0.0, -9.81])
RATE = 200.0


def _motion(w, a_b, R0, v0_w, t):
    """Constant body rate w and constant body acceleration a_b (in the moving frame).

    Closed-form-free truth by fine integration: returns R(t), p(t), v(t) (world), p(0)=0.
    """
    from scipy.integrate import solve_ivp

    def rhs(s, y):
        return np.concatenate([y[3:], R0 @ se3.so3_exp(w * s) @ a_b])

    sol = solve_ivp(rhs, [0, t], np.concatenate([np.zeros(3), v0_w]), rtol=1e-10, atol=1e-12)
    return R0 @ se3.so3_exp(w * t), sol.y[:3, -1], sol.y[3:, -1]


def _imu_for(w, a_b, R0, T_end, bg=np.zeros(3), rate=RATE, rng=None, noise=None):
    ts = np.arange(0.0, T_end + 1e-9, 1.0 / rate)
    f = np.array([a_b - (R0 @ se3.so3_exp(w * t)).T @ G_W for t in ts])
    g = np.tile(w + bg, (len(ts), 1))
    if rng is not None:
        g = g + rng.normal(0, noise.gyro_noise_density * np.sqrt(rate), g.shape)
        f = f + rng.normal(0, noise.accel_noise_density * np.sqrt(rate), f.shape)
    return ImuData(ts, g, f)


def test_preintegration_against_analytic_motion():
    w = np.array([0.3, -0.2, 0.5])
    a_b = np.array([0.5, 0.1, -0.2])
    R0 = se3.so3_exp(np.array([0.1, 0.2, 0.3]))
    v0_I = np.array([0.2, 0.0, 0.1])
    imu = _imu_for(w, a_b, R0, 1.0)
    integ = ImuIntegrator(imu, np.eye(4), g_w=G_W)
    for T_end in (0.05, 0.5):
        R_true, p_true, _ = _motion(w, a_b, R0, R0 @ v0_I, T_end)
        T, cov = integ.imu_increment(0.0, T_end, R0, v0_I)
        assert np.linalg.norm(se3.so3_log(T[:3, :3].T @ R0.T @ R_true)) < 1e-9
        # zero-order hold at 200 Hz: error ~ |w| |a| dt T^2 / 2
        assert np.linalg.norm(R0 @ T[:3, 3] - p_true) < 2e-4
    # pre-integrated velocity
    pi = preintegrate(imu, 0.0, 0.5, ImuNoise())
    _, _, v_true = _motion(w, a_b, R0, R0 @ v0_I, 0.5)
    v_est = R0 @ v0_I + G_W * 0.5 + R0 @ pi.dv
    assert np.linalg.norm(v_est - v_true) < 1e-3


def test_covariance_grows_with_time_and_is_spd():
    w = np.array([0.0, 0.0, 0.4])
    imu = _imu_for(w, np.zeros(3), np.eye(3), 2.0)
    integ = ImuIntegrator(imu, np.eye(4), g_w=G_W)
    traces = []
    for T_end in (0.05, 0.2, 0.5, 1.0):
        _, cov = integ.imu_increment(0.0, T_end, np.eye(3), np.zeros(3), P_v=np.eye(3) * 1e-4)
        assert np.allclose(cov, cov.T)
        assert np.linalg.eigvalsh(cov).min() > 0
        traces.append((np.trace(cov[:3, :3]), np.trace(cov[3:, 3:])))
    tr = np.array(traces)
    assert np.all(np.diff(tr[:, 0]) > 0) and np.all(np.diff(tr[:, 1]) > 0)
    # pure white-noise part: gyro angle variance ~ density^2 * T (no bias terms)
    quiet = ImuNoise(gyro_bias_sigma=0.0, accel_bias_sigma=0.0, gyro_random_walk=0.0, accel_random_walk=0.0)
    pi = preintegrate(imu, 0.0, 1.0, quiet)
    np.testing.assert_allclose(np.trace(pi.cov[:3, :3]) / 3, quiet.gyro_noise_density**2 * 1.0, rtol=0.05)


def test_static_alignment_and_gyro_bias():
    rng = np.random.default_rng(1)
    noise = ImuNoise()
    R_w_I = se3.so3_exp(np.array([0.3, -0.2, 1.0]))
    bg = np.array([0.01, -0.02, 0.08])
    imu = _imu_for(np.zeros(3), np.zeros(3), R_w_I, 1.0, bg=bg, rng=rng, noise=noise)
    b, f, static = static_bias_and_gravity(imu, 0.0, 1.0)
    assert static
    np.testing.assert_allclose(b, bg, atol=2e-3)
    np.testing.assert_allclose(align_gravity(f, R_w_I), G_W, atol=0.02)
    # a moving window is not static
    moving = _imu_for(np.array([0, 0, 2.0]), np.array([3.0, 0, 0]), R_w_I, 1.0)
    moving.acc[::2] += 3.0
    assert not static_bias_and_gravity(moving, 0.0, 1.0)[2]
    # the integrator's initialise() then keeps a static camera still
    T_I_C = se3.make_T(se3.so3_exp(np.array([0.1, -1.5, 0.2])), np.array([-0.02, -0.06, 0.01]))
    integ = ImuIntegrator(imu, T_I_C, noise)
    T_w_c = se3.make_T(R_w_I, np.zeros(3)) @ T_I_C
    assert integ.initialise(T_w_c, 0.0, 1.0)
    c = integ.control(0.2, 0.7, T_w_c, np.zeros(6))
    assert np.linalg.norm(c.T_prev_curr[:3, 3]) < 2e-3
    assert np.linalg.norm(se3.so3_log(c.T_prev_curr[:3, :3])) < 2e-3


def test_camera_increment_through_extrinsic():
    """The camera increment is T_C_I T_I T_I_C, checked against the true camera poses."""
    w = np.array([0.2, 0.4, -0.3])
    a_b = np.array([0.3, -0.2, 0.1])
    R0 = se3.so3_exp(np.array([0.5, -0.1, 0.2]))
    imu = _imu_for(w, a_b, R0, 0.5)
    T_I_C = se3.make_T(se3.so3_exp(np.array([1.2, -1.1, 0.3])), np.array([-0.02, -0.06, 0.01]))
    integ = ImuIntegrator(imu, T_I_C, g_w=G_W)
    v0_I = np.array([0.1, 0.2, -0.1])
    T_w_I0 = se3.make_T(R0, np.zeros(3))
    T_w_c0 = T_w_I0 @ T_I_C
    # filter velocity in the camera frame consistent with the IMU's
    w_c = T_I_C[:3, :3].T @ w
    p_I_in_C = se3.inv(T_I_C)[:3, 3]
    v_c = T_I_C[:3, :3].T @ v0_I - np.cross(w_c, p_I_in_C)
    np.testing.assert_allclose(integ.body_velocity_I(np.concatenate([v_c, w_c])), v0_I, atol=1e-12)
    dt = 0.3
    R1, p1, v1_w = _motion(w, a_b, R0, R0 @ v0_I, dt)
    T_w_c1 = se3.make_T(R1, p1) @ T_I_C
    c = integ.control(0.0, dt, T_w_c0, np.concatenate([v_c, w_c]), P_nu=np.eye(6) * 1e-4)
    err = se3.log(se3.inv(se3.inv(T_w_c0) @ T_w_c1) @ c.T_prev_curr)
    assert np.linalg.norm(err[:3]) < 2e-4 and np.linalg.norm(err[3:]) < 1e-9
    assert c.cov.shape == (6, 6) and np.linalg.eigvalsh(c.cov).min() > 0
    # the camera twist at t1 (what a lost frame keeps): v1 = R_CI R1^T v1_w - w_c x p, w_c
    v1_c = T_I_C[:3, :3].T @ (R1.T @ v1_w) - np.cross(w_c, p_I_in_C)
    np.testing.assert_allclose(c.nu_curr[3:], w_c, atol=1e-9)
    assert np.linalg.norm(c.nu_curr[:3] - v1_c) < 1e-3  # 200 Hz midpoint integration over 0.3 s
    assert np.linalg.norm(v1_c - v_c) > 0.05  # the velocity changed: keeping v0 would be wrong
    assert np.allclose(c.nu_cov, c.nu_cov.T) and np.linalg.eigvalsh(c.nu_cov).min() > 0
    # its linear part holds the prior's velocity variance (1e-4 per axis) and more
    assert np.linalg.eigvalsh(c.nu_cov[:3, :3]).min() > 0.9e-4


def test_imu_control_tighter_and_more_right_than_constant_velocity():
    """A camera at rest starts to rotate (and accelerate): the IMU prior beats constant velocity."""
    w = np.array([0.0, 1.5, 0.4])  # rad/s from t = 0
    a_b = np.array([1.0, 0.0, 0.5])
    R0 = se3.so3_exp(np.array([0.2, 0.1, -0.3]))
    noise = ImuNoise()
    rng = np.random.default_rng(7)
    imu = _imu_for(w, a_b, R0, 0.2, rng=rng, noise=noise)
    T_I_C = se3.make_T(se3.so3_exp(np.array([1.2, -1.1, 0.3])), np.array([-0.02, -0.06, 0.01]))
    integ = ImuIntegrator(imu, T_I_C, noise, g_w=G_W)
    dt = 0.05
    T_w_c0 = se3.make_T(R0, np.zeros(3)) @ T_I_C
    R1, p1, _ = _motion(w, a_b, R0, np.zeros(3), dt)
    T_w_c1 = se3.make_T(R1, p1) @ T_I_C

    mm = MotionModel(4.0, 6.0, 0.5, 1.0, 0.5)  # the default dynamics parameters
    s = MotionState(T_w_c0, np.eye(6) * 1e-6, np.zeros(6), np.eye(6) * 1e-4, 0.0)  # believed at rest
    T_cv, S_cv, _, _ = mm.predict(s, dt, None)
    ctl = integ.control(0.0, dt, s.T_w_c, s.nu, s.P, s.Sigma)
    T_imu, S_imu, _, _ = mm.predict(s, dt, ctl)

    def err(T):
        e = se3.log(se3.inv(T) @ T_w_c1)
        return np.linalg.norm(e[:3]), np.linalg.norm(e[3:])

    et_cv, er_cv = err(T_cv)
    et_imu, er_imu = err(T_imu)
    assert er_imu < 0.05 * er_cv and et_imu < 0.5 * et_cv  # more right
    assert np.trace(S_imu) < 0.1 * np.trace(S_cv)  # tighter
    # and the truth is consistent with the IMU prior (Mahalanobis, 6 dof, 99.9 %)
    e = se3.log(se3.inv(T_imu) @ T_w_c1)
    assert e @ np.linalg.solve(S_imu, e) < 22.5


def test_bias_jacobians_match_finite_differences():
    """J_bg and J_ba of the pre-integration (first order, right perturbation of dR) against
    central differences of re-integrating with perturbed biases, on a turning, accelerating
    0.5 s window: within 2 % of the largest entry (the velocity and position rows of J_bg
    are about 1 % off, the first-order propagation of the midpoint rule)."""
    imu = _imu_for(np.array([0.6, -0.4, 1.2]), np.array([1.0, -0.5, 0.3]), se3.so3_exp(np.array([0.2, 0.1, -0.3])), 0.6)
    bg0, ba0 = np.array([0.01, -0.02, 0.005]), np.array([0.05, 0.02, -0.04])
    pi = preintegrate(imu, 0.05, 0.55, ImuNoise(), bg0, ba0)
    h = 1e-5
    for J, which in ((pi.J_bg, "g"), (pi.J_ba, "a")):
        for k in range(3):
            e = np.zeros(3)
            e[k] = h
            p_, m_ = [
                preintegrate(imu, 0.05, 0.55, ImuNoise(), bg0 + s * e * (which == "g"), ba0 + s * e * (which == "a"))
                for s in (1.0, -1.0)
            ]
            num = np.concatenate([se3.so3_log(m_.dR.T @ p_.dR), p_.dv - m_.dv, p_.dp - m_.dp]) / (2 * h)
            np.testing.assert_allclose(J[:, k], num, atol=0.02 * np.abs(num).max())
    # the gyro bias moves all three increments, the accelerometer bias not the rotation
    assert np.abs(pi.J_bg[0:3]).max() > 0.4 and np.abs(pi.J_ba[0:3]).max() == 0.0
