"""Trajectory, calibration and resource metrics (numpy only, no ROS).

Poses are 4x4 camera-to-world ``T_w_c`` (docs/design.md, "Conventions"); pose covariances are 6x6 in the
right (body) perturbation ``T = T_hat Exp(xi)``, ``xi = (rho, phi)``, translation first.

* :func:`ate_rmse`: position RMSE after the Umeyama (1991) SE(3) alignment (Sim(3) with ``with_scale``),
  what ``evo_ape tum groundtruth.tum trajectory.tum -a`` reports.
* :func:`pose_coverage_95`: fraction of consecutive pairs whose error ``xi = Log(dT_gt^-1 dT_est)``,
  ``dT = T_{t-1}^-1 T_t``, satisfies ``xi^T C^-1 xi <= chi2_6(0.95) = 12.59`` (ideal 0.95).
* :func:`map_coverage_2sigma`: fraction of observed voxels in the band ``|sdf_true| < band`` (default
  ``truncation / 2``) with ``|mu - sdf_true| <= 2 sigma`` (ideal 0.954).

Definitions and their rationale: docs/uncertainty.md, "What is measured".
"""

from __future__ import annotations

import os
import resource
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "umeyama",
    "align_trajectory",
    "ate_errors",
    "ate_rmse",
    "relative_motions",
    "rpe",
    "relative_motion_mahalanobis",
    "pose_coverage_95",
    "map_coverage_2sigma",
    "map_sdf_rmse",
    "peak_rss_mb",
    "current_rss_mb",
    "CHI2_95_6DOF",
]

#: chi2.ppf(0.95, 6)
CHI2_95_6DOF = 12.591587243743977


# --------------------------------------------------------------------------- SE(3)
def _hat(w: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])


def _inv(T: np.ndarray) -> np.ndarray:
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def _adjoint(T: np.ndarray) -> np.ndarray:
    """Adjoint of T for xi = (rho, phi): Ad = [[R, [t]x R], [0, R]]."""
    R, t = T[:3, :3], T[:3, 3]
    A = np.zeros((6, 6))
    A[:3, :3] = R
    A[:3, 3:] = _hat(t) @ R
    A[3:, 3:] = R
    return A


def _so3_log(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R).as_rotvec()


def _se3_log(T: np.ndarray) -> np.ndarray:
    """Log map of SE(3), returns (rho, phi) with T = Exp([rho; phi])."""
    phi = _so3_log(T[:3, :3])
    th = float(np.linalg.norm(phi))
    W = _hat(phi)
    if th < 1e-6:
        Vinv = np.eye(3) - 0.5 * W + W @ W / 12.0
    else:
        half = 0.5 * th
        c = (1.0 - half * np.cos(half) / np.sin(half)) / (th * th)
        Vinv = np.eye(3) - 0.5 * W + c * (W @ W)
    return np.concatenate([Vinv @ T[:3, 3], phi])


def _as_poses(T) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 3 or T.shape[1:] != (4, 4):
        raise ValueError(f"expected (N,4,4) poses, got {T.shape}")
    return T


