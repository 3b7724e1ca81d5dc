"""``prism-ros play`` / ``prism_player``: the arguments and :func:`main`.

Exit codes: 0 played to the end (or interrupted), 1 nothing to play (an unrecognised dataset,
bad ``--start`` / ``--frames``, a bag without playable topics).  A path that does not exist and
a non-positive ``--rate`` end the program with a message (SystemExit).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

import numpy as np

from .loop import Player
from .sources import is_bag

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="prism-ros play",
        description="Publish a dataset folder (TUM, 7-Scenes, EuRoC, synthetic) or a ROS 1/2 bag "
        "as the prism node's inputs.",
        epilog="ROS arguments go after --ros-args, e.g. --ros-args -r camera/color/image_raw:=/cam/rgb",
    )
    ap.add_argument("path", help="dataset folder, 'synthetic[:N]', a ROS 1 .bag file or a ROS 2 bag folder")
    ap.add_argument("--rate", type=float, default=1.0, help="playback speed relative to real time (default 1.0)")
    ap.add_argument("--start", type=int, default=0, help="first frame (datasets) or seconds to skip (bags)")
    ap.add_argument(
        "--frames", type=int, default=None, help="number of frames (datasets) or colour images (bags) to play"
    )
    ap.add_argument(
        "--loop", action="store_true", help="start again at the end (stamps jump back; the node then resets)"
    )
    ap.add_argument(
        "--depth-encoding",
        choices=("16UC1", "32FC1"),
        default=None,
        help="depth image encoding (datasets; default 16UC1, EuRoC 32FC1)",
    )
    ap.add_argument(
        "--color-encoding",
        choices=("rgb8", "bgr8", "mono8"),
        default=None,
        help="colour image encoding (datasets; default rgb8, EuRoC mono8)",
    )
    ap.add_argument("--imu-frame-id", default="imu_link", help="header.frame_id of the Imu messages (EuRoC)")
    ap.add_argument(
        "--imu-preroll",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="IMU published from this long before the first frame (EuRoC; default 1.0)",
    )
    ap.add_argument("--no-imu", action="store_true", help="do not publish the IMU (EuRoC)")
    ap.add_argument(
        "--frame-id", default="camera_color_optical_frame", help="header.frame_id of images and camera_info (datasets)"
    )
    ap.add_argument(
        "--calib",
        metavar="PATH",
        default=None,
        help="EuRoC ROS 1 bags: calibration folder (EuRoC ASL folder or its mav0); the bag is then "
        "played like an EuRoC folder (rectified image + depth + camera_info + IMU)",
    )
    ap.add_argument(
        "--stereo-matcher",
        choices=("sgbm", "bm"),
        default=None,
        help="EuRoC stereo depth: StereoSGBM (default) or StereoBM (about half the time; the node's "
        "depth noise then follows its sigma_d, see the printed parameters)",
    )
    ap.add_argument(
        "--topic-map", action="append", default=[], metavar="SRC:=DST", help="bag topic mapping (repeatable)"
    )
    ap.add_argument(
        "--qos", choices=("reliable", "sensor_data"), default="reliable", help="publisher QoS (default reliable)"
    )
    ap.add_argument(
        "--clock-hz", type=float, default=50.0, help="/clock publication rate between frames (0: only at frames)"
    )
    ap.add_argument(
        "--wait-for-subscribers",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wait up to this long for a subscriber on the colour topic before playing (0: do not wait)",
    )
    ap.add_argument(
        "--preload",
        action="store_true",
        help="decode every frame into messages before playing (datasets), so that playing costs "
        "only publishing, like a camera driver; needs ~1.5 MB of memory a frame at 640x480",
    )
    ap.add_argument(
        "--prefetch",
        type=int,
        default=2,
        metavar="K",
        help="datasets: prepare frames (decoding, EuRoC stereo matching, messages) up to K frames ahead "
        "in a background thread below the publishing thread's priority, as the offline runner "
        "loads them (default 2; 0: in the publishing thread, between publications)",
    )
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    """Play ``argv`` (default ``sys.argv[1:]``; ROS arguments after ``--ros-args``); the exit code."""
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
    player = Player(a, node, qos)
    rc = 0
    try:
        if a.calib is not None:
            from prism_ros.datasets.euroc_bag import is_euroc_bag

            if not is_euroc_bag(a.path):
                raise ValueError(
                    f"--calib applies only to EuRoC ROS 1 bags (/cam0/image_raw, /cam1/image_raw); {a.path} is not one"
                )
            rc = player.play_dataset()
        else:
            rc = player.play_bag() if is_bag(a.path) else player.play_dataset()
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
            print(
                f"prism-ros play: skipped {sum(player.skipped.values())} frames ({kinds})", file=sys.stderr, flush=True
            )
        try:
            node.destroy_node()
        except Exception:
            pass
        if rclpy.ok():
            rclpy.try_shutdown()
    return rc
