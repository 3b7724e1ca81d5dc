"""The PRISM filter: one Bayes-filter step per RGB-D frame (:meth:`PrismFilter.step`).

    0. deskew    a rolling-shutter frame re-sampled to its stamp (``camera_readout_s``; :mod:`.rolling_shutter`)
    1. predict   the pose and velocity through the dynamics (constant velocity or a control)
    2. render    the map once at the predicted pose (depth, normals, intensity, map sigma)
    3. track     Gauss-Newton MAP of the pose: ICP + photometric + dynamics prior
       (3b. recover: when the track is lost or doubtful, re-track: :mod:`.recovery`)
    4. laplace   pose covariance = inverse Hessian at the optimum (prior included); the reported
                 covariances follow the error this step makes (:mod:`.uncertainty`)
    5. velocity  closed-form linear-Gaussian update given the new pose
    6. fuse      closed-form Gaussian fusion of the frame into the TSDF at the new pose
                 (at most integrate_rate_hz: the frames between are tracked, not fused)

In a map given with :meth:`PrismFilter.set_map` the filter starts in *relocalisation* mode: nothing is
fused until a frame tracks from the prior pose or one of the recovery starts.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Dict, Optional

import numpy as np

from . import se3
from .camera import Camera
from .config import FilterConfig
from .dynamics import MotionModel, MotionState
from .image import InvalidFrameError
from .mesh import BlockMesher
from .occupancy import FreeSpaceLayer, OccupancyGridBuilder
from .recovery import Quality, Recovery
from .rolling_shutter import deskew, deskew_frame
from .predictive import depth_predictive_counts
from .render import render_map
from .tracker import frame_pyramid, pyramid_levels, track, track_params
from .tsdf import TsdfMap
from .types import Control, StepOutcome, StepResult
from .uncertainty import PoseErrorModel, velocity_cov

__all__ = ["PrismFilter", "InvalidFrameError"]


class _Stages(dict):
    """Per-stage wall-clock milliseconds of one step: ``with stages("render"): ...``;
    ``total()`` adds the step's whole wall time under ``total``."""

    def __init__(self):
        super().__init__()
        self.t0 = time.perf_counter()

    def total(self) -> Dict[str, float]:
        self["total"] = (time.perf_counter() - self.t0) * 1e3
        return dict(self)

    @contextmanager
    def __call__(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + (time.perf_counter() - t) * 1e3


class PrismFilter:
    """Probabilistic dense RGB-D filter over a TSDF map and the agent state; ``config`` is a
    :class:`~prism_ros.core.config.FilterConfig` (or any object with its fields, e.g. a PrismConfig).
    """

    def __init__(self, config, camera: Camera, T_w_c0: Optional[np.ndarray] = None):
        c = self.cfg = config if isinstance(config, FilterConfig) else _filter_config(config)
        self.camera = camera
        self.noise = np.array([c.depth_noise_c0_m, c.depth_noise_c2_per_m, c.depth_noise_z0_m])
        self.motion = MotionModel(
            c.accel_noise_mps2,
            c.angular_accel_noise_radps2,
            c.initial_velocity_sigma_mps,
            c.initial_angular_velocity_sigma_radps,
            c.max_dt_s,
        )
        self.track_params = track_params(c)
        self.levels = pyramid_levels(c)
        self.render_camera = camera.level(c.render_level)
        self.coarse_render_level = min(c.render_level + 1, self.levels - 1)
        self.coarse_render_camera = camera.level(self.coarse_render_level)
        self.recovery = Recovery(
            c,
            self._render,
            self._track,
            self.track_params,
            c.track_finest_level,
            min(c.track_finest_level + 1, self.levels - 1),
        )
        self.map: Optional[TsdfMap] = None
        self.errors = PoseErrorModel(c.laplace_patch_px)
        self.reset(T_w_c0)

    # ------------------------------------------------------------------ state
    def reset(self, T_w_c0: Optional[np.ndarray] = None) -> None:
        """Forget the map and the state; the next frame starts a new map at T_w_c0."""
        c = self.cfg
        if self.map is not None and self.map.voxel_size == c.voxel_size_m and self.map.truncation == c.truncation_m:
            self.map.clear()  # reuse the buffers: no fresh allocation per reset
        else:
            self.map = TsdfMap(
                c.voxel_size_m,
                c.truncation_m,
                c.map_prior_sigma_m,
                c.map_min_sigma_m,
                c.map_max_observations,
                c.map_initial_blocks,
                c.map_model_sigma_m,
                c.map_distance_sigma_ratio,
            )
        self.recovery.reset()
        self.errors.reset()
        self.relocalising = False  # set_map: track the first frames in the given map before fusing
        self._all_starts_pending = False  # the first relocalising frame tries every recovery start
        self._attach_free_space()
        self.lost_frames = 0  # consecutive frames without tracking
        self.T_w_c0 = np.eye(4) if T_w_c0 is None else np.asarray(T_w_c0, dtype=np.float64).copy()
        self.state: Optional[MotionState] = None
        self.frames_fused = 0
        self.frames_seen = 0
        self._last_fused_stamp = -np.inf
        self._last_render = None  # (map, its revision, Render) of the last tracking render
        self.renders_reused = 0

    def set_map(self, tsdf_map: TsdfMap, T_w_c0: Optional[np.ndarray] = None) -> None:
        """Track against ``tsdf_map`` (e.g. loaded from disk): the state is reset and the filter relocalises from
        ``T_w_c0`` (a prior) and all recovery starts around it; nothing is fused before a frame tracks.
        """
        self.reset(T_w_c0)
        self.map = tsdf_map
        self.relocalising = self._all_starts_pending = True
        self._attach_free_space()

    def _attach_free_space(self) -> None:
        """Feed the occupancy grid's free-space layer (prism_ros.core.occupancy) from this map."""
        c = self.cfg
        if c.occupancy_free_pixel_stride > 0 and self.map.free_space is None:
            self.map.free_space = FreeSpaceLayer(
                c.voxel_size_m,
                c.truncation_m,
                c.occupancy_min_z_m,
                c.occupancy_max_z_m,
                c.occupancy_free_pixel_stride,
                c.occupancy_free_max_bricks,
            )

    @property
    def T_w_c(self) -> np.ndarray:
        return (self.state.T_w_c if self.state is not None else self.T_w_c0).copy()

    # ------------------------------------------------------------------ step
    def step(
        self,
        rgb: np.ndarray,
        depth: np.ndarray,
        stamp: float,
        control: Optional[Control] = None,
        depth_sigma: Optional[np.ndarray] = None,
    ) -> StepResult:
        """One filter step on an RGB-D frame (rgb uint8 HxWx3, depth float32 m, 0 = invalid; ``depth_sigma``: optional
        per-pixel sigma, m).  Raises InvalidFrameError for an unusable frame, leaving state and map untouched.
        """
        st = _Stages()
        with st("preprocess"):
            rgb, depth, depth_sigma = self._deskew(rgb, depth, depth_sigma, control)
            frame = self._preprocess(rgb, depth, stamp, depth_sigma)
        if self.state is None and not self.relocalising:  # the first frame defines the map
            return self._initialise(frame, stamp, st)
        # 1. predict the pose and velocity through the dynamics
        with st("predict"):
            T_pred, Sigma_pred, nu_pred, P_pred, dt, gap = self._predict(stamp, control)
        # 2. render the map once at the predicted pose (or keep the last render: map unchanged since)
        with st("render"):
            render = self._tracking_render(frame, T_pred, gap)
        # 3. pose MAP by Gauss-Newton against the render, with the dynamics prior
        with st("track"):
            tr = self._track(frame, render, T_pred, Sigma_pred, self.cfg.track_finest_level)
        # 3b. recovery when the track is lost or doubtful
        # (the first frame after a loss, like one after a gap, must show its inliers to be trusted)
        quality, why = self.recovery.assess(tr, render, after_gap=gap or self.relocalising or self.lost_frames > 0)
        outcome = StepOutcome.OK if quality is Quality.OK else StepOutcome.LOST
        if quality is not Quality.OK:
            with st("recover"):
                # with a control (IMU, odometry) right after a tracked frame the prediction is
                # trusted: a recovered track must agree with it too (a wrong match is not a loss)
                gated = control is not None and not gap and self.lost_frames == 0 and self.state is not None
                tr, outcome, why = self._recover(frame, tr, quality, why, T_pred, Sigma_pred if gated else None, gap)
        # 4. Laplace covariance at the optimum (or the inflated prediction while lost)
        T_new, Sigma_new = (tr.T_w_c, tr.cov) if outcome.tracked else (T_pred, Sigma_pred + self.recovery.lost_sigma)
        # 4b. the reported uncertainty: the error this step makes (relocalising, a lost pose is its prior)
        with st("uncertainty"):
            T_prev, tracked = (None if self.state is None else self.state.T_w_c), (tr if outcome.tracked else None)
            lost_cov = self.recovery.lost_sigma if T_prev is not None else Sigma_new
            fresh = outcome is StepOutcome.RECOVERED or gap
            err = self.errors.update(T_prev, T_new, tracked, fresh, lost_cov, control is not None)
        # 5. velocity given the new pose (no motion model spans a gap or a loss)
        with st("velocity"):
            nu, P, P_report = self._velocity(
                T_new, Sigma_new, nu_pred, P_pred, dt, T_pred, tr, control, outcome, gap, err
            )
        self._commit(outcome, tr.inlier_ratio, MotionState(T_new, Sigma_new, nu, P, stamp))
        if outcome is not StepOutcome.OK:
            self._last_render = None  # the next frame's prediction may be far from it
        # 5b. depth-predictive check of the map at the tracked pose, before this frame is fused
        with st("depth_check"):
            depth_check = self._depth_check(frame, T_new, Sigma_new, render) if outcome.tracked else None
        # 6. fuse the frame into the map at the new pose (product of Gaussians per voxel)
        with st("integrate"):
            if outcome.tracked and self._fuse_due(stamp):
                self._fuse(frame, T_new, Sigma_new, stamp)
        status = outcome.value + (f": {why}" if why else "")
        out = self._result(stamp, outcome, status, tr.inlier_ratio, tr.iterations, st, T_new, Sigma_new)
        out.depth_check = depth_check
        if outcome.tracked or not self.relocalising:  # the state was committed (_commit)
            out.velocity_cov = np.array(P_report)
        return out.report(err)

    # ------------------------------------------------------------------ the stages
    def _initialise(self, frame, stamp: float, st: "_Stages") -> StepResult:
        self.state = self.motion.initial_state(self.T_w_c0, stamp)
        with st("integrate"):
            self._fuse(frame, self.state.T_w_c, self.state.Sigma, stamp)
        self.frames_seen += 1
        out = self._result(stamp, StepOutcome.INITIALISED, "initialised", 1.0, 0, st)
        return out.report(self.errors.start(self.state.Sigma))

    def _deskew(self, rgb, depth, depth_sigma, control: Optional[Control]):
        """A rolling-shutter frame re-sampled to its stamp (:func:`.rolling_shutter.deskew_frame`) with the
        control's twist (IMU) or the last estimate; as it came for a global shutter and before the first frame."""
        if self.cfg.camera_readout_s <= 0 or self.state is None:
            return rgb, depth, depth_sigma
        nu = control.nu_curr if control is not None and control.nu_curr is not None else self.state.nu
        return deskew_frame(self.camera, self.cfg.camera_readout_s, nu, rgb, depth, depth_sigma)

    def _preprocess(self, rgb, depth, stamp, depth_sigma):
        c = self.cfg
        frame = frame_pyramid(c, self.camera, rgb, depth, depth_sigma)
        if frame.valid_fraction < c.min_valid_depth_fraction:
            raise InvalidFrameError(
                f"only {100 * frame.valid_fraction:.1f}% of the depth image is valid "
                "(zero, NaN or out of range: covered lens?)"
            )
        if self.state is not None and stamp <= self.state.stamp:
            raise InvalidFrameError(f"stamp {stamp:.6f} is not after the previous frame's {self.state.stamp:.6f}")
        return frame

    def _predict(self, stamp: float, control: Optional[Control]):
        """(T_pred, Sigma_pred, nu_pred, P_pred, dt, gap).  Relocalising, the prediction is
        T_w_c0 under the broad recovery prior."""
        if self.state is None:  # relocalising in a given map
            s = self.motion.initial_state(self.T_w_c0, stamp)
            return s.T_w_c, self.recovery.broad_prior.copy(), s.nu, s.P, 0.0, True
        s = self.state
        raw_dt = stamp - s.stamp
        # a control (IMU, odometry) bridges up to control_max_dt_s, the constant-velocity model max_dt_s
        gap = raw_dt > (self.cfg.max_dt_s if control is None else self.cfg.control_max_dt_s)
        dt = self.motion.clamp_dt(raw_dt) if control is None or gap else max(raw_dt, 1e-4)
        T_pred, Sigma_pred, nu_pred, P_pred = self.motion.predict(s, dt, control)
        return T_pred, Sigma_pred, nu_pred, P_pred, dt, gap

    def _render(self, frame, T_w_c: np.ndarray, coarse: bool = False):
        """Raycast the map at ``T_w_c`` (at render_level, or one level coarser), guided by
        the frame's depth at that level."""
        c = self.cfg
        level, camera = (
            (self.coarse_render_level, self.coarse_render_camera) if coarse else (c.render_level, self.render_camera)
        )
        guide = frame.depth[level] if c.render_guide_margin_m > 0 else None
        return render_map(self.map, camera, T_w_c, c.depth_min_m, c.depth_max_m, guide, c.render_guide_margin_m)

    def _tracking_render(self, frame, T_pred: np.ndarray, gap: bool):
        """The render to track against: the last one when ``render_reuse`` is on, the map is unchanged since, the
        previous frame tracked OK and there is no gap; else a new raycast at ``T_pred``.
        """
        last = self._last_render
        if (
            self.cfg.render_reuse
            and last is not None
            and not gap
            and last[0] is self.map
            and last[1] == self.map.revision
        ):
            self.renders_reused += 1
            return last[2]
        render = self._render(frame, T_pred)
        self._last_render = (self.map, self.map.revision, render)
        return render

    def _track(self, frame, render, T_start, prior, finest_level, max_iterations=None, params=None):
        c = self.cfg
        return track(
            frame,
            render,
            T_start,
            prior,
            c.track_levels,
            finest_level,
            max_iterations or c.track_max_iterations,
            c.track_convergence_eps,
            self.noise,
            params or self.track_params,
            c.laplace_patch_px,
        )

    def _velocity(self, T_new, Sigma_new, nu_pred, P_pred, dt: float, T_pred, tr, control, outcome, gap, err=None):
        """(nu, P, reported P): the velocity after this step (docs/design.md, "Tracking loss and recovery").

        * Tracked, no gap: :meth:`MotionModel.velocity_update` (the prior counted once).  With a control, the
          reported covariance is that of the same update with the step's error (``err.step_cov``,
          :func:`~prism_ros.core.uncertainty.velocity_cov`); elsewhere it is P.
        * Lost: the IMU control's velocity while the prediction is within ``recovery_prior_sigma_m``; recovered right
          after a tracked frame, no gap: the step between the two poses; otherwise a restart at rest.
        * A gap over ``max_dt_s`` bridged by an IMU control: the IMU's velocity; ``control.still``: zero.
        """
        s, m = self.state, self.motion
        own = lambda nu, P: (nu, P, P)  # noqa: E731  (reported: the filter's own covariance)
        if control is not None and control.still:
            return own(np.array(control.nu_curr, float), np.array(control.nu_cov, float))
        if outcome is StepOutcome.RECOVERED and not gap and self.lost_frames == 0:
            return own(*m.velocity_update(s.T_w_c, s.Sigma, T_new, Sigma_new, np.zeros(6), m.P0.copy(), dt))
        if outcome is not StepOutcome.OK or gap:
            if (
                outcome is StepOutcome.LOST
                and control is not None
                and control.nu_curr is not None
                and np.sqrt(np.linalg.eigvalsh(Sigma_new[:3, :3]).max()) < self.cfg.recovery_prior_sigma_m
            ):
                return own(np.array(control.nu_curr, float), np.array(control.nu_cov, float))
            return own(np.zeros(6), m.P0.copy())
        if control is not None and control.nu_curr is not None and dt > self.cfg.max_dt_s:
            # a gap the control bridged: the step between the poses is the mean velocity over it,
            # not the current one; the IMU's velocity at this frame is
            return own(np.array(control.nu_curr, float), np.array(control.nu_cov, float))
        if control is None:
            return own(*m.velocity_update(s.T_w_c, s.Sigma, T_new, Sigma_new, nu_pred, P_pred, dt, T_pred, tr.H_data))
        nu, P = m.velocity_update(s.T_w_c, s.Sigma, T_new, Sigma_new, nu_pred, P_pred, dt)
        return nu, P, P if err is None else velocity_cov(P, P_pred, err.step_cov / (dt * dt))

    def _depth_check(self, frame, T_w_c, Sigma, render):
        """Counts of the depth-predictive check (:func:`.predictive.depth_predictive_counts`)."""
        c = self.cfg
        return depth_predictive_counts(
            frame.depth[c.render_level],
            self.render_camera.params,
            T_w_c,
            Sigma,
            render,
            self.map,
            self.noise,
            c.truncation_m,
            frame.depth_sigma,
            1 << c.render_level,
        )

    def _commit(self, outcome: StepOutcome, inlier_ratio: float, state: MotionState) -> None:
        """Book-keeping after a step: the new state (not while still relocalising and lost),
        the loss count, the recovery's inlier average; relocalisation ends with a tracked frame."""
        self.frames_seen += 1
        self.lost_frames = 0 if outcome.tracked else self.lost_frames + 1
        if outcome.tracked:
            self.recovery.tracked(inlier_ratio)
            self.relocalising = self._all_starts_pending = False
        if outcome.tracked or not self.relocalising:
            self.state = state

    def _recover(
        self, frame, tr, quality: Quality, why: str, T_pred: np.ndarray, Sigma_gate: Optional[np.ndarray], gap: bool
    ):
        """Re-track from bounded starting poses; a doubtful track keeps whichever of the two has more inliers.

        With ``Sigma_gate`` (a trusted prediction's covariance) a recovered track further than
        ``recovery_max_control_mahalanobis2`` from ``T_pred`` is refused: a lost frame stays lost and unfused, a
        doubtful one keeps its plain track.  Returns (track, outcome, reason).
        """
        T_last = self.state.T_w_c if self.state is not None else self.T_w_c0
        starts = self.recovery.starts(T_last, T_pred, all_starts=self._all_starts_pending)
        self._all_starts_pending = False
        rec = self.recovery.recover(frame, starts)
        if rec is not None and Sigma_gate is not None:
            xi = se3.log(se3.inv(T_pred) @ rec.T_w_c)
            m2 = float(xi @ np.linalg.solve(Sigma_gate, xi))
            if m2 > self.cfg.recovery_max_control_mahalanobis2:
                rec = None
                why = f"{why}; recovered {np.sqrt(m2):.0f} sigma from the control's prediction"
        if rec is not None and (quality is Quality.LOST or rec.n_icp > tr.n_icp):
            return rec, StepOutcome.RECOVERED, "after a gap" if gap and not self.relocalising else why
        if quality is Quality.DOUBTFUL:
            return tr, StepOutcome.OK, ""
        return tr, StepOutcome.LOST, why or "no recovery after a gap"

    # ------------------------------------------------------------------ helpers
    def _fuse_due(self, stamp: float) -> bool:
        """Whether this tracked frame is fused: always without ``integrate_rate_hz``, else when
        a period has passed since the last fused frame (a tolerance of a tenth of the period
        keeps e.g. 20 Hz stamps with jitter at exactly every other frame for 10 Hz)."""
        rate = self.cfg.integrate_rate_hz
        return rate <= 0 or stamp - self._last_fused_stamp >= 0.9 / rate

    def _fuse(self, frame, T_w_c: np.ndarray, Sigma: np.ndarray, stamp: float) -> None:
        pose_var = float(np.trace(Sigma[:3, :3])) / 3.0
        self.map.integrate(
            frame.depth[0],
            frame.rgb,
            frame.normals[frame.aux_level],
            self.camera.params,
            T_w_c,
            self.noise,
            depth_sigma=frame.depth_sigma,
            pose_var=pose_var,
            edges=frame.edges,
            aux_level=frame.aux_level,
        )
        self.frames_fused += 1
        self._last_fused_stamp = stamp

    def _result(self, stamp, outcome, status, inlier_ratio, iters, stages, T=None, Sigma=None) -> StepResult:
        s = self.state or self.motion.initial_state(self.T_w_c0, stamp)
        T = s.T_w_c if T is None else T
        Sigma = s.Sigma if Sigma is None else Sigma
        return StepResult(
            stamp=stamp,
            T_w_c=T.copy(),
            pose_cov=Sigma.copy(),
            velocity=s.nu.copy(),
            velocity_cov=s.P.copy(),
            tracking_ok=outcome.tracked,
            inlier_ratio=float(inlier_ratio),
            iterations=int(iters),
            outcome=outcome,
            timings_ms=stages.total(),
            status=status,
        )

    def warmup(self) -> float:
        """Compile every Numba kernel on a small synthetic frame (a textured plane); the
        filter is reset afterwards.  Returns the seconds it took."""
        t0 = time.perf_counter()
        cam = self.camera
        small = Camera(
            cam.fx / 8,
            cam.fy / 8,
            (cam.cx + 0.5) / 8 - 0.5,
            (cam.cy + 0.5) / 8 - 0.5,
            max(16, cam.width // 8),
            max(16, cam.height // 8),
        )
        f = PrismFilter(self.cfg.replace(map_initial_blocks=256), small)
        h, w = small.height, small.width
        vv, uu = np.mgrid[0:h, 0:w]
        depth = (1.5 + 0.002 * uu).astype(np.float32)
        rgb = np.stack([(128 + 100 * np.sin(uu * 0.7) * np.cos(vv * 0.5)).astype(np.uint8)] * 3, axis=-1)
        for i in range(3):
            f.step(rgb, depth, 0.1 * i + 1.0)
        deskew(depth, rgb, small.params, 0.03, np.ones(6))  # compiled here, used with camera_readout_s > 0
        f.map.query(np.zeros((1, 3)))
        f.map.extract_surface(0.01)
        # the map outputs' snapshots (they run on the thread that owns the map)
        BlockMesher(8).snapshot(f.map)
        vox = f.map.voxel_size
        OccupancyGridBuilder(vox, -10.0, 10.0, vox, 64, 10000).update(f.map)
        return time.perf_counter() - t0


def _filter_config(config) -> FilterConfig:
    """The FilterConfig part of a wider configuration (``filter_config()``) or of any object
    carrying the filter's fields."""
    if hasattr(config, "filter_config"):
        return config.filter_config()
    return FilterConfig.from_dict({p.name: getattr(config, p.name) for p in FilterConfig.SPECS})