# --------------------------------------------------------------------------- ATE
def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = False) -> Tuple[np.ndarray, np.ndarray, float]:
    """Least-squares (s, R, t) minimising sum ||dst_i - (s R src_i + t)||^2 (Umeyama 1991) for (N, 3) ``src``,
    ``dst`` (N >= 3, non-collinear); returns ``(R, t, s)``, ``s`` 1 unless ``with_scale``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3:
        raise ValueError(f"umeyama: shapes {src.shape} and {dst.shape} must both be (N,3)")
    n = src.shape[0]
    if n < 2:
        raise ValueError("umeyama: need at least 2 points")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / n  # Sigma_xy in Umeyama's notation (dst x src^T)
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0
    R = U @ S @ Vt
    s = 1.0
    if with_scale:
        var_s = (xs**2).sum() / n
        s = float(np.trace(np.diag(D) @ S) / var_s) if var_s > 0 else 1.0
    t = mu_d - s * R @ mu_s
    return R, t, s


def align_trajectory(T_est, T_gt, with_scale: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Align ``T_est`` onto ``T_gt`` by Umeyama on the positions: ``(T_est_aligned (N,4,4), S (4,4))``,
    ``T_est_aligned = S @ T_est`` (Sim(3): the aligned rotation blocks are renormalised).
    """
    T_est, T_gt = _as_poses(T_est), _as_poses(T_gt)
    if len(T_est) != len(T_gt):
        raise ValueError(f"trajectories differ in length: {len(T_est)} vs {len(T_gt)}")
    if len(T_est) < 3:
        S = np.eye(4)
        S[:3, 3] = T_gt[0, :3, 3] - T_est[0, :3, 3] if len(T_est) else 0.0
        return S @ T_est if len(T_est) else T_est.copy(), S
    R, t, s = umeyama(T_est[:, :3, 3], T_gt[:, :3, 3], with_scale)
    S = np.eye(4)
    S[:3, :3] = s * R
    S[:3, 3] = t
    out = np.einsum("ij,njk->nik", S, T_est)
    if with_scale:
        out[:, :3, :3] /= s
    return out, S


def ate_errors(T_est, T_gt, align: bool = True, with_scale: bool = False) -> np.ndarray:
    """Per-frame position error (m) after alignment (``align=False``: raw)."""
    T_est, T_gt = _as_poses(T_est), _as_poses(T_gt)
    if align:
        T_est, _ = align_trajectory(T_est, T_gt, with_scale)
    return np.linalg.norm(T_est[:, :3, 3] - T_gt[:, :3, 3], axis=1)


def ate_rmse(T_est, T_gt, align: bool = True, with_scale: bool = False) -> float:
    """ATE RMSE (m), SE(3)-aligned by default, like ``evo_ape tum ref est -a``."""
    e = ate_errors(T_est, T_gt, align, with_scale)
    return float(np.sqrt(np.mean(e**2))) if len(e) else float("nan")


# --------------------------------------------------------------------------- RPE
def relative_motions(T, delta: int = 1) -> np.ndarray:
    """dT_i = T_i^-1 T_{i+delta} for i = 0 .. N-1-delta, shape (N-delta, 4, 4)."""
    T = _as_poses(T)
    if len(T) <= delta:
        return np.zeros((0, 4, 4))
    Ti = np.linalg.inv(T[:-delta])
    return np.einsum("nij,njk->nik", Ti, T[delta:])


