"""``prism-ros bench``: throughput, per-stage timings, peak memory and accuracy.

::

    prism-ros bench PATH [--frames N] [--start K] [--config YAML] [--set NAME=VALUE ...]
                         [--peer open3d] [--json OUT] [--no-progress]

Each system runs in a **child process of its own** (``python -m
prism_ros.eval.bench --worker prism|open3d SPEC RESULT``) so that its peak
resident set size (``ru_maxrss`` of the child, read after its run: Numba
compilation, the map and all frames) is its own and not the parent's, nor the
other system's.  Both children read the same frames through the same
:func:`prism_ros.datasets.open_dataset` reader and start at the ground-truth pose
of the first frame.

Figures (per system, also written with ``--json``):

* ``fps``: frames / the summed wall time of the per-frame SLAM calls
  (``PrismFilter.step``; for Open3D ``track_frame_to_model`` + ``integrate`` +
  ``synthesize_model_frame``), image loading excluded;
* ``fps_total``: frames / wall clock of the whole frame loop, loading included,
  from the first step on (the first frame's loading and the set-up, Numba
  warm-up included, are excluded, as in ``metrics.json`` of ``prism-ros run``).
  PRISM's loop (:func:`prism_ros.pipeline.run_dataset`) loads two frames ahead in a
  background thread, as ``prism-ros run`` does; the peer loads in its loop;
* ``cpu_ms_per_frame`` (user + system CPU of the child over the same loop, all threads),
  ``cpu_cores_used``, ``cpu_steal_fraction`` (:class:`prism_ros.stats.CpuMeter`): on a
  shared virtual machine the FPS fall while the hypervisor runs other guests, the CPU
  time per frame does not;
* per-stage median and p95 milliseconds (``StepResult.timings_ms`` for PRISM);
* ``peak_rss_mb``: the child's peak RSS in MiB (``ru_maxrss``);
* ``ate_rmse_m``: ATE RMSE after SE(3) (Umeyama) alignment, like ``evo_ape -a``.

``--peer open3d`` runs Open3D's tensor dense SLAM (``open3d.t.pipelines.slam``,
frame-to-model) on the CPU with the defaults of Open3D's
``examples/python/t_reconstruction_system`` (``depth_scale`` 1000 on uint16
millimetres, ``depth_min`` 0.1 m, ``depth_max`` 3.0 m,
``odometry_distance_thr`` 0.07 m, ``trunc_voxel_multiplier`` 8, block
resolution 16, 40000 blocks) and 2 cm voxels, and prints the ratios.  It needs
the optional ``peer`` extra (``pip install 'prism_ros[peer]'``) and, on Debian,
``apt-get install libusb-1.0-0``; without them it exits with code 2.

Exit codes: 0 success, 1 a child failed, 2 bad arguments or a missing peer.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from prism_ros.stats import CpuMeter, cpu_model, summarize_stages

__all__ = ["main", "build_parser", "machine_info", "summarize_stages", "PEERS", "OPEN3D_DEFAULTS", "TARGETS"]

#: Open3D t_reconstruction_system defaults (default_config.yml / dense_slam.py), voxel size 2 cm.
OPEN3D_DEFAULTS: Dict[str, Any] = {
    "device": "CPU:0",
    "voxel_size": 0.02,
    "block_resolution": 16,
    "block_count": 40000,
    "depth_scale": 1000.0,
    "depth_min": 0.1,
    "depth_max": 3.0,
    "odometry_distance_thr": 0.07,
    "trunc_voxel_multiplier": 8.0,
}

#: peer name -> (module to import, install hint)
PEERS: Dict[str, Tuple[str, str]] = {
    "open3d": (
        "open3d",
        "  pip install 'prism_ros[peer]'     (or: .venv/bin/pip install open3d)\n"
        "  apt-get install -y libusb-1.0-0   (Debian/Ubuntu: the Open3D wheel links against libusb-1.0)",
    ),
}

#: Speed and memory targets on 7-Scenes redkitchen frames 0-299 (printed as a checklist; they do not change the exit code).
TARGETS: Dict[str, Any] = {"fps": 30.0, "fps_total": 25.0, "fps_ratio": 3.0, "peak_rss_bytes": 1.1e9}


# ----------------------------------------------------------------------------- helpers
def _peak_rss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024


def _current_rss_bytes() -> Optional[int]:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # pragma: no cover - psutil is a dependency, but stay robust
        return None


def _mib(b: Optional[float]) -> Optional[float]:
    return None if b is None else float(b) / 2**20


def _finite(x: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, np.ndarray):
        return _finite(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


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


class _Progress:
    def __init__(self, name: str, n: int, enabled: bool):
        self.name, self.n, self.enabled = name, n, enabled
        self.every = max(1, min(50, n // 6 or 1))

    def __call__(self, done: int, step_s: float) -> None:
        if self.enabled and (done % self.every == 0 or done == self.n):
            fps = done / step_s if step_s > 0 else float("nan")
            print(f"  [{self.name}] {done}/{self.n} frames, {fps:.1f} fps", file=sys.stderr, flush=True)


def _accuracy(T_est: List[np.ndarray], T_gt: List[Optional[np.ndarray]]) -> Dict[str, Any]:
    from prism_ros.eval import metrics

    sel = [k for k, g in enumerate(T_gt) if g is not None]
    if len(sel) < 3:
        return {"ate_rmse_m": None, "ate_frames": len(sel)}
    E = np.stack([T_est[k] for k in sel])
    G = np.stack([T_gt[k] for k in sel])
    err = metrics.ate_errors(E, G)
    return {
        "ate_rmse_m": float(metrics.ate_rmse(E, G)),
        "ate_max_m": float(err.max()),
        "ate_frames": len(sel),
    }


class _Run:
    """What a worker records while it runs a system over the frames, and the result dict.

    ``setup_done()`` after the first frame's setup (kernel warm-up, model allocation: off
    the clock), then per frame ``loaded(t0, t1)`` and ``stepped(...)``; ``skip(i)`` for
    frames that could not be used."""

    def __init__(self, name: str, n_total: int, progress: bool):
        self.name = name
        self.prog = _Progress(name, n_total, progress)
        self.setup_s = 0.0
        self.extra: Dict[str, Any] = {}
        self.step_s: List[float] = []
        self.load_s: List[float] = []
        self.rows: List[Dict[str, float]] = []
        self.T_est: List[np.ndarray] = []
        self.T_gt: List[Optional[np.ndarray]] = []
        self.skipped: List[int] = []
        self.failures = 0
        self.t_loop = time.perf_counter()
        self.wall_s: Optional[float] = None  # set by a worker that timed its own loop
        self.started = False
        self.cpu = CpuMeter()
        self.cpu_figures: Optional[Dict[str, Optional[float]]] = None  # set by a worker that metered its own loop

    def setup_done(self, t_setup_start: float) -> None:
        self.setup_s = time.perf_counter() - t_setup_start
        self.extra["peak_rss_after_setup_mb"] = _mib(_peak_rss_bytes())
        self.extra["rss_after_setup_mb"] = _mib(_current_rss_bytes())
        self.started = True
        self.t_loop = time.perf_counter()  # the wall clock for fps_total starts here
        self.cpu.reset()

    def loaded(self, t0: float, t1: float) -> None:
        if self.started:  # the first frame's loading is part of the setup
            self.load_s.append(t1 - t0)

    def skip(self, i: int) -> None:
        self.skipped.append(i)

    def stepped(self, dt_s: float, timings_ms: Dict[str, float], T_est, T_gt, ok: bool) -> None:
        self.step_s.append(dt_s)
        self.rows.append({k: float(v) for k, v in timings_ms.items()})
        self.T_est.append(np.asarray(T_est, dtype=np.float64).copy())
        self.T_gt.append(None if T_gt is None else np.asarray(T_gt, dtype=np.float64))
        self.failures += 0 if ok else 1
        self.prog(len(self.step_s), float(np.sum(self.step_s)))

    def result(self) -> Dict[str, Any]:
        wall_s = self.wall_s if self.wall_s is not None else time.perf_counter() - self.t_loop
        n, step_s, load_s = len(self.step_s), self.step_s, self.load_s
        st = float(np.sum(step_s)) if step_s else 0.0
        res: Dict[str, Any] = {
            "system": self.name,
            "frames": n,
            "frames_skipped": len(self.skipped),
            "skipped_indices": self.skipped,
            "fps": n / st if st > 0 else None,
            "fps_total": n / wall_s if wall_s > 0 else None,
            "step_ms_mean": 1e3 * st / n if n else None,
            "load_ms_mean": 1e3 * float(np.mean(load_s)) if load_s else None,
            "setup_s": self.setup_s,
            "tracking_failures": self.failures,
            **(self.cpu_figures if self.cpu_figures is not None else self.cpu.figures(n)),
            "stages_ms": summarize_stages(self.rows),
            "per_frame": {
                "step_ms": [1e3 * s for s in step_s],
                "load_ms": [1e3 * s for s in load_s],
            },
        }
        res.update(_accuracy(self.T_est, self.T_gt))
        res.update(self.extra)
        peak = _peak_rss_bytes()
        res["peak_rss_bytes"] = peak
        res["peak_rss_mb"] = _mib(peak)
        res["rss_end_mb"] = _mib(_current_rss_bytes())
        return res


# ----------------------------------------------------------------------------- workers (child processes)
def _worker_prism(spec: Dict[str, Any]) -> Dict[str, Any]:
    """PRISM through the same pipeline as ``prism-ros run`` (controls included: EuRoC's IMU)."""
    from prism_ros.config import PrismConfig
    from prism_ros.datasets import open_dataset
    from prism_ros.pipeline import Recorder, run_dataset

    cfg = PrismConfig.from_yaml(spec["config_path"])
    ds = open_dataset(spec["path"], start=spec["start"], frames=spec["frames"])
    run = _Run("prism", len(ds), spec.get("progress", True))
    extra = run.extra
    rec = Recorder()
    pipe, rs = run_dataset(ds, cfg, [rec], progress=False, log=lambda msg: None)
    filt = pipe.filter
    run.setup_s, run.wall_s, run.skipped = rs.setup_s, rs.wall_s, rs.skipped
    run.cpu_figures = rs.cpu  # run_dataset's loop (set-up and warm-up excluded)
    run.step_s, run.load_s = [ms * 1e-3 for ms in rs.step_ms], [ms * 1e-3 for ms in rs.load_ms]
    run.rows, run.T_est, run.T_gt = rec.timings, rec.T_est, rec.T_gt
    run.failures = int(len(rec) - sum(rec.tracking_ok))
    extra["warmup_s"] = rs.warmup_s
    extra["controls_used"] = rs.controls_used
    extra["peak_rss_after_setup_mb"] = rs.peak_rss_after_setup_mb
    try:
        extra["map_blocks"] = int(filt.map.num_blocks)
        extra["map_memory_mb"] = float(filt.map.memory_bytes) / 2**20
    except Exception:
        pass
    try:
        import numba

        extra["numba_threads"] = int(numba.get_num_threads())
        extra["numba_threading_layer"] = str(numba.threading_layer())
    except Exception:
        pass
    return run.result()


def _worker_open3d(spec: Dict[str, Any]) -> Dict[str, Any]:
    import open3d as o3d
    import open3d.core as o3c

    from prism_ros.datasets import open_dataset
    from prism_ros.datasets.base import FrameLoadError, check_pose

    # Open3D warns once, harmlessly, from the first synthesize_model_frame ("Property not found for
    # color"); tracking failures come back as exceptions, so only errors are printed.
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    p = dict(OPEN3D_DEFAULTS)
    p.update(spec.get("peer_params") or {})
    ds = open_dataset(spec["path"], start=spec["start"], frames=spec["frames"])
    run = _Run("open3d", len(ds), spec.get("progress", True))
    cam = ds.camera
    device = o3c.Device(p["device"])
    K = o3c.Tensor(np.array([[cam.fx, 0.0, cam.cx], [0.0, cam.fy, cam.cy], [0.0, 0.0, 1.0]], dtype=np.float64))
    scale = float(p["depth_scale"])

    def load(i: int):
        fr = ds[i]
        d = np.asarray(fr.depth, dtype=np.float32)
        # metres -> uint16 raw units (mm), 0 stays invalid; anything beyond uint16 is invalid too
        raw = np.rint(d * scale)
        raw[~np.isfinite(raw) | (raw <= 0) | (raw >= 65535)] = 0
        depth = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(raw.astype(np.uint16)))).to(device)
        color = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(fr.rgb, dtype=np.uint8))).to(device)
        return fr, depth, color

    model = None
    input_frame = raycast_frame = None
    T_cur = None
    extra = run.extra
    extra.update({"open3d": o3d.__version__, "params": p})
    errors: List[str] = []
    for i in range(len(ds)):
        t0 = time.perf_counter()
        try:
            fr, depth, color = load(i)
        except FrameLoadError:
            run.skip(i)
            continue
        t1 = time.perf_counter()
        run.loaded(t0, t1)
        gt = None if fr.T_w_c_gt is None else check_pose(fr.T_w_c_gt)
        first = model is None
        if first:
            T0 = np.eye(4) if gt is None else gt
            T_cur = o3c.Tensor(T0)  # float64, camera-to-world (frame-to-model)
            model = o3d.t.pipelines.slam.Model(float(p["voxel_size"]), int(p["block_resolution"]),
                                               int(p["block_count"]), T_cur, device)
            input_frame = o3d.t.pipelines.slam.Frame(cam.height, cam.width, K, device)
            raycast_frame = o3d.t.pipelines.slam.Frame(cam.height, cam.width, K, device)
            run.setup_done(t1)
        tm: Dict[str, float] = {}
        ts = time.perf_counter()
        input_frame.set_data_from_image("depth", depth)
        input_frame.set_data_from_image("color", color)
        ok = True
        if not first:
            t = time.perf_counter()
            try:
                result = model.track_frame_to_model(input_frame, raycast_frame, scale, float(p["depth_max"]),
                                                    float(p["odometry_distance_thr"]))
                T_cur = T_cur @ result.transformation
            except RuntimeError as e:  # e.g. too few correspondences: keep the last pose
                ok = False
                if len(errors) < 5:
                    errors.append(f"frame {i}: {e}")
            tm["track"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        model.update_frame_pose(i, T_cur)
        model.integrate(input_frame, scale, float(p["depth_max"]), float(p["trunc_voxel_multiplier"]))
        tm["integrate"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        model.synthesize_model_frame(raycast_frame, scale, float(p["depth_min"]), float(p["depth_max"]),
                                     float(p["trunc_voxel_multiplier"]), False)
        tm["raycast"] = (time.perf_counter() - t) * 1e3
        dt = time.perf_counter() - ts
        tm["total"] = dt * 1e3
        run.stepped(dt, tm, T_cur.cpu().numpy(), gt, ok)
    if model is None:
        raise RuntimeError(f"{spec['path']}: no readable frame")
    if errors:
        extra["tracking_errors"] = errors
    try:
        extra["map_blocks"] = int(model.voxel_grid.hashmap().size())
    except Exception:
        pass
    try:
        extra["omp_threads"] = int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count()
    except ValueError:
        pass
    return run.result()


WORKERS = {"prism": _worker_prism, "open3d": _worker_open3d}


def _worker_main(argv: Sequence[str]) -> int:
    """``python -m prism_ros.eval.bench --worker NAME SPEC.json RESULT.json``"""
    name, spec_path, out_path = argv
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    res = WORKERS[name](spec)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(_finite(res), f)
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
        r = subprocess.run([sys.executable, "-c", code], env=_child_env(), capture_output=True, text=True,
                           timeout=timeout)
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
    p.add_argument("--peer", choices=sorted(PEERS), default=None,
                   help="also run this peer system on the same frames (optional dependency group 'peer')")
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
        w(f"  {'(step wall)':<14}{np.median(step):>11.2f}{np.percentile(step, 95):>10.2f}{np.mean(step):>10.2f}{len(step):>8d}")
    if load:
        w(f"  {'(loading)':<14}{np.median(load):>11.2f}{np.percentile(load, 95):>10.2f}{np.mean(load):>10.2f}{len(load):>8d}")


def print_report(doc: Dict[str, Any], file=None) -> None:
    file = file or sys.stdout
    w = lambda s="": print(s, file=file)  # noqa: E731
    m = doc["machine"]
    a = doc["args"]
    pr = doc["prism"]
    peer = doc.get("peer")
    w(f"prism-ros bench: {a['dataset']}, frames {a['start']}..{a['start'] + pr['frames'] + pr['frames_skipped'] - 1}"
      f" ({pr['frames']} processed), {a['width']}x{a['height']}")
    w(f"machine: {m.get('cpu_model')}; {m.get('cpus_usable')} of {m.get('cpu_count')} CPUs usable; "
      f"{_f(m.get('memory_total_gb'), '{:.0f}')} GB RAM; load average {m.get('load_average')}")
    w(f"         Python {m.get('python')}, numpy {m.get('numpy')}, numba {m.get('numba')} "
      f"({pr.get('numba_threads', m.get('numba_num_threads'))} threads, {pr.get('numba_threading_layer', '?')} layer)"
      + (f", Open3D {peer.get('open3d')} (OpenMP threads {peer.get('omp_threads')})" if peer else ""))
    w(f"         {m.get('platform')}")
    ch = doc.get("config_changes")
    if ch is not None:
        w("parameters: the defaults (config/prism.yaml)" + (" except " + ", ".join(f"{k}={v}" for k, v in ch.items()) if ch else ""))
    w()
    w(f"PRISM per-stage timings ({pr['frames']} frames; warm-up {_f(pr.get('warmup_s'), '{:.1f}')} s excluded)")
    _stage_table(pr, w)
    if peer:
        w()
        w(f"Open3D {peer.get('open3d')} tensor SLAM per-stage timings ({peer['frames']} frames, CPU, "
          f"{100 * peer['params']['voxel_size']:.0f} cm voxels)")
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
        w(f"  (PRISM peak RSS after set-up and warm-up: {pr['peak_rss_after_setup_mb']:.0f} MiB; "
          f"map {_f(pr.get('map_memory_mb'), '{:.0f}')} MiB)")
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
    add(f"fps_total >= {TARGETS['fps_total']:g}", fpt, fpt is not None and fpt >= TARGETS["fps_total"], _f(fpt, "{:.2f}"))
    if peer:
        r = _ratio(fps, peer.get("fps"))
        add(f"fps >= {TARGETS['fps_ratio']:g} x peer fps", r, r is not None and r >= TARGETS["fps_ratio"], _f(r, "{:.2f}x"))
    add("peak RSS <= 1.1 GB (1.1e9 bytes)", rss, rss is not None and rss <= TARGETS["peak_rss_bytes"],
        _f(rss, "{:.3f} GB", 1e-9))
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
            print(f"prism-ros bench: --peer {args.peer} needs the Python package '{module}', which cannot be "
                  f"imported here ({err}).\nInstall the optional peer dependencies with:\n{hint}", file=sys.stderr)
            return 2

    machine = machine_info()
    doc: Dict[str, Any] = {
        "machine": machine,
        "args": {
            "dataset": str(getattr(ds, "name", args.path)),
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
            spec = {"path": args.path, "start": args.start, "frames": args.frames, "config_path": cfg_path,
                    "progress": not args.no_progress}
            if not args.no_progress:
                print(f"prism-ros bench: running PRISM on {len(ds)} frames in a child process ...",
                      file=sys.stderr, flush=True)
            doc["prism"] = _run_child("prism", spec, tmp)
            doc["peer"] = None
            if args.peer:
                if not args.no_progress:
                    print(f"prism-ros bench: running {args.peer} {peer_version} on the same frames ...",
                          file=sys.stderr, flush=True)
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
        print(f"\nratios PRISM/{args.peer}: FPS {_f(r['fps'], '{:.2f}x')}, FPS with loading "
              f"{_f(r['fps_total'], '{:.2f}x')}, peak RSS {_f(r['peak_rss'], '{:.2f}x')}, ATE {_f(r['ate'], '{:.2f}x')}")
    if args.json:
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(_finite(doc), f, indent=2)
            f.write("\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2:]))
    sys.exit(main())
