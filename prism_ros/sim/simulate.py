"""``prism-ros simulate SOURCE --out DIR [--seed S] [--seconds T]``: write a simulated EuRoC flight.

See :mod:`prism_ros.sim.flight` for the scene, the cameras and the image effects.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

__all__ = ["main"]


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="prism-ros simulate",
        description="Fly a synthetic textured room along a EuRoC sequence's ground truth and write a complete "
        "EuRoC ASL folder (cam0/cam1 752x480 mono8 20 Hz with the real calibration, the real imu0, "
        "the ground truth, and the exact cam0 depth in mav0/cam0_depth_exact/).",
    )
    p.add_argument(
        "source",
        metavar="SOURCE",
        help="EuRoC ASL folder with ground truth, imu0 and cam0/cam1 sensor.yaml "
        "(e.g. ../shared/data/euroc_V1_02_medium_imu_gt)",
    )
    p.add_argument("--out", metavar="DIR", required=True, help="output folder (must not hold a EuRoC folder yet)")
    p.add_argument("--seed", type=int, default=0, help="scene / noise seed (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=None, help="simulate only T seconds (default: all)")
    p.add_argument(
        "--start-s",
        type=float,
        default=0.0,
        help="start this many seconds into the flight (the room is the whole flight's; default: 0)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.seconds is not None and args.seconds <= 0:
        p.error("--seconds must be positive")
    if args.start_s < 0:
        p.error("--start-s must not be negative")
    from prism_ros.sim.flight import simulate_euroc

    try:
        summary = simulate_euroc(
            args.source,
            args.out,
            seed=args.seed,
            seconds=args.seconds,
            start_s=args.start_s,
            progress=not args.no_progress,
            log=lambda m: print(m, file=sys.stderr),
        )
    except ValueError as e:
        print(f"prism-ros simulate: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
