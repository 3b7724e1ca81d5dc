"""Calibration of the filter's pose and velocity covariances against ground truth (offline).

The k-frame covariance of a run comes from its error state (``covariances.npz``: ``error_cov``,
``error_transition``; :func:`prism_ros.core.uncertainty.lag_covariances`): the two poses' errors and their
correlation through the filter, the map's drift included.  :func:`compound_step_covariances` compounds
independent steps instead (``C_k(t) = sum_{j=t-k+1..t} Ad(R_j^-1) C_j Ad(R_j^-1)^T``, ``R_j = T_j^-1 T_t``): the
REP-105 odometry covariance.

Figures per lag k, over ``xi = Log(dT_gt^-1 dT_est)`` of every window whose k + 1 frames were tracked,
``d2 = xi^T C_k^-1 xi``: ``coverage95`` (``d2 <= 12.59``, ideal 0.95), ``nees_median`` (ideal 5.35),
``nees_tail_frac`` (``d2 > 3 x 12.59``, ideal about 0),
``trans_err_rms_m`` / ``rot_err_rms_deg`` (RMS of |rho|, |phi|) against ``trans_sigma_rms_m`` /
``rot_sigma_rms_deg`` (``sqrt(mean tr C_k)`` of each block).  ``velocity_coverage_95``: the body twist
``nu = (v, w)`` against the ground truth's interval twist (:func:`interval_twists`);
``velocity_coverage_95_instantaneous`` against the exact twist at the frame time.

Definitions and their rationale: docs/uncertainty.md, "What is measured".
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import numpy as np

from prism_ros.eval import metrics
from prism_ros.eval.metrics import CHI2_95_6DOF

__all__ = [
    "LAGS",
    "CHI2_50_6DOF",
    "NEES_TAIL",
    "compound_step_covariances",
    "lag_errors",
    "lag_calibration",
    "calibration_report",
    "interval_twists",
    "velocity_mahalanobis",
    "velocity_coverage_95",
]

#: Lags (frames) of the calibration report.
LAGS = (1, 10, 30)
#: chi2.ppf(0.5, 6): the median NEES of a calibrated 6-DoF Gaussian.
CHI2_50_6DOF = 5.348120627447116
#: A window whose NEES exceeds this (3x the chi2_6 95 % point; a calibrated Gaussian: 1e-6 of windows) is a
#: tail the covariance did not foresee: ``nees_tail_frac``.
NEES_TAIL = 3.0 * CHI2_95_6DOF


def _inv_many(T: np.ndarray) -> np.ndarray:
    R = T[:, :3, :3]
    t = T[:, :3, 3]
    out = np.zeros_like(T)
    Rt = np.transpose(R, (0, 2, 1))
    out[:, :3, :3] = Rt
    out[:, :3, 3] = -np.einsum("nij,nj->ni", Rt, t)
    out[:, 3, 3] = 1.0
    return out


def _adjoint_many(T: np.ndarray) -> np.ndarray:
    """Ad(T) for (N,4,4) poses, xi = (rho, phi): [[R, [t]x R], [0, R]]."""
    R = T[:, :3, :3]
    t = T[:, :3, 3]
    n = len(T)
    tx = np.zeros((n, 3, 3))
    tx[:, 0, 1], tx[:, 0, 2], tx[:, 1, 2] = -t[:, 2], t[:, 1], -t[:, 0]
    tx[:, 1, 0], tx[:, 2, 0], tx[:, 2, 1] = t[:, 2], -t[:, 1], t[:, 0]
    A = np.zeros((n, 6, 6))
    A[:, :3, :3] = R
    A[:, :3, 3:] = tx @ R
    A[:, 3:, 3:] = R
    return A


def compound_step_covariances(T_est, step_covs, k: int) -> np.ndarray:
    """C_k(t) for t = k .. N-1 (shape (N-k, 6, 6), module docstring); ``step_covs[t]``: the step t-1 -> t."""
    T = metrics._as_poses(T_est)
    C = np.asarray(step_covs, dtype=np.float64)
    n = len(T)
    if C.shape != (n, 6, 6):
        raise ValueError(f"step_covs has shape {C.shape}, expected ({n}, 6, 6)")
    if k < 1 or n <= k:
        return np.zeros((0, 6, 6))
    Tinv = _inv_many(T)
    t_idx = np.arange(k, n)
    out = np.zeros((len(t_idx), 6, 6))
    for lag in range(k):  # step j = t - lag; R_j = T_j^-1 T_t
        j = t_idx - lag
        A = _adjoint_many(_inv_many(np.einsum("nij,njk->nik", Tinv[j], T[t_idx])))
        out += A @ C[j] @ np.transpose(A, (0, 2, 1))
    return 0.5 * (out + np.transpose(out, (0, 2, 1)))


def lag_errors(T_est, T_gt, k: int) -> np.ndarray:
    """xi(t) = Log(dT_gt^-1 dT_est) of the k-frame relative motions, t = k .. N-1."""
    dE = metrics.relative_motions(T_est, k)
    dG = metrics.relative_motions(T_gt, k)
    E = np.einsum("nij,njk->nik", _inv_many(dG), dE) if len(dE) else dE
    return np.array([metrics._se3_log(e) for e in E]).reshape(-1, 6)


def lag_calibration(T_est, T_gt, C_k, k: int, valid: Optional[Sequence[bool]] = None) -> Dict[str, float]:
    """Calibration figures at lag k (module docstring) of the k-frame covariances ``C_k`` (N-k, 6, 6), window
    t - k .. t in row t - k; ``valid`` (N,): tracked frames (a window counts only when all k + 1 of its frames are).
    """
    xi = lag_errors(T_est, T_gt, k)
    C = np.asarray(C_k, dtype=np.float64)
    n = len(xi)
    if C.shape != (n, 6, 6):
        raise ValueError(f"C_k has shape {C.shape}, expected ({n}, 6, 6)")
    if n == 0:
        return {"k": int(k), "pairs": 0}
    keep = np.ones(n, dtype=bool)
    if valid is not None:
        v = np.asarray(valid, dtype=bool)
        bad = np.concatenate([[0], np.cumsum(~v)])  # bad[i] = number of invalid frames before i
        keep = (bad[np.arange(k, len(v)) + 1] - bad[np.arange(0, len(v) - k)]) == 0
    xi, C = xi[keep], C[keep]
    if len(xi) == 0:
        return {"k": int(k), "pairs": 0}
    d2 = np.einsum("ni,ni->n", xi, np.linalg.solve(C, xi[..., None])[..., 0])
    rms = lambda a: float(np.sqrt(np.mean(a)))  # noqa: E731
    return {
        "k": int(k),
        "pairs": int(len(xi)),
        "coverage95": float(np.mean(d2 <= CHI2_95_6DOF)),
        "nees_median": float(np.median(d2)),
        "nees_tail_frac": float(np.mean(d2 > NEES_TAIL)),
        "trans_err_rms_m": rms(np.sum(xi[:, :3] ** 2, axis=1)),
        "trans_sigma_rms_m": rms(np.trace(C[:, :3, :3], axis1=1, axis2=2)),
        "rot_err_rms_deg": float(np.degrees(rms(np.sum(xi[:, 3:] ** 2, axis=1)))),
        "rot_sigma_rms_deg": float(np.degrees(rms(np.trace(C[:, 3:, 3:], axis1=1, axis2=2)))),
    }


def to_body_frame(T_body_cam, T_est, T_gt, lag_covs, velocity, velocity_cov):
    """(T_est, T_gt, lag_covs, velocity, velocity_cov) of a body frame B rigidly attached to
    the camera (EuRoC: the IMU), ``T_w_B = T_w_c T_body_cam^-1``.  Right perturbations and body
    twists map by ``Ad(T_body_cam)``: T_w_c Exp(xi) T_c_B = T_w_B Exp(Ad(T_B_c) xi).  (Coverage
    and NEES are invariant under this map; the RMS errors and sigmas are not: the lever arm.)
    ``lag_covs``: k -> the camera frame's k-frame covariances."""
    from prism_ros.core import se3

    T_bc = np.asarray(T_body_cam, dtype=np.float64)
    T_cb = se3.inv(T_bc)
    A = se3.adjoint(T_bc)
    tr = lambda C: A @ np.asarray(C) @ A.T  # noqa: E731  (batched over the leading axis)
    return (
        np.asarray(T_est) @ T_cb,
        np.asarray(T_gt) @ T_cb,
        lambda k: tr(lag_covs(k)),
        np.asarray(velocity) @ A.T,
        tr(velocity_cov),
    )


