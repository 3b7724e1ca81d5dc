"""Motion controls for the filter's dynamics from IMU or wheel/visual odometry messages.

Both produce a :class:`prism_ros.core.types.Control`: the camera's motion
``T_prev_curr`` between two filter steps and its covariance in the right
perturbation convention (xi = (rho, phi), translation first).

* IMU (``control_mode: imu``): the same integration as the offline path
  (:class:`prism_ros.core.imu.ImuIntegrator`, used by the EuRoC reader): gyro and
  accelerometer with gravity pre-integrated between the two frame stamps, the
  IMU's initial velocity taken from the filter's velocity estimate.  Gravity (in
  the filter's world) and the gyro bias are estimated at the first control from the
  ``imu_init_window_s`` before the previous frame when it is still
  (:func:`prism_ros.core.imu_online.detect_motion`).  A moving start is refused: no
  control (constant velocity) until a later window is still or, once the filter's
  poses passed to :meth:`ImuBuffer.control` span ``pose_alignment_s``, gravity comes
  from that pose track (:meth:`ImuBuffer.align_from_poses`).
  :meth:`ImuBuffer.refine_biases` re-estimates both biases from a recent pose track.  The covariance comes from the noise densities
  (``imu_*`` parameters) plus the filter's velocity and attitude uncertainty.  The
  IMU frame is placed in the base frame by ``T_base_imu_*`` (default: the base frame).
* Odometry (``control_mode: odometry``): the relative pose of the odometry's
  child frame (assumed to be the base frame) between the two stamps, linearly
  interpolated, moved into the camera frame with ``T_base_camera``.
"""
from __future__ import annotations

import bisect
import math
import threading
from collections import deque
from typing import Deque, Optional, Tuple

import numpy as np

from . import se3
from .imu import ZUPT_WINDOW_S, ImuData, ImuIntegrator, ImuNoise, pose_window
from .types import Control

__all__ = ["ImuBuffer", "OdomBuffer"]


