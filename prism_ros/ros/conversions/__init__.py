"""Message <-> numpy conversions for the prism node and the player, one module per message family.

:mod:`.image` (Image, CameraInfo), :mod:`.stamp` (Time), :mod:`.geometry` (Pose, Transform, covariances, the
camera -> base change and its conventions), :mod:`.odometry` (per-step pose, twist, Odometry, TF, Path),
:mod:`.cloud` (PointCloud2), :mod:`.occupancy` (OccupancyGrid), :mod:`.mesh` (MarkerArray), :mod:`.common`
(:class:`InputError`, raised by every decoder, and the bulk-data helpers).  The array maths is in
:mod:`prism_ros.core.cloud_kernels`; every module's names are re-exported here.
"""

from prism_ros.core.cloud_kernels import map_colors, sigma_colormap, unpack_rgb_float
from prism_ros.ros.conversions.cloud import make_map_cloud, read_cloud, surface_cloud, warm_up_kernels
from prism_ros.ros.conversions.common import InputError
from prism_ros.ros.conversions.geometry import (
    T_from_xyz_rpy_deg,
    T_to_pose,
    T_to_transform,
    camera_state_to_base,
    cov_to_msg,
    msg_to_cov,
    pose_to_T,
    transform_stamped,
)
from prism_ros.ros.conversions.image import (
    COLOR_ENCODINGS,
    DEPTH_ENCODINGS,
    camera_info_to_camera,
    camera_to_camera_info,
    depth_to_image,
    image_to_depth_m,
    image_to_rgb,
    rgb_to_image,
)
from prism_ros.ros.conversions.mesh import mesh_block_marker, mesh_marker_array
from prism_ros.ros.conversions.occupancy import occupancy_grid_to_msg
from prism_ros.ros.conversions.odometry import StateMessages, path_message, path_poses, state_messages
from prism_ros.ros.conversions.stamp import sec_to_stamp, stamp_to_ns, stamp_to_sec

__all__ = [
    "InputError",
    "COLOR_ENCODINGS",
    "DEPTH_ENCODINGS",
    "image_to_rgb",
    "image_to_depth_m",
    "rgb_to_image",
    "depth_to_image",
    "camera_info_to_camera",
    "camera_to_camera_info",
    "stamp_to_sec",
    "sec_to_stamp",
    "stamp_to_ns",
    "T_to_pose",
    "pose_to_T",
    "T_to_transform",
    "cov_to_msg",
    "msg_to_cov",
    "T_from_xyz_rpy_deg",
    "camera_state_to_base",
    "StateMessages",
    "state_messages",
    "transform_stamped",
    "path_message",
    "path_poses",
    "unpack_rgb_float",
    "sigma_colormap",
    "warm_up_kernels",
    "map_colors",
    "make_map_cloud",
    "surface_cloud",
    "read_cloud",
    "occupancy_grid_to_msg",
    "mesh_block_marker",
    "mesh_marker_array",
]
