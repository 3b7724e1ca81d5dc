"""``prism-ros bench``: throughput, per-stage timings, peak memory and accuracy.

::

    prism-ros bench PATH [--frames N] [--start K] [--config YAML] [--set NAME=VALUE ...]
                         [--peer open3d] [--json OUT] [--no-progress]

Each system runs in a child process of its own
(``python -m prism_ros.eval.bench --worker prism|open3d SPEC RESULT``, :mod:`prism_ros.eval.bench_worker`) so that its
peak RSS is its own; both read the same frames through :func:`prism_ros.datasets.open_dataset` and start at the first
frame's ground-truth pose.

Figures per system (also written with ``--json``): ``fps`` (frames / summed wall time of the per-frame SLAM calls,
loading excluded), ``fps_total`` (frames / wall clock of the frame loop from the first step, loading included),
``cpu_ms_per_frame``, ``cpu_cores_used``, ``cpu_steal_fraction`` (:class:`prism_ros.stats.CpuMeter`), per-stage median
and p95 ms, ``peak_rss_mb`` (the child's ``ru_maxrss``, MiB) and ``ate_rmse_m`` (SE(3)-aligned).  ``--peer open3d`` adds
Open3D's tensor dense SLAM (:mod:`prism_ros.eval.peers.open3d_peer`) and the ratios.  Definitions: docs/benchmarks.md.

Exit codes: 0 success, 1 a child failed, 2 bad arguments or a missing peer (the optional ``peer`` extra).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from prism_ros.eval.bench_worker import finite, run_prism
from prism_ros.eval.peers import PEER_WORKERS, PEERS
from prism_ros.eval.peers.open3d_peer import OPEN3D_DEFAULTS
from prism_ros.stats import cpu_model, summarize_stages

__all__ = ["main", "build_parser", "machine_info", "summarize_stages", "PEERS", "OPEN3D_DEFAULTS", "TARGETS"]

#: Speed and memory targets on 7-Scenes redkitchen frames 0-299 (printed as a checklist; they do not change the
#: exit code).
TARGETS: Dict[str, Any] = {"fps": 30.0, "fps_total": 25.0, "fps_ratio": 3.0, "peak_rss_bytes": 1.1e9}


def machine_info() -> Dict[str, Any]:
    """What the figures were measured on (parent-side; the children add their thread counts)."""
    info: Dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
    }
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        info["cpus_usable"] = os.cpu_count()
    try:
        import psutil

        info["memory_total_gb"] = psutil.virtual_memory().total / 1e9
        info["cpu_freq_mhz"] = getattr(psutil.cpu_freq(), "max", None) or getattr(psutil.cpu_freq(), "current", None)
    except Exception:
        pass
    try:
        import numba

        info["numba"] = numba.__version__
        info["numba_num_threads"] = int(numba.config.NUMBA_NUM_THREADS)
    except Exception:  # pragma: no cover
        pass
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover
        pass
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_THREADING_LAYER"):
        if os.environ.get(var):
            info[var] = os.environ[var]
    return info


# ----------------------------------------------------------------------------- workers (child processes)
WORKERS = {"prism": run_prism, **PEER_WORKERS}


def _worker_main(argv: Sequence[str]) -> int:
    """``python -m prism_ros.eval.bench --worker NAME SPEC.json RESULT.json``"""
    name, spec_path, out_path = argv
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    res = WORKERS[name](spec)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(finite(res), f)
    return 0


# ----------------------------------------------------------------------------- parent
def _child_env() -> Dict[str, str]:
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pp = env.get("PYTHONPATH", "")
    parts = [x for x in pp.split(os.pathsep) if x]
    if pkg_parent not in parts:
        env["PYTHONPATH"] = os.pathsep.join([pkg_parent] + parts)
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _probe_module(module: str, timeout: float = 120.0) -> Tuple[Optional[str], str]:
    """Import ``module`` in a fresh interpreter (the children's environment): (version or None, error text)."""
    code = f"import {module} as m; print(getattr(m, '__version__', '?'))"
    try:
        r = subprocess.run(
            [sys.executable, "-c", code], env=_child_env(), capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr or "").strip().splitlines() if ln.strip()]
        return None, (lines[-1] if lines else f"exit code {r.returncode}")
    return (r.stdout.strip().splitlines() or ["?"])[-1], ""