def rpe(T_est, T_gt, delta: int = 1) -> Dict[str, np.ndarray]:
    """Relative pose error over ``delta`` frames, ``E_i = dT_gt_i^-1 dT_est_i`` (as
    ``evo_rpe --delta delta --delta_unit f``): per-pair ``trans`` (m) and ``rot_deg``, and ``trans_rmse``,
    ``rot_rmse_deg``.
    """
    dE = relative_motions(T_est, delta)
    dG = relative_motions(T_gt, delta)
    E = np.einsum("nij,njk->nik", np.linalg.inv(dG), dE) if len(dE) else dE
    trans = np.linalg.norm(E[:, :3, 3], axis=1)
    cos = np.clip((np.trace(E[:, :3, :3], axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    rot = np.degrees(np.arccos(cos))
    rms = lambda x: float(np.sqrt(np.mean(x**2))) if len(x) else float("nan")  # noqa: E731
    return {"trans": trans, "rot_deg": rot, "trans_rmse": rms(trans), "rot_rmse_deg": rms(rot)}


# --------------------------------------------------------------------------- calibration
def relative_motion_mahalanobis(T_est, T_gt, covs, independent: bool = False) -> np.ndarray:
    """Squared Mahalanobis distance of each consecutive relative-motion error.

    ``d2_t = xi^T C^-1 xi`` with ``xi = Log(dT_gt^-1 dT_est)``; by default ``C = covs[t]`` (the step's
    covariance, e.g. ``step_cov``).  ``independent=True`` uses ``C = Ad(dT_est^-1) covs[t-1] Ad^T + covs[t]``
    (two independent pose covariances).  ``covs``: (N,6,6) right-perturbation covariances; t = 1 .. N-1.
    """
    T_est, T_gt = _as_poses(T_est), _as_poses(T_gt)
    covs = np.asarray(covs, dtype=np.float64)
    n = len(T_est)
    if len(T_gt) != n or covs.shape != (n, 6, 6):
        raise ValueError(f"shapes disagree: {T_est.shape}, {T_gt.shape}, {covs.shape}")
    d2 = np.full(max(n - 1, 0), np.nan)
    for t in range(1, n):
        dE = _inv(T_est[t - 1]) @ T_est[t]
        dG = _inv(T_gt[t - 1]) @ T_gt[t]
        xi = _se3_log(_inv(dG) @ dE)
        if independent:
            A = _adjoint(_inv(dE))
            C = A @ covs[t - 1] @ A.T + covs[t]
        else:
            C = covs[t].copy()
        C = 0.5 * (C + C.T)
        try:
            d2[t - 1] = float(xi @ np.linalg.solve(C, xi))
        except np.linalg.LinAlgError:
            d2[t - 1] = np.inf
    return d2


def pose_coverage_95(T_est, T_gt, covs, valid: Optional[Sequence[bool]] = None) -> float:
    """Fraction of consecutive pairs whose relative-motion error lies in the 95 % ellipsoid (module docstring);
    ``valid`` (N,) excludes frames (a pair counts only when both are valid).
    """
    d2 = relative_motion_mahalanobis(T_est, T_gt, covs)
    if valid is not None:
        v = np.asarray(valid, dtype=bool)
        d2 = d2[v[1:] & v[:-1]]
    d2 = d2[~np.isnan(d2)]
    return float(np.mean(d2 <= CHI2_95_6DOF)) if len(d2) else float("nan")


def _band_mask(mu, sigma, sdf_true, band) -> np.ndarray:
    mu = np.asarray(mu, dtype=np.float64)
    sdf_true = np.asarray(sdf_true, dtype=np.float64)
    m = np.isfinite(mu) & np.isfinite(sdf_true) & (np.abs(sdf_true) < band)
    if sigma is not None:
        m &= np.isfinite(np.asarray(sigma, dtype=np.float64))
    return m


def map_coverage_2sigma(mu, sigma, sdf_true, band: float) -> float:
    """Fraction of observed voxels (``mu`` not NaN) with |sdf_true| < band and |mu - sdf_true| <= 2 sigma; NaN for
    an empty band.
    """
    m = _band_mask(mu, sigma, sdf_true, band)
    if not m.any():
        return float("nan")
    mu, sigma, sdf_true = (np.asarray(a, dtype=np.float64)[m] for a in (mu, sigma, sdf_true))
    return float(np.mean(np.abs(mu - sdf_true) <= 2.0 * sigma))


def map_sdf_rmse(mu, sdf_true, band: float, max_abs_mu: Optional[float] = None) -> float:
    """RMSE of the SDF mean against the exact SDF over observed voxels with |sdf_true| < band; ``max_abs_mu``
    (e.g. 0.95 * truncation) leaves out truncated means (free-space evidence, not distances).
    """
    m = _band_mask(mu, None, sdf_true, band)
    if max_abs_mu is not None:
        m &= np.abs(np.asarray(mu, dtype=np.float64)) < max_abs_mu
    if not m.any():
        return float("nan")
    e = np.asarray(mu, dtype=np.float64)[m] - np.asarray(sdf_true, dtype=np.float64)[m]
    return float(np.sqrt(np.mean(e**2)))


# --------------------------------------------------------------------------- resources
def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss; kB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if os.uname().sysname == "Darwin":
        return r / (1024.0 * 1024.0)
    return r / 1024.0


def current_rss_mb() -> float:
    """Current resident set size in MiB (psutil)."""
    import psutil

    return psutil.Process().memory_info().rss / (1024.0 * 1024.0)
