"""Triangle mesh of the map's zero level set, per voxel block, incrementally (no ROS).

Each 8^3 block is meshed on its own by :func:`skimage.measure.marching_cubes` (Lewiner) on a 9^3 volume
(its voxels plus one voxel of its +x / +y / +z neighbours), so neighbouring block meshes share their
vertices.  A cube is meshed only where all 8 corner voxels are observed and |mu| < 0.95 tau (a clipped
value carries no zero crossing).  Faces are wound counter-clockwise seen from free space (normals point up
the SDF); vertices carry the reported SDF sigma and the colour of the nearest voxel.

:meth:`BlockMesher.update` re-meshes a block when it or a +x/+y/+z neighbour changed since it was meshed
(``TsdfMap.last_seen``), at most ``max_blocks`` per call (oldest change first); meshes are cached per slot.

An update is two steps, so that the marching cubes need not run where the map is fused:
:meth:`BlockMesher.snapshot` (on the thread that owns the map) copies the 9^3 volumes of the blocks to
re-mesh into a :class:`MeshSnapshot`, and :meth:`BlockMesher.apply` meshes them from that copy alone
(any thread).  The two touch disjoint state: one thread may take snapshots while another applies them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
from numba import njit

from .occupancy.probability import reported_sigma
from .voxel_hash import BLOCK, find_block

__all__ = ["BlockMesher", "MeshSnapshot", "mesh_block"]

#: Blocks :meth:`BlockMesher.update` copies and meshes at a time (about 9 MB of volumes).
UPDATE_CHUNK = 1024

_CUT = 0.95  # |mu| >= 0.95 tau is a clipped (truncated) value: no surface crossing there

#: +x/+y/+z neighbour offsets (the 7 blocks a block reads one voxel of)
_NEIGH = np.array([(dx, dy, dz) for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)][1:], np.int64)


@njit(cache=True, nogil=True)
def _gather_volume(keys, vals, mu, cnt, var, rgb, bx, by, bz, vol, ok, var_out, rgb_out):
    """9^3 volume [x, y, z] around block (bx, by, bz): mu, observed flag, var, rgb."""
    for z in range(BLOCK + 1):
        for y in range(BLOCK + 1):
            for x in range(BLOCK + 1):
                ok[x, y, z] = False
                vol[x, y, z] = 0.0
    for dz in range(2):
        for dy in range(2):
            for dx in range(2):
                slot = find_block(keys, vals, bx + dx, by + dy, bz + dz)
                if slot < 0:
                    continue
                x0 = dx * BLOCK
                y0 = dy * BLOCK
                z0 = dz * BLOCK
                xn = BLOCK if dx == 0 else 1
                yn = BLOCK if dy == 0 else 1
                zn = BLOCK if dz == 0 else 1
                for lz in range(zn):
                    for ly in range(yn):
                        for lx in range(xn):
                            i = lx + BLOCK * (ly + BLOCK * lz)
                            X = x0 + lx
                            Y = y0 + ly
                            Z = z0 + lz
                            vol[X, Y, Z] = mu[slot, i]
                            ok[X, Y, Z] = cnt[slot, i] > 0
                            var_out[X, Y, Z] = var[slot, i]
                            for c in range(3):
                                rgb_out[X, Y, Z, c] = rgb[slot, i, c]


@njit(cache=True, nogil=True)
def _gather_volumes(keys, vals, mu, cnt, var, rgb, block_xyz, vol, ok, var_out, rgb_out):
    """:func:`_gather_volume` of each block of ``block_xyz`` (K, 3) into the (K, 9, 9, 9[, 3]) outputs."""
    for k in range(block_xyz.shape[0]):
        _gather_volume(
            keys, vals, mu, cnt, var, rgb, block_xyz[k, 0], block_xyz[k, 1], block_xyz[k, 2],
            vol[k], ok[k], var_out[k], rgb_out[k],
        )  # fmt: skip


@dataclass
class MeshSnapshot:
    """What :meth:`BlockMesher.apply` needs, copied from the map: the 9^3 volumes (mu, observed, var,
    rgb) of the blocks ``slots`` at ``block_xyz``, and the map's constants; ``reset``: the map was
    replaced or restarted since the last snapshot (drop every cached mesh first)."""

    slots: np.ndarray  # (K,) int64
    block_xyz: np.ndarray  # (K, 3) int64
    vol: np.ndarray  # (K, 9, 9, 9) float32
    ok: np.ndarray  # (K, 9, 9, 9) bool
    var: np.ndarray  # (K, 9, 9, 9) float32
    rgb: np.ndarray  # (K, 9, 9, 9, 3) uint8
    voxel_size: float
    truncation: float
    model_var: float
    distance_sigma_ratio: float
    reset: bool
    pending: int  # blocks still waiting after this snapshot

    def reported_sigma(self, var: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """:func:`prism_ros.core.occupancy.probability.reported_sigma` with the snapshot's constants."""
        return reported_sigma(var, mu, self.model_var, self.distance_sigma_ratio)


