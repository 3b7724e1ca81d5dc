"""Keyframes and submaps of the back end.

A :class:`Submap` is a TSDF in its *anchor* frame (the camera frame of its first keyframe).  Keyframes are fused into
the active submap at their pose relative to the anchor, taken from the filter's odometry (accurate over a submap's
extent); the pose graph moves only the anchors.  A submap is *frozen* when :func:`starts_new_submap` says so: it is
never fused again, only re-posed, and it keeps a small sample of its surface for the overlap tests of loop closure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import numpy as np

from .. import se3
from ..camera import Camera
from ..image import FramePyramid
from ..tsdf import TsdfMap

__all__ = [
    "Keyframe",
    "Submap",
    "best_view",
    "moved_beyond",
    "starts_new_submap",
    "submap_map",
    "view_fraction",
]

#: surface samples a frozen submap keeps for the overlap test
_SAMPLES = 400


@dataclass
class Keyframe:
    """A graph node: ``T_odom_c`` the filter's pose; ``depth_small`` (level ``small_level``; None: it came without its
    image) carves the composed map's free space."""

    key: int
    stamp: float
    T_odom_c: np.ndarray
    depth_small: Optional[np.ndarray] = None
    small_level: int = 0


@dataclass
class Submap:
    """A TSDF in the anchor frame of keyframe ``anchor_key`` (whose odometry pose is ``T_odom_anchor``)."""

    id: int
    anchor_key: int
    T_odom_anchor: np.ndarray
    #: its TSDF; None once written to disk (:class:`~prism_ros.core.backend.store.SubmapStore`, at ``path``)
    map: Optional[TsdfMap]
    keys: List[int] = field(default_factory=list)
    frozen: bool = False
    samples: Optional[np.ndarray] = None  # (n, 3) surface points, anchor frame (frozen only)
    #: the mean over its keyframes of their odometry covariance relative to the anchor: how far the submap's content
    #: may sit from where the anchor puts it (a closure against it carries it)
    internal_cov: np.ndarray = field(default_factory=lambda: np.zeros((6, 6)))
    path: Optional[str] = None

    def fuse(
        self,
        frame: FramePyramid,
        key: int,
        T_odom_c: np.ndarray,
        camera: Camera,
        noise: np.ndarray,
        rel_cov: Optional[np.ndarray] = None,
    ) -> None:
        """Fuse a keyframe at its odometry pose relative to the anchor; ``rel_cov``: that relative pose's covariance
        (the odometry's since the anchor), averaged into :attr:`internal_cov`."""
        T_a_c = se3.inv(self.T_odom_anchor) @ T_odom_c
        self.map.integrate(
            frame.depth[0],
            frame.rgb,
            frame.normals[frame.aux_level],
            camera.params,
            T_a_c,
            noise,
            depth_sigma=frame.depth_sigma,
            edges=frame.edges,
            aux_level=frame.aux_level,
        )
        self.keys.append(int(key))
        if rel_cov is not None:
            n = len(self.keys)
            self.internal_cov = self.internal_cov + (np.asarray(rel_cov, dtype=np.float64) - self.internal_cov) / n

    def freeze(self) -> None:
        """No more fusion: the map's spare capacity is freed; keep up to a few hundred surface samples (anchor frame)
        for the overlap tests."""
        self.map.shrink_to_fit()
        surf = self.map.extract_surface(max_abs_sdf_m=0.5 * self.map.voxel_size, min_count=2)["xyz"]
        if len(surf) > _SAMPLES:
            surf = surf[np.random.default_rng(self.id).choice(len(surf), _SAMPLES, replace=False)]
        self.samples = np.asarray(surf, dtype=np.float64)
        self.frozen = True


