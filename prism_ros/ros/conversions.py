"""Message <-> numpy conversions for the prism node and the player.

No cv_bridge: images are decoded with numpy, honouring ``step`` (row padding)
and ``is_bigendian``.  Every decoder raises :class:`InputError` with a clear
message on a malformed message, so the node can log it and keep running.

Pose / covariance conventions (see DESIGN-NOTES):
  * ``T_a_b`` maps points in frame b into frame a.
  * The filter's covariances are of xi = (rho, phi) in T = T_bar Exp(xi)
    (right / body perturbation, translation first).
  * ROS PoseWithCovariance wants (x, y, z, rot_x, rot_y, rot_z) errors in the
    parent frame: Sigma_ros = J Sigma J^T with J = blkdiag(R, R)
    (:func:`prism_ros.core.se3.cov_body_to_world`).
  * ROS TwistWithCovariance is in the child (body) frame, order (vx vy vz wx wy wz).
"""
from __future__ import annotations

import array
import math
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from builtin_interfaces.msg import Time
from numba import njit, prange
from geometry_msgs.msg import (
    Pose,
    PoseStamped,
    PoseWithCovariance,
    PoseWithCovarianceStamped,
    Transform,
    TransformStamped,
    TwistWithCovarianceStamped,
)
from nav_msgs.msg import Odometry, Path
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from prism_ros.core import se3
from prism_ros.core.camera import Camera

__all__ = [
    "InputError",
    "COLOR_ENCODINGS",
    "DEPTH_ENCODINGS",
    "image_to_rgb",
    "image_to_depth_m",
    "rgb_to_image",
    "depth_to_image",
    "camera_info_to_camera",
    "camera_to_camera_info",
    "stamp_to_sec",
    "sec_to_stamp",
    "stamp_to_ns",
    "T_to_pose",
    "pose_to_T",
    "T_to_transform",
    "cov_to_msg",
    "msg_to_cov",
    "T_from_xyz_rpy_deg",
    "camera_state_to_base",
    "StateMessages",
    "state_messages",
    "transform_stamped",
    "path_message",
    "unpack_rgb_float",
    "sigma_colormap",
    "warm_up_kernels",
    "map_colors",
    "make_map_cloud",
    "surface_cloud",
    "read_cloud",
    "occupancy_grid_to_msg",
    "mesh_block_marker",
    "mesh_marker_array",
]


class InputError(ValueError):
    """An input message cannot be used (bad encoding, size, step, intrinsics...)."""


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
        raise InputError(
            f"unsupported colour encoding '{msg.encoding}' (expected rgb8, bgr8 or mono8)"
        )
    ch = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}[enc]
    a = _image_array(msg, ch, np.uint8)
    if enc == "mono8":
        return np.repeat(a, 3, axis=2)
    if enc in ("bgr8", "bgra8"):
        return np.ascontiguousarray(a[:, :, 2::-1])
    return np.ascontiguousarray(a[:, :, :3])


def image_to_depth_m(msg: Image) -> np.ndarray:
    """Depth image message -> HxW float32 metres, 0 where invalid.

    16UC1 (or mono16) is millimetres, with 0 and 65535 invalid; 32FC1 is metres,
    with NaN, +-inf and values <= 0 invalid.
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


def _big_message(cls):
    """An empty message whose array fields take an ``array.array`` as it is.  rclpy (Kilted)
    copies an array field on assignment unless the message checks its fields (18 MB, ~10 ms
    for a whole-flight ~/map_cloud); releases without ``check_fields`` take it as it is."""
    try:
        return cls(check_fields=True)
    except (TypeError, AssertionError):  # before check_fields
        return cls()


def _set_data(msg, a: np.ndarray, typecode: str = "B") -> None:
    """``msg.data`` (uint8[] or int8[]) from a C-contiguous array's bytes, copied once, into the
    ``array.array`` rclpy serialises (a message from :func:`_big_message` keeps it as it is)."""
    data = array.array(typecode)
    data.frombytes(memoryview(np.ascontiguousarray(a).reshape(-1).view(np.uint8)))
    msg.data = data


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
    msg = _big_message(Image)
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(a.shape[0]), int(a.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(a.shape[1] * (1 if encoding == "mono8" else 3))
    _set_data(msg, a)
    return msg


def depth_to_image(depth_m: np.ndarray, header: Optional[Header] = None, encoding: str = "16UC1") -> Image:
    """HxW float metres (0 invalid) -> Image, 16UC1 (millimetres, rounded) or 32FC1 (metres)."""
    d = np.asarray(depth_m, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"expected HxW depth, got {d.shape}")
    msg = _big_message(Image)
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
        _set_data(msg, mm)
    elif encoding == "32FC1":
        f = np.where(np.isfinite(d) & (d > 0), d, 0.0).astype("<f4")
        msg.encoding = "32FC1"
        msg.step = int(d.shape[1] * 4)
        _set_data(msg, f)
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


# ---------------------------------------------------------------------------
# time
# ---------------------------------------------------------------------------
def stamp_to_sec(stamp: Time) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def stamp_to_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def sec_to_stamp(t: float) -> Time:
    """Seconds -> Time, rounded to the nearest nanosecond."""
    ns = int(round(float(t) * 1e9))
    if ns < 0:
        raise ValueError(f"negative time {t}")
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


# ---------------------------------------------------------------------------
# poses and covariances
# ---------------------------------------------------------------------------
def T_to_pose(T: np.ndarray) -> Pose:
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in T[:3, 3])
    q = se3.quat_xyzw_from_R(T[:3, :3])
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (float(v) for v in q)
    return p


def pose_to_T(p: Pose) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = se3.R_from_quat_xyzw([p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w])
    T[:3, 3] = [p.position.x, p.position.y, p.position.z]
    return T


def T_to_transform(T: np.ndarray) -> Transform:
    p = T_to_pose(T)
    t = Transform()
    t.translation.x, t.translation.y, t.translation.z = p.position.x, p.position.y, p.position.z
    t.rotation = p.orientation
    return t


def cov_to_msg(cov: np.ndarray) -> list:
    """6x6 -> 36 floats, row-major (the layout of PoseWithCovariance.covariance)."""
    c = np.asarray(cov, dtype=np.float64)
    if c.shape != (6, 6):
        raise ValueError(f"expected 6x6 covariance, got {c.shape}")
    c = 0.5 * (c + c.T)
    return [float(v) for v in c.reshape(-1)]


def msg_to_cov(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(6, 6)


def T_from_xyz_rpy_deg(xyz: Sequence[float], rpy_deg: Sequence[float]) -> np.ndarray:
    """4x4 from a translation and fixed-axis roll, pitch, yaw (R = Rz(yaw) Ry(pitch) Rx(roll))."""
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("xyz", np.asarray(rpy_deg, dtype=np.float64), degrees=True).as_matrix()
    T[:3, 3] = np.asarray(xyz, dtype=np.float64)
    return T


def camera_state_to_base(
    T_w_c: np.ndarray,
    pose_cov_c: np.ndarray,
    velocity_c: np.ndarray,
    velocity_cov_c: np.ndarray,
    T_base_camera: np.ndarray,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The filter's camera state -> the base frame's pose and twist, ROS conventions.

    Returns ``(T_w_b, pose_cov_ros, twist_b, twist_cov_b)``:
      * ``T_w_b = T_w_c * inv(T_base_camera)``;
      * with T_w_c = T_bar Exp(xi_c):  T_w_b = T_bar_w_b Exp(Ad(T_base_camera) xi_c), so the
        base's right-perturbation covariance is Ad Sigma_c Ad^T and the ROS pose
        covariance is ``cov_body_to_world(T_w_b, Ad Sigma_c Ad^T)`` (parent frame, x y z
        rot_x rot_y rot_z);
      * the body twist transforms the same way: V_b = Ad(T_base_camera) V_c, in the
        base (child) frame, ROS order (vx vy vz wx wy wz).
    """
    T_b_c = np.asarray(T_base_camera, dtype=np.float64)
    Ad = se3.adjoint(T_b_c)
    T_w_b = np.asarray(T_w_c, dtype=np.float64) @ se3.inv(T_b_c)
    cov_b = Ad @ np.asarray(pose_cov_c, dtype=np.float64) @ Ad.T
    pose_cov_ros = se3.cov_body_to_world(T_w_b, cov_b)
    twist_b = Ad @ np.asarray(velocity_c, dtype=np.float64)
    tc = Ad @ np.asarray(velocity_cov_c, dtype=np.float64) @ Ad.T
    return T_w_b, pose_cov_ros, twist_b, 0.5 * (tc + tc.T)


class StateMessages(NamedTuple):
    """What the node publishes for one filter step (the TF is wrapped by the caller:
    tf2_msgs is optional)."""

    pose: PoseWithCovarianceStamped
    twist: TwistWithCovarianceStamped
    odom: Odometry
    tf: TransformStamped
    path_pose: PoseStamped


