"""Occupancy from the Gaussian-TSDF posterior: point queries, path collision risk,
a free-space layer and a 2-D occupancy grid (no ROS).

Per voxel the map holds N(mu, sigma^2) over the signed distance (positive in free
space).  The posterior probability that a point lies *inside* the surface is

    P(occupied) = P(SDF < 0) = Phi(-mu / sigma),

with sigma the reported sigma (:meth:`TsdfMap.reported_sigma`: fused variance plus
the systematic model and distance terms).  An unobserved point keeps the prior
N(0, prior^2), i.e. P = Phi(0) = 0.5.

Free space
----------
The TSDF only holds blocks within +-truncation of a surface, so the space a camera
has seen *through* (further than tau in front of the surface it hit) is not in the
map.  :class:`FreeSpaceLayer` keeps that evidence for the occupancy height band
only, in coarse voxels of 2 x 2 x 2 map voxels (so one free-space brick of 4^3 of
them covers exactly one 8^3 map block and shares its block coordinates).  Along
every ``stride``-th pixel's ray, the part from the camera to depth d - tau (the
part the TSDF would clip to tau) that lies in the band is marked, once per frame
and voxel.  Every such observation is the TSDF's own clipped free-space
observation N(tau, tau^2) (see :func:`prism_ros.core.tsdf.integrate_blocks`), so a
free-space voxel seen n times holds exactly the posterior a map voxel would hold
after n clipped observations: it depends on n only, and the layer stores the
count (uint8, saturating at 255; the posterior reaches the map's free-space
variance floor after 4).  :func:`free_space_probability_table` computes that
posterior with the map's own update and reported sigma.  Pixels without a depth
reading carve nothing (a missing return says nothing about the range).  Memory
is bounded: at most ``max_bricks`` bricks (128 bytes each plus the hash); when
full, the least recently observed half is forgotten (it reads unknown again).

Occupancy grid
--------------
A cell of the grid covers the world-frame height band [min_z, max_z] (voxel
centres with min_z <= z <= max_z).  Its value is the **maximum** over the observed
voxels of the band above it of P(occupied), taking for each map-voxel position the
TSDF voxel if observed and the free-space voxel covering it if observed (both when
both are; max): an obstacle anywhere in the band occupies the cell, as for a
robot whose body spans the band.  Values are round(100 P) in 0..100, -1 where no
voxel of the band above the cell is observed.  :class:`OccupancyGridBuilder`
keeps, per 8x8-voxel map column, the band maximum at voxel resolution, recomputes
only the columns whose map blocks or free-space bricks changed (at most
``max_columns`` per update; the rest wait for the next one) and assembles the
grid at the requested resolution (max over the voxel columns in each cell).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
from numba import njit
from scipy.special import ndtr

from .tsdf import BLOCK, BLOCK_SHIFT, _insert, find_block, rebuild_hash

__all__ = [
    "FREE_SUB",
    "UNKNOWN_PROBABILITY",
    "FreeSpaceLayer",
    "free_space_probability_table",
    "voxel_occupancy",
    "occupancy_probability",
    "collision_probability",
    "OccupancyGrid2D",
    "OccupancyGridBuilder",
    "check_band",
]

#: free-space voxels per map-block edge: a free-space voxel is 2 x 2 x 2 map voxels
FREE_SUB = 4
FREE_SUB3 = FREE_SUB ** 3
FREE_MASK = FREE_SUB - 1  # a free voxel's index within its brick
_FREE_SHIFT = 1  # map voxel index >> 1 = free-space voxel index
#: P(occupied) of a point no voxel has observed: the prior N(0, prior^2) gives Phi(0)
UNKNOWN_PROBABILITY = 0.5
_COUNT_MAX = 255


def check_band(min_z_m: float, max_z_m: float) -> None:
    """Refuse an empty or inverted height band with the reason."""
    if not (math.isfinite(min_z_m) and math.isfinite(max_z_m)):
        raise ValueError(f"occupancy height band [{min_z_m}, {max_z_m}] m is not finite")
    if min_z_m >= max_z_m:
        raise ValueError(
            f"occupancy height band is empty: occupancy_min_z_m = {min_z_m} m must be smaller than "
            f"occupancy_max_z_m = {max_z_m} m")


# ------------------------------------------------------------------ per voxel
def voxel_occupancy(tsdf_map, mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    """P(SDF < 0) = Phi(-mu / sigma) for fused voxel beliefs (mu, var), sigma as reported."""
    mu = np.asarray(mu, dtype=np.float64)
    return ndtr(-mu / tsdf_map.reported_sigma(var, mu))


def free_space_probability_table(tsdf_map, n_max: int = _COUNT_MAX) -> np.ndarray:
    """P(occupied) of a voxel after n = 0..n_max clipped free-space observations.

    Runs the map's own update (:func:`prism_ros.core.tsdf.integrate_blocks` for a clipped
    observation: N(tau, tau^2), variance floor min(0.25 tau^2, previous)) from the prior
    N(0, prior^2), then Phi(-mu / reported sigma).  Entry 0 is the prior's 0.5."""
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


