"""Replay a dataset folder or a bag into the prism node, on simulated time.

    ros2 launch prism_ros replay.launch.py path:=/data/rgbd_dataset_freiburg1_xyz rate:=0.5
    ros2 launch prism_ros replay.launch.py path:=/data/7scenes_redkitchen frames:=300 rate:=0.15 rviz:=true

The player (``prism_player``, the same as ``prism-ros play``) publishes the
node's inputs and /clock; the node runs with use_sim_time:=true.  The player
waits for the node's subscriptions (the node subscribes after its kernel warm-up).
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
FASTDDS_FILE = os.path.join("config", "fastdds.xml")
RVIZ_FILE = os.path.join("rviz", "prism.rviz")


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    args = [
        DeclareLaunchArgument(
            "path", description="dataset folder (TUM, 7-Scenes, EuRoC), 'synthetic', a ROS 1 .bag or a ROS 2 bag folder"
        ),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed relative to real time"),
        DeclareLaunchArgument("start", default_value="0", description="first frame"),
        DeclareLaunchArgument("frames", default_value="1000000000", description="number of frames to play"),
        DeclareLaunchArgument(
            "params_file", default_value=os.path.join(share, PARAMS_FILE), description="prism parameters"
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
        ],
    )
    node = Node(
        package=PACKAGE,
        executable=NODE_EXECUTABLE,
        name="prism",
        output="screen",
        emulate_tty=True,
        # reliable inputs: the player publishes reliably; a replay should see every frame (with
        # config/fastdds.xml the default best-effort inputs lose none on one machine either)
        parameters=[LaunchConfiguration("params_file"), {"use_sim_time": True, "sensor_qos": "reliable"}],
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
