"""ROS 2 side of prism_ros: the ``prism`` node, the dataset/bag player and message helpers.

* :mod:`.node`: the node (topics and services in its docstring); :mod:`.params` its
  parameters, :mod:`.outputs` its publishers, :mod:`.diagnostics` its statistics,
  :mod:`.work_queue` the hand-over to its worker thread;
* :mod:`.frames`, :mod:`.sync`, :mod:`.inputs`, :mod:`.imu_inputs`: pairing and checking inputs;
* :mod:`.conversions`: message <-> numpy, one module per message family;
* :mod:`.qos`, :mod:`.transport`, :mod:`.env`: QoS profiles, the Fast DDS profile, process
  environments; :mod:`.player`: the player.

Importing this package does not import rclpy; the submodules do.
"""
