"""Exports: TUM round trip, covariance conventions, PLY fields."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from prism_ros.tools import export


def _poses(n, seed=0):
    rng = np.random.default_rng(seed)
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, :3] = Rotation.random(n, random_state=rng).as_matrix()
    T[:, :3, 3] = rng.normal(size=(n, 3))
    return T


def test_tum_round_trip(tmp_path):
    T = _poses(50)
    stamps = 1403715274.302 + np.arange(50) / 30.0
    p = tmp_path / "sub" / "trajectory.tum"
    export.write_tum(str(p), stamps, T)
    lines = [l for l in p.read_text().splitlines() if not l.startswith("#")]
    assert len(lines) == 50 and all(len(l.split()) == 8 for l in lines)
    s2, T2 = export.read_tum(str(p))
    np.testing.assert_allclose(s2, stamps, atol=1e-6)
    np.testing.assert_allclose(T2, T, atol=1e-8)
    # quaternion is x y z w with w >= 0, and the same as evo reads it
    q = np.array([[float(x) for x in l.split()[4:]] for l in lines])
    assert np.all(q[:, 3] >= 0)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-8)


def test_tum_readable_by_evo(tmp_path):
    file_interface = pytest.importorskip("evo.tools.file_interface")
    T = _poses(10, 1)
    stamps = np.arange(10) / 30.0
    export.write_tum(str(tmp_path / "t.tum"), stamps, T)
    traj = file_interface.read_tum_trajectory_file(str(tmp_path / "t.tum"))
    np.testing.assert_allclose(np.stack(traj.poses_se3), T, atol=1e-8)


def test_cov_body_to_world_rotated_anisotropic():
    # Body-frame covariance: large along camera z (translation), small elsewhere.
    R = Rotation.from_euler("z", 90, degrees=True).as_matrix()  # camera x -> world y, camera y -> world -x
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = [5, 6, 7]
    C = np.diag([1.0, 4.0, 9.0, 0.01, 0.04, 0.09])
    W = export.cov_body_to_world(T, C)
    np.testing.assert_allclose(np.diag(W), [4.0, 1.0, 9.0, 0.04, 0.01, 0.09], atol=1e-12)
    se3 = pytest.importorskip("prism_ros.core.se3")
    np.testing.assert_allclose(W, se3.cov_body_to_world(T, C), atol=1e-12)
    # batched form agrees with the single one
    Ts, Cs = np.stack([T, np.eye(4)]), np.stack([C, C])
    Ws = export.cov_body_to_world(Ts, Cs)
    np.testing.assert_allclose(Ws[0], W)
    np.testing.assert_allclose(Ws[1], C)


def test_covariances_npz(tmp_path):
    n = 7
    T = _poses(n, 2)
    rng = np.random.default_rng(0)
    A = rng.normal(size=(n, 6, 6))
    P = A @ np.swapaxes(A, 1, 2)
    p = tmp_path / "covariances.npz"
    export.write_covariances(
        str(p), np.arange(n) * 0.1, T, P, rng.normal(size=(n, 6)), P * 2, tracking_ok=np.ones(n, bool)
    )
    d = export.read_covariances(str(p))
    for k in ("stamps", "T_w_c", "pose_cov", "pose_cov_ros", "velocity", "velocity_cov", "tracking_ok"):
        assert k in d
    assert d["pose_cov"].shape == (n, 6, 6) and d["pose_cov_ros"].shape == (n, 6, 6)
    np.testing.assert_allclose(d["pose_cov_ros"][3], export.cov_body_to_world(T[3], P[3]))
    np.testing.assert_allclose(d["velocity_cov"], 2 * P)


def test_ply_round_trip_with_fields(tmp_path):
    from plyfile import PlyData

    rng = np.random.default_rng(3)
    n = 1000
    surf = {
        "xyz": rng.normal(size=(n, 3)).astype(np.float32),
        "rgb": rng.integers(0, 256, size=(n, 3)).astype(np.uint8),
        "sigma": rng.uniform(0.001, 0.01, n).astype(np.float32),
        "sdf": rng.uniform(-0.01, 0.01, n).astype(np.float32),
        "count": rng.integers(1, 200, n).astype(np.float32),
    }
    p = tmp_path / "map.ply"
    assert export.write_ply(str(p), surf) == n
    ply = PlyData.read(str(p))
    names = ply["vertex"].data.dtype.names
    assert names == tuple(k for k, _ in export.PLY_FIELDS)
    assert ply["vertex"].count == n
    back = export.read_ply(str(p))
    for k in surf:
        np.testing.assert_array_equal(back[k], surf[k])


def test_ply_empty_and_defaults(tmp_path):
    p = tmp_path / "empty.ply"
    assert export.write_ply(str(p), {"xyz": np.zeros((0, 3))}) == 0
    assert export.read_ply(str(p))["xyz"].shape == (0, 3)
    export.write_ply(str(p), {"xyz": np.ones((2, 3))})
    back = export.read_ply(str(p))
    assert np.all(back["rgb"] == 128) and np.all(np.isnan(back["sigma"]))
