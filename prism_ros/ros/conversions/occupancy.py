"""nav_msgs/OccupancyGrid (``~/occupancy``) from a 2-D int8 grid."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from std_msgs.msg import Header

from prism_ros.ros.conversions.common import big_message, set_data

__all__ = ["occupancy_grid_to_msg"]


def occupancy_grid_to_msg(
    header: Header, data: np.ndarray, origin_xy: Sequence[float], resolution: float, origin_z: float = 0.0
):
    """(H, W) int8 grid (row = y, column = x; 0..100, -1 unknown) -> nav_msgs/OccupancyGrid, cell (0, 0)'s corner
    at ``origin_xy`` (in ``header.frame_id``), row major as the message defines.
    """
    from nav_msgs.msg import OccupancyGrid

    d = np.asarray(data)
    if d.ndim != 2 or d.size == 0:
        raise ValueError(f"expected a non-empty (H, W) grid, got shape {d.shape}")
    if d.dtype != np.int8:
        if d.min() < -1 or d.max() > 100:
            raise ValueError("occupancy values must be -1 or in 0..100")
        d = d.astype(np.int8)
    msg = big_message(OccupancyGrid)
    msg.header = header
    msg.info.map_load_time = header.stamp
    msg.info.resolution = float(resolution)
    msg.info.height, msg.info.width = int(d.shape[0]), int(d.shape[1])
    msg.info.origin.position.x = float(origin_xy[0])
    msg.info.origin.position.y = float(origin_xy[1])
    msg.info.origin.position.z = float(origin_z)
    msg.info.origin.orientation.w = 1.0
    set_data(msg, d, "b")
    return msg
