"""Bad-input checks of the drone path (IMU stream, stereo pairs), gathered for the node: pure
functions and small classes, no rclpy, so the node only logs (throttled) and counts what they
return (diagnostics ``imu_<code>_total``).

* :class:`ImuStreamMonitor` (:mod:`prism_ros.core.imu.monitor`) flags each IMU sample:
  ``nan``, ``backwards`` and ``duplicate`` are dropped; ``gap`` (no IMU control across it)
  and ``rate`` (measured rate off the declared one) are kept.
* :func:`check_stereo_pair` / :func:`check_exposure` (:mod:`prism_ros.core.stereo`, where the
  EuRoC readers use them): a pair with an image missing or of the wrong size, and black or
  saturated images (the frame is skipped: no stereo depth).
"""

from __future__ import annotations

from prism_ros.core.imu import DROP_CODES, ImuStreamMonitor, ImuVerdict
from prism_ros.core.stereo import check_exposure, check_stereo_pair

__all__ = ["DROP_CODES", "ImuVerdict", "ImuStreamMonitor", "check_exposure", "check_stereo_pair"]
