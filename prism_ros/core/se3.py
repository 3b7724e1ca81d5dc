"""SE(3) helpers.

Conventions (used everywhere in prism_ros):
  * ``T_a_b`` is a 4x4 homogeneous transform that maps points in frame b into frame a.
  * Tangent vectors are xi = (rho, phi) in R^6, translation first (ROS order).
  * Perturbations are on the right (body side): T = T_bar * Exp(xi).  A covariance
    "of T" is the covariance of that xi.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "hat",
    "exp",
    "log",
    "inv",
    "adjoint",
    "so3_exp",
    "so3_log",
    "quat_xyzw_from_R",
    "R_from_quat_xyzw",
    "cov_body_to_world",
    "cov_world_to_body",
    "make_T",
]

_EPS = 1e-10


def hat(w: np.ndarray) -> np.ndarray:
    """Skew-symmetric matrix [w]x such that hat(w) @ v == cross(w, v)."""
    return np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])


def so3_exp(phi: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(phi))
    K = hat(phi)
    if theta < 1e-8:
        return np.eye(3) + K + 0.5 * K @ K
    a = np.sin(theta) / theta
    b = (1.0 - np.cos(theta)) / theta**2
    return np.eye(3) + a * K + b * K @ K


def so3_log(R: np.ndarray) -> np.ndarray:
    c = np.clip((np.trace(R) - 1.0) * 0.5, -1.0, 1.0)
    theta = float(np.arccos(c))
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    if theta < 1e-6:
        return 0.5 * w
    if np.pi - theta < 1e-4:
        # Near pi: use the symmetric part, axis from the largest diagonal entry.
        B = 0.5 * (R + np.eye(3))
        k = int(np.argmax(np.diag(B)))
        axis = B[:, k] / np.sqrt(max(B[k, k], _EPS))
        if np.dot(axis, w) < 0:
            axis = -axis
        return axis / np.linalg.norm(axis) * theta
    return w * (theta / (2.0 * np.sin(theta)))


def _V(phi: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(phi))
    K = hat(phi)
    if theta < 1e-8:
        return np.eye(3) + 0.5 * K + K @ K / 6.0
    return np.eye(3) + (1.0 - np.cos(theta)) / theta**2 * K + (theta - np.sin(theta)) / theta**3 * K @ K


def exp(xi: np.ndarray) -> np.ndarray:
    """Exp: R^6 (rho, phi) -> SE(3)."""
    xi = np.asarray(xi, dtype=np.float64)
    T = np.eye(4)
    T[:3, :3] = so3_exp(xi[3:])
    T[:3, 3] = _V(xi[3:]) @ xi[:3]
    return T


def log(T: np.ndarray) -> np.ndarray:
    """Log: SE(3) -> R^6 (rho, phi)."""
    phi = so3_log(T[:3, :3])
    rho = np.linalg.solve(_V(phi), T[:3, 3])
    return np.concatenate([rho, phi])


def inv(T: np.ndarray) -> np.ndarray:
    Ti = np.eye(4)
    R = T[:3, :3]
    Ti[:3, :3] = R.T
    Ti[:3, 3] = -R.T @ T[:3, 3]
    return Ti


def adjoint(T: np.ndarray) -> np.ndarray:
    """Ad_T for (rho, phi) ordering: T Exp(xi) T^-1 = Exp(Ad_T xi)."""
    R = T[:3, :3]
    A = np.zeros((6, 6))
    A[:3, :3] = R
    A[3:, 3:] = R
    A[:3, 3:] = hat(T[:3, 3]) @ R
    return A


def make_T(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def quat_xyzw_from_R(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w), w >= 0, from a rotation matrix."""
    m = R
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    q = np.asarray(q, dtype=np.float64)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def R_from_quat_xyzw(q: np.ndarray) -> np.ndarray:
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def cov_body_to_world(T: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Right-perturbation covariance of T -> ROS PoseWithCovariance covariance ((x, y, z, rot_x, rot_y, rot_z) in
    the parent frame): with T = T_bar Exp(xi), delta_p = R rho and delta_theta = R phi, so Sigma_ros = J Sigma J^T,
    J = blkdiag(R, R).
    """
    R = T[:3, :3]
    J = np.zeros((6, 6))
    J[:3, :3] = R
    J[3:, 3:] = R
    out = J @ cov @ J.T
    return 0.5 * (out + out.T)


def cov_world_to_body(T: np.ndarray, cov_ros: np.ndarray) -> np.ndarray:
    """Inverse of :func:`cov_body_to_world`."""
    R = T[:3, :3]
    J = np.zeros((6, 6))
    J[:3, :3] = R.T
    J[3:, 3:] = R.T
    out = J @ cov_ros @ J.T
    return 0.5 * (out + out.T)
