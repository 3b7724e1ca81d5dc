"""ROS 2 side of prism_ros: the ``prism`` node, the dataset/bag player and message helpers.

:mod:`.node` (topics and services in its docstring) with :mod:`.params`, :mod:`.outputs`, :mod:`.diagnostics`,
:mod:`.work_queue`; input pairing and checks in :mod:`.frames`, :mod:`.sync`, :mod:`.inputs`, :mod:`.imu_inputs`;
:mod:`.conversions`; :mod:`.qos`, :mod:`.transport`, :mod:`.env`; :mod:`.player`.  Importing this package does
not import rclpy; the submodules do.
"""
