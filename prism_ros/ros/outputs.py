"""The node's outputs, each owning its publishers (no filter logic).

* :class:`StateOutputs`: ~/pose, ~/twist, ~/odometry, ~/path and /tf of each step;
* :class:`MapOutputs`: ~/map_cloud, ~/occupancy and ~/mesh with their incremental builders
  (:class:`prism_ros.core.occupancy.OccupancyGridBuilder`, :class:`prism_ros.core.mesh.BlockMesher`) and the
  per-block Marker cache; built on an output thread of their own from snapshots the filter's thread takes.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Deque, Dict, List, Optional, Tuple

import numpy as np
from diagnostic_msgs.msg import KeyValue
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped, TwistWithCovarianceStamped
from nav_msgs.msg import OccupancyGrid, Odometry, Path
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from prism_ros.core.mesh import BlockMesher
from prism_ros.core.occupancy import OccupancyGridBuilder
from prism_ros.core.surface_cloud import SurfaceCloudBuilder
from prism_ros.core.threads import lower_priority
from prism_ros.core.odom_covariance import OdomCovarianceAccumulator
from prism_ros.ros import conversions as cv
from prism_ros.ros.mesh_process import OUTPUT_NICE, mesh_marker_update, start_mesh_process
from prism_ros.ros.qos import latched_qos, reliable_qos

__all__ = ["StateOutputs", "MapOutputs", "PATH_MIN_PERIOD_S", "MAP_OUTPUT_RATES", "map_output_rates"]

PATH_MIN_PERIOD_S = 0.2  # ~/path carries up to path_max_length poses: publish it at <= 5 Hz

#: The map outputs (the kinds :meth:`MapOutputs.publish` takes) and the parameters of their rates.
MAP_OUTPUT_RATES = (
    ("cloud", "map_publish_rate_hz"),
    ("occupancy", "occupancy_publish_rate_hz"),
    ("mesh", "mesh_publish_rate_hz"),
)


#: How many mesh processes the node starts in all before it meshes in its own process: one that dies or fails
#: a build is replaced at the next update, up to this many.
MESH_PROCESS_STARTS = 3


def map_output_rates(cfg) -> Tuple[Tuple[str, float], ...]:
    """(kind, rate in Hz) of each map output; a rate <= 0 turns the output off."""
    return tuple((kind, getattr(cfg, name)) for kind, name in MAP_OUTPUT_RATES)


class _OutputCounters:
    """One map output's figures for the diagnostics."""

    def __init__(self):
        self.snapshot_ms = 0.0  # on the filter's thread
        self.build_ms_last = 0.0  # on the output thread: build and publish
        self.build_ms_sum = 0.0
        self.published = 0
        self.skipped = 0  # requests refused because the previous update was still being built
        self.window_published = 0
        self.window_t0 = time.monotonic()

    def rate_hz(self) -> float:
        """Updates published per second since the last call (restarts the window)."""
        now = time.monotonic()
        hz = self.window_published / max(now - self.window_t0, 1e-6)
        self.window_published, self.window_t0 = 0, now
        return hz


