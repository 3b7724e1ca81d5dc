"""Depth-predictive check of the map: a calibration figure that needs no ground truth.

Before frame t is fused, each depth pixel (render level) is compared with the map's plane (world vertex
``v``, normal ``n``) at its projectively associated render pixel, as the tracker's ICP associates.  With
``x_bar = K^-1 (u, v, 1)`` the residual along the ray and its predicted variance are::

    r = d - s_hat = n^T (T_w_c p_c - v) / c,     c = n^T R_w_c x_bar,
    sigma^2 = sigma_z(d)^2 + sigma_map^2 / c^2 + J Sigma J^T / c^2,   J = [a, p_c x a], a = R_w_c^T n

Compared pixels (a fixed rule): valid depth and a rendered surface whose nearest voxel has at least ``min_count``
observations, ``|n^T (T p_c - v)| < band`` (truncation_m), and ``|n^T R x_bar| / |x_bar| >= min_cos``.  The figure is
the fraction with ``|r| <= 2 sigma`` (ideal 0.954); docs/uncertainty.md, "What is measured".
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
from numba import njit, prange

from .voxel_hash import BLOCK, find_block

__all__ = ["depth_predictive_counts", "PREDICTIVE_MIN_COUNT", "PREDICTIVE_MIN_COS"]

#: A rendered surface counts as "observed enough" from this many fused observations of its nearest voxel on
#: (fewer are dominated by the first frames' pose errors).
PREDICTIVE_MIN_COUNT = 10
#: Rays within 60 degrees of the surface normal are compared (grazing rays turn normal errors into depth errors).
PREDICTIVE_MIN_COS = 0.5


@njit(cache=True, parallel=True, nogil=True)
def _predictive_kernel(
    depth,
    K,
    R,
    t,
    Kr,
    r_depth,
    r_vert,
    r_norm,
    r_sigma,
    Sigma,
    noise,
    depth_sigma,
    ds_step,
    keys,
    vals,
    cnt,
    vox,
    min_count,
    band,
    min_cos,
    R_rw,
    t_rw,
    out,
):
    H, W = depth.shape
    Hr, Wr = r_depth.shape
    fx, fy, cx, cy = K[0], K[1], K[2], K[3]
    rfx, rfy, rcx, rcy = Kr[0], Kr[1], Kr[2], Kr[3]
    c0, c2, z0 = noise[0], noise[1], noise[2]
    use_ds = depth_sigma.shape[0] > 0
    for v in prange(H):
        n_cmp = 0.0
        n_in = 0.0
        J = np.empty(6)
        for u in range(W):
            d = depth[v, u]
            if d <= 0.0:
                continue
            xb = (u - cx) / fx
            yb = (v - cy) / fy
            pcx = xb * d
            pcy = yb * d
            pcz = d
            qx = R[0, 0] * pcx + R[0, 1] * pcy + R[0, 2] * pcz + t[0]
            qy = R[1, 0] * pcx + R[1, 1] * pcy + R[1, 2] * pcz + t[1]
            qz = R[2, 0] * pcx + R[2, 1] * pcy + R[2, 2] * pcz + t[2]
            ppx = R_rw[0, 0] * qx + R_rw[0, 1] * qy + R_rw[0, 2] * qz + t_rw[0]
            ppy = R_rw[1, 0] * qx + R_rw[1, 1] * qy + R_rw[1, 2] * qz + t_rw[1]
            ppz = R_rw[2, 0] * qx + R_rw[2, 1] * qy + R_rw[2, 2] * qz + t_rw[2]
            if ppz <= 1e-3:
                continue
            ur = int(rfx * ppx / ppz + rcx + 0.5)
            vr = int(rfy * ppy / ppz + rcy + 0.5)
            if ur < 0 or vr < 0 or ur >= Wr or vr >= Hr or r_depth[vr, ur] <= 0.0:
                continue
            nx = r_norm[vr, ur, 0]
            ny = r_norm[vr, ur, 1]
            nz = r_norm[vr, ur, 2]
            vx = r_vert[vr, ur, 0]
            vy = r_vert[vr, ur, 1]
            vz = r_vert[vr, ur, 2]
            rpp = nx * (qx - vx) + ny * (qy - vy) + nz * (qz - vz)
            if abs(rpp) >= band:
                continue
            # a = R^T n: the normal in the camera frame; c = a . x_bar
            ax = R[0, 0] * nx + R[1, 0] * ny + R[2, 0] * nz
            ay = R[0, 1] * nx + R[1, 1] * ny + R[2, 1] * nz
            az = R[0, 2] * nx + R[1, 2] * ny + R[2, 2] * nz
            c = ax * xb + ay * yb + az
            if abs(c) < min_cos * np.sqrt(xb * xb + yb * yb + 1.0):
                continue
            ix = int(np.floor(vx / vox + 0.5))
            iy = int(np.floor(vy / vox + 0.5))
            iz = int(np.floor(vz / vox + 0.5))
            slot = find_block(keys, vals, ix >> 3, iy >> 3, iz >> 3)
            if slot < 0:
                continue
            if cnt[slot, (ix & 7) + BLOCK * ((iy & 7) + BLOCK * (iz & 7))] < min_count:
                continue
            if use_ds:
                sz = depth_sigma[v * ds_step, u * ds_step]
            else:
                dz = d - z0
                sz = c0 + c2 * dz * dz
            J[0] = ax
            J[1] = ay
            J[2] = az
            J[3] = pcy * az - pcz * ay
            J[4] = pcz * ax - pcx * az
            J[5] = pcx * ay - pcy * ax
            jsj = 0.0
            for a in range(6):
                row = 0.0
                for b in range(6):
                    row += Sigma[a, b] * J[b]
                jsj += J[a] * row
            sm = r_sigma[vr, ur]
            var = sz * sz + (sm * sm + jsj) / (c * c)
            r = rpp / c
            n_cmp += 1.0
            if r * r <= 4.0 * var:
                n_in += 1.0
        out[v, 0] = n_cmp
        out[v, 1] = n_in


def depth_predictive_counts(
    depth: np.ndarray,
    K: np.ndarray,
    T_w_c: np.ndarray,
    Sigma: np.ndarray,
    render,
    tsdf,
    noise: np.ndarray,
    band: float,
    depth_sigma=None,
    ds_step: int = 1,
    min_count: int = PREDICTIVE_MIN_COUNT,
    min_cos: float = PREDICTIVE_MIN_COS,
) -> Tuple[int, int]:
    """(compared, inside 2 sigma) for one frame (module docstring).  ``depth`` (H, W) m at the render level,
    ``K`` = (fx, fy, cx, cy); ``T_w_c``, ``Sigma`` the tracked pose and its covariance; ``render`` any raycast of
    ``tsdf``; ``noise`` = (c0, c2, z0); ``depth_sigma`` an optional full-resolution sigma image (stride ``ds_step``).
    """
    T = np.asarray(T_w_c, dtype=np.float64)
    T_rw = np.linalg.inv(np.asarray(render.T_w_c, dtype=np.float64))
    ds = np.zeros((0, 0), np.float32) if depth_sigma is None else depth_sigma
    out = np.zeros((depth.shape[0], 2))
    _predictive_kernel(
        depth,
        np.asarray(K, dtype=np.float64),
        np.ascontiguousarray(T[:3, :3]),
        np.ascontiguousarray(T[:3, 3]),
        render.camera.params,
        render.depth,
        render.vertex,
        render.normal,
        render.sigma,
        np.ascontiguousarray(Sigma, dtype=np.float64),
        np.asarray(noise, dtype=np.float64),
        ds,
        int(ds_step),
        tsdf.keys,
        tsdf.vals,
        tsdf.cnt,
        float(tsdf.voxel_size),
        int(min_count),
        float(band),
        float(min_cos),
        np.ascontiguousarray(T_rw[:3, :3]),
        np.ascontiguousarray(T_rw[:3, 3]),
        out,
    )
    s = out.sum(axis=0)
    return int(s[0]), int(s[1])
