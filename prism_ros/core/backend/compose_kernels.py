"""Numba kernels of :mod:`prism_ros.core.backend.compose`: allocate the result blocks a submap overlaps, then pull
every voxel of those blocks from the submap (trilinear sample plus pose variance) and fuse it.

Pure functions on arrays.  The result's arrays follow :mod:`prism_ros.core.tsdf_kernels` (``keys``, ``vals``,
``block_xyz``, ``mu``, ``var``, ``rgb``, ``cnt``); the submap's arrays carry an ``s`` prefix.  A submap's coordinates
are its anchor frame; ``R_ma``, ``t_ma`` map anchor points into the map frame.  Index coordinates are lengths divided
by the voxel size (voxel (ix, iy, iz) has its centre at index (ix, iy, iz)).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..numba_flags import FASTMATH
from ..tsdf_kernels import claim_block
from ..voxel_hash import BLOCK, BLOCK_SHIFT, find_block

__all__ = ["allocate_overlap", "fuse_submap"]


@njit(cache=True, nogil=True)
def allocate_overlap(
    src_block_xyz,
    src_slots,
    src_vox,
    R_ma,
    t_ma,
    vox,
    keys,
    vals,
    block_xyz,
    mu,
    var,
    rgb,
    cnt,
    n_blocks,
    prior_var,
    mark,
    mark_id,
    listed,
):
    """Allocate (as the prior) and list once in ``listed`` every result block that a sample of the submap blocks
    ``src_slots`` can reach: (n_blocks, n_listed, ok); ok False when the result arrays are full (the caller grows
    them and calls again with a new ``mark_id``).

    A sample at anchor point p reads the voxels of the cell around p, so submap block b can contribute to samples
    in the box ((8 b - 1) src_vox, (8 b + 8) src_vox) per axis.  Candidates are the result blocks whose voxel centres
    meet that box's map-frame bounding box; a candidate is kept where the sphere around its voxel centres reaches
    the box (tested in the anchor frame; conservative: no block that a sample could reach is missed).
    """
    half = 0.5 * (BLOCK - 1) * vox
    rad2 = 3.0 * half * half
    n_list = 0
    for i in range(src_slots.shape[0]):
        s = src_slots[i]
        lo0 = (src_block_xyz[s, 0] * BLOCK - 1) * src_vox
        lo1 = (src_block_xyz[s, 1] * BLOCK - 1) * src_vox
        lo2 = (src_block_xyz[s, 2] * BLOCK - 1) * src_vox
        hi0 = lo0 + (BLOCK + 1) * src_vox
        hi1 = lo1 + (BLOCK + 1) * src_vox
        hi2 = lo2 + (BLOCK + 1) * src_vox
        mn0, mn1, mn2, mx0, mx1, mx2 = _box_image(R_ma, t_ma, lo0, lo1, lo2, hi0, hi1, hi2)
        # result block B holds voxel centres [8 B, 8 B + 7] vox
        bx0 = int(np.ceil((mn0 / vox - (BLOCK - 1)) / BLOCK))
        by0 = int(np.ceil((mn1 / vox - (BLOCK - 1)) / BLOCK))
        bz0 = int(np.ceil((mn2 / vox - (BLOCK - 1)) / BLOCK))
        bx1 = int(np.floor(mx0 / vox / BLOCK))
        by1 = int(np.floor(mx1 / vox / BLOCK))
        bz1 = int(np.floor(mx2 / vox / BLOCK))
        for bz in range(bz0, bz1 + 1):
            for by in range(by0, by1 + 1):
                for bx in range(bx0, bx1 + 1):
                    c0 = bx * BLOCK * vox + half - t_ma[0]
                    c1 = by * BLOCK * vox + half - t_ma[1]
                    c2 = bz * BLOCK * vox + half - t_ma[2]
                    # the candidate's centre in the anchor frame: R_ma^T (c - t_ma)
                    p0 = R_ma[0, 0] * c0 + R_ma[1, 0] * c1 + R_ma[2, 0] * c2
                    p1 = R_ma[0, 1] * c0 + R_ma[1, 1] * c1 + R_ma[2, 1] * c2
                    p2 = R_ma[0, 2] * c0 + R_ma[1, 2] * c1 + R_ma[2, 2] * c2
                    d0 = max(lo0 - p0, 0.0, p0 - hi0)
                    d1 = max(lo1 - p1, 0.0, p1 - hi1)
                    d2 = max(lo2 - p2, 0.0, p2 - hi2)
                    if d0 * d0 + d1 * d1 + d2 * d2 > rad2:
                        continue
                    slot, n_blocks, n_list = claim_block(
                        keys, vals, block_xyz, mu, var, cnt, rgb, prior_var, bx, by, bz, n_blocks, mark, mark_id,
                        listed, n_list,
                    )  # fmt: skip
                    if slot < 0:
                        return n_blocks, n_list, False
    return n_blocks, n_list, True


@njit(cache=True, inline="always")
def _box_image(M, t, l0, l1, l2, h0, h1, h2):
    """The axis-aligned bounds (min x, y, z, max x, y, z) of the box [l, h] mapped by q = M p + t (its 8 corners)."""
    mn0 = mn1 = mn2 = np.inf
    mx0 = mx1 = mx2 = -np.inf
    for k in range(8):
        p0 = h0 if k & 1 else l0
        p1 = h1 if (k >> 1) & 1 else l1
        p2 = h2 if (k >> 2) & 1 else l2
        q0 = M[0, 0] * p0 + M[0, 1] * p1 + M[0, 2] * p2 + t[0]
        q1 = M[1, 0] * p0 + M[1, 1] * p1 + M[1, 2] * p2 + t[1]
        q2 = M[2, 0] * p0 + M[2, 1] * p1 + M[2, 2] * p2 + t[2]
        mn0, mn1, mn2 = min(mn0, q0), min(mn1, q1), min(mn2, q2)
        mx0, mx1, mx2 = max(mx0, q0), max(mx1, q1), max(mx2, q2)
    return mn0, mn1, mn2, mx0, mx1, mx2


@njit(cache=True, inline="always")
def _quad(S, a):
    """a^T S a for a 6-tuple a and a 6x6 matrix S."""
    acc = 0.0
    for r in range(6):
        row = 0.0
        for c in range(6):
            row += S[r, c] * a[c]
        acc += a[r] * row
    return acc


@njit(cache=True, inline="always")
def _pose_var(S, px, py, pz, nx, ny, nz):
    """n^T J S J^T n with J = [I, -[p]x]: J^T n = (n, p x n)."""
    return _quad(S, (nx, ny, nz, py * nz - pz * ny, pz * nx - px * nz, px * ny - py * nx))


@njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def fuse_submap(
    listed,
    n_list,
    block_xyz,
    mu,
    var,
    rgb,
    cnt,
    skeys,
    svals,
    smu,
    svar,
    srgb,
    scnt,
    A,
    b,
    src_vox,
    Sigma,
    with_pose,
    min_weight,
    min_grad,
    min_var,
    max_count,
):
    """Pull every voxel of the result blocks ``listed[:n_list]`` from one submap and fuse it (parallel over the
    listed blocks, each listed once: race-free).

    Result voxel index i samples the submap at index point A i + b (A = R_am vox / src_vox, b = t_am / src_vox).  Of
    the eight voxels of the cell around it, the observed ones (count > 0) are interpolated with their trilinear
    weights renormalised; the sample is taken where they carry at least ``min_weight`` of the weight.  Mean,
    variance, colour and count are interpolated alike.  With ``with_pose``, n^T J Sigma J^T n is added to the
    variance: n the unit SDF gradient from the cell's observed edges (each axis from the edges along it whose both
    ends are observed, weighted by the trilinear weights of the other two axes); where an axis has no such edge or
    the gradient is below ``min_grad`` (per metre), the trace of J Sigma J^T (the bound over all directions).  The
    sample N(m, v) replaces the prior of a voxel not yet observed, else is fused as a product of Gaussians (variance
    floored at ``min_var``); counts add (saturating at ``max_count``), colours are averaged weighted by count.
    """
    for i in prange(n_list):
        slot = listed[i]
        bx = block_xyz[slot, 0] * BLOCK
        by = block_xyz[slot, 1] * BLOCK
        bz = block_xyz[slot, 2] * BLOCK
        # index-space bounding box of this block's samples, and the submap blocks their cells reach
        e = float(BLOCK - 1)
        lo0, lo1, lo2, hi0, hi1, hi2 = _box_image(A, b, float(bx), float(by), float(bz), bx + e, by + e, bz + e)
        gx0 = int(np.floor(lo0)) >> BLOCK_SHIFT
        gy0 = int(np.floor(lo1)) >> BLOCK_SHIFT
        gz0 = int(np.floor(lo2)) >> BLOCK_SHIFT
        gnx = ((int(np.floor(hi0)) + 1) >> BLOCK_SHIFT) - gx0 + 1
        gny = ((int(np.floor(hi1)) + 1) >> BLOCK_SHIFT) - gy0 + 1
        gnz = ((int(np.floor(hi2)) + 1) >> BLOCK_SHIFT) - gz0 + 1
        grid = np.empty(gnx * gny * gnz, np.int64)
        found = False
        for gz in range(gnz):
            for gy in range(gny):
                for gx in range(gnx):
                    s = find_block(skeys, svals, gx0 + gx, gy0 + gy, gz0 + gz)
                    grid[(gz * gny + gy) * gnx + gx] = s
                    if s >= 0:
                        found = True
        if not found:
            continue
        m8 = np.empty(8)
        ok8 = np.empty(8, np.bool_)
        for lz in range(BLOCK):
            for ly in range(BLOCK):
                for lx in range(BLOCK):
                    ix = bx + lx
                    iy = by + ly
                    iz = bz + lz
                    px = A[0, 0] * ix + A[0, 1] * iy + A[0, 2] * iz + b[0]
                    py = A[1, 0] * ix + A[1, 1] * iy + A[1, 2] * iz + b[1]
                    pz = A[2, 0] * ix + A[2, 1] * iy + A[2, 2] * iz + b[2]
                    jx0 = int(np.floor(px))
                    jy0 = int(np.floor(py))
                    jz0 = int(np.floor(pz))
                    ax = px - jx0
                    ay = py - jy0
                    az = pz - jz0
                    W = 0.0
                    sm = 0.0
                    sv = 0.0
                    sr = 0.0
                    sg = 0.0
                    sb = 0.0
                    sc = 0.0
                    for k in range(8):
                        dx = k & 1
                        dy = (k >> 1) & 1
                        dz = (k >> 2) & 1
                        ok8[k] = False
                        jx = jx0 + dx
                        jy = jy0 + dy
                        jz = jz0 + dz
                        gx = (jx >> BLOCK_SHIFT) - gx0
                        gy = (jy >> BLOCK_SHIFT) - gy0
                        gz = (jz >> BLOCK_SHIFT) - gz0
                        if gx < 0 or gy < 0 or gz < 0 or gx >= gnx or gy >= gny or gz >= gnz:
                            continue  # only by rounding at the box's edge, where the weight is ~0
                        s = grid[(gz * gny + gy) * gnx + gx]
                        if s < 0:
                            continue
                        idx = (jx & (BLOCK - 1)) + BLOCK * ((jy & (BLOCK - 1)) + BLOCK * (jz & (BLOCK - 1)))
                        c = scnt[s, idx]
                        if c == 0:
                            continue
                        ok8[k] = True
                        mk = np.float64(smu[s, idx])
                        m8[k] = mk
                        w = (ax if dx else 1.0 - ax) * (ay if dy else 1.0 - ay) * (az if dz else 1.0 - az)
                        W += w
                        sm += w * mk
                        sv += w * svar[s, idx]
                        sr += w * srgb[s, idx, 0]
                        sg += w * srgb[s, idx, 1]
                        sb += w * srgb[s, idx, 2]
                        sc += w * c
                    if W < min_weight:
                        continue
                    inv_w = 1.0 / W
                    ms = sm * inv_w
                    vs = sv * inv_w
                    if with_pose:
                        pmx = px * src_vox
                        pmy = py * src_vox
                        pmz = pz * src_vox
                        # gradient (index units) from the observed cell edges along each axis
                        g0 = 0.0
                        g1 = 0.0
                        g2 = 0.0
                        w0 = 0.0
                        w1 = 0.0
                        w2 = 0.0
                        for k in range(8):
                            if not ok8[k]:
                                continue
                            dx = k & 1
                            dy = (k >> 1) & 1
                            dz = (k >> 2) & 1
                            wx = ax if dx else 1.0 - ax
                            wy = ay if dy else 1.0 - ay
                            wz = az if dz else 1.0 - az
                            if dx == 0 and ok8[k + 1]:
                                w = wy * wz + 1e-3
                                g0 += w * (m8[k + 1] - m8[k])
                                w0 += w
                            if dy == 0 and ok8[k + 2]:
                                w = wx * wz + 1e-3
                                g1 += w * (m8[k + 2] - m8[k])
                                w1 += w
                            if dz == 0 and ok8[k + 4]:
                                w = wx * wy + 1e-3
                                g2 += w * (m8[k + 4] - m8[k])
                                w2 += w
                        gn = 0.0
                        if w0 > 0.0 and w1 > 0.0 and w2 > 0.0:
                            g0 /= w0
                            g1 /= w1
                            g2 /= w2
                            gn = np.sqrt(g0 * g0 + g1 * g1 + g2 * g2)
                        if gn >= min_grad * src_vox:
                            vs += _pose_var(Sigma, pmx, pmy, pmz, g0 / gn, g1 / gn, g2 / gn)
                        else:
                            vs += (
                                _pose_var(Sigma, pmx, pmy, pmz, 1.0, 0.0, 0.0)
                                + _pose_var(Sigma, pmx, pmy, pmz, 0.0, 1.0, 0.0)
                                + _pose_var(Sigma, pmx, pmy, pmz, 0.0, 0.0, 1.0)
                            )
                    cs = int(sc * inv_w + 0.5)
                    if cs < 1:
                        cs = 1
                    l = lx + BLOCK * (ly + BLOCK * lz)
                    c0 = np.int64(cnt[slot, l])
                    if c0 == 0:
                        mu[slot, l] = ms
                        var[slot, l] = vs if vs > min_var else min_var
                        rgb[slot, l, 0] = np.uint8(min(255.0, sr * inv_w + 0.5))
                        rgb[slot, l, 1] = np.uint8(min(255.0, sg * inv_w + 0.5))
                        rgb[slot, l, 2] = np.uint8(min(255.0, sb * inv_w + 0.5))
                    else:
                        v0 = np.float64(var[slot, l])
                        nv = 1.0 / (1.0 / v0 + 1.0 / vs)
                        mu[slot, l] = nv * (mu[slot, l] / v0 + ms / vs)
                        var[slot, l] = nv if nv > min_var else min_var
                        wt = 1.0 / (c0 + cs)
                        rgb[slot, l, 0] = np.uint8(min(255.0, (rgb[slot, l, 0] * c0 + sr * inv_w * cs) * wt + 0.5))
                        rgb[slot, l, 1] = np.uint8(min(255.0, (rgb[slot, l, 1] * c0 + sg * inv_w * cs) * wt + 0.5))
                        rgb[slot, l, 2] = np.uint8(min(255.0, (rgb[slot, l, 2] * c0 + sb * inv_w * cs) * wt + 0.5))
                    cn = c0 + cs
                    cnt[slot, l] = cn if cn < max_count else max_count
