"""The reported pose uncertainty (prism_ros.core.uncertainty): its covariance algebra against a Monte Carlo of the
generative error model it states, and its behaviour over a loss and a recovery."""

from types import SimpleNamespace

import numpy as np
import pytest

from prism_ros.core import se3
from prism_ros.core.uncertainty import ErrorModelConstants, PoseErrorModel, lag_covariances, velocity_cov
from prism_ros.eval.calibration import CHI2_50_6DOF, CHI2_95_6DOF

PATCH = 9.0


def _spd(rng, scale):
    A = rng.normal(size=(6, 6)) * 0.3 + np.eye(6)
    return scale * (A @ A.T)


def _tracks(rng, n):
    """Tracker outputs of n frames: data Hessian H (weighted as with an effective patch), prior information L,
    posterior S = (H + L)^-1, residual level s2 (some frames above s2_0)."""
    out = []
    for t in range(n):
        patch = PATCH * rng.uniform(1.0, 50.0)
        H = np.linalg.inv(_spd(rng, 1e-6)) * PATCH / patch
        L = np.linalg.inv(_spd(rng, 4e-6)) * rng.uniform(0.1, 3.0)
        S = np.linalg.inv(H + L)
        out.append(
            SimpleNamespace(cov=0.5 * (S + S.T), H_data=H, L=L, patch_px=patch, residual_level=rng.uniform(0.3, 2))
        )
    return out


def _path(rng, n):
    T = [np.eye(4)]
    for _ in range(n - 1):
        T.append(T[-1] @ se3.exp(np.concatenate([rng.normal(0, 0.02, 3), rng.normal(0, 0.03, 3)])))
    return np.stack(T)


def test_error_covariances_match_a_monte_carlo_of_the_stated_error_model():
    """Draw the errors of the module docstring's model, frame by frame, and compare their covariances with the
    model's P_t and lag_covariances at lags 1, 5 and 12."""
    rng = np.random.default_rng(7)
    c = ErrorModelConstants(
        map_feedback=0.7,
        sys_trans_per_rad=0.004,
        sys_rot_per_rad=0.005,
    )
    n, runs = 14, 20000
    T = _path(rng, n)
    tracks = _tracks(rng, n)
    model = PoseErrorModel(PATCH, c)
    reports = [model.start(np.diag([1e-8] * 6))]
    for t in range(1, n):
        reports.append(model.update(T[t - 1], T[t], tracks[t]))
    P = np.stack([r.error_cov for r in reports])
    F = np.stack([r.error_transition for r in reports])

    # the generative model, drawn independently of the module's algebra
    e = rng.multivariate_normal(np.zeros(6), np.diag([1e-8] * 6), size=runs)
    d = np.zeros((runs, 6))
    E = [e]
    for t in range(1, n):
        tr = tracks[t]
        dT = se3.inv(T[t - 1]) @ T[t]
        A = se3.adjoint(se3.inv(dT))
        S, H, L = tr.cov, tr.H_data, tr.L
        H9 = H * tr.patch_px / PATCH
        dp = np.linalg.norm(dT[:3, 3])
        dth = np.linalg.norm(se3.so3_log(dT[:3, :3]))
        R = np.diag(c.systematic(tr.residual_level, dth))
        if t == 1:  # d starts at its stationary covariance, then follows the AR(1) step
            d = rng.multivariate_normal(np.zeros(6), R, size=runs)
        d = c.sys_corr * d @ A.T + rng.multivariate_normal(np.zeros(6), (1 - c.sys_corr**2) * R, size=runs)
        p = rng.multivariate_normal(np.zeros(6), np.diag(c.prediction(dp, dth, controlled=False)), size=runs)
        w = rng.multivariate_normal(np.zeros(6), c.white_scale * np.linalg.inv(H9), size=runs)
        prev = e @ A.T
        e = (prev + p) @ (S @ L).T + (c.map_feedback * prev + w + d) @ (S @ H).T
        E.append(e)
    E = np.stack(E)  # (n, runs, 6)

    def whitened_error(emp, pred):
        W = np.linalg.cholesky(np.linalg.inv(pred))
        return np.abs(W.T @ emp @ W - np.eye(6)).max()

    for t in (3, n - 1):
        assert whitened_error(np.cov(E[t].T), P[t][:6, :6]) < 0.05
    t = n - 1
    for k in (1, 5, 12):
        C_k = lag_covariances(T, P, F, k)[t - k]
        B = se3.adjoint(se3.inv(se3.inv(T[t - k]) @ T[t]))
        xi = E[t] - E[t - k] @ B.T  # first order: Log(dT_true^-1 dT_est)
        assert whitened_error(np.cov(xi.T), C_k) < 0.05
        d2 = np.einsum("ni,ni->n", xi, np.linalg.solve(C_k, xi.T).T)
        assert np.mean(d2 <= CHI2_95_6DOF) == pytest.approx(0.95, abs=0.01)
        assert np.median(d2) == pytest.approx(CHI2_50_6DOF, rel=0.05)
    # pose_cov: the error relative to the map the frame was tracked against, e_t - beta A e_{t-1}
    A = se3.adjoint(se3.inv(se3.inv(T[t - 1]) @ T[t]))
    assert whitened_error(np.cov((E[t] - c.map_feedback * E[t - 1] @ A.T).T), reports[t].pose_cov) < 0.05
    # the step covariance is the lag-1 covariance
    assert np.allclose(reports[t].step_cov, lag_covariances(T, P, F, 1)[t - 1], rtol=1e-9, atol=1e-18)