# -------------------------------------------------------------- free space
@njit(cache=True, nogil=True)
def carve_free_space(
    depth, stride, K, R_wc, t_wc, trunc, vox, min_z, max_z,
    keys, vals, brick_xyz, count, touched, last_seen, frame_id, n_bricks,
):
    """Mark the free-space voxels that the rays of every ``stride``-th pixel cross in
    the height band, from the camera to depth d - trunc (see the module docstring).

    A voxel is counted once per frame (``touched`` is cleared when a brick is first
    touched in frame ``frame_id``).  Returns (n_bricks, n_marked, ok); ok is False when
    the brick arrays are full (the caller evicts and calls again: voxels already
    counted in this frame are not counted twice)."""
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
                    _insert(keys, vals, bx, by, bz, slot)
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

    ``voxel_size_m`` and ``truncation_m`` are the map's; ``stride`` is the pixel stride
    of the carved rays; ``max_bricks`` bounds the memory (128 bytes a brick)."""

    def __init__(self, voxel_size_m: float, truncation_m: float, min_z_m: float, max_z_m: float,
                 stride: int = 8, max_bricks: int = 65536, initial_bricks: int = 1024):
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
        self.last_ms = 0.0

    def _alloc(self, cap: int) -> None:
        self.capacity = cap
        ht = 1
        while ht < 2 * cap + 2:
            ht <<= 1
        self.keys = np.full(ht, -1, dtype=np.int64)
        self.vals = np.zeros(ht, dtype=np.int32)
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
                depth, self.stride, K, R_wc, t_wc, self.truncation, self.voxel_size, self.min_z,
                self.max_z, self.keys, self.vals, self.brick_xyz, self.count, self.touched,
                self.last_seen, int(frame_id), self.n_bricks)
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


# ------------------------------------------------------------------- queries
def occupancy_probability(tsdf_map, points_w: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(P(occupied), observed) at world points, nearest voxel.

    P = Phi(-mu / sigma) where the map observed the voxel; else, where the map's free-space
    layer (``tsdf_map.free_space``) saw through the point, the free-space posterior for its
    count; else the prior's 0.5 (``observed`` False)."""
    pts = np.ascontiguousarray(points_w, dtype=np.float64).reshape(-1, 3)
    mu, sigma, cnt = tsdf_map.query(pts)
    obs = cnt > 0
    p = np.full(len(pts), UNKNOWN_PROBABILITY)
    p[obs] = ndtr(-mu[obs] / sigma[obs])
    free = getattr(tsdf_map, "free_space", None)
    if free is not None and free.n_bricks:
        n = free.counts_at(pts)
        seen = n > 0
        table = _table_for(tsdf_map)
        pf = table[n[seen]]
        p[seen] = np.where(obs[seen], np.maximum(p[seen], pf), pf)
        obs = obs | seen
    return p, obs


