"""Microsoft 7-Scenes sequence folders (Shotton et al., CVPR 2013).

Layout of one sequence folder (e.g. ``redkitchen/seq-01``)::

    frame-000000.color.png   (or .jpg)   colour, 640x480
    frame-000000.depth.png                uint16 millimetres; 0 and 65535 are invalid
    frame-000000.pose.txt                 4x4 camera-to-world, metres
    camera-intrinsics.txt                 optional 3x3 K (else fx = fy = 585, cx = 320, cy = 240)

* Stamps: none are recorded; frame stamp = ``(frame_number - first_frame_number) / 30`` s from the first
  frame present (``start`` does not move the origin).  ``start``/``frames`` count frames present.
* A pose file that is missing or not a finite rigid transform gives ``T_w_c_gt = None`` (rotations are
  projected onto SO(3)).
* Colour and depth come from different sensors and are not registered; the reader does not fix that.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List, Optional

import numpy as np

from prism_ros.core.camera import Camera

from .base import DatasetBase, Frame, check_pose, image_size, load_depth_u16, load_rgb, slice_range

__all__ = ["SevenScenesDataset", "is_sevenscenes_folder"]

_DEPTH_RE = re.compile(r"^frame-(\d+)\.depth\.png$")
FPS = 30.0
DEFAULT_K = (585.0, 585.0, 320.0, 240.0)


def _depth_files(path: Path):
    out = []
    try:
        names = os.listdir(path)
    except OSError:
        return out
    for name in names:
        m = _DEPTH_RE.match(name)
        if m:
            out.append((int(m.group(1)), m.group(1), name))
    out.sort()
    return out


def is_sevenscenes_folder(path) -> bool:
    p = Path(path)
    return p.is_dir() and len(_depth_files(p)) > 0


def _read_pose(path: Path) -> Optional[np.ndarray]:
    try:
        with open(path, "r") as f:
            vals = [float(x) for x in f.read().split()]
    except (OSError, ValueError):
        return None
    if len(vals) != 16:
        return None
    return check_pose(np.array(vals).reshape(4, 4))


def _read_intrinsics(path: Path):
    try:
        with open(path, "r") as f:
            vals = [float(x) for x in f.read().split()]
    except (OSError, ValueError):
        vals = []
    if len(vals) != 9:
        raise ValueError(f"{path}: expected a 3x3 intrinsics matrix (9 numbers)")
    K = np.array(vals).reshape(3, 3)
    return K[0, 0], K[1, 1], K[0, 2], K[1, 2]


class SevenScenesDataset(DatasetBase):
    """Lazily loaded 7-Scenes sequence folder: ``start``/``frames`` select frames present; ``camera`` overrides the
    intrinsics; ``depth_scale`` converts raw depth to m (1000: mm).  Config hints: no photometric term; stamps
    made up at 30 Hz (``has_timestamps`` False).
    """

    config_hints = {"use_photometric": False}
    config_hints_reason = (
        "7-Scenes colour and depth come from two unregistered sensors, so a colour "
        "pixel does not see the point its depth pixel measures"
    )
    has_timestamps = False

    def __init__(
        self,
        path,
        start: int = 0,
        frames: Optional[int] = None,
        camera: Optional[Camera] = None,
        depth_scale: float = 1000.0,
        name: Optional[str] = None,
    ):
        self.root = Path(path)
        files = _depth_files(self.root)
        if not files:
            raise ValueError(f"{path}: no frame-XXXXXX.depth.png files (not a 7-Scenes sequence folder)")
        first_num = files[0][0]
        lo, hi = slice_range(len(files), start, frames, what=f"7-Scenes folder {path}")
        files = files[lo:hi]
        self.depth_scale = float(depth_scale)
        self.name = name or f"7scenes:{self.root.resolve().name}"

        self._depth_paths: List[str] = []
        self._rgb_paths: List[str] = []
        gt: List[Optional[np.ndarray]] = []
        stamps = []
        for num, digits, dname in files:
            stem = f"frame-{digits}"
            self._depth_paths.append(str(self.root / dname))
            rgb = self.root / f"{stem}.color.png"
            if not rgb.exists():
                jpg = self.root / f"{stem}.color.jpg"
                rgb = jpg if jpg.exists() else rgb  # missing -> FrameLoadError at load time
            self._rgb_paths.append(str(rgb))
            gt.append(_read_pose(self.root / f"{stem}.pose.txt"))
            stamps.append((num - first_num) / FPS)
        self._stamps = np.array(stamps, dtype=np.float64)
        self._gt = gt if any(g is not None for g in gt) else None

        if camera is None:
            kpath = self.root / "camera-intrinsics.txt"
            fx, fy, cx, cy = _read_intrinsics(kpath) if kpath.exists() else DEFAULT_K
            size = image_size(self._depth_paths[0]) or (640, 480)
            camera = Camera(float(fx), float(fy), float(cx), float(cy), int(size[0]), int(size[1]))
        self.camera = camera

    def _load(self, i: int) -> Frame:
        size = (self.camera.width, self.camera.height)
        raw = load_depth_u16(i, self._depth_paths[i], size)
        depth = raw.astype(np.float32) * np.float32(1.0 / self.depth_scale)
        depth[(raw == 0) | (raw == 65535)] = 0.0
        rgb = load_rgb(i, self._rgb_paths[i], size)
        gt = self._gt[i] if self._gt is not None else None
        return Frame(
            index=i,
            stamp=float(self._stamps[i]),
            rgb=rgb,
            depth=depth,
            T_w_c_gt=None if gt is None else gt.copy(),
        )
