"""Colours and packed point rows of the map's outputs (cloud, mesh): Numba kernels on arrays (no ROS).

* :func:`sigma_colormap` / :func:`map_colors`: true colour, or sigma on a log-scale jet colormap;
* :func:`pack_cloud_points`: point rows of the float32 fields :data:`CLOUD_FIELDS` (``x y z rgb sigma weight``,
  24 bytes, little endian; ``rgb`` holds the PCL / RViz packing ``0x00RRGGBB``); :func:`unpack_rgb_float`.

The colormap kernel runs in parallel (Numba's threading layer): call it from one thread at a time.
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np
from numba import njit, prange

__all__ = ["CLOUD_FIELDS", "sigma_colormap", "map_colors", "pack_cloud_points", "unpack_rgb_float"]

#: The float32 fields of a packed point, in order.
CLOUD_FIELDS = ("x", "y", "z", "rgb", "sigma", "weight")


@njit(cache=True, parallel=True, nogil=True)
def _jet_colors(sigma, log_lo, log_hi, lo, hi, out):
    """:func:`sigma_colormap`'s colours into ``out`` (N, 3) uint8, one pass, no temporaries."""
    span = log_hi - log_lo
    for i in prange(sigma.shape[0]):
        s = np.float64(sigma[i])
        if s != s:
            t = 1.0
        else:
            t = (np.log(min(max(s, lo), hi)) - log_lo) / span
        for ch in range(3):
            x = 1.5 - abs(4.0 * t - (3.0 - ch))
            x = min(max(x, 0.0), 1.0)
            out[i, ch] = np.uint8(np.rint(x * 255.0))


def sigma_colormap(sigma: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map sigma to a blue (confident) -> red (uncertain) jet colour, log scale on [lo, hi]
    (NaN: red): t = (log clip(sigma, lo, hi) - log lo) / (log hi - log lo), then
    red / green / blue = clip(1.5 - |4t - 3 / 2 / 1|, 0, 1), rounded to uint8.  (N, 3) uint8."""
    s = np.ascontiguousarray(np.asarray(sigma).reshape(-1))
    if s.dtype not in (np.float32, np.float64):
        s = s.astype(np.float64)
    lo = max(float(lo), 1e-6)
    hi = max(float(hi), lo * 1.0001)
    out = np.empty((s.shape[0], 3), np.uint8)
    _jet_colors(s, math.log(lo), math.log(hi), lo, hi, out)
    return out


def map_colors(
    rgb: np.ndarray, sigma: np.ndarray, color_mode: str, min_sigma_m: float, truncation_m: float
) -> np.ndarray:
    """Colours of map points (cloud, mesh): true colour (``color_mode`` "rgb") or sigma on a
    log colour scale from the precision floor ``min_sigma_m`` (at least 0.1 mm) to half the
    truncation band (at least 4x the floor)."""
    if color_mode == "rgb":
        return rgb
    lo = max(min_sigma_m, 1e-4)
    return sigma_colormap(sigma, lo, max(truncation_m * 0.5, 4.0 * lo))


@njit(cache=True, nogil=True)
def _pack_cloud(xyz, rgb, sigma, weight, out, out_bits):
    """Point rows in one pass (``out`` and ``out_bits`` are one buffer as float32 and as uint32;
    column 3 holds the 'rgb' float's bits, 0x00RRGGBB); whether every xyz is finite."""
    finite = True
    for i in range(xyz.shape[0]):
        for k in range(3):
            v = xyz[i, k]
            out[i, k] = v
            if not np.isfinite(v):
                finite = False
        out_bits[i, 3] = (np.uint32(rgb[i, 0]) << 16) | (np.uint32(rgb[i, 1]) << 8) | np.uint32(rgb[i, 2])
        out[i, 4] = sigma[i]
        out[i, 5] = weight[i]
    return finite


def pack_cloud_points(
    xyz: np.ndarray, rgb: np.ndarray, sigma: np.ndarray, weight: np.ndarray
) -> Tuple[np.ndarray, bool]:
    """(N, 6) little-endian float32 rows of :data:`CLOUD_FIELDS` and whether every xyz is finite; ``xyz`` (N, 3)
    m, ``rgb`` (N, 3) uint8, ``sigma`` and ``weight`` (N,) (a single value is spread over every point).
    """
    xyz = np.ascontiguousarray(np.asarray(xyz, dtype=np.float32).reshape(-1, 3))
    n = xyz.shape[0]
    pts = np.empty((n, len(CLOUD_FIELDS)), "<f4")  # the points' bytes, one row a point
    # (a kernel does not check bounds: every column has one row a point, a single value is spread)
    columns = [
        np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=dt).reshape(shape), (n,) + shape[1:]))
        for v, dt, shape in ((rgb, np.uint8, (-1, 3)), (sigma, np.float32, (-1,)), (weight, np.float32, (-1,)))
    ]
    finite = _pack_cloud(xyz, *columns, pts, pts.view("<u4"))
    return pts, bool(finite)


def unpack_rgb_float(f: np.ndarray) -> np.ndarray:
    """(N,) float32 'rgb' field of a cloud (the PCL / RViz packing, bits 0x00RRGGBB) -> (N, 3) uint8."""
    u = np.asarray(f, dtype=np.float32).view(np.uint32)
    return np.stack([(u >> 16) & 255, (u >> 8) & 255, u & 255], axis=1).astype(np.uint8)
