"""Motion controls for the filter's dynamics from IMU or wheel/visual odometry messages.

Both produce a :class:`prism_ros.core.types.Control`: the camera's motion
``T_prev_curr`` between two filter steps and its covariance in the right
perturbation convention (xi = (rho, phi), translation first).

* IMU (``control_mode: imu``): the rotation comes from integrating the gyro
  between the two frame stamps (IMU frame assumed to be the base frame); the
  translation comes from the constant-velocity model (the filter's last velocity
  estimate), with white-noise acceleration.  Full IMU preintegration is future work.
* Odometry (``control_mode: odometry``): the relative pose of the odometry's
  child frame (assumed to be the base frame) between the two stamps, linearly
  interpolated, moved into the camera frame with ``T_base_camera``.
"""
from __future__ import annotations

import bisect
import threading
from collections import deque
from typing import Deque, Optional, Tuple

import numpy as np

from prism_ros.core import se3
from prism_ros.core.types import Control

__all__ = ["ImuBuffer", "OdomBuffer", "cv_translation_control"]


def _conj_by(T_b_c: np.ndarray, dT_b: np.ndarray) -> np.ndarray:
    """Base increment -> camera increment: inv(T_b_c) dT_b T_b_c."""
    return se3.inv(T_b_c) @ dT_b @ T_b_c


class ImuBuffer:
    """Thread-safe bounded buffer of (stamp, gyro (3,), gyro variance (3,)) samples."""

    def __init__(self, maxlen: int = 4000, default_gyro_sigma_radps: float = 0.01):
        self._buf: Deque[Tuple[float, np.ndarray, np.ndarray]] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.default_var = np.full(3, default_gyro_sigma_radps**2)

    def add(self, stamp: float, gyro, gyro_cov_diag=None) -> None:
        var = self.default_var
        if gyro_cov_diag is not None:
            v = np.asarray(gyro_cov_diag, dtype=np.float64)
            if np.all(np.isfinite(v)) and np.all(v > 0):  # -1 / 0 mean "unknown" in sensor_msgs/Imu
                var = v
        with self._lock:
            if self._buf and stamp <= self._buf[-1][0]:
                if stamp < self._buf[-1][0] - 1.0:
                    self._buf.clear()  # time jumped back
                else:
                    return
            self._buf.append((float(stamp), np.asarray(gyro, dtype=np.float64), var))

    def clear(self) -> None:
        with self._lock:
            self._buf.clear()

    def __len__(self) -> int:
        return len(self._buf)

    def integrate(self, t0: float, t1: float) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """Rotation R_b0_b1 and its 3x3 covariance (right perturbation) over [t0, t1].

        Returns None when the buffer does not cover the interval.
        """
        with self._lock:
            samples = list(self._buf)
        if t1 <= t0 or len(samples) < 1:
            return None
        stamps = [s[0] for s in samples]
        if stamps[0] > t0 + 0.05 or stamps[-1] < t1 - 0.05:
            return None
        R = np.eye(3)
        cov = np.zeros((3, 3))
        i = max(bisect.bisect_right(stamps, t0) - 1, 0)
        t = t0
        while t < t1 - 1e-12:
            # zero-order hold of sample i over [t, next sample stamp or t1]
            t_next = stamps[i + 1] if i + 1 < len(stamps) else t1
            t_end = min(max(t_next, t), t1)
            dt = t_end - t
            if dt > 0:
                w, var = samples[i][1], samples[i][2]
                dR = se3.so3_exp(w * dt)
                # right perturbation: R <- R dR; old error rotated into the new frame
                cov = dR.T @ cov @ dR + np.diag(var) * dt * dt + np.diag(var) * dt * 1e-3
                R = R @ dR
            t = t_end
            if i + 1 < len(stamps):
                i += 1
            else:
                break
        return R, 0.5 * (cov + cov.T)


def cv_translation_control(
    R_prev_curr_c: np.ndarray,
    rot_cov_c: np.ndarray,
    velocity_c: np.ndarray,
    velocity_cov_c: np.ndarray,
    dt: float,
    accel_sigma: float,
) -> Control:
    """Control from a measured camera rotation plus a constant-velocity translation."""
    T = np.eye(4)
    T[:3, :3] = R_prev_curr_c
    T[:3, 3] = np.asarray(velocity_c[:3], dtype=np.float64) * dt
    cov = np.zeros((6, 6))
    cov[:3, :3] = np.asarray(velocity_cov_c, dtype=np.float64)[:3, :3] * dt * dt + np.eye(3) * accel_sigma**2 * dt**3 / 3.0
    cov[3:, 3:] = rot_cov_c + np.eye(3) * 1e-8
    return Control(T_prev_curr=T, cov=0.5 * (cov + cov.T))


class OdomBuffer:
    """Thread-safe bounded buffer of odometry poses (stamp, T_odom_base, 6x6 twist cov)."""

    def __init__(self, maxlen: int = 2000, rel_sigma: float = 0.05, min_sigma_m: float = 0.002, min_sigma_rad: float = 0.002):
        self._buf: Deque[Tuple[float, np.ndarray, np.ndarray]] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.rel_sigma = rel_sigma
        self.min_sigma_m = min_sigma_m
        self.min_sigma_rad = min_sigma_rad

    def add(self, stamp: float, T_o_b: np.ndarray, twist_cov: Optional[np.ndarray] = None) -> None:
        with self._lock:
            if self._buf and stamp <= self._buf[-1][0]:
                if stamp < self._buf[-1][0] - 1.0:
                    self._buf.clear()
                else:
                    return
            self._buf.append((float(stamp), np.asarray(T_o_b, dtype=np.float64), twist_cov))

    def clear(self) -> None:
        with self._lock:
            self._buf.clear()

    def __len__(self) -> int:
        return len(self._buf)

    def pose_at(self, t: float) -> Optional[np.ndarray]:
        with self._lock:
            samples = list(self._buf)
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

    def increment(self, t0: float, t1: float, T_base_camera: np.ndarray) -> Optional[Control]:
        """Camera motion between t0 and t1 from odometry, or None when not covered."""
        P0, P1 = self.pose_at(t0), self.pose_at(t1)
        if P0 is None or P1 is None:
            return None
        dT_b = se3.inv(P0) @ P1
        xi = se3.log(dT_b)
        s_t = self.min_sigma_m + self.rel_sigma * float(np.linalg.norm(xi[:3]))
        s_r = self.min_sigma_rad + self.rel_sigma * float(np.linalg.norm(xi[3:]))
        cov_b = np.diag([s_t**2] * 3 + [s_r**2] * 3)
        dT_c = _conj_by(T_base_camera, dT_b)
        # xi_b = Ad(T_b_c) xi_c  =>  xi_c = Ad(T_c_b) xi_b
        Ad = se3.adjoint(se3.inv(T_base_camera))
        cov_c = Ad @ cov_b @ Ad.T
        return Control(T_prev_curr=dT_c, cov=0.5 * (cov_c + cov_c.T))