def _run_child(name: str, spec: Dict[str, Any], tmp: str) -> Dict[str, Any]:
    spec_path = os.path.join(tmp, f"{name}.spec.json")
    out_path = os.path.join(tmp, f"{name}.result.json")
    with open(spec_path, "w", encoding="utf-8") as f:
        json.dump(spec, f)
    cmd = [sys.executable, "-m", "prism_ros.eval.bench", "--worker", name, spec_path, out_path]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=_child_env())
    wall = time.perf_counter() - t0
    if r.returncode != 0 or not os.path.isfile(out_path):
        raise RuntimeError(f"{name} child process failed (exit code {r.returncode})")
    with open(out_path, encoding="utf-8") as f:
        res = json.load(f)
    res["child_wall_s"] = wall
    return res


def build_parser() -> argparse.ArgumentParser:
    from prism_ros.tools.args import add_config_arguments, nonneg_int, pos_int

    p = argparse.ArgumentParser(
        prog="prism-ros bench",
        description="Benchmark PRISM (and optionally a peer system) on a dataset: per-stage median/p95 ms, "
        "FPS, peak RSS and ATE; each system runs in a child process of its own.",
    )
    p.add_argument("path", metavar="PATH", help="dataset folder (TUM RGB-D or 7-Scenes layout, or 'synthetic')")
    p.add_argument("--frames", metavar="N", type=pos_int, default=300, help="number of frames (default: %(default)s)")
    p.add_argument("--start", metavar="K", type=nonneg_int, default=0, help="first frame (default: 0)")
    add_config_arguments(p)
    p.add_argument(
        "--peer",
        choices=sorted(PEERS),
        default=None,
        help="also run this peer system on the same frames (optional dependency group 'peer')",
    )
    p.add_argument("--json", metavar="OUT", default=None, help="write all figures to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    return p


def _f(v: Any, fmt: str = "{:.1f}", scale: float = 1.0) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return fmt.format(v * scale if scale != 1.0 else v)


def _ratio(a: Any, b: Any) -> Optional[float]:
    try:
        return float(a) / float(b) if a is not None and b not in (None, 0) else None
    except (TypeError, ZeroDivisionError):
        return None


def _stage_table(res: Dict[str, Any], w) -> None:
    w(f"  {'stage':<14}{'median ms':>11}{'p95 ms':>10}{'mean ms':>10}{'frames':>8}")
    for k, s in (res.get("stages_ms") or {}).items():
        w(f"  {k:<14}{s['median']:>11.2f}{s['p95']:>10.2f}{s['mean']:>10.2f}{s['n']:>8d}")
    step = res.get("per_frame", {}).get("step_ms") or []
    load = res.get("per_frame", {}).get("load_ms") or []
    if step:
        w(
            f"  {'(step wall)':<14}{np.median(step):>11.2f}{np.percentile(step, 95):>10.2f}"
            f"{np.mean(step):>10.2f}{len(step):>8d}"
        )
    if load:
        w(
            f"  {'(loading)':<14}{np.median(load):>11.2f}{np.percentile(load, 95):>10.2f}"
            f"{np.mean(load):>10.2f}{len(load):>8d}"
        )


def print_report(doc: Dict[str, Any], file=None) -> None:
    file = file or sys.stdout
    w = lambda s="": print(s, file=file)  # noqa: E731
    m = doc["machine"]
    a = doc["args"]
    pr = doc["prism"]
    peer = doc.get("peer")
    w(
        f"prism-ros bench: {a['dataset']}, frames {a['start']}..{a['start'] + pr['frames'] + pr['frames_skipped'] - 1}"
        f" ({pr['frames']} processed), {a['width']}x{a['height']}"
    )
    w(
        f"machine: {m.get('cpu_model')}; {m.get('cpus_usable')} of {m.get('cpu_count')} CPUs usable; "
        f"{_f(m.get('memory_total_gb'), '{:.0f}')} GB RAM; load average {m.get('load_average')}"
    )
    w(
        f"         Python {m.get('python')}, numpy {m.get('numpy')}, numba {m.get('numba')} "
        f"({pr.get('numba_threads', m.get('numba_num_threads'))} threads, {pr.get('numba_threading_layer', '?')} layer)"
        + (f", Open3D {peer.get('open3d')} (OpenMP threads {peer.get('omp_threads')})" if peer else "")
    )
    w(f"         {m.get('platform')}")
    ch = doc.get("config_changes")
    if ch is not None:
        w(
            "parameters: the defaults (config/prism.yaml)"
            + (" except " + ", ".join(f"{k}={v}" for k, v in ch.items()) if ch else "")
        )
    w()
    w(f"PRISM per-stage timings ({pr['frames']} frames; warm-up {_f(pr.get('warmup_s'), '{:.1f}')} s excluded)")
    _stage_table(pr, w)
    if peer:
        w()
        w(
            f"Open3D {peer.get('open3d')} tensor SLAM per-stage timings ({peer['frames']} frames, CPU, "
            f"{100 * peer['params']['voxel_size']:.0f} cm voxels)"
        )
        _stage_table(peer, w)
    w()
    cols = ["PRISM"] + (["Open3D", "PRISM/Open3D"] if peer else [])
    w(f"  {'':<22}" + "".join(f"{c:>14}" for c in cols))

    def row(label: str, key: str, fmt: str, scale: float = 1.0, ratio: bool = True) -> None:
        vals = [_f(pr.get(key), fmt, scale)]
        if peer:
            vals += [_f(peer.get(key), fmt, scale), _f(_ratio(pr.get(key), peer.get(key)), "{:.2f}x") if ratio else ""]
        w(f"  {label:<22}" + "".join(f"{v:>14}" for v in vals))

    row("FPS (filter)", "fps", "{:.2f}")
    row("FPS (with loading)", "fps_total", "{:.2f}")
    row("step ms (mean)", "step_ms_mean", "{:.1f}")
    row("CPU ms a frame", "cpu_ms_per_frame", "{:.1f}")
    row("peak RSS MiB", "peak_rss_mb", "{:.0f}")
    row("ATE RMSE cm", "ate_rmse_m", "{:.2f}", 100.0)
    row("ATE max cm", "ate_max_m", "{:.2f}", 100.0)
    row("tracking failures", "tracking_failures", "{:d}", ratio=False)
    row("map blocks", "map_blocks", "{:d}", ratio=False)
    row("controls used (IMU)", "controls_used", "{:d}", ratio=False)
    row("setup s", "setup_s", "{:.1f}", ratio=False)
    if pr.get("peak_rss_after_setup_mb") is not None:
        w(
            f"  (PRISM peak RSS after set-up and warm-up: {pr['peak_rss_after_setup_mb']:.0f} MiB; "
            f"map {_f(pr.get('map_memory_mb'), '{:.0f}')} MiB)"
        )
    if peer and peer.get("tracking_errors"):
        w(f"  (Open3D tracking errors: {'; '.join(peer['tracking_errors'])})")
    t = doc.get("targets") or {}
    if t:
        w()
        w("targets (7-Scenes redkitchen 0-299; for information, the exit code ignores them):")
        for k, v in t.items():
            w(f"  {'met ' if v['met'] else 'MISS'} {k:<34} {v['value']}")


def _targets(pr: Dict[str, Any], peer: Optional[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    t: Dict[str, Dict[str, Any]] = {}

    def add(label: str, value: Optional[float], ok: Optional[bool], shown: str) -> None:
        if value is not None and ok is not None:
            t[label] = {"met": bool(ok), "value": shown}

    fps, fpt, rss = pr.get("fps"), pr.get("fps_total"), pr.get("peak_rss_bytes")
    add(f"fps >= {TARGETS['fps']:g}", fps, fps is not None and fps >= TARGETS["fps"], _f(fps, "{:.2f}"))
    add(
        f"fps_total >= {TARGETS['fps_total']:g}",
        fpt,
        fpt is not None and fpt >= TARGETS["fps_total"],
        _f(fpt, "{:.2f}"),
    )
    if peer:
        r = _ratio(fps, peer.get("fps"))
        add(
            f"fps >= {TARGETS['fps_ratio']:g} x peer fps",
            r,
            r is not None and r >= TARGETS["fps_ratio"],
            _f(r, "{:.2f}x"),
        )
    add(
        "peak RSS <= 1.1 GB (1.1e9 bytes)",
        rss,
        rss is not None and rss <= TARGETS["peak_rss_bytes"],
        _f(rss, "{:.3f} GB", 1e-9),
    )
    return t


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)

    from prism_ros.datasets import open_dataset
    from prism_ros.tools.args import apply_dataset_hints, config_from_args
    from prism_ros.tools.runner import write_config_yaml

    cfg = config_from_args(args, parser)  # exits 2 on a bad configuration
    try:
        ds = open_dataset(args.path, start=args.start, frames=args.frames)
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:
        parser.error(f"cannot open dataset {args.path!r}: {e}")
    if len(ds) == 0:
        parser.error(f"dataset {args.path!r} has no frames from --start {args.start}")
    cfg = apply_dataset_hints(cfg, ds, args)  # the same parameters as `prism-ros run`

    peer_version = None
    if args.peer:
        module, hint = PEERS[args.peer]
        peer_version, err = _probe_module(module)
        if peer_version is None:
            print(
                f"prism-ros bench: --peer {args.peer} needs the Python package '{module}', which cannot be "
                f"imported here ({err}).\nInstall the optional peer dependencies with:\n{hint}",
                file=sys.stderr,
            )
            return 2

    machine = machine_info()
    doc: Dict[str, Any] = {
        "machine": machine,
        "args": {
            "dataset": str(ds.name),
            "path": os.path.abspath(args.path) if os.path.exists(args.path) else args.path,
            "start": args.start,
            "frames": args.frames,
            "width": ds.camera.width,
            "height": ds.camera.height,
            "config": args.config,
            "set": {k: v for k, v in (args.set or [])},
            "peer": args.peer,
        },
    }
    try:
        with tempfile.TemporaryDirectory(prefix="prism_bench_") as tmp:
            cfg_path = os.path.join(tmp, "config.yaml")
            write_config_yaml(cfg_path, cfg)
            spec = {
                "path": args.path,
                "start": args.start,
                "frames": args.frames,
                "config_path": cfg_path,
                "progress": not args.no_progress,
            }
            if not args.no_progress:
                print(
                    f"prism-ros bench: running PRISM on {len(ds)} frames in a child process ...",
                    file=sys.stderr,
                    flush=True,
                )
            doc["prism"] = _run_child("prism", spec, tmp)
            doc["peer"] = None
            if args.peer:
                if not args.no_progress:
                    print(
                        f"prism-ros bench: running {args.peer} {peer_version} on the same frames ...",
                        file=sys.stderr,
                        flush=True,
                    )
                doc["peer"] = _run_child(args.peer, spec, tmp)
    except RuntimeError as e:
        print(f"prism-ros bench: {e}", file=sys.stderr)
        return 1
    doc["config"] = cfg.to_dict()
    try:
        from prism_ros.config import PrismConfig

        base = PrismConfig.from_yaml().to_dict()
        doc["config_changes"] = {k: v for k, v in doc["config"].items() if base.get(k) != v}
    except Exception:  # an unreadable default file: the full config is still recorded
        doc["config_changes"] = None
    pr, peer = doc["prism"], doc["peer"]
    if peer:
        doc["ratios"] = {
            "fps": _ratio(pr.get("fps"), peer.get("fps")),
            "fps_total": _ratio(pr.get("fps_total"), peer.get("fps_total")),
            "peak_rss": _ratio(pr.get("peak_rss_bytes"), peer.get("peak_rss_bytes")),
            "ate": _ratio(pr.get("ate_rmse_m"), peer.get("ate_rmse_m")),
        }
    doc["targets"] = _targets(pr, peer)
    print_report(doc)
    if peer:
        r = doc["ratios"]
        print(
            f"\nratios PRISM/{args.peer}: FPS {_f(r['fps'], '{:.2f}x')}, FPS with loading "
            f"{_f(r['fps_total'], '{:.2f}x')}, peak RSS {_f(r['peak_rss'], '{:.2f}x')}, ATE {_f(r['ate'], '{:.2f}x')}"
        )
    if args.json:
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(finite(doc), f, indent=2)
            f.write("\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2:]))
    sys.exit(main())
