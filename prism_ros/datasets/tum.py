"""TUM RGB-D benchmark sequence folders (Sturm et al., IROS 2012).

Layout::

    rgb.txt          "timestamp filename" per line (lines starting with # are comments)
    depth.txt        same, for the 16-bit depth PNGs (value / 5000 = metres, 0 invalid)
    groundtruth.txt  "timestamp tx ty tz qx qy qz qw" (camera-to-world, optional)

* Colour and depth pair one-to-one as TUM's ``associate.py`` (:func:`associate`, ``max_difference``
  0.02 s); unpaired images are dropped; frames in colour-stamp order, stamped with the colour stamp.
* Ground truth is interpolated at the colour stamp (:func:`interpolate_poses`).  With a ground-truth file,
  frames without it are dropped (``require_gt=True``, default) or kept with ``T_w_c_gt = None``.
* Intrinsics follow the folder name (``freiburg1``/``fr1``, ``freiburg2``, ``freiburg3``; default
  525/525/319.5/239.5), ``camera=`` overrides; the images are used as recorded (no undistortion).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from prism_ros.core.camera import Camera
from prism_ros.core.se3 import make_T
from .textfile import data_lines

from .base import DatasetBase, Frame, image_size, load_depth_u16, load_rgb, slice_range

__all__ = [
    "TumDataset",
    "is_tum_folder",
    "read_file_list",
    "associate",
    "interpolate_poses",
    "tum_intrinsics",
    "write_tum_folder",
]

TUM_INTRINSICS = {
    "fr1": (517.3, 516.5, 318.6, 255.3),
    "fr2": (520.9, 521.0, 325.1, 249.7),
    "fr3": (535.4, 539.2, 320.1, 247.6),
    "default": (525.0, 525.0, 319.5, 239.5),
}


def is_tum_folder(path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "rgb.txt").is_file() and (p / "depth.txt").is_file()


def tum_intrinsics(path, width: int = 640, height: int = 480) -> Camera:
    """Camera of a TUM folder from its name (freiburg1/2/3), else the default."""
    name = Path(path).resolve().name.lower()
    key = "default"
    for k, pat in (("fr1", r"(freiburg|fr)_?1"), ("fr2", r"(freiburg|fr)_?2"), ("fr3", r"(freiburg|fr)_?3")):
        if re.search(pat, name):
            key = k
            break
    fx, fy, cx, cy = TUM_INTRINSICS[key]
    return Camera(fx, fy, cx, cy, width, height)


def read_file_list(path) -> List[Tuple[float, List[str]]]:
    """Parse a TUM list file: [(stamp, [fields...])]; comments and blank lines skipped, commas accepted."""
    out = []
    for ln, line in data_lines(path):
        parts = line.replace(",", " ").split()
        try:
            t = float(parts[0])
        except ValueError:
            raise ValueError(f"{path}:{ln}: expected a timestamp, got {parts[0]!r}") from None
        out.append((t, parts[1:]))
    return out


def associate(a: Sequence[float], b: Sequence[float], max_difference: float = 0.02, offset: float = 0.0):
    """One-to-one association of two stamp lists (TUM associate.py): index pairs (ia, ib) sorted by a's stamp,
    candidates |a - (b + offset)| < max_difference taken greedily by increasing difference.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64) + offset
    order_b = np.argsort(b, kind="stable")
    bs = b[order_b]
    cands = []
    for ia, ta in enumerate(a):
        lo = np.searchsorted(bs, ta - max_difference, side="left")
        hi = np.searchsorted(bs, ta + max_difference, side="right")
        for k in range(lo, hi):
            d = abs(ta - bs[k])
            if d < max_difference:
                cands.append((d, ta, bs[k], ia, int(order_b[k])))
    cands.sort()
    used_a, used_b, pairs = set(), set(), []
    for _, _, _, ia, ib in cands:
        if ia in used_a or ib in used_b:
            continue
        used_a.add(ia)
        used_b.add(ib)
        pairs.append((ia, ib))
    pairs.sort(key=lambda p: (a[p[0]], p[0]))
    return pairs


