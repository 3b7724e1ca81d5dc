"""The scene of a simulated EuRoC flight (:mod:`prism_ros.sim.flight`).

A closed room around the trajectory (its x-y box grown by ``ROOM_MARGIN_M``) with seeded clutter (boxes, pillars,
spheres, tori, wall panels), none closer than ``CLEARANCE_M`` to the flown path.  Every surface carries a seeded
tileable noise texture (:func:`make_texture`) that does not repeat within a stereo matcher's search range.  ``seed``
sets layout, sizes, colours and texture; the SDF is exact (:func:`prism_ros.sim.scene.scene_sdf`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from prism_ros.datasets.euroc_files import read_euroc_imu_csv

from .scene import _BOX, _CYL, _ROOM, _SPHERE, _TEX_NOISE, _TORUS, _rot_x, _rot_z, pack_scene, scene_sdf

__all__ = ["make_flight_scene", "flight_scene", "make_texture", "ROOM_MARGIN_M", "ROOM_HEIGHT_M", "CLEARANCE_M"]

ROOM_MARGIN_M = 1.8  # room walls this far outside the trajectory's x-y box
ROOM_HEIGHT_M = 3.6
CLEARANCE_M = 1.0  # no clutter closer than this to the flown (body) path


def make_flight_scene(seed: int, path_xyz: np.ndarray) -> dict:
    """Scene arrays (:func:`prism_ros.sim.scene.pack_scene`) of a room around
    the (N,3) world path ``path_xyz`` with seeded clutter (module docstring)."""
    rng = np.random.default_rng([int(seed), 3])
    path_xyz = np.asarray(path_xyz, float)
    lo = path_xyz.min(0)
    hi = path_xyz.max(0)
    cx, cy = 0.5 * (lo[0] + hi[0]), 0.5 * (lo[1] + hi[1])
    hx, hy = 0.5 * (hi[0] - lo[0]) + ROOM_MARGIN_M, 0.5 * (hi[1] - lo[1]) + ROOM_MARGIN_M
    hz = 0.5 * ROOM_HEIGHT_M
    I3 = np.eye(3)
    prims = [
        (
            "room",
            _ROOM,
            np.array([cx, cy, hz]),
            I3,
            np.array([hx, hy, hz, 0.0]),
            np.array([0.8, 0.75, 0.65]),
            _TEX_NOISE,
            float(rng.uniform(100.0, 140.0)),
        )
    ]
    probe = path_xyz[:: max(1, len(path_xyz) // 400)]

    def colour():
        return rng.uniform(0.3, 0.95, size=3)

    def try_add(name, ptype, centre, R_wo, prm):
        prm = np.asarray(list(prm) + [0.0] * (4 - len(prm)), float)
        cand = (
            name,
            ptype,
            np.asarray(centre, float),
            np.asarray(R_wo, float),
            prm,
            colour(),
            _TEX_NOISE,
            float(rng.uniform(150.0, 300.0)),
        )
        d = scene_sdf(probe, pack_scene([cand]))
        if np.min(d) >= CLEARANCE_M:
            prims.append(cand)
            return True
        return False

    def floor_xy(margin):
        return rng.uniform(cx - hx + margin, cx + hx - margin), rng.uniform(cy - hy + margin, cy + hy - margin)

    counts = {
        "box": int(rng.integers(12, 17)),
        "pillar": int(rng.integers(4, 7)),
        "sphere": int(rng.integers(5, 9)),
        "torus": int(rng.integers(1, 4)),
        "panel": int(rng.integers(10, 15)),
    }
    for kind, n in counts.items():
        added = 0
        for _attempt in range(40 * n):
            if added >= n:
                break
            if kind == "box":
                b = rng.uniform([0.15, 0.15, 0.1], [0.6, 0.6, 0.75])
                x, y = floor_xy(0.3)
                ok = try_add(f"box{added}", _BOX, [x, y, b[2]], _rot_z(rng.uniform(0, math.pi)), b)
            elif kind == "pillar":
                r, h = rng.uniform(0.08, 0.3), rng.uniform(0.6, hz)
                x, y = floor_xy(0.3)
                ok = try_add(f"pillar{added}", _CYL, [x, y, h], I3, [r, h])
            elif kind == "sphere":
                r = rng.uniform(0.1, 0.35)
                x, y = floor_xy(0.4)
                ok = try_add(f"sphere{added}", _SPHERE, [x, y, rng.uniform(r, 2.6)], I3, [r])
            elif kind == "torus":
                R, r = rng.uniform(0.2, 0.45), rng.uniform(0.05, 0.12)
                x, y = floor_xy(0.6)
                ok = try_add(
                    f"torus{added}",
                    _TORUS,
                    [x, y, rng.uniform(0.3, 2.5)],
                    _rot_z(rng.uniform(0, math.pi)) @ _rot_x(rng.uniform(0, math.pi)),
                    [R, r],
                )
            else:  # a thin panel on one of the four walls
                wall = int(rng.integers(4))
                w, h, t = rng.uniform(0.25, 1.0), rng.uniform(0.2, 0.8), rng.uniform(0.015, 0.06)
                z = rng.uniform(0.4 + h, 2 * hz - 0.2 - h) if 2 * hz - 0.6 - 2 * h > 0 else hz
                if wall < 2:
                    s = -1.0 if wall == 0 else 1.0
                    c = [cx + s * (hx - t), rng.uniform(cy - hy + w, cy + hy - w), z]
                    b = [t, w, h]
                else:
                    s = -1.0 if wall == 2 else 1.0
                    c = [rng.uniform(cx - hx + w, cx + hx - w), cy + s * (hy - t), z]
                    b = [w, t, h]
                ok = try_add(f"panel{added}", _BOX, c, I3, b)
            added += bool(ok)
    return pack_scene(prims, make_texture(seed))


def make_texture(seed: int, size: int = 1024) -> np.ndarray:
    """Tileable (periodic) float32 texture in [0, 1]: band-limited noise at 1, 4 and 16
    texels plus sharp-edged blobs (40 texels), seeded; Gaussian filters in the Fourier
    domain keep it periodic."""
    rng = np.random.default_rng([int(seed), 9])
    f2 = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.rfftfreq(size)[None, :] ** 2

    def band(sigma_px):
        F = np.fft.rfft2(rng.standard_normal((size, size))) * np.exp(-2.0 * math.pi**2 * sigma_px**2 * f2)
        x = np.fft.irfft2(F, s=(size, size))
        return x / x.std()

    pat = 0.45 + 0.08 * band(1.0) + 0.09 * band(4.0) + 0.1 * band(16.0) + 0.25 * (band(40.0) > 0.3) - 0.07
    return np.clip(pat, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- the flown path


def _read_gt_ns(path: Path):
    """(ns (N,) int64, positions (N,3), quaternions xyzw (N,4)) of an ASL ground-truth data.csv."""
    from prism_ros.datasets.textfile import data_lines

    rows = [ln.split(",") for _, ln in data_lines(path)]
    ns = np.array([int(r[0]) for r in rows], dtype=np.int64)
    a = np.array([[float(x) for x in r[1:8]] for r in rows])
    return ns, a[:, 0:3], a[:, [4, 5, 6, 3]]


def _pose_interp(gt_t, gt_xyz, gt_q):
    from prism_ros.datasets.tum import interpolate_poses

    def at(ts):
        return interpolate_poses(gt_t, gt_xyz, gt_q, np.atleast_1d(np.asarray(ts, float)), max_difference=0.05)

    return at


def _flown_path(interp, t: np.ndarray) -> np.ndarray:
    return np.array([T[:3, 3] for T in interp(t)])


def flight_scene(source, seed: int) -> dict:
    """The scene :func:`prism_ros.sim.flight.simulate_euroc` flies for ``source`` (a EuRoC folder
    with ground truth and IMU, the source or a simulated copy) and ``seed``."""
    src = Path(source)
    smav = src / "mav0" if (src / "mav0").is_dir() else src
    gt_ns, gt_xyz, gt_q = _read_gt_ns(smav / "state_groundtruth_estimate0" / "data.csv")
    imu = read_euroc_imu_csv(smav / "imu0" / "data.csv")
    gt_t = gt_ns * 1e-9
    ok = _usable(gt_t, imu.t)
    return make_flight_scene(seed, _flown_path(_pose_interp(gt_t, gt_xyz, gt_q), gt_t[ok]))


def _usable(gt_t: np.ndarray, imu_t: np.ndarray) -> np.ndarray:
    """Ground-truth stamps with IMU 1 s before (initialisation window) and 0.1 s after."""
    return (gt_t >= imu_t[0] + 1.0) & (gt_t <= imu_t[-1] - 0.1)
