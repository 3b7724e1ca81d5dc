"""Evaluation of an offline run against the dataset's ground truth: ``metrics.json``,
``groundtruth*.tum`` and ``report.png``.

``prism-ros run`` / ``demo`` compose run -> evaluate -> write (:func:`run_offline` does all four)::

    run = runner.run(dataset, cfg)                         # the product (prism_ros.tools.runner)
    ev = evaluate(run)                                     # the figures, no files
    written = runner.write_outputs(run, out_dir)           # trajectory*.tum, covariances.npz, map/mesh.ply, config.yaml
    metrics = write_evaluation(run, ev, out_dir, written)  # groundtruth*.tum, metrics.json, report.png

``metrics.json`` holds, in this order: the run's figures; the trajectory's against ground truth (``ate_*``, ``rpe_*``,
``calibration``, ``calibration_body``); the map's own and those of writing it; the map's against an exact SDF
(``map_*``, ``pose_coverage_95``); the process's.  Keys: docs/offline.md, "Outputs".
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np

from prism_ros.core import uncertainty
from prism_ros.datasets.capabilities import HasBodyFrame, HasExactSdf, HasGroundTruthTwists
from prism_ros.eval import calibration, metrics
from prism_ros.stats import cpu_model
from prism_ros.tools import export, runner
from prism_ros.tools.runner import OfflineRun

__all__ = ["Evaluation", "evaluate", "metrics_document", "write_evaluation", "run_offline"]


@dataclass
class Evaluation:
    """The figures of :func:`evaluate`: ``trajectory`` (against the ground-truth poses) and ``map`` (against the
    exact SDF), each {} where the dataset cannot give them; ``gt_index`` the processed frames with ground
    truth, ``T_gt`` their ground truth ((M,4,4) or None), ``T_gt_all`` every processed frame's (None unless all).
    """

    trajectory: Dict[str, Any] = field(default_factory=dict)
    map: Dict[str, Any] = field(default_factory=dict)
    gt_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    T_gt: Optional[np.ndarray] = None
    T_gt_all: Optional[np.ndarray] = None


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x


def _trajectory_figures(run: OfflineRun, ev: Evaluation) -> None:
    rec, dataset, n = run.recorder, run.dataset, run.n
    T_est, ok = run.T_est, rec.tracking_ok
    has_gt = [g is not None for g in rec.T_gt]
    if any(has_gt):
        sel = np.flatnonzero(has_gt)
        G = np.stack([rec.T_gt[k] for k in sel])
        E = T_est[sel]
        ev.gt_index, ev.T_gt = sel, G
        m = ev.trajectory
        err = metrics.ate_errors(E, G)
        m["ate_rmse_m"] = float(np.sqrt(np.mean(err**2)))
        m["ate_max_m"] = float(err.max())
        m["ate_frames"] = int(len(sel))
        r = metrics.rpe(E, G, 1)
        m["rpe_trans_rmse_m"] = r["trans_rmse"]
        m["rpe_rot_rmse_deg"] = r["rot_rmse_deg"]
        if all(has_gt):
            ev.T_gt_all = G
    if ev.T_gt_all is not None and n >= 2:  # pose / velocity calibration (eval/calibration.py)
        twists = dataset.gt_twists() if isinstance(dataset, HasGroundTruthTwists) and n == len(dataset) else None
        P, F = run.error_cov, run.error_transition
        lag_covs = lambda k: uncertainty.lag_covariances(T_est, P, F, k)  # noqa: E731
        ev.trajectory["calibration"] = calibration.calibration_report(
            T_est,
            ev.T_gt_all,
            lag_covs,
            valid=ok,
            stamps=run.stamps,
            velocity=run.velocity,
            velocity_cov=run.velocity_cov,
            twists_instantaneous=twists,
        )
        if isinstance(dataset, HasBodyFrame):  # the same figures in the body (IMU) frame
            Eb, Gb, Cb, Vb, VCb = calibration.to_body_frame(
                dataset.T_body_cam, T_est, ev.T_gt_all, lag_covs, run.velocity, run.velocity_cov
            )
            ev.trajectory["calibration_body"] = calibration.calibration_report(
                Eb, Gb, Cb, valid=ok, stamps=run.stamps, velocity=Vb, velocity_cov=VCb
            )


def _optimised_figures(run: OfflineRun, ev: Evaluation) -> None:
    """The back end's trajectory (``optimised``: ATE, calibration of its relative motions)."""
    if run.backend is None:
        return
    from prism_ros.eval.backend_eval import optimised_figures

    body = run.dataset.T_body_cam if isinstance(run.dataset, HasBodyFrame) else None
    ev.trajectory["optimised"] = optimised_figures(run, ev.T_gt_all, ev.gt_index, ev.T_gt, body)


