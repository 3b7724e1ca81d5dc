"""Loop-closure candidates: the frozen submaps a keyframe may be looking at.

A frozen submap keeps a few hundred surface samples (:meth:`~prism_ros.core.backend.submaps.Submap.freeze`).  It is a
candidate when at least ``min_overlap`` of them lie in the keyframe's view at the graph's estimate of the keyframe
relative to the submap's anchor (:func:`in_view`).  When no submap is, the view is searched within the uncertainty of
that relative pose (:func:`within_uncertainty`): the keyframe's and the anchor's marginals added, which bounds the
relative pose's covariance where their errors are positively correlated (a chain of odometry from a common past, a
loop closed since), and costs one marginal a keyframe and one per anchor (cached by the caller).  A submap found so is
proposed from the pose that saw it; :func:`plausible` then checks that pose against the exact relative marginal,
computed only for the candidates tried.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from .. import se3
from .submaps import Submap, best_view

__all__ = ["eligible", "in_view", "within_uncertainty", "plausible"]

#: (overlap, submap, predicted pose of the keyframe in the submap's anchor frame)
Candidate = Tuple[float, Submap, np.ndarray]


def eligible(submaps: Sequence[Submap], min_gap: int, retry_after: Dict[int, int], key: int) -> List[Submap]:
    """The frozen ``submaps`` (the active one last) with surface samples, at least ``min_gap`` older than the active
    one, except those that failed for keyframe ``key`` a moment ago (``retry_after``: submap id -> the first key to try
    it again)."""
    active_id = submaps[-1].id if submaps else -1
    return [
        s
        for s in submaps
        if s.frozen
        and s.id <= active_id - min_gap
        and s.samples is not None
        and len(s.samples) > 0
        and retry_after.get(s.id, -1) < key
    ]


def in_view(
    subs: Sequence[Submap],
    X_k: np.ndarray,
    pose: Callable[[int], np.ndarray],
    seen: Callable[[np.ndarray, np.ndarray], float],
    min_overlap: float,
) -> Tuple[List[Candidate], List[Candidate]]:
    """(in view, the rest): ``subs`` with the overlap ``seen(samples, T_a_c)`` of the keyframe at ``X_k`` (map frame)
    in each submap's anchor frame (``pose(anchor_key)``), split at ``min_overlap``."""
    near, rest = [], []
    for s in subs:
        T_a_c = se3.inv(pose(s.anchor_key)) @ X_k
        f = seen(s.samples, T_a_c)
        (near if f >= min_overlap else rest).append((f, s, T_a_c))
    return near, rest


def within_uncertainty(
    rest: Sequence[Candidate],
    M_k: np.ndarray,
    anchor_cov: Callable[[int], np.ndarray],
    max_sigma: float,
    seen: Callable[[np.ndarray, np.ndarray], float],
    min_overlap: float,
    depth_max: float,
) -> List[Candidate]:
    """The submaps of ``rest`` (from :func:`in_view`) that reach ``min_overlap`` within ``max_sigma`` of the relative
    pose under ``M_k + Ad(T_a_c^-1) M_a Ad(T_a_c^-1)^T`` (:func:`~prism_ros.core.backend.submaps.best_view`: 36 poses
    along its principal axes), with the pose that saw them; ``M_k`` the keyframe's marginal, ``anchor_cov(key)`` an
    anchor's (right perturbations); ``depth_max`` the farthest depth ``seen`` counts."""
    out = []
    for _, s, T in rest:
        A = se3.adjoint(se3.inv(T))
        C = M_k + A @ anchor_cov(s.anchor_key) @ A.T
        # a searched pose moves the camera by at most max_sigma sqrt(largest eigenvalue): a submap all of whose
        # samples stay beyond the depth range is out of reach (a cheap test before the search)
        reach = depth_max + max_sigma * np.sqrt(max(float(np.linalg.eigvalsh(0.5 * (C + C.T))[-1]), 0.0))
        if np.min(np.linalg.norm(s.samples - T[:3, 3], axis=1)) > reach:
            continue
        f, T_seen = best_view(s.samples, T, C, max_sigma, seen)
        if f >= min_overlap:
            out.append((f, s, T_seen))
    return out


def plausible(T_est: np.ndarray, T_seen: np.ndarray, rel_cov: np.ndarray, max_sigma: float) -> bool:
    """Whether the pose ``T_seen`` lies within ``max_sigma`` (Mahalanobis) of the estimate ``T_est`` under the
    relative pose's covariance ``rel_cov`` (right perturbation)."""
    xi = se3.log(se3.inv(T_est) @ T_seen)
    try:
        d2 = float(xi @ np.linalg.solve(0.5 * (rel_cov + rel_cov.T), xi))
    except np.linalg.LinAlgError:
        return False
    return d2 <= max_sigma**2 * (1.0 + 1e-9)
