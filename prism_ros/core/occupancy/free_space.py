"""The free-space layer: space the camera has seen *through*, in the occupancy height band.

The TSDF only holds blocks within +-truncation tau of a surface.  :class:`FreeSpaceLayer` keeps the
seen-through space for the height band [min_z, max_z] (world frame, m) in voxels of 2 x 2 x 2 map voxels;
one brick of :data:`FREE_SUB`^3 of them covers one 8^3 map block and shares its block coordinates.

Along every ``stride``-th pixel's ray, the part from the camera to depth d - tau inside the band is marked, once per
frame and voxel (pixels without depth carve nothing).  Each mark is the TSDF's own clipped observation N(tau, tau^2), so
a voxel seen n times holds the posterior a map voxel would after n clipped observations: the layer stores the count
(uint8, saturating) and :func:`free_space_probability_table` maps it to P(occupied).  At most ``max_bricks`` bricks;
when full, the least recently observed half is forgotten (it reads unknown again).
"""

from __future__ import annotations

import math
import time
from typing import Optional, Tuple

import numpy as np
from numba import njit

from ..voxel_hash import BLOCK_SHIFT, find_block, insert_block, new_table, rebuild_hash
from .probability import check_band, voxel_occupancy

__all__ = ["FREE_SUB", "FreeSpaceLayer", "free_space_probability_table", "carve_free_space"]

#: free-space voxels per map-block edge: a free-space voxel is 2 x 2 x 2 map voxels
FREE_SUB = 4
FREE_SUB3 = FREE_SUB**3
FREE_MASK = FREE_SUB - 1  # a free voxel's index within its brick
_FREE_SHIFT = 1  # map voxel index >> 1 = free-space voxel index
_COUNT_MAX = 255


def free_space_probability_table(tsdf_map, n_max: int = _COUNT_MAX) -> np.ndarray:
    """P(occupied) of a voxel after n = 0..n_max clipped free-space observations: the map's own update of a clipped
    observation (N(tau, tau^2), variance floor min(0.25 tau^2, previous)) from the prior N(0, prior^2), then
    Phi(-mu / reported sigma).  Entry 0 is the prior's 0.5.
    """
    tau = tsdf_map.truncation
    floor = 0.25 * tau * tau
    m, v = 0.0, tsdf_map.prior_var
    mus, vs = [m], [v]
    for _ in range(n_max):
        obs = tau * tau
        nv = 1.0 / (1.0 / v + 1.0 / obs)
        m = nv * (m / v + tau / obs)
        nv = max(nv, tsdf_map.min_var)
        if nv < floor:
            nv = floor if v > floor else v
        v = nv
        mus.append(m)
        vs.append(v)
    return voxel_occupancy(tsdf_map, np.array(mus), np.array(vs))


@njit(cache=True, nogil=True)
def carve_free_space(
    depth,
    stride,
    K,
    R_wc,
    t_wc,
    trunc,
    vox,
    min_z,
    max_z,
    keys,
    vals,
    brick_xyz,
    count,
    touched,
    last_seen,
    frame_id,
    n_bricks,
):
    """Mark the free-space voxels the rays of every ``stride``-th pixel cross in the height band, camera to depth
    d - trunc (module docstring), once per frame (``touched``).  Returns (n_bricks, n_marked, ok); ok is False
    when the brick arrays are full (the caller evicts and calls again).
    """
    H, W = depth.shape
    fx, fy, cx, cy = K[0], K[1], K[2], K[3]
    cap = brick_xyz.shape[0]
    max_fill = keys.shape[0] // 2
    fvox = 2.0 * vox
    n_marked = 0
    for v in range(stride // 2, H, stride):
        for u in range(stride // 2, W, stride):
            d = depth[v, u]
            if d <= 0.0:
                continue
            z_end = d - trunc
            if z_end <= 0.0:
                continue
            rx = (u - cx) / fx
            ry = (v - cy) / fy
            # world direction per unit camera depth z
            dx = R_wc[0, 0] * rx + R_wc[0, 1] * ry + R_wc[0, 2]
            dy = R_wc[1, 0] * rx + R_wc[1, 1] * ry + R_wc[1, 2]
            dz = R_wc[2, 0] * rx + R_wc[2, 1] * ry + R_wc[2, 2]
            # camera-depth interval [z0, z1] of the ray inside the band
            z0 = 0.0
            z1 = z_end
            if abs(dz) < 1e-12:
                if t_wc[2] < min_z or t_wc[2] > max_z:
                    continue
            else:
                za = (min_z - t_wc[2]) / dz
                zb = (max_z - t_wc[2]) / dz
                if za > zb:
                    za, zb = zb, za
                if za > z0:
                    z0 = za
                if zb < z1:
                    z1 = zb
            if z1 <= z0:
                continue
            norm = math.sqrt(dx * dx + dy * dy + dz * dz)
            step = 0.5 * fvox / norm  # half a free-space voxel along the ray
            nsteps = int((z1 - z0) / step) + 1
            lastx = -(1 << 40)
            lasty = 0
            lastz = 0
            lbx = -(1 << 40)
            lby = 0
            lbz = 0
            lslot = -1
            for k in range(nsteps + 1):
                z = z0 + k * step
                if z > z1:
                    z = z1
                wx = t_wc[0] + z * dx
                wy = t_wc[1] + z * dy
                wz = t_wc[2] + z * dz
                if wz < min_z or wz > max_z:
                    continue
                ix = int(np.floor(wx / vox + 0.5))
                iy = int(np.floor(wy / vox + 0.5))
                iz = int(np.floor(wz / vox + 0.5))
                fx_ = ix >> 1
                fy_ = iy >> 1
                fz_ = iz >> 1
                if fx_ == lastx and fy_ == lasty and fz_ == lastz:
                    continue
                lastx = fx_
                lasty = fy_
                lastz = fz_
                bx = ix >> BLOCK_SHIFT
                by = iy >> BLOCK_SHIFT
                bz = iz >> BLOCK_SHIFT
                if bx == lbx and by == lby and bz == lbz:
                    slot = lslot
                else:
                    slot = find_block(keys, vals, bx, by, bz)
                if slot < 0:
                    if n_bricks >= cap or n_bricks >= max_fill:
                        return n_bricks, n_marked, False
                    slot = n_bricks
                    n_bricks += 1
                    brick_xyz[slot, 0] = bx
                    brick_xyz[slot, 1] = by
                    brick_xyz[slot, 2] = bz
                    for i in range(FREE_SUB3):
                        count[slot, i] = 0
                    insert_block(keys, vals, bx, by, bz, slot)
                    last_seen[slot] = -1
                if last_seen[slot] != frame_id:
                    last_seen[slot] = frame_id
                    for i in range(FREE_SUB3):
                        touched[slot, i] = 0
                lbx = bx
                lby = by
                lbz = bz
                lslot = slot
                idx = (fx_ & FREE_MASK) + FREE_SUB * ((fy_ & FREE_MASK) + FREE_SUB * (fz_ & FREE_MASK))
                if touched[slot, idx] == 0:
                    touched[slot, idx] = 1
                    c = count[slot, idx]
                    if c < _COUNT_MAX:
                        count[slot, idx] = c + 1
                    n_marked += 1
    return n_bricks, n_marked, True


@njit(cache=True, nogil=True)
def _free_counts_at(points, vox, keys, vals, count, out):
    """``out[i]``: the count of the free-space voxel holding world point ``points[i]`` (0 where no brick)."""
    for i in range(points.shape[0]):
        ix = int(np.floor(points[i, 0] / vox + 0.5))
        iy = int(np.floor(points[i, 1] / vox + 0.5))
        iz = int(np.floor(points[i, 2] / vox + 0.5))
        slot = find_block(keys, vals, ix >> BLOCK_SHIFT, iy >> BLOCK_SHIFT, iz >> BLOCK_SHIFT)
        out[i] = 0
        if slot >= 0:
            fx_ = ix >> 1
            fy_ = iy >> 1
            fz_ = iz >> 1
            out[i] = count[slot, (fx_ & FREE_MASK) + FREE_SUB * ((fy_ & FREE_MASK) + FREE_SUB * (fz_ & FREE_MASK))]


class FreeSpaceLayer:
    """Seen-through space in the occupancy height band (module docstring).

    ``voxel_size_m``, ``truncation_m``: the map's; ``stride``: the pixel stride of the carved rays; ``max_bricks``
    bounds the memory.  Per brick slot: ``brick_xyz`` (map-block coordinates), ``count`` (FREE_SUB^3 counts, voxel
    (fx, fy, fz) at fx + 4 (fy + 4 fz)) and ``last_seen`` (map frame id of its last observation).
    """

    def __init__(
        self,
        voxel_size_m: float,
        truncation_m: float,
        min_z_m: float,
        max_z_m: float,
        stride: int = 8,
        max_bricks: int = 65536,
        initial_bricks: int = 1024,
    ):
        check_band(float(min_z_m), float(max_z_m))
        if int(stride) < 1:
            raise ValueError(f"free-space pixel stride must be >= 1, got {stride}")
        if int(max_bricks) < 16:
            raise ValueError(f"free-space max_bricks must be >= 16, got {max_bricks}")
        self.voxel_size = float(voxel_size_m)
        self.truncation = float(truncation_m)
        self.min_z = float(min_z_m)
        self.max_z = float(max_z_m)
        self.stride = int(stride)
        self.max_bricks = int(max_bricks)
        self.evicted = 0  # bricks forgotten to bound memory (total)
        self.truncated_frames = 0  # frames whose rays alone needed more than max_bricks
        self._alloc(min(int(initial_bricks), self.max_bricks))
        self.n_bricks = 0
        self.last_ms = 0.0  # wall-clock time of the last integrate()
        #: (the map parameters, :func:`free_space_probability_table`) of the last probability_table() call
        self._table: Optional[Tuple[tuple, np.ndarray]] = None

    def _alloc(self, cap: int) -> None:
        self.capacity = cap
        self.keys, self.vals = new_table(cap)
        self.brick_xyz = np.zeros((cap, 3), dtype=np.int64)
        self.count = np.zeros((cap, FREE_SUB3), dtype=np.uint8)
        self.touched = np.zeros((cap, FREE_SUB3), dtype=np.uint8)
        self.last_seen = np.full(cap, -1, dtype=np.int64)

    def _resize(self, cap: int, keep: np.ndarray) -> None:
        old = (self.brick_xyz[keep], self.count[keep], self.touched[keep], self.last_seen[keep])
        self._alloc(cap)
        n = len(keep)
        for dst, src in zip((self.brick_xyz, self.count, self.touched, self.last_seen), old):
            dst[:n] = src
        self.n_bricks = n
        rebuild_hash(self.keys, self.vals, self.brick_xyz, n)

    def _make_room(self) -> None:
        n = self.n_bricks
        if self.capacity < self.max_bricks:
            self._resize(min(2 * self.capacity, self.max_bricks), np.arange(n))
            return
        # full: forget the least recently observed half (never this frame's bricks)
        ls = self.last_seen[:n]
        order = np.argsort(ls, kind="stable")
        drop = order[: n // 2]
        drop = drop[ls[drop] < ls.max()]
        keep = np.setdiff1d(np.arange(n), drop)
        self.evicted += n - len(keep)
        self._resize(self.capacity, keep)

    @property
    def memory_bytes(self) -> int:
        arrays = (self.keys, self.vals, self.brick_xyz, self.count, self.touched, self.last_seen)
        return int(sum(a.nbytes for a in arrays))

    def clear(self) -> None:
        self.n_bricks = 0
        self.keys[:] = -1
        self.last_seen[:] = -1

    def integrate(self, depth: np.ndarray, K: np.ndarray, T_w_c: np.ndarray, frame_id: int) -> int:
        """Carve one frame (depth in metres, 0 invalid; K = fx, fy, cx, cy). Returns voxels marked."""
        t0 = time.perf_counter()
        R_wc = np.ascontiguousarray(T_w_c[:3, :3], dtype=np.float64)
        t_wc = np.ascontiguousarray(T_w_c[:3, 3], dtype=np.float64)
        K = np.ascontiguousarray(K, dtype=np.float64)
        marked = 0
        for _ in range(64):
            n, m, ok = carve_free_space(
                depth,
                self.stride,
                K,
                R_wc,
                t_wc,
                self.truncation,
                self.voxel_size,
                self.min_z,
                self.max_z,
                self.keys,
                self.vals,
                self.brick_xyz,
                self.count,
                self.touched,
                self.last_seen,
                int(frame_id),
                self.n_bricks,
            )
            self.n_bricks = n
            marked += m
            if ok:
                break
            if self.capacity >= self.max_bricks and self.last_seen[: self.n_bricks].min() >= frame_id:
                # this frame alone fills max_bricks: the rest of its rays are not carved
                self.truncated_frames += 1
                break
            self._make_room()
        self.last_ms = (time.perf_counter() - t0) * 1e3
        return marked

    def counts_at(self, points_w: np.ndarray) -> np.ndarray:
        """Free-space observation count of the free-space voxel holding each point (0 = none)."""
        pts = np.ascontiguousarray(points_w, dtype=np.float64).reshape(-1, 3)
        out = np.empty(len(pts), np.int64)
        _free_counts_at(pts, self.voxel_size, self.keys, self.vals, self.count, out)
        inband = (pts[:, 2] >= self.min_z) & (pts[:, 2] <= self.max_z)
        out[~inband] = 0
        return out

    def probability_table(self, tsdf_map) -> np.ndarray:
        """P(occupied) of a free-space voxel by its count (index 0..255) under ``tsdf_map``'s update and
        reported sigma (:func:`free_space_probability_table`); recomputed when the map's parameters change."""
        key = (
            tsdf_map.truncation,
            tsdf_map.prior_var,
            tsdf_map.min_var,
            tsdf_map.model_var,
            tsdf_map.distance_sigma_ratio,
        )
        if self._table is None or self._table[0] != key:
            self._table = (key, free_space_probability_table(tsdf_map))
        return self._table[1]
