"""Fit the reported pose uncertainty's constants on runs with accurate ground truth, and replay them.

The reported covariances (:mod:`prism_ros.core.uncertainty`) do not change the trajectory: the error model reads the
filter's per-frame quantities (the tracker's posterior and data Hessian, its residual level, the step) and propagates
an error state from them.  One run per data set therefore serves any set of constants:

* :func:`record` runs the filter once with the model's inputs traced (:attr:`PoseErrorModel.trace`);
* :func:`replay` gives the error state (``error_cov``, ``error_transition``) under other
  :class:`~prism_ros.core.uncertainty.ErrorModelConstants`, exactly as the filter would have reported it;
* :func:`figures` the calibration per lag (:func:`prism_ros.eval.calibration.lag_calibration`) over a frame range;
* :func:`fit` minimises the mean :func:`calibration_loss` over the chosen constants (Nelder-Mead on their logarithms),
  from the shipped constants.

Command line (docs/uncertainty.md, "The fit")::

    python -m prism_ros.eval.error_fit --fit DATA[#first-last] ... [--hold DATA[#first-last] ...]
        [--free white_scale,sys_trans_m,...] [--iterations 900] [--out constants.json]

``DATA`` is anything ``prism-ros run`` reads, with the dataset's configuration hints; ``#first-last`` counts only the
windows inside frames first..last-1 (the run stops after the last range's end: the filter is causal, so its state
there is a whole run's).  It prints coverage95 / NEES median / tail fraction per lag, with the shipped and with the
fitted constants.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from prism_ros.core.uncertainty import ErrorModelConstants, PoseErrorModel, lag_covariances
from prism_ros.eval.calibration import CHI2_50_6DOF, LAGS, lag_calibration

__all__ = ["ErrorTrace", "record", "replay", "figures", "calibration_loss", "fit", "main"]

#: constants kept in (0, 1): fitted on their logit, the others on their logarithm
_UNIT = ("sys_corr", "map_feedback")


@dataclass
class ErrorTrace:
    """One run's error-model calls (a start or an update per processed frame, and the resets between), and per
    processed frame its index in the data set, pose, ground truth (NaN where there is none) and tracking flag."""

    name: str
    inputs: List[dict]
    index: np.ndarray
    T_est: np.ndarray
    T_gt: np.ndarray
    tracked: np.ndarray
    patch_px: float


def record(dataset, cfg) -> ErrorTrace:
    """Run the filter over ``dataset`` with configuration ``cfg`` once, tracing the error model's inputs."""
    from prism_ros.tools import runner

    inputs: List[dict] = []

    def trace(pipe) -> None:
        pipe.filter.errors.trace = inputs

    r = runner.run(dataset, cfg, progress=False, on_ready=trace)
    rec = r.recorder
    steps = sum(x["kind"] != "reset" for x in inputs)
    if steps != len(rec):
        raise RuntimeError(f"{dataset.name}: {steps} error-model steps for {len(rec)} frames")
    T_gt = np.stack([np.full((4, 4), np.nan) if g is None else g for g in rec.T_gt])
    tracked = np.asarray(rec.tracking_ok)
    return ErrorTrace(dataset.name, inputs, np.asarray(rec.index), r.T_est, T_gt, tracked, float(cfg.laplace_patch_px))


def replay(trace: ErrorTrace, constants: ErrorModelConstants) -> Tuple[np.ndarray, np.ndarray]:
    """(error_cov, error_transition), (N, 12, 12) each: the error model over ``trace`` with ``constants``."""
    model = PoseErrorModel(trace.patch_px, constants)
    P, F = [], []
    for x in trace.inputs:
        if x["kind"] == "reset":
            model.reset()
            continue
        if x["kind"] == "start":
            r = model.start(x["pose_cov"], x["lost"])
        else:
            tr = None if x["tr"] is None else SimpleNamespace(**x["tr"])
            r = model.update(x["T_prev"], x["T_new"], tr, x["fresh"], x["lost_cov"], x["controlled"])
        P.append(r.error_cov)
        F.append(r.error_transition)
    return np.stack(P), np.stack(F)


def figures(
    trace: ErrorTrace, constants: ErrorModelConstants, frames: Optional[Tuple[int, int]] = None, lags=LAGS
) -> Dict[int, Dict[str, float]]:
    """Calibration per lag of ``trace`` under ``constants``: the windows whose frames all lie in ``frames`` (first,
    last + 1: the data set's frame indices; default all), were tracked and have ground truth."""
    P, F = replay(trace, constants)
    have_gt = np.isfinite(trace.T_gt).all(axis=(1, 2))
    valid = trace.tracked.astype(bool) & have_gt
    if frames is not None:
        valid &= (trace.index >= frames[0]) & (trace.index < frames[1])
    T_gt = np.where(have_gt[:, None, None], trace.T_gt, np.eye(4))
    out = {}
    for k in lags:
        if len(trace.T_est) > k:
            out[k] = lag_calibration(trace.T_est, T_gt, lag_covariances(trace.T_est, P, F, k), k, valid)
    return out


