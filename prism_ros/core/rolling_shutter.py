"""Rolling-shutter de-skew: an RGB-D frame whose rows were read out over ``readout_s`` re-sampled as if every
row had been seen at the frame's stamp.

Row v of an H-row image is seen at ``t + tau_v``, ``tau_v = (v / (H - 1) - 1/2) readout_s`` (the middle row at the
stamp).  Under a constant body twist ``nu = (v, w)`` (camera frame, right perturbation) the camera at ``t + tau`` is
``T(t) Exp(tau nu)``, so a point ``p`` seen in row v lies at ``Exp(tau_v nu) p`` in the camera at the stamp.

The warp is inverse: each output pixel looks for the (sub-pixel) input point that lands on it by a fixed-point
iteration on the displacement field (smooth: it varies by row and with depth), the depth interpolated between
neighbours that agree (not across depth edges), and keeps it when it lands within half a pixel; elsewhere (no
depth, occlusion boundaries) the output has no depth and the input colour.  Pure functions on arrays.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
from numba import njit, prange

__all__ = ["row_times", "max_shift_px", "deskew", "deskew_frame", "NEGLIGIBLE_PX"]

# Chosen, not fitted to any data set: numerical settings of the warp.
_ITERATIONS = 8  # fixed-point steps; with the row's warm start most pixels converge in one or two
#: A frame whose pixels move less than this (px) over the readout is left as it is (a tenth of the tracker's
#: finest pixel is below what it resolves).
NEGLIGIBLE_PX = 0.05
_TOLERANCE_PX = 0.01  # the fixed point: the source lands this close to the output pixel
# depth is interpolated between neighbours within 3 % of each other: above a Kinect's noise between neighbouring
# pixels (about 0.5 % at 2 m), below a depth edge
_SMOOTH = 0.03


def row_times(height: int, readout_s: float) -> np.ndarray:
    """(H,) seconds from the stamp at which each row was read: ``(v / (H - 1) - 1/2) readout_s``."""
    return (np.arange(height) / max(height - 1, 1) - 0.5) * float(readout_s)


def max_shift_px(depth: np.ndarray, K: np.ndarray, readout_s: float, nu: np.ndarray) -> float:
    """An estimate of how far (px) a pixel moves between its row's time and the stamp: half the readout times the
    rotation's image speed (taken as twice ``f |w|``, a bound within a 90 degree field of view) plus the lateral
    translation's at the nearest depth."""
    valid = depth[depth > 0]
    if valid.size == 0:
        return 0.0
    f = max(float(K[0]), float(K[1]))
    w = float(np.linalg.norm(nu[3:]))
    v = float(np.linalg.norm(nu[:3]))
    return 0.5 * float(readout_s) * f * (2.0 * w + v / float(valid.min()))


@njit(cache=True, nogil=True)
def _row_transforms(taus, nu, R, t):
    """R[v], t[v] = Exp(tau_v nu) (SE(3) exponential, nu = (rho, phi) per second)."""
    for v in range(taus.shape[0]):
        tau = taus[v]
        rx, ry, rz = tau * nu[0], tau * nu[1], tau * nu[2]
        px, py, pz = tau * nu[3], tau * nu[4], tau * nu[5]
        th2 = px * px + py * py + pz * pz
        th = math.sqrt(th2)
        if th < 1e-9:
            a, b, c = 1.0, 0.5, 1.0 / 6.0
        else:
            a = math.sin(th) / th
            b = (1.0 - math.cos(th)) / th2
            c = (th - math.sin(th)) / (th2 * th)
        # K = [phi]x, R = I + a K + b K^2, V = I + b K + c K^2
        K = np.array(((0.0, -pz, py), (pz, 0.0, -px), (-py, px, 0.0)))
        K2 = K @ K
        for i in range(3):
            for j in range(3):
                e = 1.0 if i == j else 0.0
                R[v, i, j] = e + a * K[i, j] + b * K2[i, j]
        for i in range(3):
            t[v, i] = (
                rx * ((1.0 if i == 0 else 0.0) + b * K[i, 0] + c * K2[i, 0])
                + ry * ((1.0 if i == 1 else 0.0) + b * K[i, 1] + c * K2[i, 1])
                + rz * ((1.0 if i == 2 else 0.0) + b * K[i, 2] + c * K2[i, 2])
            )


