"""Publish an RGB-D dataset folder or a ROS 1 / ROS 2 bag as the prism node's inputs.

    prism-ros play PATH [--rate R] [--start K] [--frames N] [--loop] [options] [--ros-args ...]
    prism_player  PATH ...        (same, as a console script / ``ros2 run prism_ros prism_player``)

Dataset folders (anything :func:`prism_ros.datasets.open_dataset` reads: TUM
RGB-D, 7-Scenes, ``synthetic``...) are published as

  camera/color/image_raw    sensor_msgs/Image, rgb8 (--color-encoding)
  camera/depth/image_raw    sensor_msgs/Image, 16UC1 millimetres (--depth-encoding 32FC1: metres)
  camera/color/camera_info  sensor_msgs/CameraInfo
  /clock                    rosgraph_msgs/Clock (use_sim_time:=true on the node)

EuRoC (ASL) folders: the rectified left grey image (mono8 by default), the stereo
depth (32FC1 metres by default) and the rectified left camera's camera_info on
the topics above, plus

  imu                       sensor_msgs/Imu at the IMU rate (frame --imu-frame-id,
                            the EuRoC body = imu0 frame), from --imu-preroll
                            seconds before the first frame (the node's static-start
                            gravity / gyro-bias window), each sample published
                            before any frame with a later-or-equal stamp

with the dataset's own nanosecond stamps.  The player prints the node parameters
that place the rectified left camera in the body frame (``T_base_camera_*``, with
``base_frame`` = the body/IMU frame, ``T_base_imu_*`` = EuRoC imu0's T_BS); run
the node with ``control_mode:=imu`` to use the IMU.  EuRoC ROS 1 bags
(/cam0/image_raw, /cam1/image_raw, /imu0) played with ``--calib <ASL folder or
its mav0>`` (cam0/, cam1/, imu0/sensor.yaml) are published exactly like an
EuRoC folder (rectified left image, stereo depth, camera_info, IMU); without
--calib they are republished raw like any bag.

Depth sigma (EuRoC): the player publishes no sigma image; the node computes each
pixel's sigma from the depth it receives with its parametric model
sigma_z = c0 + c2 (z - z0)^2, and the printed parameters set that model to the stereo
model of the reader, sigma_z = z^2 sigma_d / (f b): ``depth_noise_c0_m:=0.0``,
``depth_noise_z0_m:=0.0``, ``depth_noise_c2_per_m`` = sigma_d / (f b) (0.0121 /m for
EuRoC at the default ``stereo_downscale=2``, :data:`~prism_ros.datasets.euroc.STEREO_SIGMA_D_PX`), the same per-pixel sigma
``prism-ros run`` uses offline (:func:`euroc_node_params`).

Bad frames: a frame the dataset cannot deliver (:class:`~prism_ros.datasets.base.FrameLoadError`:
for EuRoC, a pair with its cam0 or cam1 image missing or unreadable, of the wrong size,
black or saturated, see :func:`prism_ros.core.stereo.check_stereo_pair`) is not
published (no stereo depth from it; /clock still advances) and playing goes on with
the next frame.  Each kind of problem is said on stderr at most once per
:data:`BAD_FRAME_LOG_PERIOD_S` (``prism-ros play: error: skipping frame 3: cannot load
.../cam1/data/<ns>.png: cam1 (right) image missing (file not found): pair skipped, no
stereo depth [missing_right: 1, 1 frames skipped so far]``, plus "(N similar messages
suppressed)" on the next line of that kind), and the end says ``prism-ros play: skipped
N frames (black 2, missing_right 2, ...)``.  The node never sees pairs: it gets the
depth image computed here, so a bad pair is just a frame that does not arrive (the
node's own checks cover bad depth / images).  The player never publishes cam0 / cam1
as separate topics: an EuRoC bag with ``--calib`` goes through the same pair checks,
and without it only one Image topic (``/cam0/image_raw``) is republished, as is.

Stamps: datasets with their own timestamps (TUM, EuRoC) keep them.  Folders
without timestamps (7-Scenes, the synthetic sequence) stamp frame *i* at exactly
``1 + i/30`` s (a zero stamp means "unset" to many ROS tools), so a listener can
tell which frame a message belongs to: ``i = round((t - 1) * 30)``.

Bags (a ROS 1 ``.bag`` file or a ROS 2 bag folder, read with ``rosbags``):
Image, CameraInfo, Imu and Odometry messages are republished with their own
header stamps, paced and clocked by the bag's record time.  Topics are mapped to
the node's inputs by default (an Image topic containing "depth" -> depth, the
other Image topic -> colour, the CameraInfo next to the colour topic,
Imu -> ``imu``, Odometry -> ``odom``), or explicitly with
``--topic-map /camera/rgb/image_color:=camera/color/image_raw`` (repeatable; then
only mapped topics are played).

``--rate R`` plays at R times real time.  Dataset frames (decoding, the EuRoC stereo
matching, the messages) are prepared ``--prefetch`` frames ahead in a background thread
below the publishing thread's priority (:func:`prism_ros.pipeline.prefetched`, as the offline
runner loads them): the thread that publishes the IMU, /clock and the frames keeps time, and
the stereo matching takes the CPU the node leaves (the node on the same cores then runs its
kernels undisturbed, as a camera with on-board depth would leave it).  A frame not ready in
time goes out late; the end says how late (``frames late by median / p95 / max ... ms``): a
replay whose frames are late by more than a frame period ran slower than ``--rate``.
Publishers are reliable (KEEP_LAST 10),
which matches both a reliable and the node's default best-effort (sensor data)
subscription.  By default the player waits (``--wait-for-subscribers``) until
the colour topic has a subscriber, so frames are not published before a
warming-up node listens.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from prism_ros.datasets.textfile import data_lines

__all__ = ["main", "build_parser", "dataset_stamp_offset", "default_topic_map", "euroc_node_params", "FRAME_RATE_NO_STAMPS"]

FRAME_RATE_NO_STAMPS = 30.0
#: at most one "frame skipped" line per kind of problem (black, missing_right, ...) this often
BAD_FRAME_LOG_PERIOD_S = 5.0
STAMP_ORIGIN_NO_STAMPS = 1.0

COLOR_TOPIC = "camera/color/image_raw"
DEPTH_TOPIC = "camera/depth/image_raw"
INFO_TOPIC = "camera/color/camera_info"
IMU_TOPIC = "imu"
ODOM_TOPIC = "odom"

_BAG_TYPES = {
    "sensor_msgs/msg/Image": "Image",
    "sensor_msgs/msg/CameraInfo": "CameraInfo",
    "sensor_msgs/msg/Imu": "Imu",
    "nav_msgs/msg/Odometry": "Odometry",
}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="prism-ros play",
        description="Publish a dataset folder (TUM, 7-Scenes, EuRoC, synthetic) or a ROS 1/2 bag as the prism node's inputs.",
        epilog="ROS arguments go after --ros-args, e.g. --ros-args -r camera/color/image_raw:=/cam/rgb",
    )
    ap.add_argument("path", help="dataset folder, 'synthetic[:N]', a ROS 1 .bag file or a ROS 2 bag folder")
    ap.add_argument("--rate", type=float, default=1.0, help="playback speed relative to real time (default 1.0)")
    ap.add_argument("--start", type=int, default=0, help="first frame (datasets) or seconds to skip (bags)")
    ap.add_argument("--frames", type=int, default=None, help="number of frames (datasets) or colour images (bags) to play")
    ap.add_argument("--loop", action="store_true", help="start again at the end (stamps jump back; the node then resets)")
    ap.add_argument("--depth-encoding", choices=("16UC1", "32FC1"), default=None,
                    help="depth image encoding (datasets; default 16UC1, EuRoC 32FC1)")
    ap.add_argument("--color-encoding", choices=("rgb8", "bgr8", "mono8"), default=None,
                    help="colour image encoding (datasets; default rgb8, EuRoC mono8)")
    ap.add_argument("--imu-frame-id", default="imu_link", help="header.frame_id of the Imu messages (EuRoC)")
    ap.add_argument("--imu-preroll", type=float, default=1.0, metavar="SECONDS",
                    help="IMU published from this long before the first frame (EuRoC; default 1.0)")
    ap.add_argument("--no-imu", action="store_true", help="do not publish the IMU (EuRoC)")
    ap.add_argument("--frame-id", default="camera_color_optical_frame", help="header.frame_id of images and camera_info (datasets)")
    ap.add_argument("--calib", metavar="PATH", default=None,
                    help="EuRoC ROS 1 bags: calibration folder (EuRoC ASL folder or its mav0); the bag is then "
                         "played like an EuRoC folder (rectified image + depth + camera_info + IMU)")
    ap.add_argument("--stereo-matcher", choices=("sgbm", "bm"), default=None,
                    help="EuRoC stereo depth: StereoSGBM (default) or StereoBM (about half the time; the node's "
                         "depth noise then follows its sigma_d, see the printed parameters)")
    ap.add_argument("--topic-map", action="append", default=[], metavar="SRC:=DST", help="bag topic mapping (repeatable)")
    ap.add_argument("--qos", choices=("reliable", "sensor_data"), default="reliable", help="publisher QoS (default reliable)")
    ap.add_argument("--clock-hz", type=float, default=50.0, help="/clock publication rate between frames (0: only at frames)")
    ap.add_argument(
        "--wait-for-subscribers",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wait up to this long for a subscriber on the colour topic before playing (0: do not wait)",
    )
    ap.add_argument("--preload", action="store_true",
                    help="decode every frame into messages before playing (datasets), so that playing costs "
                         "only publishing, like a camera driver; needs ~1.5 MB of memory a frame at 640x480")
    ap.add_argument("--prefetch", type=int, default=2, metavar="K",
                    help="datasets: prepare frames (decoding, EuRoC stereo matching, messages) up to K frames ahead "
                         "in a background thread below the publishing thread's priority, as the offline runner "
                         "loads them (default 2; 0: in the publishing thread, between publications)")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    return ap


def dataset_stamp_offset(ds) -> float:
    """Seconds added to a dataset's stamps: 1.0 for sources without timestamps, else 0."""
    has = getattr(ds, "has_timestamps", None)
    if has is None:
        name = type(ds).__name__.lower()
        has = not ("sevenscenes" in name or "synthetic" in name)
    return 0.0 if has else STAMP_ORIGIN_NO_STAMPS


