"""Occupancy from the Gaussian-TSDF posterior, for planners (no ROS).

* :mod:`.probability`: P(occupied) = Phi(-mu / sigma) of voxels and world points, and the
  collision risk of a path (the contract of every figure below);
* :mod:`.free_space`: :class:`FreeSpaceLayer`, the space the camera has seen through in
  the occupancy height band, which the TSDF does not store (a map's ``free_space``);
* :mod:`.grid`: :class:`OccupancyGridBuilder`, the incremental 2-D occupancy grid of the height band.
"""

from .free_space import FREE_SUB, FreeSpaceLayer, free_space_probability_table
from .grid import OccupancyGrid2D, OccupancyGridBuilder
from .probability import (
    UNKNOWN_PROBABILITY,
    check_band,
    collision_probability,
    occupancy_probability,
    voxel_occupancy,
)

__all__ = [
    "FREE_SUB",
    "UNKNOWN_PROBABILITY",
    "FreeSpaceLayer",
    "free_space_probability_table",
    "voxel_occupancy",
    "occupancy_probability",
    "collision_probability",
    "OccupancyGrid2D",
    "OccupancyGridBuilder",
    "check_band",
]
