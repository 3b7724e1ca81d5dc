"""ROS 2 side of prism_ros: the ``prism`` node, the dataset/bag player and message helpers.

Importing this package does not import rclpy; the submodules do.
"""
