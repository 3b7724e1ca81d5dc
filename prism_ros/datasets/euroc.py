"""EuRoC MAV sequences in the ASL folder layout (Burri et al., IJRR 2016).

Layout (``path`` is the sequence folder holding ``mav0/``, or ``mav0`` itself)::

    mav0/cam0/data.csv, data/<ns>.png, sensor.yaml   left camera (grey, 752x480)
    mav0/cam1/...                                    right camera
    mav0/imu0/data.csv, sensor.yaml                  IMU (ns, w xyz, a xyz), noise densities
    mav0/state_groundtruth_estimate0/data.csv        ground truth (ns, p xyz, q wxyz, ...), body frame

* Frames are the stereo pairs with identical cam0/cam1 stamps (:attr:`frame_ns`, int ns; ``stamps()``
  in s).  Each is rectified (:mod:`prism_ros.core.stereo`); depth from StereoSGBM with a left-right check
  over the disparities that reach ``depth_min_m``, at ``stereo_downscale=2`` by default (1: full
  resolution; ``stereo_matcher="bm"``: StereoBM); ``depth_sigma`` = z^2 sigma_d / (f b) (default sigma_d:
  :data:`STEREO_SIGMA_D_PX`); ``rgb`` repeats the rectified grey left image in three channels.
* Bad pairs raise :class:`~prism_ros.datasets.base.FrameLoadError` naming the frame, the camera and the
  problem, ``kind`` a code of :func:`prism_ros.core.stereo.check_stereo_pair` (``missing_left`` /
  ``missing_right``, ``size``, ``black`` / ``saturated``).
* Poses (``T_w_c_gt``) are those of the RECTIFIED LEFT camera, ``T_w_c = T_w_B T_B_rect``; :attr:`T_body_cam` (=
  T_B_rect) maps back: ``T_w_B = T_w_c T_body_cam^-1`` (:meth:`to_body`, :meth:`gt_body_poses`).
* Ground truth, first found of: ``gt_path=`` (TUM ``t tx ty tz qx qy qz qw`` or ASL ``data.csv``);
  ``mav0/state_groundtruth_estimate0/data.csv``; a TUM ``*.txt`` in a ``groundtruth*`` folder next to
  ``mav0`` (the one covering most frames).  ``gt_path=False`` disables it.  Interpolated at the frame
  stamps (within ``gt_max_difference``, 0.02 s); ``require_gt=False`` (default) keeps frames without it.
* IMU: :attr:`imu`, :attr:`imu_ns`, :attr:`imu_noise`, :attr:`T_imu_cam` (``imu0/``). :meth:`control_between` integrates
  it between two frames into a :class:`prism_ros.core.types.Control`, aligning gravity and the gyro bias at the first
  call (static start).  ``use_imu=False``: no controls (constant velocity).

Capabilities (:mod:`prism_ros.datasets.capabilities`): config hints, body frame, controls, IMU, stereo,
exact frame stamps.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import List, Optional

import numpy as np

from prism_ros.core import se3
from prism_ros.core.imu import ImuData, ImuIntegrator, ImuNoise
from prism_ros.core.stereo import StereoRectifier, check_stereo_pair

from .base import DatasetBase, Frame, FrameLoadError, check_pose, slice_range
from .euroc_files import ns_to_s, read_euroc_imu_csv_ns, read_euroc_sensor_yaml
from .textfile import data_lines

__all__ = ["EurocDataset", "is_euroc_folder", "read_gt_file"]


def _mav0(path) -> Optional[Path]:
    p = Path(path)
    if (p / "mav0" / "cam0" / "data.csv").is_file():
        return p / "mav0"
    if p.name == "mav0" and (p / "cam0" / "data.csv").is_file():
        return p
    return None


def is_euroc_folder(path) -> bool:
    m = _mav0(path)
    return m is not None and (m / "cam1" / "data.csv").is_file() and (m / "cam0" / "sensor.yaml").is_file()


def _read_cam_csv(path: Path):
    """[(ns, filename)] of an ASL camera data.csv."""
    out = []
    for _, ln in data_lines(path):
        parts = [x.strip() for x in ln.split(",")]
        out.append((int(parts[0]), parts[1] if len(parts) > 1 else f"{parts[0]}.png"))
    return out


def read_gt_file(path):
    """(t seconds, xyz (N,3), quat xyzw (N,4)) from a TUM file or an ASL ground-truth data.csv."""
    path = str(path)
    lines = [ln for _, ln in data_lines(path)]
    if not lines:
        raise ValueError(f"{path}: no ground-truth rows")
    if "," in lines[0]:  # ASL: ns, px, py, pz, qw, qx, qy, qz, ...
        ns = np.array([int(ln.split(",")[0]) for ln in lines], dtype=np.int64)
        a = np.array([[float(x) for x in ln.split(",")[1:8]] for ln in lines])
        return ns_to_s(ns), a[:, 0:3], a[:, [4, 5, 6, 3]]
    a = np.array([[float(x) for x in ln.split()[:8]] for ln in lines])
    return a[:, 0], a[:, 1:4], a[:, 4:8]


#: disparity noise sigma_d (full-resolution px) of StereoRectifier per (matcher, downscale), the default of
#: ``sigma_d`` (2 sigma_z covers 95.4 % of the errors).  ("sgbm", 2) fitted on the real MH_01 slice (two-view
#: check, docs/euroc-real.md); the others on the simulated V1_02 flight (``prism-ros stereo-eval``).
STEREO_SIGMA_D_PX = {("bm", 2): 0.25, ("sgbm", 2): 0.58, ("sgbm", 1): 0.27}


def stereo_sigma_d(downscale: int = 2, matcher: Optional[str] = None) -> float:
    """The default disparity sigma (full-resolution px) of :data:`STEREO_SIGMA_D_PX` (``matcher``
    None: StereoSGBM, the default)."""
    return STEREO_SIGMA_D_PX[(matcher or "sgbm", int(downscale))]


class EurocDataset(DatasetBase):
    """A EuRoC ASL folder (module docstring).  Attributes: ``root`` (the sequence folder), ``mav0``, :attr:`frame_ns`,
    ``stereo``, ``T_body_cam``, ``imu``, ``imu_ns``, ``imu_noise``, ``T_imu_cam``, ``gt_source``.
    """

    config_hints = {
        "depth_min_m": 0.3,
        "depth_max_m": 5.0,
        "voxel_size_m": 0.02,
        "truncation_m": 0.1,
        "icp_max_distance_m": 0.2,
    }
    config_hints_reason = (
        "EuRoC stereo depth: 11 cm baseline, sigma_z = z^2 sigma_d / (f b) grows as z^2 (0.30 m at 5 m); "
        "2 cm voxels (4 cm voxels drifted 14 mm on the static micro sequence, 2 cm: 3 mm)"
    )

    def __init__(
        self,
        path,
        start: int = 0,
        frames: Optional[int] = None,
        gt_path=None,
        require_gt: bool = False,
        gt_max_difference: float = 0.02,
        sigma_d: Optional[float] = None,
        num_disparities: Optional[int] = None,
        block_size: int = 5,
        lr_max_diff: float = 1.0,
        use_imu: bool = True,
        imu_init_window_s: float = 1.0,
        stereo_downscale: int = 2,
        stereo_matcher: Optional[str] = None,
        depth_min_m: Optional[float] = None,
    ):
        mav0 = _mav0(path)
        if mav0 is None:
            raise ValueError(f"'{path}' is not an EuRoC (ASL) folder: no mav0/cam0/data.csv")
        self.root = mav0.parent if mav0.name == "mav0" else mav0
        self.mav0 = mav0
        root_name = Path(path).resolve().name
        self.name = f"euroc:{self.root.resolve().name if root_name == 'mav0' else root_name}"
        self._init_calibration(
            mav0,
            sigma_d=sigma_d,
            num_disparities=num_disparities,
            block_size=block_size,
            lr_max_diff=lr_max_diff,
            downscale=stereo_downscale,
            matcher=stereo_matcher,
            depth_min_m=depth_min_m,
        )

        left = dict(_read_cam_csv(mav0 / "cam0" / "data.csv"))
        right = dict(_read_cam_csv(mav0 / "cam1" / "data.csv"))
        both = sorted(set(left) & set(right))
        lo, hi = slice_range(len(both), start, frames, what=f"EuRoC '{path}'")
        sel = both[lo:hi]
        #: (N,) int64 nanosecond stamps of the frames (the cam0 = cam1 stamp of each pair)
        self.frame_ns = np.asarray(sel, dtype=np.int64)
        self._files = [(mav0 / "cam0" / "data" / left[n], mav0 / "cam1" / "data" / right[n]) for n in sel]
        self._stamps = ns_to_s(self.frame_ns)

        # --- ground truth (body frame) -> rectified left camera
        self._init_gt(self._find_gt(gt_path), require_gt, gt_max_difference)

        # --- IMU
        imu_csv = mav0 / "imu0" / "data.csv"
        imu, imu_ns = read_euroc_imu_csv_ns(imu_csv) if use_imu and imu_csv.is_file() else (None, None)
        self._init_imu(imu, imu_ns, mav0, imu_init_window_s)

    # ------------------------------------------------------------------ setup (shared with EurocBagDataset)
    def _init_calibration(
        self,
        mav0: Path,
        sigma_d: Optional[float],
        num_disparities: Optional[int],
        block_size: int,
        lr_max_diff: float,
        downscale: int = 2,
        matcher: Optional[str] = None,
        depth_min_m: Optional[float] = None,
    ) -> None:
        """Stereo rectifier, camera and T_body_cam from ``mav0/cam{0,1}/sensor.yaml``.  Without
        ``num_disparities`` the matcher searches down to ``depth_min_m`` (default: the
        ``depth_min_m`` of :attr:`config_hints`, the filter's nearest depth on EuRoC)."""
        for cam in ("cam0", "cam1"):
            if not (mav0 / cam / "sensor.yaml").is_file():
                raise ValueError(f"EuRoC calibration: {mav0 / cam / 'sensor.yaml'} not found")
        c0 = read_euroc_sensor_yaml(mav0 / "cam0" / "sensor.yaml")["calib"]
        c1 = read_euroc_sensor_yaml(mav0 / "cam1" / "sensor.yaml")["calib"]
        matcher = matcher or "sgbm"
        if sigma_d is None:
            sigma_d = stereo_sigma_d(downscale, matcher)
        if num_disparities is not None:  # an explicit count wins
            depth_min_m = None
        elif depth_min_m is None:
            depth_min_m = self.config_hints["depth_min_m"]
        self.stereo = StereoRectifier(
            c0,
            c1,
            num_disparities=num_disparities,
            block_size=block_size,
            sigma_d=sigma_d,
            lr_max_diff=lr_max_diff,
            downscale=downscale,
            matcher=matcher,
            depth_min_m=depth_min_m,
        )
        self.camera = self.stereo.camera
        #: rectified left camera -> body (IMU) frame
        self.T_body_cam = self.stereo.T_B_rect.copy()

    def _keep_frames(self, keep: List[int]) -> None:
        """Restrict the frame list to the indices ``keep`` (require_gt)."""
        self.frame_ns, self._stamps = self.frame_ns[keep], self._stamps[keep]
        self._files = [self._files[k] for k in keep]

    def _init_gt(self, src, require_gt: bool, gt_max_difference: float) -> None:
        self.gt_source: Optional[str] = None
        self._gt_body: Optional[List[Optional[np.ndarray]]] = None
        self._gt = None
        if src is not None:
            from .tum import interpolate_poses

            t, xyz, q = read_gt_file(src)
            body = interpolate_poses(t, xyz, q, self._stamps, gt_max_difference)
            body = [None if b is None else check_pose(b) for b in body]
            self.gt_source = str(src)
            if require_gt:
                keep = [k for k, b in enumerate(body) if b is not None]
                if not keep:
                    raise ValueError(f"{src}: no ground truth within {gt_max_difference} s of any frame")
                self._keep_frames(keep)
                body = [body[k] for k in keep]
            self._gt_body = body
            self._gt = [None if b is None else b @ self.T_body_cam for b in body]

    def _init_imu(self, imu, imu_ns, mav0: Path, imu_init_window_s: float) -> None:
        """IMU samples (ImuData or None), their integer stamps, and their noise / extrinsics from
        ``mav0/imu0/sensor.yaml``."""
        self.imu: Optional[ImuData] = None
        #: (M,) int64 nanosecond stamps of the IMU samples, or None without IMU
        self.imu_ns: Optional[np.ndarray] = None
        self.imu_noise = ImuNoise()
        #: rectified left camera -> IMU frame, or None without IMU
        self.T_imu_cam: Optional[np.ndarray] = None
        self._integrator: Optional[ImuIntegrator] = None
        self.imu_init_window_s = float(imu_init_window_s)
        if imu is not None:
            self.imu = imu
            self.imu_ns = None if imu_ns is None else np.asarray(imu_ns, dtype=np.int64)
            T_B_I = np.eye(4)
            if (mav0 / "imu0" / "sensor.yaml").is_file():
                doc = read_euroc_sensor_yaml(mav0 / "imu0" / "sensor.yaml")
                T_B_I = np.asarray(doc.get("T_BS", np.eye(4)), float)
                self.imu_noise = ImuNoise.from_sensor_yaml(doc)
            self.T_imu_cam = se3.inv(T_B_I) @ self.T_body_cam

    # ------------------------------------------------------------------ gt
    def _find_gt(self, gt_path):
        if gt_path is False:
            return None
        if gt_path:
            if not os.path.isfile(str(gt_path)):
                raise ValueError(f"ground-truth file '{gt_path}' does not exist")
            return str(gt_path)
        asl = self.mav0 / "state_groundtruth_estimate0" / "data.csv"
        if asl.is_file():
            return str(asl)
        cands = sorted(
            glob.glob(str(self.root / "groundtruth*" / "*.txt")) + glob.glob(str(self.root / "groundtruth*.txt"))
        )
        best, best_n = None, 0
        for c in cands:
            try:
                t, _, _ = read_gt_file(c)
            except (ValueError, OSError, IndexError):
                continue
            n = int(np.sum((self._stamps >= t.min() - 0.02) & (self._stamps <= t.max() + 0.02)))
            if n > best_n:
                best, best_n = c, n
        return best

    def gt_body_poses(self) -> Optional[np.ndarray]:
        """(N,4,4) body (IMU) frame ground truth T_w_B, or None unless every frame has one."""
        if self._gt_body is None or any(g is None for g in self._gt_body):
            return None
        return np.stack(self._gt_body)

    def to_body(self, T_w_c: np.ndarray) -> np.ndarray:
        """Camera pose(s) (4x4 or Nx4x4) of the rectified left camera -> body frame poses."""
        return np.asarray(T_w_c, float) @ se3.inv(self.T_body_cam)

    # ------------------------------------------------------------------ frames
    def raw_pair(self, i: int):
        """The raw (left, right) grey images of frame ``i``; FrameLoadError when either is
        missing or unreadable, or of the wrong size."""
        i = self._check_index(i)
        import cv2

        imgs = []
        for p in self._files[i]:
            img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) if p.is_file() else None
            if img is None:
                imgs.append((None, "file not found" if not p.is_file() else "not a readable image"))
            else:
                imgs.append((img, ""))
        (L, why_l), (R, why_r) = imgs
        self._check_pair(i, L, R, {"left": why_l, "right": why_r}, exposure=False)
        return L, R

    def _check_pair(self, i: int, L, R, why=None, exposure: bool = True) -> None:
        """FrameLoadError naming the frame, the camera and the first problem of the pair
        (:func:`prism_ros.core.stereo.check_stereo_pair`; ``exposure=False``: missing and
        size only)."""
        probs = check_stereo_pair(L, R, self.stereo.size)
        if not exposure:
            probs = [p for p in probs if p.code not in ("black", "saturated")]
        if not probs:
            return
        p = probs[0]
        cam = "cam0 (left)" if p.side == "left" else "cam1 (right)"
        if p.code.startswith("missing_"):
            reason = f"{cam} image missing ({(why or {}).get(p.side) or 'no image'})"
        elif p.code == "size":
            reason = f"{cam} {p.message}"
        else:
            reason = f"{cam} {p.message.split(' ', 1)[1]}"
        raise FrameLoadError(i, self._pair_source(i, p.side), reason + ": pair skipped, no stereo depth", kind=p.code)

    def _pair_source(self, i: int, side: str) -> str:
        """Where frame ``i``'s left / right image comes from (for messages)."""
        return str(self._files[i][0 if side == "left" else 1])

    def _load(self, i: int) -> Frame:
        L, R = self.raw_pair(i)
        self._check_pair(i, L, R)  # black / saturated: no depth (the matcher would invent some)
        grey, depth, sigma = self.stereo.compute(L, R)
        rgb = np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
        gt = None if self._gt is None or self._gt[i] is None else np.array(self._gt[i])
        return Frame(i, float(self._stamps[i]), rgb, depth, gt, sigma)

    # ------------------------------------------------------------------ IMU
    def integrator(self) -> Optional[ImuIntegrator]:
        if self.imu is None:
            return None
        if self._integrator is None:
            self._integrator = ImuIntegrator(self.imu, self.T_imu_cam, self.imu_noise)
        return self._integrator

    def restart_controls(self) -> None:
        """A new run: a new IMU integrator (gravity aligned again, biases from the configuration)."""
        self._integrator = None

    def control_between(self, i_prev: int, i: int, state):
        """IMU control from frame ``i_prev`` to ``i`` given the filter's state at ``i_prev`` (a
        :class:`prism_ros.core.dynamics.MotionState`: ``T_w_c``, ``nu``, optionally ``P``, ``Sigma``), or None; the
        first call aligns gravity with the filter's world from the static window at the start.
        """
        integ = self.integrator()
        if integ is None or state is None:
            return None
        t0, t1 = float(self._stamps[self._check_index(i_prev)]), float(self._stamps[self._check_index(i)])
        if not (integ.imu.t[0] <= t0 and t1 <= integ.imu.t[-1]) or t1 <= t0:
            return None
        if integ.g_w is None:
            # align with the filter's orientation at i_prev (static window centred there)
            integ.initialise(state.T_w_c, t0, self.imu_init_window_s)
        return integ.control(t0, t1, state.T_w_c, state.nu, getattr(state, "P", None), getattr(state, "Sigma", None))
