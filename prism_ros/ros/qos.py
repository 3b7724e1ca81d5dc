"""QoS profiles used by the prism node and the player.

* Inputs (images, camera_info, IMU, odometry) use ``sensor_data`` (best effort,
  keep last 5; the node asks 200 for the IMU and 50 for odometry) by default, or
  ``reliable`` by parameter.  The node subscribes to the images with keep last
  max(2, queue_size) (either profile): a deep reader history would be a hidden backlog
  in front of its bounded queue.  A best-effort subscription matches a reliable
  publisher, so the player (which publishes reliably) works with either.
* ``~/map_cloud``, ``~/occupancy`` and ``~/mesh`` are reliable + transient_local (depth 1)
  so a late RViz gets the last one.
* Pose, twist, odometry and path are reliable, volatile.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

__all__ = ["SENSOR_QOS_CHOICES", "sensor_qos", "latched_qos", "reliable_qos"]

SENSOR_QOS_CHOICES = ("sensor_data", "reliable")


def sensor_qos(name: str = "sensor_data", depth: int = 5) -> QoSProfile:
    """QoS of the input subscriptions, by the ``sensor_qos`` parameter value."""
    if name == "sensor_data":
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=max(int(depth), 1),
            reliability=ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE,
        )
    if name == "reliable":
        return reliable_qos(depth)
    raise ValueError(f"unknown sensor_qos {name!r}; expected one of {', '.join(SENSOR_QOS_CHOICES)}")


def reliable_qos(depth: int = 10) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def latched_qos(depth: int = 1) -> QoSProfile:
    """Reliable + transient_local: late subscribers get the last ``depth`` messages."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )
