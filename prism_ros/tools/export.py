"""Writers (and readers) for the offline runner's outputs (the table: docs/offline.md, "Outputs").

* ``trajectory.tum`` / ``groundtruth.tum``: ``t tx ty tz qx qy qz qw`` per frame (camera-to-world
  ``T_w_c``, Hamilton quaternion x y z w), readable by ``evo_ape tum``.
* ``covariances.npz``: ``stamps`` (N,), ``T_w_c`` (N,4,4), ``pose_cov`` (N,6,6) of the right perturbation
  ``T = T_w_c Exp(xi)``, ``xi = (rho, phi)``, relative to the map; ``pose_cov_ros`` (N,6,6) the same in the world
  frame, ROS order; ``step_cov`` (N,6,6) the step's from the previous frame; ``error_cov`` and
  ``error_transition`` (N,12,12), the error state that gives any k-frame covariance
  (:func:`prism_ros.core.uncertainty.lag_covariances`); ``velocity`` (N,6) and ``velocity_cov`` (N,6,6): the body
  twist (vx vy vz wx wy wz), child frame.
* ``map.ply``: binary little-endian near-surface voxels: ``x y z`` (float32, world, m), ``red green blue``
  (uint8), ``sigma``, ``sdf`` (float32, m), ``count`` (float32).
* ``mesh.ply``: binary little-endian mesh of the zero level set (:class:`prism_ros.core.mesh.BlockMesher`):
  vertex ``x y z``, ``nx ny nz`` (towards free space), ``red green blue``, ``sigma``; face
  ``vertex_indices`` (int32 list, counter-clockwise seen from free space).
"""

from __future__ import annotations

import os
from typing import Dict, Sequence, Tuple

import numpy as np

from prism_ros.datasets.textfile import data_lines

__all__ = [
    "write_tum",
    "read_tum",
    "cov_body_to_world",
    "write_covariances",
    "read_covariances",
    "write_ply",
    "read_ply",
    "write_mesh_ply",
    "read_mesh_ply",
    "PLY_FIELDS",
]

PLY_FIELDS = (
    ("x", "f4"),
    ("y", "f4"),
    ("z", "f4"),
    ("red", "u1"),
    ("green", "u1"),
    ("blue", "u1"),
    ("sigma", "f4"),
    ("sdf", "f4"),
    ("count", "f4"),
)


def _quat_xyzw(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R).as_quat()  # x y z w


def write_tum(path: str, stamps: Sequence[float], T_w_c) -> None:
    """Write (N,4,4) camera-to-world poses as a TUM trajectory file."""
    T = np.asarray(T_w_c, dtype=np.float64).reshape(-1, 4, 4)
    stamps = np.asarray(stamps, dtype=np.float64).reshape(-1)
    if len(stamps) != len(T):
        raise ValueError(f"{len(stamps)} stamps for {len(T)} poses")
    q = _quat_xyzw(T[:, :3, :3]) if len(T) else np.zeros((0, 4))
    q = np.where(q[:, 3:4] < 0, -q, q)  # canonical sign: qw >= 0
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("# timestamp tx ty tz qx qy qz qw  (camera-to-world T_w_c, metres)\n")
        for s, Ti, qi in zip(stamps, T, q):
            t = Ti[:3, 3]
            f.write(f"{s:.9f} {t[0]:.9f} {t[1]:.9f} {t[2]:.9f} {qi[0]:.9f} {qi[1]:.9f} {qi[2]:.9f} {qi[3]:.9f}\n")