@njit(cache=True, inline="always")
def _depth_at(depth, su, sv, smooth):
    """Depth at the continuous pixel (su, sv): bilinear where the four neighbours are valid and within ``smooth``
    (relative) of each other, else the nearest pixel's (0: none)."""
    H, W = depth.shape
    iu = min(max(int(math.floor(su)), 0), W - 2)
    iv = min(max(int(math.floor(sv)), 0), H - 2)
    a = su - iu
    b = sv - iv
    d00 = depth[iv, iu]
    d01 = depth[iv, iu + 1]
    d10 = depth[iv + 1, iu]
    d11 = depth[iv + 1, iu + 1]
    lo = min(min(d00, d01), min(d10, d11))
    hi = max(max(d00, d01), max(d10, d11))
    if lo > 0.0 and hi <= lo * (1.0 + smooth):
        return (1 - a) * (1 - b) * d00 + a * (1 - b) * d01 + (1 - a) * b * d10 + a * b * d11
    nu_ = min(max(int(math.floor(su + 0.5)), 0), W - 1)
    nv_ = min(max(int(math.floor(sv + 0.5)), 0), H - 1)
    return depth[nv_, nu_]


@njit(cache=True, parallel=True, nogil=True)
def _deskew_kernel(depth, rgb, sigma, K, R, t, out_depth, out_rgb, out_sigma):
    """Per output pixel: the (sub-pixel) input point that lands on it, by a fixed-point iteration on the
    displacement, its depth at the stamp, the nearest input pixel's colour and sigma (none: no depth, the pixel's
    own colour, sigma 0).  ``sigma`` may be 0x0 (no sigma image)."""
    H, W = depth.shape
    fx, fy, cx, cy = K[0], K[1], K[2], K[3]
    has_sigma = sigma.shape[0] > 0
    for v in prange(H):
        off_u = 0.0  # the last converged source offset in this row: the next pixel's first guess
        off_v = 0.0
        for u in range(W):
            out_depth[v, u] = 0.0
            for c in range(3):
                out_rgb[v, u, c] = rgb[v, u, c]
            if has_sigma:
                out_sigma[v, u] = 0.0
            su = min(max(u + off_u, 0.0), W - 1.0)
            sv = min(max(v + off_v, 0.0), H - 1.0)
            err = np.inf
            hu = su
            hv = sv
            hz = 0.0
            for _ in range(_ITERATIONS):
                d = _depth_at(depth, su, sv, _SMOOTH)
                if not d > 0.0:
                    err = np.inf
                    break
                # the row transform at the continuous row sv (linear between rows)
                r0 = min(max(int(math.floor(sv)), 0), H - 2)
                w1 = min(max(sv - r0, 0.0), 1.0)
                x = (su - cx) / fx * d
                y = (sv - cy) / fy * d
                qx = (1 - w1) * (R[r0, 0, 0] * x + R[r0, 0, 1] * y + R[r0, 0, 2] * d + t[r0, 0]) + w1 * (
                    R[r0 + 1, 0, 0] * x + R[r0 + 1, 0, 1] * y + R[r0 + 1, 0, 2] * d + t[r0 + 1, 0]
                )
                qy = (1 - w1) * (R[r0, 1, 0] * x + R[r0, 1, 1] * y + R[r0, 1, 2] * d + t[r0, 1]) + w1 * (
                    R[r0 + 1, 1, 0] * x + R[r0 + 1, 1, 1] * y + R[r0 + 1, 1, 2] * d + t[r0 + 1, 1]
                )
                qz = (1 - w1) * (R[r0, 2, 0] * x + R[r0, 2, 1] * y + R[r0, 2, 2] * d + t[r0, 2]) + w1 * (
                    R[r0 + 1, 2, 0] * x + R[r0 + 1, 2, 1] * y + R[r0 + 1, 2, 2] * d + t[r0 + 1, 2]
                )
                if qz <= 0.0:
                    err = np.inf
                    break
                du = fx * qx / qz + cx - u
                dv = fy * qy / qz + cy - v
                err = max(abs(du), abs(dv))
                hu = su  # the point that gave qz and err
                hv = sv
                hz = qz
                if err < _TOLERANCE_PX:
                    break
                su -= du
                sv -= dv
                if su < -0.5 or sv < -0.5 or su > W - 0.5 or sv > H - 0.5:
                    break  # the last point (hu, hv) still counts if it landed within half a pixel
            if err <= 0.5:
                off_u = hu - u
                off_v = hv - v
                iu = min(max(int(math.floor(hu + 0.5)), 0), W - 1)
                iv = min(max(int(math.floor(hv + 0.5)), 0), H - 1)
                out_depth[v, u] = hz
                for c in range(3):
                    out_rgb[v, u, c] = rgb[iv, iu, c]
                if has_sigma:
                    out_sigma[v, u] = sigma[iv, iu]


