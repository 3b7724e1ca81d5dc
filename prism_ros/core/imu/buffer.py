"""The online IMU path: a bounded buffer of the IMU topic's samples and the control between two frames.

:class:`ImuBuffer` stores samples as they arrive (any thread) and computes the camera increment between two frame stamps
with the offline path's integration (:meth:`prism_ros.core.imu.integrator.ImuIntegrator.control`).  Gravity and the gyro
bias are estimated at the first control from a still ``init_window_s`` window, or, on a moving start, from
``pose_alignment_s`` of the filter's poses (:meth:`ImuBuffer.align_from_poses`); until then there is no control.
:meth:`ImuBuffer.refine_biases` re-estimates both biases from a recent pose track.
"""

from __future__ import annotations

import threading
from typing import Optional

import numpy as np

from ..types import Control
from .alignment import MotionCheck
from .integrator import ZUPT_WINDOW_S, ImuIntegrator, pose_fallback
from .monitor import TIMELINE_JUMP_S, nonfinite_parts
from .preintegration import ImuData, ImuNoise

__all__ = ["ImuBuffer", "TIMELINE_JUMP_S"]


class ImuBuffer:
    """Thread-safe bounded buffer of IMU samples (stamp, gyro (3,), specific force (3,)) and the IMU control
    between two frames (:meth:`control`).  ``T_I_C`` (camera -> IMU, ``inv(T_base_imu) T_base_camera``) and the
    noise densities are fixed; gravity and the gyro bias are estimated at the first :meth:`control` and
    forgotten by :meth:`clear` / :meth:`reset_alignment` (call it whenever the filter's world restarts).
    """

    COVERAGE_TOL_S = 0.05

    def __init__(
        self,
        maxlen: int = 4000,
        T_I_C: Optional[np.ndarray] = None,
        noise: Optional[ImuNoise] = None,
        init_window_s: float = 1.0,
        max_gap_s: Optional[float] = None,
        pose_alignment_s: Optional[float] = 1.0,
    ):
        # the samples: rows [_lo, _hi) of arrays twice the bound (appending is O(1), amortised;
        # a window is two searchsorted calls and a slice, not a conversion of every sample)
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
        self.init_check: Optional[MotionCheck] = None

    def add(self, stamp: float, gyro, acc=None) -> bool:
        """Store one sample; False (not stored) for a non-finite one or one not newer than the last (one more than
        :data:`TIMELINE_JUMP_S` older starts a new timeline: samples and alignment dropped, the sample stored).
        ``acc``: specific force (m/s^2, ``linear_acceleration``); the noise densities set the control's covariance.
        """
        wx, wy, wz = (float(v) for v in gyro)
        ax, ay, az = (0.0, 0.0, 0.0) if acc is None else (float(v) for v in acc)
        stamp = float(stamp)
        if nonfinite_parts(stamp, (wx, wy, wz), (ax, ay, az)):
            return False
        with self._lock:
            if self._hi > self._lo and stamp <= self._t[self._hi - 1]:
                if stamp < self._t[self._hi - 1] - TIMELINE_JUMP_S:
                    self._lo = self._hi = 0  # time jumped back
                    self._integ = None
                    self.static_start = None
                    self._poses = []
                else:
                    return False
            if self._hi == len(self._t):  # at the end of the arrays: move the kept rows to the front
                n = self._hi - self._lo
                for arr in (self._t, self._w, self._a):
                    arr[:n] = arr[self._lo : self._hi]
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
            t = self._t[self._lo : self._hi]
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

    def control(
        self,
        t0: float,
        t1: float,
        T_w_c: np.ndarray,
        nu_c: np.ndarray,
        P_nu: Optional[np.ndarray] = None,
        Sigma: Optional[np.ndarray] = None,
    ) -> Optional[Control]:
        """Camera increment from ``t0`` (filter pose ``T_w_c``, camera twist ``nu_c`` = (v, w) with covariance ``P_nu``,
        pose covariance ``Sigma``) to ``t1`` (:meth:`ImuIntegrator.control`); None when [t0, t1] is not covered.
        """
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
            self.static_start = integ.initialise(
                np.asarray(T_w_c, float), t0 - 0.5 * self.init_window_s, self.init_window_s, t_end=t0
            )
            self.init_check = integ.init_check
            if not self.static_start:
                self._poses, aligned = pose_fallback(
                    self._poses, t0, T_w_c, self.pose_alignment_s, self._align_from_pose_window
                )
                if not aligned:
                    return None
                integ = self._integ
            else:
                with self._lock:
                    self._integ = integ
        integ.imu = self.data(min(t0, t1 - ZUPT_WINDOW_S - 0.05), t1)  # (the stillness test looks back)
        integ.rate_hz = rate
        return integ.control(t0, t1, T_w_c, nu_c, P_nu, Sigma)

    def align_from_poses(self, stamps, T_w_c, pos_sigma_m: float = 5e-3, rot_sigma_rad: float = 1e-3):
        """Moving-start fallback: gravity and the gyro bias from the filter's camera poses ``T_w_c`` (K+1, 4, 4) at
        ``stamps`` (>= 3); the :class:`~prism_ros.core.imu.alignment.BiasEstimate`, or None when not covered.
        """
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

    def _align_from_pose_window(self, stamps: np.ndarray, T_w_c: np.ndarray) -> bool:
        """:func:`pose_fallback`'s alignment (:meth:`align_from_poses`): True when aligned now."""
        self.align_from_poses(stamps, T_w_c)
        return self._integ is not None

    def refine_biases(self, stamps, T_w_c, pos_sigma_m: float = 5e-3, rot_sigma_rad: float = 1e-3):
        """Re-estimate both biases from the filter's recent camera poses
        (:func:`~prism_ros.core.imu.alignment.estimate_biases`); None before the alignment or when not covered.  A bias
        is applied only when its sigma is below ``gyro_bias_sigma`` / ``accel_bias_sigma`` (``applied`` says which).
        """
        stamps = np.asarray(stamps, float)
        integ = self._integ
        if integ is None or len(stamps) < 3 or not self.covers(float(stamps[0]), float(stamps[-1])):
            return None
        integ.imu = self.data(stamps[0], stamps[-1])
        return integ.refine_biases(stamps, T_w_c, pos_sigma_m, rot_sigma_rad)
