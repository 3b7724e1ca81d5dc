"""sensor_msgs/Image and CameraInfo <-> numpy arrays and :class:`~prism_ros.core.camera.Camera`.

No cv_bridge: images are decoded with numpy, honouring ``step`` (row padding) and
``is_bigendian``.  Colour is HxWx3 uint8 RGB; depth is HxW float32 metres, 0 where invalid.
Every decoder raises :class:`~prism_ros.ros.conversions.common.InputError` with a clear
message on a malformed message, so the node can log it and keep running.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from prism_ros.core.camera import Camera
from prism_ros.ros.conversions.common import InputError, big_message, set_data

__all__ = [
    "COLOR_ENCODINGS",
    "DEPTH_ENCODINGS",
    "image_to_rgb",
    "image_to_depth_m",
    "rgb_to_image",
    "depth_to_image",
    "camera_info_to_camera",
    "camera_to_camera_info",
]

COLOR_ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")

_INVALID_DEPTH_U16 = 65535  # Kinect / 7-Scenes "no reading" sentinel (0 is the other one)


# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------
def _image_array(msg: Image, channels: int, dtype: np.dtype) -> np.ndarray:
    """View of ``msg.data`` as (H, W, channels) of ``dtype``; validates size and step."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise InputError(f"image has invalid size {w}x{h}")
    dtype = np.dtype(dtype)
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = w * channels * dtype.itemsize
    if step < row_bytes:
        raise InputError(
            f"image step {step} is smaller than width*bytes_per_pixel = {w}*{channels * dtype.itemsize} = {row_bytes} "
            f"(encoding {msg.encoding})"
        )
    buf = memoryview(msg.data).cast("B") if not isinstance(msg.data, (bytes, bytearray)) else memoryview(msg.data)
    n = buf.nbytes
    need = step * (h - 1) + row_bytes
    if n < need or n > step * h:
        raise InputError(
            f"image data length {n} is inconsistent with step*height = {step}*{h} = {step * h} "
            f"(encoding {msg.encoding}, {w}x{h})"
        )
    raw = np.frombuffer(buf, dtype=np.uint8, count=n)
    if n < step * h:  # tolerate a missing padding tail on the last row
        raw = np.concatenate([raw, np.zeros(step * h - n, np.uint8)])
    rows = raw.reshape(h, step)[:, :row_bytes]
    return np.ascontiguousarray(rows).view(dtype).reshape(h, w, channels)


def image_to_rgb(msg: Image) -> np.ndarray:
    """Colour image message -> HxWx3 uint8 RGB (rgb8, bgr8, mono8; also rgba8, bgra8)."""
    enc = msg.encoding.strip().lower()
    if enc not in COLOR_ENCODINGS:
        raise InputError(f"unsupported colour encoding '{msg.encoding}' (expected rgb8, bgr8 or mono8)")
    ch = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}[enc]
    a = _image_array(msg, ch, np.uint8)
    if enc == "mono8":
        return np.repeat(a, 3, axis=2)
    if enc in ("bgr8", "bgra8"):
        return np.ascontiguousarray(a[:, :, 2::-1])
    return np.ascontiguousarray(a[:, :, :3])


def image_to_depth_m(msg: Image) -> np.ndarray:
    """Depth image message -> HxW float32 m, 0 where invalid: 16UC1 (or mono16) mm with 0 and 65535 invalid;
    32FC1 m with NaN, +-inf and values <= 0 invalid.
    """
    enc = msg.encoding.strip()
    if enc.upper() in ("16UC1",) or enc.lower() == "mono16":
        a = _image_array(msg, 1, np.uint16)[:, :, 0]
        d = a.astype(np.float32) * np.float32(0.001)
        d[a == _INVALID_DEPTH_U16] = 0.0
        return d
    if enc.upper() == "32FC1":
        d = _image_array(msg, 1, np.float32)[:, :, 0].astype(np.float32, copy=True)
        d[~np.isfinite(d) | (d < 0)] = 0.0
        return d
    raise InputError(f"unsupported depth encoding '{msg.encoding}' (expected 16UC1 in mm or 32FC1 in m)")


