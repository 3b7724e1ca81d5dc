"""The ``prism`` ROS 2 node: live PRISM filtering on synchronised RGB-D images.

Thin by design: callbacks decode and pair the images and push them onto a
bounded queue (oldest dropped, drops counted); one worker thread owns the
:class:`~prism_ros.core.filter.PrismFilter` (Numba's default threading layer must
not launch parallel kernels from two threads at once), steps it and publishes.
Map extraction, saving and resets are also executed by that worker.

Start it with ``ros2 run prism_ros prism_node`` (colcon install) or
``prism-ros node --ros-args --params-file config/prism.yaml`` (pip install).

Topics (relative input names are remappable; outputs are node-private):

  in   camera/color/image_raw    sensor_msgs/Image (rgb8, bgr8, mono8)
  in   camera/depth/image_raw    sensor_msgs/Image (16UC1 mm, 32FC1 m), same size as colour
  in   camera/color/camera_info  sensor_msgs/CameraInfo
  in   imu                       sensor_msgs/Imu        (control_mode: imu)
  in   odom                      nav_msgs/Odometry      (control_mode: odometry)
  out  ~/pose                    geometry_msgs/PoseWithCovarianceStamped
  out  ~/twist                   geometry_msgs/TwistWithCovarianceStamped
  out  ~/odometry                nav_msgs/Odometry
  out  ~/path                    nav_msgs/Path
  out  ~/map_cloud               sensor_msgs/PointCloud2 (x y z rgb sigma weight), transient_local
  out  ~/occupancy               nav_msgs/OccupancyGrid (height band of the posterior), transient_local
  out  ~/mesh                    visualization_msgs/MarkerArray (TRIANGLE_LIST per block), transient_local
  out  /tf, /tf_static           when tf2_msgs is importable
  out  /diagnostics              diagnostic_msgs/DiagnosticArray
  srv  ~/save_map, ~/load_map, ~/reset   std_srvs/Trigger

Bad input never stops the node: every unusable message is refused with a
throttled error naming the reason (encoding, sizes, step, camera_info, invalid
depth, stamps, non-finite IMU), counted in the diagnostics, and the map is not
touched.  Maps are saved atomically (prism_ros.tools.persistence) into
``save_map_dir`` under ``save_map_name`` (a plain file name: paths leaving the
directory are refused); ``load_map_path`` is loaded when the filter starts and by
``~/load_map``; a map of another voxel size / truncation is refused clearly.
"""
from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import (
    PoseStamped,
    PoseWithCovarianceStamped,
    TransformStamped,
    TwistWithCovarianceStamped,
)
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, Imu, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from prism_ros.config import PARAMS, ConfigError, ParamSpec, PrismConfig
from prism_ros.core.camera import Camera
from prism_ros.core.types import Control, StepResult
from prism_ros.ros import conversions as cv
from prism_ros.ros.controls import ImuBuffer, OdomBuffer, imu_noise_from_config
from prism_ros.ros.planner_outputs import PlannerOutputs
from prism_ros.ros.qos import latched_qos, reliable_qos, sensor_qos
from prism_ros.ros.sync import ApproxTimePairer
from prism_ros.tools import persistence
from prism_ros.tools.latency import LatencyHistogram

try:
    from prism_ros.core.image import InvalidFrameError
except ImportError:  # pragma: no cover - core not importable: nothing raises it then
    class InvalidFrameError(ValueError):  # type: ignore[no-redef]
        pass

try:  # not on PyPI; present on a full ROS 2 install
    from tf2_msgs.msg import TFMessage  # type: ignore

    HAVE_TF2 = True
except ImportError:  # pragma: no cover - depends on the install
    TFMessage = None
    HAVE_TF2 = False

__all__ = ["PrismNode", "main", "NODE_NAME", "RUNTIME_PARAMS", "declared_descriptor"]

NODE_NAME = "prism"

#: Parameters that may change while the node runs (everything else is read-only:
#: core parameters are baked into the filter, frames/QoS/control into the wiring).
RUNTIME_PARAMS = frozenset(
    {
        "publish_tf",
        "sync_slop_s",
        "queue_size",
        "map_publish_rate_hz",
        "cloud_color_mode",
        "cloud_max_sdf_m",
        "occupancy_publish_rate_hz",
        "mesh_publish_rate_hz",
        "mesh_color_mode",
        "path_max_length",
        "save_map_dir",
        "save_map_name",
        "load_map_path",
        "diagnostics_period_s",
    }
)

_PARAM_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
    list: ParameterType.PARAMETER_DOUBLE_ARRAY,
}

_PATH_PUBLISH_MIN_PERIOD_S = 0.2  # ~/path carries up to path_max_length poses: publish it at <= 5 Hz
_STREAM_SILENCE_S = 2.0  # warn when colour arrives without depth (or vice versa) for this long
_MIN_VALID_DEPTH_FRACTION = 0.01  # the filter refuses frames below this too
_IMAGE_QOS_MIN_DEPTH = 2  # reader history of the image subscriptions: max(this, queue_size) at start


