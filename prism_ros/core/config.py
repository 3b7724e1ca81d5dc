"""The filter's own configuration: declared parameters (:data:`FILTER_PARAMS`) and the immutable :class:`FilterConfig`.

The core knows nothing of the node's frames, QoS or services; :data:`prism_ros.config.PARAMS` is these specs followed by
the pipeline's and the node's.  Units are in the names: ``_m`` metres, ``_s`` seconds, ``_hz``, ``_deg``, ``_rad``,
``_mps`` m/s, ``_mps2`` m/s^2, ``_radps`` rad/s, ``_radps2`` rad/s^2, ``_per_m`` 1/m, ``_px`` pixels.  A description
says what the parameter does, its unit and at most a short provenance (at most 200 characters: ``ros2 param describe``
prints it); measurements belong in docs/ (docs/design.md, "Parameters: provenance").

Over 500 lines: it is the filter's parameter table, one declaration per parameter, kept in one place.
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
    """One declared parameter.  ``scope``: ``core`` (the filter, :class:`FilterConfig`), ``pipeline`` (controls,
    offline tools and node alike) or ``node`` (the ROS node's wiring); ``runtime``: it may change while the node runs.
    """

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
    _p("voxel_size_m", 0.02, "Edge length of one TSDF voxel (m).", 0.004, 0.25),
    _p(
        "truncation_m",
        0.08,
        "TSDF truncation band tau (m): observations further than tau in front of a surface are clipped to tau; voxels "
        "more than tau behind it are not updated. At least two voxels.",
        0.01,
        1.0,
    ),
    _p(
        "map_initial_blocks",
        16384,
        "Voxel blocks (8^3 voxels each) allocated up front; the map grows on demand beyond this.",
        256,
        4_000_000,
    ),
    _p(
        "map_prior_sigma_m",
        0.5,
        "Standard deviation (m) of the broad Gaussian prior on the SDF of an unobserved voxel.",
        0.01,
        100.0,
    ),
    _p(
        "map_min_sigma_m",
        0.0005,
        "Floor (m) on a voxel's fused SDF standard deviation (a precision cap), so the map can still change.",
        0.0,
        0.1,
    ),
    _p(
        "map_model_sigma_m",
        0.003,
        "Systematic SDF error (m) that averaging cannot remove (pose drift, surface model); added in quadrature to "
        "every reported voxel sigma.",
        0.0,
        0.5,
    ),
    _p(
        "map_distance_sigma_ratio",
        0.25,
        "Observation sigma grows by this fraction of the distance to the surface (projective SDF error). Fitted on the "
        "synthetic sequence (map 2-sigma coverage about 0.95).",
        0.0,
        10.0,
    ),
    _p(
        "integrate_rate_hz",
        10.0,
        "Fuse depth into the map at most this often (Hz; 0: every tracked frame); frames in between are tracked but "
        "not fused. Chosen on the simulated V1_02 flight and 7-Scenes redkitchen 0-599.",
        0.0,
        1000.0,
    ),
    _p(
        "map_max_observations",
        200,
        "Voxel observation counts saturate here (also used as the render confidence).",
        1,
        65535,
    ),
    _p(
        "occupancy_min_z_m",
        0.1,
        "Bottom (m, world z up) of the height band that ~/occupancy and the free-space layer cover; 0.1 keeps the "
        "floor out. Must be below occupancy_max_z_m.",
        -100.0,
        100.0,
    ),
    _p(
        "occupancy_max_z_m",
        1.5,
        "Top (m, world z up) of the occupancy height band (a robot up to 1.5 m tall).",
        -100.0,
        100.0,
    ),
    _p(
        "occupancy_free_pixel_stride",
        16,
        "Free space is carved along the ray of every n-th depth pixel (both directions), within the height band; 0 "
        "disables the free-space layer. 16 at 640x480: 1200 rays.",
        0,
        64,
    ),
    _p(
        "occupancy_free_max_bricks",
        65536,
        "Memory bound of the free-space layer, in bricks (one per map block in the band, 128 B each). When full, the "
        "least recently observed half is forgotten (reads unknown).",
        16,
        16_000_000,
    ),
    # --- sensor ----------------------------------------------------------------
    _p("depth_min_m", 0.2, "Depth readings below this (m) are invalid.", 0.0, 10.0),
    _p("depth_max_m", 4.0, "Depth readings above this (m) are invalid.", 0.1, 100.0),
    _p(
        "depth_noise_c0_m",
        0.0012,
        "Depth noise model sigma_z(z) = c0 + c2 (z - z0)^2: the constant term c0 (m). Defaults: Nguyen et al. 2012, "
        "Kinect v1.",
        0.0,
        0.5,
    ),
    _p("depth_noise_c2_per_m", 0.0019, "Depth noise model: the quadratic coefficient c2 (1/m).", 0.0, 1.0),
    _p("depth_noise_z0_m", 0.4, "Depth noise model: the offset z0 (m).", 0.0, 10.0),
    _p(
        "intensity_noise_sigma",
        0.04,
        "Standard deviation of the image intensity noise (intensities in [0, 1]) in the photometric residuals.",
        1e-4,
        1.0,
    ),
    _p(
        "min_valid_depth_fraction",
        0.01,
        "Frames with less than this fraction of valid depth pixels are refused (covered lens, out of range); the "
        "filter state and the map are untouched.",
        0.0,
        1.0,
    ),
    _p(
        "camera_readout_s",
        0.0,
        "Rolling shutter: rows are read top to bottom over this time (s), the middle one at the stamp; frames are "
        "re-sampled to their stamp with the latest velocity. 0: a global shutter.",
        0.0,
        0.1,
    ),
    # --- tracking --------------------------------------------------------------
    _p("track_levels", 3, "Image pyramid levels the tracker uses, coarse to fine.", 1, 5),
    _p(
        "track_finest_level",
        1,
        "Finest pyramid level the tracker uses (0 = full resolution, 1 = half, ...). The map is always fused at full "
        "resolution.",
        0,
        4,
    ),
    _p(
        "track_max_iterations",
        8,
        "Gauss-Newton iterations at the coarsest level; each finer level uses half as many (at least 2).",
        1,
        100,
    ),
    _p(
        "track_convergence_eps",
        1e-3,
        "A pyramid level's Gauss-Newton ends when the update norm (m, rad) falls below this; the finest level's "
        "Laplace Hessian is that last pass's. Chosen on the V1_02 flight and 7-Scenes.",
        0.0,
        1.0,
    ),
    _p(
        "render_level",
        2,
        "Pyramid level at which the map is raycast for tracking (2: quarter resolution, 160x120 for 640x480); finer "
        "tracking levels associate projectively into it.",
        0,
        4,
    ),
    _p(
        "render_reuse",
        True,
        "Track a frame against the previous frame's raycast while the map is unchanged (nothing fused since, previous "
        "frame tracked, no gap) instead of raycasting again. False: raycast every frame.",
    ),
    _p(
        "render_guide_margin_m",
        0.3,
        "Depth-guided raycasting: rays first march within this margin (m) of the frame's measured depth, the whole ray "
        "only where no surface is found there. 0 disables it.",
        0.0,
        10.0,
    ),
    _p("icp_max_distance_m", 0.1, "Reject point-to-plane associations further apart than this (m).", 0.001, 2.0),
    _p(
        "icp_max_distance_sigmas",
        3.0,
        "The association gate widens to this many standard deviations of the combined depth and map noise where that "
        "exceeds icp_max_distance_m (far stereo depth). 0: fixed gate.",
        0.0,
        100.0,
    ),
    _p(
        "icp_max_normal_angle_deg",
        45.0,
        "Reject associations whose normals disagree by more than this (deg).",
        1.0,
        90.0,
    ),
    _p("use_photometric", True, "Add the photometric (intensity) residuals to the tracker."),
    _p(
        "photometric_min_gradient",
        0.002,
        "Pixels whose rendered intensity gradient is below this (intensity units per pixel) carry no photometric "
        "residual.",
        0.0,
        1.0,
    ),
    _p("huber_k", 1.345, "Huber threshold on the noise-normalised residuals (standard deviations).", 0.1, 100.0),
    _p(
        "laplace_patch_px",
        9.0,
        "Full-resolution pixels that count as one independent measurement in the Laplace pose covariance (neighbouring "
        "pixels are correlated). Fitted on synthetic seed 0.",
        1.0,
        10000.0,
    ),
    _p(
        "model_error_patch_px",
        12000.0,
        "Model-error term of the tracker's covariance (weights data against the prior; not reported): pixels "
        "over which residual error beyond the noise model is correlated, per unit of excess residual level.",
        0.0,
        1.0e7,
    ),
    _p(
        "model_error_residual_level",
        0.5,
        "Residual level s2 (Huber-weighted chi2 per residual over its expectation) that the noise model explains; the "
        "excess scales the model-error term. Set between synthetic and 7-Scenes.",
        0.0,
        100.0,
    ),
    _p(
        "tracking_min_inlier_ratio",
        0.35,
        "Tracking is lost when fewer than this fraction of the valid pixels with a normal that the map covers are ICP "
        "inliers (for a recovered track: of all valid pixels with a normal).",
        0.0,
        1.0,
    ),
    _p(
        "tracking_max_prior_mahalanobis2",
        100.0,
        "A tracked pose farther than this squared Mahalanobis distance from the prediction is a jump the dynamics "
        "cannot explain, and a failure (chi2_6 tail 1e-19 at 100).",
        1.0,
        1e6,
    ),
    # --- recovery --------------------------------------------------------------
    _p(
        "recovery_max_starts",
        2,
        "Starting poses recovery tries per lost frame: the last good pose, then in turn the prediction and 6 "
        "perturbations over the next lost frames. Bounds a lost frame's cost.",
        1,
        8,
    ),
    _p(
        "recovery_distance_factors",
        [8.0, 2.0],
        "Recovery anneals the association distance over these multiples of icp_max_distance_m, wide to narrow, "
        "re-rendering at each stage. Set on 7-Scenes redkitchen.",
        1.0,
        100.0,
        length=2,
    ),
    _p(
        "recovery_prior_sigma_m",
        0.5,
        "Translation standard deviation (m) of the broad prior recovery tracks under; also the relocalisation prior in "
        "a loaded map. Set on 7-Scenes redkitchen.",
        1e-3,
        100.0,
    ),
    _p(
        "recovery_prior_sigma_rad",
        0.5,
        "Rotation standard deviation (rad) of the broad prior recovery tracks under. Set on 7-Scenes redkitchen.",
        1e-3,
        10.0,
    ),
    _p(
        "recovery_perturbation_rad",
        0.21,
        "Recovery's extra starting points look this far (rad) left, right, up and down from the last good pose (0.21 "
        "rad = 12 deg). Set on 7-Scenes redkitchen.",
        0.0,
        3.2,
    ),
    _p(
        "recovery_perturbation_m",
        0.15,
        "Recovery's extra starting points step this far (m) forward and back from the last good pose. Set on 7-Scenes "
        "redkitchen.",
        0.0,
        10.0,
    ),
    _p(
        "recovery_max_control_mahalanobis2",
        900.0,
        "With a control right after a tracked frame, a recovered pose farther than this squared Mahalanobis distance "
        "from the control's prediction is refused (frame lost, not fused).",
        1.0,
        1e8,
    ),
    _p(
        "recovery_same_start",
        0.01,
        "Starting points closer than this (norm of the SE(3) log: m, rad) count as one.",
        0.0,
        1.0,
    ),
    _p(
        "gap_trust_inlier_ratio",
        0.6,
        "After a gap or a doubtful frame, plain tracking is trusted only with this inlier ratio; else recovery runs "
        "and the track with more inliers is kept. Set on 7-Scenes redkitchen.",
        0.0,
        1.0,
    ),
    _p(
        "doubt_inlier_drop",
        0.75,
        "A tracked frame whose inlier ratio falls below this fraction of the running average (and below "
        "gap_trust_inlier_ratio) is doubtful: recovery runs to compare. Set on 7-Scenes.",
        0.0,
        1.0,
    ),
    _p(
        "inlier_average_weight",
        0.1,
        "Weight of a new tracked frame in the running average of inlier ratios (doubt_inlier_drop).",
        0.0,
        1.0,
    ),
    _p(
        "lost_pose_sigma_m",
        0.05,
        "While tracking is lost, the pose is the prediction with this much translation sigma (m) added per frame (also "
        "the recovery refinement's prior).",
        0.0,
        10.0,
    ),
    _p(
        "lost_pose_sigma_rad",
        0.05,
        "While tracking is lost, the pose is the prediction with this much rotation sigma (rad) added per frame (also "
        "the recovery refinement's prior).",
        0.0,
        3.2,
    ),
    # --- dynamics --------------------------------------------------------------
    _p(
        "accel_noise_mps2", 4.0, "White-noise linear acceleration (m/s^2) of the constant-velocity model.", 1e-4, 1000.0
    ),
    _p(
        "angular_accel_noise_radps2",
        6.0,
        "White-noise angular acceleration (rad/s^2) of the constant-velocity model.",
        1e-4,
        1000.0,
    ),
    _p(
        "initial_velocity_sigma_mps", 0.5, "Prior standard deviation (m/s) of the initial linear velocity.", 1e-4, 100.0
    ),
    _p(
        "initial_angular_velocity_sigma_radps",
        1.0,
        "Prior standard deviation (rad/s) of the initial angular velocity.",
        1e-4,
        100.0,
    ),
    _p(
        "max_dt_s",
        0.5,
        "Without a control, a longer gap (s) between frames cannot be bridged: dt is clamped to this, the velocity "
        "restarts at rest and the frame is tracked as after a gap.",
        1e-3,
        100.0,
    ),
    _p(
        "control_max_dt_s",
        1.0,
        "A control (IMU or odometry) carries the prediction across gaps between frames up to this long (s); the "
        "velocity after such a gap is the control's. Longer gaps count as max_dt_s gaps.",
        1e-3,
        100.0,
    ),
)


class ConfigBase:
    """Validation, (de)serialisation and copying of the configuration dataclasses; subclasses set ``SPECS`` and
    ``IGNORED`` (names accepted and dropped, e.g. ``use_sim_time`` or another layer's parameters).
    """

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
                f"({self.occupancy_max_z_m}): the occupancy height band would be empty"
            )


FilterConfig = make_config_class(
    "FilterConfig",
    FILTER_PARAMS,
    _FilterChecks,
    "Validated, immutable configuration of :class:`prism_ros.core.filter.PrismFilter` (the "
    ":data:`FILTER_PARAMS`). Build with :meth:`from_dict`; other layers' parameters are refused "
    "unless ``strict=False``.",
)
FilterConfig.__module__ = __name__
