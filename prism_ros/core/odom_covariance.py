"""The odom-frame pose covariance (REP-105): per-step covariances compounded along the path.

The filter's ``step_cov`` is the covariance of one step (frame t-1 -> t), so the odom-frame covariance
compounds them to first order since the last reset (right perturbation, camera frame)::

    C_t = Ad(dT_t^-1) C_{t-1} Ad(dT_t^-1)^T + S_t,     dT_t = T_{t-1}^-1 T_t

While tracking is lost the step covariance holds the lost pose's inflation, so C grows faster.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from . import se3

__all__ = ["OdomCovarianceAccumulator"]


class OdomCovarianceAccumulator:
    """Compounds per-step pose covariances into the odom-frame pose covariance.

    ``update(T_w_c, step_cov)`` once per filter step; ``reset(T_w_c)`` when the filter or the odom frame restarts.
    ``covariance``: the right-perturbation covariance of the pose relative to the odom origin (for ROS:
    :func:`prism_ros.core.se3.cov_body_to_world`).  ``lost_sigma`` (m, rad per step) is added while lost.
    """

    def __init__(self, C0: Optional[np.ndarray] = None, lost_sigma: Optional[np.ndarray] = None):
        self.C0 = np.zeros((6, 6)) if C0 is None else np.asarray(C0, dtype=np.float64).copy()
        self.lost_var = np.zeros(6) if lost_sigma is None else np.square(np.asarray(lost_sigma, dtype=np.float64))
        self.reset()

    def reset(self, T_w_c: Optional[np.ndarray] = None) -> None:
        """Restart: the next pose is the new odom origin (covariance ``C0``)."""
        self.T_last = None if T_w_c is None else np.asarray(T_w_c, dtype=np.float64).copy()
        self.C = self.C0.copy()
        self.steps = 0

    def update(
        self, T_w_c: np.ndarray, step_cov: np.ndarray, tracking_ok: bool = True, origin_cov: Optional[np.ndarray] = None
    ) -> np.ndarray:
        """Compound the step to ``T_w_c`` with covariance ``step_cov``; returns the new C.  The first pose after a reset
        is the origin, with covariance ``origin_cov`` (default ``C0``; never singular).
        """
        T = np.asarray(T_w_c, dtype=np.float64)
        if self.T_last is None:  # the first pose after a reset is the origin
            self.T_last = T.copy()
            if origin_cov is not None:
                self.C = np.asarray(origin_cov, dtype=np.float64).copy()
            return self.C.copy()
        A = se3.adjoint(se3.inv(se3.inv(self.T_last) @ T))
        C = A @ self.C @ A.T + np.asarray(step_cov, dtype=np.float64)
        if not tracking_ok:
            C = C + np.diag(self.lost_var)
        self.C = 0.5 * (C + C.T)
        self.T_last = T.copy()
        self.steps += 1
        return self.C.copy()

    @property
    def covariance(self) -> np.ndarray:
        return self.C.copy()
