"""SE(3) helpers: round trips, adjoint, quaternions and the ROS covariance conversion."""

import numpy as np
import pytest

from prism_ros.core import se3

rng = np.random.default_rng(0)


def random_xi(scale=1.0):
    xi = rng.normal(size=6) * scale
    return xi


@pytest.mark.parametrize("scale", [1e-9, 1e-4, 0.3, 1.5])
def test_exp_log_round_trip(scale):
    for _ in range(50):
        xi = random_xi(scale)
        if np.linalg.norm(xi[3:]) > np.pi - 1e-3:
            continue
        T = se3.exp(xi)
        assert np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(T[:3, :3]), 1.0)
        assert np.allclose(se3.log(T), xi, atol=1e-9)


def test_log_near_pi():
    axis = np.array([1.0, 2.0, -0.5])
    axis /= np.linalg.norm(axis)
    xi = np.concatenate([[0.1, -0.2, 0.3], axis * (np.pi - 1e-6)])
    assert np.allclose(se3.exp(se3.log(se3.exp(xi))), se3.exp(xi), atol=1e-6)


def test_inverse_and_adjoint():
    T = se3.exp(random_xi(0.8))
    assert np.allclose(se3.inv(T) @ T, np.eye(4), atol=1e-12)
    xi = random_xi(0.1)
    # T Exp(xi) T^-1 == Exp(Ad_T xi)
    assert np.allclose(T @ se3.exp(xi) @ se3.inv(T), se3.exp(se3.adjoint(T) @ xi), atol=1e-10)


def test_quaternion_round_trip():
    for _ in range(100):
        R = se3.so3_exp(rng.normal(size=3))
        q = se3.quat_xyzw_from_R(R)
        assert q[3] >= 0 and np.isclose(np.linalg.norm(q), 1.0)
        assert np.allclose(se3.R_from_quat_xyzw(q), R, atol=1e-12)
    # known value: 90 deg about z
    q = se3.quat_xyzw_from_R(se3.so3_exp(np.array([0, 0, np.pi / 2])))
    assert np.allclose(q, [0, 0, np.sqrt(0.5), np.sqrt(0.5)])


def test_cov_body_to_world_matches_sampling():
    """A rotated, anisotropic body covariance must come out in the parent frame (ROS order)."""
    R = se3.so3_exp(np.array([0.3, -1.1, 0.7]))
    T = se3.make_T(R, np.array([1.0, 2.0, 3.0]))
    cov = np.diag([0.04**2, 0.01**2, 0.002**2, 0.03**2, 0.001**2, 0.01**2])
    xs = rng.multivariate_normal(np.zeros(6), cov, size=20000)
    dp, dth = [], []
    for xi in xs:
        Tp = T @ se3.exp(xi)
        dp.append(Tp[:3, 3] - T[:3, 3])
        dth.append(se3.so3_log(Tp[:3, :3] @ R.T))  # fixed-axis (world) rotation error
    emp = np.cov(np.hstack([dp, dth]).T)
    ros = se3.cov_body_to_world(T, cov)
    assert np.allclose(ros, emp, atol=3e-5 + 0.05 * np.abs(ros).max())
    # the largest position variance is along R's first column, not along world x
    w, V = np.linalg.eigh(ros[:3, :3])
    assert abs(abs(V[:, -1] @ R[:, 0]) - 1.0) < 1e-6
    assert np.allclose(se3.cov_world_to_body(T, ros), cov, atol=1e-15)
