"""Keyframe pose graph on GTSAM's incremental smoother (iSAM2).

Contract:
  * Variables are keyframe poses ``X_k = T_map_k`` (4x4), keyed by non-negative, strictly increasing ints.  The map
    frame starts at the odom frame: the first keyframe gets a prior at its odom pose with a tiny covariance (the
    gauge), every later one a between factor from the previously added keyframe built from the filter's odometry.
  * Loop closures are between factors wrapped in a Cauchy robust kernel whose scale is in whitened units (the
    residual divided by the closure's own standard deviation); odometry factors and the prior are plain Gaussians.
    Gate closures with :meth:`PoseGraph.check_loop` first; the kernel's scale must suit the gate (see
    :class:`PoseGraph`).
  * Everything added is staged until :meth:`PoseGraph.update`, which runs one iSAM2 step (a few more after a loop
    closure).  Estimates and marginals reflect the last update; :meth:`PoseGraph.pose` also answers for a staged
    keyframe (its initial guess).
  * Covariances in and out follow :mod:`prism_ros.core.se3`: right perturbations ``T = T_bar @ Exp(xi)`` with
    ``xi = (rho, phi)``, translation first.  GTSAM's Pose3 uses the same right perturbation with the rotation first,
    so converting is a permutation of the two 3-blocks (:func:`to_gtsam_cov`, :func:`from_gtsam_cov`).
  * Not thread-safe: one thread owns an instance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import gtsam
import numpy as np

from prism_ros.core import se3

__all__ = ["to_gtsam_cov", "from_gtsam_cov", "LoopCheck", "PoseGraph"]

# xi_gtsam = _P @ xi_ours: (rho, phi) -> (phi, rho).  _P is its own inverse.
_P = np.zeros((6, 6))
_P[:3, 3:] = np.eye(3)
_P[3:, :3] = np.eye(3)

#: Standard deviation (m and rad) of the gauge prior on the first keyframe.
PRIOR_SIGMA = 1e-6
#: Default Cauchy scale for loop closures: about sqrt(22.46), the chi-square 99.9 % point for 6 dof.
DEFAULT_LOOP_KERNEL_SCALE = 5.0
#: At most this many extra iSAM2 iterations after an update that carried a loop closure (fewer once an iteration
#: relinearises nothing).
LOOP_EXTRA_ITERATIONS = 4


def to_gtsam_cov(cov: np.ndarray) -> np.ndarray:
    """Our 6x6 pose covariance, (rho, phi) order -> GTSAM's Pose3 order (omega, v).  Exact: both are right
    perturbations through the same exponential map."""
    cov = np.asarray(cov, dtype=np.float64)
    return _P @ cov @ _P.T


def from_gtsam_cov(cov: np.ndarray) -> np.ndarray:
    """GTSAM's Pose3 covariance (omega, v) -> ours (rho, phi).  Inverse of :func:`to_gtsam_cov`."""
    cov = np.asarray(cov, dtype=np.float64)
    return _P.T @ cov @ _P


def _symmetrise(cov: np.ndarray) -> np.ndarray:
    return 0.5 * (cov + cov.T)


def _gaussian(cov: np.ndarray) -> gtsam.noiseModel.Gaussian:
    cov = np.asarray(cov, dtype=np.float64)
    if cov.shape != (6, 6):
        raise ValueError(f"covariance must be 6x6, got {cov.shape}")
    return gtsam.noiseModel.Gaussian.Covariance(_symmetrise(to_gtsam_cov(cov)))


@dataclass
class LoopCheck:
    """How far a proposed loop closure lies from the current estimate (what :meth:`PoseGraph.check_loop` returns)."""

    #: Squared Mahalanobis distance of ``residual`` under ``cov`` (chi-square with 6 dof if the closure is right).
    mahalanobis2: float
    #: (6,) ours: ``Log((X_a^-1 X_b)_est^-1 @ T_a_b_measured)``.
    residual: np.ndarray
    #: (6, 6) the residual's covariance: the estimate's relative marginal plus the measurement's covariance.
    cov: np.ndarray


