"""RGB-D frames from the node's colour, depth and camera_info messages (no rclpy).

:class:`RgbdAssembler` checks each image's stamp (:class:`~prism_ros.ros.inputs.StreamMonitor`), pairs colour and depth
(:class:`~prism_ros.ros.sync.ApproxTimePairer`), holds the newest pair until a valid camera_info has arrived and checks
the declared sizes.  A usable pair goes to ``deliver`` still encoded (:meth:`RgbdAssembler.decode` runs on the worker,
so dropped frames are never decoded); everything else goes to ``report(level, key, text)``, level ``bad``, ``error`` or
``warn``.  Not thread-safe: the sensor callbacks call it from one thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, Image

from prism_ros.core.camera import Camera
from prism_ros.pipeline import PipelineFrame
from prism_ros.ros import conversions as cv
from prism_ros.ros import inputs
from prism_ros.ros.sync import ApproxTimePairer

__all__ = ["Frame", "RgbdAssembler"]

_MAX_PENDING = 10  # unpaired images kept per stream


@dataclass
class Frame:
    """A colour / depth pair as received (decoded by :meth:`RgbdAssembler.decode`)."""

    color: Image
    depth: Image
    stamp: float  # the colour image's header stamp, seconds
    header_stamp: Time
    camera: Camera
    t_recv: float  # time.monotonic() when the pair was complete
    t_src_ns: Optional[int]  # publisher's time.time_ns() of the later image of the pair (DDS source timestamp)


class RgbdAssembler:
    """Colour + depth + camera_info -> :class:`Frame`; ``topics`` = (colour, depth, camera_info) names."""

    def __init__(
        self,
        topics: Tuple[str, str, str],
        slop_s: float,
        report: Callable[[str, str, str], None],
        deliver: Callable[[Frame], None],
    ):
        self.topics = topics
        self.report = report
        self.deliver = deliver
        self.pairer = ApproxTimePairer(slop_s, max_pending=_MAX_PENDING)
        self.streams = inputs.StreamMonitor(topics[:2], self.pairer.reset_on_jump_back_s)
        self.camera: Optional[Camera] = None
        self._camera_error: Optional[str] = None
        self._waiting = None  # (colour, depth, t_src_ns) that arrived before a valid camera_info
        self.clear_requested = False  # set from any thread (~/reset); done by the next image

    def on_info(self, msg: CameraInfo) -> None:
        try:
            cam = cv.camera_info_to_camera(msg)
        except cv.InputError as e:
            self.camera, self._camera_error = None, str(e)
            self.report(
                "error", "camera_info", f"{self.topics[2]}: {e}; frames are ignored until a valid camera_info arrives"
            )
            return
        if any(abs(float(x)) > 1e-9 for x in msg.d) and self.camera is None:
            self.report(
                "warn",
                "distortion",
                f"camera_info has non-zero distortion ({msg.distortion_model}); prism assumes rectified images",
            )
        self.camera, self._camera_error = cam, None
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            self._on_pair(*waiting)

    def on_image(self, s: int, msg: Image, src_ns: Optional[int]) -> None:
        """An image of stream ``s`` (0 colour, 1 depth); ``src_ns``: its DDS source timestamp."""
        if self.clear_requested:
            self.clear_requested = False
            self.pairer.clear()
        stamp, now = cv.stamp_to_sec(msg.header.stamp), time.monotonic()
        refused = self.streams.check(s, stamp, now)
        if refused is not None:
            return self.report("bad", refused.key, refused.text)
        silent = self.streams.silence(s, now)
        if silent is not None:
            self.report("warn", silent.key, silent.text)
        add = self.pairer.add_a if s == 0 else self.pairer.add_b
        for c, d, _, _ in add(stamp, (msg, src_ns)):
            self._on_pair(c[0], d[0], max((v for v in (c[1], d[1]) if v is not None), default=None))

    def _on_pair(self, color: Image, depth: Image, t_src_ns: Optional[int]) -> None:
        t_recv = time.monotonic()
        cam = self.camera
        if cam is None:
            # camera_info travels on its own topic and may arrive just after the images:
            # keep the newest pair until it does; an older waiting pair is dropped.
            old, self._waiting = self._waiting, (color, depth, t_src_ns)
            if old is not None:
                why = self._camera_error or f"no camera_info received on {self.topics[2]}"
                self.report("bad", "no_camera", f"cannot use RGB-D frame: {why}")
            return
        refused = inputs.frame_refusal((color.height, color.width), (depth.height, depth.width), cam)
        if refused is not None:
            return self.report("bad", refused.key, refused.text)
        self.deliver(
            Frame(color, depth, cv.stamp_to_sec(color.header.stamp), color.header.stamp, cam, t_recv, t_src_ns)
        )

    def decode(self, item: Frame) -> Optional[PipelineFrame]:
        """The pair's images as arrays; None (reported ``bad``) when either cannot be decoded."""
        try:
            rgb = cv.image_to_rgb(item.color)
        except cv.InputError as e:
            return self.report("bad", "color", f"{self.topics[0]}: {e}")
        try:
            depth_m = cv.image_to_depth_m(item.depth)
        except cv.InputError as e:
            return self.report("bad", "depth", f"{self.topics[1]}: {e}")
        return PipelineFrame(item.stamp, rgb, depth_m)