def _map_figures(run: OfflineRun, ev: Evaluation) -> None:
    """Calibration of the map against an exact SDF (a simulated scene)."""
    dataset, cfg, m = run.dataset, run.cfg, ev.map
    if not isinstance(dataset, HasExactSdf):
        return
    band = 0.5 * float(cfg.truncation_m)
    allv = run.pipeline.filter.map.extract_surface(max_abs_sdf_m=2.0 * float(cfg.truncation_m), min_count=1)
    if len(allv["xyz"]):
        sdf_true = np.asarray(dataset.sdf(np.asarray(allv["xyz"], dtype=np.float64)), dtype=np.float64)
        inband = np.abs(sdf_true) < band
        trunc_mu = 0.95 * float(cfg.truncation_m)
        m["map_sdf_rmse_m"] = metrics.map_sdf_rmse(allv["sdf"], sdf_true, band, max_abs_mu=trunc_mu)
        m["map_eval_truncated_fraction"] = (
            float(np.mean(np.abs(allv["sdf"][inband]) >= trunc_mu)) if inband.any() else float("nan")
        )
        m["map_coverage_2sigma"] = metrics.map_coverage_2sigma(allv["sdf"], allv["sigma"], sdf_true, band)
        m["map_sigma_median_m"] = float(np.median(allv["sigma"][inband])) if inband.any() else float("nan")
        m["map_eval_voxels"] = int(inband.sum())
        # the same figures in other bands (projective SDF error grows away from the surface)
        m["map_eval_by_band"] = {
            f"{b:.4f}": {
                "sdf_rmse_m": metrics.map_sdf_rmse(allv["sdf"], sdf_true, b, max_abs_mu=trunc_mu),
                "coverage_2sigma": metrics.map_coverage_2sigma(allv["sdf"], allv["sigma"], sdf_true, b),
                "voxels": int((np.abs(sdf_true) < b).sum()),
            }
            for b in sorted({0.5 * float(cfg.voxel_size_m), float(cfg.voxel_size_m), band})
        }
    m["map_eval_band_m"] = band
    m["map_eval_band"] = (
        "|sdf_true| < truncation_m / 2, observed voxels; the RMSE leaves out "
        "truncated voxels (|mu| >= 0.95 truncation_m, free-space evidence only)"
    )
    if ev.T_gt_all is not None and run.n >= 2:
        T_est, pose_cov = run.T_est, run.pose_cov
        m["pose_coverage_95"] = metrics.pose_coverage_95(T_est, ev.T_gt_all, run.step_cov, run.recorder.tracking_ok)
        d2i = metrics.relative_motion_mahalanobis(T_est, ev.T_gt_all, pose_cov, independent=True)
        m["pose_coverage_95_independent"] = float(np.mean(d2i[np.isfinite(d2i)] <= metrics.CHI2_95_6DOF))
        m["pose_coverage_definition"] = (
            "consecutive pairs with xi = Log(dT_gt^-1 dT_est), "
            "xi^T C^-1 xi <= chi2_6(0.95), C = the step covariance (step_cov); "
            "pose_coverage_95_independent uses C = Ad(dT^-1) P_(t-1) Ad(dT^-1)^T + P_t, P the map-relative pose_cov"
        )


def evaluate(run: OfflineRun) -> Evaluation:
    """The figures of ``run`` against its dataset's ground truth (module docstring); writes nothing."""
    ev = Evaluation()
    _trajectory_figures(run, ev)
    _optimised_figures(run, ev)
    _map_figures(run, ev)
    return ev


