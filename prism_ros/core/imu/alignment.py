"""Gravity and biases: the static alignment, the moving-start check and the biases from a pose track.

Static alignment (:func:`detect_motion`, :func:`align_gravity`): while the sensor is still, gravity
``g_w`` (filter's world frame, m/s^2) is the negated mean specific force rotated into the world and the
gyro bias the median rate.  A window [t0, t1] is moving when any test fails: the robust (MAD) std of a
gyro or accelerometer axis, the departure of |mean specific force| from gravity, the turn of the mean
specific force between the window's halves, or the change of the mean gyro rate between them (thresholds:
:func:`detect_motion`'s arguments, set on real EuRoC V1_01 / V1_02 at rest with rotors running and in
flight).  A constant rotation about gravity slower than the gyro bias range cannot be told from a bias.

Biases from a pose track (:func:`estimate_biases`, :func:`gravity_from_poses`): given IMU-frame poses
(``R_w_I``, ``p_w``) and ``g_w``, linear least squares on the pre-integration residuals of consecutive
pairs (Forster et al. 2017's bias Jacobians), iterated Gauss-Newton:

1. gyro: Log(dR_imu(bg0)^T R_k^T R_k+1) = J_bg^rot (bg - bg0);
2. accelerometer, with the world velocities v_k as nuisance unknowns::

       v_k+1 - v_k - R_k J_ba^v (ba - ba0)     = g dt + R_k dv_imu
       v_k dt      + R_k J_ba^p (ba - ba0)     = p_k+1 - p_k - 1/2 g dt^2 - R_k dp_imu

Each is weighted by the pre-integration covariance plus the poses' noise.  The accelerometer bias needs
rotation about two axes (else it trades against |g|): :class:`BiasEstimate`'s covariances say how well
each component was seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

from .. import se3
from .preintegration import GRAVITY, ImuData, ImuNoise, preintegrate

__all__ = [
    "MotionCheck",
    "detect_motion",
    "static_bias_and_gravity",
    "align_gravity",
    "BiasEstimate",
    "estimate_biases",
    "gravity_from_poses",
]


@dataclass
class MotionCheck:
    """Outcome of :func:`detect_motion`: ``static`` and, when moving, the failed tests."""

    static: bool
    reasons: list = field(default_factory=list)
    stats: Dict[str, float] = field(default_factory=dict)
    gyro_median: np.ndarray = field(default_factory=lambda: np.zeros(3))
    f_mean: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, GRAVITY]))


def _rstd(x: np.ndarray) -> np.ndarray:
    """Robust standard deviation per column: 1.4826 x the median absolute deviation."""
    return 1.4826 * np.median(np.abs(x - np.median(x, 0)), 0)


def detect_motion(
    imu: ImuData,
    t0: float,
    t1: float,
    max_gyro_std_radps: float = 0.1,
    max_acc_std_mps2: float = 1.5,
    max_norm_dev_mps2: float = 0.5,
    max_tilt_change_rad: float = 0.02,
    max_gyro_mean_change_radps: float = 0.02,
    gravity_mps2: float = GRAVITY,
    min_samples: int = 20,
) -> MotionCheck:
    """Is the IMU still on [t0, t1]?  (the tests: the module docstring; the thresholds: the arguments)."""
    m = (imu.t >= t0) & (imu.t <= t1)
    g, a = imu.gyro[m], imu.acc[m]
    if len(g) < min_samples:
        return MotionCheck(False, [f"only {len(g)} IMU samples in the {t1 - t0:.2f} s window (< {min_samples})"])
    f = a.mean(0)
    h = len(g) // 2
    f1, f2 = a[:h].mean(0), a[h:].mean(0)
    c = np.clip(f1 @ f2 / max(np.linalg.norm(f1) * np.linalg.norm(f2), 1e-12), -1.0, 1.0)
    stats = {
        "gyro_std_radps": float(_rstd(g).max()),
        "acc_std_mps2": float(_rstd(a).max()),
        "norm_dev_mps2": float(abs(np.linalg.norm(f) - gravity_mps2)),
        "tilt_change_rad": float(np.arccos(c)),
        "gyro_mean_change_radps": float(np.linalg.norm(g[:h].mean(0) - g[h:].mean(0))),
    }
    limits = {
        "gyro_std_radps": max_gyro_std_radps,
        "acc_std_mps2": max_acc_std_mps2,
        "norm_dev_mps2": max_norm_dev_mps2,
        "tilt_change_rad": max_tilt_change_rad,
        "gyro_mean_change_radps": max_gyro_mean_change_radps,
    }
    reasons = [f"{k} = {stats[k]:.3g} > {limits[k]:.3g}" for k in limits if stats[k] > limits[k]]
    return MotionCheck(not reasons, reasons, stats, np.median(g, 0), f)


def static_bias_and_gravity(
    imu: ImuData, t0: float, t1: float, max_acc_std: float = 0.6, max_gyro_std: float = 0.1
) -> Tuple[np.ndarray, np.ndarray, bool]:
    """(gyro bias, mean specific force in I, static?) over [t0, t1]: static when the robust (MAD) standard deviations of
    accelerometer and gyro stay below the thresholds and |mean f| is within 0.5 m/s^2 of g; the gyro bias is then the
    median rate (zero otherwise).
    """
    w = imu.window(t0, t1)
    if len(w) < 2:
        return np.zeros(3), (w.acc.mean(0) if len(w) else np.array([0.0, 0.0, GRAVITY])), False
    f = w.acc.mean(0)
    static = bool(
        np.all(_rstd(w.acc) < max_acc_std)
        and np.all(_rstd(w.gyro) < max_gyro_std)
        and abs(np.linalg.norm(f) - GRAVITY) < 0.5
    )
    bg = np.median(w.gyro, 0) if static else np.zeros(3)
    return bg, f, static


def align_gravity(f_mean_I: np.ndarray, R_w_I: np.ndarray, magnitude: Optional[float] = GRAVITY) -> np.ndarray:
    """Gravity in the world from the static mean specific force: g_w = -R_wI f (scaled to ``magnitude``)."""
    g = -np.asarray(R_w_I, float) @ np.asarray(f_mean_I, float)
    if magnitude is not None:
        g = g / max(np.linalg.norm(g), 1e-9) * magnitude
    return g


@dataclass
class BiasEstimate:
    """Outcome of :func:`estimate_biases` / :func:`gravity_from_poses`."""

    bg: np.ndarray  # (3,) rad/s
    ba: np.ndarray  # (3,) m/s^2
    cov_bg: np.ndarray  # 3x3
    cov_ba: np.ndarray  # 3x3 (zero when ba was not estimated)
    v_w: np.ndarray  # (K+1, 3) velocities at the pose stamps (world)
    pairs: int = 0
    g_w: Optional[np.ndarray] = None  # gravity, when estimated (gravity_from_poses)
    cov_g: Optional[np.ndarray] = None  # its 3x3 covariance
    applied: Optional[tuple] = None  # (gyro, accel) taken by ImuIntegrator.refine_biases


def estimate_biases(
    imu: ImuData,
    t: np.ndarray,
    R_w_I: np.ndarray,
    p_w: np.ndarray,
    g_w: Optional[np.ndarray],
    noise: Optional[ImuNoise] = None,
    bg0=None,
    ba0=None,
    rot_sigma_rad: float = 1e-3,
    pos_sigma_m: float = 5e-3,
    iterations: int = 2,
    estimate_ba: bool = True,
) -> BiasEstimate:
    """Gyro and accelerometer biases from a pose track (see the module docstring).

    ``t`` (K+1,) pose stamps within the IMU's span, ``R_w_I`` (K+1, 3, 3), ``p_w`` (K+1, 3) the IMU frame's poses;
    ``rot_sigma_rad`` / ``pos_sigma_m`` the poses' own noise (independent per pose).  ``bg0`` / ``ba0``: the
    linearisation point (zero). ``g_w=None`` estimates gravity too (:func:`gravity_from_poses`); ``estimate_ba=False``
    keeps ba at ``ba0``.  The covariances follow from ``noise`` and the pose sigmas.
    """
    noise = noise or ImuNoise()
    t = np.asarray(t, float)
    R_w_I = np.asarray(R_w_I, float).reshape(-1, 3, 3)
    p_w = np.asarray(p_w, float).reshape(-1, 3)
    K = len(t) - 1
    if K < 2:
        raise ValueError("estimate_biases: need at least 3 poses")
    est_g = g_w is None
    g_rhs = np.zeros(3) if est_g else np.asarray(g_w, float)  # known gravity on the right-hand side
    g_est = None
    bg = np.zeros(3) if bg0 is None else np.asarray(bg0, float).copy()
    ba = np.zeros(3) if ba0 is None else np.asarray(ba0, float).copy()
    cov_bg = np.eye(3)
    cov_ba = np.zeros((3, 3))
    cov_g = None
    v = np.zeros((K + 1, 3))
    nv = 3 * (K + 1)
    ig = nv if est_g else None  # column of g
    ia = (nv + 3 * est_g) if estimate_ba else None  # column of the ba update
    n = nv + 3 * est_g + 3 * estimate_ba
    for _ in range(max(1, iterations)):
        pims = [preintegrate(imu, t[k], t[k + 1], noise, bg, ba) for k in range(K)]
        # --- 1. gyro bias
        H = np.zeros((3, 3))
        b = np.zeros(3)
        for k, pim in enumerate(pims):
            r = se3.so3_log(pim.dR.T @ R_w_I[k].T @ R_w_I[k + 1])
            J = pim.J_bg[0:3]
            W = np.linalg.inv(pim.cov[0:3, 0:3] + 2.0 * rot_sigma_rad**2 * np.eye(3))
            H += J.T @ W @ J
            b += J.T @ W @ r
        cov_bg = np.linalg.inv(H)
        dbg = cov_bg @ b
        bg = bg + dbg
        # --- 2. velocities, then gravity and / or the accelerometer bias
        rows, rhs, wts = [], [], []
        for k, pim in enumerate(pims):
            dt = pim.dt
            Rk = R_w_I[k]
            dv = pim.dv + pim.J_bg[3:6] @ dbg
            dp = pim.dp + pim.J_bg[6:9] @ dbg
            Av = np.zeros((3, n))
            Av[:, 3 * (k + 1) : 3 * (k + 2)] = np.eye(3)
            Av[:, 3 * k : 3 * (k + 1)] = -np.eye(3)
            Ap = np.zeros((3, n))
            Ap[:, 3 * k : 3 * (k + 1)] = dt * np.eye(3)
            if est_g:
                Av[:, ig : ig + 3] = -dt * np.eye(3)
                Ap[:, ig : ig + 3] = 0.5 * dt * dt * np.eye(3)
            if estimate_ba:
                Av[:, ia : ia + 3] = -Rk @ pim.J_ba[3:6]
                Ap[:, ia : ia + 3] = Rk @ pim.J_ba[6:9]
            rows += [Av, Ap]
            rhs += [g_rhs * dt + Rk @ dv, p_w[k + 1] - p_w[k] - 0.5 * g_rhs * dt * dt - Rk @ dp]
            wts += [
                1.0 / np.sqrt(np.diag(pim.cov)[3:6] + 1e-18),
                1.0 / np.sqrt(np.diag(pim.cov)[6:9] + 2.0 * pos_sigma_m**2),
            ]
        w = np.concatenate(wts)
        Aw = np.vstack(rows) * w[:, None]
        x, *_ = np.linalg.lstsq(Aw, np.concatenate(rhs) * w, rcond=None)
        cov_x = np.linalg.pinv(Aw.T @ Aw)
        v = x[:nv].reshape(K + 1, 3)
        if est_g:
            g_est, cov_g = x[ig : ig + 3], cov_x[ig : ig + 3, ig : ig + 3]
        if estimate_ba:
            ba = ba + x[ia : ia + 3]
            cov_ba = cov_x[ia : ia + 3, ia : ia + 3]
    sym = lambda C: None if C is None else 0.5 * (C + C.T)  # noqa: E731
    return BiasEstimate(bg, ba, sym(cov_bg), sym(cov_ba), v, K, None if g_est is None else g_est.copy(), sym(cov_g))


def gravity_from_poses(
    imu: ImuData,
    t: np.ndarray,
    R_w_I: np.ndarray,
    p_w: np.ndarray,
    noise: Optional[ImuNoise] = None,
    bg0=None,
    ba0=None,
    rot_sigma_rad: float = 1e-3,
    pos_sigma_m: float = 5e-3,
    estimate_ba: bool = False,
) -> BiasEstimate:
    """Gravity in the poses' world (``.g_w``, ``.cov_g``), the gyro bias and the velocities from a pose track of a
    MOVING sensor: the moving-start fallback (:func:`estimate_biases`'s least squares, gravity unknown, ba held at
    ``ba0``).  The accelerometer bias then leaks into gravity (:func:`estimate_biases` with that gravity refines ba);
    ``estimate_ba=True`` solves for both, but over a short track they hardly separate.
    """
    return estimate_biases(
        imu, t, R_w_I, p_w, None, noise, bg0, ba0, rot_sigma_rad, pos_sigma_m, estimate_ba=estimate_ba
    )
