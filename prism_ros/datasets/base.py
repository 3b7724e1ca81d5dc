"""Common types of the dataset layer: :class:`Frame`, the :class:`Dataset` protocol, :class:`FrameLoadError`
and shared helpers (image loading, slicing).

* ``rgb``: HxWx3 uint8, RGB order; ``depth``: HxW float32 m along the optical axis (REP-103 optical frame),
  0 invalid, never NaN;
* ``T_w_c_gt``: 4x4 float64 camera-to-world pose of the optical frame, or None without ground truth;
* ``index``: 0-based position *after* ``start``; ``stamp``: seconds (each reader documents its origin).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Protocol, Tuple, runtime_checkable

import numpy as np

from prism_ros.core.camera import Camera

__all__ = [
    "Frame",
    "Dataset",
    "DatasetBase",
    "FrameLoadError",
    "load_rgb",
    "load_depth_u16",
    "slice_range",
    "image_size",
    "check_pose",
]


@dataclass
class Frame:
    index: int  # index within the dataset (0-based, after start)
    stamp: float  # seconds
    rgb: np.ndarray  # HxWx3 uint8, RGB order
    depth: np.ndarray  # HxW float32, metres, 0 = invalid (never NaN)
    T_w_c_gt: Optional[np.ndarray]  # 4x4 float64 camera-to-world ground truth, or None
    depth_sigma: Optional[np.ndarray] = None  # per-pixel depth std (m) if the source provides it


@runtime_checkable
class Dataset(Protocol):
    name: str
    camera: Camera

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Frame: ...

    def stamps(self) -> np.ndarray: ...

    def gt_poses(self) -> Optional[np.ndarray]: ...


class FrameLoadError(RuntimeError):
    """A frame's image file is missing, corrupt or truncated, or has the wrong size; or a stereo pair gives no
    depth (:func:`prism_ros.core.stereo.check_stereo_pair`).  The offline runner and the player skip the frame.

    Attributes: ``index`` (dataset index after start), ``path`` (the offending file), ``reason`` (short,
    human-readable) and ``kind`` ("load" by default, or the stereo checks' ``missing_left``,
    ``missing_right``, ``size``, ``black``, ``saturated``).
    """

    def __init__(self, index: int, path: str, reason: str, kind: str = "load"):
        self.index = int(index)
        self.path = str(path)
        self.reason = str(reason)
        self.kind = str(kind)
        super().__init__(f"frame {self.index}: cannot load {self.path}: {self.reason}")

    def __reduce__(self):  # picklable (multiprocessing, pytest-xdist)
        return (FrameLoadError, (self.index, self.path, self.reason, self.kind))


class DatasetBase:
    """Shared behaviour of the readers: iteration, bounds checks, stamps / ground-truth arrays.

    Subclasses set ``name``, ``camera``, ``_stamps`` ((N,) float64) and ``_gt`` (a 4x4 or None per frame, or None)
    and implement ``_load(i) -> Frame`` for a bounds-checked ``i``.  Every reader implements ``HasConfigHints``
    (none by default) and ``HasStampOrigin`` (its own clock by default).
    """

    name: str = "dataset"
    #: parameter values this data needs (e.g. no photometric term when colour and depth
    #: are not registered); the CLI applies them unless the user sets the parameter
    config_hints: Dict[str, Any] = {}
    config_hints_reason: str = ""
    #: whether the stamps are the recording's own clock (False: made up from a frame rate)
    has_timestamps: bool = True
    camera: Camera
    _stamps: np.ndarray
    _gt: Optional[List[Optional[np.ndarray]]]

    def __len__(self) -> int:
        return int(len(self._stamps))

    def _check_index(self, i: int) -> int:
        n = len(self)
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"{type(self).__name__} indices must be integers, not {type(i).__name__}")
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"frame index {i} out of range for {self.name} with {n} frames")
        return i

    def __getitem__(self, i: int) -> Frame:
        return self._load(self._check_index(i))

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self)):
            yield self._load(i)

    def _load(self, i: int) -> Frame:  # pragma: no cover - abstract
        raise NotImplementedError

    def stamps(self) -> np.ndarray:
        return np.array(self._stamps, dtype=np.float64)

    def gt_pose(self, i: int) -> Optional[np.ndarray]:
        """Ground truth of frame ``i`` without loading its images (or None)."""
        i = self._check_index(i)
        if self._gt is None or self._gt[i] is None:
            return None
        return np.array(self._gt[i], dtype=np.float64)

    def gt_poses(self) -> Optional[np.ndarray]:
        """(N,4,4) camera-to-world ground truth, or None unless every frame has one."""
        if self._gt is None or len(self._gt) == 0 or any(g is None for g in self._gt):
            return None
        return np.stack([np.asarray(g, dtype=np.float64) for g in self._gt])

    def __repr__(self) -> str:
        c = self.camera
        return (
            f"<{type(self).__name__} '{self.name}': {len(self)} frames, {c.width}x{c.height}, "
            f"fx={c.fx:g} fy={c.fy:g} cx={c.cx:g} cy={c.cy:g}, gt={'yes' if self.gt_poses() is not None else 'no'}>"
        )


def slice_range(n: int, start: int = 0, frames: Optional[int] = None, what: str = "dataset") -> Tuple[int, int]:
    """Validate ``start``/``frames`` against ``n`` available frames; return [lo, hi)."""
    start = int(start)
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if frames is not None and int(frames) <= 0:
        raise ValueError(f"frames must be a positive number (or None for all), got {frames}")
    if start >= n:
        raise ValueError(f"start={start} is beyond the end of {what} ({n} frames)")
    hi = n if frames is None else min(n, start + int(frames))
    return start, hi


def _open_image(index: int, path: str):
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path)
        img.load()  # decode now: truncated/corrupt files raise here, not later
    except FileNotFoundError:
        raise FrameLoadError(index, path, "file not found") from None
    except UnidentifiedImageError:
        raise FrameLoadError(index, path, "not a readable image (corrupt or unknown format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # truncated / broken data
        raise FrameLoadError(index, path, f"corrupt or truncated image ({e})") from None
    return img


def load_rgb(index: int, path: str, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """HxWx3 uint8 RGB from a colour (or grey) image; ``size`` = (width, height) to enforce."""
    img = _open_image(index, path)
    if img.mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.uint8)
    if size is not None and (arr.shape[1], arr.shape[0]) != tuple(size):
        raise FrameLoadError(
            index, path, f"colour image is {arr.shape[1]}x{arr.shape[0]}, expected {size[0]}x{size[1]}"
        )
    return np.ascontiguousarray(arr)


def load_depth_u16(index: int, path: str, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Raw HxW uint16 values of a 16-bit depth PNG."""
    img = _open_image(index, path)
    arr = np.asarray(img)
    if arr.ndim != 2:
        raise FrameLoadError(index, path, f"depth image has shape {arr.shape}, expected a single channel")
    if arr.dtype != np.uint16:
        if arr.dtype in (np.int32, np.uint32, np.int64) and arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise FrameLoadError(index, path, f"depth values out of the uint16 range ({arr.dtype})")
        if arr.dtype == np.uint8:
            raise FrameLoadError(index, path, "depth image is 8-bit, expected 16-bit")
        arr = arr.astype(np.uint16)
    if size is not None and (arr.shape[1], arr.shape[0]) != tuple(size):
        raise FrameLoadError(index, path, f"depth image is {arr.shape[1]}x{arr.shape[0]}, expected {size[0]}x{size[1]}")
    return arr


def image_size(path: str) -> Optional[Tuple[int, int]]:
    """(width, height) from an image header, or None if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size
    except Exception:
        return None


def check_pose(T, tol: float = 1e-2) -> Optional[np.ndarray]:
    """4x4 float64 rigid transform, or None if ``T`` is not finite / not nearly rigid; a rotation within ``tol`` of
    orthonormal is projected onto SO(3), as the SE(3) maths downstream expects.
    """
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        return None
    R = T[:3, :3]
    if np.abs(R @ R.T - np.eye(3)).max() > tol or np.linalg.det(R) <= 0:
        return None
    if np.abs(T[3] - np.array([0.0, 0.0, 0.0, 1.0])).max() > 1e-6:
        return None
    U, _, Vt = np.linalg.svd(R)
    out = np.eye(4)
    out[:3, :3] = U @ Vt
    out[:3, 3] = T[:3, 3]
    return out