def interpolate_poses(
    gt_t: np.ndarray, gt_xyz: np.ndarray, gt_quat_xyzw: np.ndarray, query: np.ndarray, max_difference: float = 0.02
):
    """TUM ground truth at ``query`` stamps (a 4x4 or None each): linear translation and slerp between the
    bracketing samples, served only when the nearer one is within ``max_difference`` (a query that close
    outside the span takes the end sample).
    """
    from scipy.spatial.transform import Rotation

    gt_t = np.asarray(gt_t, dtype=np.float64)
    order = np.argsort(gt_t, kind="stable")
    gt_t, gt_xyz, gt_q = gt_t[order], np.asarray(gt_xyz, float)[order], np.asarray(gt_quat_xyzw, float)[order]
    n = len(gt_t)
    out: List[Optional[np.ndarray]] = []
    if n == 0:
        return [None] * len(query)
    rots = Rotation.from_quat(gt_q)  # scipy normalises; (x, y, z, w) order as in TUM
    for tq in np.asarray(query, dtype=np.float64):
        k = int(np.searchsorted(gt_t, tq, side="right"))  # gt_t[k-1] <= tq < gt_t[k]
        if k == 0:
            i0 = i1 = 0
        elif k == n:
            i0 = i1 = n - 1
        else:
            i0, i1 = k - 1, k
        if min(abs(tq - gt_t[i0]), abs(gt_t[i1] - tq)) > max_difference:
            out.append(None)
            continue
        if i0 == i1 or gt_t[i1] == gt_t[i0]:
            out.append(make_T(rots[i0].as_matrix(), gt_xyz[i0]))
            continue
        s = (tq - gt_t[i0]) / (gt_t[i1] - gt_t[i0])
        s = min(max(s, 0.0), 1.0)
        xyz = (1.0 - s) * gt_xyz[i0] + s * gt_xyz[i1]
        r0 = rots[i0]
        rel = (r0.inv() * rots[i1]).as_rotvec()  # shortest arc
        R = (r0 * Rotation.from_rotvec(s * rel)).as_matrix()
        out.append(make_T(R, xyz))
    return out


class TumDataset(DatasetBase):
    """Lazily loaded TUM RGB-D sequence folder (see the module docstring)."""

    def __init__(
        self,
        path,
        start: int = 0,
        frames: Optional[int] = None,
        camera: Optional[Camera] = None,
        depth_scale: float = 5000.0,
        max_difference: float = 0.02,
        require_gt: bool = True,
        name: Optional[str] = None,
    ):
        self.root = Path(path)
        if not is_tum_folder(self.root):
            raise ValueError(f"{path}: not a TUM RGB-D folder (expected rgb.txt and depth.txt)")
        rgb_list = read_file_list(self.root / "rgb.txt")
        depth_list = read_file_list(self.root / "depth.txt")
        if not rgb_list or not depth_list:
            raise ValueError(f"{path}: rgb.txt or depth.txt lists no images")
        pairs = associate([t for t, _ in rgb_list], [t for t, _ in depth_list], max_difference)
        if not pairs:
            raise ValueError(f"{path}: no colour/depth pairs within {max_difference} s")
        rgb_t = np.array([rgb_list[ia][0] for ia, _ in pairs])
        rgb_f = [rgb_list[ia][1][0] for ia, _ in pairs]
        depth_f = [depth_list[ib][1][0] for _, ib in pairs]

        gt: Optional[List[Optional[np.ndarray]]] = None
        gt_path = self.root / "groundtruth.txt"
        if gt_path.is_file():
            rows = read_file_list(gt_path)
            data = np.array(
                [[t] + [float(x) for x in f[:7]] for t, f in rows if len(f) >= 7], dtype=np.float64
            ).reshape(-1, 8)
            gt = interpolate_poses(data[:, 0], data[:, 1:4], data[:, 4:8], rgb_t, max_difference)
            if require_gt:
                keep = [i for i, g in enumerate(gt) if g is not None]
                if not keep:
                    raise ValueError(
                        f"{path}: no frame has ground truth within {max_difference} s (use require_gt=False)"
                    )
                rgb_t = rgb_t[keep]
                rgb_f = [rgb_f[i] for i in keep]
                depth_f = [depth_f[i] for i in keep]
                gt = [gt[i] for i in keep]

        lo, hi = slice_range(len(rgb_t), start, frames, what=f"TUM folder {path}")
        self._stamps = rgb_t[lo:hi].copy()
        self._rgb_paths = [str(self.root / f) for f in rgb_f[lo:hi]]
        self._depth_paths = [str(self.root / f) for f in depth_f[lo:hi]]
        self._gt = None if gt is None else gt[lo:hi]
        if self._gt is not None and all(g is None for g in self._gt):
            self._gt = None
        self.depth_scale = float(depth_scale)
        self.name = name or f"tum:{self.root.resolve().name}"
        if camera is None:
            size = image_size(self._depth_paths[0]) or image_size(self._rgb_paths[0]) or (640, 480)
            camera = tum_intrinsics(self.root, int(size[0]), int(size[1]))
        self.camera = camera

    def _load(self, i: int) -> Frame:
        size = (self.camera.width, self.camera.height)
        raw = load_depth_u16(i, self._depth_paths[i], size)
        depth = raw.astype(np.float32) * np.float32(1.0 / self.depth_scale)
        rgb = load_rgb(i, self._rgb_paths[i], size)
        gt = self._gt[i] if self._gt is not None else None
        return Frame(
            index=i, stamp=float(self._stamps[i]), rgb=rgb, depth=depth, T_w_c_gt=None if gt is None else gt.copy()
        )