def transform_stamped(stamp: Time, parent: str, child: str, T_parent_child: np.ndarray) -> TransformStamped:
    ts = TransformStamped()
    ts.header = Header(stamp=stamp, frame_id=parent)
    ts.child_frame_id = child
    ts.transform = T_to_transform(T_parent_child)
    return ts


def state_messages(
    stamp: Time,
    T_w_c: np.ndarray,
    pose_cov_c: np.ndarray,
    velocity_c: np.ndarray,
    velocity_cov_c: np.ndarray,
    T_base_camera: np.ndarray,
    world_frame: str,
    base_frame: str,
    odom_cov_c: Optional[np.ndarray] = None,
) -> StateMessages:
    """The filter's camera state as the base frame's pose (parent ``world_frame``) and
    twist (child ``base_frame``) messages, ROS conventions (:func:`camera_state_to_base`).

    ``pose_cov_c`` (the pose given the map) goes into ``~/pose``; the Odometry message
    carries ``odom_cov_c`` (the per-step covariances compounded since the last reset,
    REP-105: it grows with motion) when given, else the same covariance as ``~/pose``."""
    T_w_b, pose_cov, twist, twist_cov = camera_state_to_base(T_w_c, pose_cov_c, velocity_c, velocity_cov_c, T_base_camera)
    header = Header(stamp=stamp, frame_id=world_frame)
    pm = PoseWithCovarianceStamped(header=header)
    pm.pose.pose = T_to_pose(T_w_b)
    pm.pose.covariance = cov_to_msg(pose_cov)
    tm = TwistWithCovarianceStamped(header=Header(stamp=stamp, frame_id=base_frame))
    tw = tm.twist.twist
    tw.linear.x, tw.linear.y, tw.linear.z = (float(v) for v in twist[:3])
    tw.angular.x, tw.angular.y, tw.angular.z = (float(v) for v in twist[3:])
    tm.twist.covariance = cov_to_msg(twist_cov)
    om = Odometry(header=header, child_frame_id=base_frame, pose=pm.pose, twist=tm.twist)
    if odom_cov_c is not None:
        om.pose = PoseWithCovariance(pose=pm.pose.pose, covariance=cov_to_msg(
            camera_state_to_base(T_w_c, odom_cov_c, velocity_c, velocity_cov_c, T_base_camera)[1]))
    return StateMessages(pm, tm, om, transform_stamped(stamp, world_frame, base_frame, T_w_b),
                         PoseStamped(header=header, pose=pm.pose.pose))


def path_message(poses: Sequence[PoseStamped]) -> Path:
    """nav_msgs/Path of ``poses`` (at least one), stamped and framed as the newest."""
    last = poses[-1].header
    return Path(header=Header(stamp=last.stamp, frame_id=last.frame_id), poses=list(poses))


# ---------------------------------------------------------------------------
# point clouds
# ---------------------------------------------------------------------------
def unpack_rgb_float(f: np.ndarray) -> np.ndarray:
    """(N,) float32 'rgb' field of a cloud (the PCL / RViz packing, bits 0x00RRGGBB) -> (N, 3) uint8."""
    u = np.asarray(f, dtype=np.float32).view(np.uint32)
    return np.stack([(u >> 16) & 255, (u >> 8) & 255, u & 255], axis=1).astype(np.uint8)


@njit(cache=True, parallel=True, nogil=True)
def _jet_colors(sigma, log_lo, log_hi, lo, hi, out):
    """:func:`sigma_colormap`'s colours, one pass (no temporaries: the numpy expression it
    replaced took 12-140 ms for the 760k points of a whole-flight ~/map_cloud, on the filter thread)."""
    span = log_hi - log_lo
    for i in prange(sigma.shape[0]):
        s = np.float64(sigma[i])
        if s != s:
            t = 1.0
        else:
            t = (np.log(min(max(s, lo), hi)) - log_lo) / span
        for ch in range(3):
            x = 1.5 - abs(4.0 * t - (3.0 - ch))
            x = min(max(x, 0.0), 1.0)
            out[i, ch] = np.uint8(np.rint(x * 255.0))