def test_a_lost_stretch_grows_the_map_relative_covariance_and_the_way_back_says_how_far_it_jumped():
    """While lost nothing is fused, so the pose's error relative to the map accumulates the predictions' errors
    and the lost-pose inflation; the first frame tracked again (recovered or not) is back at the map, and its
    step covariance carries the whole lost stretch: how far the pose may have jumped."""
    rng = np.random.default_rng(3)
    n = 12
    T = _path(rng, n)
    tracks = _tracks(rng, n)
    lost_cov = np.diag([0.02**2] * 3 + [0.01**2] * 3)
    for fresh in (False, True):  # re-tracked from the prediction, or recovered
        model = PoseErrorModel(PATCH)
        model.start(np.diag([1e-8] * 6))
        for t in range(1, 5):  # predicted by a control (an IMU)
            tracked = model.update(T[t - 1], T[t], tracks[t], controlled=True)
        lost = [model.update(T[t - 1], T[t], None, lost_cov=lost_cov, controlled=True) for t in range(5, 9)]
        sig = [np.sqrt(np.trace(r.pose_cov[:3, :3])) for r in [tracked] + lost]
        assert np.all(np.diff(sig) > 0) and sig[-1] > 0.02 * np.sqrt(3 * 4) * 0.99
        back = model.update(T[8], T[9], tracks[9], fresh=fresh, controlled=True)
        assert np.trace(back.pose_cov) < 0.05 * np.trace(lost[-1].pose_cov)
        assert np.trace(back.step_cov) > 0.9 * np.trace(lost[-1].error_cov[:6, :6])
        assert not back.error_transition.any()  # nothing carries over a loss but the map
        after = model.update(T[9], T[10], tracks[10], controlled=True)
        assert np.trace(after.step_cov) < 0.05 * np.trace(back.step_cov)


def test_relocalising_in_a_given_map_reports_the_prior_until_a_frame_tracks():
    rng = np.random.default_rng(5)
    tracks = _tracks(rng, 3)
    broad = np.diag([0.5**2] * 3 + [0.5**2] * 3)
    model = PoseErrorModel(PATCH)
    for _ in range(3):  # no estimate yet: the pose is the prior
        r = model.update(None, np.eye(4), None, lost_cov=broad)
        assert np.allclose(r.pose_cov, broad)
    r = model.update(None, np.eye(4), tracks[1], fresh=True)  # the first track: relative to the given map
    assert np.trace(r.pose_cov) < 1e-3 * np.trace(broad)
    assert np.trace(r.step_cov) > np.trace(broad)  # it jumped from the prior


def test_velocity_covariance_with_the_steps_actual_error():
    """The filter weights the pose step y by R_filter (the tracker's covariances); when y's error is R_error instead,
    the posterior's error covariance is velocity_cov(P_post, P_pred, R_error): against a Monte Carlo of the update,
    and equal to the filter's own P_post when R_error is what it weighted by."""
    from prism_ros.core.dynamics import MotionModel

    rng = np.random.default_rng(3)
    P_pred, R_filter, R_error = _spd(rng, 1e-3), _spd(rng, 4e-2), _spd(rng, 2e-4)
    K = P_pred @ np.linalg.inv(P_pred + R_filter)
    P_post = (np.eye(6) - K) @ P_pred
    runs = 200000
    e_pred = rng.multivariate_normal(np.zeros(6), P_pred, size=runs)
    e_y = rng.multivariate_normal(np.zeros(6), R_error, size=runs)
    e_post = e_pred + (e_y - e_pred) @ K.T  # nu = nu_pred + K (y - nu_pred)
    C = velocity_cov(P_post, P_pred, R_error)
    np.testing.assert_allclose(np.cov(e_post.T), C, atol=0.02 * np.abs(C).max())
    assert np.trace(C) < 0.9 * np.trace(P_post)  # the step errs less than the filter weighted it
    np.testing.assert_allclose(velocity_cov(P_post, P_pred, R_filter), P_post, rtol=1e-9, atol=1e-15)
    # the filter's own update (a control made the prediction): the same gain
    dt, T_prev = 0.05, np.eye(4)
    T_new = se3.exp(np.array([0.01, 0.0, 0.02, 0.0, 0.01, 0.0]))
    _, P = MotionModel.velocity_update(T_prev, np.zeros((6, 6)), T_new, R_filter * dt * dt, np.zeros(6), P_pred, dt)
    np.testing.assert_allclose(P, P_post, rtol=1e-9, atol=1e-15)