def calibration_report(
    T_est,
    T_gt,
    lag_covs: Callable[[int], np.ndarray],
    valid=None,
    lags: Sequence[int] = LAGS,
    stamps=None,
    velocity=None,
    velocity_cov=None,
    twists_instantaneous=None,
) -> Dict[str, object]:
    """The ``calibration`` object of ``metrics.json``: per-lag figures of ``lag_covs(k)`` (the k-frame covariances,
    (N-k, 6, 6)) and, with ``stamps``, ``velocity`` and ``velocity_cov``, the velocity coverage against
    :func:`interval_twists` (and ``twists_instantaneous``).
    """
    out: Dict[str, object] = {
        "lags": {str(k): lag_calibration(T_est, T_gt, lag_covs(k), k, valid) for k in lags},
        "definition": (
            "xi = Log(dT_gt^-1 dT_est), dT = T_(t-k)^-1 T_t; C: the k-frame covariance of the error model "
            "(prism_ros.core.uncertainty.lag_covariances); coverage95: "
            "xi^T C^-1 xi <= 12.59 (chi2_6 95 %); nees_median ideal 5.35"
        ),
    }
    if stamps is not None and velocity is not None and velocity_cov is not None:
        v = None if valid is None else np.asarray(valid, dtype=bool)
        if v is not None:  # the interval's both frames tracked
            v = v & np.concatenate([[False], v[:-1]])
        d2 = velocity_mahalanobis(velocity, velocity_cov, interval_twists(stamps, T_gt), v)
        out["velocity_coverage_95"] = float(np.mean(d2 <= CHI2_95_6DOF)) if len(d2) else float("nan")
        out["velocity_nees_median"] = float(np.median(d2)) if len(d2) else float("nan")
        out["velocity_frames"] = int(len(d2))
        out["velocity_reference"] = (
            "mean ground-truth body twist over the frame interval, Log(T_gt(t-1)^-1 T_gt(t)) / dt"
        )
        if twists_instantaneous is not None:
            out["velocity_coverage_95_instantaneous"] = velocity_coverage_95(
                velocity, velocity_cov, twists_instantaneous, valid
            )
    return out