def sigma_colormap(sigma: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map sigma to a blue (confident) -> red (uncertain) jet colour, log scale on [lo, hi]
    (NaN: red): t = (log clip(sigma, lo, hi) - log lo) / (log hi - log lo), then
    red / green / blue = clip(1.5 - |4t - 3 / 2 / 1|, 0, 1), rounded to uint8."""
    s = np.ascontiguousarray(np.asarray(sigma).reshape(-1))
    if s.dtype not in (np.float32, np.float64):
        s = s.astype(np.float64)
    lo = max(float(lo), 1e-6)
    hi = max(float(hi), lo * 1.0001)
    out = np.empty((s.shape[0], 3), np.uint8)
    _jet_colors(s, math.log(lo), math.log(hi), lo, hi, out)
    return out


_CLOUD_FIELDS = ("x", "y", "z", "rgb", "sigma", "weight")


@njit(cache=True, nogil=True)
def _pack_cloud(xyz, rgb, sigma, weight, out, out_bits):
    """~/map_cloud's point rows in one pass (``out`` and ``out_bits`` are one buffer as float32
    and as uint32; column 3 holds the PCL / RViz 'rgb' float's bits, 0x00RRGGBB); whether every xyz is
    finite.  (The field-by-field numpy version allocated ~100 MB of temporaries for a
    whole-flight cloud and took 25-160 ms on the node's filter thread.)"""
    finite = True
    for i in range(xyz.shape[0]):
        for k in range(3):
            v = xyz[i, k]
            out[i, k] = v
            if not np.isfinite(v):
                finite = False
        out_bits[i, 3] = (np.uint32(rgb[i, 0]) << 16) | (np.uint32(rgb[i, 1]) << 8) | np.uint32(rgb[i, 2])
        out[i, 4] = sigma[i]
        out[i, 5] = weight[i]
    return finite


def warm_up_kernels() -> None:
    """Compile (or load from the cache) the Numba kernels of the map outputs (colours, cloud
    packing), so that the first ~/map_cloud or ~/mesh does not hold the filter thread."""
    sigma_colormap(np.ones(1, np.float64), 1e-3, 1e-2)  # (the mesh's sigma)
    make_map_cloud(Header(), np.zeros((1, 3), np.float32), sigma_colormap(np.ones(1, np.float32), 1e-3, 1e-2),
                   np.ones(1, np.float32), np.ones(1, np.float32))


def make_map_cloud(
    header: Header,
    xyz: np.ndarray,
    rgb: np.ndarray,
    sigma: np.ndarray,
    weight: np.ndarray,
) -> PointCloud2:
    """PointCloud2 with float32 fields ``x y z rgb sigma weight`` (24-byte points, unordered)."""
    xyz = np.ascontiguousarray(np.asarray(xyz, dtype=np.float32).reshape(-1, 3))
    n = xyz.shape[0]
    pts = np.empty((n, len(_CLOUD_FIELDS)), "<f4")  # the points' bytes, one row a point
    # (a kernel does not check bounds: every column has one row a point, a single value is spread)
    columns = [np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=dt).reshape(shape), (n,) + shape[1:]))
               for v, dt, shape in ((rgb, np.uint8, (-1, 3)), (sigma, np.float32, (-1,)), (weight, np.float32, (-1,)))]
    finite = _pack_cloud(xyz, *columns, pts, pts.view("<u4"))
    msg = _big_message(PointCloud2)
    msg.header = header
    msg.height = 1
    msg.width = int(n)
    msg.fields = [
        PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
        for i, name in enumerate(_CLOUD_FIELDS)
    ]
    msg.is_bigendian = False
    msg.point_step = 4 * len(_CLOUD_FIELDS)
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = bool(finite)
    _set_data(msg, pts)
    return msg


def map_colors(rgb: np.ndarray, sigma: np.ndarray, color_mode: str, min_sigma_m: float,
               truncation_m: float) -> np.ndarray:
    """Colours of map points (cloud, mesh): true colour (``color_mode`` "rgb") or sigma on a
    log colour scale from the precision floor ``min_sigma_m`` (at least 0.1 mm) to half the
    truncation band (at least 4x the floor)."""
    if color_mode == "rgb":
        return rgb
    lo = max(min_sigma_m, 1e-4)
    return sigma_colormap(sigma, lo, max(truncation_m * 0.5, 4.0 * lo))


def surface_cloud(header: Header, surface: Dict[str, np.ndarray], color_mode: str,
                  min_sigma_m: float, truncation_m: float) -> PointCloud2:
    """The map's surface voxels (``TsdfMap.extract_surface``) as ~/map_cloud, coloured by
    :func:`map_colors`."""
    rgb = map_colors(surface["rgb"], surface["sigma"], color_mode, min_sigma_m, truncation_m)
    return make_map_cloud(header, surface["xyz"], rgb, surface["sigma"], surface["count"])


