"""Probabilistic TSDF on a sparse voxel-block hash.

Every voxel holds a Gaussian belief N(mu, var) over its signed distance, a colour and an observation
count; an observation s with variance var_obs is fused as the product of two Gaussians::

    1/var' = 1/var + 1/var_obs,       mu' = var' (mu/var + s/var_obs)

Unobserved voxels carry the prior N(0, map_prior_sigma_m^2) and count 0.  Voxel centres sit at integer
multiples of the voxel size (world frame, m); blocks of 8^3 voxels are allocated on demand through an
open-addressing hash (:mod:`prism_ros.core.voxel_hash`).  :class:`TsdfMap` owns the arrays of the kernels
(:mod:`prism_ros.core.tsdf_kernels`) and may carry a free-space layer
(:class:`prism_ros.core.occupancy.FreeSpaceLayer`), fed by :meth:`TsdfMap.integrate`.
"""

from __future__ import annotations

import json
from typing import Dict, Optional, Tuple

import numpy as np

from .occupancy import collision_probability, occupancy_probability
from .occupancy.free_space import FreeSpaceLayer
from .occupancy.probability import reported_sigma
from .tsdf_kernels import allocate_blocks, integrate_blocks, query_points, surface_block_counts, surface_voxels
from .voxel_hash import BLOCK, BLOCK3, BLOCK_MASK, BLOCK_SHIFT, new_table, rebuild_hash

__all__ = ["TsdfMap", "BLOCK", "BLOCK_SHIFT", "BLOCK_MASK", "MAP_FORMAT_VERSION"]

MAP_FORMAT_VERSION = 1


