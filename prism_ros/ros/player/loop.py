"""The player's publishing loop (the ROS side): pacing, /clock, publishers, bad frames.

:class:`Player` publishes a :class:`~prism_ros.ros.player.sources.DatasetSource` or a bag at ``--rate`` times real time,
paced by the dataset's stamps or the bag's record time, with ``/clock`` at the frames and at ``--clock-hz`` in between.

* Frames are prepared ``--prefetch`` ahead in a lower-priority thread (:func:`prism_ros.pipeline.prefetched`;
  ``--preload``: all before playing); a frame not ready in time goes out late (:class:`Lateness`).
* A frame the dataset cannot deliver (:class:`~prism_ros.datasets.base.FrameLoadError`) is not published (/clock
  still advances); each kind is said on stderr at most once per :data:`BAD_FRAME_LOG_PERIOD_S`.
* Publishers are reliable (KEEP_LAST 10; IMU 400); with ``--wait-for-subscribers`` (default) playing waits for a
  subscriber on the colour topic.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from .euroc import euroc_node_hint
from .sources import (
    BAG_TYPES,
    COLOR_TOPIC,
    DEPTH_TOPIC,
    IMU_TOPIC,
    INFO_TOPIC,
    DatasetSource,
    default_topic_map,
    parse_topic_map,
    rclpy_classes,
    to_rclpy,
)

__all__ = ["Player", "Lateness", "BAD_FRAME_LOG_PERIOD_S"]

#: at most one "frame skipped" line per kind of problem (black, missing_right, ...) this often
BAD_FRAME_LOG_PERIOD_S = 5.0


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
            text += (
                f" ({int(np.sum(v > period_s * 1e3))} of {len(v)} by more than a frame period, {period_s * 1e3:.0f} ms)"
            )
        return text


class Player:
    """Publishes what the player plays on ``node`` (publisher QoS ``qos``) as ``args`` say."""

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
                q
                for q in self._pubs.values()
                if q.get_subscription_count() == 0 and self.node.count_subscribers(q.topic_name) > 0
            ]:
                break
            time.sleep(0.05)
        time.sleep(0.3)

    # ------------------------------------------------------------ datasets
    def play_dataset(self) -> int:
        from sensor_msgs.msg import CameraInfo, Image, Imu

        from prism_ros.pipeline import prefetched

        a = self.args
        src = DatasetSource(a)
        ds, n, stamps, frame_ns, imu = src.ds, src.n, src.stamps, src.frame_ns, src.imu
        if n == 0:
            print("prism-ros play: no frames", file=sys.stderr)
            return 1
        if n > 1:
            self.frame_period_s = float(np.median(np.diff(stamps))) / a.rate
        color_pub = self.pub(COLOR_TOPIC, Image)
        depth_pub = self.pub(DEPTH_TOPIC, Image)
        info_pub = self.pub(INFO_TOPIC, CameraInfo)
        if imu is not None:
            imu_pub = self.pub(IMU_TOPIC, Imu)
        if src.euroc and not a.quiet:
            print(euroc_node_hint(ds), flush=True)
        frame_messages = src.messages  # a bad stereo pair, an unreadable file: the FrameLoadError, said throttled

        preloaded = None
        if a.preload:
            if not a.quiet:
                print(f"prism-ros play: preloading {n} frames", flush=True)
            preloaded = [frame_messages(i) for i in range(n)]
        self.wait_for_subscribers(COLOR_TOPIC, Image)
        if not a.quiet:
            print(
                f"prism-ros play: {ds.name}: {n} frames, {ds.camera.width}x{ds.camera.height}, "
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
                    # a transient middleware failure must not end a long replay: skip this frame,
                    # say so, go on
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
        kind = e.kind
        self.skipped[kind] = self.skipped.get(kind, 0) + 1
        n = sum(self.skipped.values())
        line = self._throttle.admit(
            kind, f"prism-ros play: error: skipping {e} [{kind}: {self.skipped[kind]}, {n} frames skipped so far]"
        )
        if line is not None:
            print(line, file=sys.stderr, flush=True)

    # ---------------------------------------------------------------- bags
    def play_bag(self) -> int:
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        a = self.args
        classes = rclpy_classes()
        explicit = parse_topic_map(a.topic_map)
        import rclpy

        with AnyReader([Path(a.path)], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
            topics = {c.topic: c.msgtype for c in reader.connections}
            mapping = explicit or default_topic_map(topics)
            unknown = [t for t in mapping if t not in topics]
            if unknown:
                print(
                    f"prism-ros play: topics not in the bag: {unknown}; bag topics: {sorted(topics)}", file=sys.stderr
                )
                return 1
            bad = [t for t in mapping if topics[t] not in BAG_TYPES]
            if bad:
                print(f"prism-ros play: unsupported message types {[(t, topics[t]) for t in bad]}", file=sys.stderr)
                return 1
            if not mapping:
                print(
                    f"prism-ros play: no Image/CameraInfo/Imu/Odometry topics to play in {sorted(topics)}",
                    file=sys.stderr,
                )
                return 1
            skipped = sorted((t, ty) for t, ty in topics.items() if t not in mapping)
            for t, ty in skipped:  # always said, even with --quiet: the user may expect them
                why = (
                    "unsupported message type"
                    if ty not in BAG_TYPES
                    else "not mapped (another topic of this type is played)"
                )
                print(f"prism-ros play: warning: skipping topic {t} [{ty}]: {why}", file=sys.stderr, flush=True)
            if not a.quiet:
                for src, dst in mapping.items():
                    print(f"prism-ros play: {src} [{topics[src]}] -> {dst}", flush=True)
            conns = [c for c in reader.connections if c.topic in mapping]
            pubs = {c.topic: self.pub(mapping[c.topic], classes[BAG_TYPES[c.msgtype]]) for c in conns}
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
                    msg = to_rclpy(reader.deserialize(raw, conn.msgtype), classes[BAG_TYPES[conn.msgtype]])
                    self.publish_clock(t)
                    pubs[conn.topic].publish(msg)
                    if conn.topic == color_src:
                        n_color += 1
                        self.published_frames += 1
                        if a.frames is not None and n_color >= a.frames:
                            break
                if not a.loop:
                    return 0
