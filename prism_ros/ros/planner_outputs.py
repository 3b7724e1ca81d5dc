"""~/occupancy (nav_msgs/OccupancyGrid) and ~/mesh (visualization_msgs/MarkerArray) for the node.

Owns the two transient-local publishers, the incremental builders
(:class:`prism_ros.core.occupancy.OccupancyGridBuilder`, :class:`prism_ros.core.mesh.BlockMesher`),
the per-block Marker cache and the cost figures for the diagnostics.  The node calls
:meth:`PlannerOutputs.publish_occupancy` / :meth:`PlannerOutputs.publish_mesh` from its
filter thread (which owns the map) when the rate timers ask for them.
"""
from __future__ import annotations

import time
from typing import Dict, List, Optional, Tuple

from diagnostic_msgs.msg import KeyValue
from nav_msgs.msg import OccupancyGrid
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from prism_ros.core.mesh import BlockMesher
from prism_ros.core.occupancy import OccupancyGridBuilder
from prism_ros.ros import conversions as cv
from prism_ros.ros.qos import latched_qos

__all__ = ["PlannerOutputs"]


class PlannerOutputs:
    def __init__(self, node, cfg):
        self.pub_occupancy = node.create_publisher(OccupancyGrid, "~/occupancy", latched_qos(1))
        self.pub_mesh = node.create_publisher(MarkerArray, "~/mesh", latched_qos(1))
        self.configure(cfg)
        self._markers: Dict[int, Tuple[int, object]] = {}  # slot -> (mesher version, Marker)
        self.occupancy_ms = 0.0
        self.mesh_ms = 0.0

    def configure(self, cfg) -> None:
        """(Re)build the builders from the parameters (they restart from scratch)."""
        self.cfg = cfg
        self.grid = OccupancyGridBuilder(cfg.voxel_size_m, cfg.occupancy_min_z_m, cfg.occupancy_max_z_m,
                                         cfg.occupancy_resolution_m, cfg.occupancy_max_columns_per_update,
                                         cfg.occupancy_max_cells)
        self.mesher = BlockMesher(cfg.mesh_max_blocks_per_update)
        self._markers = {}

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
            if cfg.mesh_color_mode == "rgb":
                rgb = mesh["rgb"]
            else:  # the ~/map_cloud colormap and range
                lo = max(cfg.map_min_sigma_m, 1e-4)
                rgb = cv.sigma_colormap(mesh["sigma"], lo, max(cfg.truncation_m * 0.5, 4.0 * lo))
            self._markers[slot] = (ver, cv.mesh_block_marker(header, mesh["verts"], mesh["faces"], rgb, slot))
        self.pub_mesh.publish(cv.mesh_marker_array(header, [m for _, m in self._markers.values()]))
        self.mesh_ms = (time.perf_counter() - t0) * 1e3
        return self.mesh_ms

    def diagnostics(self, tsdf_map=None) -> List[KeyValue]:
        fs = getattr(tsdf_map, "free_space", None)
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
