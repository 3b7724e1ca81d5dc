"""The ``prism`` ROS 2 node: live PRISM filtering on synchronised RGB-D images.

Over 500 lines: the class wires inputs, worker, services and outputs (each lives in its own module).

Callbacks decode, check and pair the images and push them onto a bounded queue (oldest dropped, counted);
one worker thread owns the :class:`~prism_ros.pipeline.Pipeline` (Numba's threading layer must not run
parallel kernels from two threads), runs each frame and publishes.  Map extraction, saving, loading and
resets are commands the worker runs between frames; services reply asynchronously, so a long save never
starves the single-threaded executor, and a command that times out before it starts is cancelled.
Start: ``ros2 run prism_ros prism_node`` or ``prism-ros node --ros-args --params-file config/prism.yaml``.

Topics (relative inputs are remappable; outputs are node-private; details: docs/node.md):

  in   camera/color/image_raw    sensor_msgs/Image (rgb8, bgr8, mono8)
  in   camera/depth/image_raw    sensor_msgs/Image (16UC1 mm, 32FC1 m), same size as colour
  in   camera/color/camera_info  sensor_msgs/CameraInfo
  in   imu / odom                sensor_msgs/Imu (control_mode: imu) / nav_msgs/Odometry (control_mode: odometry)
  out  ~/pose, ~/twist           geometry_msgs/PoseWithCovarianceStamped, TwistWithCovarianceStamped
  out  ~/odometry, ~/path        nav_msgs/Odometry, nav_msgs/Path
  out  ~/map_cloud               sensor_msgs/PointCloud2 (x y z rgb sigma weight), transient_local
  out  ~/occupancy, ~/mesh       nav_msgs/OccupancyGrid, visualization_msgs/MarkerArray, transient_local
  out  /tf, /tf_static           when tf2_msgs is importable
  out  /diagnostics              diagnostic_msgs/DiagnosticArray (prism_ros.ros.diagnostics)
  srv  ~/save_map, ~/load_map, ~/reset   std_srvs/Trigger

Parameters: :mod:`prism_ros.ros.params`.  Bad input never stops the node: an unusable message is refused
with a throttled error (:mod:`prism_ros.ros.inputs`), counted in the diagnostics, and the map is not
touched.  Maps are saved atomically into ``save_map_dir`` as ``save_map_name``; ``load_map_path`` is
loaded at start and by ``~/load_map``; a map of another voxel size / truncation is refused.
"""

from __future__ import annotations

import faulthandler
import signal
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, KeyValue
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, Imu
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from prism_ros.config import ConfigError, PrismConfig
from prism_ros.core.camera import Camera
from prism_ros.core.controls import OdomBuffer
from prism_ros.core.imu import ImuBuffer
from prism_ros.core.types import StepResult
from prism_ros.pipeline import ImuControls, OdomControls, Pipeline, imu_noise_from_config
from prism_ros.ros import conversions as cv
from prism_ros.ros import inputs, params
from prism_ros.ros.diagnostics import NodeStats, Throttle, throttle_key
from prism_ros.ros.qos import latched_qos, reliable_qos, sensor_qos
from prism_ros.ros.frames import Frame, RgbdAssembler
from prism_ros.ros.imu_inputs import ImuStreamMonitor
from prism_ros.ros.outputs import PATH_MIN_PERIOD_S, MapOutputs, StateOutputs, map_output_rates
from prism_ros.ros.thread_load import CallbackTimes, ThreadLoad
from prism_ros.ros.work_queue import Command, WorkQueue

try:  # not on PyPI; present on a full ROS 2 install
    from tf2_msgs.msg import TFMessage  # type: ignore
except ImportError:  # pragma: no cover - depends on the install
    TFMessage = None

__all__ = ["PrismNode", "main", "NODE_NAME"]

NODE_NAME = "prism"
_IMAGE_QOS_MIN_DEPTH = 2  # reader history of the image subscriptions: max(this, queue_size) at start
_STAGE_ROWS = 1000  # per-stage timings kept for the diagnostics window (>= 5 s at 30 fps, then the newest)


class _Yield:
    """Awaitable that gives the executor back for one turn (an rclpy coroutine callback)."""

    def __await__(self):
        yield