def metrics_document(run: OfflineRun, ev: Evaluation, written: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The ``metrics.json`` object (module docstring; not yet JSON-safe): the run's figures, the
    trajectory's, the map's own and ``written`` (:func:`prism_ros.tools.runner.write_outputs`),
    the map's accuracy, then the process's (peak RSS now)."""
    m = run.run_figures()
    m.update(ev.trajectory)
    m.update(run.map_figures())
    m.update(written or {})
    m.update(ev.map)
    m["peak_rss_mb"] = metrics.peak_rss_mb()
    m["python"] = platform.python_version()
    m["cpu_count"] = os.cpu_count()
    m["cpu_model"] = cpu_model()
    return m


def write_evaluation(
    run: OfflineRun, ev: Evaluation, out_dir: str, written: Optional[Dict[str, Any]] = None, report: bool = True
) -> Dict[str, Any]:
    """Write the harness's outputs into ``out_dir``: ``groundtruth.tum`` (the frames with ground truth, so
    ``evo_ape tum groundtruth.tum trajectory.tum -a`` reproduces ``ate_rmse_m``) and ``groundtruth_body.tum``
    with a body frame; ``metrics.json`` (:func:`metrics_document`); ``report.png`` unless ``report`` is False.
    Returns the metrics, JSON-safe (NaN: None).
    """
    os.makedirs(out_dir, exist_ok=True)
    dataset = run.dataset
    if ev.T_gt is not None:
        gt_stamps = np.asarray(run.stamps)[ev.gt_index]
        export.write_tum(os.path.join(out_dir, "groundtruth.tum"), gt_stamps, ev.T_gt)
        if isinstance(dataset, HasBodyFrame):
            export.write_tum(os.path.join(out_dir, "groundtruth_body.tum"), gt_stamps, dataset.to_body(ev.T_gt))
    m = metrics_document(run, ev, written)
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(_jsonable(m), f, indent=2)
        f.write("\n")
    if report:
        from prism_ros.eval.report import make_report

        summary = {"frames": run.n, "fps": round(m["fps"], 2)}
        if "ate_rmse_m" in m:
            summary["ATE RMSE [cm]"] = round(100 * m["ate_rmse_m"], 2)
        if "map_sdf_rmse_m" in m:
            summary["map SDF RMSE [mm]"] = round(1000 * m["map_sdf_rmse_m"], 2)
        if "map_coverage_2sigma" in m:
            summary["map cov 2σ"] = round(m["map_coverage_2sigma"], 3)
        if "pose_coverage_95" in m:
            summary["pose cov 95"] = round(m["pose_coverage_95"], 3)
        summary["tracking failures"] = m["tracking_failures"]
        rec = run.recorder
        make_report(
            os.path.join(out_dir, "report.png"),
            run.stamps,
            run.T_est,
            ev.T_gt_all,
            run.pose_cov,
            rec.timings,
            rec.inlier_ratio,
            rec.tracking_ok,
            title=f"prism_ros: {dataset.name}",
            summary=summary,
            calibration=m.get("calibration"),
        )
    return _jsonable(m)


def run_offline(
    dataset,
    cfg=None,
    out_dir: str = "prism_out",
    progress: bool = True,
    report: bool = True,
    write_map: bool = True,
    dataset_controls: bool = True,
) -> Dict[str, Any]:
    """``prism-ros run`` as one call: :func:`prism_ros.tools.runner.run`, :func:`evaluate`,
    :func:`prism_ros.tools.runner.write_outputs` (``write_map``) and :func:`write_evaluation`
    (``report``) into ``out_dir``; returns the metrics (``metrics.json``)."""
    os.makedirs(out_dir, exist_ok=True)
    result = runner.run(dataset, cfg, progress=progress, dataset_controls=dataset_controls)
    ev = evaluate(result)
    written = runner.write_outputs(result, out_dir, write_map=write_map)
    return write_evaluation(result, ev, out_dir, written, report=report)
