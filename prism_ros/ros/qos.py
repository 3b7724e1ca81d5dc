"""QoS profiles used by the prism node and the player.

* Inputs: ``sensor_data`` (best effort, keep last 5; the node asks 200 for the IMU, 50 for odometry) by
  default, or ``reliable`` by parameter; the images with keep last max(2, queue_size), so no deep reader
  history hides a backlog.  Best effort matches the player's reliable publishers.
* ``~/map_cloud``, ``~/occupancy``, ``~/mesh``: reliable + transient_local (depth 1).
* Pose, twist, odometry and path: reliable, volatile.
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
