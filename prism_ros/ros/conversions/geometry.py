"""geometry_msgs Pose / Transform and 6x6 covariances in the ROS layout; the camera -> base change.

Conventions: ``T_a_b`` (4x4) maps points in frame b into frame a; the filter's covariances are of
xi = (rho, phi) in T = T_bar Exp(xi) (right perturbation); ROS PoseWithCovariance takes (x, y, z, rot_x,
rot_y, rot_z) in the parent frame, Sigma_ros = J Sigma J^T, J = blkdiag(R, R)
(:func:`prism_ros.core.se3.cov_body_to_world`); ROS TwistWithCovariance is in the child frame, (vx vy vz wx wy wz).
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, Transform, TransformStamped
from std_msgs.msg import Header

from prism_ros.core import se3

__all__ = [
    "T_to_pose",
    "pose_to_T",
    "T_to_transform",
    "transform_stamped",
    "cov_to_msg",
    "msg_to_cov",
    "T_from_xyz_rpy_deg",
    "camera_state_to_base",
]


def T_to_pose(T: np.ndarray) -> Pose:
    """4x4 -> Pose (position, unit quaternion)."""
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in T[:3, 3])
    q = se3.quat_xyzw_from_R(T[:3, :3])
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (float(v) for v in q)
    return p


def pose_to_T(p: Pose) -> np.ndarray:
    """Pose -> 4x4."""
    T = np.eye(4)
    T[:3, :3] = se3.R_from_quat_xyzw([p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w])
    T[:3, 3] = [p.position.x, p.position.y, p.position.z]
    return T


def T_to_transform(T: np.ndarray) -> Transform:
    """4x4 -> Transform (the same numbers as :func:`T_to_pose`)."""
    p = T_to_pose(T)
    t = Transform()
    t.translation.x, t.translation.y, t.translation.z = p.position.x, p.position.y, p.position.z
    t.rotation = p.orientation
    return t


def transform_stamped(stamp: Time, parent: str, child: str, T_parent_child: np.ndarray) -> TransformStamped:
    """The TF of ``child`` in ``parent`` at ``stamp``."""
    ts = TransformStamped()
    ts.header = Header(stamp=stamp, frame_id=parent)
    ts.child_frame_id = child
    ts.transform = T_to_transform(T_parent_child)
    return ts


def cov_to_msg(cov: np.ndarray) -> list:
    """6x6 -> 36 floats, row-major (the layout of PoseWithCovariance.covariance), symmetrised."""
    c = np.asarray(cov, dtype=np.float64)
    if c.shape != (6, 6):
        raise ValueError(f"expected 6x6 covariance, got {c.shape}")
    c = 0.5 * (c + c.T)
    return [float(v) for v in c.reshape(-1)]


def msg_to_cov(values: Sequence[float]) -> np.ndarray:
    """36 floats, row-major -> 6x6."""
    return np.asarray(values, dtype=np.float64).reshape(6, 6)


def T_from_xyz_rpy_deg(xyz: Sequence[float], rpy_deg: Sequence[float]) -> np.ndarray:
    """4x4 from a translation and fixed-axis roll, pitch, yaw (R = Rz(yaw) Ry(pitch) Rx(roll))."""
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("xyz", np.asarray(rpy_deg, dtype=np.float64), degrees=True).as_matrix()
    T[:3, 3] = np.asarray(xyz, dtype=np.float64)
    return T


def camera_state_to_base(
    T_w_c: np.ndarray,
    pose_cov_c: np.ndarray,
    velocity_c: np.ndarray,
    velocity_cov_c: np.ndarray,
    T_base_camera: np.ndarray,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The filter's camera state -> the base frame's pose and twist, ROS conventions:
    ``(T_w_b, pose_cov_ros, twist_b, twist_cov_b)`` with ``T_w_b = T_w_c inv(T_base_camera)``.

    Right perturbations map by ``Ad = Ad(T_base_camera)``: the base's covariance is Ad Sigma_c Ad^T and the ROS
    pose covariance ``cov_body_to_world(T_w_b, Ad Sigma_c Ad^T)``; the twist V_b = Ad V_c (base frame, ROS order).
    """
    T_b_c = np.asarray(T_base_camera, dtype=np.float64)
    Ad = se3.adjoint(T_b_c)
    T_w_b = np.asarray(T_w_c, dtype=np.float64) @ se3.inv(T_b_c)
    cov_b = Ad @ np.asarray(pose_cov_c, dtype=np.float64) @ Ad.T
    pose_cov_ros = se3.cov_body_to_world(T_w_b, cov_b)
    twist_b = Ad @ np.asarray(velocity_c, dtype=np.float64)
    tc = Ad @ np.asarray(velocity_cov_c, dtype=np.float64) @ Ad.T
    return T_w_b, pose_cov_ros, twist_b, 0.5 * (tc + tc.T)
