"""Odometry controls for the filter's dynamics (``control_mode: odometry``); the IMU's are in :mod:`prism_ros.core.imu`.

:class:`OdomBuffer` gives a :class:`prism_ros.core.types.Control`: the camera's motion ``T_prev_curr`` between
two filter steps and its covariance (right perturbation, (rho, phi)), from the odometry child frame's (taken as
the base frame) relative pose between the two stamps, interpolated, moved into the camera with ``T_base_camera``.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from typing import Deque, Optional, Tuple

import numpy as np

from . import se3
from .types import Control

__all__ = ["OdomBuffer"]


class OdomBuffer:
    """Thread-safe bounded buffer of odometry poses (stamp, T_odom_base, 6x6 twist covariance).

    The increment's covariance is the messages' twist covariance (child frame, sigma_v^2 dt^2 over the interval) floored
    at ``min_sigma_m`` / ``min_sigma_rad``; without one (all zeros) ``rel_sigma`` of the motion plus the floors.
    """

    def __init__(
        self, maxlen: int = 2000, rel_sigma: float = 0.05, min_sigma_m: float = 0.002, min_sigma_rad: float = 0.002
    ):
        self._buf: Deque[Tuple[float, np.ndarray, Optional[np.ndarray]]] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.rel_sigma = rel_sigma
        self.min_sigma_m = min_sigma_m
        self.min_sigma_rad = min_sigma_rad

    def add(self, stamp: float, T_o_b: np.ndarray, twist_cov: Optional[np.ndarray] = None) -> None:
        """Store the base pose ``T_o_b`` (4x4, odometry frame) at ``stamp`` (s) with the message's 6x6 twist
        covariance; a stamp not newer than the last is dropped, one more than 1 s older clears the buffer."""
        cov = None
        if twist_cov is not None:
            cov = np.asarray(twist_cov, dtype=np.float64).reshape(6, 6)
            if not np.all(np.isfinite(cov)) or not np.any(cov):
                cov = None  # unknown (all zeros) or unusable
        with self._lock:
            if self._buf and stamp <= self._buf[-1][0]:
                if stamp < self._buf[-1][0] - 1.0:
                    self._buf.clear()
                else:
                    return
            self._buf.append((float(stamp), np.asarray(T_o_b, dtype=np.float64), cov))

    def clear(self) -> None:
        with self._lock:
            self._buf.clear()

    def __len__(self) -> int:
        return len(self._buf)

    def _samples(self):
        with self._lock:
            return list(self._buf)

    def pose_at(self, t: float) -> Optional[np.ndarray]:
        """T_odom_base at ``t``, interpolated on SE(3) between the neighbouring messages; None outside
        the buffer's span (50 ms of slack)."""
        samples = self._samples()
        if not samples:
            return None
        stamps = [s[0] for s in samples]
        if t < stamps[0] - 0.05 or t > stamps[-1] + 0.05:
            return None
        j = bisect.bisect_left(stamps, t)
        if j <= 0:
            return samples[0][1]
        if j >= len(samples):
            return samples[-1][1]
        (t0, T0, _), (t1, T1, _) = samples[j - 1], samples[j]
        a = 0.0 if t1 <= t0 else (t - t0) / (t1 - t0)
        return T0 @ se3.exp(a * se3.log(se3.inv(T0) @ T1))

    def _twist_cov(self, t0: float, t1: float) -> Optional[np.ndarray]:
        """Mean twist covariance of the messages over [t0, t1] (None if any lacks one)."""
        covs = [c for t, _, c in self._samples() if t0 - 0.05 <= t <= t1 + 0.05]
        if not covs or any(c is None for c in covs):
            return None
        return np.mean(covs, axis=0)

    def increment(self, t0: float, t1: float, T_base_camera: np.ndarray) -> Optional[Control]:
        """Camera motion between t0 and t1 from odometry, or None when not covered."""
        P0, P1 = self.pose_at(t0), self.pose_at(t1)
        if P0 is None or P1 is None:
            return None
        dT_b = se3.inv(P0) @ P1
        floor = np.diag([self.min_sigma_m**2] * 3 + [self.min_sigma_rad**2] * 3)
        twist_cov = self._twist_cov(t0, t1)
        if twist_cov is not None:
            cov_b = twist_cov * (t1 - t0) ** 2 + floor
        else:
            xi = se3.log(dT_b)
            s_t = self.min_sigma_m + self.rel_sigma * float(np.linalg.norm(xi[:3]))
            s_r = self.min_sigma_rad + self.rel_sigma * float(np.linalg.norm(xi[3:]))
            cov_b = np.diag([s_t**2] * 3 + [s_r**2] * 3)
        dT_c = se3.inv(T_base_camera) @ dT_b @ T_base_camera
        # xi_b = Ad(T_b_c) xi_c  =>  xi_c = Ad(T_c_b) xi_b
        Ad = se3.adjoint(se3.inv(T_base_camera))
        cov_c = Ad @ cov_b @ Ad.T
        return Control(T_prev_curr=dT_c, cov=0.5 * (cov_c + cov_c.T))
