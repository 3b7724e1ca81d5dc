"""The filter's own configuration: declared parameters and the immutable :class:`FilterConfig`.

The core stands alone: it declares the parameters the filter needs here
(:data:`FILTER_PARAMS`, each with its default, description, range and unit suffix)
and knows nothing of the ROS node's frames, QoS or services.  The package's one
declared table, :data:`prism_ros.config.PARAMS`, is these specs followed by the
pipeline's and the node's; YAML, node and CLI all read that table.

Units are in the names: ``_m`` metres, ``_s`` seconds, ``_hz`` hertz, ``_deg``
degrees, ``_rad`` radians, ``_mps2`` m/s^2, ``_radps2`` rad/s^2, ``_px`` pixels.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

__all__ = ["ParamSpec", "ConfigError", "FILTER_PARAMS", "FilterConfig", "ConfigBase", "make_config_class", "spec"]


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter.

    ``scope`` says where it belongs: ``core`` (the filter, :class:`FilterConfig`),
    ``pipeline`` (controls, offline tools and node alike) or ``node`` (the ROS node's
    wiring: frames, QoS, TF, services, publishing).  ``runtime``: it may change while
    the node runs (everything else is read-only there)."""

    name: str
    default: Any
    description: str
    lo: Optional[float] = None  # inclusive numeric range (ints and floats)
    hi: Optional[float] = None
    choices: Optional[Tuple[str, ...]] = None  # allowed strings
    length: Optional[int] = None  # fixed length for array parameters
    scope: str = "core"
    runtime: bool = False

    @property
    def kind(self) -> type:
        if isinstance(self.default, bool):
            return bool
        if isinstance(self.default, int):
            return int
        if isinstance(self.default, float):
            return float
        if isinstance(self.default, str):
            return str
        if isinstance(self.default, (list, tuple)):
            return list
        raise TypeError(self.name)

    def range_text(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.lo is not None:
            return f"[{self.lo}, {self.hi}]" + (f", {self.length} values" if self.length else "")
        if self.length:
            return f"{self.length} values"
        return ""

    def check(self, value: Any) -> Any:
        """Coerce and validate ``value``; raise ConfigError with a clear message."""
        kind = self.kind
        try:
            if kind is bool:
                if not isinstance(value, bool):
                    raise TypeError
                v = value
            elif kind is int:
                if isinstance(value, bool) or not float(value).is_integer():
                    raise TypeError
                v = int(value)
            elif kind is float:
                if isinstance(value, bool):
                    raise TypeError
                v = float(value)
            elif kind is str:
                if not isinstance(value, str):
                    raise TypeError
                v = value
            else:
                v = [float(x) for x in value]
        except (TypeError, ValueError):
            raise ConfigError(f"parameter '{self.name}': expected {kind.__name__}, got {value!r}") from None
        values = v if kind is list else [v] if kind in (int, float) else []
        for x in values:
            if x != x or (self.lo is not None and not (self.lo <= x <= self.hi)):
                raise ConfigError(f"parameter '{self.name}' = {value!r} is out of range {self.range_text()}")
        if self.choices and v not in self.choices:
            raise ConfigError(f"parameter '{self.name}' = {value!r} must be {self.range_text()}")
        if kind is list and self.length is not None and len(v) != self.length:
            raise ConfigError(f"parameter '{self.name}' needs {self.length} values, got {len(v)}")
        return v


def spec(name, default, description, lo=None, hi=None, *, choices=None, length=None, scope="core", runtime=False):
    """Shorthand for :class:`ParamSpec` in the parameter tables."""
    return ParamSpec(name, default, description, lo, hi, choices, length, scope, runtime)


_p = spec

#: The filter's parameters (scope ``core``), in the order they appear in config/prism.yaml.
FILTER_PARAMS: Tuple[ParamSpec, ...] = (
    # --- map -----------------------------------------------------------------
    _p("voxel_size_m", 0.02, "Edge length of one TSDF voxel.", 0.004, 0.25),
    _p("truncation_m", 0.08, "TSDF truncation band tau; observations further than tau in front of the surface are clipped to tau, voxels more than tau behind it are not updated.", 0.01, 1.0),
    _p("map_initial_blocks", 16384, "Voxel blocks (8^3 voxels) allocated up front; the map grows on demand beyond this.", 256, 4_000_000),
    _p("map_prior_sigma_m", 0.5, "Standard deviation of the broad Gaussian prior on the SDF of an unobserved voxel.", 0.01, 100.0),
    _p("map_min_sigma_m", 0.0005, "Floor on a voxel's fused SDF standard deviation (precision cap) so the map can still change.", 0.0, 0.1),
    _p("map_model_sigma_m", 0.003, "Systematic SDF error (pose drift, surface model) that averaging cannot remove; added in quadrature to every reported voxel sigma.", 0.0, 0.5),
    _p("map_distance_sigma_ratio", 0.25, "Observation sigma grows by this fraction of the distance to the surface (planar / projective approximation error).", 0.0, 10.0),
    _p("integrate_rate_hz", 10.0, "Fuse depth into the map at most this often (0: every tracked frame), as nvblox_ros's integrate_depth_rate_hz: frames in between are tracked against the map but not fused (consecutive frames see the same surfaces with correlated errors). Chosen on the simulated V1_02 flight seed 0 (every frame at 20 Hz: ATE 2.63 cm; 10 Hz: 1.82 cm) and 7-Scenes redkitchen 0-599 (3.01 -> 2.93 cm); not fitted on seed 1 (3.56 -> 2.63 cm). Halves the integration cost at 20 Hz, two thirds off at 30 Hz.", 0.0, 1000.0),
    _p("map_max_observations", 200, "Voxel observation counts saturate here (also used as the render confidence).", 1, 65535),
    _p("occupancy_min_z_m", 0.1, "Bottom of the world-frame height band that ~/occupancy and the free-space layer cover (z up, REP-103 world; 0.1 m keeps the floor out). Must be below occupancy_max_z_m.", -100.0, 100.0),
    _p("occupancy_max_z_m", 1.5, "Top of the occupancy height band (a robot up to 1.5 m tall).", -100.0, 100.0),
    _p("occupancy_free_pixel_stride", 16, "Free space is carved along the rays of every n-th pixel (both directions) of the depth image, into the height band (0 disables the free-space layer). 16 at 640x480 = 1200 rays a frame, spaced 5.5 cm at 2 m: at 30 Hz the camera's own motion fills the gaps between frames; measured about 1 ms per frame on 7-Scenes redkitchen frames 0-299 (8: 3.4 ms, 4800 rays).", 0, 64),
    _p("occupancy_free_max_bricks", 65536, "Memory bound of the free-space layer: at most this many bricks (one per map block in the band, 128 B each, 8 MB at the default; ~1700 m^2 of floor with a 1.4 m band at 2 cm voxels); when full the least recently observed half is forgotten (reads unknown).", 16, 16_000_000),
    # --- sensor ----------------------------------------------------------------
    _p("depth_min_m", 0.2, "Depth readings below this are invalid.", 0.0, 10.0),
    _p("depth_max_m", 4.0, "Depth readings above this are invalid.", 0.1, 100.0),
    _p("depth_noise_c0_m", 0.0012, "Depth noise model sigma_z(z) = c0 + c2 (z - z0)^2: constant term (Nguyen et al. 2012 for Kinect v1).", 0.0, 0.5),
    _p("depth_noise_c2_per_m", 0.0019, "Depth noise model: quadratic coefficient c2.", 0.0, 1.0),
    _p("depth_noise_z0_m", 0.4, "Depth noise model: offset z0.", 0.0, 10.0),
    _p("intensity_noise_sigma", 0.04, "Standard deviation of image intensity noise (intensities in [0, 1]) for the photometric residuals.", 1e-4, 1.0),
    _p("min_valid_depth_fraction", 0.01, "Frames with less than this fraction of valid depth pixels are refused (covered lens, out of range); the filter state and the map are untouched.", 0.0, 1.0),
    # --- tracking --------------------------------------------------------------
    _p("track_levels", 3, "Image pyramid levels used by the tracker (coarse to fine).", 1, 5),
    _p("track_finest_level", 1, "Finest pyramid level the tracker uses (0 = full resolution, 1 = half, ...). The map is always fused at full resolution.", 0, 4),
    _p("track_max_iterations", 8, "Gauss-Newton iterations at the coarsest level; each finer level uses half as many (at least 2).", 1, 100),
    _p("track_convergence_eps", 1e-3, "Each pyramid level's Gauss-Newton stops when the update norm (translation m, rotation rad) falls below this; at the finest level the Laplace Hessian is then taken from that last pass (the pose moved less than eps since). A coarse level only has to bring the pose within the next level's reach and the finest level only refines: 1 mm is far below a pixel's footprint at any tracking level (9 mm at 2 m for level 1 on EuRoC) and the lag-1 sigma. 1e-3 against the earlier 1e-5: accumulate passes a frame 12.6 -> 5.2 (simulated V1_02 flight seed 0, frames 0-299); whole flight, interleaved runs: step mean 79-85 -> 62-63 ms, ATE 1.85-1.86 -> 1.88 cm; seed 1 2.80 -> 2.72 cm; 7-Scenes redkitchen 0-299 track median 17.3 -> 6.5 ms, ATE 2.139 -> 2.140 cm; coverage95 within 0.005 on all three.", 0.0, 1.0),
    _p("render_level", 2, "Pyramid level at which the map is raycast for tracking (2 = quarter resolution, 160x120 for a 640x480 camera; tracking data at finer levels associate projectively into it).", 0, 4),
    _p("render_reuse", True, "Track a frame against the previous frame's render when the map has not changed since (no frame fused in between, the previous frame tracked, no gap), instead of raycasting again at the new prediction: association is projective into the render from its own pose. With integrate_rate_hz 10 a 20 Hz camera raycasts every other frame. Simulated V1_02 flight seed 0, frames 0-199, interleaved runs: render 26.0 -> 13.2 ms a frame (mean), step 85.3 -> 74.9 ms, ATE 0.97 -> 0.96 cm. False raycasts every frame at its prediction."),
    _p("render_guide_margin_m", 0.3, "Depth-guided raycasting: rays first march only within this margin of the current frame's measured depth (0 disables; the full ray is marched where no surface is found).", 0.0, 10.0),
    _p("icp_max_distance_m", 0.1, "Reject point-to-plane associations further apart than this.", 0.001, 2.0),
    _p("icp_max_distance_sigmas", 3.0, "The association gate widens to this many standard deviations of the combined depth and map noise (a fixed 3-sigma rule, not fitted) where that exceeds icp_max_distance_m (far stereo depth: sigma_z grows as z^2, 0.30 m at 5 m on EuRoC); 0 keeps the fixed gate. Inactive on 7-Scenes redkitchen frames 0-299 (same track); on a cold start turning to walls 2.5-4 m away in the simulated V1_02 flight the fixed 0.2 m gate rejected so many far pixels that 7 of 70 frames fell below tracking_min_inlier_ratio.", 0.0, 100.0),
    _p("icp_max_normal_angle_deg", 45.0, "Reject associations whose normals disagree by more than this.", 1.0, 90.0),
    _p("use_photometric", True, "Add the photometric (intensity) residuals to the tracker."),
    _p("photometric_min_gradient", 0.002, "Pixels whose rendered intensity gradient is below this (intensity units per pixel) carry no photometric residual.", 0.0, 1.0),
    _p("huber_k", 1.345, "Huber threshold on noise-normalised residuals.", 0.1, 100.0),
    _p("laplace_patch_px", 9.0, "Pixels (at full resolution) that count as one independent measurement in the Laplace covariance; corrects for correlated neighbouring pixels (tuned so pose_coverage_95 is about 0.95 on the synthetic sequence, whose noise is correlated over 4x4 pixels).", 1.0, 10000.0),
    _p("model_error_patch_px", 12000.0, "Model error in the pose covariance: full-resolution pixels over which residual error beyond the noise model is correlated (one independent sample per this many pixels, per unit of excess residual level). Fitted on 7scenes_redkitchen frames 0-599 (coverage95 0.95 at lags 1, 10 and 30); it does not act on synthetic seeds 0-4 (s2 below model_error_residual_level); validation in the README section 'How the uncertainty is calibrated'.", 0.0, 1.0e7),
    _p("model_error_residual_level", 0.5, "Residual level s2 (Huber-weighted chi2 per residual over its expectation 2 Phi(k) - 1) up to which the tracker's residuals count as explained by the noise model; the excess above it scales the model-error term. Fitted between synthetic seeds 0 and 1 (s2 <= 0.46 on every frame: the noise model holds; untuned seed 4: <= 0.45) and 7scenes_redkitchen frames 0-599 as `prism-ros run` tracks it (depth only: s2 median 1.03, 95 % of frames above 0.53).", 0.0, 100.0),
    _p("tracking_min_inlier_ratio", 0.35, "Tracking is flagged as lost when fewer than this fraction of the valid pixels with a normal that the map covers are ICP inliers (a recovered track: of all valid pixels with a normal; only those can be inliers).", 0.0, 1.0),
    _p("tracking_max_prior_mahalanobis2", 100.0, "A tracked pose whose squared Mahalanobis distance from the prediction exceeds this is a jump the dynamics cannot explain (chi2_6 has a 1e-19 tail at 100) and counts as a failure.", 1.0, 1e6),
    # --- recovery --------------------------------------------------------------
    _p("recovery_max_starts", 2, "When tracking fails, recovery re-tracks (coarse levels, wide association) from at most this many starting poses per frame: the last good pose, then the prediction and 6 perturbations of the last good pose in turn over the following lost frames. Bounds the cost of a lost frame to about this many normal steps; relocalisation in a loaded map tries all 8 at once. Measured on 7-Scenes redkitchen (soak, 2 s blank depth): 2 keeps a lost frame at 60-75 ms.", 1, 8),
    _p("recovery_distance_factors", [8.0, 2.0], "Recovery anneals the association distance over these multiples of icp_max_distance_m, wide to narrow, re-rendering at each stage. Set on 7-Scenes redkitchen (recovery after 2 s of blank depth and after unrelated frames, test_recovery).", 1.0, 100.0, length=2),
    _p("recovery_prior_sigma_m", 0.5, "Standard deviation (translation) of the broad prior recovery tracks under; also the relocalisation prior in a loaded map. Set on 7-Scenes redkitchen (test_recovery).", 1e-3, 100.0),
    _p("recovery_prior_sigma_rad", 0.5, "Standard deviation (rotation) of the broad prior recovery tracks under. Set on 7-Scenes redkitchen (test_recovery).", 1e-3, 10.0),
    _p("recovery_perturbation_rad", 0.21, "Recovery's extra starting points look this far left, right, up and down from the last good pose (0.21 rad = 12 deg). Set on 7-Scenes redkitchen (test_recovery).", 0.0, 3.2),
    _p("recovery_perturbation_m", 0.15, "Recovery's extra starting points step this far forward and back from the last good pose. Set on 7-Scenes redkitchen (test_recovery).", 0.0, 10.0),
    _p("recovery_max_control_mahalanobis2", 900.0, "With a control (IMU, odometry) right after a tracked frame, a recovered pose whose squared Mahalanobis distance from the control's prediction exceeds this is refused: the frame stays lost and is not fused. Wider than tracking_max_prior_mahalanobis2 because a fast turn between slow frames legitimately recovers 10-20 sigma from the prediction, while a wrong match that explains the frame well lands far beyond (docs/euroc-real.md).", 1.0, 1e8),
    _p("recovery_same_start", 0.01, "Starting points closer than this (norm of the SE(3) log: m, rad) count as one.", 0.0, 1.0),
    _p("gap_trust_inlier_ratio", 0.6, "After a gap (or below the running average, see doubt_inlier_drop), plain tracking is trusted only with this inlier ratio; otherwise recovery runs and the track with more inliers is kept. Measured on 7-Scenes redkitchen: normal tracking has 0.63-0.85 at 30 Hz; wrong basins at 2 Hz had 0.36-0.39.", 0.0, 1.0),
    _p("doubt_inlier_drop", 0.75, "A tracked frame whose inlier ratio falls below this fraction of the running average (and below gap_trust_inlier_ratio) is doubtful and recovery runs to compare. Set on 7-Scenes redkitchen every 15th frame (ATE 17.2 cm -> 1.97 cm); never triggers at 30 Hz there, nor on the synthetic sequence or EuRoC micro.", 0.0, 1.0),
    _p("inlier_average_weight", 0.1, "Weight of a new tracked frame in the running average of inlier ratios used by doubt_inlier_drop.", 0.0, 1.0),
    _p("lost_pose_sigma_m", 0.05, "While tracking is lost the pose is the prediction with this much translation sigma added per frame (and the recovery refinement's prior).", 0.0, 10.0),
    _p("lost_pose_sigma_rad", 0.05, "While tracking is lost the pose is the prediction with this much rotation sigma added per frame (and the recovery refinement's prior).", 0.0, 3.2),
    # --- dynamics --------------------------------------------------------------
    _p("accel_noise_mps2", 4.0, "White-noise linear acceleration (constant-velocity model).", 1e-4, 1000.0),
    _p("angular_accel_noise_radps2", 6.0, "White-noise angular acceleration (constant-velocity model).", 1e-4, 1000.0),
    _p("initial_velocity_sigma_mps", 0.5, "Prior standard deviation on the initial linear velocity.", 1e-4, 100.0),
    _p("initial_angular_velocity_sigma_radps", 1.0, "Prior standard deviation on the initial angular velocity.", 1e-4, 100.0),
    _p("max_dt_s", 0.5, "Without a control, a longer gap between frames is one the constant-velocity model cannot bridge: it is clamped to this, the velocity restarts at rest and the frame is tracked as after a gap (recovery if doubtful).", 1e-3, 100.0),
    _p("control_max_dt_s", 1.0, "A control (IMU or odometry) carries the prediction across a gap between frames up to this long (dropped frames, a node falling behind); the velocity after such a gap is the IMU's. Longer gaps are treated as max_dt_s gaps. Chosen, not fitted: above the longest gap seen (the node at rate 1 on 2 cores, simulated V1_02 flight: every lost run had started at a 0.55-0.85 s gap that fell back to constant velocity; README 'EuRoC / drone'); the control's own covariance grows with the gap and widens the tracker's prior.", 1e-3, 100.0),
)


class ConfigBase:
    """Validation, (de)serialisation and copying shared by the configuration dataclasses.

    Subclasses set ``SPECS`` (their parameter specs) and ``IGNORED`` (names accepted
    and dropped, e.g. ``use_sim_time`` or another layer's parameters)."""

    SPECS: Tuple[ParamSpec, ...] = ()
    IGNORED: frozenset = frozenset({"use_sim_time"})

    @classmethod
    def from_dict(cls, values: Optional[Dict[str, Any]] = None, *, strict: bool = True):
        values = dict(values or {})
        names = {p.name for p in cls.SPECS}
        unknown = sorted(set(values) - names - set(cls.IGNORED))
        if unknown and strict:
            raise ConfigError(f"unknown parameter(s): {', '.join(unknown)}")
        cfg = cls(**{p.name: p.check(values[p.name] if p.name in values else p.default) for p in cls.SPECS})
        cfg._check_relations()
        return cfg

    def replace(self, **changes):
        d = self.to_dict()
        d.update(changes)
        return type(self).from_dict(d)

    def to_dict(self) -> Dict[str, Any]:
        return {p.name: getattr(self, p.name) for p in self.SPECS}

    def _check_relations(self) -> None:
        pass


def make_config_class(name: str, specs: Sequence[ParamSpec], base: type = ConfigBase, doc: str = "") -> type:
    """A frozen dataclass with one field per spec (defaults from the specs), deriving from ``base``."""
    fields_ = []
    for p in specs:
        d = p.default
        if isinstance(d, list):
            fields_.append((p.name, list, field(default_factory=lambda d=d: list(d))))
        else:
            fields_.append((p.name, type(d), field(default=d)))
    cls = dataclasses.make_dataclass(name, fields_, bases=(base,), frozen=True, namespace={"SPECS": tuple(specs)})
    cls.__doc__ = doc or cls.__doc__
    return cls


class _FilterChecks(ConfigBase):
    def _check_relations(self) -> None:
        if self.depth_min_m >= self.depth_max_m:
            raise ConfigError("depth_min_m must be smaller than depth_max_m")
        if self.truncation_m < 2 * self.voxel_size_m:
            raise ConfigError("truncation_m must be at least two voxels (2 * voxel_size_m)")
        if self.occupancy_min_z_m >= self.occupancy_max_z_m:
            raise ConfigError(
                f"occupancy_min_z_m ({self.occupancy_min_z_m}) must be smaller than occupancy_max_z_m "
                f"({self.occupancy_max_z_m}): the occupancy height band would be empty")


FilterConfig = make_config_class(
    "FilterConfig", FILTER_PARAMS, _FilterChecks,
    "Validated, immutable configuration of :class:`prism_ros.core.filter.PrismFilter` (the "
    ":data:`FILTER_PARAMS`). Build with :meth:`from_dict`; other layers' parameters are refused "
    "unless ``strict=False``.")
FilterConfig.__module__ = __name__
