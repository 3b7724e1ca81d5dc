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
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np

from prism_ros.config import PrismConfig
from prism_ros.tools import export, metrics

__all__ = ["run_offline", "write_config_yaml"]


def _finite_pose(T) -> bool:
    return T is not None and np.all(np.isfinite(T)) and abs(np.linalg.det(np.asarray(T)[:3, :3]) - 1.0) < 1e-3


def _orthonormalize(T: np.ndarray) -> np.ndarray:
    """Nearest proper rotation (SVD) for a slightly non-orthonormal ground-truth pose."""
    T = np.array(T, dtype=np.float64)
    U, _, Vt = np.linalg.svd(T[:3, :3])
    R = U @ Vt
    if np.linalg.det(R) < 0:
        U[:, -1] *= -1
        R = U @ Vt
    T[:3, :3] = R
    T[3] = (0.0, 0.0, 0.0, 1.0)
    return T


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
) -> Dict[str, Any]:
    """Run the filter over ``dataset`` and write all outputs into ``out_dir``.

    The filter starts at the dataset's ground-truth pose of the first frame
    (identity without ground truth).  A dataset with ``control_between(i_prev, i,
    state)`` (EuRoC: IMU integration) provides the dynamics' control for each step
    (None: constant velocity).  Numba kernels are compiled by
    ``PrismFilter.warmup()`` before any timing starts.

    Returns the metrics (also written to ``metrics.json``):
      ``frames`` processed, ``frames_skipped`` (unreadable), ``fps`` (filter
      steps only), ``fps_total`` (loading + steps, wall clock, from the first
      step on: the first frame's loading is setup like the warm-up), ``stage_ms``
      (median per stage), ``peak_rss_mb``, ``tracking_failures``,
      ``map_blocks``, ``map_memory_mb``, ``warmup_s``; with ground truth also
      ``ate_rmse_m`` (SE(3) Umeyama alignment, like ``evo_ape -a``),
      ``ate_max_m``, ``rpe_trans_rmse_m`` / ``rpe_rot_rmse_deg`` (frame to
      frame); for a dataset with an exact SDF (the synthetic one) also
      ``map_sdf_rmse_m``, ``map_coverage_2sigma`` with ``map_eval_band_m`` and
      ``map_eval_voxels`` (band |sdf_true| < truncation_m / 2), ``map_eval_by_band``
      (the same two figures for bands of half a voxel, one voxel and truncation_m / 2)
      and ``pose_coverage_95``.
    """
    from prism_ros.core.filter import InvalidFrameError, PrismFilter
    from prism_ros.datasets.base import FrameLoadError

    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None

    cfg = cfg or PrismConfig.from_yaml()
    os.makedirs(out_dir, exist_ok=True)
    n_total = len(dataset)
    name = getattr(dataset, "name", type(dataset).__name__)

    def log(msg: str) -> None:
        if tqdm is not None and progress:
            tqdm.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr)

    filt = None
    setup_s = 0.0  # filter construction + Numba warm-up, excluded from all timings
    stamps: List[float] = []
    idx: List[int] = []
    T_est: List[np.ndarray] = []
    T_gt: List[Optional[np.ndarray]] = []
    pose_cov: List[np.ndarray] = []
    vel: List[np.ndarray] = []
    vel_cov: List[np.ndarray] = []
    ok: List[bool] = []
    inl: List[float] = []
    iters: List[int] = []
    timings: List[Dict[str, float]] = []
    skipped: List[int] = []
    load_s = 0.0
    step_s = 0.0

    control_fn = getattr(dataset, "control_between", None)
    control_fn = control_fn if callable(control_fn) else None
    n_controls = 0

    bar = tqdm(total=n_total, unit="frame", desc=name, disable=not progress, file=sys.stderr) if tqdm else None
    t_loop = time.perf_counter()
    for i in range(n_total):
        t0 = time.perf_counter()
        try:
            fr = dataset[i]
        except FrameLoadError as e:
            skipped.append(i)
            log(f"warning: skipping frame {i}: {e}")
            if bar is not None:
                bar.update(1)
            continue
        t1 = time.perf_counter()
        load_s += t1 - t0
        gt = fr.T_w_c_gt if _finite_pose(fr.T_w_c_gt) else None
        if filt is None:
            # First readable frame: start at its ground-truth pose, compile kernels off the clock.
            filt = PrismFilter(cfg, dataset.camera, T_w_c0=None if gt is None else _orthonormalize(gt))
            filt.warmup()
            setup_s = time.perf_counter() - t1
            # The wall clock for fps_total starts here: the first frame's loading (which may
            # include one-time JIT compilation in a dataset reader) is setup, like the warm-up.
            t_loop = time.perf_counter()
        ts = time.perf_counter()
        # a control (e.g. IMU increment) from the previous filtered frame, when the dataset has one
        control = None
        if control_fn is not None and idx and filt.state is not None:
            control = control_fn(idx[-1], int(fr.index), filt.state)
            n_controls += control is not None
        try:
            res = filt.step(fr.rgb, fr.depth, fr.stamp, control=control, depth_sigma=getattr(fr, "depth_sigma", None))
        except InvalidFrameError as e:  # e.g. no valid depth: skip it, state and map untouched
            step_s += time.perf_counter() - ts
            skipped.append(i)
            log(f"warning: skipping frame {i}: {e}")
            if bar is not None:
                bar.update(1)
            continue
        step_s += time.perf_counter() - ts

        idx.append(int(fr.index))
        stamps.append(float(fr.stamp))
        T_est.append(np.asarray(res.T_w_c, dtype=np.float64))
        T_gt.append(None if gt is None else np.asarray(gt, dtype=np.float64))
        pose_cov.append(np.asarray(res.pose_cov, dtype=np.float64))
        vel.append(np.asarray(res.velocity, dtype=np.float64))
        vel_cov.append(np.asarray(res.velocity_cov, dtype=np.float64))
        ok.append(bool(res.tracking_ok))
        inl.append(float(res.inlier_ratio))
        iters.append(int(res.iterations))
        timings.append({k: float(v) for k, v in (res.timings_ms or {}).items()})
        if not res.tracking_ok:
            log(f"warning: tracking lost at frame {fr.index} ({res.status}, inlier ratio {res.inlier_ratio:.2f})")
        if bar is not None:
            bar.update(1)
            if len(idx) % 10 == 0:
                bar.set_postfix(fps=f"{len(idx) / max(step_s, 1e-9):.1f}", inl=f"{res.inlier_ratio:.2f}")
    wall_s = time.perf_counter() - t_loop
    if bar is not None:
        bar.close()
    if filt is None:
        raise RuntimeError(f"{name}: no readable frame out of {n_total}")

    n = len(idx)
    T_est_a = np.stack(T_est)
    pose_cov_a = np.stack(pose_cov)
    m: Dict[str, Any] = {
        "dataset": name,
        "frames": n,
        "frames_skipped": len(skipped),
        "skipped_indices": skipped,
        "fps": n / step_s if step_s > 0 else float("nan"),
        "fps_total": n / wall_s if wall_s > 0 else float("nan"),
        "step_ms_mean": 1000.0 * step_s / n,
        "warmup_s": setup_s,
        "load_ms_mean": 1000.0 * load_s / n,
        "tracking_failures": int(n - sum(ok)),
        "inlier_ratio_median": float(np.median(inl)),
        "iterations_median": float(np.median(iters)),
        "controls_used": int(n_controls),
    }
    stages: List[str] = []
    for d in timings:
        stages += [k for k in d if k not in stages]
    m["stage_ms"] = {k: float(np.median([d[k] for d in timings if k in d])) for k in stages}

    # --- trajectory files and accuracy ------------------------------------
    export.write_tum(os.path.join(out_dir, "trajectory.tum"), stamps, T_est_a)
    export.write_covariances(
        os.path.join(out_dir, "covariances.npz"),
        stamps,
        T_est_a,
        pose_cov_a,
        np.stack(vel),
        np.stack(vel_cov),
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
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(_jsonable(m), f, indent=2)
        f.write("\n")
    write_config_yaml(os.path.join(out_dir, "config.yaml"), cfg)

    if report:
        from prism_ros.tools.report import make_report

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
        )
    return _jsonable(m)
