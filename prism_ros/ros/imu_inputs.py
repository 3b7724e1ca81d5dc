"""Bad-input checks of the drone path (IMU stream, stereo pairs), gathered for the node (no rclpy).

The node logs (throttled) and counts what they return (diagnostics ``imu_<code>_total``).

* :class:`ImuStreamMonitor` (:mod:`prism_ros.core.imu.monitor`): ``nan``, ``backwards``, ``duplicate``
  dropped; ``gap`` and ``rate`` flagged and kept.
* :func:`check_stereo_pair` / :func:`check_exposure` (:mod:`prism_ros.core.stereo`): unusable pairs.
"""

from __future__ import annotations

from prism_ros.core.imu import DROP_CODES, ImuStreamMonitor, ImuVerdict
from prism_ros.core.stereo import check_exposure, check_stereo_pair

__all__ = ["DROP_CODES", "ImuVerdict", "ImuStreamMonitor", "check_exposure", "check_stereo_pair"]
