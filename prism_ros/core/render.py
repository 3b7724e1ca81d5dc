"""Raycast the probabilistic TSDF: depth, world vertices and normals, intensity and map sigma."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from numba import njit, prange

from .camera import Camera
from .numba_flags import FASTMATH
from .tsdf import TsdfMap
from .voxel_hash import BLOCK, BLOCK_MASK, BLOCK_SHIFT, find_block, voxel_slot

__all__ = ["Render", "render_map"]


@njit(cache=True, fastmath=FASTMATH)
def trilinear(keys, vals, mu, var, rgb, cnt, vox, model_var, px, py, pz, out):
    """Trilinear SDF mean, gradient, sigma and colour at world point p into out = [mu, gx, gy, gz, sigma, r, g, b];
    False if any of the eight corner voxels is unobserved.
    """
    fx_ = px / vox
    fy_ = py / vox
    fz_ = pz / vox
    ix = int(np.floor(fx_))
    iy = int(np.floor(fy_))
    iz = int(np.floor(fz_))
    ax = fx_ - ix
    ay = fy_ - iy
    az = fz_ - iz
    m = np.empty(8)
    s = np.empty(8)
    c = np.empty((8, 3))
    same = (ix & BLOCK_MASK) < BLOCK_MASK and (iy & BLOCK_MASK) < BLOCK_MASK and (iz & BLOCK_MASK) < BLOCK_MASK
    slot0 = find_block(keys, vals, ix >> BLOCK_SHIFT, iy >> BLOCK_SHIFT, iz >> BLOCK_SHIFT)
    for k in range(8):
        dx = k & 1
        dy = (k >> 1) & 1
        dz = (k >> 2) & 1
        jx = ix + dx
        jy = iy + dy
        jz = iz + dz
        if same:
            slot = slot0
        else:
            slot = find_block(keys, vals, jx >> BLOCK_SHIFT, jy >> BLOCK_SHIFT, jz >> BLOCK_SHIFT)
        if slot < 0:
            return False
        idx = (jx & BLOCK_MASK) + BLOCK * ((jy & BLOCK_MASK) + BLOCK * (jz & BLOCK_MASK))
        if cnt[slot, idx] == 0:
            return False
        m[k] = mu[slot, idx]
        s[k] = np.sqrt(var[slot, idx] + model_var)
        c[k, 0] = rgb[slot, idx, 0]
        c[k, 1] = rgb[slot, idx, 1]
        c[k, 2] = rgb[slot, idx, 2]
    val = 0.0
    gx = 0.0
    gy = 0.0
    gz = 0.0
    sig = 0.0
    r = 0.0
    g = 0.0
    b = 0.0
    for k in range(8):
        dx = k & 1
        dy = (k >> 1) & 1
        dz = (k >> 2) & 1
        wx = ax if dx else 1.0 - ax
        wy = ay if dy else 1.0 - ay
        wz = az if dz else 1.0 - az
        w = wx * wy * wz
        val += w * m[k]
        sig += w * s[k]
        r += w * c[k, 0]
        g += w * c[k, 1]
        b += w * c[k, 2]
        sx = 1.0 if dx else -1.0
        sy = 1.0 if dy else -1.0
        sz = 1.0 if dz else -1.0
        gx += sx * wy * wz * m[k]
        gy += sy * wx * wz * m[k]
        gz += sz * wx * wy * m[k]
    out[0] = val
    out[1] = gx / vox
    out[2] = gy / vox
    out[3] = gz / vox
    out[4] = sig
    out[5] = r
    out[6] = g
    out[7] = b
    return True


@njit(cache=True, fastmath=FASTMATH)
def trilinear_sdf(keys, vals, mu, cnt, vox, px, py, pz, fallback):
    """Trilinear SDF mean only (the cheap version of :func:`trilinear`); ``fallback``
    where a corner is unobserved."""
    fx_ = px / vox
    fy_ = py / vox
    fz_ = pz / vox
    ix = int(np.floor(fx_))
    iy = int(np.floor(fy_))
    iz = int(np.floor(fz_))
    ax = fx_ - ix
    ay = fy_ - iy
    az = fz_ - iz
    same = (ix & BLOCK_MASK) < BLOCK_MASK and (iy & BLOCK_MASK) < BLOCK_MASK and (iz & BLOCK_MASK) < BLOCK_MASK
    slot0 = find_block(keys, vals, ix >> BLOCK_SHIFT, iy >> BLOCK_SHIFT, iz >> BLOCK_SHIFT)
    val = 0.0
    for k in range(8):
        dx = k & 1
        dy = (k >> 1) & 1
        dz = (k >> 2) & 1
        jx = ix + dx
        jy = iy + dy
        jz = iz + dz
        slot = slot0 if same else find_block(keys, vals, jx >> BLOCK_SHIFT, jy >> BLOCK_SHIFT, jz >> BLOCK_SHIFT)
        if slot < 0:
            return fallback
        idx = (jx & BLOCK_MASK) + BLOCK * ((jy & BLOCK_MASK) + BLOCK * (jz & BLOCK_MASK))
        if cnt[slot, idx] == 0:
            return fallback
        w = (ax if dx else 1.0 - ax) * (ay if dy else 1.0 - ay) * (az if dz else 1.0 - az)
        val += w * mu[slot, idx]
    return val


@njit(cache=True, inline="always")
def _tri_at(keys, vals, mu, var, rgb, cnt, vox, model_var, o, dx, dy, dz, t, tri, fallback):
    """Trilinear SDF at ray parameter t; ``fallback`` where a corner is unobserved."""
    return trilinear_sdf(keys, vals, mu, cnt, vox, o[0] + t * dx, o[1] + t * dy, o[2] + t * dz, fallback)


@njit(cache=True, parallel=True, nogil=True, fastmath=FASTMATH)
def raycast(
    keys,
    vals,
    mu,
    var,
    rgb,
    cnt,
    vox,
    model_var,
    block_m,
    K,
    R_wc,
    t_wc,
    H,
    W,
    dmin,
    dmax,
    guide,
    guide_margin,
    out_depth,
    out_vert,
    out_norm,
    out_int,
    out_sigma,
):
    """Raycast every pixel.  Where ``guide`` (an HxW depth image, or 0x0) is valid the ray
    is first marched only within +-guide_margin of it; pixels without a hit there
    (and unguided pixels) are marched over [dmin, dmax]."""
    has_guide = guide.shape[0] == H
    fx, fy, cx, cy = K[0], K[1], K[2], K[3]
    for v in prange(H):
        tri = np.empty(8)
        tri0 = np.empty(8)
        for u in range(W):
            out_depth[v, u] = 0.0
            out_int[v, u] = 0.0
            out_sigma[v, u] = 0.0
            for k in range(3):
                out_vert[v, u, k] = 0.0
                out_norm[v, u, k] = 0.0
            rx = (u - cx) / fx
            ry = (v - cy) / fy
            rn = np.sqrt(rx * rx + ry * ry + 1.0)
            # ray in world, parametrised by camera z
            dx = R_wc[0, 0] * rx + R_wc[0, 1] * ry + R_wc[0, 2]
            dy = R_wc[1, 0] * rx + R_wc[1, 1] * ry + R_wc[1, 2]
            dz = R_wc[2, 0] * rx + R_wc[2, 1] * ry + R_wc[2, 2]
            g = guide[v, u] if has_guide else 0.0
            for attempt in range(2):
                if attempt == 0:
                    if g <= 0.0:
                        continue
                    # depth-guided: the measured depth at this pixel says where the
                    # surface is; march only a window around it
                    t = max(dmin, g - guide_margin)
                    t_end = min(dmax, g + guide_margin)
                else:
                    if out_depth[v, u] > 0.0:
                        break
                    t = dmin
                    t_end = dmax
                t_prev = -1.0
                m_prev = 0.0
                while t < t_end:
                    px = t_wc[0] + t * dx
                    py = t_wc[1] + t * dy
                    pz = t_wc[2] + t * dz
                    ix = int(np.floor(px / vox + 0.5))
                    iy = int(np.floor(py / vox + 0.5))
                    iz = int(np.floor(pz / vox + 0.5))
                    slot, idx = voxel_slot(keys, vals, ix, iy, iz)
                    if slot < 0:
                        t_prev = -1.0
                        t += 0.5 * block_m / rn
                        continue
                    if cnt[slot, idx] == 0:
                        t_prev = -1.0
                        t += vox / rn
                        continue
                    m = mu[slot, idx]
                    if m <= 0.0:
                        if t_prev < 0.0 or m_prev <= 0.0:
                            break  # entered the surface from unknown space or from behind
                        # zero crossing between t_prev and t: bracket it on the trilinear
                        # SDF (continuous along the ray), then refine by regula falsi.
                        ta = t_prev
                        tb = t
                        hstep = vox / rn
                        fa = _tri_at(keys, vals, mu, var, rgb, cnt, vox, model_var, t_wc, dx, dy, dz, ta, tri0, m_prev)
                        k = 0
                        while fa <= 0.0 and k < 2 and ta - hstep > dmin:
                            tb = ta
                            ta -= hstep
                            fa = _tri_at(
                                keys, vals, mu, var, rgb, cnt, vox, model_var, t_wc, dx, dy, dz, ta, tri0, np.nan
                            )
                            k += 1
                        fb = _tri_at(keys, vals, mu, var, rgb, cnt, vox, model_var, t_wc, dx, dy, dz, tb, tri, m)
                        k = 0
                        while fb > 0.0 and k < 3:
                            ta = tb
                            fa = fb
                            tb += 0.5 * hstep
                            fb = _tri_at(
                                keys, vals, mu, var, rgb, cnt, vox, model_var, t_wc, dx, dy, dz, tb, tri, np.nan
                            )
                            k += 1
                        if not (fa > 0.0 and fb <= 0.0):
                            break  # no clean crossing (thin or inconsistent surface, unobserved corners)
                        for _ in range(2):
                            tm = ta + (tb - ta) * fa / (fa - fb)
                            fm = _tri_at(
                                keys, vals, mu, var, rgb, cnt, vox, model_var, t_wc, dx, dy, dz, tm, tri, np.nan
                            )
                            if fm != fm:
                                break
                            if fm > 0.0:
                                ta = tm
                                fa = fm
                            else:
                                tb = tm
                                fb = fm
                        th = ta + (tb - ta) * fa / (fa - fb)
                        hx = t_wc[0] + th * dx
                        hy = t_wc[1] + th * dy
                        hz = t_wc[2] + th * dz
                        if not trilinear(keys, vals, mu, var, rgb, cnt, vox, model_var, hx, hy, hz, tri):
                            break
                        gn = np.sqrt(tri[1] * tri[1] + tri[2] * tri[2] + tri[3] * tri[3])
                        if gn < 1e-6:
                            break
                        nx = tri[1] / gn
                        ny = tri[2] / gn
                        nz = tri[3] / gn
                        if nx * dx + ny * dy + nz * dz >= 0.0:
                            break  # back face
                        out_depth[v, u] = th
                        out_vert[v, u, 0] = hx
                        out_vert[v, u, 1] = hy
                        out_vert[v, u, 2] = hz
                        out_norm[v, u, 0] = nx
                        out_norm[v, u, 1] = ny
                        out_norm[v, u, 2] = nz
                        out_sigma[v, u] = tri[4]
                        out_int[v, u] = (0.299 * tri[5] + 0.587 * tri[6] + 0.114 * tri[7]) * (1.0 / 255.0)
                        break
                    t_prev = t
                    m_prev = m
                    step = m if m > vox else vox
                    t += step / rn
    return 0


@njit(cache=True, parallel=True, nogil=True)
def image_gradient(img, depth, gx, gy):
    """Central-difference gradient of a rendered image; 0 where a neighbour is invalid."""
    H, W = img.shape
    for v in prange(H):
        for u in range(W):
            gx[v, u] = 0.0
            gy[v, u] = 0.0
            if u == 0 or v == 0 or u == W - 1 or v == H - 1:
                continue
            if depth[v, u - 1] <= 0 or depth[v, u + 1] <= 0 or depth[v - 1, u] <= 0 or depth[v + 1, u] <= 0:
                continue
            gx[v, u] = 0.5 * (img[v, u + 1] - img[v, u - 1])
            gy[v, u] = 0.5 * (img[v + 1, u] - img[v - 1, u])


@dataclass
class Render:
    """A raycast of the map from pose ``T_w_c`` with intrinsics ``camera``."""

    T_w_c: np.ndarray
    camera: Camera
    depth: np.ndarray  # HxW camera z, 0 = no surface
    vertex: np.ndarray  # HxWx3 world
    normal: np.ndarray  # HxWx3 world
    intensity: np.ndarray  # HxW in [0, 1]
    sigma: np.ndarray  # HxW map SDF std at the surface (m)
    grad_x: np.ndarray
    grad_y: np.ndarray

    @property
    def valid_fraction(self) -> float:
        return float(np.count_nonzero(self.depth)) / self.depth.size


def render_map(
    tsdf: TsdfMap,
    camera: Camera,
    T_w_c: np.ndarray,
    depth_min: float,
    depth_max: float,
    guide: Optional[np.ndarray] = None,
    guide_margin: float = 0.3,
) -> Render:
    """Raycast ``tsdf`` from ``T_w_c``.  ``guide`` (a depth image of this camera) starts each ray near the surface:
    the same result wherever the map's first surface lies within ``guide_margin`` of it.
    """
    H, W = camera.height, camera.width
    depth = np.empty((H, W), np.float32)
    vert = np.empty((H, W, 3), np.float32)
    norm = np.empty((H, W, 3), np.float32)
    inten = np.empty((H, W), np.float32)
    sig = np.empty((H, W), np.float32)
    raycast(
        tsdf.keys,
        tsdf.vals,
        tsdf.mu,
        tsdf.var,
        tsdf.rgb,
        tsdf.cnt,
        tsdf.voxel_size,
        tsdf.model_var,
        tsdf.block_m,
        camera.params,
        np.ascontiguousarray(T_w_c[:3, :3]),
        np.ascontiguousarray(T_w_c[:3, 3]),
        H,
        W,
        depth_min,
        depth_max,
        np.zeros((0, 0), np.float32) if guide is None else guide,
        float(guide_margin),
        depth,
        vert,
        norm,
        inten,
        sig,
    )
    gx = np.empty((H, W), np.float32)
    gy = np.empty((H, W), np.float32)
    image_gradient(inten, depth, gx, gy)
    return Render(T_w_c.copy(), camera, depth, vert, norm, inten, sig, gx, gy)
