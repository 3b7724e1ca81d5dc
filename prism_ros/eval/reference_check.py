"""Does a trajectory agree with the map its own poses build?  A check of a ground truth before it referees.

For each span of frames, every ``fuse_every``-th frame outside it (and ``margin`` frames either side) is fused at its
pose into one TSDF at the filter's map settings. Then every ``every``-th frame inside the span is registered against
that map, starting from its own pose, with the loop closure's dense registration
(:class:`~prism_ros.core.backend.closure.LoopVerifier`: the filter's tracker under a broad prior, coarse to fine).

How far the registration moves a frame is how far its pose disagrees with the other frames' poses through the depth
images and the intrinsics. For a consistent trajectory that is millimetres. A reference that moves by centimetres
cannot referee errors of that size: an ATE against it measures its own disagreement with these images. Run it on the
ground truth and, with ``--poses``, on an estimate of the same frames, side by side.

Command line::

    python -m prism_ros.eval.reference_check DATA --span FIRST-END [--span ...] [--poses TRAJECTORY.tum]
        [--frames N] [--every 5]

``--span FIRST-END`` checks frames FIRST..END-1 (the data set's indices, as ``error_fit``'s ``#first-last``).

``--poses``: a TUM trajectory in the camera frame (``prism-ros run`` writes ``trajectory.tum``), matched to the
data set's frames by stamp; without it, the data set's ground truth.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from prism_ros.core import se3
from prism_ros.core.backend.closure import LoopVerifier
from prism_ros.core.backend.submaps import Submap, submap_map
from prism_ros.core.image import InvalidFrameError
from prism_ros.datasets.base import FrameLoadError

__all__ = ["SpanCheck", "check_span", "ground_truth", "poses_from_tum", "main"]


@dataclass
class SpanCheck:
    """One span's frames (``index``) and how far registration moved each (NaN: it did not register)."""

    span: Tuple[int, int]
    index: np.ndarray
    moved_m: np.ndarray
    moved_rad: np.ndarray
    sigma_m: np.ndarray  # the registration's own translation sigma, sqrt(trace), from the error model

    def summary(self) -> str:
        ok = np.isfinite(self.moved_m)
        if not ok.any():
            return f"frames {self.span[0]}-{self.span[1] - 1}: none of {len(ok)} registered"
        return (
            f"frames {self.span[0]}-{self.span[1] - 1}: {ok.sum()} of {len(ok)} registered, moved by median "
            f"{100 * np.median(self.moved_m[ok]):.2f} cm (max {100 * self.moved_m[ok].max():.2f}) and "
            f"{np.degrees(np.median(self.moved_rad[ok])):.2f} deg; the registration's sigma "
            f"{100 * np.median(self.sigma_m[ok]):.2f} cm"
        )


def check_span(
    dataset,
    cfg,
    span: Tuple[int, int],
    poses: Optional[Dict[int, np.ndarray]] = None,
    every: int = 5,
    fuse_every: int = 2,
    margin: int = 10,
    min_overlap: float = 0.2,
) -> SpanCheck:
    """Register the frames ``span`` = (first, last + 1) of ``dataset`` (data set indices) against the map of the
    others (module docstring).  ``cfg``: a FilterConfig; ``poses``: index -> camera-to-world pose (default: the
    frames' ground truth); frames without a pose, or whose images do not load, are neither fused nor checked."""
    ver = LoopVerifier(cfg, dataset.camera)
    sub = Submap(0, -1, np.eye(4), submap_map(cfg, 1))  # a map in the poses' frame
    first, last = span
    poses = ground_truth(dataset) if poses is None else poses

    def frame(i):
        try:
            f = dataset[i]
            return ver.frame(f.rgb, f.depth, f.depth_sigma)
        except (FrameLoadError, InvalidFrameError):
            return None

    for i in range(0, len(dataset), max(1, fuse_every)):
        T = poses.get(i)
        fp = None if first - margin <= i < last + margin or T is None else frame(i)
        if fp is not None:
            sub.fuse(fp, i, T, dataset.camera, ver.noise)
    rows = []
    for i in range(first, min(last, len(dataset)), max(1, every)):
        T = poses.get(i)
        fp = None if T is None else frame(i)
        if fp is None:
            continue
        closure = ver.register(fp, sub.map, T, 0.0, min_overlap)
        if closure is None:
            rows.append((i, np.nan, np.nan, np.nan))
            continue
        d = se3.inv(T) @ closure.T_a_c
        moved_rad = float(np.linalg.norm(se3.so3_log(d[:3, :3])))
        rows.append((i, float(np.linalg.norm(d[:3, 3])), moved_rad, float(np.sqrt(np.trace(closure.cov[:3, :3])))))
    r = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return SpanCheck(span, r[:, 0].astype(int), r[:, 1], r[:, 2], r[:, 3])


def ground_truth(dataset) -> Dict[int, np.ndarray]:
    """index -> the frame's ground-truth pose, where it has one."""
    poses = ((i, dataset.gt_pose(i)) for i in range(len(dataset)))
    return {i: T for i, T in poses if T is not None}


def poses_from_tum(dataset, path: str, tol_s: float = 1e-3) -> Dict[int, np.ndarray]:
    """index -> pose: the TUM trajectory ``path`` matched to ``dataset``'s frames by stamp (within ``tol_s``)."""
    from prism_ros.datasets.tum import associate
    from prism_ros.tools.export import read_tum

    stamps, T = read_tum(path)
    return {int(i): T[j] for i, j in associate(dataset.stamps(), stamps, max_difference=tol_s)}


def _span(text: str) -> Tuple[int, int]:
    a, _, b = text.partition("-")
    return int(a), int(b)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prism_ros.eval.reference_check", description=__doc__.split("\n")[0])
    ap.add_argument("data", help="anything prism-ros run reads")
    ap.add_argument("--span", action="append", required=True, metavar="FIRST-END", help="frames first..end-1 (repeat)")
    ap.add_argument("--poses", help="a TUM trajectory to check instead of the ground truth")
    ap.add_argument("--frames", type=int, help="use the first N frames")
    ap.add_argument("--every", type=int, default=5, help="check every N-th frame of a span")
    a = ap.parse_args(argv)
    from prism_ros.config import PrismConfig
    from prism_ros.datasets import open_dataset
    from prism_ros.pipeline import apply_dataset_hints

    ds = open_dataset(a.data, frames=a.frames)
    cfg = apply_dataset_hints(PrismConfig.from_yaml(), ds)[0].filter_config()
    poses = ground_truth(ds) if a.poses is None else poses_from_tum(ds, a.poses)
    print(f"{ds.name}: {a.poses or 'the ground truth'} against its own map")
    for text in a.span:
        print("  " + check_span(ds, cfg, _span(text), poses, a.every).summary(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
