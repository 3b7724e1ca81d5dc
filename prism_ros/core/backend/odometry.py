"""The odometry between keyframes: the covariance of the filter's motion since a keyframe, the graph's odometry
factor."""

from __future__ import annotations

import numpy as np

from .. import se3
from ..uncertainty import relative_covariance

__all__ = ["RelativeMotion", "carry"]


def carry(cov: np.ndarray, T_a: np.ndarray, T_b: np.ndarray, added: np.ndarray) -> np.ndarray:
    """A pose covariance at ``T_a`` carried to ``T_b = T_a dT`` (right perturbations), plus the motion's own
    ``added``: ``Ad(dT^-1) cov Ad(dT^-1)^T + added``."""
    A = se3.adjoint(se3.inv(se3.inv(T_a) @ T_b))
    return A @ cov @ A.T + added


class RelativeMotion:
    """The covariance of the motion from a keyframe to the latest frame: the error model's lag formula, or the steps'
    covariances compounded where a step carries no error state."""

    def __init__(self, res):
        self.T0 = np.asarray(res.T_w_c, dtype=np.float64)
        self.P0 = None if res.error_cov is None else np.asarray(res.error_cov, dtype=np.float64)
        self.Phi = np.eye(12)
        self.compounded = np.zeros((6, 6))
        self.T_last = self.T0
        self.P_last = self.P0

    def step(self, res) -> None:
        T = np.asarray(res.T_w_c, dtype=np.float64)
        if self.P0 is not None and res.error_transition is not None and res.error_cov is not None:
            self.Phi = np.asarray(res.error_transition) @ self.Phi
            self.P_last = np.asarray(res.error_cov, dtype=np.float64)
        else:
            self.P0 = None
        self.compounded = carry(self.compounded, self.T_last, T, np.asarray(res.step_covariance, dtype=np.float64))
        self.T_last = T

    def cov(self) -> np.ndarray:
        if self.P0 is not None:
            B = se3.adjoint(se3.inv(se3.inv(self.T0) @ self.T_last))
            C = relative_covariance(self.P_last, self.P0, self.Phi, B)
            if np.all(np.isfinite(C)) and np.linalg.eigvalsh(C).min() > 0:
                return C
        return 0.5 * (self.compounded + self.compounded.T) + np.eye(6) * 1e-14