def read_tum(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """Read a TUM trajectory file: returns ``(stamps (N,), T (N,4,4))``."""
    from scipy.spatial.transform import Rotation

    rows = []
    for n, line in data_lines(path):
        vals = [float(x) for x in line.replace(",", " ").split()]
        if len(vals) != 8:
            raise ValueError(f"{path}:{n}: expected 8 values per line, got {len(vals)}: {line!r}")
        rows.append(vals)
    a = np.array(rows, dtype=np.float64).reshape(-1, 8)
    T = np.tile(np.eye(4), (len(a), 1, 1))
    if len(a):
        T[:, :3, :3] = Rotation.from_quat(a[:, 4:8]).as_matrix()
        T[:, :3, 3] = a[:, 1:4]
    return a[:, 0], T


def cov_body_to_world(T_w_c: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Right-perturbation (body) pose covariance -> ROS world-frame order: ``Sigma_ros = J Sigma J^T``,
    ``J = blkdiag(R, R)``.  Works on (6,6) or batched (N,6,6) with (N,4,4) poses.
    """
    T = np.asarray(T_w_c, dtype=np.float64)
    C = np.asarray(cov, dtype=np.float64)
    R = T[..., :3, :3]
    J = np.zeros(T.shape[:-2] + (6, 6))
    J[..., :3, :3] = R
    J[..., 3:, 3:] = R
    return J @ C @ np.swapaxes(J, -1, -2)


def write_covariances(
    path: str,
    stamps,
    T_w_c,
    pose_cov,
    velocity,
    velocity_cov,
    **extra,
) -> None:
    """Write ``covariances.npz`` (see module docstring for the conventions)."""
    T = np.asarray(T_w_c, dtype=np.float64).reshape(-1, 4, 4)
    pose_cov = np.asarray(pose_cov, dtype=np.float64).reshape(-1, 6, 6)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez_compressed(
        path,
        stamps=np.asarray(stamps, dtype=np.float64).reshape(-1),
        T_w_c=T,
        pose_cov=pose_cov,
        pose_cov_ros=cov_body_to_world(T, pose_cov) if len(T) else pose_cov.copy(),
        velocity=np.asarray(velocity, dtype=np.float64).reshape(-1, 6),
        velocity_cov=np.asarray(velocity_cov, dtype=np.float64).reshape(-1, 6, 6),
        **{k: np.asarray(v) for k, v in extra.items()},
    )


def read_covariances(path: str) -> Dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def write_ply(path: str, surface: Dict[str, np.ndarray], text: bool = False) -> int:
    """Write a map surface dict (``Map.extract_surface`` output) as ``map.ply``; missing ``rgb`` / ``sigma`` /
    ``sdf`` / ``count`` are grey / NaN / NaN / 0.  Returns the number of vertices written.
    """
    from plyfile import PlyData, PlyElement

    xyz = np.asarray(surface["xyz"], dtype=np.float32).reshape(-1, 3)
    n = len(xyz)
    rgb = np.asarray(surface.get("rgb", np.full((n, 3), 128)), dtype=np.uint8).reshape(-1, 3)
    v = np.empty(n, dtype=list(PLY_FIELDS))
    v["x"], v["y"], v["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    v["red"], v["green"], v["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    for k, fill in (("sigma", np.nan), ("sdf", np.nan), ("count", 0.0)):
        v[k] = np.asarray(surface.get(k, np.full(n, fill)), dtype=np.float32).reshape(-1)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    el = PlyElement.describe(v, "vertex")
    PlyData(
        [el],
        text=text,
        byte_order="<",
        comments=["prism_ros map: near-surface voxel centres; sigma = SDF std (m), sdf = SDF mean (m)"],
    ).write(path)
    return n


def read_ply(path: str) -> Dict[str, np.ndarray]:
    """Read a ``map.ply`` back into ``xyz``, ``rgb``, ``sigma``, ``sdf``, ``count``."""
    from plyfile import PlyData

    v = PlyData.read(path)["vertex"].data
    names = v.dtype.names
    out = {"xyz": np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float32)}
    if all(c in names for c in ("red", "green", "blue")):
        out["rgb"] = np.stack([v["red"], v["green"], v["blue"]], axis=1).astype(np.uint8)
    for k in ("sigma", "sdf", "count"):
        if k in names:
            out[k] = np.asarray(v[k], dtype=np.float32)
    return out


def write_mesh_ply(path: str, mesh: Dict[str, np.ndarray], text: bool = False) -> int:
    """Write a mesh dict (``BlockMesher.combined()``: verts, faces, normals, rgb, sigma) as
    ``mesh.ply``.  Returns the number of triangles written."""
    from plyfile import PlyData, PlyElement

    V = np.asarray(mesh["verts"], dtype=np.float32).reshape(-1, 3)
    F = np.asarray(mesh["faces"], dtype=np.int32).reshape(-1, 3)
    n = len(V)
    N = np.asarray(mesh.get("normals", np.zeros((n, 3))), dtype=np.float32).reshape(-1, 3)
    rgb = np.asarray(mesh.get("rgb", np.full((n, 3), 128)), dtype=np.uint8).reshape(-1, 3)
    sig = np.asarray(mesh.get("sigma", np.full(n, np.nan)), dtype=np.float32).reshape(-1)
    v = np.empty(
        n,
        dtype=[
            ("x", "f4"),
            ("y", "f4"),
            ("z", "f4"),
            ("nx", "f4"),
            ("ny", "f4"),
            ("nz", "f4"),
            ("red", "u1"),
            ("green", "u1"),
            ("blue", "u1"),
            ("sigma", "f4"),
        ],
    )
    v["x"], v["y"], v["z"] = V[:, 0], V[:, 1], V[:, 2]
    v["nx"], v["ny"], v["nz"] = N[:, 0], N[:, 1], N[:, 2]
    v["red"], v["green"], v["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    v["sigma"] = sig
    f = np.empty(len(F), dtype=[("vertex_indices", "i4", (3,))])
    f["vertex_indices"] = F
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    PlyData(
        [PlyElement.describe(v, "vertex"), PlyElement.describe(f, "face")],
        text=text,
        byte_order="<",
        comments=["prism_ros mesh: marching cubes of the SDF mean; sigma = SDF std at the nearest voxel (m)"],
    ).write(path)
    return len(F)


def read_mesh_ply(path: str) -> Dict[str, np.ndarray]:
    """Read ``mesh.ply`` back into ``verts``, ``faces``, ``normals``, ``rgb``, ``sigma``."""
    from plyfile import PlyData

    ply = PlyData.read(path)
    v = ply["vertex"].data
    faces = (
        np.stack([np.asarray(x, dtype=np.int32) for x in ply["face"].data["vertex_indices"]])
        if len(ply["face"].data)
        else np.zeros((0, 3), np.int32)
    )
    return {
        "verts": np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float32),
        "normals": np.stack([v["nx"], v["ny"], v["nz"]], axis=1).astype(np.float32),
        "rgb": np.stack([v["red"], v["green"], v["blue"]], axis=1).astype(np.uint8),
        "sigma": np.asarray(v["sigma"], dtype=np.float32),
        "faces": faces,
    }
