"""Compose the global map from submaps at their optimised anchor poses.

Each submap is a :class:`~prism_ros.core.tsdf.TsdfMap` in its anchor frame, given with ``T_map_anchor`` (maps anchor
points into the map frame) and the anchor's marginal covariance ``Sigma`` (6x6, right perturbation T = T_bar Exp(xi),
xi = (rho, phi); :mod:`prism_ros.core.se3`).  :func:`compose_map` builds a new map in the map frame by pulling:

* **Allocation.**  Every result block that a sample of an observed submap block (a block with a voxel of count > 0)
  can reach is allocated; blocks left with no observed voxel are dropped at the end.
* **Sample.**  Each voxel centre c of those blocks samples the submap at p = inv(T_map_anchor) c.  Of the eight submap
  voxels of the cell around p, the observed ones (count > 0) are interpolated with their trilinear weights
  renormalised to sum to one: mean, variance, colour and count alike.  The sample is taken where the observed voxels
  carry at least half of the trilinear weight (:data:`MIN_WEIGHT`), else the submap says nothing there.  At a voxel
  centre this is that voxel exactly; it neither erodes the observed region (as requiring all eight would, by up to a
  voxel at every edge of it, thin surfaces and truncation band included) nor extends it by more than half a voxel.
* **Pose variance.**  The sample's variance grows by n^T J Sigma J^T n, J = [I, -[p]x] (a right perturbation xi moves
  the anchor point p by rho - [p]x phi), n the unit SDF gradient at p in the anchor frame, from the differences along
  the observed edges of the cell.  Where the gradient is undefined (an axis without an observed edge, or a flat field:
  the truncated free space) the trace of J Sigma J^T is added instead, the bound over all directions.  A translation
  uncertainty thus shows along the surface normal only; a rotation one grows with the lever arm |p x n| from the
  anchor.
* **Fusion.**  The first sample of a result voxel replaces its prior N(0, prior_var); every further one (the next
  submaps, in the order given) is fused as a product of Gaussians, 1/var = 1/var_a + 1/var_b, mu = var (mu_a/var_a +
  mu_b/var_b), the variance floored at ``min_sigma``^2 as in :meth:`TsdfMap.integrate`; counts add, saturating at
  ``max_observations``; colours are averaged weighted by count.  An overlap of two submaps is thus treated as
  independent evidence: where their poses agree the surface is where both put it and its variance is smaller than
  either's; where they disagree along the normal there is one fused zero crossing between the two, where the
  precision-weighted mean of their SDFs vanishes (nearer the more certain copy).  The anchors' Sigma is what weighs a
  drifted copy down and says so in the variance; a loop closure that shrinks Sigma sharpens the composed surface.

The result has ``like``'s parameters (truncation, prior, minimum and model sigma, max observations, distance sigma
ratio) and no free-space layer.  Its voxel size may differ from the submaps': the resampling is point sampling at
the result's voxel centres (no averaging), so a coarser result keeps the surface where the truncation band spans a few
of its voxels.  Given a ``base`` (an earlier result at the same voxel size), the parts are fused into a copy of it, as
if its own parts had come first (:mod:`~prism_ros.core.backend.global_map` keeps the frozen submaps composed
so).  The submaps are only read; they must not be integrated into meanwhile.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np

from ..tsdf import TsdfMap
from ..voxel_hash import BLOCK3, new_table, rebuild_hash
from .compose_kernels import allocate_overlap, fuse_submap

__all__ = ["compose_map", "MIN_WEIGHT", "MIN_GRADIENT"]

#: a sample is taken where the observed voxels of its cell carry at least this share of the trilinear weight
MIN_WEIGHT = 0.5
#: an SDF gradient (per metre; a true SDF has 1) below this gives no normal: the pose variance's trace is added
MIN_GRADIENT = 0.1


class _Blocks:
    """The growing block arrays of the result while it is composed."""

    def __init__(self, cap: int, prior_var: float):
        self.n = 0
        self.prior_var = prior_var
        self._alloc(cap)

    def _alloc(self, cap: int) -> None:
        self.cap = cap
        self.keys, self.vals = new_table(cap)
        self.block_xyz = np.zeros((cap, 3), np.int64)
        self.mu = np.zeros((cap, BLOCK3), np.float32)
        self.var = np.full((cap, BLOCK3), self.prior_var, np.float32)
        self.rgb = np.zeros((cap, BLOCK3, 3), np.uint8)
        self.cnt = np.zeros((cap, BLOCK3), np.uint16)
        self.mark = np.full(cap, -1, np.int64)
        self.listed = np.zeros(cap, np.int64)

    def grow(self) -> None:
        n = self.n
        old = (self.block_xyz, self.mu, self.var, self.rgb, self.cnt)
        self._alloc(2 * self.cap)
        for dst, src in zip((self.block_xyz, self.mu, self.var, self.rgb, self.cnt), old):
            dst[:n] = src[:n]
        rebuild_hash(self.keys, self.vals, self.block_xyz, n)


def _observed(sub: TsdfMap) -> np.ndarray:
    """The indices of ``sub``'s blocks with an observed voxel."""
    return np.flatnonzero((sub.cnt[: sub.n_blocks] > 0).any(axis=1)).astype(np.int64)


