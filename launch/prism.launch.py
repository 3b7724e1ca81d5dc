"""Launch the prism node with its params file and input remaps.

    ros2 launch prism_ros prism.launch.py
    ros2 launch prism_ros prism.launch.py color_topic:=/camera/color/image_raw \
        depth_topic:=/camera/aligned_depth_to_color/image_raw info_topic:=/camera/color/camera_info rviz:=true

Arguments: params_file (default: share/prism_ros/config/prism.yaml), use_sim_time,
color_topic, depth_topic, info_topic, imu_topic, odom_topic, rviz, rviz_config.
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
PARAMS_FILE = os.path.join("config", "prism.yaml")
FASTDDS_FILE = os.path.join("config", "fastdds.xml")
RVIZ_FILE = os.path.join("rviz", "prism.rviz")


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    args = [
        DeclareLaunchArgument(
            "params_file",
            default_value=os.path.join(share, PARAMS_FILE),
            description="prism parameters (ROS 2 params file)",
        ),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false", description="use /clock (true for bag / dataset replay)"
        ),
        DeclareLaunchArgument(
            "color_topic", default_value="camera/color/image_raw", description="colour image topic (rgb8, bgr8, mono8)"
        ),
        DeclareLaunchArgument(
            "depth_topic",
            default_value="camera/depth/image_raw",
            description="depth image topic registered to colour (16UC1 mm or 32FC1 m)",
        ),
        DeclareLaunchArgument(
            "info_topic", default_value="camera/color/camera_info", description="colour camera_info topic"
        ),
        DeclareLaunchArgument("imu_topic", default_value="imu", description="IMU topic (control_mode: imu)"),
        DeclareLaunchArgument(
            "odom_topic", default_value="odom", description="odometry topic (control_mode: odometry)"
        ),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz with rviz/prism.rviz"),
        DeclareLaunchArgument(
            "rviz_config", default_value=os.path.join(share, RVIZ_FILE), description="RViz configuration"
        ),
    ]
    node = Node(
        package=PACKAGE,
        executable=NODE_EXECUTABLE,
        name="prism",
        output="screen",
        emulate_tty=True,
        parameters=[LaunchConfiguration("params_file"), {"use_sim_time": LaunchConfiguration("use_sim_time")}],
        remappings=[
            ("camera/color/image_raw", LaunchConfiguration("color_topic")),
            ("camera/depth/image_raw", LaunchConfiguration("depth_topic")),
            ("camera/color/camera_info", LaunchConfiguration("info_topic")),
            ("imu", LaunchConfiguration("imu_topic")),
            ("odom", LaunchConfiguration("odom_topic")),
        ],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", LaunchConfiguration("rviz_config")],
        parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    # config/fastdds.xml for every process of this launch (RViz too) unless the user set a profile
    fastdds = fastdds_launch_actions(os.path.join(share, FASTDDS_FILE))
    return LaunchDescription(args + fastdds + [node, rviz])