class PrismNode(Node):
    """The ``prism`` node (topics and services: the module docstring).  ``filter_factory(cfg, camera, T_w_c0)``
    builds the filter (default: PrismFilter); ``warmup=False`` skips the kernel warm-up; a service waits
    ``command_timeout_s`` for the worker without holding up the executor.
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
        command_timeout_s: float = 60.0,
    ):
        super().__init__(node_name, context=context, cli_args=cli_args, parameter_overrides=parameter_overrides)
        self._throttle = Throttle(2.0)
        self._log = self.get_logger()
        self.cfg: PrismConfig = params.declare_all(self)  # raises ConfigError
        self.add_on_set_parameters_callback(self._on_set_parameters)
        cfg = self.cfg
        self.T_base_camera = cv.T_from_xyz_rpy_deg(cfg.T_base_camera_xyz_m, cfg.T_base_camera_rpy_deg)
        self._filter_factory = filter_factory
        self._command_timeout_s = float(command_timeout_s)

        # ---- shared with the worker ----------------------------------------------
        self._work = WorkQueue(cfg.queue_size)
        self._stats = NodeStats()
        self._load = ThreadLoad()  # CPU of the executor, filter and output threads, and the mesh process
        self._callbacks = CallbackTimes()  # time inside the subscription callbacks (they hold the GIL)
        # ---- input side (the sensor callback group) --------------------------------
        T_base_imu = cv.T_from_xyz_rpy_deg(cfg.T_base_imu_xyz_m, cfg.T_base_imu_rpy_deg)
        self._imu = ImuBuffer(
            T_I_C=np.linalg.inv(T_base_imu) @ self.T_base_camera,
            noise=imu_noise_from_config(cfg),
            init_window_s=cfg.imu_init_window_s,
            max_gap_s=cfg.imu_max_gap_s,
            pose_alignment_s=cfg.imu_pose_alignment_s,
        )
        self._imu_monitor = ImuStreamMonitor(cfg.imu_rate_hz, cfg.imu_max_gap_s, cfg.imu_rate_tolerance)
        self._odom = OdomBuffer()
        # ---- worker-owned ------------------------------------------------------
        self._pipeline: Optional[Pipeline] = None
        self._backend = None  # with backend_enabled: submaps, pose graph, loop closures (core.backend.worker.BackEnd)
        self._last_result: Optional[StepResult] = None
        self._last_header_stamp: Optional[Time] = None
        self._last_diag = time.monotonic()

        # ---- outputs and services ---------------------------------------------------
        self._state_out = StateOutputs(self, cfg, self.T_base_camera, TFMessage)  # pose, twist, odometry, path, tf
        self._map_out = MapOutputs(self, cfg)  # map cloud, occupancy, mesh (built on an output thread)
        self._map_out.on_error(lambda kind, text: self._error(kind, text))
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(5))
        self.pub_tf_static = self.create_publisher(TFMessage, "/tf_static", latched_qos(1)) if TFMessage else None
        if TFMessage is None and cfg.publish_tf:
            self._log.info("tf2_msgs is not importable: TF is not published (~/odometry carries the pose)")
        self._service_wake = self.create_guard_condition(lambda: None)  # a service's command finished
        # a group of their own: a pending (awaiting) service holds only its group, not the sensors'
        services = MutuallyExclusiveCallbackGroup()
        for kind, name in (("save", "~/save_map"), ("load", "~/load_map"), ("reset", "~/reset")):
            self.create_service(Trigger, name, self._service(kind), callback_group=services)
        self._timers: List[Any] = []
        self._make_timers()

        # ---- warm-up, then worker, then inputs -----------------------------------------
        if warmup:
            t0 = time.monotonic()
            cam = Camera(525.0, 525.0, 319.5, 239.5, 640, 480)
            Pipeline(cfg.replace(map_initial_blocks=256), cam, filter_factory=filter_factory).filter.warmup()
            cv.warm_up_kernels()  # the cloud's and the mesh's
            self._log.info(f"kernels warmed up in {time.monotonic() - t0:.1f} s")
        self._worker = threading.Thread(target=self._worker_main, name="prism_filter", daemon=True)
        self._worker.start()

        in_qos = sensor_qos(cfg.sensor_qos)
        # images: a reader history no deeper than the queue (at least 2, so that a colour and
        # its depth image can both wait), so that an executor that falls behind loses old
        # images in DDS instead of working through a hidden backlog (a deep reliable history
        # is one); the callbacks take the message info for the end-to-end latency
        img_qos = sensor_qos(cfg.sensor_qos, max(_IMAGE_QOS_MIN_DEPTH, cfg.queue_size))
        self.sub_color, self.sub_depth = (
            self.create_subscription(
                Image,
                f"camera/{name}/image_raw",
                self._callbacks.wrap(name, lambda m, i, s=s: self._rgbd.on_image(s, m, inputs.source_stamp_ns(i))),
                img_qos,
            )
            for s, name in enumerate(("color", "depth"))
        )
        self.sub_info = self.create_subscription(
            CameraInfo,
            "camera/color/camera_info",
            self._callbacks.wrap("info", lambda m: self._rgbd.on_info(m)),
            in_qos,
        )
        self._rgbd = RgbdAssembler(
            (self.sub_color.topic_name, self.sub_depth.topic_name, self.sub_info.topic_name),
            cfg.sync_slop_s,
            self._report,
            self._deliver,
        )
        self.sub_imu = self.sub_odom = None
        if cfg.control_mode == "imu":
            self.sub_imu = self.create_subscription(
                Imu, "imu", self._callbacks.wrap("imu", self._on_imu), sensor_qos(cfg.sensor_qos, 200)
            )
        elif cfg.control_mode == "odometry":
            self.sub_odom = self.create_subscription(
                Odometry, "odom", self._callbacks.wrap("odom", self._on_odom), sensor_qos(cfg.sensor_qos, 50)
            )
        if self.pub_tf_static is not None and cfg.publish_tf:
            self.pub_tf_static.publish(
                TFMessage(
                    transforms=[
                        cv.transform_stamped(
                            self.get_clock().now().to_msg(), cfg.base_frame, cfg.camera_frame, self.T_base_camera
                        )
                    ]
                )
            )
        self._log.info(
            f"prism_node ready: world '{cfg.world_frame}', base '{cfg.base_frame}', camera '{cfg.camera_frame}', "
            f"control {cfg.control_mode}, inputs {self.sub_color.topic_name} + {self.sub_depth.topic_name} + "
            f"{self.sub_info.topic_name} ({cfg.sensor_qos} QoS), sync_slop_s={cfg.sync_slop_s}, "
            f"queue_size={cfg.queue_size}"
        )

    # ------------------------------------------------------------------ params
    def _on_set_parameters(self, changes) -> SetParametersResult:
        try:
            new = params.updated_config(self.cfg, [(p.name, p.value) for p in changes])
        except ConfigError as e:
            return SetParametersResult(successful=False, reason=str(e))
        old, self.cfg = self.cfg, new
        self._rgbd.pairer.slop_s = new.sync_slop_s
        self._stats.count("dropped_queue", self._work.set_maxlen(new.queue_size))
        self._state_out.configure(new)
        self._map_out.cfg = new  # the cloud's settings; the builders restart on "reconfigure"
        if any(a != b for (_, a), (_, b) in zip(map_output_rates(new), map_output_rates(old))):
            self._make_timers()
        if new.mesh_color_mode != old.mesh_color_mode:
            self._work.request("reconfigure")
        return SetParametersResult(successful=True)

    def _make_timers(self) -> None:
        """The output timers: each asks the worker (which owns the map) for its output.  They run on the
        steady clock, also under ``use_sim_time``: an output's rate is a compute budget, so a replay at a
        quarter of real time still gets its outputs at their configured rates."""
        for t in self._timers:
            self.destroy_timer(t)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._timers = [
            self.create_timer(1.0 / hz, lambda k=kind: self._work.request(k), clock=steady)
            for kind, hz in map_output_rates(self.cfg)
            if hz > 0
        ]

    # ------------------------------------------------------------------ logging
    def _error(self, key: str, text: str) -> bool:
        line = self._throttle.admit(throttle_key(key, text), text)
        if line is not None:
            self._log.error(line)
        return line is not None

    def _warn(self, key: str, text: str) -> bool:
        line = self._throttle.admit(throttle_key(key, text), text)
        if line is not None:
            self._log.warning(line)
        return line is not None

    def _bad(self, key: str, text: str) -> None:
        self._stats.count("bad")
        self._error(key, text + "; frame skipped")

    def _report(self, level: str, key: str, text: str) -> None:
        {"bad": self._bad, "error": self._error, "warn": self._warn}[level](key, text)

    # --------------------------------------------------------------- callbacks
    def _deliver(self, item: Frame) -> None:
        self._stats.count("dropped_queue", self._work.put_frame(item))

    def _on_imu(self, msg: Imu) -> None:
        w, a, t = msg.angular_velocity, msg.linear_acceleration, cv.stamp_to_sec(msg.header.stamp)
        gyro, acc = [w.x, w.y, w.z], [a.x, a.y, a.z]
        v = self._imu_monitor.check(t, gyro, acc)  # nan / backwards / duplicate: dropped; gap / rate: flagged
        if v.code:
            self._stats.count("imu_" + v.code)
            self._warn("imu_" + v.code, f"{self.sub_imu.topic_name}: {v.message}")
        if not v.keep or not self._imu.add(t, gyro, acc=acc):
            self._stats.count("bad_imu")

    def _on_odom(self, msg: Odometry) -> None:
        self._odom.add(
            cv.stamp_to_sec(msg.header.stamp), cv.pose_to_T(msg.pose.pose), cv.msg_to_cov(msg.twist.covariance)
        )

    # ---------------------------------------------------------------- services
    def _service(self, kind: str) -> Callable:
        """An asynchronous handler of command ``kind``: the command waits for the worker in a
        thread of its own while the single-threaded executor goes on serving the sensors
        (cheaper per message than rclpy's multi-threaded executor)."""

        async def handle(request, response):
            if kind == "reset":
                self._rgbd.clear_requested = True
            outcome = []
            waiter = threading.Thread(
                target=lambda: (
                    outcome.append(self._work.run(kind, self._command_timeout_s)),
                    self._service_wake.trigger(),
                ),
                daemon=True,
            )
            waiter.start()
            while not outcome:
                await _Yield()  # resumed when the executor wakes (the waiter's guard condition)
            response.success, response.message = outcome[0]
            # separate call sites: rclpy refuses a second severity from one call site
            if response.success:
                self._log.info(f"{kind}: {response.message}")
            else:
                self._log.error(f"{kind}: {response.message}")
            return response

        return handle

    def _execute(self, cmd: Command) -> None:
        result, error = "", None
        try:
            result = {"reset": self._do_reset, "save": self._do_save, "load": self._do_load}[cmd.kind]()
        except Exception as e:  # reported to the caller
            error = f"{type(e).__name__}: {e}"
        if self._work.finish(cmd, result, error):
            self._log.warning(f"{cmd.kind} finished after its caller timed out: {error or result}")

    def _do_reset(self) -> str:
        pipe = self._pipeline
        if pipe is not None and (self._rgbd.camera is None or self._rgbd.camera == pipe.camera):
            pipe.reset(self.T_base_camera.copy())  # its controls drop their IMU / odometry samples
        else:
            self._pipeline = None  # rebuilt, with the current intrinsics, by the next frame
            self._imu.clear()
            self._odom.clear()
        self._after_restart()
        self._work.clear_frames()
        return "filter, map and path reset"

    def _after_restart(self, backend: bool = True) -> None:
        """The filter's world restarted: no result to extend, no cloud, an empty path, and (``backend``: unless the
        pipeline's step already told it) a new pose graph."""
        self._last_result = None
        if self._backend is not None and backend:
            self._backend.reset()
        self._map_out.frames_since_cloud = 0
        self._state_out.reset()

    def _do_save(self) -> str:
        if self._pipeline is None:
            raise RuntimeError("no map yet (no frame has been processed)")
        stamp = self._last_result.stamp if self._last_result is not None else 0.0
        return self._pipeline.save_map(
            params.save_map_path(self.cfg, stamp), extra={"stamp": stamp, "node": self.get_fully_qualified_name()}
        )

    def _do_load(self) -> str:
        path = self.cfg.load_map_path
        if not path:
            raise RuntimeError("parameter 'load_map_path' is empty")
        if self._pipeline is None:
            params.check_map_params(self.cfg)  # the file may have changed since it was set
            return f"map {path} will be loaded when the first frame starts the filter"
        m = self._pipeline.load_map(path, self.T_base_camera.copy())
        self._after_restart()
        return (
            f"loaded {path} ({m.n_blocks} blocks, {m.header().get('frames', 0)} frames); "
            "tracking restarts at the map origin"
        )

    # ------------------------------------------------------------------ worker
    def _worker_main(self) -> None:
        self._load.register_thread("filter")
        while True:
            work = self._work.take(PATH_MIN_PERIOD_S)
            if work is None:  # stopped
                return
            cmd, item, requests = work
            if cmd is not None:
                self._execute(cmd)
            if item is not None:
                try:
                    self._process(item)
                except Exception as e:
                    self._error("step", f"filter step failed at t={item.stamp:.6f}: {type(e).__name__}: {e}")
            else:
                self._state_out.publish_path(self._backend)
            if "reconfigure" in requests:
                self._map_out.configure(self.cfg)  # the builders restart with the new parameters
            for kind in ("cloud", "occupancy", "mesh"):
                if kind in requests:
                    self._publish_map_output(kind)
            if time.monotonic() - self._last_diag > self.cfg.diagnostics_period_s:
                self._diagnostics()

    def _start_pipeline(self, camera: Camera) -> None:
        controls = None
        if self.cfg.control_mode == "imu":
            controls = ImuControls(self._imu, self.cfg.control_max_dt_s, self.cfg.imu_bias_window_s)
        elif self.cfg.control_mode == "odometry":
            controls = OdomControls(self._odom, self.T_base_camera)
        if self._backend is not None:  # new intrinsics: a new back end
            self._backend.stop()
        self._backend = None
        if self.cfg.backend_enabled:  # (imported here: GTSAM loads only when used)
            from prism_ros.core.backend.worker import BackEnd

            self._backend = BackEnd(self.cfg, camera)
        self._pipeline = Pipeline(
            self.cfg,
            camera,
            self.T_base_camera.copy(),
            controls,
            sinks=[self._backend] if self._backend is not None else [],
            filter_factory=self._filter_factory,
            stats_maxlen=_STAGE_ROWS,
        )
        self._after_restart()
        if self.cfg.load_map_path:
            try:
                self._log.info(self._do_load())
            except Exception as e:
                self._error(
                    "load_map", f"could not load load_map_path: {type(e).__name__}: {e}; starting with an empty map"
                )
        self._log.info(
            f"filter started: {camera.width}x{camera.height}, fx={camera.fx:g} fy={camera.fy:g} "
            f"cx={camera.cx:g} cy={camera.cy:g}"
        )

    def _process(self, item: Frame) -> None:
        if self._pipeline is None:
            self._start_pipeline(item.camera)
        elif item.camera != self._pipeline.camera:
            return self._error(
                "camera_changed",
                f"camera_info changed to {item.camera} but the filter runs with "
                f"{self._pipeline.camera}; frame skipped (call ~/reset to restart with the new intrinsics)",
            )
        frame = self._rgbd.decode(item)
        if frame is None:  # reported
            return
        last = self._pipeline.prev.stamp if self._pipeline.prev is not None else None
        out = self._pipeline.process(frame)
        t = frame.stamp
        if out.was_reset:
            self._log.warning(f"input time jumped back from {last:.3f} to {t:.3f} s: resetting the filter")
            self._after_restart(backend=False)  # the back end saw the reset in this step
        if out.control_note:
            self._warn("control", out.control_note)
        if out.invalid:
            return self._bad("invalid_frame", f"frame at t={t:.6f} s refused by the filter: {out.skipped}")
        if out.result is None:
            return self._warn("order", f"{out.skipped}; skipped")
        res = out.result
        self._last_result, self._last_header_stamp = res, item.header_stamp
        self._map_out.frames_since_cloud += 1
        self._state_out.publish(res, item.header_stamp, self._backend)
        e2e_ms = (time.time_ns() - item.t_src_ns) * 1e-6 if item.t_src_ns is not None else None
        self._stats.frame(out.step_ms, (time.monotonic() - item.t_recv) * 1e3, e2e_ms, not res.tracking_ok)
        if not res.tracking_ok:
            self._warn("lost", f"tracking lost at t={t:.3f} s ({res.status}, inliers {res.inlier_ratio:.2f})")

    # ----------------------------------------------------------------- publish
    def _publish_map_output(self, kind: str) -> None:
        """Snapshot ~/map_cloud, ~/occupancy or ~/mesh for the output thread; the snapshot's cost on this
        thread goes into the diagnostics (``stage_<kind>_ms``), the build's into ``<kind>_build_ms_*``."""
        res = self._last_result
        if self._pipeline is None or self._last_header_stamp is None or res is None:
            return
        tsdf_map, T_w_c = self._pipeline.filter.map, res.T_w_c
        if self._backend is not None:  # the composed global map, in map_frame (none before the first keyframe)
            tsdf_map, T_w_c = self._backend.global_map(), self._backend.correction() @ res.T_w_c
            if tsdf_map is None:
                return
        try:  # (the occupancy window follows the camera)
            ms = self._map_out.request(kind, tsdf_map, self._last_header_stamp, tuple(T_w_c[:2, 3]))
        except Exception as e:
            return self._error(kind, f"~/{kind} failed: {type(e).__name__}: {e}")
        if ms is not None:
            self._stats.stage({"cloud": "map_cloud"}.get(kind, kind), ms)

    def _diagnostics(self) -> None:
        self._last_diag = time.monotonic()
        stages: Dict[str, float] = {}
        if self._pipeline is not None:
            stages = {k: v["mean"] for k, v in self._pipeline.stats.summary().items()}
            self._pipeline.stats.clear()
        status_text = self._last_result.status if self._last_result is not None else "no frame yet"
        line, status = self._stats.report(f"{self.get_name()}: filter", self._rgbd.pairer.dropped, status_text, stages)
        status.values += self._map_out.diagnostics(self._pipeline.filter.map if self._pipeline is not None else None)
        status.values += self._load_values()
        if self._backend is not None:
            status.values += [KeyValue(key=f"backend_{k}", value=f"{v:g}") for k, v in self._backend.figures().items()]
            if self._backend.error:
                self._error("backend", f"the back end stopped: {self._backend.error}")
            if self._backend.warning:
                self._warn("backend_store", f"back end: {self._backend.warning}")
        if line:
            self._log.info(line)
        try:
            self.pub_diag.publish(
                DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status])
            )
        except Exception:  # context shutting down
            pass

    def _load_values(self) -> List[KeyValue]:
        """``cpu_<thread>_pct`` (percent of one core: executor, filter, outputs, mesh process, other = Numba's
        workers and DDS) and per callback kind ``callback_<kind>_hz`` / ``_us_mean`` / ``_ms_per_s``."""
        if self._callbacks.thread_id is not None:
            self._load.register_thread("executor", self._callbacks.thread_id)
        self._load.register_thread("outputs", self._map_out.thread_id)
        self._load.register_child("mesh", self._map_out.mesh_pid)
        kv = [KeyValue(key=f"cpu_{k}_pct", value=f"{v:.1f}") for k, v in sorted(self._load.window().items())]
        for kind, (hz, us, ms_s) in sorted(self._callbacks.window().items()):
            kv += [
                KeyValue(key=f"callback_{kind}_hz", value=f"{hz:.1f}"),
                KeyValue(key=f"callback_{kind}_us_mean", value=f"{us:.0f}"),
                KeyValue(key=f"callback_{kind}_ms_per_s", value=f"{ms_s:.2f}"),
            ]
        return kv

    # ---------------------------------------------------------------- teardown
    @property
    def stats(self) -> Dict[str, int]:
        """Totals since start: processed, queue drops, sync drops, bad inputs, bad IMU samples."""
        return {**self._stats.totals(), "dropped_sync": self._rgbd.pairer.dropped}

    def stop_worker(self, timeout_s: float = 10.0) -> None:
        self._work.stop()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout_s)

    def destroy_node(self):
        self.stop_worker()
        self._map_out.stop()
        if self._backend is not None:
            self._backend.stop()
        return super().destroy_node()


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``prism_node`` and ``prism-ros node``; returns the exit status.

    ``argv`` may hold ROS arguments (``--ros-args -p name:=value --params-file f.yaml``, remaps
    ``-r camera/color/image_raw:=/my/topic``).
    """
    args = list(sys.argv) if argv is None else ["prism_node"] + list(argv)
    user_args = rclpy.utilities.remove_ros_args(args)[1:]
    if any(a in ("-h", "--help") for a in user_args):
        print(__doc__)
        print("usage: prism_node [--ros-args --params-file config/prism.yaml -p name:=value -r from:=to]")
        return 0
    if user_args:
        print(f"prism_node: ignoring non-ROS arguments {user_args} (use --ros-args ...)", file=sys.stderr)
    from prism_ros.ros.transport import use_default_profile

    use_default_profile()  # config/fastdds.xml unless the user has a profile; before rclpy.init
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 <pid>` prints every thread's stack (a hung node)
        faulthandler.register(signal.SIGUSR1, all_threads=True)
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
