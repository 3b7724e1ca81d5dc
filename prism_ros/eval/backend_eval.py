"""The back end's trajectory against ground truth: ATE and the calibration of its relative motions (offline).

The optimised pose of frame t is ``X_a(t) D_a(t)``: ``X_a`` the optimised pose of the latest keyframe at or before t
(:meth:`~prism_ros.core.backend.worker.BackEnd.optimised_trajectory`), ``D_a(t) = T_a^-1 T_t`` the filter's motion
since it.  The k-frame motion from s = t - k to t is then ``R = D_a(s)^-1 (X_a^-1 X_b) D_b(t)``; to first order, with
the three parts independent (right perturbations alpha, eta, beta)::

    xi = -Ad(R^-1) alpha + Ad(D_b(t)^-1) eta + beta
    C  = Ad(R^-1) C_alpha Ad(R^-1)^T + Ad(D_b^-1) C_eta Ad(D_b^-1)^T + C_beta

``C_alpha``, ``C_beta``: the filter's relative-motion covariances from the keyframe's frame
(:func:`~prism_ros.core.uncertainty.relative_covariance`); ``C_eta``: the graph's relative marginal of the two
keyframes.  Inside one keyframe's span (a = b) the motion is the filter's and so is its covariance.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from prism_ros.core import se3, uncertainty
from prism_ros.eval import calibration, metrics

__all__ = ["OptimisedTrajectory", "optimised_figures"]


class OptimisedTrajectory:
    """The optimised poses of an offline run with a back end and their k-frame covariances (module docstring)."""

    def __init__(self, run):
        be = run.backend
        self.T_odom = run.T_est
        self.stamps = np.asarray(run.stamps, dtype=np.float64)
        self.P, self.F = run.error_cov, run.error_transition
        self.keys, ks, K_odom, _ = be.optimised_keyframes()
        self.T = be.optimised_trajectory(self.stamps, self.T_odom)
        self.backend = be
        n = len(self.T)
        self.kf = np.clip(np.searchsorted(ks, self.stamps, side="right") - 1, 0, max(len(ks) - 1, 0))
        # each keyframe's frame (keyframes are frames: their stamps are the frames')
        self.kf_frame = np.clip(np.searchsorted(self.stamps, ks), 0, n - 1)
        self._eta: Dict[tuple, np.ndarray] = {}

    def _filter_rel(self, f0: int, f1: int) -> np.ndarray:
        """The filter's covariance of its motion from frame f0 to f1 (before f0 too: the inverse motion's)."""
        if f1 == f0:
            return np.zeros((6, 6))
        lo, hi = min(f0, f1), max(f0, f1)
        Phi = np.eye(12)
        for j in range(lo + 1, hi + 1):
            Phi = self.F[j] @ Phi
        D = se3.inv(self.T_odom[lo]) @ self.T_odom[hi]
        C = uncertainty.relative_covariance(self.P[hi], self.P[lo], Phi, se3.adjoint(se3.inv(D)))
        if f1 < f0:  # the inverse motion D^-1: Ad(D) C Ad(D)^T
            A = se3.adjoint(D)
            C = A @ C @ A.T
        return C

    def _relative_marginal(self, a: int, b: int) -> np.ndarray:
        if (a, b) not in self._eta:
            self._eta[(a, b)] = self.backend.relative_marginal(int(self.keys[a]), int(self.keys[b]))
        return self._eta[(a, b)]

    def lag_covariances(self, k: int) -> np.ndarray:
        """(N-k, 6, 6) covariances of the optimised trajectory's k-frame motions, window t - k .. t in row t - k."""
        T, n = self.T_odom, len(self.T)
        if k < 1 or n <= k:
            return np.zeros((0, 6, 6))
        out = uncertainty.lag_covariances(T, self.P, self.F, k)
        for t in range(k, n):
            s = t - k
            a, b = int(self.kf[s]), int(self.kf[t])
            if a == b:
                continue
            fa, fb = int(self.kf_frame[a]), int(self.kf_frame[b])
            C_alpha, C_beta = self._filter_rel(fa, s), self._filter_rel(fb, t)
            A_r = se3.adjoint(se3.inv(se3.inv(self.T[s]) @ self.T[t]))
            A_d = se3.adjoint(se3.inv(se3.inv(T[fb]) @ T[t]))
            C = A_r @ C_alpha @ A_r.T + A_d @ self._relative_marginal(a, b) @ A_d.T + C_beta
            out[s] = 0.5 * (C + C.T)
        return out


def optimised_figures(run, T_gt_all, gt_index, T_gt, body_frame=None) -> Dict[str, object]:
    """``optimised`` of metrics.json: the optimised trajectory's ATE (frames with ground truth) and, with every
    frame's ground truth, the calibration of its relative motions (camera frame; ``body_frame`` (T_body_cam): that
    frame's too)."""
    opt = OptimisedTrajectory(run)
    m: Dict[str, object] = {}
    if T_gt is not None and len(gt_index):
        err = metrics.ate_errors(opt.T[gt_index], T_gt)
        m["ate_rmse_m"] = float(np.sqrt(np.mean(err**2)))
        m["ate_max_m"] = float(err.max())
    if T_gt_all is not None and len(opt.T) >= 2:
        ok = run.recorder.tracking_ok
        m["calibration"] = calibration.calibration_report(opt.T, T_gt_all, opt.lag_covariances, valid=ok)
        if body_frame is not None:
            Eb, Gb, Cb, _, _ = calibration.to_body_frame(
                body_frame, opt.T, T_gt_all, opt.lag_covariances, run.velocity, run.velocity_cov
            )
            m["calibration_body"] = calibration.calibration_report(Eb, Gb, Cb, valid=ok)
    return m
