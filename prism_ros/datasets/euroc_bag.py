"""EuRoC MAV sequences as ROS 1 bags (the ``V1_01_easy.bag`` downloads), read with ``rosbags``.

A EuRoC bag holds ``/cam0/image_raw`` and ``/cam1/image_raw`` (mono8 752x480, 20 Hz) and ``/imu0`` (200 Hz) but no
calibration: ``calib=`` (the CLI's ``--calib``) names a EuRoC ASL folder (or its ``mav0``) with ``cam0/``, ``cam1/`` and
``imu0/sensor.yaml``.  Otherwise as :class:`~prism_ros.datasets.euroc.EurocDataset`: frames are the cam0/cam1 pairs with
the same header stamp (or the nearest within ``pair_tolerance_s``; the frame takes the left stamp); IMU from ``/imu0``
header stamps; ground truth only from ``gt_path=``.  Opening indexes the bag once (no image decoding); frames are read
lazily, cheaply in sequence, with a re-seek for random access.
"""

from __future__ import annotations

import struct
import threading
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from prism_ros.core.imu import ImuData

from .base import FrameLoadError, slice_range
from .euroc import EurocDataset
from .euroc_files import ns_to_s

__all__ = ["EurocBagDataset", "is_euroc_bag", "CAM0_TOPIC", "CAM1_TOPIC", "IMU_TOPIC"]

CAM0_TOPIC = "/cam0/image_raw"
CAM1_TOPIC = "/cam1/image_raw"
IMU_TOPIC = "/imu0"
_IMAGE = "sensor_msgs/msg/Image"
_IMU = "sensor_msgs/msg/Imu"


def _calib_mav0(calib) -> Optional[Path]:
    """The folder holding cam0/sensor.yaml: ``calib``, or its ``mav0``."""
    p = Path(calib)
    for m in (p / "mav0", p):
        if (m / "cam0" / "sensor.yaml").is_file() and (m / "cam1" / "sensor.yaml").is_file():
            return m
    return None


def _topics(path) -> Dict[str, str]:
    from rosbags.rosbag1 import Reader

    with Reader(Path(path)) as r:
        return {c.topic: c.msgtype for c in r.connections}


def is_euroc_bag(path) -> bool:
    """A ROS 1 ``.bag`` file with EuRoC's /cam0/image_raw and /cam1/image_raw Image topics."""
    p = Path(path)
    if not (p.is_file() and p.suffix == ".bag"):
        return False
    try:
        t = _topics(p)
    except Exception:  # not a readable ROS 1 bag (or rosbags missing)
        return False
    return t.get(CAM0_TOPIC) == _IMAGE and t.get(CAM1_TOPIC) == _IMAGE


def _header_ns(raw) -> int:
    """Header stamp of a serialised ROS 1 message starting with std_msgs/Header (seq, secs, nsecs)."""
    _seq, sec, nsec = struct.unpack_from("<III", raw, 0)
    return int(sec) * 1_000_000_000 + int(nsec)