def _table_for(tsdf_map) -> np.ndarray:
    key = (tsdf_map.truncation, tsdf_map.prior_var, tsdf_map.min_var, tsdf_map.model_var,
           tsdf_map.distance_sigma_ratio)
    cache = getattr(tsdf_map, "_free_table_cache", None)
    if cache is None or cache[0] != key:
        cache = (key, free_space_probability_table(tsdf_map))
        tsdf_map._free_table_cache = cache
    return cache[1]


def _sphere_offsets(radius_vox: float) -> np.ndarray:
    r = int(math.ceil(radius_vox))
    g = np.arange(-r, r + 1)
    o = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    return o[(o * o).sum(axis=1) <= radius_vox * radius_vox]


def collision_probability(tsdf_map, path_points_w: np.ndarray, radius_m: float,
                          per_waypoint: bool = False, max_voxels: int = 2_000_000):
    """Risk that a sphere of ``radius_m`` swept along a polyline path hits an obstacle.

    The body is swept in steps of at most one voxel; every voxel whose centre is within
    radius + half a voxel of a body centre (the half voxel covers rounding the centre to
    the voxel grid) counts once.  The risk is the **maximum** of P(occupied)
    (:func:`occupancy_probability`, unobserved voxels 0.5) over those voxels: exact when
    the voxel beliefs are fully correlated, a lower bound on the union otherwise.  (The
    independent union 1 - prod(1 - p) is not used: every voxel, even well observed free
    space, keeps p of a few per cent, so any long path would read as certain to collide.)

    Returns a float, or with ``per_waypoint`` an (N,) array: entry i is the risk of the
    body swept from waypoint i-1 to i (entry 0: at waypoint 0); the path's is its max."""
    P = np.asarray(path_points_w, dtype=np.float64).reshape(-1, 3)
    if len(P) == 0:
        raise ValueError("collision_probability needs at least one path point")
    if not np.all(np.isfinite(P)):
        raise ValueError("collision_probability: path points must be finite")
    r = float(radius_m)
    if not (r >= 0.0 and math.isfinite(r)):
        raise ValueError(f"collision_probability: radius_m must be finite and >= 0, got {radius_m}")
    vox = tsdf_map.voxel_size
    offs = _sphere_offsets(r / vox + 0.5)
    risk = np.empty(len(P))
    for i in range(len(P)):
        a = P[i - 1] if i else P[0]
        b = P[i]
        n = max(1, int(math.ceil(np.linalg.norm(b - a) / vox)))
        centres = a + (b - a) * (np.arange(n + 1)[:, None] / n)
        c_idx = np.unique(np.floor(centres / vox + 0.5).astype(np.int64), axis=0)
        if len(c_idx) * len(offs) > max_voxels:
            raise ValueError(
                f"collision_probability: segment {i} sweeps {len(c_idx) * len(offs)} voxels "
                f"(> max_voxels = {max_voxels}); split the path or raise max_voxels")
        vidx = np.unique((c_idx[:, None, :] + offs[None, :, :]).reshape(-1, 3), axis=0)
        p, _ = occupancy_probability(tsdf_map, vidx.astype(np.float64) * vox)
        risk[i] = float(p.max())
    return risk if per_waypoint else float(risk.max())


