"""What ``prism-ros play`` plays: a dataset opened for playing, or a bag's topics.

:class:`DatasetSource` turns frame i of any :func:`prism_ros.datasets.open_dataset` dataset into the node's inputs
(``--color-encoding`` / ``--depth-encoding`` override), or into its :class:`~prism_ros.datasets.base.FrameLoadError`::

  camera/color/image_raw    sensor_msgs/Image, rgb8 (EuRoC: mono8, the rectified left image)
  camera/depth/image_raw    sensor_msgs/Image, 16UC1 millimetres (EuRoC: 32FC1 metres, the stereo depth)
  camera/color/camera_info  sensor_msgs/CameraInfo (EuRoC: the rectified left camera)

EuRoC also gives ``imu`` (:class:`EurocImuStream`, frame ``--imu-frame-id``) with the recording's integer
ns stamps, from ``--imu-preroll`` s before the first frame, each sample before any later-stamped frame.
Stamps: a dataset's own timestamps are kept; without (``has_timestamps`` False) frame *i* is stamped
``1 + i/30`` s (a zero stamp means "unset" to many ROS tools).

Bags (ROS 1 ``.bag`` or ROS 2 folder, via ``rosbags``): Image, CameraInfo, Imu and Odometry messages
(:func:`to_rclpy`) are republished with their header stamps, mapped by :func:`default_topic_map` or
``--topic-map SRC:=DST`` (:func:`parse_topic_map`; then only mapped topics play).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

import numpy as np

from prism_ros.datasets.capabilities import HasFrameNs, HasImu, HasStampOrigin

__all__ = [
    "COLOR_TOPIC",
    "DEPTH_TOPIC",
    "INFO_TOPIC",
    "IMU_TOPIC",
    "ODOM_TOPIC",
    "BAG_TYPES",
    "FRAME_RATE_NO_STAMPS",
    "STAMP_ORIGIN_NO_STAMPS",
    "DatasetSource",
    "EurocImuStream",
    "dataset_stamp_offset",
    "default_topic_map",
    "parse_topic_map",
    "is_bag",
    "rclpy_classes",
    "to_rclpy",
]

FRAME_RATE_NO_STAMPS = 30.0
STAMP_ORIGIN_NO_STAMPS = 1.0

COLOR_TOPIC = "camera/color/image_raw"
DEPTH_TOPIC = "camera/depth/image_raw"
INFO_TOPIC = "camera/color/camera_info"
IMU_TOPIC = "imu"
ODOM_TOPIC = "odom"

#: bag message types the player republishes -> their rclpy class name
BAG_TYPES = {
    "sensor_msgs/msg/Image": "Image",
    "sensor_msgs/msg/CameraInfo": "CameraInfo",
    "sensor_msgs/msg/Imu": "Imu",
    "nav_msgs/msg/Odometry": "Odometry",
}


# ---------------------------------------------------------------------------- datasets
def dataset_stamp_offset(ds) -> float:
    """Seconds added to a dataset's stamps: 1.0 for sources without timestamps, else 0."""
    if isinstance(ds, HasStampOrigin):
        has = ds.has_timestamps
    else:  # a reader that does not say: by its kind
        name = type(ds).__name__.lower()
        has = not ("sevenscenes" in name or "synthetic" in name)
    return 0.0 if has else STAMP_ORIGIN_NO_STAMPS


def _is_euroc(ds) -> bool:
    from prism_ros.datasets import EurocDataset

    return isinstance(ds, EurocDataset)  # EuRoC folders and EuRoC bags (EurocBagDataset)


def ns_to_stamp(ns: int):
    """builtin_interfaces/Time of integer nanoseconds (exact)."""
    from builtin_interfaces.msg import Time

    ns = int(ns)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _frame_ns(ds, stamps: np.ndarray) -> np.ndarray:
    """Integer nanosecond stamps of the frames: the dataset's own (exact), else from the seconds."""
    if isinstance(ds, HasFrameNs) and len(ds.frame_ns) == len(stamps):
        return np.asarray(ds.frame_ns, dtype=np.int64)
    return np.round(np.asarray(stamps, dtype=np.float64) * 1e9).astype(np.int64)


