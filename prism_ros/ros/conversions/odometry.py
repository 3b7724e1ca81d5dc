"""The per-step state messages: PoseWithCovarianceStamped, TwistWithCovarianceStamped,
nav_msgs/Odometry, the TF and nav_msgs/Path (conventions: :mod:`.geometry`)."""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import (
    PoseStamped,
    PoseWithCovariance,
    PoseWithCovarianceStamped,
    TransformStamped,
    TwistWithCovarianceStamped,
)
from nav_msgs.msg import Odometry, Path
from std_msgs.msg import Header

from prism_ros.ros.conversions.geometry import T_to_pose, camera_state_to_base, cov_to_msg, transform_stamped

__all__ = ["StateMessages", "state_messages", "path_message", "path_poses"]


class StateMessages(NamedTuple):
    """What the node publishes for one filter step (the TF is wrapped by the caller:
    tf2_msgs is optional)."""

    pose: PoseWithCovarianceStamped
    twist: TwistWithCovarianceStamped
    odom: Odometry
    tf: TransformStamped
    path_pose: PoseStamped


def state_messages(
    stamp: Time,
    T_w_c: np.ndarray,
    pose_cov_c: np.ndarray,
    velocity_c: np.ndarray,
    velocity_cov_c: np.ndarray,
    T_base_camera: np.ndarray,
    world_frame: str,
    base_frame: str,
    odom_cov_c: Optional[np.ndarray] = None,
) -> StateMessages:
    """The filter's camera state as the base frame's pose (parent ``world_frame``) and twist (child ``base_frame``)
    messages (:func:`camera_state_to_base`).  ``pose_cov_c`` goes into ``~/pose``; the Odometry message carries
    ``odom_cov_c`` (compounded since the last reset) when given, else the same covariance.
    """
    T_w_b, pose_cov, twist, twist_cov = camera_state_to_base(
        T_w_c, pose_cov_c, velocity_c, velocity_cov_c, T_base_camera
    )
    header = Header(stamp=stamp, frame_id=world_frame)
    pm = PoseWithCovarianceStamped(header=header)
    pm.pose.pose = T_to_pose(T_w_b)
    pm.pose.covariance = cov_to_msg(pose_cov)
    tm = TwistWithCovarianceStamped(header=Header(stamp=stamp, frame_id=base_frame))
    tw = tm.twist.twist
    tw.linear.x, tw.linear.y, tw.linear.z = (float(v) for v in twist[:3])
    tw.angular.x, tw.angular.y, tw.angular.z = (float(v) for v in twist[3:])
    tm.twist.covariance = cov_to_msg(twist_cov)
    om = Odometry(header=header, child_frame_id=base_frame, pose=pm.pose, twist=tm.twist)
    if odom_cov_c is not None:
        om.pose = PoseWithCovariance(
            pose=pm.pose.pose,
            covariance=cov_to_msg(
                camera_state_to_base(T_w_c, odom_cov_c, velocity_c, velocity_cov_c, T_base_camera)[1]
            ),
        )
    return StateMessages(
        pm,
        tm,
        om,
        transform_stamped(stamp, world_frame, base_frame, T_w_b),
        PoseStamped(header=header, pose=pm.pose.pose),
    )


def path_message(poses: Sequence[PoseStamped]) -> Path:
    """nav_msgs/Path of ``poses`` (at least one), stamped and framed as the newest."""
    last = poses[-1].header
    return Path(header=Header(stamp=last.stamp, frame_id=last.frame_id), poses=list(poses))


def path_poses(stamps: Sequence[Time], T_w_c: np.ndarray, T_base_camera: np.ndarray, frame: str) -> list:
    """PoseStamped of the base frame for camera poses ``T_w_c`` (N,4,4) in ``frame``, one per header stamp."""
    T_c_b = np.linalg.inv(np.asarray(T_base_camera, dtype=np.float64))
    return [
        PoseStamped(header=Header(stamp=st, frame_id=frame), pose=T_to_pose(np.asarray(T) @ T_c_b))
        for st, T in zip(stamps, T_w_c)
    ]