# ------------------------------------------------------------ occupancy grid
@dataclass
class OccupancyGrid2D:
    """A 2-D occupancy grid: ``data`` (height, width) int8, row = y, column = x, values
    0..100 or -1 (unknown); cell (0, 0)'s corner at ``origin_xy`` (world, metres);
    ``resolution`` metres per cell; ``z`` the band's bottom (where it is drawn)."""

    data: np.ndarray
    origin_xy: Tuple[float, float]
    resolution: float
    z: float

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    def cell_of(self, xy: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(row, column) of world xy points (may lie outside the grid)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        col = np.floor((xy[:, 0] - self.origin_xy[0]) / self.resolution).astype(np.int64)
        row = np.floor((xy[:, 1] - self.origin_xy[1]) / self.resolution).astype(np.int64)
        return row, col

    def cell_centres(self) -> np.ndarray:
        """(height, width, 2) world xy of the cell centres."""
        x = self.origin_xy[0] + (np.arange(self.width) + 0.5) * self.resolution
        y = self.origin_xy[1] + (np.arange(self.height) + 0.5) * self.resolution
        X, Y = np.meshgrid(x, y)
        return np.stack([X, Y], axis=-1)


@njit(cache=True, nogil=True)
def _find_column_blocks(keys, vals, cols, bz):
    out = np.empty(cols.shape[0], np.int64)
    for i in range(cols.shape[0]):
        out[i] = find_block(keys, vals, cols[i, 0], cols[i, 1], bz)
    return out


def _pack2(bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    return ((np.asarray(bx, np.int64) + (1 << 30)) << 32) | (np.asarray(by, np.int64) + (1 << 30))


class OccupancyGridBuilder:
    """Incremental 2-D occupancy grid over a height band (module docstring).

    ``resolution_m`` 0 means the voxel size; otherwise it must be at least the voxel size.
    ``max_columns`` bounds the map columns (8 x 8 voxels) recomputed per :meth:`update`;
    ``max_cells`` bounds the grid: a larger one is cropped to a square window of that
    many cells around ``centre_xy``."""

    def __init__(self, voxel_size_m: float, min_z_m: float, max_z_m: float, resolution_m: float = 0.0,
                 max_columns: int = 4096, max_cells: int = 4_000_000):
        check_band(float(min_z_m), float(max_z_m))
        vox = float(voxel_size_m)
        res = float(resolution_m) if resolution_m else vox
        if not (math.isfinite(res) and res >= vox * (1 - 1e-9) and res <= 1000 * vox):
            raise ValueError(
                f"occupancy resolution {resolution_m} m is out of range: use 0 (the voxel size, {vox} m) "
                f"or a value in [{vox}, {1000 * vox}] m (finer than a voxel adds no information)")
        if int(max_columns) < 1 or int(max_cells) < 1:
            raise ValueError("max_columns and max_cells must be positive")
        self.voxel_size = vox
        self.min_z = float(min_z_m)
        self.max_z = float(max_z_m)
        self.resolution = res
        self.max_columns = int(max_columns)
        self.max_cells = int(max_cells)
        self._reset_cache()
        self.last_stats: Dict[str, float] = {}

    def _reset_cache(self) -> None:
        self._col_index: Dict[int, int] = {}
        self._col_xy = np.zeros((0, 2), np.int64)
        self._col_max = np.zeros((0, BLOCK, BLOCK), np.float32)  # [ly, lx], NaN unknown
        self._pending: Dict[int, None] = {}  # insertion-ordered set of dirty column keys
        self._map_ref = None
        self._epoch = None
        self._stamp = -(1 << 62)
        self._free_stamp = -(1 << 62)

    @property
    def pending_columns(self) -> int:
        return len(self._pending)

    @property
    def memory_bytes(self) -> int:
        return int(self._col_xy.nbytes + self._col_max.nbytes + 100 * len(self._col_index))

    def _bz_range(self) -> Tuple[int, int]:
        bm = self.voxel_size * BLOCK
        lo = int(math.floor((self.min_z + 0.5 * self.voxel_size) / bm))
        hi = int(math.floor((self.max_z + 0.5 * self.voxel_size) / bm))
        return lo, hi

    def _mark_dirty(self, tsdf_map) -> None:
        epoch = getattr(tsdf_map, "epoch", 0)
        if tsdf_map is not self._map_ref or epoch != self._epoch:
            self._reset_cache()
            self._map_ref = tsdf_map
            self._epoch = epoch
        lo, hi = self._bz_range()
        n = tsdf_map.n_blocks
        ls = tsdf_map.last_seen[:n]
        xyz = tsdf_map.block_xyz[:n]
        first = self._stamp < -(1 << 61)  # new map (or a loaded one, last_seen -1): every block
        sel = np.ones(n, bool) if first else ls > self._stamp
        sel &= (xyz[:, 2] >= lo) & (xyz[:, 2] <= hi)
        keys = [_pack2(xyz[sel, 0], xyz[sel, 1])]
        self._stamp = int(ls.max()) if n else self._stamp
        free = getattr(tsdf_map, "free_space", None)
        if free is not None and free.n_bricks:
            fn = free.n_bricks
            fls = free.last_seen[:fn]
            fsel = np.ones(fn, bool) if first else fls > self._free_stamp
            keys.append(_pack2(free.brick_xyz[:fn][fsel, 0], free.brick_xyz[:fn][fsel, 1]))
            self._free_stamp = int(fls.max())
        for k in np.unique(np.concatenate(keys)).tolist():
            self._pending[k] = None

    def _compute_columns(self, tsdf_map, cols: np.ndarray) -> np.ndarray:
        """(M, 8, 8) band maximum of P(occupied) at voxel xy for columns (M, 2); NaN unknown."""
        M = len(cols)
        out = np.full((M, BLOCK, BLOCK), np.nan, np.float32)
        lo, hi = self._bz_range()
        vox = self.voxel_size
        lz = np.arange(BLOCK)
        free = getattr(tsdf_map, "free_space", None)
        table = _table_for(tsdf_map) if free is not None else None
        for bz in range(lo, hi + 1):
            z = (bz * BLOCK + lz) * vox
            zin = (z >= self.min_z) & (z <= self.max_z)
            if not zin.any():
                continue
            slots = _find_column_blocks(tsdf_map.keys, tsdf_map.vals, cols, bz)
            has = slots >= 0
            if has.any():
                s = slots[has]
                mu = tsdf_map.mu[s].reshape(-1, BLOCK, BLOCK, BLOCK)  # [lz, ly, lx]
                var = tsdf_map.var[s].reshape(-1, BLOCK, BLOCK, BLOCK)
                cnt = tsdf_map.cnt[s].reshape(-1, BLOCK, BLOCK, BLOCK)
                p = voxel_occupancy(tsdf_map, mu, var).astype(np.float32)
                p[cnt == 0] = np.nan
                p[:, ~zin] = np.nan
                out[has] = np.fmax(out[has], np.nanmax(np.where(np.isnan(p), -np.inf, p), axis=1).astype(np.float32))
            if free is not None and free.n_bricks:
                fslots = _find_column_blocks(free.keys, free.vals, cols, bz)
                fh = fslots >= 0
                if fh.any():
                    cnt = free.count[fslots[fh]].reshape(-1, FREE_SUB, FREE_SUB, FREE_SUB)  # [fz, fy, fx]
                    pf = np.where(cnt > 0, table[cnt], -np.inf)
                    # up-sample to map voxels (each free voxel is 2x2x2 of them), keep the band
                    pf = pf.repeat(2, axis=1).repeat(2, axis=2).repeat(2, axis=3)
                    pf[:, ~zin] = -np.inf
                    out[fh] = np.fmax(out[fh], pf.max(axis=1).astype(np.float32))
        out[np.isinf(out)] = np.nan
        return out

    def update(self, tsdf_map) -> Dict[str, float]:
        """Recompute at most ``max_columns`` changed columns. Returns timing / size figures."""
        t0 = time.perf_counter()
        self._mark_dirty(tsdf_map)
        keys = list(self._pending.keys())[: self.max_columns]
        for k in keys:
            del self._pending[k]
        if keys:
            k = np.array(keys, dtype=np.int64)
            cols = np.stack([(k >> 32) - (1 << 30), (k & 0xFFFFFFFF) - (1 << 30)], axis=1)
            vals = self._compute_columns(tsdf_map, cols)
            new = [i for i, kk in enumerate(keys) if kk not in self._col_index]
            if new:
                base = len(self._col_xy)
                for j, i in enumerate(new):
                    self._col_index[keys[i]] = base + j
                self._col_xy = np.concatenate([self._col_xy, cols[new]])
                self._col_max = np.concatenate([self._col_max, np.full((len(new), BLOCK, BLOCK), np.nan, np.float32)])
            idx = np.array([self._col_index[kk] for kk in keys], dtype=np.int64)
            self._col_max[idx] = vals
        self.last_stats = {"columns_updated": float(len(keys)), "columns_pending": float(len(self._pending)),
                           "columns": float(len(self._col_xy)), "update_ms": (time.perf_counter() - t0) * 1e3}
        return self.last_stats

    def grid(self, centre_xy: Optional[Tuple[float, float]] = None) -> OccupancyGrid2D:
        """Assemble the grid from the column cache (no map access). An empty map gives a 1 x 1
        unknown grid at the world origin."""
        t0 = time.perf_counter()
        vox, res = self.voxel_size, self.resolution
        valid = ~np.isnan(self._col_max).all(axis=(1, 2)) if len(self._col_xy) else np.zeros(0, bool)
        if not valid.any():
            g = OccupancyGrid2D(np.full((1, 1), -1, np.int8), (-0.5 * res, -0.5 * res), res, self.min_z)
            self.last_stats["grid_ms"] = (time.perf_counter() - t0) * 1e3
            return g
        cxy = self._col_xy[valid]
        vals = self._col_max[valid]  # (M, ly, lx)
        l = np.arange(BLOCK)
        # voxel centre xy (M, 8, 8) -> cell indices; cells are centred on multiples of res
        X = (cxy[:, 0, None, None] * BLOCK + l[None, None, :]) * vox + np.zeros((1, BLOCK, 1))
        Y = (cxy[:, 1, None, None] * BLOCK + l[None, :, None]) * vox + np.zeros((1, 1, BLOCK))
        ix = np.floor(X / res + 0.5).astype(np.int64).ravel()
        iy = np.floor(Y / res + 0.5).astype(np.int64).ravel()
        v = vals.ravel()
        keep = ~np.isnan(v)
        ix, iy, v = ix[keep], iy[keep], v[keep]
        x0, x1, y0, y1 = ix.min(), ix.max(), iy.min(), iy.max()
        W, H = int(x1 - x0 + 1), int(y1 - y0 + 1)
        if W * H > self.max_cells:  # crop to a square window around centre_xy
            side = int(math.isqrt(self.max_cells))
            c = centre_xy if centre_xy is not None else (0.5 * (x0 + x1) * res, 0.5 * (y0 + y1) * res)
            cx, cy = int(round(c[0] / res)), int(round(c[1] / res))
            nx0 = max(x0, min(cx - side // 2, x1 - side + 1)) if W > side else x0
            ny0 = max(y0, min(cy - side // 2, y1 - side + 1)) if H > side else y0
            x0, y0 = nx0, ny0
            W, H = min(W, side), min(H, side)
            inside = (ix >= x0) & (ix < x0 + W) & (iy >= y0) & (iy < y0 + H)
            ix, iy, v = ix[inside], iy[inside], v[inside]
        flat = np.full(W * H, -np.inf, np.float32)
        np.maximum.at(flat, (iy - y0) * W + (ix - x0), v)  # max over the voxel columns of a cell
        data = np.where(np.isinf(flat), -1, np.rint(100.0 * np.clip(flat, 0.0, 1.0))).astype(np.int8)
        g = OccupancyGrid2D(data.reshape(H, W), ((x0 - 0.5) * res, (y0 - 0.5) * res), res, self.min_z)
        self.last_stats["grid_ms"] = (time.perf_counter() - t0) * 1e3
        self.last_stats["cells"] = float(W * H)
        return g
