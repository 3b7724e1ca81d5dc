"""The 2-D occupancy grid of a height band, built incrementally from the map.

A cell's value is the **maximum** P(occupied) (:mod:`prism_ros.core.occupancy.probability`) over the observed
voxels of the world-frame band [min_z, max_z] above it (per position the TSDF voxel if observed, the
free-space voxel if observed; both: max), as round(100 P) in 0..100, -1 where none is observed.
:class:`OccupancyGridBuilder` caches the band maximum per 8x8-voxel map column, recomputes only changed
columns (at most ``max_columns`` per update) and assembles the grid at the requested resolution.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..voxel_hash import BLOCK, find_blocks
from .free_space import FREE_SUB
from .probability import belief_occupancy, check_band

__all__ = ["ColumnSnapshot", "OccupancyGrid2D", "OccupancyGridBuilder"]


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


@dataclass
class _BandLayer:
    """One block z of a :class:`ColumnSnapshot`: ``zin`` (8,) the voxel z in the band; ``has`` (M,) the columns with
    a map block there and ``mu``, ``var``, ``cnt`` copies of those blocks; ``free_has`` / ``free_cnt`` the same for
    the free-space bricks (None without a free-space layer)."""

    zin: np.ndarray
    has: np.ndarray
    mu: np.ndarray
    var: np.ndarray
    cnt: np.ndarray
    free_has: Optional[np.ndarray]
    free_cnt: Optional[np.ndarray]


@dataclass
class ColumnSnapshot:
    """What :meth:`OccupancyGridBuilder.apply` needs from the map, copied by :meth:`OccupancyGridBuilder.snapshot`:
    the column ``keys`` / ``cols`` (M, 2), their voxels per block z, the map's reported-sigma terms and free-space
    probability table, ``reset`` (a new map: drop the column cache first) and ``pending`` (changed columns left)."""

    keys: List[int]
    cols: np.ndarray
    layers: List[_BandLayer]
    model_var: float
    distance_sigma_ratio: float
    free_table: Optional[np.ndarray]
    reset: bool
    pending: int


def _pack2(bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    """One int64 key per block column (bx, by)."""
    return ((np.asarray(bx, np.int64) + (1 << 30)) << 32) | (np.asarray(by, np.int64) + (1 << 30))


class OccupancyGridBuilder:
    """Incremental 2-D occupancy grid over a height band (module docstring).  ``resolution_m``: 0 = the voxel size,
    else at least it; ``max_columns``: map columns recomputed per :meth:`update`; ``max_cells``: a larger grid is
    cropped to that many cells around ``centre_xy``.
    """

    def __init__(
        self,
        voxel_size_m: float,
        min_z_m: float,
        max_z_m: float,
        resolution_m: float = 0.0,
        max_columns: int = 4096,
        max_cells: int = 4_000_000,
    ):
        check_band(float(min_z_m), float(max_z_m))
        vox = float(voxel_size_m)
        res = float(resolution_m) if resolution_m else vox
        if not (math.isfinite(res) and res >= vox * (1 - 1e-9) and res <= 1000 * vox):
            raise ValueError(
                f"occupancy resolution {resolution_m} m is out of range: use 0 (the voxel size, {vox} m) "
                f"or a value in [{vox}, {1000 * vox}] m (finer than a voxel adds no information)"
            )
        if int(max_columns) < 1 or int(max_cells) < 1:
            raise ValueError("max_columns and max_cells must be positive")
        self.voxel_size = vox
        self.min_z = float(min_z_m)
        self.max_z = float(max_z_m)
        self.resolution = res
        self.max_columns = int(max_columns)
        self.max_cells = int(max_cells)
        self._reset_cache()
        self._reset_columns()
        self.last_stats: Dict[str, float] = {}

    def _reset_columns(self) -> None:
        self._col_index: Dict[int, int] = {}
        self._col_xy = np.zeros((0, 2), np.int64)
        self._col_max = np.zeros((0, BLOCK, BLOCK), np.float32)  # [ly, lx], NaN unknown

    def _reset_cache(self) -> None:
        """A new map: every column is dirty again, and the next snapshot tells :meth:`apply` to drop its cache."""
        self._pending: Dict[int, None] = {}  # insertion-ordered set of dirty column keys
        self._cache_stale = True
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
        epoch = tsdf_map.epoch
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
        free = tsdf_map.free_space
        if free is not None and free.n_bricks:
            fn = free.n_bricks
            fls = free.last_seen[:fn]
            fsel = np.ones(fn, bool) if first else fls > self._free_stamp
            keys.append(_pack2(free.brick_xyz[:fn][fsel, 0], free.brick_xyz[:fn][fsel, 1]))
            self._free_stamp = int(fls.max())
        for k in np.unique(np.concatenate(keys)).tolist():
            self._pending[k] = None

    def _gather(self, tsdf_map, cols: np.ndarray) -> List[_BandLayer]:
        """Copies of the voxels of columns (M, 2) in the band, one :class:`_BandLayer` per block z."""
        lo, hi = self._bz_range()
        vox = self.voxel_size
        lz = np.arange(BLOCK)
        free = tsdf_map.free_space
        layers = []
        for bz in range(lo, hi + 1):
            z = (bz * BLOCK + lz) * vox
            zin = (z >= self.min_z) & (z <= self.max_z)
            if not zin.any():
                continue
            slots = find_blocks(tsdf_map.keys, tsdf_map.vals, cols, bz)
            has = slots >= 0
            s = slots[has]
            fh = fcnt = None
            if free is not None and free.n_bricks:
                fslots = find_blocks(free.keys, free.vals, cols, bz)
                fh = fslots >= 0
                fcnt = free.count[fslots[fh]]
            layers.append(_BandLayer(zin, has, tsdf_map.mu[s], tsdf_map.var[s], tsdf_map.cnt[s], fh, fcnt))
        return layers

    @staticmethod
    def _reduce(snap: "ColumnSnapshot") -> np.ndarray:
        """(M, 8, 8) band maximum of P(occupied) at voxel xy of the snapshot's columns; NaN unknown."""
        out = np.full((len(snap.cols), BLOCK, BLOCK), np.nan, np.float32)
        for layer in snap.layers:
            zin, has = layer.zin, layer.has
            if has.any():
                shape = (-1, BLOCK, BLOCK, BLOCK)  # [lz, ly, lx]
                mu, var = layer.mu.reshape(shape), layer.var.reshape(shape)
                p = belief_occupancy(mu, var, snap.model_var, snap.distance_sigma_ratio).astype(np.float32)
                p[layer.cnt.reshape(shape) == 0] = np.nan
                p[:, ~zin] = np.nan
                out[has] = np.fmax(out[has], np.nanmax(np.where(np.isnan(p), -np.inf, p), axis=1).astype(np.float32))
            if layer.free_has is not None and layer.free_has.any():
                fh = layer.free_has
                cnt = layer.free_cnt.reshape(-1, FREE_SUB, FREE_SUB, FREE_SUB)  # [fz, fy, fx]
                pf = np.where(cnt > 0, snap.free_table[cnt], -np.inf)
                # up-sample to map voxels (each free voxel is 2x2x2 of them), keep the band
                pf = pf.repeat(2, axis=1).repeat(2, axis=2).repeat(2, axis=3)
                pf[:, ~zin] = -np.inf
                out[fh] = np.fmax(out[fh], pf.max(axis=1).astype(np.float32))
        out[np.isinf(out)] = np.nan
        return out

    def snapshot(self, tsdf_map) -> "ColumnSnapshot":
        """Take at most ``max_columns`` changed columns from the map: copies of their voxels in the band and of
        the parameters their probability needs.  The only method that reads the map (call it where the map is
        not being fused); :meth:`apply` needs no map."""
        t0 = time.perf_counter()
        self._mark_dirty(tsdf_map)
        keys = list(self._pending.keys())[: self.max_columns]
        k = np.array(keys, dtype=np.int64)
        cols = np.stack([(k >> 32) - (1 << 30), (k & 0xFFFFFFFF) - (1 << 30)], axis=1)
        free = tsdf_map.free_space
        snap = ColumnSnapshot(
            keys=keys,
            cols=cols,
            layers=self._gather(tsdf_map, cols) if keys else [],
            model_var=float(tsdf_map.model_var),
            distance_sigma_ratio=float(tsdf_map.distance_sigma_ratio),
            free_table=free.probability_table(tsdf_map) if free is not None else None,
            reset=self._cache_stale,
            pending=len(self._pending) - len(keys),
        )
        for k in keys:  # only once the copy is taken
            del self._pending[k]
        self._cache_stale = False
        self.last_stats["snapshot_ms"] = (time.perf_counter() - t0) * 1e3
        return snap

    def apply(self, snap: "ColumnSnapshot") -> Dict[str, float]:
        """Bring the column cache up to date with ``snap`` (no map access: another thread may call it while the
        map is fused, as long as one thread at a time calls :meth:`apply` and :meth:`grid`).  Returns figures."""
        t0 = time.perf_counter()
        if snap.reset:
            self._reset_columns()
        keys = snap.keys
        if keys:
            vals = self._reduce(snap)
            new = [i for i, kk in enumerate(keys) if kk not in self._col_index]
            if new:
                base = len(self._col_xy)
                for j, i in enumerate(new):
                    self._col_index[keys[i]] = base + j
                self._col_xy = np.concatenate([self._col_xy, snap.cols[new]])
                self._col_max = np.concatenate([self._col_max, np.full((len(new), BLOCK, BLOCK), np.nan, np.float32)])
            idx = np.array([self._col_index[kk] for kk in keys], dtype=np.int64)
            self._col_max[idx] = vals
        self.last_stats.update(
            columns_updated=float(len(keys)),
            columns_pending=float(snap.pending),
            columns=float(len(self._col_xy)),
            apply_ms=(time.perf_counter() - t0) * 1e3,
        )
        return self.last_stats

    def update(self, tsdf_map) -> Dict[str, float]:
        """:meth:`snapshot` and :meth:`apply` in one: recompute at most ``max_columns`` changed columns. Returns
        timing / size figures (``update_ms`` both together)."""
        t0 = time.perf_counter()
        self.apply(self.snapshot(tsdf_map))
        self.last_stats["update_ms"] = (time.perf_counter() - t0) * 1e3
        return self.last_stats

    def grid(self, centre_xy: Optional[Tuple[float, float]] = None) -> OccupancyGrid2D:
        """Assemble the grid from the column cache; no map access (the thread of :meth:`apply`). An empty map
        gives a 1 x 1 unknown grid at the world origin."""
        t0 = time.perf_counter()
        vox, res = self.voxel_size, self.resolution
        col_xy, col_max = self._col_xy, self._col_max
        valid = ~np.isnan(col_max).all(axis=(1, 2)) if len(col_xy) else np.zeros(0, bool)
        if not valid.any():
            g = OccupancyGrid2D(np.full((1, 1), -1, np.int8), (-0.5 * res, -0.5 * res), res, self.min_z)
            self.last_stats["grid_ms"] = (time.perf_counter() - t0) * 1e3
            return g
        cxy = col_xy[valid]
        vals = col_max[valid]  # (M, ly, lx)
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