class MapOutputs:
    """~/map_cloud, ~/occupancy and ~/mesh, built beside the filter.

    :meth:`request` runs on the filter's thread (which owns the map): it copies what the output needs
    (the surface voxels of the blocks fused since the last cloud; the band's voxels of the changed
    occupancy columns, bounded; the volumes of the blocks to re-mesh) and hands the copy to the output
    thread, which builds the message and publishes it.  The map itself is never read off the filter's
    thread: each snapshot is taken between two filter steps.  A request while the previous update of
    the same output is still being built is skipped and counted (the changed blocks and columns wait for
    the next one); a frame is never delayed by an output.  With ``mesh_process`` the mesh is built and
    published by a process of its own (:mod:`prism_ros.ros.mesh_process`: its Python work would
    otherwise hold the interpreter lock the filter needs; one that dies is replaced, up to
    ``MESH_PROCESS_STARTS`` in all); if it cannot start, the output thread meshes instead.
    """

    KINDS = ("cloud", "occupancy", "mesh")

    def __init__(self, node, cfg, mesh_process: bool = True):
        self.pub_cloud = node.create_publisher(PointCloud2, "~/map_cloud", latched_qos(1))
        self.frames_since_cloud = 0  # the cloud goes out only when frames were fused since the last one
        self.pub_occupancy = node.create_publisher(OccupancyGrid, "~/occupancy", latched_qos(1))
        self.pub_mesh = node.create_publisher(MarkerArray, "~/mesh", latched_qos(1))
        self.counters: Dict[str, _OutputCounters] = {k: _OutputCounters() for k in self.KINDS}
        self._cv = threading.Condition()
        self._jobs: Dict[str, Callable[[], None]] = {}  # kind -> build-and-publish, waiting
        self._busy: Optional[str] = None  # the kind being built
        self._stopped = False
        self._error: Optional[Callable[[str, str], None]] = None
        self._mesh_topic = node.resolve_topic_name("~/mesh")
        self._mesh_node = (node.get_name() + "_mesh", node.get_namespace())  # the mesh process's ROS node
        self._mesh_failures = 0  # mesh processes that died or failed a build
        self._domain_id = node.context.get_domain_id()
        self._use_mesh_process = bool(mesh_process)
        self._mesh_proc = None  # started by the first mesh update
        self.mesh_triangles = 0
        self.configure(cfg)
        self._thread = threading.Thread(target=self._run, name="prism_outputs", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------- configuration
    def configure(self, cfg) -> None:
        """(Re)build the builders from the parameters (they restart from scratch); waits for the
        output thread to finish the update it is building."""
        with self._cv:
            while self._busy is not None:
                self._cv.wait()
            if "cloud" in self._jobs:  # its snapshot consumed the fused frames: the next request sends one
                self.frames_since_cloud = max(1, self.frames_since_cloud)
            self._jobs.clear()
            self.cfg = cfg
            self._stop_mesh_process()  # its cache belongs to the old builder
            # with the back end the outputs come from its composed map, at its voxel size, in map_frame
            vox = cfg.voxel_size_m * (cfg.backend_voxel_factor if cfg.backend_enabled else 1)
            self.frame_id = cfg.map_frame if cfg.backend_enabled else cfg.world_frame
            self.grid = OccupancyGridBuilder(
                vox,
                cfg.occupancy_min_z_m,
                cfg.occupancy_max_z_m,
                max(cfg.occupancy_resolution_m, vox) if cfg.occupancy_resolution_m > 0 else 0.0,
                cfg.occupancy_max_columns_per_update,
                cfg.occupancy_max_cells,
            )
            self.surface = SurfaceCloudBuilder(cfg.cloud_max_sdf_m, min_count=1)
            self.mesher = BlockMesher(cfg.mesh_max_blocks_per_update)
            self._markers: Dict[int, Tuple[int, object]] = {}  # slot -> (mesher version, Marker)

    def on_error(self, report: Callable[[str, str], None]) -> None:
        """``report(kind, text)`` is called (from the output thread) when building an output fails."""
        self._error = report

    # ---------------------------------------------------------------- requests
    def request(self, kind: str, tsdf_map, stamp, centre_xy: Tuple[float, float]) -> Optional[float]:
        """On the filter's thread: snapshot output ``kind`` and queue its build. Returns the
        snapshot's cost in ms; None when there was nothing new or the previous update is not done."""
        with self._cv:
            if kind in self._jobs or self._busy == kind:
                self.counters[kind].skipped += 1
                return None
        t0 = time.perf_counter()
        job = self._snapshot(kind, tsdf_map, stamp, centre_xy)
        if job is None:
            return None
        ms = (time.perf_counter() - t0) * 1e3
        self.counters[kind].snapshot_ms = ms
        with self._cv:
            self._jobs[kind] = job
            self._cv.notify_all()
        return ms

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._cv:
            self._stopped = True
            self._jobs.clear()
            self._cv.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)
        self._stop_mesh_process()

    def _stop_mesh_process(self) -> None:
        with self._cv:  # the output thread and stop() may both get here (stop's join timed out)
            proc, self._mesh_proc = self._mesh_proc, None
        if proc is not None:
            proc.stop()

    # ---------------------------------------------------------------- snapshots
    def _snapshot(self, kind: str, tsdf_map, stamp, centre_xy) -> Optional[Callable[[], None]]:
        header = Header(stamp=stamp, frame_id=self.frame_id)
        if kind == "cloud":
            if self.frames_since_cloud == 0:
                return None
            cfg = self.cfg
            if self.surface.max_abs_sdf_m != cfg.cloud_max_sdf_m:  # changed at runtime: start again
                self.surface = SurfaceCloudBuilder(cfg.cloud_max_sdf_m, min_count=1)
            delta, surf = self.surface.snapshot(tsdf_map), self.surface  # the blocks fused since the last one
            self.frames_since_cloud = 0
            return lambda: self._build_cloud(header, surf, delta, cfg)
        if kind == "occupancy":  # the grid window follows the robot
            snap, grid = self.grid.snapshot(tsdf_map), self.grid  # the changed columns' voxels, bounded
            return lambda: self._build_occupancy(header, grid, snap, centre_xy)
        snap, mesher, cfg = self.mesher.snapshot(tsdf_map), self.mesher, self.cfg
        return lambda: self._build_mesh(header, mesher, snap, cfg)

    # ------------------------------------------------------------------ builds
    def _run(self) -> None:
        lower_priority(OUTPUT_NICE)  # not Linux / not permitted: outputs still work
        while True:
            with self._cv:
                while not (self._stopped or self._jobs):
                    self._cv.wait()
                if self._stopped:
                    break
                kind = next(k for k in self.KINDS if k in self._jobs)
                job = self._jobs.pop(kind)
                self._busy = kind
            t0 = time.perf_counter()
            try:
                job()
                ok = True
            except Exception as e:  # a failed output never stops the others
                ok = False
                if self._error is not None:
                    self._error(kind, f"~/{kind} failed: {type(e).__name__}: {e}")
            ms = (time.perf_counter() - t0) * 1e3
            with self._cv:
                c = self.counters[kind]
                if ok:
                    c.build_ms_last, c.build_ms_sum = ms, c.build_ms_sum + ms
                    c.published += 1
                    c.window_published += 1
                self._busy = None
                self._cv.notify_all()
        self._stop_mesh_process()  # from the thread that started it (see MeshProcess)

    def _build_cloud(self, header, surf, delta, cfg) -> None:
        surf.apply(delta)
        msg = cv.surface_cloud(header, surf.cloud(), cfg.cloud_color_mode, cfg.map_min_sigma_m, cfg.truncation_m)
        self.pub_cloud.publish(msg)

    def _build_occupancy(self, header, grid, snap, centre_xy) -> None:
        grid.apply(snap)
        g = grid.grid(centre_xy)
        self.pub_occupancy.publish(cv.occupancy_grid_to_msg(header, g.data, g.origin_xy, g.resolution, g.z))

    def _build_mesh(self, header, mesher, snap, cfg) -> None:
        """Mesh the snapshot's blocks, rebuild only their markers, publish the whole mesh: in the mesh
        process when there is one, else here."""
        if self._use_mesh_process and self._mesh_proc is None and mesher is self.mesher:
            self._mesh_proc, why = start_mesh_process(self._mesh_topic, self._domain_id, *self._mesh_node)
            if self._stopped and self._mesh_proc is not None:  # the node stopped meanwhile
                self._stop_mesh_process()
                return
            if self._mesh_proc is None:
                self._use_mesh_process = False
                if self._error is not None:
                    self._error("mesh", f"~/mesh: no mesh process ({why}); meshing in the node's process")
        color = (cfg.mesh_color_mode, cfg.map_min_sigma_m, cfg.truncation_m)
        if self._mesh_proc is not None:
            stamp = (header.stamp.sec, header.stamp.nanosec)
            try:
                _, self.mesh_triangles = self._mesh_proc.build(stamp, header.frame_id, snap, color)
                return
            except RuntimeError as e:  # the process is gone: the next update starts a new one, from scratch
                self._stop_mesh_process()
                self._mesh_failures += 1
                self._use_mesh_process = self._mesh_failures < MESH_PROCESS_STARTS
                self.mesher = BlockMesher(cfg.mesh_max_blocks_per_update)
                then = (
                    f"a new one meshes the whole map at the next update ({self._mesh_failures} of "
                    f"{MESH_PROCESS_STARTS} failed)"
                    if self._use_mesh_process
                    else f"meshing in the node's process from now on ({MESH_PROCESS_STARTS} failed)"
                )
                raise RuntimeError(f"the mesh process failed ({e}); {then}")
        self.pub_mesh.publish(mesh_marker_update(mesher, self._markers, snap, header, color))
        self.mesh_triangles = int(mesher.last_stats.get("triangles", 0))

    # ------------------------------------------------------------ diagnostics
    @property
    def thread_id(self) -> Optional[int]:
        """Native id of the output thread."""
        return self._thread.native_id

    @property
    def mesh_pid(self) -> Optional[int]:
        """Process id of the mesh process while it runs."""
        proc = self._mesh_proc
        return proc.pid if proc is not None and proc.alive else None

    def diagnostics(self, tsdf_map=None) -> List[KeyValue]:
        """Per output: the snapshot's cost on the filter's thread, the build's cost on the output
        thread (last, mean), the published rate since the last call and the skipped updates."""
        kv = []
        with self._cv:
            for kind in self.KINDS:
                c = self.counters[kind]
                mean = c.build_ms_sum / c.published if c.published else 0.0
                kv += [
                    KeyValue(key=f"{kind}_snapshot_ms_last", value=f"{c.snapshot_ms:.2f}"),
                    KeyValue(key=f"{kind}_build_ms_last", value=f"{c.build_ms_last:.2f}"),
                    KeyValue(key=f"{kind}_build_ms_mean", value=f"{mean:.2f}"),
                    KeyValue(key=f"{kind}_rate_hz", value=f"{c.rate_hz():.3f}"),
                    KeyValue(key=f"{kind}_published_total", value=str(c.published)),
                    KeyValue(key=f"{kind}_skipped_total", value=str(c.skipped)),
                ]
        kv += [
            KeyValue(key="occupancy_columns_pending", value=str(self.grid.pending_columns)),
            KeyValue(key="mesh_blocks_pending", value=str(self.mesher.pending_blocks)),
            KeyValue(key="mesh_triangles", value=str(self.mesh_triangles)),
        ]
        fs = tsdf_map.free_space if tsdf_map is not None else None
        if fs is not None:
            kv += [
                KeyValue(key="free_space_carve_ms_last", value=f"{fs.last_ms:.2f}"),
                KeyValue(key="free_space_bricks", value=str(fs.n_bricks)),
                KeyValue(key="free_space_evicted_total", value=str(fs.evicted)),
            ]
        return kv


class StateOutputs:
    """~/pose, ~/twist, ~/odometry, ~/path and /tf of each step.

    ``~/pose`` carries the pose covariance relative to the map; ``~/odometry`` the step covariances compounded since
    the last :meth:`reset` (REP-105: grows with motion, faster while lost).  ~/path holds the last
    ``path_max_length`` poses, at most every 0.2 s: call :meth:`publish_path` when idle.

    With a back end (:class:`~prism_ros.core.backend.worker.BackEnd`), REP-105 in full: ``~/pose`` is the base in
    ``map_frame`` with its marginal covariance, /tf carries ``map_frame`` -> ``world_frame`` (the correction) beside
    ``world_frame`` -> ``base_frame``, ``~/odometry`` stays continuous in ``world_frame``, and ~/path is in
    ``map_frame``, re-published whole after every accepted loop closure.
    """

    def __init__(self, node, cfg, T_base_camera: np.ndarray, tf_type=None):
        out_qos = reliable_qos(10)
        self.cfg, self.T_base_camera = cfg, T_base_camera
        self.pub_pose = node.create_publisher(PoseWithCovarianceStamped, "~/pose", out_qos)
        self.pub_twist = node.create_publisher(TwistWithCovarianceStamped, "~/twist", out_qos)
        self.pub_odom = node.create_publisher(Odometry, "~/odometry", out_qos)
        self.pub_path = node.create_publisher(Path, "~/path", reliable_qos(1))
        self._tf_type = tf_type
        self.pub_tf = node.create_publisher(tf_type, "/tf", reliable_qos(100)) if tf_type is not None else None
        self._odom_cov = OdomCovarianceAccumulator()
        self._lock = threading.Lock()  # the path: the worker appends, parameters resize it
        self.path: Deque[PoseStamped] = deque(maxlen=cfg.path_max_length)
        #: with a back end: (header stamp, stamp s, T_odom_c) of each path pose, to re-pose them after a closure
        self._odom_path: Deque[tuple] = deque(maxlen=cfg.path_max_length)
        self._path_version = 0
        self._path_last_pub, self._path_dirty = 0.0, False

    def configure(self, cfg) -> None:
        with self._lock:
            if cfg.path_max_length != self.path.maxlen:
                self.path = deque(self.path, maxlen=cfg.path_max_length)
                self._odom_path = deque(self._odom_path, maxlen=cfg.path_max_length)
        self.cfg = cfg

    def reset(self) -> None:
        """The filter's world restarted: an empty path, the odom covariance restarts."""
        self._odom_cov.reset()
        with self._lock:
            self.path.clear()
            self._odom_path.clear()

    def publish(self, res, stamp, backend=None) -> None:
        cfg = self.cfg
        odom_cov = self._odom_cov.update(res.T_w_c, res.step_covariance, res.tracking_ok, origin_cov=res.pose_cov)
        m = cv.state_messages(
            stamp,
            res.T_w_c,
            res.pose_cov,
            res.velocity,
            res.velocity_cov,
            self.T_base_camera,
            cfg.world_frame,
            cfg.base_frame,
            odom_cov,
        )
        pose, path_pose, tfs = m.pose, m.path_pose, [m.tf]
        if backend is not None:  # the pose and the map -> odom TF from the same keyframe
            T_map_c, cov, T_map_odom = backend.pose_in_map(res.T_w_c, res.pose_cov)
            mm = cv.state_messages(
                stamp, T_map_c, cov, res.velocity, res.velocity_cov, self.T_base_camera, cfg.map_frame, cfg.base_frame
            )
            pose, path_pose = mm.pose, mm.path_pose
            tfs.append(cv.transform_stamped(stamp, cfg.map_frame, cfg.world_frame, T_map_odom))
        self.pub_pose.publish(pose)
        self.pub_twist.publish(m.twist)
        self.pub_odom.publish(m.odom)
        with self._lock:
            self.path.append(path_pose)
            if backend is not None:
                self._odom_path.append((stamp, float(res.stamp), np.asarray(res.T_w_c, dtype=np.float64)))
            self._path_dirty = True
        self.publish_path(backend)
        if self.pub_tf is not None and cfg.publish_tf:
            self.pub_tf.publish(self._tf_type(transforms=tfs))

    def publish_path(self, backend=None) -> None:
        """~/path when it changed and 0.2 s have passed; with ``backend``, every pose re-posed first when a loop
        closure (or a reset) moved the keyframes since the last time."""
        now = time.monotonic()
        if backend is not None and backend.version != self._path_version:
            self._path_version = backend.version
            with self._lock:
                entries = list(self._odom_path)
            if entries:
                T_map = backend.optimised_trajectory([e[1] for e in entries], np.stack([e[2] for e in entries]))
                poses = cv.path_poses([e[0] for e in entries], T_map, self.T_base_camera, self.cfg.map_frame)
                with self._lock:
                    self.path = deque(poses, maxlen=self.path.maxlen)
                    self._path_dirty, self._path_last_pub = True, 0.0
        with self._lock:
            if not self._path_dirty or now - self._path_last_pub < PATH_MIN_PERIOD_S or not self.path:
                return
            path = cv.path_message(self.path)
            self._path_last_pub, self._path_dirty = now, False
        self.pub_path.publish(path)
