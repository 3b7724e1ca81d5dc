"""prism_ros: PRISM probabilistic dense RGB-D SLAM (filter core, offline runner, ROS 2 node)."""

__version__ = "0.1.0"
