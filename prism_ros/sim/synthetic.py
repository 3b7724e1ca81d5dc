"""A procedural, exactly known RGB-D sequence for tests and benchmarks.

The scene is :func:`prism_ros.sim.scene.make_scene` rendered by :mod:`prism_ros.sim.render`;
:meth:`SyntheticSequence.sdf` is its exact SDF.  ``open_dataset("synthetic[:<n>...]")`` opens it through the
``prism_ros.sequences`` entry point (:func:`open_synthetic`).

Noise (``noise=True``):

* depth: z + N(0, sigma_z(z)^2) with the Kinect v1 model of :class:`PrismConfig` at the true depth,
  drawn once per ``noise_corr_px`` x ``noise_corr_px`` block (spatially correlated like a block-matching
  sensor); optional rounding to ``depth_quantum`` m;
* holes (``holes``, default ``noise``): random ``dropout``, rays more than ``grazing_deg`` from the normal,
  noisy depths outside [``depth_min``, ``depth_max``];
* colour: N(0, ``color_noise``^2) in uint8 counts, rounded and clipped.

Camera timing (both off by default, exact either way: ``T_w_c_gt`` is the pose at the frame's stamp):

* ``readout_s``: a rolling shutter.  Row v is seen at ``t + (v / (H - 1) - 1/2) readout_s``, so the middle row at
  the stamp; depth and colour share the rows' timing (a registered RGB-D sensor; a Kinect v1 reads out in about
  30 ms).
* ``exposure_s``: motion blur of the colour image, the mean of ``blur_samples`` renders spread evenly over the
  exposure around each row's time (the depth is not blurred).

Noise is drawn from ``numpy.random.default_rng([seed, 7, global_frame_index])``: a frame is the same whatever ``start``
or the access order.  The camera orbits the room centre on a seeded smooth trajectory (sums of sinusoids) looking around
the table; frame ``i`` is at t = (start + i) / fps and ``T_w_c_gt`` is exact.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Optional

import numpy as np

from prism_ros.core.camera import Camera
from prism_ros.core.rolling_shutter import row_times
from prism_ros.datasets.base import DatasetBase, Frame, slice_range

from .render import pinhole_rays, render_rays, render_scene
from .scene import default_scene, make_scene, pack_scene, scene_sdf

__all__ = [
    "SyntheticSequence",
    "open_synthetic",
    "look_at",
    # the scene and its renderer (prism_ros.sim.scene, prism_ros.sim.render)
    "make_scene",
    "scene_sdf",
    "render_scene",
    "render_rays",
    "pinhole_rays",
    "pack_scene",
]


def look_at(position: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0), roll: float = 0.0) -> np.ndarray:
    """4x4 camera-to-world pose of an optical frame (z forward, x right, y down) at
    ``position`` looking at ``target`` with world ``up``, rotated by ``roll`` about z."""
    z = np.asarray(target, float) - np.asarray(position, float)
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, float))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c, s = math.cos(roll), math.sin(roll)
    x, y = c * x + s * y, -s * x + c * y
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, position
    return T


class _Trajectory:
    """Smooth analytic camera trajectory (sums of sinusoids), parameterised by seed."""

    def __init__(self, seed: int, speed: float = 1.0):
        rng = np.random.default_rng([int(seed), 1234])
        self.ph = rng.uniform(0.0, 2.0 * math.pi, size=12)
        self.theta0 = rng.uniform(0.0, 2.0 * math.pi)
        self.speed = float(speed)

    def position_target_roll(self, t: float):
        t = self.speed * t
        ph = self.ph
        th = self.theta0 + 0.3 * t + 0.2 * math.sin(0.8 * t + ph[0])
        rad = 1.0 + 0.06 * math.sin(1.3 * t + ph[1])
        pos = np.array(
            [
                1.2 * rad * math.cos(th),
                0.9 * rad * math.sin(th),
                1.35 + 0.12 * math.sin(0.9 * t + ph[2]) + 0.03 * math.sin(2.3 * t + ph[3]),
            ]
        )
        target = np.array(
            [
                0.25 * math.sin(1.1 * t + ph[4]) + 0.06 * math.sin(2.3 * t + ph[5]),
                0.2 * math.sin(0.9 * t + ph[6]) + 0.05 * math.sin(2.1 * t + ph[7]),
                0.45 + 0.12 * math.sin(0.7 * t + ph[8]),
            ]
        )
        roll = 0.1 * math.sin(1.5 * t + ph[9]) + 0.03 * math.sin(2.7 * t + ph[10])
        return pos, target, roll

    def pose(self, t: float) -> np.ndarray:
        pos, target, roll = self.position_target_roll(t)
        return look_at(pos, target, roll=roll)


def _log_so3(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R).as_rotvec()


# ----------------------------------------------------------------------------- the dataset


class SyntheticSequence(DatasetBase):
    """Procedural RGB-D sequence with exact geometry and ground truth (module docstring).

    Capabilities (:mod:`prism_ros.datasets.capabilities`): exact SDF (:meth:`sdf`), ground-truth twists
    (:meth:`gt_twists`); its stamps are made up at ``fps`` (``has_timestamps`` False).  ``fx``/``fy``/``cx``/``cy``
    default to fx = fy = 525 * width / 640, cx = (width - 1) / 2, cy = (height - 1) / 2.  ``config`` (a
    PrismConfig) supplies the depth noise model.  Frame i is at t = (start + i) / fps with the noise of
    global frame start + i; ``speed`` scales the trajectory's time; ``cache`` keeps that many rendered frames.
    """

    has_timestamps = False

    def __init__(
        self,
        width: int = 320,
        height: int = 240,
        n_frames: int = 150,
        fps: float = 30.0,
        seed: int = 0,
        noise: bool = True,
        fx: Optional[float] = None,
        fy: Optional[float] = None,
        cx: Optional[float] = None,
        cy: Optional[float] = None,
        holes: Optional[bool] = None,
        dropout: float = 0.02,
        grazing_deg: float = 80.0,
        depth_min: float = 0.3,
        depth_max: float = 4.0,
        depth_quantum: float = 0.0,
        color_noise: float = 2.0,
        noise_corr_px: int = 4,
        config=None,
        start: int = 0,
        speed: float = 1.0,
        cache: int = 0,
        name: Optional[str] = None,
        readout_s: float = 0.0,
        exposure_s: float = 0.0,
        blur_samples: int = 5,
    ):
        if n_frames <= 0:
            raise ValueError(f"n_frames must be positive, got {n_frames}")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        if not (math.isfinite(readout_s) and readout_s >= 0 and math.isfinite(exposure_s) and exposure_s >= 0):
            raise ValueError(f"readout_s and exposure_s must be finite and >= 0, got {readout_s}, {exposure_s}")
        if not (math.isfinite(speed) and speed > 0) or blur_samples < 1:
            raise ValueError(f"speed must be finite and > 0 and blur_samples >= 1, got {speed}, {blur_samples}")
        w, h = int(width), int(height)
        f = 525.0 * w / 640.0
        self.camera = Camera(
            float(fx if fx is not None else f),
            float(fy if fy is not None else (fx if fx is not None else f)),
            float(cx if cx is not None else (w - 1) / 2.0),
            float(cy if cy is not None else (h - 1) / 2.0),
            w,
            h,
        )
        if config is None:
            from prism_ros.core.config import FilterConfig

            config = FilterConfig()  # the declared defaults
        c0, c2, z0 = config.depth_noise_c0_m, config.depth_noise_c2_per_m, config.depth_noise_z0_m
        self.noise_c0, self.noise_c2, self.noise_z0 = float(c0), float(c2), float(z0)
        self.fps = float(fps)
        self.seed = int(seed)
        self.noise = bool(noise)
        self.holes = self.noise if holes is None else bool(holes)
        self.dropout = float(dropout)
        self.grazing_deg = float(grazing_deg)
        self.depth_min = float(depth_min)
        self.depth_max = float(depth_max)
        self.depth_quantum = float(depth_quantum)
        self.color_noise = float(color_noise)
        self.noise_corr_px = max(1, int(noise_corr_px))
        self.start = int(start)
        self.readout_s = float(readout_s)
        self.exposure_s = float(exposure_s)
        self.blur_samples = int(blur_samples) if exposure_s > 0 else 1
        self.speed = float(speed)
        self.scene = default_scene()
        self._traj = _Trajectory(self.seed, speed)
        self._stamps = (self.start + np.arange(int(n_frames))) / self.fps
        self._gt = [self._traj.pose(t) for t in self._stamps]
        self._cache: "OrderedDict[int, Frame]" = OrderedDict()
        self._cache_size = int(cache)
        # the options that differ from the defaults, as open_synthetic reads them back
        # (repr: the shortest text that reads back as the same float; blur_samples is not in the name)
        timing = (f",speed={float(speed)!r}" if speed != 1.0 else "") + "".join(
            f",{key}={float(value)!r}" for key, value in (("readout", readout_s), ("exposure", exposure_s)) if value > 0
        )
        self.name = (
            name or f"synthetic:{int(n_frames)}@{w}x{h},seed={self.seed}{'' if self.noise else ',clean'}{timing}"
        )

    # --- geometry / ground truth ------------------------------------------------
    def sdf(self, points: np.ndarray) -> np.ndarray:
        """Signed distance (m, float64, positive in free space) at (N,3) world points; a bound inside solids."""
        return scene_sdf(points, self.scene)

    def sigma_z(self, z) -> np.ndarray:
        """Depth noise std (m) of the model used for the noise: c0 + c2 (z - z0)^2."""
        z = np.asarray(z, dtype=np.float64)
        return self.noise_c0 + self.noise_c2 * (z - self.noise_z0) ** 2

    def pose_at(self, t: float) -> np.ndarray:
        """Exact camera-to-world pose at time ``t`` seconds (any t, not just frame times)."""
        return self._traj.pose(float(t))

    def gt_twists(self, h: float = 1e-4) -> np.ndarray:
        """(N,6) exact body-frame velocities (vx, vy, vz, wx, wy, wz) at the frame times
        (m/s, rad/s, camera optical frame, ROS twist order; central differences of the
        analytic trajectory with step ``h``)."""
        out = np.empty((len(self), 6))
        for i, t in enumerate(self._stamps):
            Ta, Tb, T = self.pose_at(t - h), self.pose_at(t + h), self._gt[i]
            R = T[:3, :3]
            out[i, :3] = R.T @ (Tb[:3, 3] - Ta[:3, 3]) / (2 * h)
            out[i, 3:] = _log_so3(Ta[:3, :3].T @ Tb[:3, :3]) / (2 * h)
        return out

    # --- rendering ----------------------------------------------------------------
    def render(self, T_w_c: np.ndarray, camera: Optional[Camera] = None) -> dict:
        """Noise-free render (see :func:`render_scene`) at any pose, default camera."""
        return render_scene(T_w_c, camera or self.camera, self.scene)

    def _load(self, i: int) -> Frame:
        if i in self._cache:
            self._cache.move_to_end(i)
            fr = self._cache[i]
            return Frame(fr.index, fr.stamp, fr.rgb.copy(), fr.depth.copy(), fr.T_w_c_gt.copy(), None)
        T = self._gt[i]
        r = self._render_timed(float(self._stamps[i]), T)
        depth = r["depth"]
        color = r["color"]
        if self.noise or self.holes:
            rng = np.random.default_rng([self.seed, 7, self.start + i])
            valid = depth > 0
            if self.noise:
                z = depth.astype(np.float64)
                # spatially correlated, like a structured-light sensor's block matching:
                # one N(0, 1) draw per noise_corr_px x noise_corr_px block of pixels
                k = self.noise_corr_px
                H, W = depth.shape
                n = rng.standard_normal(((H + k - 1) // k, (W + k - 1) // k))
                n = np.repeat(np.repeat(n, k, axis=0), k, axis=1)[:H, :W]
                zn = np.where(valid, z + self.sigma_z(z) * n, 0.0)
                if self.depth_quantum > 0:
                    zn = np.round(zn / self.depth_quantum) * self.depth_quantum
                depth = zn.astype(np.float32)
                color = color * np.float32(255.0) + np.float32(self.color_noise) * rng.standard_normal(
                    color.shape, dtype=np.float32
                )
            else:
                color = color * 255.0
            if self.holes:
                keep = valid & (rng.random(depth.shape, dtype=np.float32) >= self.dropout)
                keep &= r["cos_incidence"] >= math.cos(math.radians(self.grazing_deg))
                keep &= (depth >= self.depth_min) & (depth <= self.depth_max)
                depth = np.where(keep, depth, np.float32(0.0)).astype(np.float32)
            depth[~np.isfinite(depth)] = 0.0
            rgb = np.clip(np.round(color), 0, 255).astype(np.uint8)
        else:
            rgb = np.clip(np.round(color * 255.0), 0, 255).astype(np.uint8)
        fr = Frame(
            index=i,
            stamp=float(self._stamps[i]),
            rgb=rgb,
            depth=np.ascontiguousarray(depth, dtype=np.float32),
            T_w_c_gt=T.copy(),
        )
        if self._cache_size > 0:
            self._cache[i] = Frame(fr.index, fr.stamp, rgb.copy(), fr.depth.copy(), T.copy(), None)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return fr

    def row_poses(self, t: float) -> np.ndarray:
        """(H, 4, 4): the pose each image row is seen from for a frame stamped ``t`` (``readout_s``)."""
        return np.stack([self._traj.pose(t + d) for d in row_times(self.camera.height, self.readout_s)])

    def _render_timed(self, t: float, T_w_c: np.ndarray) -> dict:
        """The render of a frame stamped ``t`` (pose ``T_w_c`` at the stamp): rolling shutter (``readout_s``),
        colour blurred over ``exposure_s``."""
        if self.readout_s == 0 and self.exposure_s == 0:
            return render_scene(T_w_c, self.camera, self.scene)
        r = render_scene(self.row_poses(t), self.camera, self.scene)
        if self.blur_samples > 1:
            offsets = (np.arange(self.blur_samples) / (self.blur_samples - 1) - 0.5) * self.exposure_s
            colour = np.zeros_like(r["color"])
            for d in offsets:
                colour += render_scene(self.row_poses(t + d), self.camera, self.scene)["color"]
            r["color"] = colour / len(offsets)
        return r


def open_synthetic(name: str, start: int = 0, frames: Optional[int] = None, **kw) -> SyntheticSequence:
    """Open ``"synthetic"`` or ``"synthetic:<n_frames>[@<w>x<h>][,seed=<s>][,clean][,speed=<x>][,readout=<s>]
    [,exposure=<s>]"`` (the name a sequence prints; ``readout`` / ``exposure``: ``readout_s`` / ``exposure_s``);
    plain ``"synthetic"`` has ``start + frames`` frames (150 when ``frames`` is None), 640x480 by default.
    """
    p = str(name)
    if p == "synthetic" or p.startswith("synthetic:"):
        # plain 'synthetic': as long as start/frames ask (150 frames by default)
        n_total = kw.pop("n_frames", None)
        if n_total is None:
            n_total = int(start) + int(frames) if frames is not None and int(frames) > 0 else 150
        if p.startswith("synthetic:"):
            spec = p.split(":", 1)[1]
            try:
                spec, *options = spec.split(",")  # the options the sequence's name prints
                for opt in options:
                    key, _, value = opt.strip().partition("=")
                    if key == "seed" and value:
                        kw["seed"] = int(value)
                    elif key == "clean" and not value:
                        kw["noise"] = False
                    elif key in ("speed", "readout", "exposure") and value:
                        kw[{"readout": "readout_s", "exposure": "exposure_s"}.get(key, key)] = float(value)
                    else:
                        raise ValueError(opt)
                if "@" in spec:  # synthetic:<n_frames>@<width>x<height>
                    spec, size = spec.split("@", 1)
                    w, h = size.lower().split("x")
                    kw["width"], kw["height"] = int(w), int(h)
                n_total = int(spec)
            except ValueError:
                raise ValueError(
                    f"'{p}': expected 'synthetic', 'synthetic:<n_frames>' or "
                    f"'synthetic:<n_frames>@<width>x<height>' with integers, optionally "
                    f"followed by ',seed=<s>', ',clean', ',speed=<x>', ',readout=<s>', ',exposure=<s>' "
                    "(as the sequence's name prints)"
                ) from None
        if n_total <= 0:
            raise ValueError(f"'{p}': the number of frames must be positive")
        lo, hi = slice_range(int(n_total), start, frames, what=f"'{p}'")
        kw.setdefault("width", 640)  # a Kinect-like 640x480 camera, the filter's design point
        kw.setdefault("height", 480)
        return SyntheticSequence(n_frames=hi - lo, start=lo, **kw)
