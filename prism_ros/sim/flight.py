"""EuRoC flight simulator: a synthetic indoor scene flown along a real EuRoC trajectory.

:func:`simulate_euroc` (CLI: ``prism-ros simulate SOURCE --out DIR``) reads a EuRoC
ASL folder with ground truth, IMU and camera calibration (images are not needed:
``euroc_V1_02_medium_imu_gt`` has none) and writes a complete ASL folder that every
EuRoC reader treats as a real recording::

    DIR/mav0/cam0/data.csv, data/<ns>.png, sensor.yaml    rendered left camera (752x480 mono8, 20 Hz)
    DIR/mav0/cam1/...                                      rendered right camera
    DIR/mav0/imu0/data.csv, sensor.yaml                    SOURCE's real IMU, copied unmodified
    DIR/mav0/state_groundtruth_estimate0/data.csv          SOURCE's ground truth, copied unmodified
    DIR/mav0/body.yaml                                     (when SOURCE has one)
    DIR/mav0/cam0_depth_exact/data.csv, data/<ns>.png, sensor.yaml
                                                           exact cam0 depth (side folder, readers ignore it)

The scene (:func:`make_flight_scene`)
-------------------------------------
A closed room around the trajectory, like the Vicon room (the trajectory's x-y box
grown by ``ROOM_MARGIN_M`` on each side: 7.7 m x 8.8 m x 3.6 m for V1_02), holding
seeded clutter: boxes on the floor, pillars, spheres, tori and panels on the walls,
none closer than ``CLEARANCE_M`` to the flown path.  Every surface carries a
multi-scale noise texture with sharp-edged blobs (``_TEX_NOISE`` of
:mod:`prism_ros.sim.synthetic`), which repeats only every 3-10 m, so a stereo
matcher finds no repeating pattern in its search range (a seeded tileable texture, :func:`make_texture`, of 4-10 mm texels).
A different ``seed`` gives a different layout, sizes, colours and texture.  The SDF is exact (:func:`prism_ros.sim.synthetic.scene_sdf`).

Cameras
-------
Each pixel's ray comes from the real calibration: the radtan-distorted pixel
centres are undistorted once with ``cv2.undistortPoints`` (iterated to convergence) (checked by
re-projection to < 1e-3 px), and the scene is ray cast by the Numba renderer of
:mod:`prism_ros.sim.synthetic` (:func:`render_rays`).  Camera poses are
``T_w_cam = T_w_B(t) T_BS_cam`` with ``T_w_B`` the ground truth interpolated at t
(linear / slerp).  Frame stamps are every other 40 Hz ground-truth stamp (20 Hz)
where the IMU covers [t - 1 s, t + 0.1 s] (the IMU initialisation window).

Image effects (per frame, seeded by ``seed`` and the frame index)
-----------------------------------------------------------------
* Exposure: the exposure time drifts smoothly in [2.6, 6.2] ms
  (``EXPOSURE_MS`` x exp(0.4 s(t)), s a seeded sum of sines); the auto-exposure
  leaves a brightness change of up to +-20 % (x exp(0.18 s'(t))).  Both cameras
  share the exposure (synchronised rig); cam1's gain is ``CAM1_GAIN`` of cam0's.
* Motion blur: one render at mid-exposure; each pixel's image motion over the
  exposure (its 3D point, from the exact depth, projected at the exposure's start and
  end poses with the distorted model) is integrated by averaging the sharp image at
  N points along that motion (cv2.remap, N = ceil(motion) + 1, at most 9).  This is
  exact for a static scene away from depth edges; at an occluding edge it smears
  the background with the foreground's motion (a few pixels at most).  Sub-frame
  renders would cost N renders a frame (at 2.5 rad/s and 5 ms up to 6 px: 7x the
  time); the flow approximation keeps 780 pairs within about two minutes.
* Vignetting (1 - ``VIGNETTE`` r^2, r = distance to the principal point over the
  half diagonal), then sensor noise N(0, ``READ_NOISE_DN``^2 + ``SHOT_NOISE_GAIN``
  I) in 8-bit counts, rounded and clipped (mono8).

Exact depth
-----------
``cam0_depth_exact/data/<ns>.png``: uint16, millimetres (``depth_scale: 1000.0``
in its ``sensor.yaml``), the optical z of cam0's (distorted, raw) pixel grid at
mid-exposure; 0 = no hit.  :func:`exact_depth_rectified` resamples it into the
rectified left camera of a :class:`prism_ros.core.stereo.StereoRectifier` (what
:class:`EurocDataset` frames hold) for checks.
"""
from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from numba import njit, prange

