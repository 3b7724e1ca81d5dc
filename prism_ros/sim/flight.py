"""EuRoC flight simulator: a synthetic indoor scene flown along a real EuRoC trajectory.

:func:`simulate_euroc` (``prism-ros simulate SOURCE --out DIR``) reads a EuRoC ASL folder with ground truth, IMU and
camera calibration (no images needed) and writes an ASL folder every EuRoC reader takes as a real recording::

    DIR/mav0/cam0/data.csv, data/<ns>.png, sensor.yaml    rendered left camera (752x480 mono8, 20 Hz)
    DIR/mav0/cam1/...                                      rendered right camera
    DIR/mav0/imu0/data.csv, sensor.yaml                    SOURCE's real IMU, copied unmodified
    DIR/mav0/state_groundtruth_estimate0/data.csv          SOURCE's ground truth, copied unmodified
    DIR/mav0/body.yaml                                     (when SOURCE has one)
    DIR/mav0/cam0_depth_exact/data.csv, data/<ns>.png, sensor.yaml
                                                           exact cam0 depth (side folder, readers ignore it)

* Scene: :func:`prism_ros.sim.flight_scene.make_flight_scene`; rays and motion blur:
  :mod:`prism_ros.sim.imaging`; renderer: :mod:`prism_ros.sim.render`.
* Cameras: ``T_w_cam = T_w_B(t) T_BS_cam``, ``T_w_B`` the ground truth interpolated at t; frames at every
  other 40 Hz ground-truth stamp where the IMU covers [t - 1 s, t + 0.1 s].
* Image effects, seeded by ``seed`` and the frame index: a smoothly drifting exposure time
  (``EXPOSURE_MS`` x exp(0.4 s(t))) and brightness (x exp(0.18 s'(t))), shared by both cameras (cam1's
  gain ``CAM1_GAIN``); motion blur over the exposure; vignetting 1 - ``VIGNETTE`` r^2 (r over the half
  diagonal); noise N(0, ``READ_NOISE_DN``^2 + ``SHOT_NOISE_GAIN`` I) in 8-bit counts, rounded and clipped.
* Exact depth: ``cam0_depth_exact/data/<ns>.png``, uint16 mm (``depth_scale: 1000.0``), the optical z of cam0's raw
  pixel grid at mid-exposure, 0 = no hit; :func:`exact_depth_rectified` resamples it into the rectified left camera.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from prism_ros.core.stereo import StereoRectifier
from prism_ros.datasets.euroc_files import read_euroc_imu_csv, read_euroc_sensor_yaml

from .flight_scene import _flown_path, _pose_interp, _read_gt_ns, _usable, flight_scene, make_flight_scene, make_texture
from .imaging import _exposure_flow, _motion_blur, _smooth_signal, distorted_rays, project_radtan
from .render import render_rays

__all__ = [
    "simulate_euroc",
    "read_exact_depth",
    "exact_depth_rectified",
    "EXACT_DEPTH_FOLDER",
    # the scene and the cameras (prism_ros.sim.flight_scene, prism_ros.sim.imaging)
    "make_flight_scene",
    "flight_scene",
    "make_texture",
    "distorted_rays",
    "project_radtan",
]

FPS = 20.0
EXACT_DEPTH_FOLDER = "cam0_depth_exact"
DEPTH_SCALE = 1000.0  # uint16 counts per metre in the exact-depth PNGs

EXPOSURE_MS = 4.0  # mean exposure time
IMAGE_GAIN = 1.3  # 8-bit counts per unit radiance / 255 at the mean brightness (highlights clip)
CAM1_GAIN = 0.96  # right camera gain relative to the left
VIGNETTE = 0.25
READ_NOISE_DN = 1.5  # 8-bit counts
SHOT_NOISE_GAIN = 0.05  # variance per count of signal


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
    """Exact cam0 depth resampled into ``stereo``'s rectified left camera (float32 m, 0 = none): bilinear on the raw
    grid, 0 across a depth edge (``max_rel_step``), z_rect = z_c0 / (R0^T K_rect^-1 [u, v, 1])_z.
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


def simulate_euroc(
    source, out, seed: int = 0, seconds: Optional[float] = None, progress: bool = True, log=print, start_s: float = 0.0
) -> Dict[str, float]:
    """Write a simulated EuRoC ASL folder into ``out`` (module docstring); returns a summary.  ``start_s`` / ``seconds``
    select the frames; the room is built around the whole flight and the IMU and ground truth are copied whole.
    """
    import cv2

    from prism_ros.datasets.euroc import _mav0

    src = Path(source)
    smav = src / "mav0" if (src / "mav0").is_dir() else src
    for f in (
        "cam0/sensor.yaml",
        "cam1/sensor.yaml",
        "imu0/data.csv",
        "imu0/sensor.yaml",
        "state_groundtruth_estimate0/data.csv",
    ):
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
    for f in (
        "cam0/sensor.yaml",
        "cam1/sensor.yaml",
        "imu0/data.csv",
        "imu0/sensor.yaml",
        "state_groundtruth_estimate0/data.csv",
        "body.yaml",
        "state_groundtruth_estimate0/sensor.yaml",
    ):
        if (smav / f).is_file():
            shutil.copyfile(smav / f, omav / f)
    _write_yaml(
        omav / EXACT_DEPTH_FOLDER / "sensor.yaml",
        [
            "sensor_type: depth",
            "comment: exact depth of cam0 (simulation ground truth; not a sensor). "
            "uint16 PNG, metres = value / depth_scale;",
            "  optical z of cam0's raw (distorted) pixel grid at mid-exposure; 0 = no hit",
            f"depth_scale: {DEPTH_SCALE}",
            "camera: cam0",
        ],
    )
    (outp / "SIMULATION.txt").write_text(
        f"Simulated EuRoC flight (prism_ros.sim.flight)\nsource: {src.resolve()}\nseed: {int(seed)}\n"
        f"frames: {len(frames_ns)} at {FPS:g} Hz, {calibs[0].size[0]}x{calibs[0].size[1]} mono8\n"
        f"scene primitives: {len(scene['ptype'])}\n"
        "imu0 and state_groundtruth_estimate0 are SOURCE's real recordings, copied unmodified.\n",
        encoding="utf-8",
    )

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
    log(
        f"simulate: {summary['frames']} stereo pairs ({summary['seconds']:.1f} s, {summary['path_m']:.1f} m) "
        f"-> {outp} in {wall:.0f} s"
    )
    return summary