def _volumes(tsdf_map, block_xyz: np.ndarray):
    k, n = len(block_xyz), BLOCK + 1
    vol = np.zeros((k, n, n, n), np.float32)
    ok = np.zeros((k, n, n, n), np.bool_)
    var = np.zeros((k, n, n, n), np.float32)
    rgb = np.zeros((k, n, n, n, 3), np.uint8)
    m = tsdf_map
    _gather_volumes(m.keys, m.vals, m.mu, m.cnt, m.var, m.rgb, np.ascontiguousarray(block_xyz), vol, ok, var, rgb)
    return vol, ok, var, rgb


def mesh_block(tsdf_map, block_xyz) -> Optional[Dict[str, np.ndarray]]:
    """Mesh one block (world coordinates): dict ``verts`` (V,3) float32, ``faces`` (F,3)
    int32, ``normals`` (V,3), ``sigma`` (V,) float32, ``rgb`` (V,3) uint8; None if no surface."""
    xyz = np.asarray(block_xyz, np.int64).reshape(1, 3)
    vol, ok, var, rgb = _volumes(tsdf_map, xyz)
    return _mesh_volume(vol[0], ok[0], var[0], rgb[0], xyz[0], tsdf_map)


def _mesh_volume(vol, ok, var, rgb, block_xyz, consts) -> Optional[Dict[str, np.ndarray]]:
    """Mesh one block from its 9^3 volume; ``consts`` has voxel_size, truncation and reported_sigma."""
    from skimage import measure

    bx, by, bz = (int(v) for v in block_xyz)
    n = BLOCK + 1
    good = ok & (np.abs(vol) < _CUT * consts.truncation)
    cube = (
        good[:-1, :-1, :-1]
        & good[1:, :-1, :-1]
        & good[:-1, 1:, :-1]
        & good[1:, 1:, :-1]
        & good[:-1, :-1, 1:]
        & good[1:, :-1, 1:]
        & good[:-1, 1:, 1:]
        & good[1:, 1:, 1:]
    )
    if not cube.any():
        return None
    corners = np.zeros_like(good)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                corners[dx : n - 1 + dx, dy : n - 1 + dy, dz : n - 1 + dz] |= cube
    v = vol[corners]
    if v.min() > 0.0 or v.max() < 0.0:
        return None
    mask = np.zeros_like(good)
    # skimage meshes the cube whose far corner is (x, y, z) where mask[x, y, z] (checked
    # on scikit-image 0.26 in test_mesh.py)
    mask[1:, 1:, 1:] = cube
    vox = consts.voxel_size
    try:
        verts, faces, normals, _ = measure.marching_cubes(
            vol, level=0.0, spacing=(vox, vox, vox), mask=mask, allow_degenerate=False
        )
    except (ValueError, RuntimeError):  # no crossing inside the masked cubes
        return None
    if len(faces) == 0:
        return None
    near = np.clip(np.rint(verts / vox).astype(np.int64), 0, BLOCK)
    sig = consts.reported_sigma(
        var[near[:, 0], near[:, 1], near[:, 2]], vol[near[:, 0], near[:, 1], near[:, 2]]
    ).astype(np.float32)
    origin = np.array([bx, by, bz], np.float64) * BLOCK * vox
    return {
        "verts": (verts + origin).astype(np.float32),
        "faces": faces.astype(np.int32),
        "normals": (-normals).astype(np.float32),  # skimage's point down the SDF: flip to free space
        "sigma": sig,
        "rgb": rgb[near[:, 0], near[:, 1], near[:, 2]],
    }