def _check_part(sub: TsdfMap, T: np.ndarray, Sigma: Optional[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ValueError(f"T_map_anchor must be a finite 4x4 transform, got shape {T.shape}")
    R = T[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0.0:
        raise ValueError("T_map_anchor's rotation is not a rotation matrix")
    S = np.zeros((6, 6)) if Sigma is None else np.asarray(Sigma, dtype=np.float64)
    if S.shape != (6, 6) or not np.all(np.isfinite(S)):
        raise ValueError(f"Sigma must be a finite 6x6 covariance, got shape {S.shape}")
    return T, np.ascontiguousarray(0.5 * (S + S.T))


def compose_map(
    parts: Sequence[Tuple[Union[TsdfMap, Callable[[], TsdfMap]], np.ndarray, Optional[np.ndarray]]],
    like: TsdfMap,
    voxel_size_m: Optional[float] = None,
    base: Optional[TsdfMap] = None,
) -> TsdfMap:
    """A new map in the map frame from ``parts`` = (submap, T_map_anchor, Sigma_anchor) triples (module docstring):
    ``like``'s parameters, voxel size ``voxel_size_m`` (default ``like.voxel_size``; the submaps' may differ), no
    free-space layer.  ``Sigma_anchor`` None: a pose taken as exact.  A submap may be given as a function that returns
    it (one written to disk), called when its turn comes; None from it leaves that part out.  Submaps are fused in the
    order given, after the voxels of ``base`` (a composed map at that voxel size, only read) when one is given."""
    vox = like.voxel_size if voxel_size_m is None else float(voxel_size_m)
    if not (np.isfinite(vox) and vox > 0.0):
        raise ValueError(f"voxel size must be positive, got {voxel_size_m}")
    if base is not None and not np.isclose(base.voxel_size, vox):
        raise ValueError(f"base has voxel size {base.voxel_size}, the result {vox}")
    parts = list(parts)
    # the observed blocks of the parts in memory, and from them the result's size (the table grows for the others)
    seen = {i: _observed(sub) for i, (sub, _, _) in enumerate(parts) if isinstance(sub, TsdfMap)}
    estimate = sum(int(len(o) * max(1.0, parts[i][0].voxel_size / vox) ** 3) for i, o in seen.items())
    nb = 0 if base is None else base.n_blocks
    work = _Blocks(max(1024, 2 * (estimate + nb)), like.prior_var)
    if nb:
        for dst, src in zip(
            (work.block_xyz, work.mu, work.var, work.rgb, work.cnt),
            (base.block_xyz, base.mu, base.var, base.rgb, base.cnt),
        ):
            dst[:nb] = src[:nb]
        work.n = nb
        rebuild_hash(work.keys, work.vals, work.block_xyz, nb)
    mark_id = 0
    for i, (sub, T, Sigma) in enumerate(parts):
        sub = sub() if callable(sub) else sub  # read back only now: one part at a time in memory
        if sub is None:  # it could not be read back
            continue
        T, S = _check_part(sub, T, Sigma)
        observed = seen[i] if i in seen else _observed(sub)
        if len(observed) == 0:
            continue
        R_ma = np.ascontiguousarray(T[:3, :3])
        t_ma = np.ascontiguousarray(T[:3, 3])
        while True:
            mark_id += 1
            n_blocks, n_list, ok = allocate_overlap(
                sub.block_xyz,
                observed,
                float(sub.voxel_size),
                R_ma,
                t_ma,
                vox,
                work.keys,
                work.vals,
                work.block_xyz,
                work.mu,
                work.var,
                work.rgb,
                work.cnt,
                work.n,
                work.prior_var,
                work.mark,
                mark_id,
                work.listed,
            )
            work.n = n_blocks
            if ok:
                break
            work.grow()
        # result index i -> submap index A i + b
        R_am = R_ma.T
        A = np.ascontiguousarray(R_am * (vox / sub.voxel_size))
        b = np.ascontiguousarray(-(R_am @ t_ma) / sub.voxel_size)
        fuse_submap(
            work.listed,
            n_list,
            work.block_xyz,
            work.mu,
            work.var,
            work.rgb,
            work.cnt,
            sub.keys,
            sub.vals,
            sub.mu,
            sub.var,
            sub.rgb,
            sub.cnt,
            A,
            b,
            float(sub.voxel_size),
            S,
            bool(np.any(S != 0.0)),
            MIN_WEIGHT,
            MIN_GRADIENT,
            float(like.min_var),
            int(like.max_count),
        )
    keep = np.flatnonzero((work.cnt[: work.n] > 0).any(axis=1))
    k = len(keep)
    out = TsdfMap(
        vox,
        like.truncation,
        np.sqrt(like.prior_var),
        np.sqrt(like.min_var),
        like.max_count,
        initial_blocks=max(1024, 2 * k),
        model_sigma_m=np.sqrt(like.model_var),
        distance_sigma_ratio=like.distance_sigma_ratio,
    )
    # the squared variances exactly as ``like`` holds them
    out.prior_var, out.min_var, out.model_var = like.prior_var, like.min_var, like.model_var
    out.block_xyz[:k] = work.block_xyz[keep]
    out.mu[:k] = work.mu[keep]
    out.var[:k] = work.var[keep]
    out.rgb[:k] = work.rgb[keep]
    out.cnt[:k] = work.cnt[keep]
    out.n_blocks = k
    rebuild_hash(out.keys, out.vals, out.block_xyz, k)
    return out