def _rclpy_classes():
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CameraInfo, Image, Imu

    return {"Image": Image, "CameraInfo": CameraInfo, "Imu": Imu, "Odometry": Odometry}


def _to_rclpy(obj, cls):
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
            setattr(out, fname, _to_rclpy(src, type(cur)))
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


def _parse_topic_map(items: Sequence[str]) -> Dict[str, str]:
    out = {}
    for it in items:
        if ":=" not in it:
            raise SystemExit(f"prism-ros play: --topic-map expects SRC:=DST, got {it!r}")
        a, b = it.split(":=", 1)
        out[a.strip()] = b.strip()
    return out


def default_topic_map(topics: Dict[str, str]) -> Dict[str, str]:
    """{bag topic: node input topic} from {bag topic: msgtype} (see the module docstring)."""
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


class Lateness:
    """How late frames went out against their replay time (seconds, >= 0): a player that cannot
    prepare frames as fast as ``--rate`` asks publishes them late, and the replay is then slower
    than that rate.  Keeps the last ``maxlen`` values."""

    def __init__(self, maxlen: int = 100_000):
        from collections import deque

        self.values = deque(maxlen=maxlen)

    def add(self, late_s: float) -> None:
        self.values.append(max(float(late_s), 0.0))

    def summary(self, period_s: Optional[float] = None) -> str:
        """``frames late by median / p95 / max ... ms`` (and how many by more than ``period_s``); "" when empty."""
        if not self.values:
            return ""
        v = np.asarray(self.values) * 1e3
        text = f"frames late by median {np.median(v):.1f} / p95 {np.percentile(v, 95):.1f} / max {v.max():.1f} ms"
        if period_s:
            text += f" ({int(np.sum(v > period_s * 1e3))} of {len(v)} by more than a frame period, {period_s * 1e3:.0f} ms)"
        return text


