"""The worker side of ``prism-ros bench``: what a child process records over the frames, and the PRISM worker.

A worker takes a spec (``path``, ``start``, ``frames``, ``config_path``, ``progress``, optionally
``peer_params``) and returns :meth:`WorkerRun.result` (figures: :mod:`prism_ros.eval.bench`); peers' workers
live in :mod:`prism_ros.eval.peers`.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np

from prism_ros.stats import CpuMeter, summarize_stages

__all__ = ["WorkerRun", "run_prism", "finite"]


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


def finite(x: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    if isinstance(x, np.ndarray):
        return finite(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


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


class WorkerRun:
    """What a worker records over the frames, and the result dict: ``setup_done()`` after the first frame's set-up
    (off the clock), then per frame ``loaded(t0, t1)`` and ``stepped(...)``; ``skip(i)`` for unusable frames.
    """

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


def run_prism(spec: Dict[str, Any]) -> Dict[str, Any]:
    """PRISM through the same pipeline as ``prism-ros run`` (controls included: EuRoC's IMU)."""
    from prism_ros.config import PrismConfig
    from prism_ros.datasets import open_dataset
    from prism_ros.pipeline import Recorder, run_dataset

    cfg = PrismConfig.from_yaml(spec["config_path"])
    ds = open_dataset(spec["path"], start=spec["start"], frames=spec["frames"])
    run = WorkerRun("prism", len(ds), spec.get("progress", True))
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
