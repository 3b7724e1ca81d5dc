"""``prism-ros play``: publish an RGB-D dataset folder or a ROS 1 / ROS 2 bag as the prism node's inputs.

::

    prism-ros play PATH [--rate R] [--start K] [--frames N] [--loop] [options] [--ros-args ...]
    prism_player  PATH ...        (the same, as a console script / ``ros2 run prism_ros prism_player``)

Dataset frames go out as the node's colour, depth and camera_info inputs with ``/clock``; EuRoC recordings
(ASL folders, or ROS 1 bags with ``--calib``) as the rectified left image, the stereo depth and the
rectified camera_info plus ``imu``, and the player prints the matching node parameters.  Bags are
republished topic by topic.  Modules: :mod:`~prism_ros.ros.player.sources` (what is played),
:mod:`~prism_ros.ros.player.euroc` (node parameters for EuRoC), :mod:`~prism_ros.ros.player.loop` (the
publishing loop), :mod:`~prism_ros.ros.player.cli` (the arguments and :func:`main`).
"""

from .cli import build_parser, main
from .euroc import _xyz_rpy, euroc_node_hint, euroc_node_params
from .euroc import euroc_node_hint as _euroc_node_hint
from .loop import BAD_FRAME_LOG_PERIOD_S, Lateness, Player
from .sources import FRAME_RATE_NO_STAMPS, DatasetSource, EurocImuStream, dataset_stamp_offset, default_topic_map

__all__ = [
    "main",
    "build_parser",
    "dataset_stamp_offset",
    "default_topic_map",
    "euroc_node_params",
    "euroc_node_hint",
    "FRAME_RATE_NO_STAMPS",
    "BAD_FRAME_LOG_PERIOD_S",
    "DatasetSource",
    "EurocImuStream",
    "Lateness",
    "Player",
    "_euroc_node_hint",
    "_xyz_rpy",
]