def submap_map(cfg, voxel_factor: int) -> TsdfMap:
    """An empty submap TSDF: the filter's map parameters (``cfg``: a FilterConfig) at ``voxel_factor`` times its voxel
    size, the truncation at least two such voxels."""
    vox = float(cfg.voxel_size_m) * int(voxel_factor)
    return TsdfMap(
        vox,
        max(float(cfg.truncation_m), 2.0 * vox),
        cfg.map_prior_sigma_m,
        cfg.map_min_sigma_m,
        cfg.map_max_observations,
        1024,
        cfg.map_model_sigma_m,
        cfg.map_distance_sigma_ratio,
    )


def moved_beyond(T_a: np.ndarray, T_b: np.ndarray, dist_m: float, angle_deg: float) -> bool:
    """Whether ``T_b`` is at least ``dist_m`` from ``T_a`` or turned at least ``angle_deg``."""
    d = se3.inv(T_a) @ T_b
    angle = np.degrees(np.linalg.norm(se3.so3_log(d[:3, :3])))
    return bool(np.linalg.norm(d[:3, 3]) >= dist_m or angle >= angle_deg)


def starts_new_submap(sub: Submap, T_odom_c: np.ndarray, max_dist_m: float, max_angle_deg: float, max_blocks: int):
    """Whether a keyframe at ``T_odom_c`` starts a new submap: it is ``max_dist_m`` or farther from ``sub``'s anchor,
    turned ``max_angle_deg`` or more, or ``sub`` holds ``max_blocks`` blocks."""
    return moved_beyond(sub.T_odom_anchor, T_odom_c, max_dist_m, max_angle_deg) or sub.map.num_blocks >= max_blocks


def view_fraction(
    points_a: np.ndarray,
    T_a_c: np.ndarray,
    camera: Camera,
    depth_min: float,
    depth_max: float,
) -> float:
    """The fraction of ``points_a`` (anchor frame) in the view of a camera at ``T_a_c`` (anchor frame): in front within
    [depth_min, depth_max] and inside the image."""
    if points_a is None or len(points_a) == 0:
        return 0.0
    T_c_a = se3.inv(T_a_c)
    p = points_a @ T_c_a[:3, :3].T + T_c_a[:3, 3]
    z = p[:, 2]
    ok = (z > depth_min) & (z < depth_max)
    zs = np.where(ok, z, 1.0)
    u = camera.fx * p[:, 0] / zs + camera.cx
    v = camera.fy * p[:, 1] / zs + camera.cy
    ok &= (u >= 0) & (u <= camera.width - 1) & (v >= 0) & (v <= camera.height - 1)
    return float(np.count_nonzero(ok)) / len(points_a)


def best_view(
    points_a: np.ndarray,
    T_a_c: np.ndarray,
    cov: np.ndarray,
    max_sigma: float,
    seen: Callable[[np.ndarray, np.ndarray], float],
) -> Tuple[float, np.ndarray]:
    """(fraction, pose): the largest ``seen(points_a, T)`` (e.g. :func:`view_fraction` for one camera) over the camera
    pose ``T_a_c`` and the poses ``T_a_c Exp(r sqrt(lambda_i) u_i)`` along the principal axes (eigenvalues
    ``lambda_i``, unit vectors ``u_i``) of ``cov`` (6x6, right perturbation, camera frame), ``r`` = +-max_sigma/3,
    2max_sigma/3, max_sigma; the estimate first, so it wins a tie.  ``max_sigma`` 0: the estimate only."""
    best = (seen(points_a, T_a_c), T_a_c)
    if max_sigma <= 0.0:
        return best
    lam, U = np.linalg.eigh(0.5 * (cov + cov.T))
    axes = U * np.sqrt(np.clip(lam, 0.0, None))
    for r in (max_sigma / 3.0, 2.0 * max_sigma / 3.0, max_sigma):
        for i in range(6):
            for sign in (1.0, -1.0):
                T = T_a_c @ se3.exp(sign * r * axes[:, i])
                f = seen(points_a, T)
                if f > best[0]:
                    best = (f, T)
    return best
