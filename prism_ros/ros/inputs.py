"""The checks the node makes on its inputs before a frame reaches the pipeline (no ROS import).

Each check answers ``None`` (usable) or a :class:`Refusal`; the node counts a refused frame as a bad input, logs its
text throttled per ``key`` and leaves the filter alone.  Checked here: stream stamps and liveness, colour / depth /
camera_info agreement.  Elsewhere: message decoding (:mod:`prism_ros.ros.conversions.image`, ``InputError``), IMU
samples (:meth:`prism_ros.core.imu.ImuBuffer.add`), too little valid depth (the filter's ``InvalidFrameError``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

from prism_ros.core.camera import Camera

__all__ = ["Refusal", "StreamMonitor", "frame_refusal", "source_stamp_ns", "STREAM_NAMES"]

STREAM_NAMES = ("colour", "depth")

#: Warn when one image stream arrives without the other for this long (s; a driver that died): far above jitter.
STREAM_SILENCE_S = 2.0


@dataclass(frozen=True)
class Refusal:
    """Why an input cannot be used: ``key`` groups it for throttling, ``text`` says it."""

    key: str
    text: str


class StreamMonitor:
    """Stamp order and liveness of the colour (stream 0) and depth (stream 1) images: a stamp not finite, repeating
    the newest or going back by up to ``jump_back_s`` is refused; a larger jump back is a new timeline (accepted).
    """

    def __init__(self, topics: Tuple[str, str], jump_back_s: float, silence_s: float = STREAM_SILENCE_S):
        self.topics = topics
        self.jump_back_s = float(jump_back_s)
        self.silence_s = float(silence_s)
        self._newest: list = [None, None]
        self._last_rx: list = [None, None]
        self._first_rx: list = [None, None]

    def check(self, s: int, stamp: float, now: float) -> Optional[Refusal]:
        """Record a stream-``s`` message with ``stamp`` received at monotonic ``now``."""
        self._last_rx[s] = now
        if self._first_rx[s] is None:
            self._first_rx[s] = now
        topic = self.topics[s]
        if not math.isfinite(stamp):
            return Refusal("stamp", f"{topic}: non-finite stamp")
        newest = self._newest[s]
        if newest is not None and newest - self.jump_back_s <= stamp <= newest:
            what = "duplicate stamp" if stamp == newest else "stamp older than the previous one"
            return Refusal(
                "stamp_order", f"{topic}: {STREAM_NAMES[s]} image {what} ({stamp:.6f} s after {newest:.6f} s)"
            )
        self._newest[s] = stamp
        return None

    def silence(self, s: int, now: float) -> Optional[Refusal]:
        """A warning when stream ``s`` arrives but the other one has been silent for longer
        than ``silence_s`` (since its last message, or since ``s`` started)."""
        o = 1 - s
        other_last = self._last_rx[o] if self._last_rx[o] is not None else self._first_rx[s]
        if other_last is None or now - other_last <= self.silence_s:
            return None
        return Refusal(
            f"silence{o}",
            f"{STREAM_NAMES[s]} images arrive on {self.topics[s]} but no {STREAM_NAMES[o]} image on "
            f"{self.topics[o]} for {now - other_last:.0f} s; nothing to pair (the pending buffer is bounded)",
        )


def frame_refusal(rgb_shape: Sequence[int], depth_shape: Sequence[int], camera: Camera) -> Optional[Refusal]:
    """A decoded colour / depth pair and the camera it is used with must agree in size."""
    (h, w), (dh, dw) = tuple(rgb_shape[:2]), tuple(depth_shape[:2])
    if (h, w) != (dh, dw):
        return Refusal("size", f"size mismatch: colour is {w}x{h} but depth is {dw}x{dh} (register depth to colour)")
    if (camera.width, camera.height) != (w, h):
        return Refusal(
            "info_size", f"size mismatch: camera_info is {camera.width}x{camera.height} but the images are {w}x{h}"
        )
    return None


def source_stamp_ns(info: Any) -> Optional[int]:
    """The publisher's send time (DDS source timestamp, ns) from rclpy's message info
    (a mapping), or None when absent or zero."""
    try:
        v = int(info["source_timestamp"]) if info is not None else 0
    except (KeyError, TypeError, ValueError):
        return None
    return v if v > 0 else None