class ImuBuffer:
    """Thread-safe bounded buffer of IMU samples (stamp, gyro (3,), specific force (3,)),
    and the IMU control between two frames (:meth:`control`).

    ``T_I_C`` (camera -> IMU frame, i.e. ``inv(T_base_imu) T_base_camera``) and the
    noise densities are fixed at construction.  Gravity and the gyro bias are
    estimated at the first :meth:`control` and forgotten by :meth:`clear` /
    :meth:`reset_alignment` (call it whenever the filter restarts: its world moves).
    """

    COVERAGE_TOL_S = 0.05

    def __init__(self, maxlen: int = 4000, T_I_C: Optional[np.ndarray] = None, noise: Optional[ImuNoise] = None,
                 init_window_s: float = 1.0,
                 max_gap_s: Optional[float] = None, pose_alignment_s: Optional[float] = 1.0):
        # the samples: rows [_lo, _hi) of arrays twice the bound (appending is O(1), amortised;
        # a window is two searchsorted calls and a slice, not a conversion of every sample:
        # a deque of tuples converted per frame held the node's GIL ~3 ms a frame at 200 Hz)
        if int(maxlen) < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        self.maxlen = int(maxlen)
        cap = 2 * self.maxlen
        self._t = np.empty(cap)
        self._w = np.empty((cap, 3))
        self._a = np.empty((cap, 3))
        self._lo = self._hi = 0
        self._lock = threading.Lock()
        self.T_I_C = np.eye(4) if T_I_C is None else np.asarray(T_I_C, dtype=np.float64)
        self.noise = noise or ImuNoise()
        self.init_window_s = float(init_window_s)
        #: an interval with a larger gap between consecutive samples is not covered (None: no check)
        self.max_gap_s = None if max_gap_s is None else float(max_gap_s)
        #: moving start: gravity from this much of the filter's pose track (None: wait for a still window)
        self.pose_alignment_s = pose_alignment_s
        self._poses: list = []  # [(t, T_w_c)] passed to control() while the alignment is refused
        self._integ: Optional[ImuIntegrator] = None
        #: None before the first control; then whether the start window looked static
        self.static_start: Optional[bool] = None
        #: MotionCheck of the last static-alignment attempt (its ``reasons`` say why it was refused)
        self.init_check = None

    def add(self, stamp: float, gyro, acc=None) -> bool:
        """Store one sample; False (not stored) for a non-finite one or an out-of-order duplicate.

        ``acc`` is the specific force (m/s^2, sensor_msgs/Imu ``linear_acceleration``:
        about +9.81 up at rest); the noise densities, not the message's covariance, set the
        control's covariance.
        """
        wx, wy, wz = (float(v) for v in gyro)
        ax, ay, az = (0.0, 0.0, 0.0) if acc is None else (float(v) for v in acc)
        stamp = float(stamp)
        if not all(math.isfinite(v) for v in (stamp, wx, wy, wz, ax, ay, az)):
            return False
        with self._lock:
            if self._hi > self._lo and stamp <= self._t[self._hi - 1]:
                if stamp < self._t[self._hi - 1] - 1.0:
                    self._lo = self._hi = 0  # time jumped back
                    self._integ = None
                    self.static_start = None
                    self._poses = []
                else:
                    return False
            if self._hi == len(self._t):  # at the end of the arrays: move the kept rows to the front
                n = self._hi - self._lo
                for arr in (self._t, self._w, self._a):
                    arr[:n] = arr[self._lo:self._hi]
                self._lo, self._hi = 0, n
            i = self._hi
            self._t[i] = stamp
            self._w[i, 0], self._w[i, 1], self._w[i, 2] = wx, wy, wz
            self._a[i, 0], self._a[i, 1], self._a[i, 2] = ax, ay, az
            self._hi += 1
            if self._hi - self._lo > self.maxlen:
                self._lo += 1
        return True

    def clear(self) -> None:
        with self._lock:
            self._lo = self._hi = 0
            self._integ = None
            self.static_start = None
            self._poses = []

    def reset_alignment(self) -> None:
        """Forget gravity and the gyro bias (re-estimated at the next control)."""
        with self._lock:
            self._integ = None
            self.static_start = None
            self._poses = []

    def __len__(self) -> int:
        with self._lock:
            return self._hi - self._lo

    def data(self, t0: float = -np.inf, t1: float = np.inf) -> ImuData:
        """The samples on [t0, t1], plus the last one before t0 and the first one after t1 (copies)."""
        with self._lock:
            lo, hi = self._lo, self._hi
            if hi == lo:
                return ImuData(np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)))
            t = self._t[lo:hi]
            i0 = lo + max(int(np.searchsorted(t, t0, side="right")) - 1, 0)
            i1 = lo + min(int(np.searchsorted(t, t1, side="left")) + 1, hi - lo)
            return ImuData(self._t[i0:i1].copy(), self._w[i0:i1].copy(), self._a[i0:i1].copy())

    def median_period_s(self) -> Optional[float]:
        """The median time between consecutive samples of the buffer (None with fewer than two)."""
        with self._lock:
            t = self._t[self._lo:self._hi]
            return float(np.median(np.diff(t))) if len(t) > 1 else None

    def covers(self, t0: float, t1: float) -> bool:
        """Samples span [t0, t1] (within COVERAGE_TOL_S) with no gap over ``max_gap_s`` in it."""
        with self._lock:
            if self._hi == self._lo:
                return False
            first, last = float(self._t[self._lo]), float(self._t[self._hi - 1])
        ok = t1 > t0 and first <= t0 + self.COVERAGE_TOL_S and last >= t1 - self.COVERAGE_TOL_S
        return ok and (self.max_gap_s is None or self.max_gap_in(t0, t1) <= self.max_gap_s)

    def max_gap_in(self, t0: float, t1: float) -> float:
        """The longest time between consecutive samples over [t0, t1] (the ends included)."""
        d = self.data(t0, t1)  # includes the last sample before t0 and the first after t1
        return float(np.max(np.diff(d.t))) if len(d) > 1 else float("inf")

    def control(self, t0: float, t1: float, T_w_c: np.ndarray, nu_c: np.ndarray,
                P_nu: Optional[np.ndarray] = None, Sigma: Optional[np.ndarray] = None) -> Optional[Control]:
        """Camera increment from ``t0`` (the previous frame, filter pose ``T_w_c`` and camera
        twist ``nu_c`` = (v, w) with covariance ``P_nu``, pose covariance ``Sigma``) to
        ``t1``, by :meth:`prism_ros.core.imu.ImuIntegrator.control`; None when the
        buffer does not cover [t0, t1]."""
        if not self.covers(t0, t1):
            return None
        period = self.median_period_s()
        rate = 1.0 / period if period else 200.0
        integ = self._integ
        if integ is None:
            # static alignment on the init window just before t0; a moving window is refused
            # (None: the caller keeps its constant-velocity prior) and retried at the next
            # control, until a still window or align_from_poses() gives gravity
            lo = t0 - self.init_window_s
            integ = ImuIntegrator(self.data(lo, t1), self.T_I_C, self.noise)
            integ.rate_hz = rate
            self.static_start = integ.initialise(np.asarray(T_w_c, float), t0 - 0.5 * self.init_window_s,
                                                 self.init_window_s, t_end=t0)
            self.init_check = integ.init_check
            if not self.static_start:
                if not self._pose_fallback(t0, T_w_c):
                    return None
                integ = self._integ
            else:
                with self._lock:
                    self._integ = integ
        integ.imu = self.data(min(t0, t1 - ZUPT_WINDOW_S - 0.05), t1)  # (the stillness test looks back)
        integ.rate_hz = rate
        return integ.control(t0, t1, T_w_c, nu_c, P_nu, Sigma)

    def align_from_poses(self, stamps, T_w_c, pos_sigma_m: float = 5e-3, rot_sigma_rad: float = 1e-3):
        """Moving-start fallback: gravity and the gyro bias from the filter's camera poses
        ``T_w_c`` (K+1, 4, 4) at ``stamps`` (>= 3 poses, ~1 s of tracking); later controls use
        it.  Returns the :class:`prism_ros.core.imu_online.BiasEstimate`, or None when the
        buffer does not cover the stamps."""
        stamps = np.asarray(stamps, float)
        if len(stamps) < 3 or not self.covers(float(stamps[0]), float(stamps[-1])):
            return None
        integ = ImuIntegrator(self.data(stamps[0], stamps[-1]), self.T_I_C, self.noise)
        period = self.median_period_s()
        integ.rate_hz = 1.0 / period if period else 200.0
        est = integ.initialise_from_poses(stamps, T_w_c, pos_sigma_m, rot_sigma_rad)
        if integ.g_w is not None:  # gravity sigma small enough
            with self._lock:
                self._integ = integ
                self._poses = []
            self.static_start = False
        return est

    def _pose_fallback(self, t0: float, T_w_c) -> bool:
        """Record the filter's pose at a refused alignment; align from the poses once they span
        ``pose_alignment_s`` (:meth:`align_from_poses`).  True when aligned now."""
        if self.pose_alignment_s is None:
            return False
        h = self._poses
        win = pose_window(h, t0, T_w_c, self.pose_alignment_s)
        if win is None:
            return False
        self.align_from_poses(*win)
        if self._integ is None:  # not covered or not good enough: slide on
            self._poses = h[1:]
            return False
        return True

    def refine_biases(self, stamps, T_w_c, pos_sigma_m: float = 5e-3, rot_sigma_rad: float = 1e-3):
        """Re-estimate both biases from the filter's recent camera poses (sliding window, see
        :func:`prism_ros.core.imu_online.estimate_biases`); None before the alignment or when
        the buffer does not cover the stamps.  Each bias is applied only when its estimate's
        sigma (largest axis) is below the noise model's ``gyro_bias_sigma`` /
        ``accel_bias_sigma``; the result's ``applied`` says which were."""
        stamps = np.asarray(stamps, float)
        integ = self._integ
        if integ is None or len(stamps) < 3 or not self.covers(float(stamps[0]), float(stamps[-1])):
            return None
        integ.imu = self.data(stamps[0], stamps[-1])
        return integ.refine_biases(stamps, T_w_c, pos_sigma_m, rot_sigma_rad)


class OdomBuffer:
    """Thread-safe bounded buffer of odometry poses (stamp, T_odom_base, 6x6 twist covariance).

    The increment's covariance comes from the messages' own twist covariance when they carry
    one (nav_msgs/Odometry ``twist.covariance``, child frame: sigma_v^2 integrated over the
    interval as sigma_v^2 dt^2, a velocity error that persists over the interval), floored
    at ``min_sigma_m`` / ``min_sigma_rad``; without one (all zeros, as many drivers send),
    it is ``rel_sigma`` of the motion plus the floors."""

    def __init__(self, maxlen: int = 2000, rel_sigma: float = 0.05, min_sigma_m: float = 0.002, min_sigma_rad: float = 0.002):
        self._buf: Deque[Tuple[float, np.ndarray, Optional[np.ndarray]]] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.rel_sigma = rel_sigma
        self.min_sigma_m = min_sigma_m
        self.min_sigma_rad = min_sigma_rad

    def add(self, stamp: float, T_o_b: np.ndarray, twist_cov: Optional[np.ndarray] = None) -> None:
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