def calibration_loss(figs: Dict[int, Dict[str, float]]) -> float:
    """The fit's loss over the lags of :func:`figures`: per lag, coverage95's distance from 0.95 in units of 0.03, the
    log NEES median's from log 5.35 in units of log 1.5 and the tail fraction in units of 0.02, squared and summed
    (0: calibrated).  A lag without windows adds nothing."""
    loss = 0.0
    for f in figs.values():
        if f.get("pairs", 0) == 0:
            continue
        loss += ((f["coverage95"] - 0.95) / 0.03) ** 2
        loss += (math.log(max(f["nees_median"], 1e-12) / CHI2_50_6DOF) / math.log(1.5)) ** 2
        loss += (f["nees_tail_frac"] / 0.02) ** 2
    return loss


def _to_params(c: ErrorModelConstants, free: Sequence[str]) -> np.ndarray:
    v = [getattr(c, n) for n in free]
    return np.array([math.log(x / (1.0 - x)) if n in _UNIT else math.log(x) for n, x in zip(free, v)])


def _from_params(p: np.ndarray, free: Sequence[str], base: ErrorModelConstants) -> ErrorModelConstants:
    v = {n: float(1.0 / (1.0 + math.exp(-x)) if n in _UNIT else math.exp(x)) for n, x in zip(free, p)}
    return dataclasses.replace(base, **v)


def fit(
    data: Sequence[Tuple[ErrorTrace, Optional[Tuple[int, int]]]],
    free: Sequence[str],
    start: Optional[ErrorModelConstants] = None,
    iterations: int = 900,
) -> Tuple[ErrorModelConstants, float]:
    """(constants, loss): the ``free`` constants that minimise the mean :func:`calibration_loss` over ``data`` =
    (trace, frames) pairs, each data set weighing the same; the others stay at ``start`` (default: the shipped)."""
    from scipy.optimize import minimize

    start = start or ErrorModelConstants()
    bad = [n for n in free if not hasattr(start, n)]
    if bad:
        raise ValueError(f"not constants of the error model: {bad}")

    def loss(p) -> float:
        c = _from_params(p, free, start)
        return float(np.mean([calibration_loss(figures(t, c, fr)) for t, fr in data]))

    opts = dict(maxfev=int(iterations), xatol=1e-3, fatol=1e-3, adaptive=True)
    r = minimize(loss, _to_params(start, free), method="Nelder-Mead", options=opts)
    return _from_params(r.x, free, start), float(r.fun)


def _spec(text: str) -> Tuple[str, Optional[Tuple[int, int]]]:
    path, _, rng = text.partition("#")
    if not rng:
        return path, None
    a, _, b = rng.partition("-")
    return path, (int(a), int(b))


def _table(title: str, rows, c: ErrorModelConstants) -> None:
    print(title)
    width = max((len(label) for label, _, _ in rows), default=0)
    for label, t, fr in rows:
        figs = figures(t, c, fr)
        cells = [
            f"lag {k}: {f['coverage95']:.2f} / {f['nees_median']:.1f} / {f['nees_tail_frac']:.2f}"
            for k, f in figs.items()
            if f.get("pairs")
        ]
        print(f"  {label:{width}s} loss {calibration_loss(figs):7.2f}  " + "  ".join(cells))


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prism_ros.eval.error_fit", description=__doc__.split("\n")[0])
    ap.add_argument("--fit", nargs="+", required=True, metavar="DATA[#first-last]", help="data sets to fit on")
    ap.add_argument("--hold", nargs="*", default=[], metavar="DATA[#first-last]", help="data sets to report only")
    ap.add_argument(
        "--free",
        default="white_scale,sys_trans_m,sys_rot_rad,sys_trans_per_rad,sys_rot_per_rad,pred_trans_m,pred_rot_rad",
        help="comma-separated constants to fit",
    )
    ap.add_argument("--iterations", type=int, default=900, help="loss evaluations (Nelder-Mead)")
    ap.add_argument("--out", help="write the fitted constants (JSON) here")
    a = ap.parse_args(argv)
    from prism_ros.config import PrismConfig
    from prism_ros.datasets import open_dataset
    from prism_ros.pipeline import apply_dataset_hints

    traces: Dict[str, ErrorTrace] = {}
    rows = {}
    ends: Dict[str, Optional[int]] = {}  # per data set: the frames to run (None: all)
    for text in a.fit + a.hold:
        path, fr = _spec(text)
        ends[path] = None if fr is None or ends.get(path, 0) is None else max(fr[1], ends.get(path, 0))
    for role in ("fit", "hold"):
        rows[role] = []
        for text in getattr(a, role):
            path, fr = _spec(text)
            if path not in traces:
                ds = open_dataset(path, frames=ends[path])
                print(f"recording {ds.name} ({len(ds)} frames)", file=sys.stderr)
                traces[path] = record(ds, apply_dataset_hints(PrismConfig.from_yaml(), ds)[0])
            rows[role].append((text, traces[path], fr))
    shipped = ErrorModelConstants()
    _table("shipped constants", rows["fit"] + rows["hold"], shipped)
    free = [n.strip() for n in a.free.split(",") if n.strip()]
    c, loss = fit([(t, fr) for _, t, fr in rows["fit"]], free, shipped, a.iterations)
    _table(f"fitted ({', '.join(free)}): mean loss on the fit data {loss:.2f}", rows["fit"] + rows["hold"], c)
    print(json.dumps({n: getattr(c, n) for n in free}, indent=1))
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(c), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