class TsdfMap:
    """Sparse probabilistic TSDF (module docstring); lengths in metres.  ``max_observations`` saturates the count;
    ``initial_blocks``: the first capacity (doubled when the hash fills); ``model_sigma_m``, ``distance_sigma_ratio``:
    :meth:`reported_sigma`'s systematic terms; ``free_space``: the layer fed by :meth:`integrate`.
    """

    #: bumped by :meth:`clear`: block slots are reused, so caches keyed by slot must reset
    epoch: int
    #: the free-space layer fed by :meth:`integrate` and cleared by :meth:`clear` (None: none)
    free_space: Optional[FreeSpaceLayer]

    def __init__(
        self,
        voxel_size_m: float,
        truncation_m: float,
        prior_sigma_m: float,
        min_sigma_m: float,
        max_observations: int,
        initial_blocks: int = 16384,
        model_sigma_m: float = 0.0,
        distance_sigma_ratio: float = 0.25,
        free_space: Optional[FreeSpaceLayer] = None,
    ):
        self.voxel_size = float(voxel_size_m)
        self.truncation = float(truncation_m)
        self.prior_var = float(prior_sigma_m) ** 2
        self.min_var = float(min_sigma_m) ** 2
        #: systematic error (pose drift, model error) that averaging cannot remove; added
        #: in quadrature to the fused variance whenever sigma is read out
        self.model_var = float(model_sigma_m) ** 2
        self.distance_sigma_ratio = float(distance_sigma_ratio)
        self.max_count = int(max_observations)
        self._alloc(int(initial_blocks))
        self.n_blocks = 0
        self._frame_id = 0
        self.epoch = 0
        self.free_space = free_space

    # ---------------------------------------------------------------- storage
    def _alloc(self, cap: int) -> None:
        self.capacity = cap
        self.keys, self.vals = new_table(cap)
        self.block_xyz = np.zeros((cap, 3), dtype=np.int64)
        self.mu = np.zeros((cap, BLOCK3), dtype=np.float32)
        self.var = np.full((cap, BLOCK3), self.prior_var, dtype=np.float32)
        self.rgb = np.zeros((cap, BLOCK3, 3), dtype=np.uint8)
        self.cnt = np.zeros((cap, BLOCK3), dtype=np.uint16)
        self.last_seen = np.full(cap, -1, dtype=np.int64)
        self._visible = np.zeros(cap, dtype=np.int64)

    def _grow(self) -> None:
        self._resize(self.capacity * 2)

    def _resize(self, cap: int) -> None:
        old = (self.block_xyz, self.mu, self.var, self.rgb, self.cnt, self.last_seen)
        n = self.n_blocks
        self._alloc(cap)
        for dst, src in zip((self.block_xyz, self.mu, self.var, self.rgb, self.cnt, self.last_seen), old):
            dst[:n] = src[:n]
        rebuild_hash(self.keys, self.vals, self.block_xyz, n)

    def shrink_to_fit(self) -> None:
        """Free the unused capacity (a map that will not grow again, e.g. a frozen submap); it still may."""
        if self.capacity > self.n_blocks:
            self._resize(max(1, self.n_blocks))

    @property
    def block_m(self) -> float:
        return self.voxel_size * BLOCK

    @property
    def revision(self) -> Tuple[int, int]:
        """Changes whenever the map's content does (:meth:`integrate`, :meth:`clear`): a render
        made at one revision is still a render of this map while the revision stays the same."""
        return (self.epoch, self._frame_id)

    @property
    def num_blocks(self) -> int:
        return self.n_blocks

    @property
    def memory_bytes(self) -> int:
        arrays = (
            self.keys,
            self.vals,
            self.block_xyz,
            self.mu,
            self.var,
            self.rgb,
            self.cnt,
            self.last_seen,
            self._visible,
        )
        return int(sum(a.nbytes for a in arrays))

    def clear(self) -> None:
        """Forget every voxel; the buffers are kept (blocks are re-initialised on allocation)."""
        self.n_blocks = 0
        self.keys[:] = -1
        self.last_seen[:] = -1
        self._frame_id = 0
        self.epoch += 1
        if self.free_space is not None:
            self.free_space.clear()

    # ---------------------------------------------------------------- update
    def integrate(
        self,
        depth: np.ndarray,
        color: np.ndarray,
        normals: np.ndarray,
        K: np.ndarray,
        T_w_c: np.ndarray,
        noise: np.ndarray,
        depth_sigma: Optional[np.ndarray] = None,
        pose_var: float = 0.0,
        edges: Optional[np.ndarray] = None,
        aux_level: int = 0,
        alloc_stride: int = 4,
    ) -> int:
        """Fuse a frame (depth m, 0 invalid; normals in the camera frame, 0 where unusable); returns the blocks updated.

        ``K`` = (fx, fy, cx, cy) px; ``T_w_c`` camera-to-world; ``noise`` = (c0, c2, z0) of sigma_z(d) = c0 + c2 (d -
        z0)^2, replaced by ``depth_sigma`` where given; ``pose_var`` (m^2) is added to every observation.  ``normals``
        and ``edges`` are at level ``aux_level``; blocks are allocated from every ``alloc_stride``-th pixel.  Feeds
        :attr:`free_space` too.
        """
        self._frame_id += 1
        R_wc = np.ascontiguousarray(T_w_c[:3, :3])
        t_wc = np.ascontiguousarray(T_w_c[:3, 3])
        while True:
            n_blocks, n_vis, ok = allocate_blocks(
                depth,
                alloc_stride,
                K,
                R_wc,
                t_wc,
                self.truncation,
                self.block_m,
                self.keys,
                self.vals,
                self.block_xyz,
                self.mu,
                self.var,
                self.rgb,
                self.cnt,
                self.last_seen,
                self._frame_id,
                self.n_blocks,
                self.prior_var,
                self._visible,
            )
            self.n_blocks = n_blocks
            if ok:
                break
            self._grow()
            self._frame_id += 1  # re-list visible blocks from scratch
        R_cw = np.ascontiguousarray(R_wc.T)
        t_cw = -R_cw @ t_wc
        ds = depth_sigma if depth_sigma is not None else np.zeros((0, 0), np.float32)
        if edges is None:
            edges = np.zeros(normals.shape[:2], np.uint8)
        integrate_blocks(
            self._visible,
            n_vis,
            self.block_xyz,
            self.mu,
            self.var,
            self.rgb,
            self.cnt,
            depth,
            ds,
            normals,
            color,
            edges,
            aux_level,
            K,
            R_cw,
            t_cw,
            self.voxel_size,
            self.truncation,
            noise,
            self.min_var,
            self.max_count,
            float(pose_var),
            self.distance_sigma_ratio,
            0.25 * self.truncation**2,
        )
        if self.free_space is not None:
            self.free_space.integrate(depth, K, T_w_c, self._frame_id)
        return int(n_vis)

    # ---------------------------------------------------------------- read
    def voxel_centres(self) -> np.ndarray:
        """(n_blocks, 512, 3) world coordinates of all allocated voxel centres."""
        n = self.n_blocks
        l = np.arange(BLOCK3)
        local = np.stack([l % BLOCK, (l // BLOCK) % BLOCK, l // (BLOCK * BLOCK)], axis=1)
        idx = self.block_xyz[:n, None, :] * BLOCK + local[None, :, :]
        return idx.astype(np.float64) * self.voxel_size

    def extract_surface(self, max_abs_sdf_m: float, min_count: int = 1) -> Dict[str, np.ndarray]:
        """Observed voxels with |mu| <= max_abs_sdf_m (count >= min_count, at least 1), in slot
        then voxel order: xyz (centres, float32), rgb, sigma (:meth:`reported_sigma`), sdf,
        count (float32).  Two parallel passes over the blocks (count, then fill)."""
        return self.extract_surface_blocks(max_abs_sdf_m, np.arange(self.n_blocks, dtype=np.int64), min_count)[0]

    def extract_surface_blocks(
        self, max_abs_sdf_m: float, slots: np.ndarray, min_count: int = 1
    ) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
        """:meth:`extract_surface` of the blocks ``slots`` only, in that order; also the row offsets
        (len(slots) + 1): block ``slots[i]``'s voxels are rows ``offsets[i]:offsets[i + 1]``."""
        slots = np.ascontiguousarray(slots, dtype=np.int64)
        n = len(slots)
        lo = np.int64(max(1, min_count))
        counts = np.zeros(n, np.int64)
        surface_block_counts(self.mu, self.cnt, slots, np.float32(max_abs_sdf_m), lo, counts)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        k = int(offsets[n])
        out = {
            "xyz": np.empty((k, 3), np.float32),
            "rgb": np.empty((k, 3), np.uint8),
            "sigma": np.empty(k, np.float32),
            "sdf": np.empty(k, np.float32),
            "count": np.empty(k, np.float32),
        }
        surface_voxels(
            self.mu,
            self.var,
            self.rgb,
            self.cnt,
            self.block_xyz,
            slots,
            float(self.voxel_size),
            np.float32(max_abs_sdf_m),
            lo,
            float(self.model_var),
            float(self.distance_sigma_ratio),
            offsets,
            out["xyz"],
            out["rgb"],
            out["sigma"],
            out["sdf"],
            out["count"],
        )
        return out, offsets

    def observed_voxels(self) -> Dict[str, np.ndarray]:
        """All observed voxels (count > 0): xyz, sdf, sigma, count."""
        n = self.n_blocks
        mask = self.cnt[:n] > 0
        xyz = self.voxel_centres()[mask]
        return {
            "xyz": xyz,
            "sdf": self.mu[:n][mask].astype(np.float64),
            "sigma": self.reported_sigma(self.var[:n][mask], self.mu[:n][mask]).astype(np.float64),
            "count": self.cnt[:n][mask].astype(np.float64),
        }

    def query(self, points_w: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Posterior SDF at world points (N, 3), nearest voxel: ``(mu, sigma, count)``, each (N,) float64.

        * ``mu``: posterior mean signed distance (m, positive in free space); NaN where never observed.
        * ``sigma``: its standard deviation as reported (:meth:`reported_sigma`); the prior sigma
          (``map_prior_sigma_m``) where unobserved.
        * ``count``: observations fused (saturating at ``max_observations``); ``count > 0`` is the observed flag.

        P(the point is inside) = Phi(-mu / sigma): :meth:`occupancy_probability`.
        """
        pts = np.ascontiguousarray(points_w, dtype=np.float64).reshape(-1, 3)
        n = pts.shape[0]
        out_mu = np.empty(n, np.float64)
        out_var = np.empty(n, np.float64)
        out_cnt = np.empty(n, np.float64)
        query_points(
            pts,
            self.voxel_size,
            self.keys,
            self.vals,
            self.mu,
            self.var,
            self.cnt,
            out_mu,
            out_var,
            out_cnt,
            self.prior_var,
        )
        obs = out_cnt > 0
        sig = np.sqrt(out_var)
        sig[obs] = self.reported_sigma(out_var[obs], out_mu[obs])
        return out_mu, sig, out_cnt

    def occupancy_probability(self, points_w: np.ndarray) -> np.ndarray:
        """P(occupied) = Phi(-mu / sigma) at world points (N,); where the map has not observed
        the voxel, the free-space layer's posterior if it saw through the point, else 0.5
        (the prior).  See :func:`prism_ros.core.occupancy.occupancy_probability`."""
        return occupancy_probability(self, points_w)[0]

    def collision_probability(self, path_points_w: np.ndarray, radius_m: float, per_waypoint: bool = False):
        """Risk that a sphere of ``radius_m`` swept along the polyline ``path_points_w`` (N, 3)
        meets an obstacle: max of :meth:`occupancy_probability` over the swept voxels.
        See :func:`prism_ros.core.occupancy.collision_probability`."""
        return collision_probability(self, path_points_w, radius_m, per_waypoint=per_waypoint)

    def reported_sigma(self, var: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """:func:`prism_ros.core.occupancy.probability.reported_sigma` with this map's systematic terms."""
        return reported_sigma(var, mu, self.model_var, self.distance_sigma_ratio)

    # ---------------------------------------------------------------- persistence
    def header(self) -> Dict:
        return {
            "format": "prism_ros.tsdf",
            "version": MAP_FORMAT_VERSION,
            "voxel_size_m": self.voxel_size,
            "truncation_m": self.truncation,
            "block": BLOCK,
            "n_blocks": int(self.n_blocks),
            "frames": int(self._frame_id),
        }

    def save(self, path: str, extra: Optional[Dict] = None, compress: bool = True) -> None:
        """Write the map as .npz (versioned header as JSON), compressed unless ``compress`` is False.  Not atomic by
        itself: see :func:`prism_ros.core.persistence.atomic_write` for crash-safe saving."""
        n = self.n_blocks
        hdr = self.header()
        hdr.update(extra or {})
        with open(path, "wb") as f:
            (np.savez_compressed if compress else np.savez)(
                f,
                header=np.frombuffer(json.dumps(hdr).encode(), dtype=np.uint8),
                block_xyz=self.block_xyz[:n],
                mu=self.mu[:n],
                var=self.var[:n],
                rgb=self.rgb[:n],
                cnt=self.cnt[:n],
            )

    @staticmethod
    def read_header(path: str) -> Dict:
        with np.load(path) as z:
            return json.loads(bytes(z["header"]).decode())

    @classmethod
    def load(
        cls,
        path: str,
        prior_sigma_m: float = 0.5,
        min_sigma_m: float = 0.0005,
        max_observations: int = 200,
        model_sigma_m: float = 0.0,
        distance_sigma_ratio: float = 0.25,
    ) -> "TsdfMap":
        with np.load(path) as z:
            hdr = json.loads(bytes(z["header"]).decode())
            if hdr.get("format") != "prism_ros.tsdf" or hdr.get("version") != MAP_FORMAT_VERSION:
                raise ValueError(f"{path}: not a prism_ros map of version {MAP_FORMAT_VERSION} (header {hdr})")
            n = int(hdr["n_blocks"])
            m = cls(
                hdr["voxel_size_m"],
                hdr["truncation_m"],
                prior_sigma_m,
                min_sigma_m,
                max_observations,
                initial_blocks=max(1024, 2 * n),
                model_sigma_m=model_sigma_m,
                distance_sigma_ratio=distance_sigma_ratio,
            )
            m.block_xyz[:n] = z["block_xyz"]
            m.mu[:n] = z["mu"]
            m.var[:n] = z["var"]
            m.rgb[:n] = z["rgb"]
            m.cnt[:n] = z["cnt"]
        m.n_blocks = n
        m._frame_id = int(hdr.get("frames", 0))
        rebuild_hash(m.keys, m.vals, m.block_xyz, n)
        return m
