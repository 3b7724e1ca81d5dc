"""``prism-ros``: the command-line entry point.

Subcommands: ``demo`` (the filter on the built-in synthetic sequence, with a summary), ``run`` (a dataset:
TUM RGB-D, 7-Scenes, EuRoC folder or ROS 1 bag + --calib), and ``node``, ``play``, ``bench``, ``soak``,
``simulate``, ``stereo-eval`` (:data:`LAZY_COMMANDS`, imported only when used so the CLI works without
ROS; an entry is ``name: ("module.path", "function", "help")``, the function taking the remaining
arguments and returning an exit code).  ``demo`` and ``run`` compose run
(:func:`prism_ros.tools.runner.run`) -> evaluate (:func:`prism_ros.eval.evaluate.evaluate`) -> write
(:func:`prism_ros.tools.runner.write_outputs`, :func:`prism_ros.eval.evaluate.write_evaluation`).

Exit codes: 0 success, 1 runtime failure, 2 bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from prism_ros.tools.args import add_config_arguments, apply_dataset_hints, config_from_args, nonneg_int, pos_int

__all__ = ["main", "build_parser", "LAZY_COMMANDS", "print_summary"]

#: name -> (module, function, one-line help); the function gets the remaining argv.
LAZY_COMMANDS: Dict[str, Tuple[str, str, str]] = {
    "node": ("prism_ros.ros.node", "main", "run the PRISM ROS 2 node (needs rclpy; arguments go to the node)"),
    "play": (
        "prism_ros.ros.player",
        "main",
        "publish a dataset as ROS 2 topics (needs rclpy; arguments go to the player)",
    ),
    "bench": (
        "prism_ros.eval.bench",
        "main",
        "benchmark FPS, per-stage ms, peak RSS and ATE (optionally against --peer open3d)",
    ),
    "soak": (
        "prism_ros.eval.soak",
        "main",
        "overload soak: player (looping) + node as processes; RSS over time, latency p95, drop rate (needs rclpy)",
    ),
    "simulate": (
        "prism_ros.sim.simulate",
        "main",
        "write a simulated EuRoC flight (stereo images, real IMU, ground truth, exact depth) along a EuRoC trajectory",
    ),
    "stereo-eval": (
        "prism_ros.eval.stereo_eval",
        "main",
        "stereo depth accuracy, sigma calibration and speed against a simulated flight's exact depth",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prism-ros",
        description="PRISM probabilistic dense RGB-D SLAM: offline runner, demo and ROS 2 entry points.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    common = argparse.ArgumentParser(add_help=False)
    add_config_arguments(common)
    common.add_argument("--no-progress", action="store_true", help="no progress bar")
    common.add_argument("--no-report", action="store_true", help="skip report.png")

    p = sub.add_parser(
        "demo",
        parents=[common],
        help="run on the built-in synthetic sequence and print a summary",
        description="Run PRISM on the synthetic sequence (exact ground truth and SDF) and print "
        "ATE, map SDF RMSE, both calibration figures and FPS.",
    )
    p.add_argument(
        "--out", metavar="DIR", default=os.path.join("prism_out", "demo"), help="output folder (default: %(default)s)"
    )
    p.add_argument(
        "--frames", metavar="N", type=pos_int, default=None, help="number of frames (default: the whole sequence)"
    )
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "run",
        parents=[common],
        help="run on a dataset (TUM RGB-D, 7-Scenes, EuRoC folder or ROS 1 bag)",
        description="Run PRISM on a dataset and write trajectory.tum, groundtruth.tum, covariances.npz, "
        "metrics.json, map.ply, report.png and config.yaml into --out.",
    )
    p.add_argument("path", metavar="PATH", help="dataset folder, a EuRoC ROS 1 .bag (with --calib), or 'synthetic'")
    p.add_argument(
        "--start",
        metavar="K",
        type=nonneg_int,
        default=0,
        help="first frame, counted from the first frame present (default: 0)",
    )
    p.add_argument("--frames", metavar="N", type=pos_int, default=None, help="number of frames (default: all)")
    p.add_argument("--out", metavar="DIR", default=None, help="output folder (default: prism_out/<dataset name>)")
    p.add_argument(
        "--stride",
        metavar="K",
        type=pos_int,
        default=1,
        help="use every K-th frame of the --start/--frames selection (e.g. 2: a 20 Hz camera at 10 Hz)",
    )
    p.add_argument(
        "--calib",
        metavar="PATH",
        default=None,
        help="calibration for a EuRoC ROS 1 bag: a EuRoC ASL folder (or its mav0) with "
        "cam0/, cam1/ and imu0/sensor.yaml",
    )
    p.add_argument(
        "--no-imu",
        action="store_true",
        help="ignore the recording's IMU (EuRoC): the constant-velocity model predicts every frame",
    )
    p.add_argument(
        "--stereo-matcher",
        choices=("sgbm", "bm"),
        default=None,
        help="EuRoC stereo depth: OpenCV StereoSGBM (default) or StereoBM (about half the time, "
        "more accurate on the simulated flight, but the pose covariance is not calibrated for it)",
    )
    p.set_defaults(func=_cmd_run)

    for name, (_mod, _fn, help_) in LAZY_COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


def _fmt(m: Dict[str, Any], key: str, scale: float = 1.0, fmt: str = "{:.3f}", unit: str = "") -> str:
    v = m.get(key)
    if v is None:
        return "n/a"
    return fmt.format(v * scale) + unit


def print_summary(m: Dict[str, Any], out_dir: str, cfg=None, file=None) -> None:
    """Human-readable summary of a run's metrics."""
    file = file or sys.stdout
    w = lambda s="": print(s, file=file)  # noqa: E731
    w(f"prism-ros: {m.get('frames')} frames of {m.get('dataset')} -> {out_dir}")
    if m.get("frames_skipped"):
        w(f"  skipped frames         {m['frames_skipped']} (unreadable)")
    if "ate_rmse_m" in m:
        w(
            f"  ATE RMSE               {_fmt(m, 'ate_rmse_m', 100, '{:.2f}', ' cm')}  "
            f"(SE(3)-aligned, max {_fmt(m, 'ate_max_m', 100, '{:.2f}', ' cm')})"
        )
        w(
            f"  RPE frame-to-frame     {_fmt(m, 'rpe_trans_rmse_m', 1000, '{:.2f}', ' mm')}, "
            f"{_fmt(m, 'rpe_rot_rmse_deg', 1, '{:.3f}', ' deg')}"
        )
    if "map_sdf_rmse_m" in m:
        half_voxel = f" (half a voxel: {500 * cfg.voxel_size_m:.1f} mm)" if cfg is not None else ""
        w(f"  map SDF RMSE           {_fmt(m, 'map_sdf_rmse_m', 1000, '{:.2f}', ' mm')}{half_voxel}")
    if "map_coverage_2sigma" in m:
        w(
            f"  map_coverage_2sigma    {_fmt(m, 'map_coverage_2sigma')}  (ideal 0.954; {m.get('map_eval_voxels')} "
            f"voxels with |SDF| < {_fmt(m, 'map_eval_band_m', 100, '{:.1f}', ' cm')})"
        )
    if "pose_coverage_95" in m:
        w(f"  pose_coverage_95       {_fmt(m, 'pose_coverage_95')}  (ideal 0.95; consecutive relative motions)")
    w(f"  tracking failures      {m.get('tracking_failures')}")
    w(
        f"  speed                  {_fmt(m, 'fps', 1, '{:.1f}')} fps filter, {_fmt(m, 'fps_total', 1, '{:.1f}')} fps "
        f"with loading (warm-up {_fmt(m, 'warmup_s', 1, '{:.1f}', ' s')} excluded)"
    )
    if m.get("cpu_ms_per_frame") is not None:
        stolen = m.get("cpu_steal_fraction")
        w(
            f"  CPU                    {m['cpu_ms_per_frame']:.1f} ms a frame on "
            f"{m.get('cpu_cores_used') or 0:.2f} cores"
            + (f" ({100 * stolen:.0f} % of the machine taken by the hypervisor meanwhile)" if stolen else "")
        )
    st = m.get("stage_ms") or {}
    if st:
        w("  median stage ms        " + ", ".join(f"{k} {v:.1f}" for k, v in st.items()))
    w(
        f"  map                    {m.get('map_blocks')} blocks, {_fmt(m, 'map_memory_mb', 1, '{:.0f}', ' MB')}; "
        f"peak RSS {_fmt(m, 'peak_rss_mb', 1, '{:.0f}', ' MB')}"
    )
    if os.path.isfile(os.path.join(out_dir, "groundtruth.tum")):
        w(
            f"  check with             evo_ape tum {os.path.join(out_dir, 'groundtruth.tum')} "
            f"{os.path.join(out_dir, 'trajectory.tum')} -a"
        )


