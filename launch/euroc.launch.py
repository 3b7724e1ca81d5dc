"""Replay a EuRoC MAV sequence (ASL folder) into the prism node with the IMU (control_mode
imu), on simulated time.

    ros2 launch prism_ros euroc.launch.py path:=/data/V1_02_medium
    ros2 launch prism_ros euroc.launch.py path:=/data/V1_02_medium rate:=0.5 frames:=400 rviz:=true

The player (``prism_player``, the same as ``prism-ros play``) computes the stereo depth and
publishes the rectified left image, the depth, camera_info, the IMU (frame imu_link) and
/clock.  The node loads config/prism.yaml, then the EuRoC overlay config/euroc.yaml:
control_mode imu, base_frame imu_link (the EuRoC body frame B, which is the IMU frame), the
rectified left camera in it, the filter settings of the offline runner's EuRoC hints and
reliable inputs; ~/odometry and ~/pose are the body's pose, ~/twist and the odometry twist
are in the body frame.  The player waits for the node's subscriptions (the node subscribes
after its kernel warm-up).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from prism_ros.ros.transport import fastdds_launch_actions

PACKAGE = "prism_ros"
NODE_EXECUTABLE = "prism_node"
PLAYER_EXECUTABLE = "prism_player"
PARAMS_FILE = os.path.join("config", "prism.yaml")
EUROC_PARAMS_FILE = os.path.join("config", "euroc.yaml")
FASTDDS_FILE = os.path.join("config", "fastdds.xml")
RVIZ_FILE = os.path.join("rviz", "prism.rviz")


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    args = [
        DeclareLaunchArgument("path", description="EuRoC sequence folder (ASL layout, holding mav0/)"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed relative to real time"),
        DeclareLaunchArgument("start", default_value="0", description="first frame"),
        DeclareLaunchArgument("frames", default_value="1000000000", description="number of frames to play"),
        DeclareLaunchArgument(
            "params_file", default_value=os.path.join(share, PARAMS_FILE), description="prism parameters"
        ),
        DeclareLaunchArgument(
            "euroc_params_file",
            default_value=os.path.join(share, EUROC_PARAMS_FILE),
            description="EuRoC overlay, loaded after params_file",
        ),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz with rviz/prism.rviz"),
        DeclareLaunchArgument(
            "rviz_config", default_value=os.path.join(share, RVIZ_FILE), description="RViz configuration"
        ),
    ]
    player = Node(
        package=PACKAGE,
        executable=PLAYER_EXECUTABLE,
        name="prism_player",
        output="screen",
        arguments=[
            LaunchConfiguration("path"),
            "--rate",
            LaunchConfiguration("rate"),
            "--start",
            LaunchConfiguration("start"),
            "--frames",
            LaunchConfiguration("frames"),
            "--imu-frame-id",
            "imu_link",  # = base_frame of config/euroc.yaml (T_base_imu identity)
        ],
    )
    node = Node(
        package=PACKAGE,
        executable=NODE_EXECUTABLE,
        name="prism",
        output="screen",
        emulate_tty=True,
        parameters=[
            LaunchConfiguration("params_file"),
            LaunchConfiguration("euroc_params_file"),
            {"use_sim_time": True},
        ],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", LaunchConfiguration("rviz_config")],
        parameters=[{"use_sim_time": True}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    # config/fastdds.xml for every process of this launch (RViz too) unless the user set a profile
    fastdds = fastdds_launch_actions(os.path.join(share, FASTDDS_FILE))
    return LaunchDescription(args + fastdds + [node, player, rviz])
