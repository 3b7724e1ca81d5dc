"""The back end's global map: the submaps composed at their optimised poses, with the keyframes' free space.

The frozen submaps change only when a loop closure moves them or a submap is frozen, so :class:`GlobalMapBuilder`
keeps them composed (the *base*, with the free space of the keyframes up to then) and builds each newer global map
from a copy of it, the active submap and the keyframes since.  A map built so equals one composed from every submap
in order (:func:`~prism_ros.core.backend.compose.compose_map`), up to the order of its blocks, with the frozen
submaps and the older keyframes at their poses of the base's time: the graph may still move them a little after a
closure (iSAM2 relinearises) until the next closure or frozen submap composes the base again.
"""

from __future__ import annotations

import copy
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from prism_ros.core.occupancy import FreeSpaceLayer
from prism_ros.core.tsdf import TsdfMap

from .compose import compose_map

__all__ = ["GlobalMapBuilder"]


class GlobalMapBuilder:
    """Builds the global map for a :class:`~prism_ros.core.backend.worker.BackEnd` (under its submaps' lock).

    ``fcfg``: the filter's configuration (the occupancy's free-space settings); ``camera``: the keyframes' camera;
    ``small_level``: the pyramid level of the keyframes' ``depth_small``.
    """

    def __init__(self, fcfg, camera, small_level: int):
        self.fcfg, self.camera, self.small_level = fcfg, camera, int(small_level)
        self.base: Optional[TsdfMap] = None
        self.base_key = -1  # the newest keyframe in the base's free space

    def build(
        self,
        submaps: Sequence,
        part: Callable[[object], tuple],
        keyframes: Sequence,
        poses: Dict[int, np.ndarray],
        restructured: bool,
        keep_base: bool = True,
    ) -> TsdfMap:
        """The global map of ``submaps`` (the active one last), ``part(submap)`` giving its (map, T_map_anchor,
        Sigma_anchor) when it is composed, and the free space of ``keyframes`` (by key) at ``poses``.
        ``restructured``: the frozen submaps moved or changed since the last call (the base is composed again);
        without ``keep_base`` no base is kept (a one-off, offline)."""
        like = next(s.map for s in reversed(submaps) if s.map is not None)  # (the active one is in memory)
        if not keep_base:
            self.base, self.base_key = None, -1
            out = compose_map([part(s) for s in submaps], like)
            out.free_space = self._free_space(like, keyframes, poses, None, -1)
            return out
        if restructured or self.base is None:
            self.base = compose_map([part(s) for s in submaps[:-1]], like)
            self.base.free_space = self._free_space(like, keyframes, poses, None, -1)
            self.base_key = keyframes[-1].key if len(keyframes) else -1
        out = compose_map([part(submaps[-1])], like, base=self.base)
        out.free_space = self._free_space(like, keyframes, poses, self.base.free_space, self.base_key)
        return out

    def _free_space(self, like: TsdfMap, keyframes, poses, base: Optional[FreeSpaceLayer], after_key: int):
        """Free space carved from the depth of the keyframes newer than ``after_key`` at ``poses``, into a copy of
        ``base`` (or a new layer at ``like``'s voxel size and truncation); None when the occupancy's free space is
        off."""
        fc = self.fcfg
        if fc.occupancy_free_pixel_stride <= 0:
            return None
        if base is not None:
            layer = copy.deepcopy(base)
        else:
            layer = FreeSpaceLayer(
                like.voxel_size,
                like.truncation,
                fc.occupancy_min_z_m,
                fc.occupancy_max_z_m,
                max(1, fc.occupancy_free_pixel_stride >> self.small_level),
                fc.occupancy_free_max_bricks,
            )
        for i, k in enumerate(keyframes):
            if k.key > after_key and k.depth_small is not None and k.key in poses:
                depth = k.depth_small.astype(np.float32)
                layer.integrate(depth, self.camera.level(k.small_level).params, poses[k.key], i + 1)
        return layer
