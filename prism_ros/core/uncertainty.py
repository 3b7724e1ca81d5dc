"""The reported pose uncertainty: a linear model of the error the filter actually makes.

The tracker's Laplace covariance is the filter's *weighting* of its data against the dynamics prior (it
sets the trajectory); it is not the error's covariance.  On real images the data's errors are larger
than the noise model and correlated from frame to frame, and on fast motion the prior's prediction is
what errs.  This module propagates the estimator's error through the filter's own gains instead
(docs/uncertainty.md, "The reported covariance"; the fit of the constants is documented there).

Error state ``x_t = (e_t, d_t)`` (12): ``e_t`` the pose's error (right perturbation, camera frame,
``(rho, phi)``), ``d_t`` the slowly varying (systematic) part of the data's error.  The
tracker's MAP is linear in the errors of its two inputs, so with its posterior covariance ``S``, its data
Hessian ``H`` (as weighted), its prior information ``L = S^-1 - H`` and ``A = Ad(dT^-1)`` of the step::

    e_t = S L (A e_{t-1} + p_t) + S H (beta A e_{t-1} + w_t + d_t)          d_t = rho A d_{t-1} + n_t

* ``beta A e_{t-1}``: the map the frame is tracked against was just fused at the recent poses, so the data
  follow that share of their error (``map_feedback``; near 1, the errors accumulate as the map follows);
* ``w_t ~ N(0, white_scale H9^-1)``: white data error, ``H9`` the data Hessian at ``laplace_patch_px`` (the noise
  model alone, without the model-error term; ``S H H9^-1 H S = (laplace_patch_px / patch) S H S``);
* ``n_t ~ N(0, (1 - rho^2) R_t)``, ``R_t = max(0, s2 - s2_0) diag(sys_trans_m^2 I, sys_rot_rad^2 I)
  + |dtheta|^2 diag(sys_trans_per_rad^2 I, sys_rot_per_rad^2 I)``: the systematic part, present when the residual
  level ``s2`` exceeds what the noise model explains, and on fast rotation (rolling shutter, blur: errors that
  the residuals do not show);
* ``p_t ~ N(0, Q_t)``, ``Q_t = diag((q_t^2 + (q_t' |dp|)^2) I, (q_r^2 + (q_r' |dtheta|)^2) I)``: the
  prediction's error, growing with the step's translation ``|dp|`` and rotation ``|dtheta|``; one set of
  constants for a control (IMU, odometry), one for the constant-velocity model.

Hence ``x_t = F_t x_{t-1} + noise`` and ``P_t = F_t P_{t-1} F_t^T + W_t``.  A lost frame keeps the
prediction (``e_t = A e_{t-1} + p_t``, plus the filter's lost-pose inflation) and fuses nothing.  A track whose
prior was not the prediction (a recovery, a gap) keeps only the map's share (``F_t[e, e] = beta S H A``; the
prior's error is its own covariance ``L^-1``); the first frame back after a loss follows the map's error from
before the loss (``F_t = 0``).  Reported per frame (:class:`ErrorReport`):

* ``pose_cov``: the pose relative to the map it was tracked against, ``Cov(e_t - beta A e_{t-1})`` (``~/pose``);
  while lost it accumulates the predictions' errors and the lost-pose inflation, since nothing is fused;
* ``step_cov = Cov(e_t - A e_{t-1})``: the step from the previous frame (``~/odometry`` compounds it);
* ``error_cov = P_t`` and ``error_transition = F_t``, from which :func:`lag_covariances` gives the covariance
  of any k-frame relative motion: ``P_t + B P_{t-k} B^T - X - X^T`` with ``X = (F_t..F_{t-k+1} P_{t-k})[e, e] B^T``,
  ``B = Ad(dT_k^-1)``.  The map's drift is in it: the map carries the poses' errors forward (``beta``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from . import se3

__all__ = [
    "ErrorModelConstants",
    "ErrorReport",
    "PoseErrorModel",
    "lag_covariances",
    "relative_covariance",
    "step_motion",
    "velocity_cov",
]


@dataclass(frozen=True)
class ErrorModelConstants:
    """The model's constants (module docstring).  Fitted once, for every sensor and dataset, on data with exact or
    accurate ground truth; what each was fitted on: docs/uncertainty.md, "The reported covariance"."""

    white_scale: float = 2.81
    residual_level0: float = 0.5
    sys_trans_m: float = 0.000486
    sys_rot_rad: float = 0.000732
    sys_trans_per_rad: float = 0.0107
    sys_rot_per_rad: float = 0.0121
    sys_corr: float = 0.728
    map_feedback: float = 0.99972
    pred_trans_m: float = 0.00164
    pred_trans_per_m: float = 0.0389
    pred_rot_rad: float = 0.000459
    pred_rot_per_rad: float = 0.0200
    cv_pred_trans_m: float = 0.000966
    cv_pred_trans_per_m: float = 10.4
    cv_pred_rot_rad: float = 0.000516
    cv_pred_rot_per_rad: float = 0.0200

    def systematic(self, residual_level: float, dtheta: float) -> np.ndarray:
        """R_t (6,) diagonal: the systematic data error's variance at residual level s2 and |dtheta| rad a frame."""
        ex = max(0.0, float(residual_level) - self.residual_level0) if np.isfinite(residual_level) else 0.0
        t = ex * self.sys_trans_m**2 + (self.sys_trans_per_rad * dtheta) ** 2
        r = ex * self.sys_rot_rad**2 + (self.sys_rot_per_rad * dtheta) ** 2
        return np.array([t] * 3 + [r] * 3)

    def prediction(self, dp: float, dtheta: float, controlled: bool = True) -> np.ndarray:
        """Q_t (6,) diagonal: the prediction's error over a step of |dp| m and |dtheta| rad, with a control or with
        the constant-velocity model."""
        if controlled:
            k = (self.pred_trans_m, self.pred_trans_per_m, self.pred_rot_rad, self.pred_rot_per_rad)
        else:
            k = (self.cv_pred_trans_m, self.cv_pred_trans_per_m, self.cv_pred_rot_rad, self.cv_pred_rot_per_rad)
        qt = k[0] ** 2 + (k[1] * dp) ** 2
        qr = k[2] ** 2 + (k[3] * dtheta) ** 2
        return np.array([qt] * 3 + [qr] * 3)