class BlockMesher:
    """Per-block mesh cache of a :class:`TsdfMap`, updated incrementally (module docstring)."""

    def __init__(self, max_blocks: int = 256):
        if int(max_blocks) < 1:
            raise ValueError(f"mesh max_blocks per update must be >= 1, got {max_blocks}")
        self.max_blocks = int(max_blocks)
        self._reset()
        self.last_stats: Dict[str, float] = {}

    def _reset(self) -> None:
        # the cache (apply's side)
        self.meshes: Dict[int, Dict[str, np.ndarray]] = {}  # slot -> mesh
        self.version: Dict[int, int] = {}  # slot -> update counter when (re)meshed
        self.updates = 0
        self._reset_tracking()

    def _reset_tracking(self) -> None:
        # what changed since the last snapshot (snapshot's side)
        self._pending: Dict[int, None] = {}
        self._map_ref = None
        self._epoch = None
        self._stamp = None

    @property
    def pending_blocks(self) -> int:
        return len(self._pending)

    @property
    def triangles(self) -> int:
        return int(sum(len(m["faces"]) for m in self.meshes.values()))

    def _mark_dirty(self, tsdf_map) -> bool:
        """Queue the changed blocks; True when the map was replaced or restarted (the cache is stale)."""
        epoch = tsdf_map.epoch
        reset = tsdf_map is not self._map_ref or epoch != self._epoch
        if reset:
            self._reset_tracking()
            self._map_ref = tsdf_map
            self._epoch = epoch
        n = tsdf_map.n_blocks
        if n == 0:
            return reset
        ls = tsdf_map.last_seen[:n]
        changed = np.arange(n) if self._stamp is None else np.nonzero(ls > self._stamp)[0]
        self._stamp = int(ls.max())
        if len(changed) == 0:
            return reset
        # a changed block, and the -x/-y/-z neighbours that read one voxel of it
        xyz = tsdf_map.block_xyz[changed]
        cand = (xyz[:, None, :] - _NEIGH[None, :, :]).reshape(-1, 3)
        slots = _find_many(tsdf_map.keys, tsdf_map.vals, np.ascontiguousarray(cand))
        order = np.argsort(ls[changed], kind="stable")  # oldest change first
        for s in changed[order].tolist():
            self._pending[s] = None
        for s in slots[slots >= 0].tolist():
            self._pending[s] = None
        return reset

    def snapshot(self, tsdf_map, max_blocks: Optional[int] = None) -> MeshSnapshot:
        """Take at most ``max_blocks`` (default: the mesher's) changed blocks off the pending list and copy
        their volumes (on the thread that owns the map; cheap: a gather, no marching cubes)."""
        reset = self._mark_dirty(tsdf_map)
        todo = list(self._pending.keys())[: self.max_blocks if max_blocks is None else int(max_blocks)]
        for s in todo:
            del self._pending[s]
        slots = np.asarray(todo, np.int64)
        xyz = np.ascontiguousarray(tsdf_map.block_xyz[slots], dtype=np.int64).reshape(-1, 3)
        vol, ok, var, rgb = _volumes(tsdf_map, xyz)
        m = tsdf_map
        return MeshSnapshot(
            slots, xyz, vol, ok, var, rgb, float(m.voxel_size), float(m.truncation), float(m.model_var),
            float(m.distance_sigma_ratio), reset, len(self._pending),
        )  # fmt: skip

    def apply(self, snap: MeshSnapshot) -> Dict[str, float]:
        """Mesh the blocks of ``snap`` into the cache (needs no map). Returns timing / size figures."""
        t0 = time.perf_counter()
        if snap.reset:
            self.meshes, self.version, self.updates = {}, {}, 0
        self.updates += 1
        for k, s in enumerate(snap.slots.tolist()):
            m = _mesh_volume(snap.vol[k], snap.ok[k], snap.var[k], snap.rgb[k], snap.block_xyz[k], snap)
            if m is None:
                self.meshes.pop(s, None)
            else:
                self.meshes[s] = m
            self.version[s] = self.updates
        self.last_stats = {
            "blocks_meshed": float(len(snap.slots)),
            "blocks_pending": float(snap.pending),
            "mesh_blocks": float(len(self.meshes)),
            "triangles": float(self.triangles),
            "update_ms": (time.perf_counter() - t0) * 1e3,
        }
        return self.last_stats

    def update(self, tsdf_map) -> Dict[str, float]:
        """Re-mesh at most ``max_blocks`` changed blocks (:meth:`snapshot` then :meth:`apply`, in chunks of
        at most :data:`UPDATE_CHUNK` blocks so that the copied volumes stay small)."""
        t0 = time.perf_counter()
        done = 0
        while True:
            snap = self.snapshot(tsdf_map, min(self.max_blocks - done, UPDATE_CHUNK))
            stats = self.apply(snap)
            done += len(snap.slots)
            if done >= self.max_blocks or not snap.pending or not len(snap.slots):
                break
        stats["blocks_meshed"] = float(done)
        stats["update_ms"] = (time.perf_counter() - t0) * 1e3
        return stats

    def combined(self) -> Dict[str, np.ndarray]:
        """All cached block meshes as one indexed mesh (verts, faces, normals, sigma, rgb)."""
        ms = [self.meshes[k] for k in sorted(self.meshes)]
        if not ms:
            return {
                "verts": np.zeros((0, 3), np.float32),
                "faces": np.zeros((0, 3), np.int32),
                "normals": np.zeros((0, 3), np.float32),
                "sigma": np.zeros(0, np.float32),
                "rgb": np.zeros((0, 3), np.uint8),
            }
        offs = np.cumsum([0] + [len(m["verts"]) for m in ms[:-1]])
        return {
            "verts": np.concatenate([m["verts"] for m in ms]),
            "faces": np.concatenate([m["faces"] + o for m, o in zip(ms, offs)]).astype(np.int32),
            "normals": np.concatenate([m["normals"] for m in ms]),
            "sigma": np.concatenate([m["sigma"] for m in ms]),
            "rgb": np.concatenate([m["rgb"] for m in ms]),
        }


@njit(cache=True, nogil=True)
def _find_many(keys, vals, xyz):
    out = np.empty(xyz.shape[0], np.int64)
    for i in range(xyz.shape[0]):
        out[i] = find_block(keys, vals, xyz[i, 0], xyz[i, 1], xyz[i, 2])
    return out