from prism_ros.core.stereo import CameraCalib, StereoRectifier

from prism_ros.datasets.euroc_files import read_euroc_imu_csv, read_euroc_sensor_yaml
from .synthetic import _TEX_NOISE, _BOX, _CYL, _ROOM, _SPHERE, _TORUS, _rot_x, _rot_z, pack_scene, render_rays, scene_sdf

__all__ = [
    "make_flight_scene",
    "flight_scene",
    "make_texture",
    "distorted_rays",
    "project_radtan",
    "simulate_euroc",
    "read_exact_depth",
    "exact_depth_rectified",
    "EXACT_DEPTH_FOLDER",
]

FPS = 20.0
EXACT_DEPTH_FOLDER = "cam0_depth_exact"
DEPTH_SCALE = 1000.0  # uint16 counts per metre in the exact-depth PNGs

ROOM_MARGIN_M = 1.8  # room walls this far outside the trajectory's x-y box
ROOM_HEIGHT_M = 3.6
CLEARANCE_M = 1.0  # no clutter closer than this to the flown (body) path
EXPOSURE_MS = 4.0  # mean exposure time
IMAGE_GAIN = 1.3  # 8-bit counts per unit radiance / 255 at the mean brightness (highlights clip)
CAM1_GAIN = 0.96  # right camera gain relative to the left
VIGNETTE = 0.25
READ_NOISE_DN = 1.5  # 8-bit counts
SHOT_NOISE_GAIN = 0.05  # variance per count of signal
MAX_BLUR_TAPS = 9


# ----------------------------------------------------------------------------- scene


