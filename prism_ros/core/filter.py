"""The PRISM filter: one Bayes-filter step per RGB-D frame.

    1. predict   the pose and velocity through the dynamics (constant velocity or a control)
    2. render    the map once at the predicted pose (depth, normals, intensity, map sigma)
    3. track     Gauss-Newton MAP of the pose: ICP + photometric + dynamics prior
       (3b. recover: when tracking fails or after a gap, re-track from the last good pose)
    4. laplace   pose covariance = inverse Hessian at the optimum (prior included)
    5. velocity  closed-form linear-Gaussian update given the new pose
    6. map       closed-form Gaussian fusion of the frame into the TSDF at the new pose
"""
from __future__ import annotations

import time
from typing import Dict, Optional

import numpy as np

from ..config import PrismConfig
from . import se3
from .camera import Camera
from .dynamics import MotionModel, MotionState
from .image import InvalidFrameError, build_frame
from .render import render_map
from .tracker import track
from .tsdf import TsdfMap
from .types import Control, StepResult

__all__ = ["PrismFilter", "InvalidFrameError"]

#: Covariance inflation applied to the pose when tracking is flagged as lost (m, rad).
LOST_POSE_SIGMA = (0.05, 0.05, 0.05, 0.05, 0.05, 0.05)
#: A pose this many prior standard deviations (squared Mahalanobis) from the prediction
#: is a jump the dynamics cannot explain (chi2_6 has a 1e-19 tail there).
MAX_PRIOR_MAHALANOBIS2 = 100.0
#: Recovery: association distance factors (times icp_max_distance_m), wide to narrow,
#: and the broad prior it tracks under (m, rad).
RECOVERY_DISTANCE_FACTORS = (8.0, 2.0)
RECOVERY_PRIOR_SIGMA = (0.5, 0.5, 0.5, 0.5, 0.5, 0.5)
#: After a gap, plain tracking is trusted only with this inlier ratio (normal: 0.75-0.85);
#: otherwise recovery runs.  (An overloaded node that skips frames also makes gaps: they
#: must not make every step a slow recovery.)
GAP_TRUST_INLIER_RATIO = 0.6
#: A tracked frame whose inlier ratio falls below this fraction of the recent average
#: (and below GAP_TRUST_INLIER_RATIO) is doubtful -- typically ICP settled in a wrong
#: basin after a large unpredicted motion -- and recovery is run to compare.
DOUBT_INLIER_DROP = 0.75
#: Weight of a new frame in that running average of tracked frames' inlier ratios.
INLIER_AVERAGE_WEIGHT = 0.1
#: Starting points closer than this (norm of the SE(3) log: m, rad) count as one.
RECOVERY_SAME_START = 0.01
#: Extra starting points around the last good pose (body frame: rho, phi): looking
#: 12 deg left / right / up / down, and 15 cm forward / back.
RECOVERY_PERTURBATIONS = tuple(
    np.array(d, dtype=float) for d in (
        (0, 0, 0, 0, 0.21, 0), (0, 0, 0, 0, -0.21, 0), (0, 0, 0, 0.21, 0, 0), (0, 0, 0, -0.21, 0, 0),
        (0, 0, 0.15, 0, 0, 0), (0, 0, -0.15, 0, 0, 0),
    )
)