def write_tum_folder(
    path,
    frames,
    depth_stamp_offset: float = 0.0,
    gt_stamps: Optional[np.ndarray] = None,
    gt_poses: Optional[np.ndarray] = None,
    depth_scale: float = 5000.0,
) -> Path:
    """Write frames (iterable of :class:`Frame`) as a TUM folder (rgb/, depth/, lists).

    Colour is stamped with ``frame.stamp``, depth with ``frame.stamp + depth_stamp_offset``.  Ground truth
    from ``gt_stamps``/``gt_poses`` ((M,), (M,4,4)) when given, else from the frames' ``T_w_c_gt`` (frames
    without one are skipped).
    """
    from PIL import Image
    from scipy.spatial.transform import Rotation

    root = Path(path)
    (root / "rgb").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(parents=True, exist_ok=True)
    rgb_lines = ["# color images", "# file: prism_ros synthetic", "# timestamp filename"]
    depth_lines = ["# depth maps", "# file: prism_ros synthetic", "# timestamp filename"]
    own_t, own_T = [], []
    for fr in frames:
        ts = f"{fr.stamp:.6f}"
        td = f"{fr.stamp + depth_stamp_offset:.6f}"
        Image.fromarray(np.ascontiguousarray(fr.rgb, dtype=np.uint8), "RGB").save(root / "rgb" / f"{ts}.png")
        d = np.clip(np.round(np.nan_to_num(fr.depth) * depth_scale), 0, 65535).astype(np.uint16)
        Image.fromarray(d).save(root / "depth" / f"{td}.png")
        rgb_lines.append(f"{ts} rgb/{ts}.png")
        depth_lines.append(f"{td} depth/{td}.png")
        if fr.T_w_c_gt is not None:
            own_t.append(fr.stamp)
            own_T.append(fr.T_w_c_gt)
    (root / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (root / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    if gt_stamps is None and own_t:
        gt_stamps, gt_poses = np.array(own_t), np.stack(own_T)
    if gt_stamps is not None:
        gt_poses = np.asarray(gt_poses, dtype=np.float64)
        q = Rotation.from_matrix(gt_poses[:, :3, :3]).as_quat()
        lines = ["# ground truth trajectory", "# timestamp tx ty tz qx qy qz qw"]
        for t, T, qq in zip(gt_stamps, gt_poses, q):
            lines.append(f"{t:.6f} " + " ".join(f"{v:.9f}" for v in (*T[:3, 3], *qq)))
        (root / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    return root