def interval_twists(stamps, T) -> np.ndarray:
    """The mean body twist over each frame interval, ``nu_t = Log(T_{t-1}^-1 T_t) / (s_t - s_{t-1})`` (row 0 NaN):
    what the filter's constant-velocity state estimates after step t.
    """
    T = metrics._as_poses(T)
    s = np.asarray(stamps, dtype=np.float64)
    out = np.full((len(T), 6), np.nan)
    for t in range(1, len(T)):
        if s[t] > s[t - 1]:
            out[t] = metrics._se3_log(metrics._inv(T[t - 1]) @ T[t]) / (s[t] - s[t - 1])
    return out


def velocity_mahalanobis(velocity, velocity_cov, twists_gt, valid=None) -> np.ndarray:
    """d2_t = (nu_t - nu_gt_t)^T P_t^-1 (nu_t - nu_gt_t) over frames with a finite ground truth
    (and ``valid``)."""
    v = np.asarray(velocity, dtype=np.float64)
    P = np.asarray(velocity_cov, dtype=np.float64)
    g = np.asarray(twists_gt, dtype=np.float64)
    m = np.all(np.isfinite(g), axis=1)
    if valid is not None:
        m &= np.asarray(valid, dtype=bool)
    e = v[m] - g[m]
    P = P[m]
    if len(e) == 0:
        return np.zeros(0)
    return np.einsum("ni,ni->n", e, np.linalg.solve(P, e[..., None])[..., 0])


def velocity_coverage_95(velocity, velocity_cov, twists_gt, valid=None) -> float:
    """Fraction of frames whose body-twist error lies in the 95 % ellipsoid (chi2_6)."""
    d2 = velocity_mahalanobis(velocity, velocity_cov, twists_gt, valid)
    return float(np.mean(d2 <= CHI2_95_6DOF)) if len(d2) else float("nan")