def _run(dataset_path: str, start: int, frames: Optional[int], out: Optional[str], args, parser) -> int:
    cfg = config_from_args(args, parser)
    from prism_ros.datasets import open_dataset

    kw = {}
    calib = getattr(args, "calib", None)
    if calib is not None:
        from prism_ros.datasets import EurocBagDataset, detect_format

        found = detect_format(dataset_path) if os.path.exists(dataset_path) else None
        if found is None or found[1] is not EurocBagDataset:
            parser.error(
                f"--calib applies only to EuRoC ROS 1 bags (/cam0/image_raw, /cam1/image_raw); "
                f"{dataset_path!r} is not one"
            )
        if not os.path.isdir(calib):
            parser.error(f"--calib: no such folder: {calib}")
        kw["calib"] = calib
    matcher = getattr(args, "stereo_matcher", None)
    if matcher is not None:
        from prism_ros.datasets import is_euroc

        if not is_euroc(dataset_path):
            parser.error(f"--stereo-matcher applies only to EuRoC recordings; {dataset_path!r} is not one")
        kw["stereo_matcher"] = matcher
    if "depth_min_m" in dict(args.set or []) and os.path.exists(dataset_path):
        from prism_ros.datasets import is_euroc

        if is_euroc(dataset_path):  # --set depth_min_m: the stereo search reaches it too
            kw["depth_min_m"] = cfg.depth_min_m
    try:
        ds = open_dataset(dataset_path, start=start, frames=frames, **kw)
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:
        parser.error(f"cannot open dataset {dataset_path!r}: {e}")
    if len(ds) == 0:
        parser.error(f"dataset {dataset_path!r} has no frames from --start {start}")
    if getattr(args, "stride", 1) > 1:
        from prism_ros.datasets.stride import StridedDataset

        ds = StridedDataset(ds, args.stride)
    cfg = apply_dataset_hints(cfg, ds, args)
    out_dir = out or os.path.join("prism_out", str(ds.name).replace(os.sep, "_"))
    # run (the product) -> evaluate (the harness) -> write (both)
    from prism_ros.eval.evaluate import evaluate, write_evaluation
    from prism_ros.tools import runner

    os.makedirs(out_dir, exist_ok=True)
    result = runner.run(ds, cfg, progress=not args.no_progress, dataset_controls=not getattr(args, "no_imu", False))
    ev = evaluate(result)
    written = runner.write_outputs(result, out_dir)
    m = write_evaluation(result, ev, out_dir, written, report=not args.no_report)
    print_summary(m, out_dir, cfg)
    return 0


def _cmd_demo(args, parser) -> int:
    return _run("synthetic", 0, args.frames, args.out, args, parser)


def _cmd_run(args, parser) -> int:
    return _run(args.path, args.start, args.frames, args.out, args, parser)


def _run_lazy(name: str, rest: List[str]) -> int:
    mod_name, fn_name, _ = LAZY_COMMANDS[name]
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        missing = getattr(e, "name", "") or ""
        if missing.split(".")[0] in ("rclpy", "rosbags") or missing.endswith("_msgs") or missing.startswith("rmw"):
            print(
                f"prism-ros {name}: needs ROS 2 Python packages ({e}).\n"
                f"  install them with: pip install '.[ros]'  (or source a ROS 2 installation)",
                file=sys.stderr,
            )
        else:
            print(f"prism-ros {name}: not available ({e})", file=sys.stderr)
        return 1
    rc = getattr(mod, fn_name)(list(rest))
    return int(rc or 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LAZY_COMMANDS:
        return _run_lazy(argv[0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args, parser) or 0)
    except KeyboardInterrupt:
        print("prism-ros: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