@dataclass
class ErrorReport:
    """One frame's reported uncertainty (module docstring); 6x6 blocks are camera frame, ``(rho, phi)``."""

    pose_cov: np.ndarray
    step_cov: np.ndarray
    error_cov: np.ndarray
    error_transition: np.ndarray


def step_motion(T_prev: np.ndarray, T_new: np.ndarray):
    """(A = Ad(dT^-1), |dp| m, |dtheta| rad) of the step ``dT = T_prev^-1 T_new``."""
    dT = se3.inv(T_prev) @ T_new
    return se3.adjoint(se3.inv(dT)), float(np.linalg.norm(dT[:3, 3])), float(np.linalg.norm(se3.so3_log(dT[:3, :3])))


def velocity_cov(P_post: np.ndarray, P_pred: np.ndarray, R_error: np.ndarray) -> np.ndarray:
    """The covariance of a Kalman velocity posterior ``nu_pred + K (y - nu_pred)`` (prior covariance ``P_pred``, the
    filter's posterior ``P_post = (I - K) P_pred``) when the measurement y errs with covariance ``R_error`` rather
    than with what the filter weighted it by: ``(I - K) P_pred (I - K)^T + K R_error K^T``, ``K = I - P_post
    P_pred^-1``.  For the step between two tracked poses, ``y = Log(T_prev^-1 T_new) / dt``, ``R_error`` is
    ``step_cov / dt^2``.  ``P_pred`` stands for the prior's error too (the filter's own prediction covariance, not
    one propagated from the previous reported covariance): close where the step dominates (K near I)."""
    K = np.eye(6) - np.linalg.solve(P_pred.T, P_post.T).T
    IK = np.eye(6) - K
    return _sym(IK @ P_pred @ IK.T + K @ R_error @ K.T)


def _sym(M: np.ndarray) -> np.ndarray:
    return 0.5 * (M + M.T)


def _block(E: np.ndarray, G: np.ndarray, R: np.ndarray) -> np.ndarray:
    """The joint covariance of (E-part + G r, r) for r ~ N(0, R) independent of the E-part."""
    out = np.zeros((12, 12))
    GR = G @ R
    out[:6, :6] = E + GR @ G.T
    out[:6, 6:] = GR
    out[6:, :6] = GR.T
    out[6:, 6:] = R
    return out


