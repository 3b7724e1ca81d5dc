"""Numba kernels of the probabilistic TSDF (:mod:`prism_ros.core.tsdf`): allocation, fusion, queries, extraction.

Pure functions on the arrays :class:`prism_ros.core.tsdf.TsdfMap` owns: ``keys``, ``vals`` (the block hash,
:mod:`prism_ros.core.voxel_hash`); per slot ``block_xyz`` (cap, 3) int64, ``mu``, ``var`` (cap, 512) float32 (the
belief N(mu, var) of each voxel's signed distance, m, positive in free space), ``rgb`` (cap, 512, 3) uint8,
``cnt`` (cap, 512) uint16, ``last_seen`` (cap,) int64 frame id.  Voxel ``l`` of a block is (l & 7, (l >> 3) & 7,
l >> 6); voxel (ix, iy, iz) has its centre at (ix, iy, iz) x voxel size (world).  ``R_wc``, ``t_wc``: camera to
world; ``K`` = (fx, fy, cx, cy) px; depth m, 0 invalid.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_flags import FASTMATH
from .voxel_hash import BLOCK, BLOCK3, BLOCK_MASK, BLOCK_SHIFT, find_block, insert_block, voxel_slot

__all__ = [
    "allocate_blocks",
    "claim_block",
    "integrate_blocks",
    "new_block",
    "query_points",
    "surface_block_counts",
    "surface_voxels",
]


# ----------------------------------------------------------------- allocation
@njit(cache=True, inline="always")
def claim_block(
    keys, vals, block_xyz, mu, var, cnt, rgb, prior_var, bx, by, bz, n_blocks, mark, mark_id, listed, n_list
):
    """Block (bx, by, bz): found, or allocated at the prior (its ``mark`` -1) while the arrays and the hash (half
    full at most) have room; listed in ``listed`` once per ``mark_id``.  Returns (slot, n_blocks, n_list); slot -1:
    no room (grow the map and call again)."""
    slot = find_block(keys, vals, bx, by, bz)
    if slot < 0:
        if n_blocks >= block_xyz.shape[0] or n_blocks >= keys.shape[0] // 2:
            return -1, n_blocks, n_list
        slot = n_blocks
        n_blocks += 1
        new_block(keys, vals, block_xyz, mu, var, cnt, rgb, prior_var, bx, by, bz, slot)
        mark[slot] = -1
    if mark[slot] != mark_id:
        mark[slot] = mark_id
        listed[n_list] = slot
        n_list += 1
    return slot, n_blocks, n_list


@njit(cache=True, inline="always")
def new_block(keys, vals, block_xyz, mu, var, cnt, rgb, prior_var, bx, by, bz, slot):
    """Block (bx, by, bz) at the free ``slot``: every voxel at the prior, unobserved, and in the hash."""
    block_xyz[slot, 0] = bx
    block_xyz[slot, 1] = by
    block_xyz[slot, 2] = bz
    for i in range(BLOCK3):
        mu[slot, i] = 0.0
        var[slot, i] = prior_var
        cnt[slot, i] = 0
        rgb[slot, i, 0] = 0
        rgb[slot, i, 1] = 0
        rgb[slot, i, 2] = 0
    insert_block(keys, vals, bx, by, bz, slot)


@njit(cache=True, nogil=True)
def allocate_blocks(
    depth,
    stride,
    K,
    R_wc,
    t_wc,
    trunc,
    block_m,
    keys,
    vals,
    block_xyz,
    mu,
    var,
    rgb,
    cnt,
    last_seen,
    frame_id,
    n_blocks,
    prior_var,
    visible,
):
    """Allocate every block within +-trunc of a depth sample and list the frame's blocks once in ``visible``:
    (n_blocks, n_visible, ok); ok False when the arrays are full (the caller grows them and calls again).
    """
    H, W = depth.shape
    fx, fy, cx, cy = K[0], K[1], K[2], K[3]
    n_vis = 0
    nsteps = int(np.ceil(2.0 * trunc / (0.5 * block_m))) + 1
    lastb0 = -(1 << 40)
    lastb1 = 0
    lastb2 = 0
    for v in range(0, H, stride):
        for u in range(0, W, stride):
            d = depth[v, u]
            if d <= 0.0:
                continue
            rx = (u - cx) / fx
            ry = (v - cy) / fy
            for k in range(nsteps):
                s = d - trunc + (2.0 * trunc) * k / (nsteps - 1)
                if s <= 0.0:
                    continue
                px = rx * s
                py = ry * s
                pz = s
                wx = R_wc[0, 0] * px + R_wc[0, 1] * py + R_wc[0, 2] * pz + t_wc[0]
                wy = R_wc[1, 0] * px + R_wc[1, 1] * py + R_wc[1, 2] * pz + t_wc[1]
                wz = R_wc[2, 0] * px + R_wc[2, 1] * py + R_wc[2, 2] * pz + t_wc[2]
                bx = int(np.floor(wx / block_m))
                by = int(np.floor(wy / block_m))
                bz = int(np.floor(wz / block_m))
                if bx == lastb0 and by == lastb1 and bz == lastb2:
                    continue
                slot, n_blocks, n_vis = claim_block(
                    keys, vals, block_xyz, mu, var, cnt, rgb, prior_var, bx, by, bz, n_blocks, last_seen, frame_id,
                    visible, n_vis,
                )  # fmt: skip
                if slot < 0:
                    return n_blocks, n_vis, False
                lastb0 = bx
                lastb1 = by
                lastb2 = bz
    return n_blocks, n_vis, True


# ------------------------------------------------------------------ integration
@njit(cache=True, parallel=True, nogil=True, fastmath=FASTMATH)
def integrate_blocks(
    visible,
    n_vis,
    block_xyz,
    mu,
    var,
    rgb,
    cnt,
    depth,
    depth_sigma,
    normals,
    color,
    edges,
    aux_shift,
    K,
    R_cw,
    t_cw,
    vox,
    trunc,
    noise,
    min_var,
    max_count,
    pose_var,
    dist_ratio,
    free_var_floor,
):
    """Fuse one depth frame into the listed blocks (product of Gaussians per voxel).

    The observation of a voxel at camera point p is the point-to-plane distance n . (p - x_surface) to the
    surface at its pixel (projective d - z where the normal is unusable), clipped to +-trunc.  Its variance:
    sigma_z(d)^2 (or ``depth_sigma``^2) + (dist_ratio * s)^2 + the pose variance; near an occlusion boundary
    (``edges``) it grows by max(|s|, 2 voxels)^2.  A clipped observation (s >= trunc) is free-space evidence,
    fused as N(trunc, trunc^2), and cannot push the variance below free_var_floor.  ``normals`` and ``edges``
    may be at a coarser level: read at pixel (v >> aux_shift, u >> aux_shift).
    """
    H, W = depth.shape
    fx, fy, cx, cy = K[0], K[1], K[2], K[3]
    c0, c2, z0 = noise[0], noise[1], noise[2]
    use_sigma_img = depth_sigma.shape[0] == H
    for i in prange(n_vis):
        slot = visible[i]
        bx = block_xyz[slot, 0] * BLOCK
        by = block_xyz[slot, 1] * BLOCK
        bz = block_xyz[slot, 2] * BLOCK
        for lz in range(BLOCK):
            for ly in range(BLOCK):
                wy = (by + ly) * vox
                wz = (bz + lz) * vox
                for lx in range(BLOCK):
                    wx = (bx + lx) * vox
                    px = R_cw[0, 0] * wx + R_cw[0, 1] * wy + R_cw[0, 2] * wz + t_cw[0]
                    py = R_cw[1, 0] * wx + R_cw[1, 1] * wy + R_cw[1, 2] * wz + t_cw[1]
                    pz = R_cw[2, 0] * wx + R_cw[2, 1] * wy + R_cw[2, 2] * wz + t_cw[2]
                    if pz <= 1e-3:
                        continue
                    uf = fx * px / pz + cx
                    vf = fy * py / pz + cy
                    u = int(uf + 0.5)
                    v = int(vf + 0.5)
                    if u < 0 or v < 0 or u >= W or v >= H:
                        continue
                    d = depth[v, u]
                    if d <= 0.0:
                        continue
                    sp = d - pz
                    if sp < -trunc:
                        continue
                    va = v >> aux_shift
                    ua = u >> aux_shift
                    nx = normals[va, ua, 0]
                    ny = normals[va, ua, 1]
                    nz = normals[va, ua, 2]
                    if nx == 0.0 and ny == 0.0 and nz == 0.0:
                        continue  # depth edge or grazing view: no reliable observation
                    # surface point of this pixel
                    sx = (u - cx) / fx * d
                    sy = (v - cy) / fy * d
                    s = nx * (px - sx) + ny * (py - sy) + nz * (pz - d)
                    free = s >= trunc
                    if free:
                        s = trunc
                    elif s < -trunc:
                        s = -trunc
                    if free:
                        var_obs = trunc * trunc
                    else:
                        if use_sigma_img:
                            sz = depth_sigma[v, u]
                        else:
                            dz = d - z0
                            sz = c0 + c2 * dz * dz
                        var_obs = sz * sz + (s * dist_ratio) ** 2 + pose_var
                        if edges[va, ua] != 0:
                            a = abs(s) if abs(s) > 2.0 * vox else 2.0 * vox
                            var_obs += a * a
                    idx = lx + BLOCK * (ly + BLOCK * lz)
                    v0 = var[slot, idx]
                    m0 = mu[slot, idx]
                    prec = 1.0 / v0 + 1.0 / var_obs
                    nv = 1.0 / prec
                    m = nv * (m0 / v0 + s / var_obs)
                    if nv < min_var:
                        nv = min_var
                    if free and nv < free_var_floor:
                        nv = free_var_floor if v0 > free_var_floor else v0
                    mu[slot, idx] = m
                    var[slot, idx] = nv
                    c = cnt[slot, idx]
                    if abs(s) < 0.5 * trunc:
                        # running colour mean, weight saturating at 32 observations
                        w = c if c < 32 else 32
                        for ch in range(3):
                            rgb[slot, idx, ch] = np.uint8((rgb[slot, idx, ch] * w + color[v, u, ch]) / (w + 1) + 0.5)
                    if c < max_count:
                        cnt[slot, idx] = c + 1


# ----------------------------------------------------------------------- query
@njit(cache=True, parallel=True, nogil=True)
def query_points(points, vox, keys, vals, mu, var, cnt, out_mu, out_var, out_cnt, prior_var):
    """Belief of the voxel nearest each world point (N, 3): ``out_mu`` (NaN where unobserved),
    ``out_var`` (``prior_var`` where unobserved) and ``out_cnt`` (0 where unobserved)."""
    n = points.shape[0]
    for i in prange(n):
        ix = int(np.floor(points[i, 0] / vox + 0.5))
        iy = int(np.floor(points[i, 1] / vox + 0.5))
        iz = int(np.floor(points[i, 2] / vox + 0.5))
        slot, idx = voxel_slot(keys, vals, ix, iy, iz)
        out_mu[i] = np.nan
        out_var[i] = prior_var
        out_cnt[i] = 0
        if slot >= 0:
            if cnt[slot, idx] > 0:
                out_mu[i] = mu[slot, idx]
                out_var[i] = var[slot, idx]
                out_cnt[i] = cnt[slot, idx]


@njit(cache=True, parallel=True, nogil=True)
def surface_block_counts(mu, cnt, slots, max_abs_sdf, min_count, out_counts):
    """Per block ``slots[i]``, the voxels with count >= min_count and |mu| <= max_abs_sdf (into ``out_counts[i]``)."""
    for i in prange(len(slots)):
        b = slots[i]
        k = 0
        for l in range(BLOCK3):
            if cnt[b, l] >= min_count and abs(mu[b, l]) <= max_abs_sdf:
                k += 1
        out_counts[i] = k


@njit(cache=True, parallel=True, nogil=True)
def surface_voxels(
    mu,
    var,
    rgb,
    cnt,
    block_xyz,
    slots,
    vox,
    max_abs_sdf,
    min_count,
    model_var,
    dist_ratio,
    offsets,
    xyz,
    out_rgb,
    sigma,
    sdf,
    count,
):
    """Fill the selected voxels of :func:`surface_block_counts` (block ``slots[i]``'s from row
    ``offsets[i]``, in voxel order): centre, colour, reported sigma
    sqrt(var + model_var + (dist_ratio mu)^2), mu and count."""
    for i in prange(len(slots)):
        b = slots[i]
        j = offsets[i]
        for l in range(BLOCK3):
            m = mu[b, l]
            if cnt[b, l] >= min_count and abs(m) <= max_abs_sdf:
                xyz[j, 0] = (block_xyz[b, 0] * BLOCK + (l & BLOCK_MASK)) * vox
                xyz[j, 1] = (block_xyz[b, 1] * BLOCK + ((l >> BLOCK_SHIFT) & BLOCK_MASK)) * vox
                xyz[j, 2] = (block_xyz[b, 2] * BLOCK + (l >> (2 * BLOCK_SHIFT))) * vox
                for ch in range(3):
                    out_rgb[j, ch] = rgb[b, l, ch]
                md = np.float64(m)
                sigma[j] = np.sqrt(np.float64(var[b, l]) + model_var + (dist_ratio * md) ** 2)
                sdf[j] = m
                count[j] = cnt[b, l]
                j += 1
