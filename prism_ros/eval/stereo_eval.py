"""``prism-ros stereo-eval DIR``: stereo depth accuracy, sigma calibration and speed.

Every ``--every``-th stereo pair of a EuRoC folder goes through :meth:`StereoRectifier.compute` (timed:
``ms_per_pair_median``).  Against the exact cam0 depth of a simulated folder (:mod:`prism_ros.sim.flight`,
compared in the rectified left camera): ``disp_err_q50/q68/q954/q99_px`` (|d - d_exact|, full-resolution
px), ``sigma_d_fit_px`` = q954 / 2, ``coverage_2sigma`` (|z - z_exact| <= 2 sigma_z with the dataset's
sigma_d), ``valid_fraction`` (within ``match_region``), ``depth_rel_err_median`` and ``gross_fraction``
(|d - d_exact| > 2 px).

``--two-view LAG`` (real recordings with ground-truth poses, :func:`evaluate_stereo_two_view`): each
pair's depth is carried LAG frames later at the ground-truth relative pose; ``e = f b / z_j(u_j) - f b / z_i->j``
over pixels valid and away from depth edges in both is the difference of two independent disparity errors, so
``sigma_d_fit_px = q954(|e|) / (2 sqrt 2)``, ``coverage_2sigma`` counts ``|e| <= 2 sqrt 2 sigma_d``, plus
``two_view_disp_err_q50/q954_px``.  See docs/offline.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from typing import Dict, List, Optional

import numpy as np

__all__ = ["evaluate_stereo", "evaluate_stereo_two_view", "main"]


def evaluate_stereo(ds, indices) -> Dict[str, float]:
    """Figures of the module docstring for the frames ``indices`` of a EuRoC dataset."""
    from prism_ros.sim.flight import EXACT_DEPTH_FOLDER, exact_depth_rectified, read_exact_depth

    st = ds.stereo
    fb = st.f * st.baseline
    has_exact = (ds.mav0 / EXACT_DEPTH_FOLDER / "data.csv").is_file()
    ms: List[float] = []
    errs, cover, rel, valid = [], [], [], []
    for i in indices:
        L, R = ds.raw_pair(int(i))
        t0 = time.perf_counter()
        _, z, s = st.compute(L, R)
        ms.append(1000.0 * (time.perf_counter() - t0))
        if not has_exact:
            valid.append(float((z[st.match_region] > 0).mean()))
            continue
        ze = exact_depth_rectified(read_exact_depth(ds.mav0, int(ds.frame_ns[int(i)])), st)
        known = (ze > 0) & st.match_region
        ok = known & (z > 0)
        valid.append(float(ok.sum() / max(1, known.sum())))
        errs.append(fb / z[ok] - fb / ze[ok])
        cover.append(np.abs(z[ok] - ze[ok]) <= 2.0 * s[ok])
        rel.append(np.abs(z[ok] - ze[ok]) / ze[ok])
    out: Dict[str, float] = {
        "pairs": len(ms),
        "ms_per_pair_median": float(np.median(ms)),
        "valid_fraction": float(np.mean(valid)),
        "sigma_d_px": float(st.sigma_d),
        "downscale": int(st.downscale),
        "matcher": str(st.matcher),
    }
    if errs:
        e = np.abs(np.concatenate(errs))
        q = np.quantile(e, [0.5, 0.683, 0.954, 0.99])
        out.update(
            {
                "pixels": int(e.size),
                "disp_err_q50_px": float(q[0]),
                "disp_err_q68_px": float(q[1]),
                "disp_err_q954_px": float(q[2]),
                "disp_err_q99_px": float(q[3]),
                "sigma_d_fit_px": float(q[2] / 2.0),
                "coverage_2sigma": float(np.concatenate(cover).mean()),
                "depth_rel_err_median": float(np.median(np.concatenate(rel))),
                "gross_fraction": float(np.mean(e > 2.0)),
            }
        )
    return out


def evaluate_stereo_two_view(ds, indices, lag: int = 1) -> Dict[str, float]:
    """Figures of the module docstring's two-view check for the pairs ``indices`` (each with the
    pair ``lag`` frames later) of a EuRoC dataset with ground-truth poses."""
    st = ds.stereo
    fb = st.f * st.baseline
    cam = st.camera
    gt = ds.gt_poses()
    if gt is None:
        raise ValueError(f"{ds.name}: the two-view check needs ground-truth poses on every frame")

    @functools.lru_cache(maxsize=4)  # each pair serves twice (as i and as j)
    def depth_and_smooth(i: int):
        """The pair's depth, and its pixels whose 3x3 neighbourhood is valid and within 1 px of
        disparity (a small error in the ground-truth pose does not move them across a depth edge)."""
        import cv2

        z = st.compute(*ds.raw_pair(i))[1]
        d = np.where(z > 0, fb / np.maximum(z, 1e-6), np.float32(-1e3)).astype(np.float32)
        k = np.ones((3, 3), np.uint8)
        return z, (cv2.dilate(d, k) - cv2.erode(d, k) <= 1.0) & (cv2.erode(d, k) > 0)

    h, w = cam.height, cam.width
    vv, uu = np.mgrid[0:h, 0:w]
    rays = np.stack([(uu - cam.cx) / cam.fx, (vv - cam.cy) / cam.fy, np.ones_like(uu, float)], -1)
    errs = []
    for i in indices:
        j = int(i) + lag
        if j >= len(ds):
            continue
        (zi, ok), (zj, smooth_j) = depth_and_smooth(int(i)), depth_and_smooth(j)  # ok: away from edges
        p = rays[ok] * zi[ok][:, None]
        T = np.linalg.inv(gt[j]) @ gt[int(i)]  # frame i -> frame j (rectified left cameras)
        q = p @ T[:3, :3].T + T[:3, 3]
        front = q[:, 2] > 1e-3
        q = q[front]
        u = np.rint(cam.fx * q[:, 0] / q[:, 2] + cam.cx).astype(np.int64)
        v = np.rint(cam.fy * q[:, 1] / q[:, 2] + cam.cy).astype(np.int64)
        inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        q, u, v = q[inside], u[inside], v[inside]
        zm = zj[v, u]
        both = (zm > 0) & smooth_j[v, u]
        errs.append(fb / zm[both] - fb / q[both, 2])
    if not errs:
        raise ValueError(f"{ds.name}: no pair of frames {lag} apart among the indices")
    e = np.abs(np.concatenate(errs))
    q50, q954 = np.quantile(e, [0.5, 0.954])
    return {
        "pairs": len(errs),
        "pixels": int(e.size),
        "lag": int(lag),
        "sigma_d_px": float(st.sigma_d),
        "two_view_disp_err_q50_px": float(q50),
        "two_view_disp_err_q954_px": float(q954),
        "sigma_d_fit_px": float(q954 / (2.0 * np.sqrt(2.0))),
        "coverage_2sigma": float(np.mean(e <= 2.0 * np.sqrt(2.0) * st.sigma_d)),
    }


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="prism-ros stereo-eval", description=__doc__.split("\n\n")[0])
    p.add_argument("path", metavar="DIR", help="EuRoC ASL folder (simulated: with mav0/cam0_depth_exact)")
    p.add_argument("--every", type=int, default=10, help="use every K-th pair (default: %(default)s)")
    p.add_argument("--frames", type=int, default=None, help="first N pairs only")
    p.add_argument("--downscale", type=int, default=2, choices=(1, 2), help="stereo resolution divisor (default: 2)")
    p.add_argument(
        "--matcher", choices=("bm", "sgbm"), default=None, help="stereo matcher (default: the dataset's, StereoSGBM)"
    )
    p.add_argument("--sigma-d", type=float, default=None, help="disparity sigma in px (default: the dataset's)")
    p.add_argument("--start", type=int, default=0, help="first pair (default: %(default)s)")
    p.add_argument(
        "--two-view",
        type=int,
        default=0,
        metavar="LAG",
        help="the two-view check at the ground-truth poses with pairs LAG apart (a real recording: no "
        "exact depth needed), e.g. --two-view 1 --every 1",
    )
    args = p.parse_args(argv)
    from prism_ros.datasets import EurocDataset

    ds = EurocDataset(
        args.path,
        start=args.start,
        frames=args.frames,
        stereo_downscale=args.downscale,
        sigma_d=args.sigma_d,
        stereo_matcher=args.matcher,
        use_imu=False,
    )
    idx = list(range(0, len(ds) - args.two_view, max(1, args.every)))
    if args.two_view > 0:
        print(json.dumps(evaluate_stereo_two_view(ds, idx, args.two_view), indent=2))
        return 0
    ds.stereo.compute(*ds.raw_pair(idx[0]))  # warm-up (OpenCV allocations)
    print(json.dumps(evaluate_stereo(ds, idx), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
