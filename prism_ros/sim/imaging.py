"""The cameras and image effects of a simulated EuRoC flight (:mod:`prism_ros.sim.flight`).

* Rays: the radtan-distorted pixel centres of the real calibration, undistorted once with
  ``cv2.undistortPoints`` (:func:`distorted_rays`).
* Exposure: a seeded smooth signal (:func:`_smooth_signal`) drives exposure time and brightness.
* Motion blur: the sharp image averaged at N = ceil(motion) + 1 (at most ``MAX_BLUR_TAPS``) points along
  each pixel's image motion over the exposure (:func:`_exposure_flow`, :func:`_motion_blur`); exact for a
  static scene away from depth edges.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from prism_ros.core.stereo import CameraCalib

__all__ = ["project_radtan", "distorted_rays", "MAX_BLUR_TAPS"]

MAX_BLUR_TAPS = 9  # most sharp-image samples averaged along a pixel's motion


def project_radtan(p_c: np.ndarray, K: np.ndarray, D: np.ndarray) -> np.ndarray:
    """(N,2) pixels of (N,3) optical-frame points with the radial-tangential model (k1 k2 p1 p2)."""
    p_c = np.asarray(p_c, float)
    x = p_c[:, 0] / p_c[:, 2]
    y = p_c[:, 1] / p_c[:, 2]
    k1, k2, p1, p2 = (float(v) for v in np.ravel(D)[:4])
    r2 = x * x + y * y
    radial = 1.0 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return np.stack([K[0, 0] * xd + K[0, 2], K[1, 1] * yd + K[1, 2]], axis=1)


def distorted_rays(calib: CameraCalib) -> np.ndarray:
    """(H, W, 2) rays (x/z, y/z) of the raw (distorted) pixel centres of ``calib``."""
    import cv2

    w, h = calib.size
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pix = np.stack([u.ravel(), v.ravel()], axis=1).reshape(-1, 1, 2)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-14)
    und = cv2.undistortPoints(pix, calib.K, calib.D, R=None, P=None, criteria=crit).reshape(-1, 2)
    back = project_radtan(np.column_stack([und, np.ones(len(und))]), calib.K, calib.D)
    err = float(np.max(np.abs(back - pix.reshape(-1, 2))))
    if err > 1e-3:
        raise ValueError(f"radtan inversion failed: re-projection error {err:.2e} px")
    return np.ascontiguousarray(und.reshape(h, w, 2))


# ----------------------------------------------------------------------------- effects


def _smooth_signal(rng, t: np.ndarray, periods_s=(2.0, 3.7, 6.1, 9.3)) -> np.ndarray:
    """A seeded sum of sines with the given periods, scaled to [-1, 1]."""
    ph = rng.uniform(0, 2 * math.pi, size=len(periods_s))
    s = sum(math.sqrt(1.0 / (k + 1)) * np.sin(2 * math.pi * t / p + ph[k]) for k, p in enumerate(periods_s))
    return s / sum(math.sqrt(1.0 / (k + 1)) for k in range(len(periods_s)))


def _motion_blur(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Average ``img`` (float32) at N points along each pixel's exposure motion ``flow`` (H,W,2 px)."""
    import cv2

    mag = np.sqrt((flow**2).sum(-1))
    n = int(min(MAX_BLUR_TAPS, max(1, math.ceil(float(np.percentile(mag, 99))) + 1)))
    if n <= 1:
        return img
    h, w = img.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    acc = np.zeros_like(img)
    for k in range(n):
        s = np.float32(k / (n - 1) - 0.5)
        acc += cv2.remap(
            img, gx + s * flow[..., 0], gy + s * flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
    return acc / np.float32(n)


@njit(cache=True, inline="always")
def _radtan_px(x, y, z, fx, fy, cx, cy, k1, k2, p1, p2):
    x = x / z
    y = y / z
    r2 = x * x + y * y
    radial = 1.0 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return fx * xd + cx, fy * yd + cy


@njit(cache=True, parallel=True)
def _flow_kernel(depth, rays, T_s_m, T_e_m, intr, dist):
    """Pixel motion between the exposure's start (s) and end (e) camera frames of each
    pixel's point (mid-exposure frame m: p = z (rx, ry, 1)); T_x_m maps m into x."""
    h, w = depth.shape
    out = np.zeros((h, w, 2), dtype=np.float32)
    fx, fy, cx, cy = intr[0], intr[1], intr[2], intr[3]
    k1, k2, p1, p2 = dist[0], dist[1], dist[2], dist[3]
    for v in prange(h):
        for u in range(w):
            z = depth[v, u]
            if not z > 0.0:
                continue
            px = rays[v, u, 0] * z
            py = rays[v, u, 1] * z
            pz = z
            qx = T_s_m[0, 0] * px + T_s_m[0, 1] * py + T_s_m[0, 2] * pz + T_s_m[0, 3]
            qy = T_s_m[1, 0] * px + T_s_m[1, 1] * py + T_s_m[1, 2] * pz + T_s_m[1, 3]
            qz = T_s_m[2, 0] * px + T_s_m[2, 1] * py + T_s_m[2, 2] * pz + T_s_m[2, 3]
            ex = T_e_m[0, 0] * px + T_e_m[0, 1] * py + T_e_m[0, 2] * pz + T_e_m[0, 3]
            ey = T_e_m[1, 0] * px + T_e_m[1, 1] * py + T_e_m[1, 2] * pz + T_e_m[1, 3]
            ez = T_e_m[2, 0] * px + T_e_m[2, 1] * py + T_e_m[2, 2] * pz + T_e_m[2, 3]
            if qz < 1e-3 or ez < 1e-3:
                continue
            us, vs = _radtan_px(qx, qy, qz, fx, fy, cx, cy, k1, k2, p1, p2)
            ue, ve = _radtan_px(ex, ey, ez, fx, fy, cx, cy, k1, k2, p1, p2)
            out[v, u, 0] = ue - us
            out[v, u, 1] = ve - vs
    return out


def _exposure_flow(depth: np.ndarray, rays: np.ndarray, T_m_s: np.ndarray, T_m_e: np.ndarray, calib) -> np.ndarray:
    """Image motion (H,W,2 px) over the exposure of each pixel's 3D point (mid-exposure
    camera frame m) between the start (s) and end (e) camera frames (T_m_x maps x into m)."""
    K = np.asarray(calib.K, float)
    intr = np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]])
    dist = np.zeros(4)
    dist[: min(4, np.size(calib.D))] = np.ravel(calib.D)[:4]
    return _flow_kernel(
        np.ascontiguousarray(depth, np.float32), rays, np.linalg.inv(T_m_s), np.linalg.inv(T_m_e), intr, dist
    )
