"""The package's one declared parameter table, :data:`PARAMS`, and :class:`PrismConfig`.

Every parameter is declared once with its default, description, range and layer (``ParamSpec.scope``):
``core`` (:data:`prism_ros.core.config.FILTER_PARAMS`, read into
:class:`prism_ros.core.config.FilterConfig`), ``pipeline`` (the motion controls) or ``node`` (the ROS node's
wiring).  The offline CLI builds a :class:`PrismConfig` from ``config/prism.yaml`` (``/**: ros__parameters:``),
the node declares exactly these parameters (:mod:`prism_ros.ros.params`), and
``python -m prism_ros.tools.params_table --write`` regenerates ``config/prism.yaml`` and docs/parameters.md.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

import yaml

from prism_ros.core.backend.config import BACKEND_PARAMS
from prism_ros.core.config import FILTER_PARAMS, ConfigBase, ConfigError, FilterConfig, ParamSpec, make_config_class
from prism_ros.core.config import spec as _p

__all__ = [
    "ParamSpec",
    "PARAMS",
    "PIPELINE_PARAMS",
    "NODE_PARAMS",
    "PrismConfig",
    "ConfigError",
    "default_config_path",
    "load_yaml_params",
]

#: Motion controls fed to the filter (scope ``pipeline``).
PIPELINE_PARAMS: Tuple[ParamSpec, ...] = (
    _p(
        "control_mode",
        "none",
        "Motion control fed to the dynamics: none (constant velocity), imu or odometry.",
        choices=("none", "imu", "odometry"),
        scope="pipeline",
    ),
    _p(
        "imu_gyro_noise_density",
        1.6968e-04,
        "Gyroscope white-noise density (rad/s/sqrt(Hz)) of the IMU control covariance; EuRoC sensor.yaml "
        "gyroscope_noise_density.",
        1e-7,
        1.0,
        scope="pipeline",
    ),
    _p(
        "imu_gyro_random_walk",
        1.9393e-05,
        "Gyroscope bias random walk (rad/s^2/sqrt(Hz)); EuRoC gyroscope_random_walk.",
        0.0,
        1.0,
        scope="pipeline",
    ),
    _p(
        "imu_accel_noise_density",
        2.0e-03,
        "Accelerometer white-noise density (m/s^2/sqrt(Hz)); EuRoC accelerometer_noise_density.",
        1e-6,
        10.0,
        scope="pipeline",
    ),
    _p(
        "imu_accel_random_walk",
        3.0e-03,
        "Accelerometer bias random walk (m/s^3/sqrt(Hz)); EuRoC accelerometer_random_walk.",
        0.0,
        10.0,
        scope="pipeline",
    ),
    _p(
        "imu_gyro_bias_sigma_radps",
        2.0e-03,
        "Standard deviation (rad/s) of the gyro bias left after the static-start estimate.",
        0.0,
        1.0,
        scope="pipeline",
    ),
    _p(
        "imu_accel_bias_sigma_mps2",
        5.0e-02,
        "Standard deviation (m/s^2) of the (unestimated) accelerometer bias.",
        0.0,
        10.0,
        scope="pipeline",
    ),
    _p(
        "imu_init_window_s",
        1.0,
        "IMU samples within this window (s) around the first integrated frame give gravity and the gyro bias; the "
        "sensor should be still then.",
        0.05,
        10.0,
        scope="pipeline",
    ),
    _p(
        "imu_noise_density_scale",
        3.87,
        "Multiplier on the gyro and accelerometer noise densities in motion (rotor vibration). Fitted on half of the "
        "real EuRoC V1_02 flight, checked on the other half.",
        1.0,
        100.0,
        scope="pipeline",
    ),
    _p(
        "imu_rate_hz",
        200.0,
        "Declared IMU rate (Hz); a measured rate off by more than imu_rate_tolerance is reported (EuRoC ADIS16448: 200 "
        "Hz).",
        1.0,
        10000.0,
        scope="pipeline",
    ),
    _p(
        "imu_rate_tolerance",
        0.2,
        "Relative difference between the measured and the declared IMU rate that is reported.",
        0.01,
        1.0,
        scope="pipeline",
    ),
    _p(
        "imu_max_gap_s",
        0.025,
        "A longer gap (s) between IMU samples is reported and no IMU control is integrated across it (5 periods at 200 "
        "Hz).",
        0.001,
        10.0,
        scope="pipeline",
    ),
    _p(
        "imu_pose_alignment_s",
        1.0,
        "Moving start (init window not still): gravity and the gyro bias come from this much (s) of the filter's pose "
        "track instead.",
        0.2,
        10.0,
        scope="pipeline",
    ),
    _p(
        "imu_bias_window_s",
        2.0,
        "Sliding window (s) of filter poses for the online gyro and accelerometer bias refinement; 0 disables it.",
        0.0,
        60.0,
        scope="pipeline",
    ),
)

#: The ROS node's own parameters (scope ``node``).
NODE_PARAMS: Tuple[ParamSpec, ...] = (
    _p("world_frame", "odom", "REP-105 frame the map and poses are expressed in.", scope="node"),
    _p(
        "map_frame",
        "map",
        "REP-105 frame of the back end's optimised pose, path and global map (backend_enabled); map_frame -> "
        "world_frame carries its correction.",
        scope="node",
    ),
    _p("base_frame", "base_link", "REP-105 body frame of the robot; the published pose is this frame's.", scope="node"),
    _p(
        "camera_frame",
        "camera_color_optical_frame",
        "Optical frame of the colour camera (REP-103 optical convention: z forward, x right, y down).",
        scope="node",
    ),
    _p(
        "T_base_camera_xyz_m",
        [0.0, 0.0, 0.0],
        "Translation (m) of the camera optical frame in the base frame.",
        length=3,
        scope="node",
    ),
    _p(
        "T_base_camera_rpy_deg",
        [-90.0, 0.0, -90.0],
        "Rotation (fixed-axis roll, pitch, yaw; deg) of the camera optical frame in the base frame; the default is the "
        "usual REP-103 optical-to-body rotation.",
        length=3,
        scope="node",
    ),
    _p("publish_tf", True, "Publish world->base TF when tf2_msgs is available.", scope="node", runtime=True),
    _p(
        "sensor_qos",
        "sensor_data",
        "QoS profile of the image, camera_info, IMU and odometry subscriptions.",
        choices=("sensor_data", "reliable"),
        scope="node",
    ),
    _p(
        "sync_slop_s",
        0.02,
        "Maximum stamp difference (s) for pairing a colour and a depth image.",
        0.0,
        1.0,
        scope="node",
        runtime=True,
    ),
    _p(
        "queue_size",
        2,
        "Bounded queue of synchronised frames waiting for the filter; the oldest frame is dropped when full.",
        1,
        100,
        scope="node",
        runtime=True,
    ),
    _p(
        "T_base_imu_xyz_m",
        [0.0, 0.0, 0.0],
        "Translation (m) of the IMU frame (the imu messages' frame) in the base frame (control_mode imu).",
        length=3,
        scope="node",
    ),
    _p(
        "T_base_imu_rpy_deg",
        [0.0, 0.0, 0.0],
        "Rotation (fixed-axis roll, pitch, yaw; deg) of the IMU frame in the base frame; the default puts the IMU at "
        "the base frame.",
        length=3,
        scope="node",
    ),
    _p(
        "map_publish_rate_hz",
        1.0,
        "Rate (Hz) of the ~/map_cloud point cloud; 0 disables it.",
        0.0,
        100.0,
        scope="node",
        runtime=True,
    ),
    _p(
        "cloud_color_mode",
        "sigma",
        "Colour of ~/map_cloud points: sigma (uncertainty colormap) or rgb (true colour).",
        choices=("sigma", "rgb"),
        scope="node",
        runtime=True,
    ),
    _p(
        "cloud_max_sdf_m",
        0.01,
        "Voxels with |SDF mean| below this (m) are published in ~/map_cloud.",
        0.0,
        1.0,
        scope="node",
        runtime=True,
    ),
    _p("path_max_length", 10000, "Poses kept in ~/path (oldest dropped).", 1, 1_000_000, scope="node", runtime=True),
    _p("save_map_dir", "/tmp/prism_maps", "Directory ~/save_map writes into.", scope="node", runtime=True),
    _p(
        "save_map_name",
        "",
        "File name ~/save_map writes in save_map_dir (a plain name: '..', '/' and symlinks out of the directory are "
        "refused); empty: prism_map_<date>-<time>_t<stamp>.npz.",
        scope="node",
        runtime=True,
    ),
    _p(
        "load_map_path",
        "",
        "Map (.npz from ~/save_map) loaded when the filter starts and by ~/load_map; its voxel size and truncation "
        "must match. Empty: start with an empty map.",
        scope="node",
        runtime=True,
    ),
    _p(
        "occupancy_resolution_m",
        0.0,
        "Cell size (m) of ~/occupancy; 0 = the voxel size. A coarser cell takes the max over the voxel columns in it; "
        "finer than a voxel is refused.",
        0.0,
        10.0,
        scope="node",
    ),
    _p(
        "occupancy_publish_rate_hz",
        0.5,
        "Rate (Hz) of the ~/occupancy grid (nav_msgs/OccupancyGrid, transient local); 0 disables it.",
        0.0,
        100.0,
        scope="node",
        runtime=True,
    ),
    _p(
        "occupancy_max_columns_per_update",
        2048,
        "Map columns (8x8 voxels) whose band maximum is recomputed per ~/occupancy update; the rest wait for the next "
        "one (bounds the cost on a huge map).",
        1,
        10_000_000,
        scope="node",
    ),
    _p(
        "occupancy_max_cells",
        4_000_000,
        "Largest ~/occupancy grid (cells); a larger map is cropped to a square window around the camera.",
        1,
        100_000_000,
        scope="node",
    ),
    _p(
        "mesh_publish_rate_hz",
        0.2,
        "Rate (Hz) of the ~/mesh MarkerArray (one TRIANGLE_LIST per block, transient local); 0 disables it.",
        0.0,
        100.0,
        scope="node",
        runtime=True,
    ),
    _p(
        "mesh_color_mode",
        "sigma",
        "Colour of ~/mesh vertices: sigma (the ~/map_cloud uncertainty colormap) or rgb (true colour).",
        choices=("sigma", "rgb"),
        scope="node",
        runtime=True,
    ),
    _p(
        "mesh_max_blocks_per_update",
        1024,
        "Blocks re-meshed (marching cubes) per ~/mesh update; the rest wait for the next one (bounds an update's cost, "
        "about 0.1 ms a block).",
        1,
        10_000_000,
        scope="node",
    ),
    _p(
        "diagnostics_period_s",
        5.0,
        "Period (s) of the throttled timing / latency / drop-rate log and of /diagnostics.",
        0.1,
        3600.0,
        scope="node",
        runtime=True,
    ),
)

#: All parameters, in the order they appear in config/prism.yaml.
PARAMS: Tuple[ParamSpec, ...] = FILTER_PARAMS + PIPELINE_PARAMS + BACKEND_PARAMS + NODE_PARAMS


class _PrismChecks(ConfigBase):
    def _check_relations(self) -> None:
        self.filter_config()  # the core's own relations (depth range, truncation, height band)
        if 0.0 < self.occupancy_resolution_m < self.voxel_size_m:
            raise ConfigError(
                f"occupancy_resolution_m ({self.occupancy_resolution_m}) must be 0 (the voxel size) or at least "
                f"voxel_size_m ({self.voxel_size_m}): a cell finer than a voxel adds no information"
            )
        if self.backend_loop_kernel_scale**2 < self.backend_loop_gate_mahalanobis2:
            raise ConfigError(
                f"backend_loop_kernel_scale ({self.backend_loop_kernel_scale}) must be at least the square root of "
                f"backend_loop_gate_mahalanobis2 ({self.backend_loop_gate_mahalanobis2}): the robust kernel would "
                "ignore closures the gate accepts"
            )
        if self.backend_enabled and self.map_frame == self.world_frame:
            raise ConfigError(
                f"with backend_enabled, map_frame and world_frame must differ (both '{self.map_frame}'): REP-105 "
                "map -> odom carries the back end's correction"
            )

    def filter_config(self) -> FilterConfig:
        """The filter's part of this configuration."""
        return FilterConfig.from_dict({p.name: getattr(self, p.name) for p in FILTER_PARAMS})


PrismConfig = make_config_class(
    "PrismConfig",
    PARAMS,
    _PrismChecks,
    "Validated, immutable configuration of every layer. Build with :meth:`from_dict` / :meth:`from_yaml`; "
    ":meth:`filter_config` gives the core's :class:`~prism_ros.core.config.FilterConfig`.",
)
PrismConfig.__module__ = __name__


def _from_yaml(cls, path: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None):
    values = load_yaml_params(path or default_config_path())
    values.update(overrides or {})
    return cls.from_dict(values)


PrismConfig.from_yaml = classmethod(_from_yaml)


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
