"""P(occupied) of the map's voxels and of world points, and the collision risk of a path.

Per voxel the map holds N(mu, sigma^2) over the signed distance (m, positive in free space), so P(occupied) = P(SDF < 0)
= Phi(-mu / sigma) with the reported sigma (:meth:`prism_ros.core.tsdf.TsdfMap.reported_sigma`).  An unobserved point
keeps the prior's 0.5 (:data:`UNKNOWN_PROBABILITY`) unless the free-space layer saw through it.  Points are world-frame
(N, 3), read at the nearest voxel.
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np

__all__ = [
    "UNKNOWN_PROBABILITY",
    "check_band",
    "reported_sigma",
    "voxel_occupancy",
    "belief_occupancy",
    "occupancy_probability",
    "collision_probability",
]

#: P(occupied) of a point no voxel has observed: the prior N(0, prior^2) gives Phi(0)
UNKNOWN_PROBABILITY = 0.5


def reported_sigma(var: np.ndarray, mu: np.ndarray, model_var: float, distance_sigma_ratio: float) -> np.ndarray:
    """Voxel SDF sigma as reported: the fused variance plus the systematic terms that averaging over frames
    cannot remove (a constant model error, and an error proportional to the distance from the surface)."""
    mu = np.asarray(mu, dtype=np.float64)
    return np.sqrt(np.asarray(var, dtype=np.float64) + model_var + (distance_sigma_ratio * mu) ** 2)


def check_band(min_z_m: float, max_z_m: float) -> None:
    """Refuse an empty or inverted height band with the reason."""
    if not (math.isfinite(min_z_m) and math.isfinite(max_z_m)):
        raise ValueError(f"occupancy height band [{min_z_m}, {max_z_m}] m is not finite")
    if min_z_m >= max_z_m:
        raise ValueError(
            f"occupancy height band is empty: occupancy_min_z_m = {min_z_m} m must be smaller than "
            f"occupancy_max_z_m = {max_z_m} m"
        )


def voxel_occupancy(tsdf_map, mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    """P(SDF < 0) = Phi(-mu / sigma) for fused voxel beliefs (mu, var), sigma as ``tsdf_map`` reports it."""
    return belief_occupancy(mu, var, tsdf_map.model_var, tsdf_map.distance_sigma_ratio)


def belief_occupancy(mu: np.ndarray, var: np.ndarray, model_var: float, distance_sigma_ratio: float) -> np.ndarray:
    """:func:`voxel_occupancy` from the map's systematic terms instead of the map (no map access)."""
    from scipy.special import ndtr  # on first use: the map, hence the filter, imports this package

    mu = np.asarray(mu, dtype=np.float64)
    return ndtr(-mu / reported_sigma(var, mu, model_var, distance_sigma_ratio))


def occupancy_probability(tsdf_map, points_w: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(P(occupied), observed) at world points, nearest voxel: Phi(-mu / sigma) where the map observed the voxel;
    else the free-space posterior where ``tsdf_map.free_space`` saw through the point; else 0.5 (not observed).
    """
    from scipy.special import ndtr

    pts = np.ascontiguousarray(points_w, dtype=np.float64).reshape(-1, 3)
    mu, sigma, cnt = tsdf_map.query(pts)
    obs = cnt > 0
    p = np.full(len(pts), UNKNOWN_PROBABILITY)
    p[obs] = ndtr(-mu[obs] / sigma[obs])
    free = tsdf_map.free_space
    if free is not None and free.n_bricks:
        n = free.counts_at(pts)
        seen = n > 0
        table = free.probability_table(tsdf_map)
        pf = table[n[seen]]
        p[seen] = np.where(obs[seen], np.maximum(p[seen], pf), pf)
        obs = obs | seen
    return p, obs


def _sphere_offsets(radius_vox: float) -> np.ndarray:
    r = int(math.ceil(radius_vox))
    g = np.arange(-r, r + 1)
    o = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    return o[(o * o).sum(axis=1) <= radius_vox * radius_vox]


def collision_probability(
    tsdf_map, path_points_w: np.ndarray, radius_m: float, per_waypoint: bool = False, max_voxels: int = 2_000_000
):
    """Risk that a sphere of ``radius_m`` swept along a polyline path hits an obstacle: the **maximum**
    P(occupied) over the voxels within radius + half a voxel of the body swept in steps of at most a voxel
    (exact for fully correlated beliefs, a lower bound on the union otherwise; the independent union would call
    any long path a collision).  A float, or with ``per_waypoint`` (N,): entry i from waypoint i-1 to i (0: at 0).
    """
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
                f"(> max_voxels = {max_voxels}); split the path or raise max_voxels"
            )
        vidx = np.unique((c_idx[:, None, :] + offs[None, :, :]).reshape(-1, 3), axis=0)
        p, _ = occupancy_probability(tsdf_map, vidx.astype(np.float64) * vox)
        risk[i] = float(p.max())
    return risk if per_waypoint else float(risk.max())
