"""Offline runner: feed a dataset through the pipeline and write the product's outputs.

:func:`run` drives :func:`prism_ros.pipeline.run_dataset` and returns an :class:`OfflineRun`;
:func:`write_outputs` writes into ``out_dir`` (formats: :mod:`prism_ros.tools.export`):

* ``trajectory.tum`` (``trajectory_body.tum`` too for a dataset with a body frame);
* ``covariances.npz``: per-frame pose / velocity means and covariances;
* ``map.ply`` (near-surface voxels) and ``mesh.ply`` (the zero level set);
* with ``backend_enabled``: ``trajectory_optimised.tum`` (and ``trajectory_optimised_body.tum``), the filter's poses
  carried into the map frame by the back end's corrections, ``keyframes.npz`` (the keyframes' stamps, filter and
  optimised poses, marginals) and ``map_optimised.ply`` / ``mesh_optimised.ply`` of the composed global map;
* ``config.yaml``: the exact parameters used (``ros__parameters`` layout).

The evaluation against ground truth is the harness's (:mod:`prism_ros.eval.evaluate`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

from prism_ros.config import PrismConfig
from prism_ros.datasets.capabilities import HasBodyFrame
from prism_ros.tools import export

__all__ = ["OfflineRun", "run", "write_outputs", "write_config_yaml"]


def write_config_yaml(path: str, cfg: PrismConfig) -> None:
    """Write ``cfg`` as a ROS 2 params file (``/**: ros__parameters:``)."""
    import yaml

    doc = {"/**": {"ros__parameters": cfg.to_dict()}}
    with open(path, "w", encoding="utf-8") as f:
        f.write("# parameters used for this run (prism_ros); load with --config\n")
        yaml.safe_dump(doc, f, sort_keys=False, default_flow_style=None)


@dataclass
class OfflineRun:
    """One offline run over a dataset (:func:`run`): ``recorder`` (:class:`prism_ros.pipeline.Recorder`),
    ``pipeline.filter.map`` the final map, ``stats`` (:class:`prism_ros.pipeline.RunStats`).  The arrays are over
    the processed frames; the figures are plain Python / NumPy values (not yet JSON-safe).  ``backend``: the
    :class:`~prism_ros.core.backend.worker.BackEnd` with ``backend_enabled`` (every keyframe processed), else None.
    """

    dataset: Any
    cfg: PrismConfig
    pipeline: Any
    stats: Any
    recorder: Any
    backend: Any = None

    @property
    def n(self) -> int:
        """Frames processed."""
        return len(self.recorder.index)

    @property
    def stamps(self) -> List[float]:
        return self.recorder.stamps

    @property
    def T_est(self) -> np.ndarray:
        """(N,4,4) estimated camera-to-world poses."""
        return np.stack(self.recorder.T_est)

    @property
    def pose_cov(self) -> np.ndarray:
        """(N,6,6) pose covariances relative to the map (right perturbation, camera frame)."""
        return np.stack(self.recorder.pose_cov)

    @property
    def step_cov(self) -> np.ndarray:
        """(N,6,6) covariances of the steps from the previous frame."""
        return np.stack(self.recorder.step_cov)

    @property
    def error_cov(self) -> np.ndarray:
        """(N,12,12) error-state covariances (:mod:`prism_ros.core.uncertainty`)."""
        return np.stack(self.recorder.error_cov)

    @property
    def error_transition(self) -> np.ndarray:
        """(N,12,12) error-state transitions."""
        return np.stack(self.recorder.error_transition)

    @property
    def velocity(self) -> np.ndarray:
        """(N,6) body-frame twists."""
        return np.stack(self.recorder.velocity)

    @property
    def velocity_cov(self) -> np.ndarray:
        """(N,6,6) twist covariances."""
        return np.stack(self.recorder.velocity_cov)

    def run_figures(self) -> Dict[str, Any]:
        """The run's counts and timing: ``dataset``, ``frames``, ``frames_skipped``, ``skipped_indices``, ``fps``
        (filter steps only), ``fps_total`` (loading + steps, wall clock from the first step), ``step_ms_mean``,
        ``warmup_s``, ``load_ms_mean``, ``tracking_failures``, ``inlier_ratio_median``, ``iterations_median``,
        ``controls_used``, the CPU figures (:meth:`prism_ros.stats.CpuMeter.figures`) and ``stage_ms`` (median per
        stage).
        """
        rec, rs, n = self.recorder, self.stats, self.n
        m: Dict[str, Any] = {
            "dataset": self.dataset.name,
            "frames": n,
            "frames_skipped": len(rs.skipped),
            "skipped_indices": rs.skipped,
            "fps": rs.fps,
            "fps_total": rs.fps_total,
            "step_ms_mean": 1000.0 * rs.step_s / n,
            "warmup_s": rs.setup_s,
            "load_ms_mean": 1000.0 * rs.load_s / max(len(rs.load_ms), 1),
            "tracking_failures": int(n - sum(rec.tracking_ok)),
            "inlier_ratio_median": float(np.median(rec.inlier_ratio)),
            "iterations_median": float(np.median(rec.iterations)),
            "controls_used": int(rs.controls_used),
            **rs.cpu,
        }
        m["stage_ms"] = self.pipeline.stats.medians()
        return m

    def map_figures(self) -> Dict[str, Any]:
        """The map's own figures: ``depth_predictive_coverage_2sigma``, ``depth_predictive_pixels``
        (:mod:`prism_ros.core.predictive`), ``map_blocks`` and ``map_memory_mb``.
        """
        m: Dict[str, Any] = {}
        if self.recorder.depth_checks:
            dc = np.asarray(self.recorder.depth_checks, dtype=np.float64).sum(axis=0)
            m["depth_predictive_coverage_2sigma"] = float(dc[1] / dc[0]) if dc[0] > 0 else float("nan")
            m["depth_predictive_pixels"] = int(dc[0])
        fmap = self.pipeline.filter.map
        m["map_blocks"] = int(fmap.num_blocks)
        m["map_memory_mb"] = float(fmap.memory_bytes) / 2**20
        return m


def run(
    dataset, cfg: Optional[PrismConfig] = None, progress: bool = True, dataset_controls: bool = True, on_ready=None
) -> OfflineRun:
    """Run the filter over ``dataset`` (:func:`prism_ros.pipeline.run_dataset`, ``on_ready`` passed on), the back end
    beside it with ``backend_enabled``.

    The filter starts at the first frame's ground-truth pose (identity without).  A dataset with controls
    (:class:`~prism_ros.datasets.capabilities.HasControls`) supplies them unless ``dataset_controls`` is False.
    Kernels are compiled by ``PrismFilter.warmup()`` before timing; unreadable frames are skipped with a warning.
    """
    from prism_ros.pipeline import Recorder, run_dataset

    cfg = cfg or PrismConfig.from_yaml()
    rec = Recorder()
    sinks, backend = [rec], None
    if cfg.backend_enabled:  # offline it waits for room in its queue: every keyframe keeps its images
        from prism_ros.core.backend.worker import BackEnd

        backend = BackEnd(cfg, dataset.camera, block_when_full=True)
        sinks.append(backend)
    pipe, rs = run_dataset(dataset, cfg, sinks, progress=progress, dataset_controls=dataset_controls, on_ready=on_ready)
    if backend is not None and not backend.flush():
        raise RuntimeError(f"the back end stopped: {backend.error or 'it did not finish its queue'}")
    return OfflineRun(dataset, cfg, pipe, rs, rec, backend)


def write_outputs(run: OfflineRun, out_dir: str, write_map: bool = True) -> Dict[str, Any]:
    """Write the product's outputs of ``run`` into ``out_dir`` (module docstring; ``write_map``
    False: no map.ply and mesh.ply).  Returns the figures of the writing: ``map_points``,
    ``map_ply_max_abs_sdf_m``, ``mesh_triangles`` and ``mesh_s`` (with the map only)."""
    os.makedirs(out_dir, exist_ok=True)
    rec, cfg, dataset = run.recorder, run.cfg, run.dataset
    stamps, T_est = run.stamps, run.T_est
    export.write_tum(os.path.join(out_dir, "trajectory.tum"), stamps, T_est)
    export.write_covariances(
        os.path.join(out_dir, "covariances.npz"),
        stamps,
        T_est,
        run.pose_cov,
        run.velocity,
        run.velocity_cov,
        frame_index=np.asarray(rec.index),
        step_cov=run.step_cov,
        error_cov=run.error_cov,
        error_transition=run.error_transition,
        tracking_ok=np.asarray(rec.tracking_ok),
        inlier_ratio=np.asarray(rec.inlier_ratio),
    )
    if isinstance(dataset, HasBodyFrame):  # e.g. EuRoC: the body (IMU) frame, comparable with its ground truth
        export.write_tum(os.path.join(out_dir, "trajectory_body.tum"), stamps, dataset.to_body(T_est))
    m: Dict[str, Any] = {}
    if write_map:
        m.update(_write_map(run.pipeline.filter.map, out_dir, "", cfg))
    if run.backend is not None:
        m.update(_write_backend(run, out_dir, write_map))
    write_config_yaml(os.path.join(out_dir, "config.yaml"), cfg)
    return m


def _write_map(fmap, out_dir: str, suffix: str, cfg) -> Dict[str, Any]:
    """map{suffix}.ply (near-surface voxels) and mesh{suffix}.ply (marching cubes of the whole map: offline, no
    per-update bound); their figures, keys suffixed likewise."""
    from prism_ros.core.mesh import BlockMesher

    m: Dict[str, Any] = {}
    surf = fmap.extract_surface(max_abs_sdf_m=float(cfg.cloud_max_sdf_m), min_count=1)
    m[f"map{suffix}_points"] = export.write_ply(os.path.join(out_dir, f"map{suffix}.ply"), surf)
    m[f"map{suffix}_ply_max_abs_sdf_m"] = float(cfg.cloud_max_sdf_m)
    t_mesh = time.perf_counter()
    mesher = BlockMesher(max_blocks=max(1, fmap.num_blocks))
    mesher.update(fmap)
    m[f"mesh{suffix}_triangles"] = export.write_mesh_ply(os.path.join(out_dir, f"mesh{suffix}.ply"), mesher.combined())
    m[f"mesh{suffix}_s"] = time.perf_counter() - t_mesh
    return m


def _write_backend(run: OfflineRun, out_dir: str, write_map: bool) -> Dict[str, Any]:
    """The back end's outputs (module docstring) and figures (``backend``: counts and timings)."""
    be, dataset = run.backend, run.dataset
    T_opt = be.optimised_trajectory(run.stamps, run.T_est)
    export.write_tum(os.path.join(out_dir, "trajectory_optimised.tum"), run.stamps, T_opt)
    if isinstance(dataset, HasBodyFrame):
        export.write_tum(os.path.join(out_dir, "trajectory_optimised_body.tum"), run.stamps, dataset.to_body(T_opt))
    keys, ks, K_odom, K_map = be.optimised_keyframes()
    np.savez_compressed(
        os.path.join(out_dir, "keyframes.npz"),
        key=keys,
        stamps=ks,
        T_odom_c=K_odom,
        T_map_c=K_map,
        marginal=be.marginals(),
    )
    m: Dict[str, Any] = {}
    if write_map:
        gmap = be.compose_now()
        if gmap is not None:
            m.update(_write_map(gmap, out_dir, "_optimised", run.cfg))
    m["backend"] = be.figures()
    return m
