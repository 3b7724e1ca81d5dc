"""Dense verification of a loop closure: a keyframe tracked against a raycast of a frozen submap.

:meth:`LoopVerifier.register` is the filter's own tracker (:func:`~prism_ros.core.tracker.track`) under a broad prior
around the graph's predicted relative pose, coarse to fine like tracking recovery (:mod:`prism_ros.core.recovery`): at
one level coarser with association distances widened by ``recovery_distance_factors``, then at the tracking levels.
It is accepted as a measurement when the refined track passes the tracking failure test
(:func:`~prism_ros.core.recovery.failure`), the submap covers at least ``min_overlap`` of the keyframe's valid pixels,
and its inlier ratio is at least ``doubt_inlier_drop`` times the filter's own recent one (the test that makes a
tracked frame doubtful: a closure must match its submap as well as tracking matches the map).  The broad prior keeps
the measurement independent of the graph, whose own check (:meth:`~prism_ros.core.backend.graph.PoseGraph.check_loop`)
gates it next.

Its covariance is the filter's reported error model for one tracked frame (:mod:`prism_ros.core.uncertainty`), with
the same fitted constants, none new: the white part ``white_scale (laplace_patch_px / patch) H_data^-1`` plus the
systematic part at the track's residual level, ``S H R_t H S`` (the track's posterior S and data Hessian H).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..camera import Camera
from ..image import FramePyramid
from ..recovery import failure
from ..render import render_map
from ..tracker import TrackResult, frame_pyramid, pyramid_levels, track, track_params
from ..tsdf import TsdfMap
from ..uncertainty import ErrorModelConstants

__all__ = ["Closure", "LoopVerifier", "variance_gain"]


@dataclass
class Closure:
    """A verified relative pose: the keyframe's camera in the submap's anchor frame, with its covariance (right
    perturbation, (rho, phi))."""

    T_a_c: np.ndarray
    cov: np.ndarray
    inlier_ratio: float
    track: TrackResult


class LoopVerifier:
    """Registers keyframes against frozen submaps (module docstring); ``cfg`` a FilterConfig, ``camera`` the
    full-resolution intrinsics."""

    def __init__(self, cfg, camera: Camera, constants: Optional[ErrorModelConstants] = None):
        self.cfg, self.camera = cfg, camera
        self.params = track_params(cfg)
        self.levels = pyramid_levels(cfg)
        self.noise = np.array([cfg.depth_noise_c0_m, cfg.depth_noise_c2_per_m, cfg.depth_noise_z0_m])
        self.constants = constants or ErrorModelConstants()
        s_m, s_r = cfg.recovery_prior_sigma_m, cfg.recovery_prior_sigma_rad
        self.prior = np.diag([s_m**2] * 3 + [s_r**2] * 3)

    def frame(self, rgb: np.ndarray, depth: np.ndarray, depth_sigma: Optional[np.ndarray] = None) -> FramePyramid:
        """A keyframe's pyramid, as the filter builds it (InvalidFrameError on unusable images)."""
        return frame_pyramid(self.cfg, self.camera, rgb, depth, depth_sigma)

    def _render(self, tsdf: TsdfMap, T: np.ndarray, level: int):
        c = self.cfg
        return render_map(tsdf, self.camera.level(level), T, c.depth_min_m, c.depth_max_m)

    def register(
        self,
        frame: FramePyramid,
        tsdf: TsdfMap,
        T_a_c_pred: np.ndarray,
        inlier_reference: float,
        min_overlap: float,
    ) -> Optional[Closure]:
        """The keyframe ``frame`` registered in ``tsdf`` (a submap, anchor frame) from the prediction ``T_a_c_pred``,
        or None when it does not track; ``inlier_reference``: the filter's recent inlier ratio (module docstring)."""
        c = self.cfg
        coarse_level = min(c.render_level + 1, self.levels - 1)
        coarse_finest = min(c.track_finest_level + 1, self.levels - 1)
        T = np.asarray(T_a_c_pred, dtype=np.float64).copy()
        for factor in c.recovery_distance_factors:
            render = self._render(tsdf, T, coarse_level)
            if render.valid_fraction <= 0.02:
                return None
            wide = dict(self.params, max_dist=factor * self.params["max_dist"])
            tr = track(
                frame,
                render,
                T,
                self.prior,
                c.track_levels,
                coarse_finest,
                2 * c.track_max_iterations,
                c.track_convergence_eps,
                self.noise,
                wide,
                c.laplace_patch_px,
            )
            T = tr.T_w_c
        render = self._render(tsdf, T, c.render_level)
        tr = track(
            frame,
            render,
            T,
            self.prior,
            c.track_levels,
            c.track_finest_level,
            c.track_max_iterations,
            c.track_convergence_eps,
            self.noise,
            self.params,
            c.laplace_patch_px,
        )
        overlap = tr.n_overlap / max(1, tr.n_valid)
        if (
            failure(tr, render, c) is not None
            or overlap < min_overlap
            or tr.inlier_ratio < c.doubt_inlier_drop * inlier_reference
        ):
            return None
        try:
            H_inv = np.linalg.inv(0.5 * (tr.H_data + tr.H_data.T))
        except np.linalg.LinAlgError:
            return None
        scale = self.constants.white_scale * c.laplace_patch_px / max(float(tr.patch_px), 1e-9)
        G = tr.cov @ tr.H_data
        cov = scale * 0.5 * (H_inv + H_inv.T) + G @ np.diag(self.constants.systematic(tr.residual_level, 0.0)) @ G.T
        cov = 0.5 * (cov + cov.T)
        if not np.all(np.isfinite(cov)) or np.linalg.eigvalsh(cov).min() <= 0:
            return None
        return Closure(tr.T_w_c.copy(), cov, float(tr.inlier_ratio), tr)


def variance_gain(graph_cov: np.ndarray, closure_cov: np.ndarray) -> Tuple[float, float]:
    """How many times more certain (variance trace) a closure is than the graph, in translation and in rotation."""
    return tuple(
        float(np.trace(graph_cov[b, b]) / max(np.trace(closure_cov[b, b]), 1e-30)) for b in (slice(0, 3), slice(3, 6))
    )