def make_flight_scene(seed: int, path_xyz: np.ndarray) -> dict:
    """Scene arrays (:func:`prism_ros.sim.synthetic.pack_scene`) of a room around
    the (N,3) world path ``path_xyz`` with seeded clutter (module docstring)."""
    rng = np.random.default_rng([int(seed), 3])
    path_xyz = np.asarray(path_xyz, float)
    lo = path_xyz.min(0)
    hi = path_xyz.max(0)
    cx, cy = 0.5 * (lo[0] + hi[0]), 0.5 * (lo[1] + hi[1])
    hx, hy = 0.5 * (hi[0] - lo[0]) + ROOM_MARGIN_M, 0.5 * (hi[1] - lo[1]) + ROOM_MARGIN_M
    hz = 0.5 * ROOM_HEIGHT_M
    I3 = np.eye(3)
    prims = [("room", _ROOM, np.array([cx, cy, hz]), I3, np.array([hx, hy, hz, 0.0]),
              np.array([0.8, 0.75, 0.65]), _TEX_NOISE, float(rng.uniform(100.0, 140.0)))]
    probe = path_xyz[:: max(1, len(path_xyz) // 400)]

    def colour():
        return rng.uniform(0.3, 0.95, size=3)

    def try_add(name, ptype, centre, R_wo, prm):
        prm = np.asarray(list(prm) + [0.0] * (4 - len(prm)), float)
        cand = (name, ptype, np.asarray(centre, float), np.asarray(R_wo, float), prm, colour(), _TEX_NOISE,
                float(rng.uniform(150.0, 300.0)))
        d = scene_sdf(probe, pack_scene([cand]))
        if np.min(d) >= CLEARANCE_M:
            prims.append(cand)
            return True
        return False

    def floor_xy(margin):
        return rng.uniform(cx - hx + margin, cx + hx - margin), rng.uniform(cy - hy + margin, cy + hy - margin)

    counts = {"box": int(rng.integers(12, 17)), "pillar": int(rng.integers(4, 7)), "sphere": int(rng.integers(5, 9)),
              "torus": int(rng.integers(1, 4)), "panel": int(rng.integers(10, 15))}
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
                ok = try_add(f"torus{added}", _TORUS, [x, y, rng.uniform(0.3, 2.5)],
                             _rot_z(rng.uniform(0, math.pi)) @ _rot_x(rng.uniform(0, math.pi)), [R, r])
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


# ----------------------------------------------------------------------------- camera model


def project_radtan(p_c: np.ndarray, K: np.ndarray, D: np.ndarray) -> np.ndarray:
    """(N,2) pixels of (N,3) optical-frame points with the radial-tangential model (k1 k2 p1 p2)."""
    p_c = np.asarray(p_c, float)
    x = p_c[:, 0] / p_c[:, 2]
    y = p_c[:, 1] / p_c[:, 2]
    k1, k2, p1, p2 = (float(v) for v in np.ravel(D)[:4])
    r2 = x * x + y * y
    radial = 1.0 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return np.stack([K[0, 0] * xd + K[0, 2], K[1, 1] * yd + K[1, 2]], axis=1)


def distorted_rays(calib: CameraCalib) -> np.ndarray:
    """(H, W, 2) rays (x/z, y/z) of the raw (distorted) pixel centres of ``calib``."""
    import cv2

    w, h = calib.size
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pix = np.stack([u.ravel(), v.ravel()], axis=1).reshape(-1, 1, 2)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-14)
    und = cv2.undistortPoints(pix, calib.K, calib.D, R=None, P=None, criteria=crit).reshape(-1, 2)
    back = project_radtan(np.column_stack([und, np.ones(len(und))]), calib.K, calib.D)
    err = float(np.max(np.abs(back - pix.reshape(-1, 2))))
    if err > 1e-3:
        raise ValueError(f"radtan inversion failed: re-projection error {err:.2e} px")
    return np.ascontiguousarray(und.reshape(h, w, 2))


# ----------------------------------------------------------------------------- effects


def _smooth_signal(rng, t: np.ndarray, periods_s=(2.0, 3.7, 6.1, 9.3)) -> np.ndarray:
    """A seeded sum of sines with the given periods, scaled to [-1, 1]."""
    ph = rng.uniform(0, 2 * math.pi, size=len(periods_s))
    s = sum(math.sqrt(1.0 / (k + 1)) * np.sin(2 * math.pi * t / p + ph[k]) for k, p in enumerate(periods_s))
    return s / sum(math.sqrt(1.0 / (k + 1)) for k in range(len(periods_s)))


def _motion_blur(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Average ``img`` (float32) at N points along each pixel's exposure motion ``flow`` (H,W,2 px)."""
    import cv2

    mag = np.sqrt((flow**2).sum(-1))
    n = int(min(MAX_BLUR_TAPS, max(1, math.ceil(float(np.percentile(mag, 99))) + 1)))
    if n <= 1:
        return img
    h, w = img.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    acc = np.zeros_like(img)
    for k in range(n):
        s = np.float32(k / (n - 1) - 0.5)
        acc += cv2.remap(img, gx + s * flow[..., 0], gy + s * flow[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT)
    return acc / np.float32(n)


@njit(cache=True, inline="always")
def _radtan_px(x, y, z, fx, fy, cx, cy, k1, k2, p1, p2):
    x = x / z
    y = y / z
    r2 = x * x + y * y
    radial = 1.0 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return fx * xd + cx, fy * yd + cy


@njit(cache=True, parallel=True)
def _flow_kernel(depth, rays, T_s_m, T_e_m, intr, dist):
    """Pixel motion between the exposure's start (s) and end (e) camera frames of each
    pixel's point (mid-exposure frame m: p = z (rx, ry, 1)); T_x_m maps m into x."""
    h, w = depth.shape
    out = np.zeros((h, w, 2), dtype=np.float32)
    fx, fy, cx, cy = intr[0], intr[1], intr[2], intr[3]
    k1, k2, p1, p2 = dist[0], dist[1], dist[2], dist[3]
    for v in prange(h):
        for u in range(w):
            z = depth[v, u]
            if not z > 0.0:
                continue
            px = rays[v, u, 0] * z
            py = rays[v, u, 1] * z
            pz = z
            qx = T_s_m[0, 0] * px + T_s_m[0, 1] * py + T_s_m[0, 2] * pz + T_s_m[0, 3]
            qy = T_s_m[1, 0] * px + T_s_m[1, 1] * py + T_s_m[1, 2] * pz + T_s_m[1, 3]
            qz = T_s_m[2, 0] * px + T_s_m[2, 1] * py + T_s_m[2, 2] * pz + T_s_m[2, 3]
            ex = T_e_m[0, 0] * px + T_e_m[0, 1] * py + T_e_m[0, 2] * pz + T_e_m[0, 3]
            ey = T_e_m[1, 0] * px + T_e_m[1, 1] * py + T_e_m[1, 2] * pz + T_e_m[1, 3]
            ez = T_e_m[2, 0] * px + T_e_m[2, 1] * py + T_e_m[2, 2] * pz + T_e_m[2, 3]
            if qz < 1e-3 or ez < 1e-3:
                continue
            us, vs = _radtan_px(qx, qy, qz, fx, fy, cx, cy, k1, k2, p1, p2)
            ue, ve = _radtan_px(ex, ey, ez, fx, fy, cx, cy, k1, k2, p1, p2)
            out[v, u, 0] = ue - us
            out[v, u, 1] = ve - vs
    return out


def _exposure_flow(depth: np.ndarray, rays: np.ndarray, T_m_s: np.ndarray, T_m_e: np.ndarray, calib) -> np.ndarray:
    """Image motion (H,W,2 px) over the exposure of each pixel's 3D point (mid-exposure
    camera frame m) between the start (s) and end (e) camera frames (T_m_x maps x into m)."""
    K = np.asarray(calib.K, float)
    intr = np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]])
    dist = np.zeros(4)
    dist[: min(4, np.size(calib.D))] = np.ravel(calib.D)[:4]
    return _flow_kernel(np.ascontiguousarray(depth, np.float32), rays, np.linalg.inv(T_m_s), np.linalg.inv(T_m_e),
                        intr, dist)


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