_PF_DTYPES = {
    PointField.INT8: "i1",
    PointField.UINT8: "u1",
    PointField.INT16: "i2",
    PointField.UINT16: "u2",
    PointField.INT32: "i4",
    PointField.UINT32: "u4",
    PointField.FLOAT32: "f4",
    PointField.FLOAT64: "f8",
}


def read_cloud(msg: PointCloud2) -> Dict[str, np.ndarray]:
    """PointCloud2 -> {field name: (N,) array} (any layout; used by tests and tools)."""
    endian = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for f in msg.fields:
        names.append(f.name)
        base = endian + _PF_DTYPES[f.datatype]
        formats.append((base, (f.count,)) if f.count > 1 else base)
        offsets.append(f.offset)
    dt = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": msg.point_step})
    n = int(msg.width) * int(msg.height)
    raw = np.frombuffer(memoryview(msg.data).cast("B"), dtype=np.uint8)
    if msg.height > 1 and msg.row_step != msg.point_step * msg.width:
        raw = raw.reshape(msg.height, msg.row_step)[:, : msg.point_step * msg.width].reshape(-1)
    arr = np.frombuffer(np.ascontiguousarray(raw[: n * msg.point_step]).tobytes(), dtype=dt, count=n)
    return {name: np.array(arr[name]) for name in names}


# ---------------------------------------------------------------------------
# planner outputs: occupancy grid and mesh
# ---------------------------------------------------------------------------
def occupancy_grid_to_msg(header: Header, data: np.ndarray, origin_xy: Sequence[float], resolution: float,
                          origin_z: float = 0.0):
    """(H, W) int8 grid (row = y, column = x; 0..100, -1 unknown) -> nav_msgs/OccupancyGrid.

    Cell (0, 0) is at ``origin_xy`` (its corner, in ``header.frame_id``); the data are row
    major from there, as the message defines them."""
    from nav_msgs.msg import OccupancyGrid

    d = np.asarray(data)
    if d.ndim != 2 or d.size == 0:
        raise ValueError(f"expected a non-empty (H, W) grid, got shape {d.shape}")
    if d.dtype != np.int8:
        if d.min() < -1 or d.max() > 100:
            raise ValueError("occupancy values must be -1 or in 0..100")
        d = d.astype(np.int8)
    msg = _big_message(OccupancyGrid)
    msg.header = header
    msg.info.map_load_time = header.stamp
    msg.info.resolution = float(resolution)
    msg.info.height, msg.info.width = int(d.shape[0]), int(d.shape[1])
    msg.info.origin.position.x = float(origin_xy[0])
    msg.info.origin.position.y = float(origin_xy[1])
    msg.info.origin.position.z = float(origin_z)
    msg.info.origin.orientation.w = 1.0
    _set_data(msg, d, "b")
    return msg


def mesh_block_marker(header: Header, verts: np.ndarray, faces: np.ndarray, rgb: np.ndarray,
                      marker_id: int, ns: str = "prism_mesh"):
    """One block's mesh -> visualization_msgs/Marker TRIANGLE_LIST (3 points per face, one
    colour per point; ``rgb`` (V, 3) uint8 per vertex)."""
    from geometry_msgs.msg import Point
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker

    V = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    F = np.asarray(faces, dtype=np.int64).reshape(-1)
    C = np.asarray(rgb, dtype=np.float64).reshape(-1, 3) / 255.0
    m = Marker()
    m.header = header
    m.ns = ns
    m.id = int(marker_id)
    m.type = Marker.TRIANGLE_LIST
    m.action = Marker.ADD
    m.pose.orientation.w = 1.0
    m.scale.x = m.scale.y = m.scale.z = 1.0
    m.color.a = 1.0
    P = V[F].tolist()
    Cf = C[F].tolist()
    m.points = [Point(x=p[0], y=p[1], z=p[2]) for p in P]
    m.colors = [ColorRGBA(r=c[0], g=c[1], b=c[2], a=1.0) for c in Cf]
    return m


def mesh_marker_array(header: Header, markers: Sequence, ns: str = "prism_mesh"):
    """A complete mesh snapshot: DELETEALL (drops blocks whose mesh vanished) then every
    block's (cached) marker, so a late transient-local subscriber gets the whole mesh."""
    from visualization_msgs.msg import Marker, MarkerArray

    clear = Marker()
    clear.header = header
    clear.ns = ns
    clear.action = Marker.DELETEALL
    out = MarkerArray()
    out.markers = [clear] + list(markers)
    return out