class PoseGraph:
    """Keyframe poses, odometry between consecutive keyframes and robust loop closures, smoothed by iSAM2."""

    def __init__(self, loop_kernel_scale: float = DEFAULT_LOOP_KERNEL_SCALE, relinearize_threshold: float = 0.01):
        """``loop_kernel_scale``: the Cauchy kernel's scale k (whitened units) on loop closure factors only.
        ``relinearize_threshold``: iSAM2's relinearisation threshold on the tangent-space update (rad / m); every
        update checks it.

        Choosing k: the Cauchy cost is not convex, and seen from the drifted odometry-only estimate a closure whose
        residual is more than about k standard deviations of the graph's own relative uncertainty (roughly
        ``sqrt(check_loop(...).mahalanobis2)`` when the closure's covariance is the tighter) sits in a local minimum
        where the kernel ignores it.  So k must be at least the square root of the gate used with
        :meth:`check_loop`, or correct, gated closures are silently dropped; the default matches a chi-square 99.9 %
        gate for 6 dof.  Closures far beyond the gate are still down-weighted."""
        if loop_kernel_scale <= 0.0:
            raise ValueError("loop_kernel_scale must be positive")
        params = gtsam.ISAM2Params()
        params.setRelinearizeThreshold(float(relinearize_threshold))
        params.relinearizeSkip = 1
        self._isam = gtsam.ISAM2(params)
        self._loop_kernel = gtsam.noiseModel.mEstimator.Cauchy.Create(float(loop_kernel_scale))
        self._new_factors = gtsam.NonlinearFactorGraph()
        self._new_values = gtsam.Values()
        self._staged_loops = 0
        self._keys: List[int] = []
        self._in_smoother: set = set()
        self._staged_keys: List[int] = []
        self._prev_odom: Optional[np.ndarray] = None
        self._n_loops = 0
        self._last_update_ms = 0.0

    # ------------------------------------------------------------------ building
    def add_keyframe(self, key: int, T_odom_k: np.ndarray, rel_cov: Optional[np.ndarray]) -> None:
        """Stage keyframe ``key`` at odom pose ``T_odom_k``.  The first one gets the gauge prior at ``T_odom_k``
        (``rel_cov`` is ignored); each later one a between factor from the previously added keyframe with measurement
        ``inv(T_odom_prev) @ T_odom_k`` and covariance ``rel_cov`` (ours, 6x6: the filter's relative-motion covariance
        between the two keyframes).  Its initial value is the previous keyframe's current estimate composed with that
        measurement.  Keys must be non-negative and strictly increasing."""
        key = int(key)
        T_odom_k = np.asarray(T_odom_k, dtype=np.float64)
        if key < 0 or (self._keys and key <= self._keys[-1]):
            raise ValueError(f"keyframe keys must be non-negative and increasing, got {key} after {self._keys[-1:]}")
        if not self._keys:
            noise = gtsam.noiseModel.Isotropic.Sigma(6, PRIOR_SIGMA)
            self._new_factors.add(gtsam.PriorFactorPose3(key, gtsam.Pose3(T_odom_k), noise))
            initial = T_odom_k
        else:
            if rel_cov is None:
                raise ValueError("rel_cov is required for every keyframe after the first")
            prev = self._keys[-1]
            Z = se3.inv(self._prev_odom) @ T_odom_k
            self._new_factors.add(gtsam.BetweenFactorPose3(prev, key, gtsam.Pose3(Z), _gaussian(rel_cov)))
            initial = self.pose(prev) @ Z
        self._new_values.insert(key, gtsam.Pose3(initial))
        self._keys.append(key)
        self._staged_keys.append(key)
        self._prev_odom = T_odom_k.copy()

    def add_loop(self, key_a: int, key_b: int, T_a_b: np.ndarray, cov: np.ndarray) -> None:
        """Stage a loop closure: measurement ``T_a_b`` of ``X_a^-1 X_b`` with covariance ``cov`` (ours) under the
        Cauchy kernel.  Both keyframes must have been added (staged ones count)."""
        key_a, key_b = int(key_a), int(key_b)
        for k in (key_a, key_b):
            if not self._known(k):
                raise KeyError(f"unknown keyframe {k}")
        if key_a == key_b:
            raise ValueError("a loop closure needs two different keyframes")
        noise = gtsam.noiseModel.Robust.Create(self._loop_kernel, _gaussian(cov))
        pose = gtsam.Pose3(np.asarray(T_a_b, dtype=np.float64))
        self._new_factors.add(gtsam.BetweenFactorPose3(key_a, key_b, pose, noise))
        self._staged_loops += 1
        self._n_loops += 1

    def update(self) -> float:
        """Run one iSAM2 update with everything staged and, when a loop closure was staged, up to
        :data:`LOOP_EXTRA_ITERATIONS` more (stopping once one relinearises nothing), so the closure converges; return
        the wall time in ms (0.0, doing nothing, when nothing is staged).  Cost: iSAM2's (the cliques the new factors
        and relinearised variables touch, i.e. the whole loop after a closure), no per-keyframe Python work."""
        if self._new_factors.size() == 0:
            return 0.0
        t0 = time.perf_counter()
        self._isam.update(self._new_factors, self._new_values)
        for _ in range(LOOP_EXTRA_ITERATIONS if self._staged_loops else 0):
            if self._isam.update().getVariablesRelinearized() == 0:
                break
        self._last_update_ms = (time.perf_counter() - t0) * 1e3
        self._in_smoother.update(self._staged_keys)
        self._staged_keys = []
        self._new_factors = gtsam.NonlinearFactorGraph()
        self._new_values = gtsam.Values()
        self._staged_loops = 0
        return self._last_update_ms

    # ------------------------------------------------------------------ queries
    def _known(self, key: int) -> bool:
        return key in self._in_smoother or self._new_values.exists(key)

    def _require_smoothed(self, key: int) -> int:
        key = int(key)
        if key not in self._in_smoother:
            raise KeyError(f"keyframe {key} is not in the smoother (unknown, or staged until update())")
        return key

    def pose(self, key: int) -> np.ndarray:
        """Current estimate ``T_map_key`` (4x4); a staged keyframe's initial guess until the next update."""
        key = int(key)
        if key in self._in_smoother:
            return self._isam.calculateEstimatePose3(key).matrix()
        if self._new_values.exists(key):
            return self._new_values.atPose3(key).matrix()
        raise KeyError(f"unknown keyframe {key}")

    def poses(self) -> Dict[int, np.ndarray]:
        """All current estimates ``{key: T_map_key}``, staged keyframes at their initial guesses.  O(N)."""
        out: Dict[int, np.ndarray] = {}
        if self._in_smoother:
            est = self._isam.calculateEstimate()
            out.update((k, est.atPose3(k).matrix()) for k in self._keys if k in self._in_smoother)
        out.update((k, self._new_values.atPose3(k).matrix()) for k in self._staged_keys)
        return out

    def marginal(self, key: int) -> np.ndarray:
        """Marginal covariance (ours, 6x6) of keyframe ``key``'s pose, from iSAM2's Bayes tree at its linearisation
        point.  The keyframe must have been through an update.  Cost grows with the key's depth in the Bayes tree."""
        return _symmetrise(from_gtsam_cov(self._isam.marginalCovariance(self._require_smoothed(key))))

    def _joint(self, key_a: int, key_b: int) -> np.ndarray:
        """Joint marginal covariance (ours, 12x12, blocks in the order a, b)."""
        jm = self._isam.jointMarginalCovariance([key_a, key_b])
        out = np.zeros((12, 12))
        for i, ki in enumerate((key_a, key_b)):
            for j, kj in enumerate((key_a, key_b)):
                out[6 * i : 6 * i + 6, 6 * j : 6 * j + 6] = from_gtsam_cov(jm.at(ki, kj))
        return _symmetrise(out)

    def relative_marginal(self, key_a: int, key_b: int) -> np.ndarray:
        """Covariance (ours, 6x6) of the right perturbation of ``X_a^-1 X_b``, from the joint marginal of
        ``(X_a, X_b)``: with ``A = Ad(inv(X_a^-1 X_b))``, ``J = [-A, I]`` and ``Cov = J Joint J^T``.  Cost: a joint
        marginal from iSAM2's Bayes tree, up to O(graph) after a loop closure; meant for a few candidates per
        keyframe, not for every keyframe."""
        key_a, key_b = self._require_smoothed(key_a), self._require_smoothed(key_b)
        if key_a == key_b:
            return np.zeros((6, 6))
        T_ab = se3.inv(self.pose(key_a)) @ self.pose(key_b)
        J = np.hstack([-se3.adjoint(se3.inv(T_ab)), np.eye(6)])
        return _symmetrise(J @ self._joint(key_a, key_b) @ J.T)

    def check_loop(self, key_a: int, key_b: int, T_a_b: np.ndarray, cov: np.ndarray) -> LoopCheck:
        """Gate a proposed closure before :meth:`add_loop`: residual ``Log((X_a^-1 X_b)_est^-1 @ T_a_b)``, covariance
        ``relative_marginal(key_a, key_b) + cov``, and its squared Mahalanobis distance (compare with a chi-square
        quantile for 6 dof).  Same cost as :meth:`relative_marginal`."""
        T_ab_est = se3.inv(self.pose(key_a)) @ self.pose(key_b)
        residual = se3.log(se3.inv(T_ab_est) @ np.asarray(T_a_b, dtype=np.float64))
        S = _symmetrise(self.relative_marginal(key_a, key_b) + np.asarray(cov, dtype=np.float64))
        d2 = float(residual @ np.linalg.solve(S, residual))
        return LoopCheck(mahalanobis2=d2, residual=residual, cov=S)

    def correction(self, key: int, T_odom_k: np.ndarray) -> np.ndarray:
        """``T_map_odom`` implied by keyframe ``key`` whose odom pose is ``T_odom_k``: ``pose(key) @ inv(T_odom_k)``."""
        return self.pose(key) @ se3.inv(np.asarray(T_odom_k, dtype=np.float64))

    @property
    def keys(self) -> List[int]:
        """Keyframe keys in the order added (staged ones included)."""
        return list(self._keys)

    @property
    def n_loops(self) -> int:
        """Loop closures added so far (staged ones included)."""
        return self._n_loops

    @property
    def last_update_ms(self) -> float:
        """Wall time of the last update that did work, in ms."""
        return self._last_update_ms