def rgb_to_image(rgb: np.ndarray, header: Optional[Header] = None, encoding: str = "rgb8") -> Image:
    """HxWx3 uint8 RGB -> Image (rgb8, bgr8 or mono8)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected HxWx3 uint8, got {rgb.shape} {rgb.dtype}")
    if encoding == "rgb8":
        a = rgb
    elif encoding == "bgr8":
        a = rgb[:, :, ::-1]
    elif encoding == "mono8":
        a = np.round(rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
    else:
        raise ValueError(f"cannot encode colour as {encoding!r}")
    a = np.ascontiguousarray(a)
    msg = big_message(Image)
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(a.shape[0]), int(a.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(a.shape[1] * (1 if encoding == "mono8" else 3))
    set_data(msg, a)
    return msg


def depth_to_image(depth_m: np.ndarray, header: Optional[Header] = None, encoding: str = "16UC1") -> Image:
    """HxW float metres (0 invalid) -> Image, 16UC1 (millimetres, rounded) or 32FC1 (metres)."""
    d = np.asarray(depth_m, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"expected HxW depth, got {d.shape}")
    msg = big_message(Image)
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(d.shape[0]), int(d.shape[1])
    msg.is_bigendian = 0
    if encoding == "16UC1":
        valid = np.isfinite(d) & (d > 0)
        mm = np.where(valid, np.round(d * 1000.0), 0.0)
        mm = np.clip(mm, 0, _INVALID_DEPTH_U16 - 1).astype("<u2")
        msg.encoding = "16UC1"
        msg.step = int(d.shape[1] * 2)
        set_data(msg, mm)
    elif encoding == "32FC1":
        f = np.where(np.isfinite(d) & (d > 0), d, 0.0).astype("<f4")
        msg.encoding = "32FC1"
        msg.step = int(d.shape[1] * 4)
        set_data(msg, f)
    else:
        raise ValueError(f"cannot encode depth as {encoding!r}")
    return msg


# ---------------------------------------------------------------------------
# camera_info
# ---------------------------------------------------------------------------
def camera_info_to_camera(msg: CameraInfo) -> Camera:
    """CameraInfo -> Camera (fx, fy, cx, cy from K; width, height).  Raises InputError."""
    k = [float(x) for x in msg.k]
    if len(k) != 9:
        raise InputError(f"camera_info K has {len(k)} entries, expected 9")
    fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    w, h = int(msg.width), int(msg.height)
    bx, by = max(int(msg.binning_x), 1), max(int(msg.binning_y), 1)
    if bx != 1 or by != 1:
        raise InputError(f"camera_info binning {bx}x{by} is not supported")
    if not all(math.isfinite(v) for v in (fx, fy, cx, cy)) or fx <= 0 or fy <= 0:
        raise InputError(f"camera_info has invalid intrinsics fx={fx} fy={fy} cx={cx} cy={cy}")
    if w <= 0 or h <= 0:
        raise InputError(f"camera_info has invalid image size {w}x{h}")
    if not (-w <= cx <= 2 * w and -h <= cy <= 2 * h):
        raise InputError(f"camera_info principal point ({cx}, {cy}) is far outside the {w}x{h} image")
    try:
        return Camera(fx, fy, cx, cy, w, h)
    except ValueError as e:  # pragma: no cover - Camera re-checks the same things
        raise InputError(f"camera_info: {e}") from None


def camera_to_camera_info(cam: Camera, header: Optional[Header] = None) -> CameraInfo:
    """Camera -> CameraInfo of a rectified pinhole camera (plumb_bob, zero distortion, R = I)."""
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = int(cam.width), int(cam.height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = [cam.fx, 0.0, cam.cx, 0.0, cam.fy, cam.cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [cam.fx, 0.0, cam.cx, 0.0, 0.0, cam.fy, cam.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg
