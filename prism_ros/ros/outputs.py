"""The node's outputs, each owning its publishers (no filter logic).

* :class:`StateOutputs`: ~/pose, ~/twist, ~/odometry, ~/path and /tf of each step;
* :class:`MapOutputs`: ~/map_cloud, ~/occupancy and ~/mesh with their incremental builders
  (:class:`prism_ros.core.occupancy.OccupancyGridBuilder`, :class:`prism_ros.core.mesh.BlockMesher`) and the
  per-block Marker cache; :meth:`MapOutputs.publish` runs on the filter thread (which owns the map).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Deque, Dict, List, Optional, Tuple

import numpy as np
from diagnostic_msgs.msg import KeyValue
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped, TwistWithCovarianceStamped
from nav_msgs.msg import OccupancyGrid, Odometry, Path
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from prism_ros.core.cloud_kernels import map_colors
from prism_ros.core.mesh import BlockMesher
from prism_ros.core.occupancy import OccupancyGridBuilder
from prism_ros.core.odom_covariance import OdomCovarianceAccumulator
from prism_ros.ros import conversions as cv
from prism_ros.ros.qos import latched_qos, reliable_qos

__all__ = ["StateOutputs", "MapOutputs", "PATH_MIN_PERIOD_S", "MAP_OUTPUT_RATES", "map_output_rates"]

PATH_MIN_PERIOD_S = 0.2  # ~/path carries up to path_max_length poses: publish it at <= 5 Hz

#: The map outputs (the kinds :meth:`MapOutputs.publish` takes) and the parameters of their rates.
MAP_OUTPUT_RATES = (
    ("cloud", "map_publish_rate_hz"),
    ("occupancy", "occupancy_publish_rate_hz"),
    ("mesh", "mesh_publish_rate_hz"),
)


def map_output_rates(cfg) -> Tuple[Tuple[str, float], ...]:
    """(kind, rate in Hz) of each map output; a rate <= 0 turns the output off."""
    return tuple((kind, getattr(cfg, name)) for kind, name in MAP_OUTPUT_RATES)


class MapOutputs:
    """~/map_cloud, ~/occupancy and ~/mesh; built from the map by the filter thread (which owns it)."""

    def __init__(self, node, cfg):
        self.pub_cloud = node.create_publisher(PointCloud2, "~/map_cloud", latched_qos(1))
        self.frames_since_cloud = 0  # the cloud goes out only when frames were fused since the last one
        self.pub_occupancy = node.create_publisher(OccupancyGrid, "~/occupancy", latched_qos(1))
        self.pub_mesh = node.create_publisher(MarkerArray, "~/mesh", latched_qos(1))
        self.configure(cfg)
        self._markers: Dict[int, Tuple[int, object]] = {}  # slot -> (mesher version, Marker)
        self.occupancy_ms = 0.0
        self.mesh_ms = 0.0

    def configure(self, cfg) -> None:
        """(Re)build the builders from the parameters (they restart from scratch)."""
        self.cfg = cfg
        self.grid = OccupancyGridBuilder(
            cfg.voxel_size_m,
            cfg.occupancy_min_z_m,
            cfg.occupancy_max_z_m,
            cfg.occupancy_resolution_m,
            cfg.occupancy_max_columns_per_update,
            cfg.occupancy_max_cells,
        )
        self.mesher = BlockMesher(cfg.mesh_max_blocks_per_update)
        self._markers = {}

    def publish(self, kind: str, tsdf_map, stamp, centre_xy: Tuple[float, float]) -> Optional[float]:
        """Publish output ``kind`` (``cloud``, ``occupancy`` or ``mesh``); its cost in ms, None
        when there was nothing new to publish."""
        if kind == "cloud":
            return self.publish_cloud(tsdf_map, stamp)
        if kind == "occupancy":  # the grid window follows the robot
            return self.publish_occupancy(tsdf_map, stamp, centre_xy)
        return self.publish_mesh(tsdf_map, stamp)

    def publish_cloud(self, tsdf_map, stamp) -> Optional[float]:
        """The near-surface voxels as ~/map_cloud, when frames were fused since the last one."""
        if self.frames_since_cloud == 0:
            return None
        t0, cfg = time.perf_counter(), self.cfg
        surf = tsdf_map.extract_surface(cfg.cloud_max_sdf_m, min_count=1)
        self.pub_cloud.publish(
            cv.surface_cloud(
                Header(stamp=stamp, frame_id=cfg.world_frame),
                surf,
                cfg.cloud_color_mode,
                cfg.map_min_sigma_m,
                cfg.truncation_m,
            )
        )
        self.frames_since_cloud = 0
        return (time.perf_counter() - t0) * 1e3

    def publish_occupancy(self, tsdf_map, stamp, centre_xy: Optional[Tuple[float, float]] = None) -> float:
        """Update (bounded) and publish the grid; returns its cost in ms."""
        t0 = time.perf_counter()
        self.grid.update(tsdf_map)
        g = self.grid.grid(centre_xy)
        header = Header(stamp=stamp, frame_id=self.cfg.world_frame)
        self.pub_occupancy.publish(cv.occupancy_grid_to_msg(header, g.data, g.origin_xy, g.resolution, g.z))
        self.occupancy_ms = (time.perf_counter() - t0) * 1e3
        return self.occupancy_ms

    def publish_mesh(self, tsdf_map, stamp) -> float:
        """Re-mesh the changed blocks (bounded), rebuild only their markers, publish; ms."""
        t0 = time.perf_counter()
        me = self.mesher
        me.update(tsdf_map)
        header = Header(stamp=stamp, frame_id=self.cfg.world_frame)
        cfg = self.cfg
        for slot in [s for s in self._markers if s not in me.meshes]:
            del self._markers[slot]
        for slot, mesh in me.meshes.items():
            ver = me.version[slot]
            cached = self._markers.get(slot)
            if cached is not None and cached[0] == ver:
                cached[1].header = header
                continue
            rgb = map_colors(
                mesh["rgb"], mesh["sigma"], cfg.mesh_color_mode, cfg.map_min_sigma_m, cfg.truncation_m
            )  # the ~/map_cloud colormap and range
            self._markers[slot] = (ver, cv.mesh_block_marker(header, mesh["verts"], mesh["faces"], rgb, slot))
        self.pub_mesh.publish(cv.mesh_marker_array(header, [m for _, m in self._markers.values()]))
        self.mesh_ms = (time.perf_counter() - t0) * 1e3
        return self.mesh_ms

    def diagnostics(self, tsdf_map=None) -> List[KeyValue]:
        fs = tsdf_map.free_space if tsdf_map is not None else None
        kv = [
            KeyValue(key="occupancy_ms_last", value=f"{self.occupancy_ms:.2f}"),
            KeyValue(key="occupancy_columns_pending", value=str(self.grid.pending_columns)),
            KeyValue(key="mesh_ms_last", value=f"{self.mesh_ms:.2f}"),
            KeyValue(key="mesh_blocks_pending", value=str(self.mesher.pending_blocks)),
            KeyValue(key="mesh_triangles", value=str(self.mesher.triangles)),
        ]
        if fs is not None:
            kv += [
                KeyValue(key="free_space_carve_ms_last", value=f"{fs.last_ms:.2f}"),
                KeyValue(key="free_space_bricks", value=str(fs.n_bricks)),
                KeyValue(key="free_space_evicted_total", value=str(fs.evicted)),
            ]
        return kv


class StateOutputs:
    """~/pose, ~/twist, ~/odometry, ~/path and /tf of each step.

    ``~/pose`` carries the pose covariance given the map; ``~/odometry`` the per-step covariances compounded since
    the last :meth:`reset` (REP-105: grows with motion, faster while lost).  ~/path holds the last
    ``path_max_length`` poses, at most every 0.2 s: call :meth:`publish_path` when idle.
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
        self._path_last_pub, self._path_dirty = 0.0, False

    def configure(self, cfg) -> None:
        with self._lock:
            if cfg.path_max_length != self.path.maxlen:
                self.path = deque(self.path, maxlen=cfg.path_max_length)
        self.cfg = cfg

    def reset(self) -> None:
        """The filter's world restarted: an empty path, the odom covariance restarts."""
        self._odom_cov.reset()
        with self._lock:
            self.path.clear()

    def publish(self, res, stamp) -> None:
        cfg = self.cfg
        odom_cov = self._odom_cov.update(res.T_w_c, res.pose_cov, res.tracking_ok, origin_cov=res.pose_cov)
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
        self.pub_pose.publish(m.pose)
        self.pub_twist.publish(m.twist)
        self.pub_odom.publish(m.odom)
        with self._lock:
            self.path.append(m.path_pose)
            self._path_dirty = True
        self.publish_path()
        if self.pub_tf is not None and cfg.publish_tf:
            self.pub_tf.publish(self._tf_type(transforms=[m.tf]))

    def publish_path(self) -> None:
        now = time.monotonic()
        with self._lock:
            if not self._path_dirty or now - self._path_last_pub < PATH_MIN_PERIOD_S or not self.path:
                return
            path = cv.path_message(self.path)
            self._path_last_pub, self._path_dirty = now, False
        self.pub_path.publish(path)
