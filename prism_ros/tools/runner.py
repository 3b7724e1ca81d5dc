"""Offline runner: feed a dataset through :class:`PrismFilter` and write the outputs.

``run_offline(dataset, cfg, out_dir)`` writes into ``out_dir``:

* ``trajectory.tum``   estimated camera-to-world poses (``evo_ape tum`` format);
* ``groundtruth.tum``  ground truth of the same frames (when the dataset has it), so
  ``evo_ape tum groundtruth.tum trajectory.tum -a`` reproduces ``ate_rmse_m``;
* ``trajectory_body.tum`` / ``groundtruth_body.tum``  the same in the body frame, for
  datasets with ``to_body(T_w_c)`` (EuRoC: the IMU frame of its ground truth);
* ``covariances.npz``  per-frame pose / velocity means and covariances
  (see :mod:`prism_ros.tools.export` for the conventions);
* ``metrics.json``     the figures listed in :func:`run_offline`;
* ``map.ply``          near-surface voxels with colour, SDF mean, SDF sigma, count;
* ``mesh.ply``         triangle mesh of the zero level set (marching cubes per block), colour and sigma;
* ``report.png``       trajectory, error over time, stage timings, uncertainty;
* ``config.yaml``      the exact parameters used (``ros__parameters`` layout).
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from typing import Any, Dict, Optional

import numpy as np

from prism_ros.config import PrismConfig
from prism_ros.stats import cpu_model
from prism_ros.eval import calibration, metrics
from prism_ros.tools import export

__all__ = ["run_offline", "write_config_yaml"]


def write_config_yaml(path: str, cfg: PrismConfig) -> None:
    """Write ``cfg`` as a ROS 2 params file (``/**: ros__parameters:``)."""
    import yaml

    doc = {"/**": {"ros__parameters": cfg.to_dict()}}
    with open(path, "w", encoding="utf-8") as f:
        f.write("# parameters used for this run (prism_ros); load with --config\n")
        yaml.safe_dump(doc, f, sort_keys=False, default_flow_style=None)


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


def run_offline(
    dataset,
    cfg: Optional[PrismConfig] = None,
    out_dir: str = "prism_out",
    progress: bool = True,
    report: bool = True,
    write_map: bool = True,
    dataset_controls: bool = True,
) -> Dict[str, Any]:
    """Run the filter over ``dataset`` and write all outputs into ``out_dir``.

    The filter starts at the dataset's ground-truth pose of the first frame
    (identity without ground truth).  A dataset with ``control_between(i_prev, i,
    state)`` (EuRoC: IMU integration) provides the dynamics' control for each step
    (None: constant velocity) unless ``dataset_controls`` is False.  Numba kernels are compiled by
    ``PrismFilter.warmup()`` before any timing starts.

    Returns the metrics (also written to ``metrics.json``):
      ``frames`` processed, ``frames_skipped`` (unreadable), ``fps`` (filter
      steps only), ``fps_total`` (loading, two frames ahead in a background
      thread, + steps, wall clock, from the first
      step on: the first frame's loading is setup like the warm-up), ``stage_ms``
      (median per stage), ``peak_rss_mb``, ``tracking_failures``,
      ``map_blocks``, ``map_memory_mb``, ``warmup_s``, ``cpu_ms_per_frame``,
      ``cpu_cores_used`` and ``cpu_steal_fraction`` (:class:`prism_ros.stats.CpuMeter`: the
      loop's CPU time, which a shared virtual machine's steal does not inflate as it does
      the FPS); with ground truth also
      ``ate_rmse_m`` (SE(3) Umeyama alignment, like ``evo_ape -a``),
      ``ate_max_m``, ``rpe_trans_rmse_m`` / ``rpe_rot_rmse_deg`` (frame to
      frame); for a dataset with an exact SDF (the synthetic one) also
      ``map_sdf_rmse_m``, ``map_coverage_2sigma`` with ``map_eval_band_m`` and
      ``map_eval_voxels`` (band |sdf_true| < truncation_m / 2), ``map_eval_by_band``
      (the same two figures for bands of half a voxel, one voxel and truncation_m / 2)
      and ``pose_coverage_95``.  With ground truth on every frame also ``calibration``
      (:func:`prism_ros.eval.calibration.calibration_report`: per-lag coverage95, NEES,
      RMS error vs sigma; velocity coverage), and for a dataset with a body frame
      (``T_body_cam``, EuRoC) ``calibration_body``, the same in the body frame; on every run ``depth_predictive_coverage_2sigma``
      and ``depth_predictive_pixels`` (:mod:`prism_ros.core.predictive`).
    """
    from prism_ros.pipeline import Recorder, run_dataset

    cfg = cfg or PrismConfig.from_yaml()
    os.makedirs(out_dir, exist_ok=True)
    name = getattr(dataset, "name", type(dataset).__name__)
    rec = Recorder()
    pipe, rs = run_dataset(dataset, cfg, [rec], progress=progress, dataset_controls=dataset_controls)
    filt = pipe.filter
    idx, stamps, T_gt, ok, inl = rec.index, rec.stamps, rec.T_gt, rec.tracking_ok, rec.inlier_ratio
    timings = rec.timings
    depth_checks = rec.depth_checks
    n = len(idx)
    T_est_a = np.stack(rec.T_est)
    pose_cov_a = np.stack(rec.pose_cov)
    m: Dict[str, Any] = {
        "dataset": name,
        "frames": n,
        "frames_skipped": len(rs.skipped),
        "skipped_indices": rs.skipped,
        "fps": rs.fps,
        "fps_total": rs.fps_total,
        "step_ms_mean": 1000.0 * rs.step_s / n,
        "warmup_s": rs.setup_s,
        "load_ms_mean": 1000.0 * rs.load_s / max(len(rs.load_ms), 1),
        "tracking_failures": int(n - sum(ok)),
        "inlier_ratio_median": float(np.median(inl)),
        "iterations_median": float(np.median(rec.iterations)),
        "controls_used": int(rs.controls_used),
        **rs.cpu,
    }
    m["stage_ms"] = pipe.stats.medians()

    # --- trajectory files and accuracy ------------------------------------
    export.write_tum(os.path.join(out_dir, "trajectory.tum"), stamps, T_est_a)
    export.write_covariances(
        os.path.join(out_dir, "covariances.npz"),
        stamps,
        T_est_a,
        pose_cov_a,
        np.stack(rec.velocity),
        np.stack(rec.velocity_cov),
        frame_index=np.asarray(idx),
        tracking_ok=np.asarray(ok),
        inlier_ratio=np.asarray(inl),
    )
    to_body = getattr(dataset, "to_body", None)
    if callable(to_body):  # e.g. EuRoC: the body (IMU) frame, comparable with its ground truth
        export.write_tum(os.path.join(out_dir, "trajectory_body.tum"), stamps, to_body(T_est_a))
    has_gt = [g is not None for g in T_gt]
    T_gt_a = None
    if any(has_gt):
        sel = np.flatnonzero(has_gt)
        G = np.stack([T_gt[k] for k in sel])
        E = T_est_a[sel]
        export.write_tum(os.path.join(out_dir, "groundtruth.tum"), np.asarray(stamps)[sel], G)
        if callable(to_body):
            export.write_tum(os.path.join(out_dir, "groundtruth_body.tum"), np.asarray(stamps)[sel], to_body(G))
        err = metrics.ate_errors(E, G)
        m["ate_rmse_m"] = float(np.sqrt(np.mean(err**2)))
        m["ate_max_m"] = float(err.max())
        m["ate_frames"] = int(len(sel))
        r = metrics.rpe(E, G, 1)
        m["rpe_trans_rmse_m"] = r["trans_rmse"]
        m["rpe_rot_rmse_deg"] = r["rot_rmse_deg"]
        if all(has_gt):
            T_gt_a = G
    if T_gt_a is not None and n >= 2:  # pose / velocity calibration (tools/calibration.py)
        tw = getattr(dataset, "gt_twists", None)
        m["calibration"] = calibration.calibration_report(
            T_est_a, T_gt_a, pose_cov_a, valid=ok, stamps=stamps, velocity=np.stack(rec.velocity),
            velocity_cov=np.stack(rec.velocity_cov),
            twists_instantaneous=tw() if callable(tw) and n == len(dataset) else None)
        T_bc = getattr(dataset, "T_body_cam", None)
        if T_bc is not None:  # the same figures in the body (IMU) frame
            Eb, Gb, Cb, Vb, VCb = calibration.to_body_frame(T_bc, T_est_a, T_gt_a, pose_cov_a,
                                                            np.stack(rec.velocity), np.stack(rec.velocity_cov))
            m["calibration_body"] = calibration.calibration_report(Eb, Gb, Cb, valid=ok, stamps=stamps, velocity=Vb,
                                                                   velocity_cov=VCb)
    if depth_checks:  # the map's depth-predictive check (core/predictive.py), no ground truth needed
        dc = np.asarray(depth_checks, dtype=np.float64).sum(axis=0)
        m["depth_predictive_coverage_2sigma"] = float(dc[1] / dc[0]) if dc[0] > 0 else float("nan")
        m["depth_predictive_pixels"] = int(dc[0])

    # --- map ------------------------------------------------------------
    fmap = filt.map
    m["map_blocks"] = int(fmap.num_blocks)
    m["map_memory_mb"] = float(fmap.memory_bytes) / 2**20
    if write_map:
        surf = fmap.extract_surface(max_abs_sdf_m=float(cfg.cloud_max_sdf_m), min_count=1)
        m["map_points"] = export.write_ply(os.path.join(out_dir, "map.ply"), surf)
        m["map_ply_max_abs_sdf_m"] = float(cfg.cloud_max_sdf_m)
        # mesh.ply: marching cubes of the whole map (offline: no per-update bound)
        from prism_ros.core.mesh import BlockMesher

        t_mesh = time.perf_counter()
        mesher = BlockMesher(max_blocks=max(1, fmap.num_blocks))
        mesher.update(fmap)
        m["mesh_triangles"] = export.write_mesh_ply(os.path.join(out_dir, "mesh.ply"), mesher.combined())
        m["mesh_s"] = time.perf_counter() - t_mesh

    # --- calibration against an exact SDF (synthetic data) ----------------
    sdf_fn = getattr(dataset, "sdf", None)
    if callable(sdf_fn):
        band = 0.5 * float(cfg.truncation_m)
        allv = fmap.extract_surface(max_abs_sdf_m=2.0 * float(cfg.truncation_m), min_count=1)
        if len(allv["xyz"]):
            sdf_true = np.asarray(sdf_fn(np.asarray(allv["xyz"], dtype=np.float64)), dtype=np.float64)
            inband = np.abs(sdf_true) < band
            trunc_mu = 0.95 * float(cfg.truncation_m)
            m["map_sdf_rmse_m"] = metrics.map_sdf_rmse(allv["sdf"], sdf_true, band, max_abs_mu=trunc_mu)
            m["map_eval_truncated_fraction"] = (
                float(np.mean(np.abs(allv["sdf"][inband]) >= trunc_mu)) if inband.any() else float("nan"))
            m["map_coverage_2sigma"] = metrics.map_coverage_2sigma(allv["sdf"], allv["sigma"], sdf_true, band)
            m["map_sigma_median_m"] = float(np.median(allv["sigma"][inband])) if inband.any() else float("nan")
            m["map_eval_voxels"] = int(inband.sum())
            # The same figures in other bands, for tuning (projective SDF error grows away from the surface).
            m["map_eval_by_band"] = {
                f"{b:.4f}": {
                    "sdf_rmse_m": metrics.map_sdf_rmse(allv["sdf"], sdf_true, b, max_abs_mu=trunc_mu),
                    "coverage_2sigma": metrics.map_coverage_2sigma(allv["sdf"], allv["sigma"], sdf_true, b),
                    "voxels": int((np.abs(sdf_true) < b).sum()),
                }
                for b in sorted({0.5 * float(cfg.voxel_size_m), float(cfg.voxel_size_m), band})
            }
        m["map_eval_band_m"] = band
        m["map_eval_band"] = ("|sdf_true| < truncation_m / 2, observed voxels; the RMSE leaves out "
                              "truncated voxels (|mu| >= 0.95 truncation_m, free-space evidence only)")
        if T_gt_a is not None and n >= 2:
            m["pose_coverage_95"] = metrics.pose_coverage_95(T_est_a, T_gt_a, pose_cov_a)
            d2i = metrics.relative_motion_mahalanobis(T_est_a, T_gt_a, pose_cov_a, independent=True)
            m["pose_coverage_95_independent"] = float(np.mean(d2i[np.isfinite(d2i)] <= metrics.CHI2_95_6DOF))
            m["pose_coverage_definition"] = (
                "consecutive pairs with xi = Log(dT_gt^-1 dT_est), "
                "xi^T C^-1 xi <= chi2_6(0.95), C = S_t (pose covariance given the map); "
                "pose_coverage_95_independent uses C = Ad(dT^-1) S_(t-1) Ad(dT^-1)^T + S_t"
            )

    m["peak_rss_mb"] = metrics.peak_rss_mb()
    m["python"] = platform.python_version()
    m["cpu_count"] = os.cpu_count()
    m["cpu_model"] = cpu_model()
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(_jsonable(m), f, indent=2)
        f.write("\n")
    write_config_yaml(os.path.join(out_dir, "config.yaml"), cfg)

    if report:
        from prism_ros.eval.report import make_report

        summary = {"frames": n, "fps": round(m["fps"], 2)}
        if "ate_rmse_m" in m:
            summary["ATE RMSE [cm]"] = round(100 * m["ate_rmse_m"], 2)
        if "map_sdf_rmse_m" in m:
            summary["map SDF RMSE [mm]"] = round(1000 * m["map_sdf_rmse_m"], 2)
        if "map_coverage_2sigma" in m:
            summary["map cov 2σ"] = round(m["map_coverage_2sigma"], 3)
        if "pose_coverage_95" in m:
            summary["pose cov 95"] = round(m["pose_coverage_95"], 3)
        summary["tracking failures"] = m["tracking_failures"]
        make_report(
            os.path.join(out_dir, "report.png"),
            stamps,
            T_est_a,
            T_gt_a if T_gt_a is not None else None,
            pose_cov_a,
            timings,
            inl,
            ok,
            title=f"prism_ros: {name}",
            summary=summary,
            calibration=m.get("calibration"),
        )
    return _jsonable(m)