class PoseErrorModel:
    """Propagates the filter's error state (module docstring), one :meth:`update` per filter step."""

    def __init__(self, laplace_patch_px: float, constants: Optional[ErrorModelConstants] = None):
        self.patch = float(laplace_patch_px)
        self.c = constants or ErrorModelConstants()
        #: a list to append each :meth:`start` and :meth:`update` call's inputs to (copies), or None: what
        #: :mod:`prism_ros.eval.error_fit` replays under other constants
        self.trace: Optional[List[dict]] = None
        self._reset()

    def reset(self) -> None:
        """Forget the error state (the filter's map was cleared or replaced)."""
        if self.trace is not None:
            self.trace.append(dict(kind="reset"))
        self._reset()

    def _reset(self) -> None:
        self.P: Optional[np.ndarray] = None  # the last frame's joint covariance
        self.rel: Optional[np.ndarray] = None  # the last pose_cov
        self.map_cov: Optional[np.ndarray] = None  # e's covariance at the last tracked frame (what the map carries)
        self.lost = False  # the last frame was not tracked
        self._sys_known = False  # d's covariance is set from the first residual level seen
        self._R_last = np.zeros(6)

    def start(self, pose_cov: np.ndarray, lost: bool = False) -> ErrorReport:
        """A new start: the first frame of a map (``e`` ~ N(0, pose_cov), the map's frame), or, ``lost``, a pose
        known only as ``pose_cov`` in a given map (relocalising)."""
        if self.trace is not None:
            self.trace.append(dict(kind="start", pose_cov=np.array(pose_cov, dtype=np.float64), lost=bool(lost)))
        return self._start(pose_cov, lost)

    def _start(self, pose_cov: np.ndarray, lost: bool) -> ErrorReport:
        self._reset()
        P = np.zeros((12, 12))
        P[:6, :6] = pose_cov
        self.P, self.rel, self.map_cov, self.lost = P, P[:6, :6].copy(), np.zeros((6, 6)), lost
        return ErrorReport(P[:6, :6].copy(), P[:6, :6].copy(), P.copy(), np.zeros((12, 12)))

    def update(
        self,
        T_prev: Optional[np.ndarray],
        T_new: np.ndarray,
        tr=None,
        fresh: bool = False,
        lost_cov: Optional[np.ndarray] = None,
        controlled: bool = False,
    ) -> ErrorReport:
        """One step from ``T_prev`` to ``T_new``.  ``tr``: the accepted track (a
        :class:`~prism_ros.core.tracker.TrackResult`), None while lost; ``fresh``: the track's prior was not the
        prediction from the previous estimate (a recovery, a gap); ``lost_cov``: the filter's inflation of a lost
        pose; ``controlled``: the prediction came from a control (IMU, odometry), not the constant-velocity model.
        ``T_prev`` None: no previous estimate (relocalising in a given map), where a lost pose is known only as
        ``lost_cov``.
        """
        if self.trace is not None:
            self.trace.append(_inputs(T_prev, T_new, tr, fresh, lost_cov, controlled))
        c = self.c
        if tr is None and (self.P is None or T_prev is None):
            return self._start(np.eye(6) * 1e-12 if lost_cov is None else lost_cov, True)
        if self.P is None:  # the first frame tracked in a given map
            self._start(np.zeros((6, 6)), True)
        A, dp, dth = (np.eye(6), 0.0, 0.0) if T_prev is None else step_motion(T_prev, T_new)
        Q = np.diag(c.prediction(dp, dth, controlled))
        rho, beta = c.sys_corr, c.map_feedback
        P_prev, rel = self.P, None
        F = np.zeros((12, 12))
        F[6:, 6:] = rho * A
        if tr is None:  # lost: the pose is the prediction, nothing is fused
            F[:6, :6] = A
            W = np.zeros((12, 12))
            W[:6, :6] = Q + (np.zeros((6, 6)) if lost_cov is None else lost_cov)
            W[6:, 6:] = (1.0 - rho**2) * np.diag(self._R_last)
            P = F @ P_prev @ F.T + W
            rel = A @ self.rel @ A.T + W[:6, :6]
            self.map_cov = A @ self.map_cov @ A.T  # the map's error, seen from the moving pose
        else:
            S = np.asarray(tr.cov, dtype=np.float64)
            H = np.asarray(tr.H_data, dtype=np.float64)
            L = _sym(np.linalg.inv(S) - H)
            G, SL = S @ H, S @ L
            self._R_last = c.systematic(tr.residual_level, dth)
            R = np.diag(self._R_last)
            if not self._sys_known:  # d starts at its stationary covariance
                P_prev = P_prev.copy()
                P_prev[6:, :], P_prev[:, 6:] = 0.0, 0.0
                P_prev[6:, 6:] = R
                self._sys_known = True
            # the white data error through the tracker: S H (a H9^-1) H S, H = H9 laplace_patch / patch; the
            # prior's error: the prediction's Q, or for a fresh track its own covariance L^-1
            white = c.white_scale * (self.patch / max(float(tr.patch_px), 1e-9)) * S @ H @ S
            E = white + (S @ L @ S if fresh else SL @ Q @ SL.T)
            if self.lost:  # back after a loss: the data follow the map's error from before it
                F[6:, 6:] = 0.0
                P = _block(E + beta**2 * G @ self.map_cov @ G.T, G, R)
                rel = _block(E, G, R)[:6, :6]
            else:
                F[:6, :6] = (beta * G if fresh else SL + beta * G) @ A
                F[:6, 6:] = rho * G @ A
                P = F @ P_prev @ F.T + _block(E, G, (1.0 - rho**2) * R)
        P = _sym(P)
        X = (F @ P_prev)[:6, :6] @ A.T  # Cov(e_t, e_{t-1}) A^T
        APA = A @ P_prev[:6, :6] @ A.T
        step = P[:6, :6] + APA - X - X.T
        if rel is None:  # tracked on from a tracked frame: relative to the map that follows e_{t-1} by beta
            rel = P[:6, :6] + beta**2 * APA - beta * (X + X.T)
        self.P, self.rel, self.lost = P, _sym(rel), tr is None
        if tr is not None:
            self.map_cov = P[:6, :6].copy()
        return ErrorReport(self.rel.copy(), _sym(step), P.copy(), F)


