"""Dynamics: prediction and the closed-form velocity update."""

import numpy as np

from prism_ros.core import se3
from prism_ros.core.dynamics import MotionModel
from prism_ros.core.types import Control, StepOutcome


def test_velocity_converges_on_constant_velocity_trajectory():
    nu_true = np.array([0.3, -0.1, 0.2, 0.1, 0.4, -0.2])
    dt = 1 / 30
    m = MotionModel(0.5, 0.5, 1.0, 1.0, 0.5)
    s = m.initial_state(np.eye(4), 0.0)
    pose_cov = np.eye(6) * 1e-6
    rng = np.random.default_rng(1)
    traces, late = [], []
    for k in range(1, 120):
        T_pred, S_pred, nu_pred, P_pred = m.predict(s, dt)
        T_true = s.T_w_c @ se3.exp(dt * nu_true)
        T_obs = T_true @ se3.exp(rng.multivariate_normal(np.zeros(6), pose_cov))
        nu, P = m.velocity_update(s.T_w_c, s.Sigma, T_obs, pose_cov, nu_pred, P_pred, dt)
        s.T_w_c, s.Sigma, s.nu, s.P = T_obs, pose_cov, nu, P
        traces.append(np.trace(P))
        if k > 70:
            late.append(nu)
        if k == 5:
            assert np.abs(nu - nu_true).max() < 0.15
    # unbiased, and the error is consistent with the reported covariance
    assert np.abs(np.mean(late, axis=0) - nu_true).max() < 0.03
    assert np.all(np.abs(s.nu - nu_true) < 4 * np.sqrt(np.diag(s.P)))
    # the velocity covariance shrinks from its broad prior and stays SPD
    assert traces[-1] < 0.2 * np.trace(m.P0)
    assert np.all(np.linalg.eigvalsh(s.P) > 0)


def test_prediction_constant_velocity_and_covariance_growth():
    m = MotionModel(2.0, 2.0, 0.1, 0.1, 0.5)
    s = m.initial_state(np.eye(4), 0.0)
    s.nu = np.array([1.0, 0, 0, 0, 0, np.pi / 2])
    T_pred, S_pred, _, P_pred = m.predict(s, 0.5)
    assert np.allclose(T_pred, se3.exp(0.5 * s.nu))
    # covariance grows by dt^2 (P + Q dt) for a pose that was certain
    A = se3.adjoint(se3.inv(se3.exp(0.5 * s.nu)))
    assert np.allclose(S_pred, A @ s.Sigma @ A.T + 0.25 * P_pred)
    assert np.all(np.linalg.eigvalsh(S_pred) > np.linalg.eigvalsh(s.Sigma).max())
    assert np.allclose(P_pred, s.P + np.diag(m.q) * 0.5)


def test_prediction_with_control_transports_covariance():
    m = MotionModel(2.0, 2.0, 0.1, 0.1, 0.5)
    s = m.initial_state(np.eye(4), 0.0)
    s.Sigma = np.diag([1e-2, 1e-4, 1e-4, 1e-6, 1e-6, 1e-6])
    U = se3.exp(np.array([0.0, 0.0, 0.0, 0.0, 0.0, np.pi / 2]))  # 90 deg yaw
    ctrl = Control(U, np.eye(6) * 1e-8)
    T_pred, S_pred, _, _ = m.predict(s, 0.1, ctrl)
    assert np.allclose(T_pred, U)
    # the large x uncertainty of the old body frame is the new frame's -y axis
    assert np.isclose(S_pred[1, 1], 1e-2 + 1e-8)
    assert np.isclose(S_pred[0, 0], 1e-4 + 1e-8)


def test_a_lost_frame_keeps_the_imu_velocity_for_a_short_loss_only():
    """Lost under an IMU control: the velocity is the IMU's at this frame (the MAV flies on);
    once the predicted pose is off by more than recovery_prior_sigma_m, or without an IMU
    twist, it restarts at rest.  (Restarting at rest on every loss stopped the IMU's
    prediction while the simulated V1_02 flight went on at 1.3 m/s.)"""
    from prism_ros.core.camera import Camera
    from prism_ros.core.config import FilterConfig
    from prism_ros.core.filter import PrismFilter

    f = PrismFilter(FilterConfig(), Camera(100.0, 100.0, 31.5, 23.5, 64, 48))
    nu = np.array([1.3, -0.2, 0.1, 0.05, 0.3, -0.1])
    ctl = Control(np.eye(4), np.eye(6) * 1e-6, nu_curr=nu, nu_cov=np.eye(6) * 4e-4)
    small, big = np.eye(6) * 0.03**2, np.eye(6) * (2 * f.cfg.recovery_prior_sigma_m) ** 2

    def velocity(Sigma, control, lost):  # no update (lost, or recovered after a gap)
        outcome = StepOutcome.LOST if lost else StepOutcome.RECOVERED
        nu, P, P_report = f._velocity(
            np.eye(4), Sigma, np.zeros(6), np.eye(6), 0.05, np.eye(4), None, control, outcome, not lost
        )
        np.testing.assert_array_equal(P_report, P)  # no update: the filter's own covariance is reported
        return nu, P

    v, P = velocity(small, ctl, True)
    np.testing.assert_allclose(v, nu)
    np.testing.assert_allclose(P, np.eye(6) * 4e-4)
    for Sigma, control, lost in ((big, ctl, True), (small, None, True), (small, ctl, False)):
        v, P = velocity(Sigma, control, lost)
        np.testing.assert_allclose(v, 0.0)
        np.testing.assert_allclose(P, f.motion.P0)