class DatasetSource:
    """A dataset opened for playing from the player's arguments (``path``, ``start``, ``frames``, ``calib``,
    ``stereo_matcher``, encodings, ``frame_id``, ``no_imu``, ``imu_frame_id``): ``ds`` and its ``n`` frames,
    ``euroc``, ``stamps`` (s, :func:`dataset_stamp_offset` applied), ``frame_ns`` and ``imu`` (an
    :class:`EurocImuStream` or None).  ValueError for a dataset it cannot open.
    """

    def __init__(self, args):
        from prism_ros.datasets import open_dataset

        a = self.args = args
        kw = {"calib": a.calib} if a.calib else {}
        if a.stereo_matcher:
            from prism_ros.datasets import is_euroc

            if not is_euroc(a.path):
                raise ValueError(f"--stereo-matcher applies only to EuRoC recordings; {a.path} is not one")
            kw["stereo_matcher"] = a.stereo_matcher
        self.ds = ds = open_dataset(a.path, start=a.start, frames=a.frames, **kw)
        self.n = len(ds)
        self.euroc = _is_euroc(ds)
        self.color_encoding = a.color_encoding or ("mono8" if self.euroc else "rgb8")
        self.depth_encoding = a.depth_encoding or ("32FC1" if self.euroc else "16UC1")
        self.stamps = np.asarray(ds.stamps(), dtype=np.float64) + dataset_stamp_offset(ds)
        self.frame_ns = _frame_ns(ds, self.stamps)
        self.imu = None
        if self.euroc and not a.no_imu and isinstance(ds, HasImu) and ds.imu is not None and len(ds.imu):
            self.imu = EurocImuStream(ds, a.imu_frame_id)

    def messages(self, i: int):
        """(camera_info, depth, colour) messages of frame ``i``, or the FrameLoadError of a frame
        the dataset cannot deliver (a bad stereo pair, an unreadable file)."""
        from std_msgs.msg import Header

        from prism_ros.datasets import FrameLoadError
        from prism_ros.ros import conversions as cv

        try:
            fr = self.ds[i]
        except FrameLoadError as e:
            return e
        stamp = ns_to_stamp(self.frame_ns[i]) if self.euroc else cv.sec_to_stamp(float(self.stamps[i]))
        header = Header(stamp=stamp, frame_id=self.args.frame_id)
        return (
            cv.camera_to_camera_info(self.ds.camera, header),
            cv.depth_to_image(fr.depth, header, self.depth_encoding),
            cv.rgb_to_image(fr.rgb, header, self.color_encoding),
        )


class EurocImuStream:
    """The dataset's IMU (``ds.imu``, :class:`~prism_ros.core.imu.ImuData`) as sensor_msgs/Imu
    messages with exact stamps (``ds.imu_ns``; from the float seconds when they do not match),
    their covariances the discrete per-sample variances of the recording's noise densities."""

    def __init__(self, ds: HasImu, frame_id: str):
        self.imu = ds.imu
        self.t = ds.imu.t
        ns = ds.imu_ns
        if ns is None or len(ns) != len(self.t):
            ns = np.round(self.t * 1e9).astype(np.int64)
        self.ns = np.asarray(ns, dtype=np.int64)
        self.frame_id = frame_id
        self.rate_hz = 1.0 / float(np.median(np.diff(self.t))) if len(self.t) > 1 else 200.0
        noise = ds.imu_noise
        # discrete per-sample variances from the continuous noise densities
        self.var_w = (noise.gyro_noise_density**2 * self.rate_hz) if noise is not None else 0.0
        self.var_a = (noise.accel_noise_density**2 * self.rate_hz) if noise is not None else 0.0

    def __len__(self) -> int:
        return len(self.t)

    def first_index(self, t: float) -> int:
        """The first sample at or after ``t`` seconds."""
        return int(np.searchsorted(self.t, t, side="left"))

    def message(self, k: int):
        """Sample ``k`` as sensor_msgs/Imu (no orientation)."""
        from sensor_msgs.msg import Imu

        m = Imu()
        m.header.stamp = ns_to_stamp(self.ns[k])
        m.header.frame_id = self.frame_id
        m.orientation_covariance[0] = -1.0  # no orientation estimate
        w, f = self.imu.gyro[k], self.imu.acc[k]
        m.angular_velocity.x, m.angular_velocity.y, m.angular_velocity.z = (float(x) for x in w)
        m.linear_acceleration.x, m.linear_acceleration.y, m.linear_acceleration.z = (float(x) for x in f)
        for j in (0, 4, 8):
            m.angular_velocity_covariance[j] = float(self.var_w)
            m.linear_acceleration_covariance[j] = float(self.var_a)
        return m


