"""Tracking quality and recovery: is a track ok, doubtful or lost, and re-tracking when it is not.

* :func:`failure`: why a track failed, or None.
* :meth:`Recovery.assess`: :class:`Quality` ``LOST`` on a failure; ``DOUBTFUL`` when the inlier ratio is
  below ``gap_trust_inlier_ratio`` after a gap, in a relocalisation, or well below the recent average
  (``doubt_inlier_drop``); ``OK`` otherwise.
* :meth:`Recovery.starts`: bounded starting poses, the last good pose first (all when relocalising).
* :meth:`Recovery.recover`: re-track from each start under a broad prior, wide to normal association, one level coarser;
  the best is refined normally and must have inliers on ``tracking_min_inlier_ratio`` of all valid pixels.

Design: docs/design.md, "Tracking loss and recovery"; the constants are declared parameters
(:data:`prism_ros.core.config.FILTER_PARAMS`, section "recovery").
"""

from __future__ import annotations

import enum
from typing import Callable, List, Optional

import numpy as np

from . import se3

__all__ = ["Quality", "Recovery", "failure"]


class Quality(enum.Enum):
    OK = "ok"
    DOUBTFUL = "doubtful"
    LOST = "lost"


def failure(tr, render, cfg, of_all: bool = False) -> Optional[str]:
    """Why ``tr`` (a TrackResult against ``render``) counts as a tracking failure, or None.  The inlier ratio is of
    the pixels the map covers; ``of_all`` (a recovered track) counts the inliers among all valid pixels.
    """
    if render.valid_fraction <= 0.02:
        return f"map covers {100 * render.valid_fraction:.1f}% of the view"
    ratio = _inliers_of_all(tr) if of_all else tr.inlier_ratio
    if ratio < cfg.tracking_min_inlier_ratio:
        return f"inlier ratio {ratio:.2f}" + (" of all valid pixels" if of_all else "")
    if not np.all(np.isfinite(tr.cov)) or np.linalg.eigvalsh(tr.cov).min() <= 0:
        return "degenerate Hessian"
    if tr.prior_mahalanobis2 > cfg.tracking_max_prior_mahalanobis2:
        return f"jump of {np.sqrt(tr.prior_mahalanobis2):.0f} sigma from the prediction"
    return None


def _inliers_of_all(tr) -> float:
    return tr.n_icp / max(1, tr.n_valid)


def _diag_sigma(sigma_m: float, sigma_rad: float) -> np.ndarray:
    return np.diag(np.square([sigma_m] * 3 + [sigma_rad] * 3))


class Recovery:
    """Recovery state of one filter: the running inlier average and the round robin of starts.

    ``render(frame, T_w_c, coarse)`` raycasts; ``track(frame, render, T, prior, finest_level, max_iterations, params)``
    tracks.
    """

    def __init__(
        self, cfg, render: Callable, track: Callable, track_params: dict, finest_level: int, coarse_finest_level: int
    ):
        self.cfg = cfg
        self._render, self._track = render, track
        self.track_params = track_params
        self.finest_level, self.coarse_finest_level = finest_level, coarse_finest_level
        a, m = cfg.recovery_perturbation_rad, cfg.recovery_perturbation_m
        #: body-frame (rho, phi) offsets: look left / right / up / down, step forward / back
        self.perturbations = [
            np.array(d, float)
            for d in (
                (0, 0, 0, 0, a, 0),
                (0, 0, 0, 0, -a, 0),
                (0, 0, 0, a, 0, 0),
                (0, 0, 0, -a, 0, 0),
                (0, 0, m, 0, 0, 0),
                (0, 0, -m, 0, 0, 0),
            )
        ]
        self.broad_prior = _diag_sigma(cfg.recovery_prior_sigma_m, cfg.recovery_prior_sigma_rad)
        self.lost_sigma = _diag_sigma(cfg.lost_pose_sigma_m, cfg.lost_pose_sigma_rad)
        self.reset()

    def reset(self) -> None:
        self.inlier_average: Optional[float] = None  # over tracked frames
        self.turn = 0  # round robin over the starting points

    def tracked(self, inlier_ratio: float) -> None:
        """A frame was tracked with ``inlier_ratio``: update the running average."""
        a = self.inlier_average
        self.inlier_average = inlier_ratio if a is None else a + self.cfg.inlier_average_weight * (inlier_ratio - a)

    def assess(self, tr, render, after_gap: bool):
        """(Quality, reason) of a plain track."""
        why = failure(tr, render, self.cfg)
        if why is not None:
            return Quality.LOST, why
        c, r = self.cfg, tr.inlier_ratio
        low = r < c.gap_trust_inlier_ratio
        dropped = self.inlier_average is not None and r < c.doubt_inlier_drop * self.inlier_average
        if low and (after_gap or dropped):
            return Quality.DOUBTFUL, f"doubtful: inlier ratio {r:.2f}"
        return Quality.OK, ""

    def starts(self, T_last: np.ndarray, T_pred: np.ndarray, all_starts: bool = False) -> List[np.ndarray]:
        """This frame's starting poses: ``T_last`` first, then the next ``recovery_max_starts - 1``
        others in turn (all of them with ``all_starts``)."""
        others = [T_last @ se3.exp(d) for d in self.perturbations]
        if np.linalg.norm(se3.log(se3.inv(T_last) @ T_pred)) > self.cfg.recovery_same_start:
            others.insert(0, T_pred)  # (at rest, e.g. after a gap, it is the last pose)
        n = len(others) if all_starts else min(self.cfg.recovery_max_starts - 1, len(others))
        picked = [others[(self.turn + j) % len(others)] for j in range(n)]
        self.turn = (self.turn + n) % len(others)
        return [T_last] + picked

    def recover(self, frame, starts: List[np.ndarray]):
        """The refined TrackResult of the best start, or None when none tracks."""
        c = self.cfg
        best = None
        for T in starts:
            tr = None
            for factor in c.recovery_distance_factors:
                render = self._render(frame, T, True)
                if render.valid_fraction <= 0.02:
                    tr = None
                    break
                wide = dict(self.track_params, max_dist=factor * self.track_params["max_dist"])
                tr = self._track(
                    frame, render, T, self.broad_prior, self.coarse_finest_level, 2 * c.track_max_iterations, wide
                )
                T = tr.T_w_c
            if tr is not None and (best is None or _inliers_of_all(tr) > _inliers_of_all(best)):
                best = tr
        if best is None:
            return None
        render = self._render(frame, best.T_w_c, False)
        tr = self._track(
            frame, render, best.T_w_c, self.lost_sigma, self.finest_level, c.track_max_iterations, self.track_params
        )
        return tr if failure(tr, render, c, of_all=True) is None else None