def _inputs(T_prev, T_new, tr, fresh, lost_cov, controlled) -> dict:
    """A copy of one :meth:`PoseErrorModel.update` call's inputs (the track's as a dict of what the model reads)."""
    copy = lambda a: None if a is None else np.array(a, dtype=np.float64)  # noqa: E731
    track = None
    if tr is not None:
        track = dict(cov=copy(tr.cov), H_data=copy(tr.H_data))
        track.update(residual_level=float(tr.residual_level), patch_px=float(tr.patch_px))
    return dict(
        kind="update",
        T_prev=copy(T_prev),
        T_new=copy(T_new),
        tr=track,
        fresh=bool(fresh),
        lost_cov=copy(lost_cov),
        controlled=bool(controlled),
    )


def lag_covariances(T: np.ndarray, error_cov: np.ndarray, error_transition: np.ndarray, k: int) -> np.ndarray:
    """The covariance of the k-frame relative motion ``Log(dT_true^-1 dT_est)``, ``dT = T_{t-k}^-1 T_t``, for
    t = k .. N-1 (shape (N-k, 6, 6), camera frame; the module docstring's formula).  ``T`` (N,4,4) estimated poses;
    ``error_cov``, ``error_transition`` (N,12,12).
    """
    T = np.asarray(T, dtype=np.float64)
    P = np.asarray(error_cov, dtype=np.float64)
    F = np.asarray(error_transition, dtype=np.float64)
    n = len(T)
    if k < 1 or n <= k:
        return np.zeros((0, 6, 6))
    t = np.arange(k, n)
    B = np.stack([se3.adjoint(se3.inv(se3.inv(T[i - k]) @ T[i])) for i in t])  # Ad(dT^-1)
    Phi = np.broadcast_to(np.eye(12), (len(t), 12, 12)).copy()
    for lag in range(k):
        Phi = Phi @ F[t - lag]
    return relative_covariance(P[t], P[t - k], Phi, B)


def relative_covariance(P_t: np.ndarray, P_s: np.ndarray, Phi: np.ndarray, B: np.ndarray) -> np.ndarray:
    """The covariance of the relative motion from frame s to frame t (module docstring): ``P_t``, ``P_s`` the error
    states' covariances (12x12), ``Phi = F_t .. F_{s+1}``, ``B = Ad(dT^-1)`` of ``dT = T_s^-1 T_t``; single (6x6) or
    stacked (n,6,6) alike."""
    Bt = np.swapaxes(B, -1, -2)
    X = (Phi @ P_s)[..., :6, :6] @ Bt
    C = P_t[..., :6, :6] + B @ P_s[..., :6, :6] @ Bt - X - np.swapaxes(X, -1, -2)
    return 0.5 * (C + np.swapaxes(C, -1, -2))