class EurocBagDataset(EurocDataset):
    """EuRoC ROS 1 bag + calibration folder; the :class:`EurocDataset` interface and
    capabilities (``imu_ns``: the /imu0 header stamps; ``mav0``: the calibration folder)."""

    _reader = None  # the open rosbags Reader (None once closed)

    def __init__(
        self,
        path,
        start: int = 0,
        frames: Optional[int] = None,
        calib=None,
        gt_path=None,
        require_gt: bool = False,
        gt_max_difference: float = 0.02,
        sigma_d: Optional[float] = None,
        num_disparities: Optional[int] = None,
        block_size: int = 5,
        lr_max_diff: float = 1.0,
        use_imu: bool = True,
        imu_init_window_s: float = 1.0,
        pair_tolerance_s: float = 1e-3,
        stereo_matcher: Optional[str] = None,
        depth_min_m: Optional[float] = None,
    ):
        from rosbags.rosbag1 import Reader
        from rosbags.typesys import Stores, get_typestore

        path = Path(path)
        if calib is None:
            raise ValueError(
                f"'{path}' is a EuRoC ROS 1 bag, which carries no calibration: pass --calib "
                f"(calib=) a EuRoC ASL folder or its mav0 with cam0/, cam1/ and imu0/sensor.yaml"
            )
        mav0 = _calib_mav0(calib)
        if mav0 is None:
            raise ValueError(f"--calib '{calib}': no cam0/sensor.yaml and cam1/sensor.yaml in it or in its mav0")
        self.bag_path = path
        self.calib_path = Path(calib)
        self.mav0 = mav0
        self.root = mav0.parent if mav0.name == "mav0" else mav0
        self.name = f"euroc:{path.stem}"
        self._init_calibration(
            mav0,
            sigma_d=sigma_d,
            num_disparities=num_disparities,
            block_size=block_size,
            lr_max_diff=lr_max_diff,
            matcher=stereo_matcher,
            depth_min_m=depth_min_m,
        )
        self._typestore = get_typestore(Stores.ROS1_NOETIC)
        self._lock = threading.Lock()
        self._reader = Reader(path)
        self._reader.open()
        try:
            self._index(start, frames, pair_tolerance_s, use_imu)
        except Exception:
            self.close()
            raise
        self._it = None  # (iterator, record time of the last message it yielded)

        self._init_gt(self._find_gt(gt_path), require_gt, gt_max_difference)
        self._init_imu(self._imu_data, self._imu_ns_data, mav0, imu_init_window_s)
        del self._imu_data, self._imu_ns_data

    # ------------------------------------------------------------------ index
    def _index(self, start, frames, tol_s, use_imu) -> None:
        conns = {c.topic: c for c in self._reader.connections}
        for t in (CAM0_TOPIC, CAM1_TOPIC):
            if t not in conns or conns[t].msgtype != _IMAGE:
                raise ValueError(f"'{self.bag_path}': no {t} [{_IMAGE}] topic; topics: {sorted(conns)}")
        self._c0, self._c1 = conns[CAM0_TOPIC], conns[CAM1_TOPIC]
        # (header ns, record ns) of every image, from the serialised header (no decoding)
        idx: Dict[int, List[Tuple[int, int]]] = {self._c0.id: [], self._c1.id: []}
        for conn, t_rec, raw in self._reader.messages(connections=[self._c0, self._c1]):
            idx[conn.id].append((_header_ns(raw), int(t_rec)))
        left = sorted(idx[self._c0.id])
        right = sorted(idx[self._c1.id])
        r_ns = np.asarray([h for h, _ in right], dtype=np.int64)
        tol_ns = int(round(tol_s * 1e9))
        pairs: List[Tuple[Tuple[int, int], Tuple[int, int]]] = []
        used = set()
        for hl, rl in left:
            if len(r_ns) == 0:
                break
            k = int(np.searchsorted(r_ns, hl))
            best = min((j for j in (k - 1, k) if 0 <= j < len(r_ns)), key=lambda j: abs(int(r_ns[j]) - hl))
            if abs(int(r_ns[best]) - hl) <= tol_ns and best not in used:
                used.add(best)
                pairs.append(((hl, rl), right[best]))
        if not pairs:
            raise ValueError(
                f"'{self.bag_path}': no {CAM0_TOPIC} / {CAM1_TOPIC} image pairs with header stamps "
                f"within {tol_s * 1e3:g} ms ({len(left)} left, {len(right)} right images)"
            )
        lo, hi = slice_range(len(pairs), start, frames, what=f"EuRoC bag '{self.bag_path}'")
        self._pairs = pairs[lo:hi]
        self.frame_ns = np.asarray([p[0][0] for p in self._pairs], dtype=np.int64)
        self._stamps = ns_to_s(self.frame_ns)

        self._imu_ns_data: Optional[np.ndarray] = None
        self._imu_data = None
        imu_conn = conns.get(IMU_TOPIC)
        if use_imu and imu_conn is not None and imu_conn.msgtype == _IMU:
            ns, rows = [], []
            for conn, _t, raw in self._reader.messages(connections=[imu_conn]):
                m = self._typestore.deserialize_ros1(raw, conn.msgtype)
                ns.append(m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec)
                w, a = m.angular_velocity, m.linear_acceleration
                rows.append((w.x, w.y, w.z, a.x, a.y, a.z))
            if ns:
                ns_a = np.asarray(ns, dtype=np.int64)
                a = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
                order = np.argsort(ns_a, kind="stable")
                keep = np.concatenate([[True], np.diff(ns_a[order]) > 0])
                ns_a, a = ns_a[order][keep], a[order][keep]
                self._imu_ns_data = ns_a
                self._imu_data = ImuData(ns_to_s(ns_a), a[:, 0:3], a[:, 3:6])

    def _find_gt(self, gt_path):
        if not gt_path:  # None / False: a bag has no ground truth of its own
            return None
        return super()._find_gt(gt_path)

    def _keep_frames(self, keep: List[int]) -> None:
        self.frame_ns, self._stamps = self.frame_ns[keep], self._stamps[keep]
        self._pairs = [self._pairs[k] for k in keep]

    # ------------------------------------------------------------------ frames
    def _decode(self, i: int, raw, conn) -> np.ndarray:
        import cv2

        m = self._typestore.deserialize_ros1(raw, conn.msgtype)
        h, w, step, enc = int(m.height), int(m.width), int(m.step), str(m.encoding).lower()
        where = f"{self.bag_path}:{conn.topic}"
        if (w, h) != self.stereo.size:
            raise FrameLoadError(i, where, f"image is {w}x{h}, expected {self.stereo.size[0]}x{self.stereo.size[1]}")
        ch = {"mono8": 1, "8uc1": 1, "rgb8": 3, "bgr8": 3}.get(enc)
        if ch is None:
            raise FrameLoadError(i, where, f"unsupported image encoding {m.encoding!r} (mono8, rgb8, bgr8)")
        data = np.asarray(m.data, dtype=np.uint8)
        if step < w * ch or data.size < step * h:
            raise FrameLoadError(i, where, f"image data too short ({data.size} bytes, step {step}, {w}x{h})")
        img = data[: step * h].reshape(h, step)[:, : w * ch]
        if ch == 1:
            return np.ascontiguousarray(img)
        img = img.reshape(h, w, 3)
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY if enc == "rgb8" else cv2.COLOR_BGR2GRAY)

    def _fetch(self, i: int):
        (hl, rl), (hr, rr) = self._pairs[i]
        want = {(self._c0.id, rl, hl): None, (self._c1.id, rr, hr): None}
        t_lo, t_hi = min(rl, rr), max(rl, rr)
        if self._it is None or self._it[1] >= t_lo:  # (re)seek; in sequence the iterator just goes on
            self._it = [self._reader.messages(connections=[self._c0, self._c1], start=t_lo), -1]
        it = self._it
        for conn, t_rec, raw in it[0]:
            it[1] = int(t_rec)
            key = (conn.id, int(t_rec), _header_ns(raw))
            if key in want:
                want[key] = (conn, raw)
                if all(v is not None for v in want.values()):
                    break
            if t_rec > t_hi:
                break
        else:
            self._it = None  # exhausted
        if any(v is None for v in want.values()):
            self._it = None
            raise FrameLoadError(i, str(self.bag_path), "image message not found in the bag (re-indexed or damaged?)")
        (c_l, raw_l), (c_r, raw_r) = want[(self._c0.id, rl, hl)], want[(self._c1.id, rr, hr)]
        return (c_l, bytes(raw_l)), (c_r, bytes(raw_r))

    def _pair_source(self, i: int, side: str) -> str:
        return f"{self.bag_path}:{CAM0_TOPIC if side == 'left' else CAM1_TOPIC}"

    def raw_pair(self, i: int):
        i = self._check_index(i)
        with self._lock:
            (c_l, raw_l), (c_r, raw_r) = self._fetch(i)
        return self._decode(i, raw_l, c_l), self._decode(i, raw_r, c_r)

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        r = self._reader
        if r is not None:
            self._it = None
            try:
                r.close()
            except Exception:
                pass
            self._reader = None

    def __del__(self):  # pragma: no cover - best effort
        self.close()
