"""One source of truth for prism_ros configuration.

Every parameter is declared once, here, with its default, a description and a
range.  The offline CLI builds a :class:`PrismConfig` from ``config/prism.yaml``
(the ``/**: ros__parameters:`` layout), and the ROS node declares exactly the
same parameters from :data:`PARAMS` (descriptions and ranges included).  A test
checks that the YAML file and these declarations agree.

Units are in the names: ``_m`` metres, ``_s`` seconds, ``_hz`` hertz, ``_deg``
degrees, ``_mps2`` m/s^2, ``_radps2`` rad/s^2, ``_px`` pixels.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import yaml

__all__ = [
    "ParamSpec",
    "PARAMS",
    "PrismConfig",
    "ConfigError",
    "default_config_path",
    "load_yaml_params",
]


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    lo: Optional[float] = None  # inclusive numeric range (ints and floats)
    hi: Optional[float] = None
    choices: Optional[Tuple[str, ...]] = None  # allowed strings
    length: Optional[int] = None  # fixed length for array parameters
    scope: str = "core"  # "core" (filter) or "node" (ROS node only)

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
            return f"[{self.lo}, {self.hi}]"
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
            raise ConfigError(
                f"parameter '{self.name}': expected {kind.__name__}, got {value!r}"
            ) from None
        if kind in (int, float):
            if v != v or (self.lo is not None and not (self.lo <= v <= self.hi)):
                raise ConfigError(
                    f"parameter '{self.name}' = {value!r} is out of range {self.range_text()}"
                )
        if self.choices and v not in self.choices:
            raise ConfigError(
                f"parameter '{self.name}' = {value!r} must be {self.range_text()}"
            )
        if kind is list:
            if self.length is not None and len(v) != self.length:
                raise ConfigError(
                    f"parameter '{self.name}' needs {self.length} values, got {len(v)}"
                )
            if any(x != x for x in v):
                raise ConfigError(f"parameter '{self.name}' contains NaN")
        return v


def _p(name, default, description, lo=None, hi=None, *, choices=None, length=None, scope="core"):
    return ParamSpec(name, default, description, lo, hi, choices, length, scope)


#: All parameters, in the order they appear in config/prism.yaml.
PARAMS: Tuple[ParamSpec, ...] = (
    # --- map -----------------------------------------------------------------
    _p("voxel_size_m", 0.02, "Edge length of one TSDF voxel.", 0.004, 0.25),
    _p("truncation_m", 0.08, "TSDF truncation band tau; observations further than tau in front of the surface are clipped to tau, voxels more than tau behind it are not updated.", 0.01, 1.0),
    _p("map_initial_blocks", 16384, "Voxel blocks (8^3 voxels) allocated up front; the map grows on demand beyond this.", 256, 4_000_000),
    _p("map_prior_sigma_m", 0.5, "Standard deviation of the broad Gaussian prior on the SDF of an unobserved voxel.", 0.01, 100.0),
    _p("map_min_sigma_m", 0.0005, "Floor on a voxel's fused SDF standard deviation (precision cap) so the map can still change.", 0.0, 0.1),
    _p("map_model_sigma_m", 0.003, "Systematic SDF error (pose drift, surface model) that averaging cannot remove; added in quadrature to every reported voxel sigma.", 0.0, 0.5),
    _p("map_distance_sigma_ratio", 0.25, "Observation sigma grows by this fraction of the distance to the surface (planar / projective approximation error).", 0.0, 10.0),
    _p("map_max_observations", 200, "Voxel observation counts saturate here (also used as the render confidence).", 1, 65535),
    _p("occupancy_min_z_m", 0.1, "Bottom of the world-frame height band that ~/occupancy and the free-space layer cover (z up, REP-103 world; 0.1 m keeps the floor out). Must be below occupancy_max_z_m.", -100.0, 100.0),
    _p("occupancy_max_z_m", 1.5, "Top of the occupancy height band (a robot up to 1.5 m tall).", -100.0, 100.0),
    _p("occupancy_free_pixel_stride", 8, "Free space is carved along the rays of every n-th pixel (both directions) of the depth image, into the height band (0 disables the free-space layer). 8 at 640x480 = 4800 rays, spaced 2.7 cm at 2 m, finer than the 2-voxel free-space voxels; measured 3.4 ms median per frame on 7-Scenes redkitchen frames 0-299 (noisy, shared 2-core machine).", 0, 64),
    _p("occupancy_free_max_bricks", 65536, "Memory bound of the free-space layer: at most this many bricks (one per map block in the band, 128 B each, 8 MB at the default; ~1700 m^2 of floor with a 1.4 m band at 2 cm voxels); when full the least recently observed half is forgotten (reads unknown).", 16, 16_000_000),
    # --- sensor ----------------------------------------------------------------
    _p("depth_min_m", 0.2, "Depth readings below this are invalid.", 0.0, 10.0),
    _p("depth_max_m", 4.0, "Depth readings above this are invalid.", 0.1, 100.0),
    _p("depth_noise_c0_m", 0.0012, "Depth noise model sigma_z(z) = c0 + c2 (z - z0)^2: constant term (Nguyen et al. 2012 for Kinect v1).", 0.0, 0.5),
    _p("depth_noise_c2_per_m", 0.0019, "Depth noise model: quadratic coefficient c2.", 0.0, 1.0),
    _p("depth_noise_z0_m", 0.4, "Depth noise model: offset z0.", 0.0, 10.0),
    _p("intensity_noise_sigma", 0.04, "Standard deviation of image intensity noise (intensities in [0, 1]) for the photometric residuals.", 1e-4, 1.0),
    # --- tracking --------------------------------------------------------------
    _p("track_levels", 3, "Image pyramid levels used by the tracker (coarse to fine).", 1, 5),
    _p("track_finest_level", 1, "Finest pyramid level the tracker uses (0 = full resolution, 1 = half, ...). The map is always fused at full resolution.", 0, 4),
    _p("track_max_iterations", 8, "Gauss-Newton iterations at the coarsest level; each finer level uses half as many (at least 2).", 1, 100),
    _p("track_convergence_eps", 1e-5, "Stop Gauss-Newton when the update norm falls below this.", 0.0, 1.0),
    _p("render_level", 2, "Pyramid level at which the map is raycast for tracking (2 = quarter resolution, 160x120 for a 640x480 camera; tracking data at finer levels associate projectively into it).", 0, 4),
    _p("render_guide_margin_m", 0.3, "Depth-guided raycasting: rays first march only within this margin of the current frame's measured depth (0 disables; the full ray is marched where no surface is found).", 0.0, 10.0),
    _p("icp_max_distance_m", 0.1, "Reject point-to-plane associations further apart than this.", 0.001, 2.0),
    _p("icp_max_normal_angle_deg", 45.0, "Reject associations whose normals disagree by more than this.", 1.0, 90.0),
    _p("use_photometric", True, "Add the photometric (intensity) residuals to the tracker.", scope="core"),
    _p("huber_k", 1.345, "Huber threshold on noise-normalised residuals.", 0.1, 100.0),
    _p("laplace_patch_px", 9.0, "Pixels (at full resolution) that count as one independent measurement in the Laplace covariance; corrects for correlated neighbouring pixels (tuned so pose_coverage_95 is about 0.95 on the synthetic sequence, whose noise is correlated over 4x4 pixels).", 1.0, 10000.0),
    _p("tracking_min_inlier_ratio", 0.35, "Tracking is flagged as lost when fewer than this fraction of valid pixels are inliers.", 0.0, 1.0),
    _p("recovery_max_starts", 2, "When tracking fails, recovery re-tracks (coarse levels, wide association) from at most this many starting poses per frame: the last good pose, then the prediction and 6 perturbations of the last good pose in turn over the following lost frames. Bounds the cost of a lost frame to about this many normal steps; relocalisation in a loaded map tries all 8 at once.", 1, 8),
    # --- dynamics --------------------------------------------------------------
    _p("accel_noise_mps2", 4.0, "White-noise linear acceleration (constant-velocity model).", 1e-4, 1000.0),
    _p("angular_accel_noise_radps2", 6.0, "White-noise angular acceleration (constant-velocity model).", 1e-4, 1000.0),
    _p("initial_velocity_sigma_mps", 0.5, "Prior standard deviation on the initial linear velocity.", 1e-4, 100.0),
    _p("initial_angular_velocity_sigma_radps", 1.0, "Prior standard deviation on the initial angular velocity.", 1e-4, 100.0),
    _p("max_dt_s", 0.5, "Longer gaps between frames are clamped to this in the motion model.", 1e-3, 100.0),
    # --- ROS node --------------------------------------------------------------
    _p("world_frame", "odom", "REP-105 frame the map and poses are expressed in.", scope="node"),
    _p("base_frame", "base_link", "REP-105 body frame of the robot; the published pose is this frame's.", scope="node"),
    _p("camera_frame", "camera_color_optical_frame", "Optical frame of the colour camera (REP-103 optical convention: z forward, x right, y down).", scope="node"),
    _p("T_base_camera_xyz_m", [0.0, 0.0, 0.0], "Translation of the camera optical frame in the base frame.", length=3, scope="node"),
    _p("T_base_camera_rpy_deg", [-90.0, 0.0, -90.0], "Rotation (fixed-axis roll, pitch, yaw) of the camera optical frame in the base frame; the default is the usual REP-103 optical-to-body rotation.", length=3, scope="node"),
    _p("publish_tf", True, "Publish world->base TF when tf2_msgs is available.", scope="node"),
    _p("sensor_qos", "sensor_data", "QoS profile of the image, camera_info, IMU and odometry subscriptions.", choices=("sensor_data", "reliable"), scope="node"),
    _p("sync_slop_s", 0.02, "Maximum stamp difference for pairing a colour and a depth image.", 0.0, 1.0, scope="node"),
    _p("queue_size", 2, "Bounded queue of synchronised frames waiting for the filter; the oldest frame is dropped when full.", 1, 100, scope="node"),
    _p("control_mode", "none", "Motion control fed to the dynamics: none (constant velocity), imu or odometry.", choices=("none", "imu", "odometry"), scope="node"),
    _p("T_base_imu_xyz_m", [0.0, 0.0, 0.0], "Translation of the IMU frame (frame of the imu messages) in the base frame (control_mode imu).", length=3, scope="node"),
    _p("T_base_imu_rpy_deg", [0.0, 0.0, 0.0], "Rotation (fixed-axis roll, pitch, yaw) of the IMU frame in the base frame; the default puts the IMU at the base frame.", length=3, scope="node"),
    _p("imu_gyro_noise_density", 1.6968e-04, "Gyroscope white-noise density (rad/s/sqrt(Hz); EuRoC sensor.yaml gyroscope_noise_density) for the IMU control covariance.", 1e-7, 1.0, scope="node"),
    _p("imu_gyro_random_walk", 1.9393e-05, "Gyroscope bias random walk (rad/s^2/sqrt(Hz); EuRoC gyroscope_random_walk).", 0.0, 1.0, scope="node"),
    _p("imu_accel_noise_density", 2.0e-03, "Accelerometer white-noise density (m/s^2/sqrt(Hz); EuRoC accelerometer_noise_density).", 1e-6, 10.0, scope="node"),
    _p("imu_accel_random_walk", 3.0e-03, "Accelerometer bias random walk (m/s^3/sqrt(Hz); EuRoC accelerometer_random_walk).", 0.0, 10.0, scope="node"),
    _p("imu_gyro_bias_sigma_radps", 2.0e-03, "Standard deviation of the gyro bias left after the static-start estimate.", 0.0, 1.0, scope="node"),
    _p("imu_accel_bias_sigma_mps2", 5.0e-02, "Standard deviation of the (unestimated) accelerometer bias.", 0.0, 10.0, scope="node"),
    _p("imu_init_window_s", 1.0, "IMU samples within this window around the first integrated frame give gravity (in the filter's world) and the gyro bias; the sensor should be still then.", 0.05, 10.0, scope="node"),
    _p("map_publish_rate_hz", 1.0, "Rate of the ~/map_cloud point cloud.", 0.0, 100.0, scope="node"),
    _p("cloud_color_mode", "sigma", "Colour of ~/map_cloud points: sigma (uncertainty colormap) or rgb (true colour).", choices=("sigma", "rgb"), scope="node"),
    _p("cloud_max_sdf_m", 0.01, "Voxels with |SDF mean| below this are published in ~/map_cloud.", 0.0, 1.0, scope="node"),
    _p("path_max_length", 10000, "Poses kept in ~/path (oldest dropped).", 1, 1_000_000, scope="node"),
    _p("save_map_dir", "/tmp/prism_maps", "Directory ~/save_map writes into.", scope="node"),
    _p("save_map_name", "", "File name ~/save_map writes in save_map_dir (a plain name; '..', '/' and symlinks out of the directory are refused); empty: prism_map_<date>-<time>_t<stamp>.npz.", scope="node"),
    _p("load_map_path", "", "Map (.npz from ~/save_map) loaded when the filter starts and by ~/load_map; its voxel size and truncation must match. Empty: start with an empty map.", scope="node"),
    _p("occupancy_resolution_m", 0.0, "Cell size of ~/occupancy; 0 = the voxel size. A coarser cell takes the max over the voxel columns in it; finer than a voxel is refused.", 0.0, 10.0, scope="node"),
    _p("occupancy_publish_rate_hz", 0.5, "Rate of the ~/occupancy grid (nav_msgs/OccupancyGrid, transient local); 0 disables it.", 0.0, 100.0, scope="node"),
    _p("occupancy_max_columns_per_update", 2048, "Map columns (8x8 voxels) whose band maximum is recomputed per ~/occupancy update; the rest wait for the next one (bounds the cost on a huge map).", 1, 10_000_000, scope="node"),
    _p("occupancy_max_cells", 4_000_000, "Largest ~/occupancy grid (cells); a larger map is cropped to a square window around the camera.", 1, 100_000_000, scope="node"),
    _p("mesh_publish_rate_hz", 0.2, "Rate of the ~/mesh MarkerArray (one TRIANGLE_LIST per block, transient local); 0 disables it.", 0.0, 100.0, scope="node"),
    _p("mesh_color_mode", "sigma", "Colour of ~/mesh vertices: sigma (the ~/map_cloud uncertainty colormap) or rgb (true colour).", choices=("sigma", "rgb"), scope="node"),
    _p("mesh_max_blocks_per_update", 1024, "Blocks re-meshed (marching cubes) per ~/mesh update; the rest wait for the next one (bounds the cost on a huge map: ~0.11 ms a block measured on 7-Scenes redkitchen, noisy shared 2-core machine, so ~110 ms an update, plus the Marker assembly of the re-meshed blocks).", 1, 10_000_000, scope="node"),
    _p("diagnostics_period_s", 5.0, "Period of the throttled timing / latency / drop-rate log.", 0.1, 3600.0, scope="node"),
)

_BY_NAME: Dict[str, ParamSpec] = {p.name: p for p in PARAMS}


def _make_config_class():
    fields_ = []
    for p in PARAMS:
        d = p.default
        if isinstance(d, list):
            fields_.append((p.name, list, field(default_factory=lambda d=d: list(d))))
        else:
            fields_.append((p.name, type(d), field(default=d)))
    return dataclasses.make_dataclass("PrismConfig", fields_, frozen=True)


_PrismConfigBase = _make_config_class()


class PrismConfig(_PrismConfigBase):  # type: ignore[misc, valid-type]
    """Validated, immutable configuration. Build with :meth:`from_dict` / :meth:`from_yaml`."""

    @classmethod
    def from_dict(cls, values: Optional[Dict[str, Any]] = None, *, strict: bool = True) -> "PrismConfig":
        values = dict(values or {})
        unknown = sorted(set(values) - set(_BY_NAME) - {"use_sim_time"})
        if unknown and strict:
            raise ConfigError(f"unknown parameter(s): {', '.join(unknown)}")
        kw = {}
        for p in PARAMS:
            kw[p.name] = p.check(values[p.name]) if p.name in values else p.check(p.default)
        cfg = cls(**kw)
        cfg._check_relations()
        return cfg

    @classmethod
    def from_yaml(cls, path: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None) -> "PrismConfig":
        values = load_yaml_params(path or default_config_path())
        values.update(overrides or {})
        return cls.from_dict(values)

    def replace(self, **changes) -> "PrismConfig":
        d = self.to_dict()
        d.update(changes)
        return PrismConfig.from_dict(d)

    def to_dict(self) -> Dict[str, Any]:
        return {p.name: getattr(self, p.name) for p in PARAMS}

    def _check_relations(self) -> None:
        if self.depth_min_m >= self.depth_max_m:
            raise ConfigError("depth_min_m must be smaller than depth_max_m")
        if self.truncation_m < 2 * self.voxel_size_m:
            raise ConfigError("truncation_m must be at least two voxels (2 * voxel_size_m)")
        if self.occupancy_min_z_m >= self.occupancy_max_z_m:
            raise ConfigError(
                f"occupancy_min_z_m ({self.occupancy_min_z_m}) must be smaller than occupancy_max_z_m "
                f"({self.occupancy_max_z_m}): the occupancy height band would be empty")
        if 0.0 < self.occupancy_resolution_m < self.voxel_size_m:
            raise ConfigError(
                f"occupancy_resolution_m ({self.occupancy_resolution_m}) must be 0 (the voxel size) or at least "
                f"voxel_size_m ({self.voxel_size_m}): a cell finer than a voxel adds no information")


def default_config_path() -> str:
    """config/prism.yaml of this package: source tree, pip install or colcon install."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [
        os.path.join(here, "..", "config", "prism.yaml"),  # source tree / editable
        os.path.join(here, "config", "prism.yaml"),  # pip package data
    ]
    try:  # colcon / ament install
        from ament_index_python.packages import get_package_share_directory  # type: ignore

        candidates.append(os.path.join(get_package_share_directory("prism_ros"), "config", "prism.yaml"))
    except Exception:
        pass
    for c in candidates:
        if os.path.isfile(c):
            return os.path.normpath(c)
    raise FileNotFoundError("config/prism.yaml not found next to the prism_ros package")


def load_yaml_params(path: str) -> Dict[str, Any]:
    """Read a ROS 2 params file (``<node or /**>: ros__parameters: {...}``) or a flat mapping."""
    with open(path, "r", encoding="utf-8") as f:
        doc = yaml.safe_load(f) or {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping")
    out: Dict[str, Any] = {}
    found = False
    for key, val in doc.items():
        if isinstance(val, dict) and "ros__parameters" in val:
            found = True
            out.update(val["ros__parameters"] or {})
    if not found:
        out = dict(doc)
    return out