class PrismFilter:
    """Probabilistic dense RGB-D filter over a TSDF map and the agent state."""

    def __init__(self, config: PrismConfig, camera: Camera, T_w_c0: Optional[np.ndarray] = None):
        self.cfg = config
        self.camera = camera
        self.noise = np.array([config.depth_noise_c0_m, config.depth_noise_c2_per_m, config.depth_noise_z0_m])
        self.motion = MotionModel(config.accel_noise_mps2, config.angular_accel_noise_radps2,
                                  config.initial_velocity_sigma_mps, config.initial_angular_velocity_sigma_radps,
                                  config.max_dt_s)
        self.track_params = dict(
            max_dist=config.icp_max_distance_m,
            min_cos=float(np.cos(np.deg2rad(config.icp_max_normal_angle_deg))),
            huber_k=config.huber_k,
            sigma_i=config.intensity_noise_sigma,
            use_photo=bool(config.use_photometric),
            photo_min_grad=0.002,
        )
        # one level more than tracking needs, for recovery
        self.levels = max(config.track_finest_level + config.track_levels + 1, config.render_level + 1)
        self.track_level_range = range(config.track_finest_level, self.levels)
        self.render_camera = camera.level(config.render_level)
        # recovery's wide-association stages: one level coarser render and tracking
        self.coarse_render_level = min(config.render_level + 1, self.levels - 1)
        self.coarse_render_camera = camera.level(self.coarse_render_level)
        self.coarse_finest_level = min(config.track_finest_level + 1, self.levels - 1)
        self.reset(T_w_c0)

    # ------------------------------------------------------------------ state
    def reset(self, T_w_c0: Optional[np.ndarray] = None) -> None:
        """Forget the map and the state; the next frame starts a new map at T_w_c0."""
        c = self.cfg
        if getattr(self, "map", None) is not None and self.map.voxel_size == c.voxel_size_m \
                and self.map.truncation == c.truncation_m:
            self.map.clear()  # reuse the buffers: no fresh 100 MB allocation per reset
        else:
            self.map = TsdfMap(c.voxel_size_m, c.truncation_m, c.map_prior_sigma_m, c.map_min_sigma_m,
                               c.map_max_observations, c.map_initial_blocks, c.map_model_sigma_m,
                               c.map_distance_sigma_ratio)
        self._attach_free_space()
        self.lost_frames = 0  # consecutive frames without tracking
        self.inlier_average: Optional[float] = None  # running average over tracked frames
        self.recovery_turn = 0  # round robin over the recovery starting points
        self.relocalise = False  # the next frame relocalises in a loaded map (all starts)
        self.T_w_c0 = np.eye(4) if T_w_c0 is None else np.asarray(T_w_c0, dtype=np.float64).copy()
        self.state: Optional[MotionState] = None
        self.frames_fused = 0
        self.frames_seen = 0

    def set_map(self, tsdf_map: TsdfMap, T_w_c0: Optional[np.ndarray] = None) -> None:
        """Track against ``tsdf_map`` (e.g. loaded from disk): the state is reset and the
        next frame is relocalised in the map starting from ``T_w_c0`` (a prior: the pose
        at which the map was saved, or an external guess) before anything is fused."""
        self.reset(T_w_c0)
        self.map = tsdf_map
        self.relocalise = True
        self._attach_free_space()

    def _attach_free_space(self) -> None:
        """Feed the occupancy grid's free-space layer (prism_ros.core.occupancy) from this map."""
        c = self.cfg
        if c.occupancy_free_pixel_stride > 0 and getattr(self.map, "free_space", None) is None:
            from .occupancy import FreeSpaceLayer

            self.map.free_space = FreeSpaceLayer(c.voxel_size_m, c.truncation_m, c.occupancy_min_z_m,
                                                 c.occupancy_max_z_m, c.occupancy_free_pixel_stride,
                                                 c.occupancy_free_max_bricks)

    @property
    def T_w_c(self) -> np.ndarray:
        return (self.state.T_w_c if self.state is not None else self.T_w_c0).copy()

    # ------------------------------------------------------------------ step
    def step(self, rgb: np.ndarray, depth: np.ndarray, stamp: float, control: Optional[Control] = None,
             depth_sigma: Optional[np.ndarray] = None) -> StepResult:
        """Run one filter step on an RGB-D frame (rgb uint8 HxWx3, depth float32 metres, 0 = invalid).

        Raises InvalidFrameError for frames that cannot be used; the filter state
        and the map are untouched in that case.
        """
        c = self.cfg
        tm: Dict[str, float] = {}
        t0 = time.perf_counter()
        frame = build_frame(rgb, depth, self.camera, self.levels, c.depth_min_m, c.depth_max_m, depth_sigma,
                            normal_levels=self.track_level_range, gray=bool(c.use_photometric))
        if frame.valid_fraction < 0.01:
            raise InvalidFrameError(f"only {100 * frame.valid_fraction:.1f}% of the depth image is valid")
        if self.state is not None and stamp <= self.state.stamp:
            raise InvalidFrameError(f"stamp {stamp:.6f} is not after the previous frame's {self.state.stamp:.6f}")
        tm["preprocess"] = _ms(t0)
        self.frames_seen += 1

        if self.state is None and self.map.num_blocks > 0:
            # first frame in a loaded map: relocalise against it from T_w_c0 (handled as
            # after a gap: recovery from T_w_c0 and perturbations of it), then go on
            self.state = self.motion.initial_state(self.T_w_c0, stamp - 2.0 * c.max_dt_s - 1.0)
            self.state.Sigma = np.diag(np.square(RECOVERY_PRIOR_SIGMA))
        if self.state is None:  # first frame: it defines the map
            self.state = self.motion.initial_state(self.T_w_c0, stamp)
            t = time.perf_counter()
            self._fuse(frame, self.state.T_w_c, self.state.Sigma)
            tm["integrate"] = _ms(t)
            tm["total"] = _ms(t0)
            return self._result(stamp, True, 1.0, 0, True, tm, "initialised")

        s = self.state
        gap = stamp - s.stamp > c.max_dt_s  # the dynamics cannot bridge it
        dt = self.motion.clamp_dt(stamp - s.stamp)
        # 1. predict the pose and velocity through the dynamics
        t = time.perf_counter()
        T_pred, Sigma_pred, nu_pred, P_pred = self.motion.predict(s, dt, control)
        tm["predict"] = _ms(t)
        # 2. render the map once at the predicted pose
        t = time.perf_counter()
        render = self._render(frame, T_pred)
        tm["render"] = _ms(t)
        # 3.+4. pose MAP by Gauss-Newton and its Laplace covariance
        t = time.perf_counter()
        tr = track(frame, render, T_pred, Sigma_pred, c.track_levels, c.track_finest_level,
                   c.track_max_iterations, c.track_convergence_eps, self.noise, self.track_params,
                   c.laplace_patch_px)
        tm["track"] = _ms(t)
        ok, why = self._tracking_ok(tr, render)
        status = "ok"
        doubtful = tr.inlier_ratio < GAP_TRUST_INLIER_RATIO and (
            gap or (self.inlier_average is not None and tr.inlier_ratio < DOUBT_INLIER_DROP * self.inlier_average))
        if not ok or doubtful:
            # 3b. recovery: re-track against the map from the last good pose and from the
            # prediction, with wider association on coarser levels; a doubtful frame keeps
            # whichever of the two tracks has more inliers
            why = why or f"doubtful: inlier ratio {tr.inlier_ratio:.2f}"
            t = time.perf_counter()
            # Bounded cost: the last good pose plus recovery_max_starts - 1 more starting
            # points per frame, taken in turn (prediction, perturbations) over the lost
            # frames, so a lost frame costs about as much as recovery_max_starts normal
            # steps; only relocalisation in a loaded map tries them all at once.
            starts = self._recovery_starts(s.T_w_c, T_pred)
            rec = self._recover(frame, starts)
            tm["recover"] = _ms(t)
            if rec is not None and (not ok or rec.inlier_ratio > tr.inlier_ratio):
                tr, ok, status = rec, True, "recovered" + (" after a gap" if gap else f" ({why})")
        if ok:
            T_new, Sigma_new = tr.T_w_c, tr.cov
        else:  # keep the prediction, inflate its covariance, do not touch the map
            T_new = T_pred
            Sigma_new = Sigma_pred + np.diag(np.square(LOST_POSE_SIGMA))
            status = "lost: " + (why or "no recovery after a gap")
        # 5. velocity: closed-form linear-Gaussian update given the new pose
        t = time.perf_counter()
        if gap or not ok or status.startswith("recovered"):
            # no motion model spans a gap, a lost frame or a recovery jump: restart it at rest
            nu, P = np.zeros(6), self.motion.P0.copy()
        else:
            nu, P = self.motion.velocity_update(s.T_w_c, s.Sigma, T_new, Sigma_new, nu_pred, P_pred, dt)
        tm["velocity"] = _ms(t)
        self.state = MotionState(T_new, Sigma_new, nu, P, stamp)
        self.lost_frames = 0 if ok else self.lost_frames + 1
        if ok:
            a = self.inlier_average
            self.inlier_average = tr.inlier_ratio if a is None else a + INLIER_AVERAGE_WEIGHT * (tr.inlier_ratio - a)
        # 6. map: fuse the frame at the new pose (product of Gaussians per voxel)
        t = time.perf_counter()
        if ok:
            self._fuse(frame, T_new, Sigma_new)
        tm["integrate"] = _ms(t)
        tm["total"] = _ms(t0)
        return self._result(stamp, ok, tr.inlier_ratio, tr.iterations, ok, tm, status)

    # ------------------------------------------------------------------ tracking quality
    def _render(self, frame, T_w_c: np.ndarray, coarse: bool = False):
        """Raycast the map at ``T_w_c`` (at render_level, or one level coarser), guided by
        the frame's depth at that level."""
        c = self.cfg
        level, camera = (self.coarse_render_level, self.coarse_render_camera) if coarse \
            else (c.render_level, self.render_camera)
        guide = frame.depth[level] if c.render_guide_margin_m > 0 else None
        return render_map(self.map, camera, T_w_c, c.depth_min_m, c.depth_max_m, guide, c.render_guide_margin_m)

    def _tracking_ok(self, tr, render):
        """(ok, reason): too few inliers, too little of the map in view, a Hessian that is
        not positive definite, or a jump the dynamics cannot explain mean failure."""
        c = self.cfg
        if render.valid_fraction <= 0.02:
            return False, f"map covers {100 * render.valid_fraction:.1f}% of the view"
        if tr.inlier_ratio < c.tracking_min_inlier_ratio:
            return False, f"inlier ratio {tr.inlier_ratio:.2f}"
        if not np.all(np.isfinite(tr.cov)) or np.linalg.eigvalsh(tr.cov).min() <= 0:
            return False, "degenerate Hessian"
        if tr.prior_mahalanobis2 > MAX_PRIOR_MAHALANOBIS2:
            return False, f"jump of {np.sqrt(tr.prior_mahalanobis2):.0f} sigma from the prediction"
        return True, ""

    def _recovery_starts(self, T_last: np.ndarray, T_pred: np.ndarray):
        """Starting poses for this frame's recovery: the last good pose, then the next
        ``recovery_max_starts - 1`` of (prediction, perturbations of the last good pose),
        round robin across frames; all of them when relocalising in a loaded map."""
        others = [T_last @ se3.exp(d) for d in RECOVERY_PERTURBATIONS]
        if np.linalg.norm(se3.log(se3.inv(T_last) @ T_pred)) > RECOVERY_SAME_START:
            others.insert(0, T_pred)  # (at rest, e.g. after a gap, it is the last pose)
        n = len(others) if self.relocalise else min(self.cfg.recovery_max_starts - 1, len(others))
        picked = [others[(self.recovery_turn + j) % len(others)] for j in range(n)]
        self.recovery_turn = (self.recovery_turn + n) % len(others)
        self.relocalise = False
        return [T_last] + picked

    def _recover(self, frame, candidates):
        """Re-track from each candidate pose under a broad prior with an association
        distance annealed from wide to normal, one level coarser (render and tracking)
        than normal tracking and re-rendering at each stage; then refine the best with
        the normal settings.  Returns the refined TrackResult, or None when no candidate
        tracks."""
        c = self.cfg
        broad = np.diag(np.square(RECOVERY_PRIOR_SIGMA))
        best = None
        for T in candidates:
            tr = None
            for factor in RECOVERY_DISTANCE_FACTORS:
                render = self._render(frame, T, coarse=True)
                if render.valid_fraction <= 0.02:
                    tr = None
                    break
                wide = dict(self.track_params, max_dist=factor * self.track_params["max_dist"])
                tr = track(frame, render, T, broad, c.track_levels, self.coarse_finest_level,
                           2 * c.track_max_iterations, c.track_convergence_eps, self.noise, wide,
                           c.laplace_patch_px)
                T = tr.T_w_c
            if tr is not None and (best is None or tr.inlier_ratio > best.inlier_ratio):
                best = tr
        if best is None:
            return None
        render = self._render(frame, best.T_w_c)
        tr = track(frame, render, best.T_w_c, np.diag(np.square(LOST_POSE_SIGMA)), c.track_levels,
                   c.track_finest_level, c.track_max_iterations, c.track_convergence_eps, self.noise,
                   self.track_params, c.laplace_patch_px)
        ok, _ = self._tracking_ok(tr, render)
        return tr if ok else None

    # ------------------------------------------------------------------ helpers
    def _fuse(self, frame, T_w_c: np.ndarray, Sigma: np.ndarray) -> None:
        pose_var = float(np.trace(Sigma[:3, :3])) / 3.0
        self.map.integrate(frame.depth[0], frame.rgb, frame.normals[frame.aux_level], self.camera.params, T_w_c,
                           self.noise, depth_sigma=frame.depth_sigma, pose_var=pose_var, edges=frame.edges,
                           aux_level=frame.aux_level)
        self.frames_fused += 1

    def _result(self, stamp, ok, inlier_ratio, iters, fused, tm, status) -> StepResult:
        s = self.state
        return StepResult(stamp=stamp, T_w_c=s.T_w_c.copy(), pose_cov=s.Sigma.copy(), velocity=s.nu.copy(),
                          velocity_cov=s.P.copy(), tracking_ok=ok, inlier_ratio=float(inlier_ratio),
                          iterations=int(iters), fused=fused, timings_ms=tm, status=status)

    def warmup(self) -> float:
        """Compile every Numba kernel on a small synthetic frame (a textured plane); the
        filter is reset afterwards.  Returns the seconds it took."""
        t0 = time.perf_counter()
        cam = self.camera
        small = Camera(cam.fx / 8, cam.fy / 8, (cam.cx + 0.5) / 8 - 0.5, (cam.cy + 0.5) / 8 - 0.5,
                       max(16, cam.width // 8), max(16, cam.height // 8))
        f = PrismFilter(self.cfg.replace(map_initial_blocks=256), small)
        h, w = small.height, small.width
        vv, uu = np.mgrid[0:h, 0:w]
        depth = (1.5 + 0.002 * uu).astype(np.float32)
        rgb = np.stack([(128 + 100 * np.sin(uu * 0.7) * np.cos(vv * 0.5)).astype(np.uint8)] * 3, axis=-1)
        for i in range(3):
            f.step(rgb, depth, 0.1 * i + 1.0)
        f.map.query(np.zeros((1, 3)))
        f.map.extract_surface(0.01)
        return time.perf_counter() - t0


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3