def deskew(
    depth: np.ndarray,
    rgb: np.ndarray,
    K: np.ndarray,
    readout_s: float,
    nu: np.ndarray,
    depth_sigma: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """(depth, rgb, depth_sigma) re-sampled to the stamp (module docstring).  ``depth`` HxW float32 m (0 invalid),
    ``rgb`` HxWx3 (or HxW), ``K`` = (fx, fy, cx, cy) px, ``nu`` = (v, w) the camera's body twist (m/s, rad/s);
    ``depth_sigma`` (same size as ``depth``, or None) follows the depth.  Pixels without a source keep no depth
    and their own colour.  A frame that moves less than :data:`NEGLIGIBLE_PX` is returned as it is.
    """
    depth = np.ascontiguousarray(depth, dtype=np.float32)
    H, W = depth.shape
    nu = np.asarray(nu, dtype=np.float64).reshape(6)
    if (
        rgb.shape[:2] != (H, W)
        or not (rgb.ndim == 2 or (rgb.ndim == 3 and rgb.shape[2] == 3))
        or (depth_sigma is not None and depth_sigma.shape != (H, W))
        or min(H, W) < 2
    ):
        raise ValueError(
            f"expected an HxW or HxWx3 colour image and a sigma image of the depth image's size {depth.shape} "
            f"(at least 2x2), got {rgb.shape}" + ("" if depth_sigma is None else f" and {depth_sigma.shape}")
        )
    if not np.all(np.isfinite(nu)):
        raise ValueError(f"the twist must be finite, got {nu}")
    if max_shift_px(depth, K, readout_s, nu) < NEGLIGIBLE_PX:
        return depth, rgb, depth_sigma
    R = np.empty((H, 3, 3))
    t = np.empty((H, 3))
    _row_transforms(row_times(H, readout_s), nu, R, t)
    rgb3 = np.ascontiguousarray(rgb if rgb.ndim == 3 else rgb[:, :, None].repeat(3, axis=2))
    sigma = np.zeros((0, 0), np.float32) if depth_sigma is None else np.ascontiguousarray(depth_sigma, np.float32)
    out = np.empty((H, W), np.float32)
    rgb_out = np.empty_like(rgb3)
    sigma_out = np.empty_like(sigma) if depth_sigma is not None else sigma
    _deskew_kernel(depth, rgb3, sigma, np.asarray(K, dtype=np.float64), R, t, out, rgb_out, sigma_out)
    if rgb.ndim == 2:
        rgb_out = np.ascontiguousarray(rgb_out[:, :, 0])
    sigma_out = sigma_out if depth_sigma is not None else None
    return out, rgb_out, sigma_out


def deskew_frame(camera, readout_s: float, nu, rgb, depth, depth_sigma=None):
    """(rgb, depth, depth_sigma) of a frame from ``camera`` (:class:`~prism_ros.core.camera.Camera`) de-skewed with
    :func:`deskew`, or as it came: a frame of the wrong shape (the filter's preprocessing refuses it with a clear
    error), a non-finite twist, or one that would throw more than half of the depth out of the image (an IMU spike
    must not lose the frame)."""
    shape = (camera.height, camera.width)
    if (
        np.shape(depth) != shape
        or np.shape(rgb) not in (shape, shape + (3,))
        or (depth_sigma is not None and np.shape(depth_sigma) != shape)
        or not np.all(np.isfinite(nu))
    ):
        return rgb, depth, depth_sigma
    d, c, s = deskew(depth, rgb, camera.params, readout_s, nu, depth_sigma)
    if np.count_nonzero(d > 0) < 0.5 * np.count_nonzero(np.asarray(depth) > 0):
        return rgb, depth, depth_sigma
    return c, d, s