# ----------------------------------------------------------------------------- I/O


def _read_gt_ns(path: Path):
    """(ns (N,) int64, T_w_B list) of an ASL ground-truth data.csv."""
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
    """The scene :func:`simulate_euroc` flies for ``source`` (a EuRoC folder with ground
    truth and IMU, the source or a simulated copy) and ``seed``."""

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


def _write_yaml(path: Path, lines: List[str]) -> None:
    path.write_text("%YAML:1.0\n" + "\n".join(lines) + "\n", encoding="utf-8")


def read_exact_depth(mav0, ns: int) -> np.ndarray:
    """Exact cam0 depth (float32 m, raw cam0 grid, 0 = none) of the frame stamped ``ns``."""
    import cv2

    p = Path(mav0) / EXACT_DEPTH_FOLDER / "data" / f"{int(ns)}.png"
    d = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if d is None:
        raise FileNotFoundError(p)
    return d.astype(np.float32) / np.float32(DEPTH_SCALE)


def exact_depth_rectified(depth_raw: np.ndarray, stereo: StereoRectifier, max_rel_step: float = 0.02) -> np.ndarray:
    """Exact cam0 depth resampled into ``stereo``'s rectified left camera (float32 m, 0 = none).

    Bilinear on the raw grid at the rectification map; pixels whose 2x2 raw neighbours
    differ by more than ``max_rel_step`` of the depth (a depth edge) are 0.  The optical
    z is converted to the rectified frame: z_rect = z_c0 / (R0^T K_rect^-1 [u, v, 1])_z.
    """
    import cv2

    d = np.asarray(depth_raw, np.float32)
    mx, my = stereo.map0
    z = cv2.remap(d, mx, my, cv2.INTER_LINEAR, borderValue=0)
    k = np.ones((2, 2), np.uint8)
    dmax = cv2.remap(cv2.dilate(d, k, anchor=(0, 0)), mx, my, cv2.INTER_NEAREST, borderValue=0)
    dmin = cv2.remap(cv2.erode(d, k, anchor=(0, 0)), mx, my, cv2.INTER_NEAREST, borderValue=0)
    ok = (dmin > 0) & (dmax - dmin <= max_rel_step * z) & stereo.valid_region
    cam = stereo.camera
    u, v = np.meshgrid(np.arange(cam.width), np.arange(cam.height))
    ray = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u, float)], axis=-1)
    w = ray @ np.asarray(stereo.R0, float)[:, 2]  # (R0^T ray)_z = ray . R0[:, 2]
    out = np.where(ok, z / w, 0.0).astype(np.float32)
    return out


# ----------------------------------------------------------------------------- the simulator


