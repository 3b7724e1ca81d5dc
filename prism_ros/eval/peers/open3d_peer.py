"""Open3D's tensor dense SLAM as a ``prism-ros bench --peer open3d`` worker.

:func:`run_open3d` runs ``open3d.t.pipelines.slam`` (frame-to-model, CPU) over the spec's frames, read
through :func:`prism_ros.datasets.open_dataset` and started at the first frame's ground-truth pose, with
:data:`OPEN3D_DEFAULTS` overridden by the spec's ``peer_params``.  Per frame it times
``track_frame_to_model``, ``integrate`` and ``synthesize_model_frame``; a failed tracking keeps the last
pose and counts as a failure.  Needs the optional ``peer`` extra (and ``libusb-1.0-0`` on Debian).
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List

import numpy as np

from prism_ros.eval.bench_worker import WorkerRun

__all__ = ["OPEN3D_DEFAULTS", "MODULE", "INSTALL_HINT", "run_open3d"]

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

#: the module the peer needs
MODULE = "open3d"
#: how to install it
INSTALL_HINT = (
    "  pip install 'prism_ros[peer]'     (or: .venv/bin/pip install open3d)\n"
    "  apt-get install -y libusb-1.0-0   (Debian/Ubuntu: the Open3D wheel links against libusb-1.0)"
)


def run_open3d(spec: Dict[str, Any]) -> Dict[str, Any]:
    """The Open3D worker (module docstring): the result dict of :meth:`WorkerRun.result`."""
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
    run = WorkerRun("open3d", len(ds), spec.get("progress", True))
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
            model = o3d.t.pipelines.slam.Model(
                float(p["voxel_size"]), int(p["block_resolution"]), int(p["block_count"]), T_cur, device
            )
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
                result = model.track_frame_to_model(
                    input_frame, raycast_frame, scale, float(p["depth_max"]), float(p["odometry_distance_thr"])
                )
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
        model.synthesize_model_frame(
            raycast_frame,
            scale,
            float(p["depth_min"]),
            float(p["depth_max"]),
            float(p["trunc_voxel_multiplier"]),
            False,
        )
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