def declared_descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The ParameterDescriptor the node declares for ``spec`` (description, range, read-only)."""
    d = ParameterDescriptor()
    d.name = spec.name
    d.type = _PARAM_TYPES[spec.kind]
    rng = spec.range_text()
    d.description = spec.description + (f" Range: {rng}." if rng else "")
    d.additional_constraints = rng
    d.read_only = spec.name not in RUNTIME_PARAMS
    if spec.kind is float and spec.lo is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.lo), to_value=float(spec.hi), step=0.0)]
    elif spec.kind is int and spec.lo is not None:
        d.integer_range = [IntegerRange(from_value=int(spec.lo), to_value=int(spec.hi), step=1)]
    return d


def _default_value(spec: ParamSpec):
    if spec.kind is list:
        return [float(x) for x in spec.default]
    return spec.default


class _Throttle:
    """Per-key wall-clock throttle for log messages (works under sim time too)."""

    def __init__(self, period_s: float = 2.0):
        self.period_s = period_s
        self._last: Dict[str, float] = {}
        self._suppressed: Dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, log_fn: Callable[[str], Any], key: str, text: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            n = self._suppressed.pop(key, 0)
            self._last[key] = now
        log_fn(text + (f" ({n} similar messages suppressed)" if n else ""))
        return True


@dataclass
class _FrameItem:
    stamp: float
    header_stamp: Time
    rgb: np.ndarray
    depth: np.ndarray
    camera: Camera
    t_recv: float  # time.monotonic() when the pair was complete
    t_src_ns: Optional[int] = None  # publisher's time.time_ns() of the later image of the pair (DDS source timestamp)


@dataclass
class _Command:
    kind: str  # "reset" | "save"
    done: threading.Event
    result: Any = None
    error: Optional[str] = None


class _Stats:
    def __init__(self):
        self.reset_window()
        self.total_processed = 0
        self.total_dropped_queue = 0
        self.total_bad = 0
        self.total_bad_imu = 0
        self.latency_hist = LatencyHistogram()  # receive -> publish, every frame since start
        self.latency_e2e_hist = LatencyHistogram()  # publication -> publish

    def reset_window(self):
        self.t0 = time.monotonic()
        self.processed = 0
        self.step_ms: List[float] = []
        self.latency_ms: List[float] = []
        self.latency_e2e_ms: List[float] = []
        self.stage_ms: Dict[str, float] = {}
        self.dropped_queue = 0
        self.bad = 0
        self.lost = 0


class PrismNode(Node):
    """The ``prism`` node.  See the module docstring for topics and services.

    ``filter_factory(cfg, camera, T_w_c0)`` builds the filter (default: PrismFilter);
    tests pass a fake.  ``warmup=False`` skips the kernel warm-up.
    """

    def __init__(
        self,
        *,
        context=None,
        cli_args=None,
        parameter_overrides=None,
        filter_factory: Optional[Callable[..., Any]] = None,
        warmup: bool = True,
        node_name: str = NODE_NAME,
    ):
        super().__init__(
            node_name,
            context=context,
            cli_args=cli_args,
            parameter_overrides=parameter_overrides,
        )
        self._throttle = _Throttle(2.0)
        self._log = self.get_logger()

        # ---- parameters ------------------------------------------------------
        for spec in PARAMS:
            self.declare_parameter(spec.name, _default_value(spec), declared_descriptor(spec))
        self.cfg: PrismConfig = PrismConfig.from_dict(self._param_values())  # raises ConfigError
        self._check_map_params(self.cfg)  # raises ConfigError
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.T_base_camera = cv.T_from_xyz_rpy_deg(self.cfg.T_base_camera_xyz_m, self.cfg.T_base_camera_rpy_deg)
        self._filter_factory = filter_factory or _default_filter_factory

        # ---- state -----------------------------------------------------------
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._queue: Deque[_FrameItem] = deque()
        self._commands: Deque[_Command] = deque()
        self._cloud_requested = False
        self._stop = threading.Event()
        self._camera: Optional[Camera] = None
        self._camera_error: Optional[str] = None
        self._waiting_for_info = None  # (colour, depth) pair that arrived before any camera_info
        self._newest_in = [None, None]  # newest colour / depth stamp seen (duplicate / order checks)
        self._last_rx = [None, None]  # monotonic time of the last colour / depth message
        self._first_rx = [None, None]
        self._pairer = ApproxTimePairer(self.cfg.sync_slop_s, max_pending=10)
        T_base_imu = cv.T_from_xyz_rpy_deg(self.cfg.T_base_imu_xyz_m, self.cfg.T_base_imu_rpy_deg)
        self._imu = ImuBuffer(T_I_C=np.linalg.inv(T_base_imu) @ self.T_base_camera,
                              noise=imu_noise_from_config(self.cfg), init_window_s=self.cfg.imu_init_window_s)
        self._odom = OdomBuffer()
        self._stats = _Stats()
        self._path: Deque[PoseStamped] = deque(maxlen=self.cfg.path_max_length)
        self._path_last_pub = 0.0
        self._path_dirty = False
        # worker-owned
        self._filter = None
        self._filter_camera: Optional[Camera] = None
        self._last_stamp: Optional[float] = None
        self._last_result: Optional[StepResult] = None
        self._last_header_stamp: Optional[Time] = None
        self._frames_since_cloud = 0
        self._last_diag = time.monotonic()

        # ---- outputs ---------------------------------------------------------
        out_qos = reliable_qos(10)
        self.pub_pose = self.create_publisher(PoseWithCovarianceStamped, "~/pose", out_qos)
        self.pub_twist = self.create_publisher(TwistWithCovarianceStamped, "~/twist", out_qos)
        self.pub_odom = self.create_publisher(Odometry, "~/odometry", out_qos)
        self.pub_path = self.create_publisher(Path, "~/path", reliable_qos(1))
        self.pub_cloud = self.create_publisher(PointCloud2, "~/map_cloud", latched_qos(1))
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(5))
        self.pub_tf = self.pub_tf_static = None
        if HAVE_TF2:
            self.pub_tf = self.create_publisher(TFMessage, "/tf", reliable_qos(100))
            self.pub_tf_static = self.create_publisher(TFMessage, "/tf_static", latched_qos(1))
        elif self.cfg.publish_tf:
            self._log.info("tf2_msgs is not importable: TF is not published (~/odometry carries the pose)")

        self.srv_save = self.create_service(Trigger, "~/save_map", self._on_save_map)
        self.srv_reset = self.create_service(Trigger, "~/reset", self._on_reset)
        self.srv_load = self.create_service(Trigger, "~/load_map", self._on_load_map)
        self._map_timer = None
        self._make_map_timer()
        # --- planner outputs: ~/occupancy, ~/mesh (prism_ros.ros.planner_outputs) ---
        self._planner = PlannerOutputs(self, self.cfg)
        self._planner_requested = set()  # {"occupancy", "mesh"}, served by the filter thread
        self._planner_timers = []
        self._make_planner_timers()

        # ---- warm-up, then worker, then inputs ---------------------------------
        if warmup:
            t0 = time.monotonic()
            self._warmup()
            self._log.info(f"kernels warmed up in {time.monotonic() - t0:.1f} s")
        self._worker = threading.Thread(target=self._worker_main, name="prism_filter", daemon=True)
        self._worker.start()

        in_qos = sensor_qos(self.cfg.sensor_qos)
        # images: a reader history no deeper than the queue (at least 2, so that a colour and
        # its depth image can both wait), so that an executor that falls behind loses old
        # images in DDS instead of working through a hidden backlog (a deep reliable history
        # is one); the callbacks take the message info for the end-to-end latency
        img_qos = sensor_qos(self.cfg.sensor_qos, max(_IMAGE_QOS_MIN_DEPTH, self.cfg.queue_size))
        self.sub_color = self.create_subscription(Image, "camera/color/image_raw", lambda m, i: self._on_color(m, i), img_qos)
        self.sub_depth = self.create_subscription(Image, "camera/depth/image_raw", lambda m, i: self._on_depth(m, i), img_qos)
        self.sub_info = self.create_subscription(CameraInfo, "camera/color/camera_info", self._on_info, in_qos)
        self.sub_imu = self.sub_odom = None
        if self.cfg.control_mode == "imu":
            self.sub_imu = self.create_subscription(Imu, "imu", self._on_imu, sensor_qos(self.cfg.sensor_qos, 200))
        elif self.cfg.control_mode == "odometry":
            self.sub_odom = self.create_subscription(Odometry, "odom", self._on_odom, sensor_qos(self.cfg.sensor_qos, 50))
        self._publish_static_tf()
        self._log.info(
            f"prism_node ready: world '{self.cfg.world_frame}', base '{self.cfg.base_frame}', "
            f"camera '{self.cfg.camera_frame}', control {self.cfg.control_mode}, inputs "
            f"{self.sub_color.topic_name} + {self.sub_depth.topic_name} + {self.sub_info.topic_name} "
            f"({self.cfg.sensor_qos} QoS), sync_slop_s={self.cfg.sync_slop_s}, queue_size={self.cfg.queue_size}"
        )

    # ------------------------------------------------------------------ params
    def _param_values(self) -> Dict[str, Any]:
        out = {}
        for spec in PARAMS:
            v = self.get_parameter(spec.name).value
            out[spec.name] = list(v) if spec.kind is list else v
        return out

    def _on_set_parameters(self, params) -> SetParametersResult:
        values = self._param_values()
        for p in params:
            if p.name not in values:  # rclpy's own (use_sim_time, start_type_description_service)
                continue
            if p.name not in RUNTIME_PARAMS:
                return SetParametersResult(
                    successful=False,
                    reason=f"parameter '{p.name}' is read-only while the node runs (restart the node to change it)",
                )
            v = p.value
            values[p.name] = list(v) if isinstance(v, (list, tuple)) or hasattr(v, "typecode") else v
        try:
            new_cfg = PrismConfig.from_dict(values)
            self._check_map_params(new_cfg)
        except ConfigError as e:
            return SetParametersResult(successful=False, reason=str(e))
        old = self.cfg
        self.cfg = new_cfg
        if new_cfg.sync_slop_s != old.sync_slop_s:
            self._pairer.slop_s = new_cfg.sync_slop_s
        if new_cfg.path_max_length != old.path_max_length:
            with self._lock:
                self._path = deque(self._path, maxlen=new_cfg.path_max_length)
        if new_cfg.queue_size != old.queue_size:
            with self._lock:
                while len(self._queue) > new_cfg.queue_size:
                    self._queue.popleft()
                    self._stats.dropped_queue += 1
                    self._stats.total_dropped_queue += 1
        if new_cfg.map_publish_rate_hz != old.map_publish_rate_hz:
            self._make_map_timer()
        if (new_cfg.occupancy_publish_rate_hz, new_cfg.mesh_publish_rate_hz) != \
                (old.occupancy_publish_rate_hz, old.mesh_publish_rate_hz):
            self._make_planner_timers()
        if new_cfg.mesh_color_mode != old.mesh_color_mode:
            self._request_planner("reconfigure")
        return SetParametersResult(successful=True)

    @staticmethod
    def _check_map_params(cfg: PrismConfig) -> None:
        """save_map_name must stay inside save_map_dir; load_map_path must be a compatible map."""
        if cfg.save_map_name:
            try:
                persistence.safe_map_path(cfg.save_map_dir, cfg.save_map_name)
            except persistence.MapPathError as e:
                raise ConfigError(f"parameter 'save_map_name' refused: {e}") from None
        if cfg.load_map_path:
            from prism_ros.core.tsdf import TsdfMap

            path = os.path.abspath(os.path.expanduser(cfg.load_map_path))
            if not os.path.isfile(path):
                raise ConfigError(f"parameter 'load_map_path': {path} does not exist")
            try:
                hdr = TsdfMap.read_header(path)
            except Exception as e:
                raise ConfigError(f"parameter 'load_map_path': {path} is not a readable prism_ros map ({e})") from None
            try:
                persistence.check_compatible(hdr, cfg, path)
            except persistence.MapCompatibilityError as e:
                raise ConfigError(f"parameter 'load_map_path' refused: {e}") from None

    def _make_planner_timers(self) -> None:
        for t in self._planner_timers:
            self.destroy_timer(t)
        self._planner_timers = []
        for kind, hz in (("occupancy", self.cfg.occupancy_publish_rate_hz), ("mesh", self.cfg.mesh_publish_rate_hz)):
            if hz > 0:
                self._planner_timers.append(self.create_timer(1.0 / hz, lambda k=kind: self._request_planner(k)))

    def _request_planner(self, kind: str) -> None:
        with self._cv:
            self._planner_requested.add(kind)
            self._cv.notify()

    def _publish_planner(self, kinds) -> None:
        if self._filter is None or self._last_header_stamp is None:
            return
        fmap = self._filter.map
        for kind in sorted(kinds):
            try:
                if kind == "occupancy":
                    ms = self._planner.publish_occupancy(fmap, self._last_header_stamp, tuple(self._filter.T_w_c[:2, 3]))
                else:
                    ms = self._planner.publish_mesh(fmap, self._last_header_stamp)
            except Exception as e:
                self._error(kind, f"~/{kind} failed: {type(e).__name__}: {e}")
                continue
            with self._lock:
                self._stats.stage_ms[kind] = self._stats.stage_ms.get(kind, 0.0) + ms

    def _make_map_timer(self) -> None:
        if self._map_timer is not None:
            self.destroy_timer(self._map_timer)
            self._map_timer = None
        if self.cfg.map_publish_rate_hz > 0:
            self._map_timer = self.create_timer(1.0 / self.cfg.map_publish_rate_hz, self._on_map_timer)

    # ----------------------------------------------------------------- warm-up
    def _warmup(self) -> None:
        cam = Camera(525.0, 525.0, 319.5, 239.5, 640, 480)
        f = self._filter_factory(self.cfg.replace(map_initial_blocks=256), cam, None)
        if hasattr(f, "warmup"):
            f.warmup()
        del f

    # --------------------------------------------------------------- callbacks
    @staticmethod
    def _throttle_key(key: str, text: str) -> str:
        # messages that differ only in numbers (stamps, sizes) are throttled together
        return key + ":" + re.sub(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?", "#", text)[:80]

    def _error(self, key: str, text: str) -> None:
        self._throttle(self._log.error, self._throttle_key(key, text), text)

    def _warn(self, key: str, text: str) -> None:
        self._throttle(self._log.warning, self._throttle_key(key, text), text)

    def _on_info(self, msg: CameraInfo) -> None:
        try:
            cam = cv.camera_info_to_camera(msg)
        except cv.InputError as e:
            self._camera = None
            self._camera_error = str(e)
            self._error("camera_info", f"{self.sub_info.topic_name}: {e}; frames are ignored until a valid camera_info arrives")
            return
        if any(abs(float(x)) > 1e-9 for x in msg.d) and self._camera is None:
            self._log.warning(
                f"camera_info has non-zero distortion ({msg.distortion_model}); prism assumes rectified images"
            )
        self._camera = cam
        self._camera_error = None
        waiting, self._waiting_for_info = self._waiting_for_info, None
        if waiting is not None:
            self._on_pair(*waiting)

    def _check_stream(self, s: int, stamp: float) -> bool:
        """Per-stream stamp and liveness checks before pairing; False: drop the message."""
        names = ("colour", "depth")
        topic = (self.sub_color, self.sub_depth)[s].topic_name
        now = time.monotonic()
        self._last_rx[s] = now
        if self._first_rx[s] is None:
            self._first_rx[s] = now
        if not np.isfinite(stamp):
            self._bad("stamp", f"{topic}: non-finite stamp")
            return False
        newest = self._newest_in[s]
        if newest is not None and newest - self._pairer.reset_on_jump_back_s <= stamp <= newest:
            what = "duplicate stamp" if stamp == newest else "stamp older than the previous one"
            self._bad("stamp_order", f"{topic}: {names[s]} image {what} ({stamp:.6f} s after {newest:.6f} s)")
            return False
        self._newest_in[s] = stamp
        o = 1 - s
        other_last = self._last_rx[o] if self._last_rx[o] is not None else self._first_rx[s]
        if now - other_last > _STREAM_SILENCE_S:
            other = (self.sub_color, self.sub_depth)[o].topic_name
            self._warn(
                f"silence{o}",
                f"{names[s]} images arrive on {topic} but no {names[o]} image on {other} for "
                f"{now - other_last:.0f} s; nothing to pair (the pending buffer is bounded)",
            )
        return True

    @staticmethod
    def _src_ns(info) -> Optional[int]:
        try:
            v = int(info["source_timestamp"]) if info is not None else 0
        except (KeyError, TypeError, ValueError):
            return None
        return v if v > 0 else None

    @staticmethod
    def _pair_src_ns(c, d) -> Optional[int]:
        vals = [v for v in (c[1], d[1]) if v is not None]
        return max(vals) if vals else None

    def _on_color(self, msg: Image, info=None) -> None:
        stamp = cv.stamp_to_sec(msg.header.stamp)
        if not self._check_stream(0, stamp):
            return
        for c, d, _, _ in self._pairer.add_a(stamp, (msg, self._src_ns(info))):
            self._on_pair(c[0], d[0], self._pair_src_ns(c, d))

    def _on_depth(self, msg: Image, info=None) -> None:
        stamp = cv.stamp_to_sec(msg.header.stamp)
        if not self._check_stream(1, stamp):
            return
        for c, d, _, _ in self._pairer.add_b(stamp, (msg, self._src_ns(info))):
            self._on_pair(c[0], d[0], self._pair_src_ns(c, d))

    def _bad(self, key: str, text: str) -> None:
        with self._lock:
            self._stats.bad += 1
            self._stats.total_bad += 1
        self._error(key, text + "; frame skipped")

    def _on_pair(self, color: Image, depth: Image, t_src_ns: Optional[int] = None) -> None:
        t_recv = time.monotonic()
        cam = self._camera
        if cam is None:
            # camera_info travels on its own topic and may arrive just after the images:
            # keep the newest pair until it does; an older waiting pair is dropped.
            old, self._waiting_for_info = self._waiting_for_info, (color, depth, t_src_ns)
            if old is not None:
                why = self._camera_error or f"no camera_info received on {self.sub_info.topic_name}"
                self._bad("no_camera", f"cannot use RGB-D frame: {why}")
            return
        try:
            rgb = cv.image_to_rgb(color)
        except cv.InputError as e:
            self._bad("color", f"{self.sub_color.topic_name}: {e}")
            return
        try:
            depth_m = cv.image_to_depth_m(depth)
        except cv.InputError as e:
            self._bad("depth", f"{self.sub_depth.topic_name}: {e}")
            return
        if rgb.shape[:2] != depth_m.shape:
            self._bad(
                "size",
                f"size mismatch: colour is {rgb.shape[1]}x{rgb.shape[0]} but depth is "
                f"{depth_m.shape[1]}x{depth_m.shape[0]} (register depth to colour)",
            )
            return
        valid = float(np.count_nonzero(depth_m > 0)) / max(depth_m.size, 1)
        if valid < _MIN_VALID_DEPTH_FRACTION:
            self._bad(
                "depth_invalid",
                f"{self.sub_depth.topic_name}: only {100 * valid:.1f}% of the depth pixels are valid "
                "(zero, NaN or inf: covered lens, out of range?)",
            )
            return
        if (cam.width, cam.height) != (rgb.shape[1], rgb.shape[0]):
            self._bad(
                "info_size",
                f"size mismatch: camera_info is {cam.width}x{cam.height} but the images are {rgb.shape[1]}x{rgb.shape[0]}",
            )
            return
        item = _FrameItem(
            stamp=cv.stamp_to_sec(color.header.stamp),
            header_stamp=color.header.stamp,
            rgb=rgb,
            depth=depth_m,
            camera=cam,
            t_recv=t_recv,
            t_src_ns=t_src_ns,
        )
        with self._cv:
            self._queue.append(item)
            while len(self._queue) > self.cfg.queue_size:
                self._queue.popleft()
                self._stats.dropped_queue += 1
                self._stats.total_dropped_queue += 1
            self._cv.notify()

    def _on_imu(self, msg: Imu) -> None:
        w, a = msg.angular_velocity, msg.linear_acceleration
        t = cv.stamp_to_sec(msg.header.stamp)
        if not (np.isfinite(t) and np.all(np.isfinite([w.x, w.y, w.z, a.x, a.y, a.z]))):
            with self._lock:
                self._stats.total_bad_imu += 1
            self._warn("imu_nan", f"{self.sub_imu.topic_name}: IMU sample at {t:.6f} s has a non-finite angular velocity "
                                  "or linear acceleration; sample ignored")
            return
        self._imu.add(t, [w.x, w.y, w.z], acc=[a.x, a.y, a.z])

    def _on_odom(self, msg: Odometry) -> None:
        self._odom.add(cv.stamp_to_sec(msg.header.stamp), cv.pose_to_T(msg.pose.pose))

    def _on_map_timer(self) -> None:
        with self._cv:
            self._cloud_requested = True
            self._cv.notify()

    def _run_command(self, kind: str, timeout_s: float = 60.0) -> _Command:
        cmd = _Command(kind, threading.Event())
        with self._cv:
            self._commands.append(cmd)
            self._cv.notify()
        if not cmd.done.wait(timeout_s):
            cmd.error = f"timed out after {timeout_s:.0f} s waiting for the filter thread"
        return cmd

    def _on_save_map(self, request, response):
        cmd = self._run_command("save")
        response.success = cmd.error is None
        response.message = cmd.error if cmd.error else str(cmd.result)
        # separate call sites: rclpy refuses a second severity from one call site (and the
        # exception would end the executor's spin)
        if response.success:
            self._log.info(f"save_map: {response.message}")
        else:
            self._log.error(f"save_map: {response.message}")
        return response

    def _on_load_map(self, request, response):
        cmd = self._run_command("load")
        response.success = cmd.error is None
        response.message = cmd.error if cmd.error else str(cmd.result)
        # separate call sites: rclpy refuses a second severity from one call site (and the
        # exception would end the executor's spin)
        if response.success:
            self._log.info(f"load_map: {response.message}")
        else:
            self._log.error(f"load_map: {response.message}")
        return response

    def _on_reset(self, request, response):
        self._pairer.clear()  # executor thread owns the pairer
        cmd = self._run_command("reset")
        response.success = cmd.error is None
        response.message = cmd.error if cmd.error else "filter, map and path reset"
        self._log.info(f"reset: {response.message}")
        return response

    # ------------------------------------------------------------------ worker
    def _worker_main(self) -> None:
        while not self._stop.is_set():
            with self._cv:
                while not (self._queue or self._commands or self._cloud_requested or self._planner_requested
                           or self._stop.is_set()):
                    self._cv.wait(_PATH_PUBLISH_MIN_PERIOD_S)
                    if self._path_dirty or time.monotonic() - self._last_diag > self.cfg.diagnostics_period_s:
                        break
                commands = list(self._commands)
                self._commands.clear()
                item = self._queue.popleft() if self._queue else None
                cloud = self._cloud_requested
                self._cloud_requested = False
                planner, self._planner_requested = self._planner_requested, set()
            if self._stop.is_set():
                break
            for cmd in commands:
                try:
                    if cmd.kind == "reset":
                        cmd.result = self._do_reset()
                    elif cmd.kind == "load":
                        cmd.result = self._do_load()
                    else:
                        cmd.result = self._do_save()
                except Exception as e:  # report to the service caller
                    cmd.error = f"{type(e).__name__}: {e}"
                cmd.done.set()
            if item is not None:
                try:
                    self._process(item)
                except InvalidFrameError as e:  # the filter refused it: state and map untouched
                    self._bad("invalid_frame", f"frame at t={item.stamp:.6f} s refused by the filter: {e}")
                except Exception as e:
                    self._error("step", f"filter step failed at t={item.stamp:.6f}: {type(e).__name__}: {e}")
            if item is None:
                self._publish_path()
            if cloud:
                try:
                    self._publish_cloud()
                except Exception as e:
                    self._error("cloud", f"map cloud extraction failed: {type(e).__name__}: {e}")
            if "reconfigure" in planner:
                self._planner.configure(self.cfg)  # filter thread: the builders are its
                planner.discard("reconfigure")
            if planner:
                self._publish_planner(planner)
            if time.monotonic() - self._last_diag > self.cfg.diagnostics_period_s:
                self._diagnostics()
        for cmd in self._commands:
            cmd.error = "node shutting down"
            cmd.done.set()

    def _new_filter(self, camera: Camera):
        self._filter = self._filter_factory(self.cfg, camera, self.T_base_camera.copy())
        self._filter_camera = camera
        self._last_stamp = None
        self._last_result = None
        if self.cfg.load_map_path:
            try:
                self._log.info(self._do_load())
            except Exception as e:
                self._error("load_map", f"could not load load_map_path: {type(e).__name__}: {e}; starting with an empty map")
        self._log.info(
            f"filter started: {camera.width}x{camera.height}, fx={camera.fx:g} fy={camera.fy:g} "
            f"cx={camera.cx:g} cy={camera.cy:g}"
        )

    def _do_reset(self, clear_queue: bool = True) -> str:
        if self._filter is not None:
            cam = self._camera
            if cam is not None and cam != self._filter_camera:
                self._filter = None  # rebuilt with the new intrinsics on the next frame
            else:
                self._filter.reset(self.T_base_camera.copy())
        self._last_stamp = None
        self._last_result = None
        self._frames_since_cloud = 0
        with self._lock:
            self._path.clear()
            if clear_queue:
                self._queue.clear()
        self._imu.reset_alignment()  # the filter's world moved: re-estimate gravity
        if clear_queue:  # a service reset; after a time jump the buffers hold the new timeline
            self._imu.clear()
            self._odom.clear()
        return "reset"

    def _do_save(self) -> str:
        if self._filter is None:
            raise RuntimeError("no map yet (no frame has been processed)")
        cfg = self.cfg
        d = os.path.realpath(os.path.abspath(os.path.expanduser(cfg.save_map_dir)))
        os.makedirs(d, exist_ok=True)
        stamp = self._last_stamp or 0.0
        name = cfg.save_map_name or (time.strftime("prism_map_%Y%m%d-%H%M%S") + f"_t{stamp:.3f}.npz")
        final = persistence.safe_map_path(d, name)  # re-checked now: symlinks may have changed
        m = self._filter.map
        if hasattr(m, "header"):  # a TsdfMap: versioned header + config
            return persistence.save_map(m, final, cfg, extra={"stamp": stamp, "node": self.get_fully_qualified_name()})
        return persistence.atomic_write(final, m.save)

    def _do_load(self) -> str:
        path = self.cfg.load_map_path
        if not path:
            raise RuntimeError("parameter 'load_map_path' is empty")
        m = persistence.load_map(path, self.cfg)  # MapCompatibilityError: clear message
        if self._filter is None:
            return f"map {path} will be loaded when the first frame starts the filter"
        persistence.install_map(self._filter, m, self.T_base_camera.copy())
        self._last_stamp = None
        self._last_result = None
        with self._lock:
            self._path.clear()
        return (f"loaded {path} ({m.n_blocks} blocks, {m.header().get('frames', 0)} frames); "
                "tracking restarts at the map origin")

    def _make_control(self, t: float) -> Optional[Control]:
        mode = self.cfg.control_mode
        if mode == "none" or self._last_stamp is None or self._last_result is None:
            return None
        t0 = self._last_stamp
        if mode == "imu":
            if t - t0 > self.cfg.max_dt_s:
                self._warn("imu", f"{t - t0:.3f} s since the last frame (> max_dt_s); using the constant-velocity model")
                return None
            res = self._last_result
            ctl = self._imu.control(t0, t, res.T_w_c, res.velocity, res.velocity_cov, res.pose_cov)
            if ctl is None:
                self._warn("imu", f"no IMU data covering [{t0:.3f}, {t:.3f}] s; using the constant-velocity model")
            elif self._imu.static_start is False and not getattr(self, "_imu_static_warned", False):
                self._imu_static_warned = True
                self._log.warning("IMU: the start window was not static; gravity from the mean specific force, "
                                  "gyro bias not estimated")
            return ctl
        ctl = self._odom.increment(t0, t, self.T_base_camera)
        if ctl is None:
            self._warn("odom", f"no odometry covering [{t0:.3f}, {t:.3f}] s; using the constant-velocity model")
        return ctl

    def _process(self, item: _FrameItem) -> None:
        if self._last_stamp is not None:
            if item.stamp < self._last_stamp - 0.5:
                self._log.warning(
                    f"input time jumped back from {self._last_stamp:.3f} to {item.stamp:.3f} s: resetting the filter"
                )
                self._do_reset(clear_queue=False)
            elif item.stamp <= self._last_stamp:
                self._warn("order", f"frame at {item.stamp:.6f} s is not newer than the last one; skipped")
                return
        if self._filter is None:
            self._new_filter(item.camera)
        elif item.camera != self._filter_camera:
            self._error(
                "camera_changed",
                f"camera_info changed to {item.camera} but the filter runs with {self._filter_camera}; "
                "frame skipped (call ~/reset to restart with the new intrinsics)",
            )
            return
        control = self._make_control(item.stamp)
        t0 = time.perf_counter()
        res: StepResult = self._filter.step(item.rgb, item.depth, item.stamp, control=control)
        step_ms = (time.perf_counter() - t0) * 1e3
        self._last_stamp = item.stamp
        self._last_result = res
        self._last_header_stamp = item.header_stamp
        self._frames_since_cloud += 1
        self._publish_state(res, item.header_stamp)
        latency_ms = (time.monotonic() - item.t_recv) * 1e3
        e2e_ms = (time.time_ns() - item.t_src_ns) * 1e-6 if item.t_src_ns is not None else None
        with self._lock:
            st = self._stats
            st.processed += 1
            st.total_processed += 1
            st.step_ms.append(step_ms)
            st.latency_ms.append(latency_ms)
            st.latency_hist.add(latency_ms)
            if e2e_ms is not None and 0.0 <= e2e_ms < 3.6e6:  # the publisher's clock is this machine's (or synced)
                st.latency_e2e_ms.append(e2e_ms)
                st.latency_e2e_hist.add(e2e_ms)
            for k, v in (res.timings_ms or {}).items():
                st.stage_ms[k] = st.stage_ms.get(k, 0.0) + float(v)
            if not res.tracking_ok:
                st.lost += 1
        if not res.tracking_ok:
            self._warn("lost", f"tracking lost at t={item.stamp:.3f} s ({res.status}, inliers {res.inlier_ratio:.2f})")

    # ----------------------------------------------------------------- publish
    def _publish_state(self, res: StepResult, stamp: Time) -> None:
        cfg = self.cfg
        T_w_b, pose_cov, twist, twist_cov = cv.camera_state_to_base(
            res.T_w_c, res.pose_cov, res.velocity, res.velocity_cov, self.T_base_camera
        )
        header = Header(stamp=stamp, frame_id=cfg.world_frame)
        pose = cv.T_to_pose(T_w_b)
        pose_cov_l = cv.cov_to_msg(pose_cov)
        twist_cov_l = cv.cov_to_msg(twist_cov)

        pm = PoseWithCovarianceStamped()
        pm.header = header
        pm.pose.pose = pose
        pm.pose.covariance = pose_cov_l

        tm = TwistWithCovarianceStamped()
        tm.header = Header(stamp=stamp, frame_id=cfg.base_frame)
        tw = tm.twist.twist
        tw.linear.x, tw.linear.y, tw.linear.z = (float(v) for v in twist[:3])
        tw.angular.x, tw.angular.y, tw.angular.z = (float(v) for v in twist[3:])
        tm.twist.covariance = twist_cov_l

        om = Odometry()
        om.header = header
        om.child_frame_id = cfg.base_frame
        om.pose = pm.pose
        om.twist = tm.twist

        self.pub_pose.publish(pm)
        self.pub_twist.publish(tm)
        self.pub_odom.publish(om)

        with self._lock:
            self._path.append(PoseStamped(header=header, pose=pose))
            self._path_dirty = True
        self._publish_path()

        if self.pub_tf is not None and cfg.publish_tf:
            ts = TransformStamped()
            ts.header = header
            ts.child_frame_id = cfg.base_frame
            ts.transform = cv.T_to_transform(T_w_b)
            self.pub_tf.publish(TFMessage(transforms=[ts]))

    def _publish_path(self) -> None:
        """Publish ~/path at most every 0.2 s (it holds up to path_max_length poses); the
        worker calls this again when idle, so the last poses always go out."""
        now = time.monotonic()
        with self._lock:
            if not self._path_dirty or now - self._path_last_pub < _PATH_PUBLISH_MIN_PERIOD_S or not self._path:
                return
            last = self._path[-1].header
            path = Path(header=Header(stamp=last.stamp, frame_id=last.frame_id), poses=list(self._path))
            self._path_last_pub = now
            self._path_dirty = False
        self.pub_path.publish(path)

    def _publish_static_tf(self) -> None:
        if self.pub_tf_static is None or not self.cfg.publish_tf:
            return
        ts = TransformStamped()
        ts.header.stamp = self.get_clock().now().to_msg()
        ts.header.frame_id = self.cfg.base_frame
        ts.child_frame_id = self.cfg.camera_frame
        ts.transform = cv.T_to_transform(self.T_base_camera)
        self.pub_tf_static.publish(TFMessage(transforms=[ts]))

    def _publish_cloud(self) -> None:
        if self._filter is None or self._last_header_stamp is None or self._frames_since_cloud == 0:
            return
        cfg = self.cfg
        t0 = time.perf_counter()
        surf = self._filter.map.extract_surface(cfg.cloud_max_sdf_m, min_count=1)
        if cfg.cloud_color_mode == "rgb":
            rgb = surf["rgb"]
        else:
            lo = max(cfg.map_min_sigma_m, 1e-4)
            rgb = cv.sigma_colormap(surf["sigma"], lo, max(cfg.truncation_m * 0.5, 4.0 * lo))
        header = Header(stamp=self._last_header_stamp, frame_id=cfg.world_frame)
        msg = cv.make_map_cloud(header, surf["xyz"], rgb, surf["sigma"], surf["count"])
        self.pub_cloud.publish(msg)
        self._frames_since_cloud = 0
        with self._lock:
            self._stats.stage_ms["map_cloud"] = self._stats.stage_ms.get("map_cloud", 0.0) + (time.perf_counter() - t0) * 1e3

    def _diagnostics(self) -> None:
        now = time.monotonic()
        with self._lock:
            st = self._stats
            wall = max(now - st.t0, 1e-6)
            n = st.processed
            step = list(st.step_ms)
            lat = list(st.latency_ms)
            e2e = list(st.latency_e2e_ms)
            stages = dict(st.stage_ms)
            dq, bad, lost = st.dropped_queue, st.bad, st.lost
            tot_proc, tot_dq, tot_bad = st.total_processed, st.total_dropped_queue, st.total_bad
            hist, hist_e2e = st.latency_hist.encode(), st.latency_e2e_hist.encode()
            st.reset_window()
        self._last_diag = now
        sync_dropped = self._pairer.dropped
        offered = n + dq
        drop_rate = dq / offered if offered else 0.0
        parts = [f"{n} frames in {wall:.1f} s ({n / wall:.1f} fps)"]
        if step:
            parts.append(f"step mean {np.mean(step):.1f} / max {np.max(step):.1f} ms")
            parts.append(f"latency mean {np.mean(lat):.1f} / max {np.max(lat):.1f} ms"
                         + (f" (from publication: p95 {np.percentile(e2e, 95):.1f} ms)" if e2e else ""))
            if stages:
                parts.append("stages " + ", ".join(f"{k} {v / max(n, 1):.1f}" for k, v in sorted(stages.items())) + " ms/frame")
        parts.append(f"queue drops {dq} ({100 * drop_rate:.1f}%), sync drops {sync_dropped} total, bad inputs {bad}, lost {lost}")
        if n or dq or bad:
            self._log.info("diagnostics: " + "; ".join(parts))
        level = DiagnosticStatus.OK
        if lost or bad or drop_rate > 0.1:
            level = DiagnosticStatus.WARN
        status = DiagnosticStatus(
            level=level,
            name=f"{self.get_name()}: filter",
            message="; ".join(parts[:1] + parts[-1:]),
            hardware_id="prism",
            values=[
                KeyValue(key="fps", value=f"{n / wall:.2f}"),
                KeyValue(key="step_ms_mean", value=f"{np.mean(step):.2f}" if step else "nan"),
                KeyValue(key="latency_ms_mean", value=f"{np.mean(lat):.2f}" if lat else "nan"),
                KeyValue(key="latency_ms_p95", value=f"{np.percentile(lat, 95):.2f}" if lat else "nan"),
                KeyValue(key="latency_ms_max", value=f"{np.max(lat):.2f}" if lat else "nan"),
                # from the publisher's send time (DDS source timestamp) of the later image of the
                # pair: includes transport and the time the images waited in the executor
                KeyValue(key="latency_e2e_ms_mean", value=f"{np.mean(e2e):.2f}" if e2e else "nan"),
                KeyValue(key="latency_e2e_ms_p95", value=f"{np.percentile(e2e, 95):.2f}" if e2e else "nan"),
                KeyValue(key="processed_total", value=str(tot_proc)),
                # every frame since start, 1 ms bins as "ms:count ..." (prism_ros.tools.latency)
                KeyValue(key="latency_hist_total", value=hist),
                KeyValue(key="latency_e2e_hist_total", value=hist_e2e),
                KeyValue(key="queue_drops_total", value=str(tot_dq)),
                KeyValue(key="bad_inputs_total", value=str(tot_bad)),
                KeyValue(key="queue_drops", value=str(dq)),
                KeyValue(key="queue_drop_rate", value=f"{drop_rate:.4f}"),
                KeyValue(key="sync_drops_total", value=str(sync_dropped)),
                KeyValue(key="bad_inputs", value=str(bad)),
                KeyValue(key="tracking_lost", value=str(lost)),
                KeyValue(key="tracking_status", value=str(getattr(self._last_result, "status", "no frame yet"))),
            ]
            + [KeyValue(key=f"stage_{k}_ms", value=f"{v / max(n, 1):.2f}") for k, v in sorted(stages.items())]
            + self._planner.diagnostics(getattr(self._filter, "map", None)),
        )
        try:
            self.pub_diag.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))
        except Exception:  # context shutting down
            pass

    # ---------------------------------------------------------------- teardown
    @property
    def stats(self) -> Dict[str, int]:
        """Totals since start: processed, queue drops, sync drops, bad inputs."""
        with self._lock:
            return {
                "processed": self._stats.total_processed,
                "dropped_queue": self._stats.total_dropped_queue,
                "dropped_sync": self._pairer.dropped,
                "bad": self._stats.total_bad,
                "bad_imu": self._stats.total_bad_imu,
            }

    def stop_worker(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout_s)

    def destroy_node(self):
        self.stop_worker()
        return super().destroy_node()


def _default_filter_factory(cfg: PrismConfig, camera: Camera, T_w_c0):
    from prism_ros.core.filter import PrismFilter

    return PrismFilter(cfg, camera, T_w_c0=T_w_c0)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``prism_node`` and ``prism-ros node``.

    ``argv`` may hold ROS arguments (``--ros-args -p name:=value --params-file f.yaml``,
    remaps ``-r camera/color/image_raw:=/my/topic``).  Returns the exit status.
    """
    args = list(sys.argv) if argv is None else list(argv)
    if argv is not None:
        args = ["prism_node"] + args
    user_args = rclpy.utilities.remove_ros_args(args)[1:]
    if any(a in ("-h", "--help") for a in user_args):
        print(__doc__)
        print("usage: prism_node [--ros-args --params-file config/prism.yaml -p name:=value -r from:=to]")
        return 0
    if user_args:
        print(f"prism_node: ignoring non-ROS arguments {user_args} (use --ros-args ...)", file=sys.stderr)
    rclpy.init(args=args)
    node = None
    rc = 0
    try:
        node = PrismNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ConfigError, rclpy.exceptions.InvalidParameterValueException, rclpy.exceptions.ParameterException) as e:
        print(f"prism_node: invalid configuration: {e}", file=sys.stderr)
        rc = 2
    finally:
        if node is not None:
            try:
                node.destroy_node()
            except Exception:
                pass
        if rclpy.ok():
            rclpy.try_shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
