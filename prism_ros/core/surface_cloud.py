"""The map's near-surface voxels (the ``~/map_cloud`` points), kept up to date block by block.

:meth:`TsdfMap.extract_surface <prism_ros.core.tsdf.TsdfMap.extract_surface>` scans every block, so its cost grows
with the map.  :class:`SurfaceCloudBuilder` splits it in two:

* :meth:`~SurfaceCloudBuilder.snapshot` (where the map is not being fused) extracts only the blocks fused since the
  last snapshot (their ``last_seen`` frame is newer), a copy;
* :meth:`~SurfaceCloudBuilder.apply` (any one thread; no map access) replaces those blocks' rows in the cached
  point arrays (vectorised: a mask over the rows by block, one concatenation per field), and
  :meth:`~SurfaceCloudBuilder.cloud` returns them: the same points as ``extract_surface`` of the map at the
  snapshot's time, grouped by block in update order rather than slot order.

A new map (another object, or a cleared one: its ``epoch`` changes) starts from every block again, and the cache is
dropped at the next :meth:`~SurfaceCloudBuilder.apply`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

__all__ = ["SurfaceCloudBuilder", "SurfaceDelta"]

FIELDS = ("xyz", "rgb", "sigma", "sdf", "count")


@dataclass
class SurfaceDelta:
    """The surface voxels of the blocks ``slots`` (rows ``offsets[i]:offsets[i + 1]`` of ``points`` for
    ``slots[i]``), ``reset`` (drop the cache first: a new map)."""

    slots: np.ndarray
    offsets: np.ndarray
    points: Dict[str, np.ndarray]
    reset: bool


class SurfaceCloudBuilder:
    """Surface voxels with |mu| <= ``max_abs_sdf_m`` and count >= ``min_count`` (module docstring)."""

    def __init__(self, max_abs_sdf_m: float, min_count: int = 1):
        self.max_abs_sdf_m = float(max_abs_sdf_m)
        self.min_count = int(min_count)
        self._map_ref = None
        self._epoch: Optional[int] = None
        self._stamp = -(1 << 62)  # the newest last_seen frame taken so far
        self._points = _empty()  # the cached cloud (apply's side)
        self._row_slot = np.zeros(0, np.int64)  # the block of each cached row

    def snapshot(self, tsdf_map) -> SurfaceDelta:
        """The blocks fused since the last snapshot, extracted (the only method that reads the map)."""
        reset = tsdf_map is not self._map_ref or tsdf_map.epoch != self._epoch
        if reset:
            self._map_ref, self._epoch, self._stamp = tsdf_map, tsdf_map.epoch, -(1 << 62)
        n = tsdf_map.n_blocks
        last_seen = tsdf_map.last_seen[:n]
        slots = np.arange(n, dtype=np.int64) if reset else np.flatnonzero(last_seen > self._stamp).astype(np.int64)
        points, offsets = tsdf_map.extract_surface_blocks(self.max_abs_sdf_m, slots, self.min_count)
        if n:  # only once the copy is taken
            self._stamp = max(self._stamp, int(last_seen.max()))
        return SurfaceDelta(slots, offsets, points, reset)

    def apply(self, delta: SurfaceDelta) -> int:
        """Bring the cached cloud up to date with ``delta``; returns its number of points."""
        if delta.reset:
            self._points, self._row_slot = _empty(), np.zeros(0, np.int64)
        rows = self._row_slot
        if len(delta.slots) and len(rows):
            changed = np.zeros(max(int(rows.max()), int(delta.slots.max())) + 1, bool)
            changed[delta.slots] = True
            keep = ~changed[rows]
        else:
            keep = np.ones(len(rows), bool)
        new_rows = np.repeat(delta.slots, np.diff(delta.offsets))
        self._points = {f: np.concatenate([self._points[f][keep], delta.points[f]]) for f in FIELDS}
        self._row_slot = np.concatenate([rows[keep], new_rows])
        return len(self._row_slot)

    def cloud(self) -> Dict[str, np.ndarray]:
        """The cached points (``extract_surface``'s fields; read-only: :meth:`apply` builds new arrays)."""
        return self._points


def _empty() -> Dict[str, np.ndarray]:
    return {
        "xyz": np.zeros((0, 3), np.float32),
        "rgb": np.zeros((0, 3), np.uint8),
        **{f: np.zeros(0, np.float32) for f in ("sigma", "sdf", "count")},
    }
