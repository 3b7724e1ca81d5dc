"""Agent dynamics: constant body velocity with white-noise acceleration, or a control.

State: pose T_w_c (right-perturbation covariance Sigma) and body velocity nu = (v, w) with covariance P,
kept as two Gaussians (the cross-covariance is dropped after each step: PRISM's factorised filter).

Velocity update (:meth:`MotionModel.velocity_update`): write the tracked pose as ``T = T_pred Exp(delta)``
and ``nu = nu_pred + n``, ``n ~ N(0, P_pred)``; to first order the step is ``delta = dt n``.  The tracker
returned ``delta_hat = Log(T_pred^-1 T_new)`` with ``Sigma_new^-1 = H_data + Sigma_pred^-1`` (``H_data``:
its data-only Hessian, model-error inflation included), so the data-only estimate
``H_data delta_d = Sigma_new^-1 delta_hat`` measures n without the prior::

    z = delta_d / dt = n + w,    w ~ N(0, H_data^-1 / dt^2),
    K = P_pred (P_pred + H_data^-1 / dt^2)^-1,
    nu = nu_pred + K z,   P = (I - K) P_pred.

The prior enters once (P_pred) and the data once (H_data); using ``Sigma_new`` as the measurement's
covariance would count the prior twice (docs/design.md, "Dynamics and velocity").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from . import se3
from .types import Control

__all__ = ["MotionModel", "MotionState"]


@dataclass
class MotionState:
    T_w_c: np.ndarray
    Sigma: np.ndarray
    nu: np.ndarray
    P: np.ndarray
    stamp: Optional[float] = None


class MotionModel:
    def __init__(self, accel_sigma: float, ang_accel_sigma: float, v0_sigma: float, w0_sigma: float, max_dt: float):
        self.q = np.array([accel_sigma] * 3 + [ang_accel_sigma] * 3) ** 2
        self.P0 = np.diag(np.array([v0_sigma] * 3 + [w0_sigma] * 3) ** 2)
        self.max_dt = max_dt

    def initial_state(self, T_w_c: np.ndarray, stamp: Optional[float], pose_sigma: float = 1e-4) -> MotionState:
        return MotionState(T_w_c.copy(), np.eye(6) * pose_sigma**2, np.zeros(6), self.P0.copy(), stamp)

    def clamp_dt(self, dt: float) -> float:
        return float(min(max(dt, 1e-4), self.max_dt))

    def predict(
        self, s: MotionState, dt: float, control: Optional[Control] = None
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One-step prediction (T_pred, Sigma_pred, nu_pred, P_pred).  Constant velocity: T_pred = T Exp(dt nu),
        Sigma_pred = Ad(Exp(dt nu)^-1) Sigma Ad^T + dt^2 P_pred, P_pred = P + Q dt; with a control U: T_pred = T U,
        Sigma_pred = Ad(U^-1) Sigma Ad^T + Sigma_U.
        """
        P_pred = s.P + np.diag(self.q) * dt
        if control is None:
            U = se3.exp(dt * s.nu)
            Sigma_U = dt * dt * P_pred
        else:
            U = np.asarray(control.T_prev_curr, dtype=np.float64)
            Sigma_U = np.asarray(control.cov, dtype=np.float64)
        A = se3.adjoint(se3.inv(U))
        Sigma_pred = A @ s.Sigma @ A.T + Sigma_U
        Sigma_pred = 0.5 * (Sigma_pred + Sigma_pred.T)
        return s.T_w_c @ U, Sigma_pred, s.nu.copy(), P_pred

    @staticmethod
    def velocity_update(
        T_prev: np.ndarray,
        Sigma_prev: np.ndarray,
        T_new: np.ndarray,
        Sigma_new: np.ndarray,
        nu_pred: np.ndarray,
        P_pred: np.ndarray,
        dt: float,
        T_pred: Optional[np.ndarray] = None,
        H_data: Optional[np.ndarray] = None,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Velocity posterior (nu, P) given the tracked pose ``T_new`` (covariance ``Sigma_new``), with the velocity
        prior N(``nu_pred``, ``P_pred``) counted once (module docstring).

        With the tracker's prediction ``T_pred`` and data-only Hessian ``H_data``, the data-only step estimate is
        the measurement.  Without them (a control made the prediction): y = Log(T_prev^-1 T_new) / dt with
        Cov = (Ad(dT^-1) Sigma_prev Ad^T + Sigma_new) / dt^2.  ``dt`` in s; nu = (v, w), camera frame (m/s, rad/s).
        """
        if T_pred is not None and H_data is not None:
            delta_hat = se3.log(se3.inv(T_pred) @ T_new)
            Hd = 0.5 * (H_data + H_data.T)
            try:
                delta_d = np.linalg.solve(Hd, np.linalg.solve(Sigma_new, delta_hat))
                R = np.linalg.inv(Hd) / (dt * dt)
            except np.linalg.LinAlgError:  # no data information: the prior stands
                return nu_pred.copy(), P_pred.copy()
            S = P_pred + R
            K = np.linalg.solve(S.T, P_pred.T).T  # P S^-1 (S symmetric)
            nu = nu_pred + K @ (delta_d / dt)
            P = (np.eye(6) - K) @ P_pred
            return nu, 0.5 * (P + P.T)
        dT = se3.inv(T_prev) @ T_new
        y = se3.log(dT) / dt
        A = se3.adjoint(se3.inv(dT))
        R = (A @ Sigma_prev @ A.T + Sigma_new) / (dt * dt)
        S = P_pred + R
        K = np.linalg.solve(S.T, P_pred.T).T  # P S^-1 (S symmetric)
        nu = nu_pred + K @ (y - nu_pred)
        P = (np.eye(6) - K) @ P_pred
        P = 0.5 * (P + P.T)
        return nu, P