def simulate_euroc(source, out, seed: int = 0, seconds: Optional[float] = None, progress: bool = True,
                   log=print, start_s: float = 0.0) -> Dict[str, float]:
    """Write a simulated EuRoC ASL folder into ``out`` (module docstring); returns a summary.

    ``start_s`` / ``seconds``: the frames from ``start_s`` after the first usable stamp, for
    ``seconds``.  The room is always built around the whole flight, so a piece of the flight
    sees the same scene as the whole one; the IMU and ground truth are copied whole."""
    import cv2

    from prism_ros.datasets.euroc import _mav0

    src = Path(source)
    smav = src / "mav0" if (src / "mav0").is_dir() else src
    for f in ("cam0/sensor.yaml", "cam1/sensor.yaml", "imu0/data.csv", "imu0/sensor.yaml",
              "state_groundtruth_estimate0/data.csv"):
        if not (smav / f).is_file():
            raise ValueError(f"simulate: SOURCE needs mav0/{f} ({smav / f} not found)")
    outp = Path(out)
    if _mav0(outp) is not None:
        raise ValueError(f"simulate: {outp} already holds a EuRoC folder; choose an empty --out")
    omav = outp / "mav0"

    calibs = []
    for cam in ("cam0", "cam1"):
        c = read_euroc_sensor_yaml(smav / cam / "sensor.yaml")["calib"]
        calibs.append(c)
    gt_ns, gt_xyz, gt_q = _read_gt_ns(smav / "state_groundtruth_estimate0" / "data.csv")

    imu = read_euroc_imu_csv(smav / "imu0" / "data.csv")
    gt_t = gt_ns * 1e-9
    interp = _pose_interp(gt_t, gt_xyz, gt_q)
    # frame stamps: every other ground-truth stamp (20 Hz) inside the IMU span (1 s before for
    # the IMU initialisation window, 0.1 s after for the last increment)
    period_ns = int(round(1e9 / FPS))
    ok = _usable(gt_t, imu.t)
    cand = gt_ns[ok]
    if len(cand) == 0:
        raise ValueError("simulate: the IMU and the ground truth do not overlap")
    frames_ns = [int(cand[0])]
    for n in cand[1:]:
        if n - frames_ns[-1] >= period_ns - 1_000_000:
            frames_ns.append(int(n))
    frames_ns = np.asarray(frames_ns, np.int64)
    if start_s > 0:
        frames_ns = frames_ns[(frames_ns - frames_ns[0]) * 1e-9 >= float(start_s) - 1e-9]
        if len(frames_ns) == 0:
            raise ValueError(f"simulate: start_s {start_s} s is past the end of the flight")
    if seconds is not None:
        frames_ns = frames_ns[(frames_ns - frames_ns[0]) * 1e-9 < float(seconds) - 1e-9]
    stamps = frames_ns * 1e-9
    T_w_B = interp(stamps)
    if any(T is None for T in T_w_B):
        raise ValueError("simulate: ground truth missing at some frame stamps")
    scene = make_flight_scene(seed, _flown_path(interp, gt_t[ok]))

    # --- the folder: copies of the real IMU, ground truth and calibration
    for d in ("cam0/data", "cam1/data", "imu0", "state_groundtruth_estimate0", f"{EXACT_DEPTH_FOLDER}/data"):
        (omav / d).mkdir(parents=True, exist_ok=True)
    for f in ("cam0/sensor.yaml", "cam1/sensor.yaml", "imu0/data.csv", "imu0/sensor.yaml",
              "state_groundtruth_estimate0/data.csv", "body.yaml", "state_groundtruth_estimate0/sensor.yaml"):
        if (smav / f).is_file():
            shutil.copyfile(smav / f, omav / f)
    _write_yaml(omav / EXACT_DEPTH_FOLDER / "sensor.yaml", [
        "sensor_type: depth",
        "comment: exact depth of cam0 (simulation ground truth; not a sensor). uint16 PNG, metres = value / depth_scale;",
        "  optical z of cam0's raw (distorted) pixel grid at mid-exposure; 0 = no hit",
        f"depth_scale: {DEPTH_SCALE}",
        "camera: cam0",
    ])
    (outp / "SIMULATION.txt").write_text(
        f"Simulated EuRoC flight (prism_ros.sim.flight)\nsource: {src.resolve()}\nseed: {int(seed)}\n"
        f"frames: {len(frames_ns)} at {FPS:g} Hz, {calibs[0].size[0]}x{calibs[0].size[1]} mono8\n"
        f"scene primitives: {len(scene['ptype'])}\n"
        "imu0 and state_groundtruth_estimate0 are SOURCE's real recordings, copied unmodified.\n",
        encoding="utf-8")

    rays = [distorted_rays(c) for c in calibs]
    w, h = calibs[0].size
    vign = []
    for c in calibs:
        u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        r2 = ((u - c.K[0, 2]) ** 2 + (v - c.K[1, 2]) ** 2) / np.float32(0.25 * (w * w + h * h))
        vign.append((1.0 - VIGNETTE * r2).astype(np.float32))
    rng_e = np.random.default_rng([int(seed), 5])
    t_rel = stamps - stamps[0]
    exposure_s = 1e-3 * EXPOSURE_MS * np.exp(0.4 * _smooth_signal(rng_e, t_rel))
    brightness = np.exp(0.18 * _smooth_signal(rng_e, t_rel, (1.3, 2.9, 5.3, 7.7)))
    gains = (1.0, CAM1_GAIN)

    csv = {c: ["#timestamp [ns],filename"] for c in ("cam0", "cam1", EXACT_DEPTH_FOLDER)}
    t_start = time.perf_counter()
    blur_px = []
    try:
        from tqdm import tqdm
        it = tqdm(range(len(frames_ns)), unit="pair", desc="simulate", disable=not progress)
    except ImportError:  # pragma: no cover
        it = range(len(frames_ns))
    for i in it:
        ns = int(frames_ns[i])
        te = float(exposure_s[i])
        Tb_s, Tb_e = interp([stamps[i] - 0.5 * te, stamps[i] + 0.5 * te])
        rng = np.random.default_rng([int(seed), 11, i])
        for ci, cam in enumerate(("cam0", "cam1")):
            T_BS = calibs[ci].T_BS
            T_w_c = T_w_B[i] @ T_BS
            r = render_rays(T_w_c, rays[ci], scene)
            col = r["color"]
            grey = (0.299 * col[..., 0] + 0.587 * col[..., 1] + 0.114 * col[..., 2]).astype(np.float32)
            T_m_s = np.linalg.inv(T_w_c) @ Tb_s @ T_BS
            T_m_e = np.linalg.inv(T_w_c) @ Tb_e @ T_BS
            flow = _exposure_flow(r["depth"], rays[ci], T_m_s, T_m_e, calibs[ci])
            if ci == 0:
                blur_px.append(float(np.percentile(np.sqrt((flow**2).sum(-1)), 99)))
            img = _motion_blur(grey, flow)
            sig = np.float32(255.0 * IMAGE_GAIN * brightness[i] * gains[ci]) * img * vign[ci]
            noise = rng.standard_normal(sig.shape, dtype=np.float32)
            sig = sig + noise * np.sqrt(np.float32(READ_NOISE_DN**2) + np.float32(SHOT_NOISE_GAIN) * np.maximum(sig, 0))
            cv2.imwrite(str(omav / cam / "data" / f"{ns}.png"), np.clip(np.rint(sig), 0, 255).astype(np.uint8))
            csv[cam].append(f"{ns},{ns}.png")
            if ci == 0:
                dz = np.clip(np.rint(r["depth"].astype(np.float64) * DEPTH_SCALE), 0, 65535).astype(np.uint16)
                cv2.imwrite(str(omav / EXACT_DEPTH_FOLDER / "data" / f"{ns}.png"), dz)
                csv[EXACT_DEPTH_FOLDER].append(f"{ns},{ns}.png")
    for c, lines in csv.items():
        (omav / c / "data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    wall = time.perf_counter() - t_start
    path = np.array([T[:3, 3] for T in T_w_B])
    summary = {
        "frames": int(len(frames_ns)),
        "seconds": float(stamps[-1] - stamps[0]) + 1.0 / FPS,
        "path_m": float(np.sum(np.linalg.norm(np.diff(path, axis=0), axis=1))) if len(path) > 1 else 0.0,
        "scene_primitives": int(len(scene["ptype"])),
        "exposure_ms_range": [float(1e3 * exposure_s.min()), float(1e3 * exposure_s.max())],
        "brightness_range": [float(brightness.min()), float(brightness.max())],
        "blur_p99_px_max": float(max(blur_px)) if blur_px else 0.0,
        "blur_p99_px_median": float(np.median(blur_px)) if blur_px else 0.0,
        "render_s": wall,
    }
    log(f"simulate: {summary['frames']} stereo pairs ({summary['seconds']:.1f} s, {summary['path_m']:.1f} m) "
        f"-> {outp} in {wall:.0f} s")
    return summary