class _Player:
    def __init__(self, args, node, qos):
        from rosgraph_msgs.msg import Clock

        self.args = args
        self.node = node
        self.qos = qos
        self.clock_pub = node.create_publisher(Clock, "/clock", 10)
        self._Clock = Clock
        self._pubs: Dict[Tuple[str, str], object] = {}
        self.published_frames = 0
        self.failed_frames = 0  # frames the middleware refused to publish
        self.published_imu = 0
        self.lateness = Lateness()  # of each dataset frame's publication behind its replay time
        self.frame_period_s: Optional[float] = None  # wall time between two frames at --rate
        from prism_ros.ros.diagnostics import Throttle

        self.skipped: Dict[str, int] = {}  # frames not played (bad stereo pairs, unreadable files) per kind
        self._throttle = Throttle(BAD_FRAME_LOG_PERIOD_S)

    def flush(self, timeout_s: float = 3.0) -> None:
        """Wait until reliable subscribers acknowledged everything (messages still in
        flight when the process exits are lost)."""
        from rclpy.duration import Duration

        t_end = time.monotonic() + timeout_s
        for q in list(self._pubs.values()) + [self.clock_pub]:
            left = t_end - time.monotonic()
            if left <= 0:
                break
            try:
                q.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9)))
            except Exception:  # best-effort publishers, shutting down context
                pass

    def pub(self, topic: str, cls):
        key = (topic, cls.__name__)
        if key not in self._pubs:
            qos = self.qos
            if topic == IMU_TOPIC:  # 200 Hz bursts: a short history would drop samples a slow reader has not acked
                import copy

                qos = copy.copy(self.qos)
                qos.depth = max(qos.depth, 400)
            self._pubs[key] = self.node.create_publisher(cls, topic, qos)
        return self._pubs[key]

    def publish_clock(self, t: float) -> None:
        from prism_ros.ros.conversions import sec_to_stamp

        self.clock_pub.publish(self._Clock(clock=sec_to_stamp(max(t, 0.0))))

    def wait_until(self, wall_target: float, sim_at) -> None:
        """Sleep until ``wall_target`` (monotonic), publishing /clock at --clock-hz meanwhile."""
        period = 1.0 / self.args.clock_hz if self.args.clock_hz > 0 else None
        import rclpy

        while rclpy.ok(context=self.node.context):
            now = time.monotonic()
            if now >= wall_target:
                return
            step = wall_target - now if period is None else min(period, wall_target - now)
            time.sleep(step)
            if period is not None and time.monotonic() < wall_target:
                self.publish_clock(sim_at(time.monotonic()))

    def wait_for_subscribers(self, topic: str, cls) -> None:
        if self.args.wait_for_subscribers <= 0:
            return
        import rclpy

        p = self.pub(topic, cls)
        t_end = time.monotonic() + self.args.wait_for_subscribers
        if p.get_subscription_count() == 0 and not self.args.quiet:
            print(
                f"prism-ros play: waiting up to {self.args.wait_for_subscribers:.0f} s for a subscriber on "
                f"{p.topic_name} (--wait-for-subscribers 0 to skip)",
                flush=True,
            )
        while p.get_subscription_count() == 0 and time.monotonic() < t_end and rclpy.ok(context=self.node.context):
            time.sleep(0.05)
        if p.get_subscription_count() == 0:
            if not self.args.quiet:
                print(f"prism-ros play: no subscriber on {p.topic_name}; playing anyway", flush=True)
            return
        # Let the other inputs (depth, camera_info) match too: a consumer of the colour
        # topic such as the prism node subscribes to all three, and under load endpoint
        # discovery can take seconds.  Topics nobody subscribes to do not hold us up long.
        companions = [q for (t, _), q in self._pubs.items() if t in (DEPTH_TOPIC, INFO_TOPIC)]
        t_end = time.monotonic() + 10.0
        while time.monotonic() < t_end and rclpy.ok(context=self.node.context):
            if all(q.get_subscription_count() > 0 for q in companions):
                break
            time.sleep(0.05)
        else:
            missing = [q.topic_name for q in companions if q.get_subscription_count() == 0]
            if missing and not self.args.quiet:
                print(f"prism-ros play: no subscriber on {', '.join(missing)}; playing anyway", flush=True)
        # the IMU (EuRoC folders, bags with an Imu topic): its first samples carry the
        # node's static-start window; give a subscriber a little longer to match
        imu_q = [q for (t, _), q in self._pubs.items() if t == IMU_TOPIC]
        t_end = time.monotonic() + 3.0
        while imu_q and time.monotonic() < t_end and rclpy.ok(context=self.node.context):
            if all(q.get_subscription_count() > 0 for q in imu_q):
                break
            time.sleep(0.05)
        # other topics (imu, odom): wait briefly for those the graph shows a subscriber for
        t_end = time.monotonic() + 3.0
        while time.monotonic() < t_end and rclpy.ok(context=self.node.context):
            if not [
                q for q in self._pubs.values()
                if q.get_subscription_count() == 0 and self.node.count_subscribers(q.topic_name) > 0
            ]:
                break
            time.sleep(0.05)
        time.sleep(0.3)

    # ------------------------------------------------------------ datasets
    def play_dataset(self) -> int:
        from sensor_msgs.msg import CameraInfo, Image, Imu
        from std_msgs.msg import Header

        from prism_ros.datasets import open_dataset
        from prism_ros.ros import conversions as cv

        a = self.args
        kw = {"calib": a.calib} if getattr(a, "calib", None) else {}
        if getattr(a, "stereo_matcher", None):
            from prism_ros.datasets import is_euroc

            if not is_euroc(a.path):
                raise ValueError(f"--stereo-matcher applies only to EuRoC recordings; {a.path} is not one")
            kw["stereo_matcher"] = a.stereo_matcher
        ds = open_dataset(a.path, start=a.start, frames=a.frames, **kw)
        n = len(ds)
        if n == 0:
            print("prism-ros play: no frames", file=sys.stderr)
            return 1
        euroc = _is_euroc(ds)
        color_enc = a.color_encoding or ("mono8" if euroc else "rgb8")
        depth_enc = a.depth_encoding or ("32FC1" if euroc else "16UC1")
        offset = dataset_stamp_offset(ds)
        stamps = np.asarray(ds.stamps(), dtype=np.float64) + offset
        if n > 1:
            self.frame_period_s = float(np.median(np.diff(stamps))) / a.rate
        frame_ns = _frame_ns(ds, stamps)
        color_pub = self.pub(COLOR_TOPIC, Image)
        depth_pub = self.pub(DEPTH_TOPIC, Image)
        info_pub = self.pub(INFO_TOPIC, CameraInfo)
        imu = None
        if euroc and not a.no_imu and getattr(ds, "imu", None) is not None and len(ds.imu):
            imu = _EurocImuStream(ds, a.imu_frame_id)
            imu_pub = self.pub(IMU_TOPIC, Imu)
        if euroc and not a.quiet:
            print(_euroc_node_hint(ds), flush=True)
        from prism_ros.datasets import FrameLoadError
        from prism_ros.pipeline import prefetched

        def frame_messages(i):
            try:
                fr = ds[i]
            except FrameLoadError as e:  # a bad stereo pair, an unreadable file: skipped, said throttled
                return e
            header = Header(stamp=_ns_to_stamp(frame_ns[i]) if euroc else cv.sec_to_stamp(float(stamps[i])),
                            frame_id=a.frame_id)
            return (cv.camera_to_camera_info(ds.camera, header), cv.depth_to_image(fr.depth, header, depth_enc),
                    cv.rgb_to_image(fr.rgb, header, color_enc))

        preloaded = None
        if a.preload:
            if not a.quiet:
                print(f"prism-ros play: preloading {n} frames", flush=True)
            preloaded = [frame_messages(i) for i in range(n)]
        self.wait_for_subscribers(COLOR_TOPIC, Image)
        if not a.quiet:
            print(
                f"prism-ros play: {getattr(ds, 'name', a.path)}: {n} frames, {ds.camera.width}x{ds.camera.height}, "
                f"stamps {stamps[0]:.6f} .. {stamps[-1]:.6f} s, rate {a.rate:g}"
                + (f", IMU {imu.rate_hz:.0f} Hz from {a.imu_preroll:g} s before the first frame" if imu else ""),
                flush=True,
            )
        import rclpy

        while True:
            t0 = stamps[0]
            k_imu = 0
            if imu is not None:
                k_imu = imu.first_index(stamps[0] - max(a.imu_preroll, 0.0))
                if k_imu < len(imu):
                    t0 = min(t0, float(imu.t[k_imu]))
            wall0 = time.monotonic()
            sim_at = lambda w, wall0=wall0, t0=t0: t0 + (w - wall0) * a.rate  # noqa: E731
            source = iter(preloaded if preloaded is not None else prefetched(frame_messages, n, max(a.prefetch, 0)))
            for i in range(n):
                if not rclpy.ok(context=self.node.context):
                    return 0
                t = float(stamps[i])
                if imu is not None:  # the IMU up to and including this frame's stamp
                    while k_imu < len(imu) and imu.ns[k_imu] <= frame_ns[i]:
                        self.wait_until(wall0 + (float(imu.t[k_imu]) - t0) / a.rate, sim_at)
                        imu_pub.publish(imu.message(k_imu))
                        self.published_imu += 1
                        k_imu += 1
                msgs = next(source)  # after the IMU before it: a frame not ready yet holds back only itself
                if isinstance(msgs, Exception):
                    self.bad_frame(i, msgs)
                target = wall0 + (t - t0) / a.rate
                self.wait_until(target, sim_at)
                self.lateness.add(time.monotonic() - target)
                self.publish_clock(t)
                if isinstance(msgs, Exception):
                    continue
                try:
                    info_pub.publish(msgs[0])
                    depth_pub.publish(msgs[1])
                    color_pub.publish(msgs[2])
                except RuntimeError as e:  # rclpy's RCLError: a middleware hiccup
                    # a transient middleware failure (seen with rmw_fastrtps under overload) must
                    # not end a long replay: skip this frame, say so, go on
                    self.failed_frames += 1
                    print(f"prism-ros play: frame {i} not published ({e}); continuing", file=sys.stderr, flush=True)
                    continue
                self.published_frames += 1
                if not a.quiet and (i % 100 == 0 or i == n - 1):
                    print(f"prism-ros play: frame {i + 1}/{n} t={t:.6f}", flush=True)
            if not a.loop:
                return 0

    def bad_frame(self, i: int, e) -> None:
        """A frame that cannot be played (FrameLoadError): counted per kind, said on stderr
        at most once per :data:`BAD_FRAME_LOG_PERIOD_S` per kind with the counts so far."""
        kind = getattr(e, "kind", "load")
        self.skipped[kind] = self.skipped.get(kind, 0) + 1
        n = sum(self.skipped.values())
        line = self._throttle.admit(kind, f"prism-ros play: error: skipping {e} "
                                          f"[{kind}: {self.skipped[kind]}, {n} frames skipped so far]")
        if line is not None:
            print(line, file=sys.stderr, flush=True)

    # ---------------------------------------------------------------- bags
    def play_bag(self) -> int:
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        a = self.args
        classes = _rclpy_classes()
        explicit = _parse_topic_map(a.topic_map)
        import rclpy

        with AnyReader([Path(a.path)], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
            topics = {c.topic: c.msgtype for c in reader.connections}
            mapping = explicit or default_topic_map(topics)
            unknown = [t for t in mapping if t not in topics]
            if unknown:
                print(f"prism-ros play: topics not in the bag: {unknown}; bag topics: {sorted(topics)}", file=sys.stderr)
                return 1
            bad = [t for t in mapping if topics[t] not in _BAG_TYPES]
            if bad:
                print(f"prism-ros play: unsupported message types {[(t, topics[t]) for t in bad]}", file=sys.stderr)
                return 1
            if not mapping:
                print(f"prism-ros play: no Image/CameraInfo/Imu/Odometry topics to play in {sorted(topics)}", file=sys.stderr)
                return 1
            skipped = sorted((t, ty) for t, ty in topics.items() if t not in mapping)
            for t, ty in skipped:  # always said, even with --quiet: the user may expect them
                why = "unsupported message type" if ty not in _BAG_TYPES else "not mapped (another topic of this type is played)"
                print(f"prism-ros play: warning: skipping topic {t} [{ty}]: {why}", file=sys.stderr, flush=True)
            if not a.quiet:
                for src, dst in mapping.items():
                    print(f"prism-ros play: {src} [{topics[src]}] -> {dst}", flush=True)
            conns = [c for c in reader.connections if c.topic in mapping]
            pubs = {c.topic: self.pub(mapping[c.topic], classes[_BAG_TYPES[c.msgtype]]) for c in conns}
            color_src = next((s for s, d in mapping.items() if d == COLOR_TOPIC), None)
            if color_src is not None:
                self.wait_for_subscribers(COLOR_TOPIC, classes["Image"])
            t_begin = reader.start_time * 1e-9 + max(a.start, 0)
            while True:
                wall0 = None
                t0 = None
                n_color = 0
                for conn, t_ns, raw in reader.messages(connections=conns):
                    if not rclpy.ok(context=self.node.context):
                        return 0
                    t = t_ns * 1e-9
                    if t < t_begin:
                        continue
                    if wall0 is None:
                        wall0, t0 = time.monotonic(), t
                    sim_at = lambda w, wall0=wall0, t0=t0: t0 + (w - wall0) * a.rate  # noqa: E731
                    self.wait_until(wall0 + (t - t0) / a.rate, sim_at)
                    msg = _to_rclpy(reader.deserialize(raw, conn.msgtype), classes[_BAG_TYPES[conn.msgtype]])
                    self.publish_clock(t)
                    pubs[conn.topic].publish(msg)
                    if conn.topic == color_src:
                        n_color += 1
                        self.published_frames += 1
                        if a.frames is not None and n_color >= a.frames:
                            break
                if not a.loop:
                    return 0


def _is_euroc(ds) -> bool:
    from prism_ros.datasets import EurocDataset

    return isinstance(ds, EurocDataset)  # EuRoC folders and EuRoC bags (EurocBagDataset)


def _ns_to_stamp(ns: int):
    from builtin_interfaces.msg import Time

    ns = int(ns)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _frame_ns(ds, stamps: np.ndarray) -> np.ndarray:
    """Integer nanosecond stamps of the frames: EuRoC's own (exact), else from the seconds."""
    ns = getattr(ds, "_ns", None)
    if ns is not None and len(ns) == len(stamps):
        return np.asarray(ns, dtype=np.int64)
    return np.round(np.asarray(stamps, dtype=np.float64) * 1e9).astype(np.int64)


def _read_imu_ns(ds) -> Optional[np.ndarray]:
    """EuRoC imu0 stamps as integers (the float seconds in ds.imu lose ~100 ns)."""
    ns = getattr(ds, "imu_ns", None)  # EuRoC bags: the header stamps
    if ns is not None:
        return np.asarray(ns, dtype=np.int64)
    p = Path(getattr(ds, "mav0", "")) / "imu0" / "data.csv"
    if not p.is_file():
        return None
    out = [int(ln.split(",", 1)[0]) for _, ln in data_lines(p)]
    return np.asarray(sorted(set(out)), dtype=np.int64)


class _EurocImuStream:
    """The dataset's IMU (ds.imu, ImuData) as sensor_msgs/Imu messages with exact stamps."""

    def __init__(self, ds, frame_id: str):
        self.imu = ds.imu
        self.t = ds.imu.t
        ns = _read_imu_ns(ds)
        if ns is None or len(ns) != len(self.t):
            ns = np.round(self.t * 1e9).astype(np.int64)
        self.ns = ns
        self.frame_id = frame_id
        self.rate_hz = 1.0 / float(np.median(np.diff(self.t))) if len(self.t) > 1 else 200.0
        noise = getattr(ds, "imu_noise", None)
        # discrete per-sample variances from the continuous noise densities
        self.var_w = (noise.gyro_noise_density**2 * self.rate_hz) if noise is not None else 0.0
        self.var_a = (noise.accel_noise_density**2 * self.rate_hz) if noise is not None else 0.0

    def __len__(self) -> int:
        return len(self.t)

    def first_index(self, t: float) -> int:
        return int(np.searchsorted(self.t, t, side="left"))

    def message(self, k: int):
        from sensor_msgs.msg import Imu

        m = Imu()
        m.header.stamp = _ns_to_stamp(self.ns[k])
        m.header.frame_id = self.frame_id
        m.orientation_covariance[0] = -1.0  # no orientation estimate
        w, f = self.imu.gyro[k], self.imu.acc[k]
        m.angular_velocity.x, m.angular_velocity.y, m.angular_velocity.z = (float(x) for x in w)
        m.linear_acceleration.x, m.linear_acceleration.y, m.linear_acceleration.z = (float(x) for x in f)
        for j in (0, 4, 8):
            m.angular_velocity_covariance[j] = float(self.var_w)
            m.linear_acceleration_covariance[j] = float(self.var_a)
        return m


def _xyz_rpy(T: np.ndarray) -> Tuple[List[float], List[float]]:
    """Inverse of conversions.T_from_xyz_rpy_deg: (xyz, fixed-axis roll pitch yaw in degrees)."""
    from scipy.spatial.transform import Rotation

    rpy = Rotation.from_matrix(np.asarray(T, float)[:3, :3]).as_euler("xyz", degrees=True)
    return [round(float(x), 6) + 0.0 for x in T[:3, 3]], [round(float(x), 4) + 0.0 for x in rpy]


def euroc_node_params(ds) -> Dict[str, List[float]]:
    """Node parameters matching a played EuRoC folder (base_frame = the EuRoC body frame).

    Also the depth noise model that IS the stereo depth sigma: the player publishes no
    sigma image; the node's parametric model sigma_z = c0 + c2 (z - z0)^2 with c0 = z0 = 0
    and c2 = sigma_d / (f b) is exactly the reader's per-pixel z^2 sigma_d / (f b), from
    the node's own depth image (what ``prism-ros run`` uses offline)."""
    from prism_ros.core import se3

    out: Dict[str, List[float]] = {}
    st = getattr(ds, "stereo", None)
    if st is not None:
        out["depth_noise_c0_m"] = 0.0
        out["depth_noise_c2_per_m"] = float(st.sigma_d / (st.f * st.baseline))
        out["depth_noise_z0_m"] = 0.0
    out["T_base_camera_xyz_m"], out["T_base_camera_rpy_deg"] = _xyz_rpy(ds.T_body_cam)
    T_imu_cam = getattr(ds, "T_imu_cam", None)
    if T_imu_cam is not None:  # T_B_I = T_B_cam T_I_cam^-1
        out["T_base_imu_xyz_m"], out["T_base_imu_rpy_deg"] = _xyz_rpy(ds.T_body_cam @ se3.inv(T_imu_cam))
    noise = getattr(ds, "imu_noise", None)
    if noise is not None:
        out["imu_gyro_noise_density"] = noise.gyro_noise_density
        out["imu_gyro_random_walk"] = noise.gyro_random_walk
        out["imu_accel_noise_density"] = noise.accel_noise_density
        out["imu_accel_random_walk"] = noise.accel_random_walk
    return out


def _param_float(v: float) -> str:
    """A double parameter on the command line: always with a '.' or an exponent (``0``
    would be an integer, which a double parameter refuses)."""
    t = f"{float(v):.6g}"
    return t if any(c in t for c in ".en") else t + ".0"


def _euroc_node_hint(ds) -> str:
    p = euroc_node_params(ds)
    args = " ".join(f"-p {k}:=\"{v}\"" if isinstance(v, list) else f"-p {k}:={_param_float(v)}" for k, v in p.items())
    return ("prism-ros play: EuRoC: the rectified left camera in the body (IMU) frame; run the node with\n"
            f"  --ros-args -p use_sim_time:=true -p control_mode:=imu {args}")


def _is_bag(path: str) -> bool:
    p = Path(path)
    if p.is_file() and p.suffix == ".bag":
        return True
    if p.is_dir() and (p / "metadata.yaml").is_file():
        return True
    return False


def main(argv: Optional[List[str]] = None) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from prism_ros.ros.qos import reliable_qos, sensor_qos

    args_all = list(sys.argv[1:]) if argv is None else list(argv)
    user_args = rclpy.utilities.remove_ros_args(["prism_player"] + args_all)[1:]
    a = build_parser().parse_args(user_args)
    if not (a.rate > 0 and np.isfinite(a.rate)):
        raise SystemExit("prism-ros play: --rate must be positive")
    if not (a.path == "synthetic" or a.path.startswith("synthetic:") or os.path.exists(a.path)):
        raise SystemExit(f"prism-ros play: {a.path} does not exist")
    from prism_ros.ros.transport import use_default_profile

    use_default_profile(log=(lambda s: None) if a.quiet else None)  # config/fastdds.xml; before rclpy.init
    rclpy.init(args=["prism_player"] + args_all)
    node = rclpy.create_node("prism_player")
    qos = reliable_qos(10) if a.qos == "reliable" else sensor_qos("sensor_data", 10)
    player = _Player(a, node, qos)
    rc = 0
    try:
        if a.calib is not None:
            from prism_ros.datasets.euroc_bag import is_euroc_bag

            if not is_euroc_bag(a.path):
                raise ValueError(f"--calib applies only to EuRoC ROS 1 bags (/cam0/image_raw, /cam1/image_raw); "
                                 f"{a.path} is not one")
            rc = player.play_dataset()
        else:
            rc = player.play_bag() if _is_bag(a.path) else player.play_dataset()
        player.flush()
    except (KeyboardInterrupt, ExternalShutdownException):
        rc = 0
    except ValueError as e:  # unrecognised dataset, bad --start/--frames
        print(f"prism-ros play: {e}", file=sys.stderr)
        rc = 1
    finally:
        if not a.quiet:
            extra = f" and {player.published_imu} IMU samples" if player.published_imu else ""
            print(f"prism-ros play: published {player.published_frames} frames{extra}", flush=True)
            late = player.lateness.summary(player.frame_period_s)
            if late:
                print(f"prism-ros play: {late}", flush=True)
        if player.skipped:  # always said, even with --quiet
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(player.skipped.items()))
            print(f"prism-ros play: skipped {sum(player.skipped.values())} frames ({kinds})", file=sys.stderr, flush=True)
        try:
            node.destroy_node()
        except Exception:
            pass
        if rclpy.ok():
            rclpy.try_shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