# ---------------------------------------------------------------------------- bags
def is_bag(path: str) -> bool:
    """A ROS 1 ``.bag`` file or a ROS 2 bag folder (with metadata.yaml)."""
    p = Path(path)
    if p.is_file() and p.suffix == ".bag":
        return True
    if p.is_dir() and (p / "metadata.yaml").is_file():
        return True
    return False


def rclpy_classes():
    """{class name of :data:`BAG_TYPES`: the rclpy message class}."""
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CameraInfo, Image, Imu

    return {"Image": Image, "CameraInfo": CameraInfo, "Imu": Imu, "Odometry": Odometry}


def to_rclpy(obj, cls):
    """Convert a rosbags message object (ROS 1 or 2 definition) to an rclpy message."""
    import array

    out = cls()
    for fname in cls.get_fields_and_field_types():
        src = None
        for cand in (fname, fname.upper()):  # ROS 1 CameraInfo uses D K R P
            if hasattr(obj, cand):
                src = getattr(obj, cand)
                break
        if src is None:
            if fname in ("sec", "nanosec") and hasattr(obj, "secs"):
                src = getattr(obj, "secs" if fname == "sec" else "nsecs")
            else:
                continue
        cur = getattr(out, fname)
        if hasattr(cur, "get_fields_and_field_types"):
            setattr(out, fname, to_rclpy(src, type(cur)))
        elif isinstance(src, np.ndarray):
            if src.dtype == np.uint8 and isinstance(cur, array.array):
                setattr(out, fname, array.array("B", src.tobytes()))
            else:
                setattr(out, fname, [x.item() if hasattr(x, "item") else x for x in src])
        elif isinstance(cur, bool):
            setattr(out, fname, bool(src))
        elif isinstance(cur, int):
            setattr(out, fname, int(src))
        elif isinstance(cur, float):
            setattr(out, fname, float(src))
        else:
            setattr(out, fname, src)
    return out


def parse_topic_map(items: Sequence[str]) -> Dict[str, str]:
    """{bag topic: node input topic} of ``--topic-map SRC:=DST`` items."""
    out = {}
    for it in items:
        if ":=" not in it:
            raise SystemExit(f"prism-ros play: --topic-map expects SRC:=DST, got {it!r}")
        a, b = it.split(":=", 1)
        out[a.strip()] = b.strip()
    return out


def default_topic_map(topics: Dict[str, str]) -> Dict[str, str]:
    """{bag topic: node input topic} from {bag topic: msgtype}: an Image topic containing
    "depth" (registered / aligned first) -> depth, the other Image topic (colour / rgb and
    rectified first) -> colour, the CameraInfo next to the colour topic -> camera_info, the
    first Imu -> ``imu``, the first Odometry -> ``odom``."""
    images = sorted(t for t, ty in topics.items() if ty == "sensor_msgs/msg/Image")
    infos = sorted(t for t, ty in topics.items() if ty == "sensor_msgs/msg/CameraInfo")
    out: Dict[str, str] = {}
    depth = [t for t in images if "depth" in t.lower()]
    color = [t for t in images if "depth" not in t.lower()]
    if depth:
        # prefer registered / metric depth topics
        depth.sort(key=lambda t: (0 if "regist" in t or "aligned" in t else 1, t))
        out[depth[0]] = DEPTH_TOPIC
    if color:
        color.sort(key=lambda t: (0 if ("color" in t or "rgb" in t) else 1, 0 if "rect" in t else 1, t))
        out[color[0]] = COLOR_TOPIC
        prefix = color[0].rsplit("/", 1)[0]
        same = [t for t in infos if t.rsplit("/", 1)[0] == prefix]
        cand = same or [t for t in infos if "depth" not in t.lower()]
        if cand:
            out[cand[0]] = INFO_TOPIC
    imus = sorted(t for t, ty in topics.items() if ty == "sensor_msgs/msg/Imu")
    if imus:
        out[imus[0]] = IMU_TOPIC
    odoms = sorted(t for t, ty in topics.items() if ty == "nav_msgs/msg/Odometry")
    if odoms:
        out[odoms[0]] = ODOM_TOPIC
    return out
