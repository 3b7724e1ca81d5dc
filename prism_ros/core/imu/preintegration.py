"""IMU samples, noise model and pre-integration between two stamps.

* Samples: stamps t (s, increasing), angular rate w (rad/s) and specific force a (m/s^2), both in the IMU
  frame I; f = R_wI^T (acc_w - g_w), so at rest f = -R_wI^T g_w (about +9.81 up).
* Pre-integration between t_a and t_b (Forster et al. 2017, right perturbations)::

      dR = prod Exp((w_k - bg) dt),  dv = sum dR_k (a_k - ba) dt,
      dp = sum dv_k dt + 1/2 dR_k (a_k - ba) dt^2

  by the midpoint rule on each sub-interval between consecutive samples (rates interpolated linearly).
* Covariance of (dphi, dv, dp) (dphi: right perturbation of dR) from the noise densities (discrete
  sigma^2 = density^2 x the nominal sample rate), propagated per sub-interval, with first-order bias
  Jacobians.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
from numba import njit

__all__ = ["GRAVITY", "ImuNoise", "ImuData", "Preintegrated", "preintegrate"]

GRAVITY = 9.81  # m/s^2


@dataclass
class ImuNoise:
    """Continuous-time noise densities (EuRoC ``imu0/sensor.yaml``)."""

    gyro_noise_density: float = 1.6968e-04  # rad / s / sqrt(Hz)
    gyro_random_walk: float = 1.9393e-05  # rad / s^2 / sqrt(Hz)
    accel_noise_density: float = 2.0e-3  # m / s^2 / sqrt(Hz)
    accel_random_walk: float = 3.0e-3  # m / s^3 / sqrt(Hz)
    #: sigma of the (residual) biases after the static estimate
    gyro_bias_sigma: float = 2e-3  # rad / s
    accel_bias_sigma: float = 5e-2  # m / s^2

    def scaled(self, density_scale: float) -> "ImuNoise":
        """The white-noise densities times ``density_scale`` (rotor vibration raises them in flight; EuRoC's value:
        ``prism_ros.eval.imu_check.EUROC_DENSITY_SCALE``).
        """
        return replace(
            self,
            gyro_noise_density=self.gyro_noise_density * density_scale,
            accel_noise_density=self.accel_noise_density * density_scale,
        )

    @classmethod
    def from_sensor_yaml(cls, doc: dict) -> "ImuNoise":
        """From a parsed Kalibr / EuRoC ``sensor.yaml`` (missing densities: the defaults; bias sigmas: the defaults)."""
        return cls(
            gyro_noise_density=float(doc.get("gyroscope_noise_density", cls.gyro_noise_density)),
            gyro_random_walk=float(doc.get("gyroscope_random_walk", cls.gyro_random_walk)),
            accel_noise_density=float(doc.get("accelerometer_noise_density", cls.accel_noise_density)),
            accel_random_walk=float(doc.get("accelerometer_random_walk", cls.accel_random_walk)),
        )


@dataclass
class ImuData:
    """IMU samples: sorted by stamp on construction, repeated stamps dropped (the first kept)."""

    t: np.ndarray  # (N,) seconds, increasing
    gyro: np.ndarray  # (N, 3) rad/s
    acc: np.ndarray  # (N, 3) m/s^2 specific force

    def __post_init__(self):
        self.t = np.asarray(self.t, dtype=np.float64)
        self.gyro = np.asarray(self.gyro, dtype=np.float64).reshape(-1, 3)
        self.acc = np.asarray(self.acc, dtype=np.float64).reshape(-1, 3)
        if not (len(self.t) == len(self.gyro) == len(self.acc)):
            raise ValueError("IMU arrays differ in length")
        if len(self.t) > 1 and np.any(np.diff(self.t) <= 0):
            order = np.argsort(self.t, kind="stable")
            keep = np.concatenate([[True], np.diff(self.t[order]) > 0])
            self.t, self.gyro, self.acc = self.t[order][keep], self.gyro[order][keep], self.acc[order][keep]

    def __len__(self) -> int:
        return len(self.t)

    def window(self, t0: float, t1: float) -> "ImuData":
        i0, i1 = np.searchsorted(self.t, [t0, t1], side="left")
        i1 = max(i1, i0)
        return ImuData(self.t[i0 : i1 + 1], self.gyro[i0 : i1 + 1], self.acc[i0 : i1 + 1])


@dataclass
class Preintegrated:
    """The pre-integrated increment over ``dt`` seconds (see the module docstring)."""

    dt: float
    dR: np.ndarray  # 3x3
    dv: np.ndarray  # (3,)
    dp: np.ndarray  # (3,)
    cov: np.ndarray  # 9x9 of (dphi, dv, dp), dphi right perturbation of dR
    J_bg: np.ndarray = field(default_factory=lambda: np.zeros((9, 3)))  # d(dphi, dv, dp) / d bg
    J_ba: np.ndarray = field(default_factory=lambda: np.zeros((9, 3)))  # d(dphi, dv, dp) / d ba
    w_end: np.ndarray = field(default_factory=lambda: np.zeros(3))  # bias-corrected rate at t1, in the frame at t1


def _samples(imu: ImuData, t0: float, t1: float):
    """The sub-intervals of [t0, t1] cut at the sample stamps: (dts, w_start, w_end, a_start, a_end).

    Values at each sub-interval's two ends, linearly interpolated between samples (held constant beyond the
    first and last sample), for :func:`preintegrate`'s midpoint rule.
    """
    t, g, a = imu.t, imu.gyro, imu.acc
    if len(t) == 0:
        raise ValueError("no IMU samples")
    cuts = np.concatenate([[t0], t[(t > t0) & (t < t1)], [t1]])
    dts = np.diff(cuts)
    if len(t) == 1:
        G, A = np.repeat(g, len(cuts), 0), np.repeat(a, len(cuts), 0)
    else:
        G = np.stack([np.interp(cuts, t, g[:, k]) for k in range(3)], axis=1)
        A = np.stack([np.interp(cuts, t, a[:, k]) for k in range(3)], axis=1)
    return dts, G[:-1], G[1:], A[:-1], A[1:]


def preintegrate(
    imu: ImuData, t0: float, t1: float, noise: ImuNoise, bg=None, ba=None, nominal_rate_hz: Optional[float] = None
) -> Preintegrated:
    """Pre-integrate ``imu`` over [t0, t1] (see the module docstring) at biases ``bg`` (rad/s) and
    ``ba`` (m/s^2) (default zero); ``nominal_rate_hz`` scales the noise densities (default: from
    the median sample period, 200 Hz with a single sample)."""
    bg = np.zeros(3) if bg is None else np.asarray(bg, float)
    ba = np.zeros(3) if ba is None else np.asarray(ba, float)
    dts, W0, W1, A0, A1 = _samples(imu, t0, t1)
    if nominal_rate_hz is None:
        nominal_rate_hz = 1.0 / float(np.median(np.diff(imu.t))) if len(imu.t) > 1 else 200.0
    # discrete noise: sigma^2 = density^2 / dt_nominal per sample, integrated over dt_k
    qg = noise.gyro_noise_density**2 * nominal_rate_hz
    qa = noise.accel_noise_density**2 * nominal_rate_hz
    dR, dv, dp, cov, Jbg, Jba = _preintegrate_kernel(dts, W0, W1, A0, A1, bg, ba, qg, qa)
    U, _, Vt = np.linalg.svd(dR)
    dR = U @ Vt
    w_end = (W1[-1] if len(W1) else imu.gyro[-1]) - bg
    return Preintegrated(float(t1 - t0), dR, dv, dp, 0.5 * (cov + cov.T), Jbg, Jba, w_end)


@njit(cache=True, nogil=True)
def _mm(A, B):
    """A @ B of small float64 matrices (no BLAS)."""
    n, k = A.shape
    m = B.shape[1]
    C = np.zeros((n, m))
    for i in range(n):
        for j in range(k):
            a = A[i, j]
            if a != 0.0:
                for l in range(m):
                    C[i, l] += a * B[j, l]
    return C


@njit(cache=True, nogil=True)
def _mv(A, x):
    """A @ x of a small float64 matrix and vector (no BLAS)."""
    y = np.zeros(A.shape[0])
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            y[i] += A[i, j] * x[j]
    return y


@njit(cache=True, nogil=True)
def _hat(x):
    """The skew-symmetric matrix [x]x of a 3-vector."""
    K = np.zeros((3, 3))
    K[0, 1], K[0, 2], K[1, 0] = -x[2], x[1], x[2]
    K[1, 2], K[2, 0], K[2, 1] = -x[0], -x[1], x[0]
    return K


@njit(cache=True, nogil=True)
def _exp_and_right_jacobian(phi):
    """(Exp(phi), J_r(phi)) of SO(3)."""
    th = np.sqrt(phi[0] ** 2 + phi[1] ** 2 + phi[2] ** 2)
    K = _hat(phi)
    KK = _mm(K, K)
    if th < 1e-6:
        a, b, c = 1.0, 0.5, 1.0 / 6.0
    else:
        a, b, c = np.sin(th) / th, (1.0 - np.cos(th)) / th**2, (th - np.sin(th)) / th**3
    E = np.eye(3) + a * K + b * KK
    Jr = np.eye(3) - b * K + c * KK
    return E, Jr


@njit(cache=True, nogil=True)
def _preintegrate_kernel(dts, W0, W1, A0, A1, bg, ba, qg, qa):
    """The midpoint-rule pre-integration of the module docstring over the sub-intervals
    ``dts`` (rates and specific forces at each one's two ends): (dR, dv, dp, cov, J_bg, J_ba)."""
    dR = np.eye(3)
    dv = np.zeros(3)
    dp = np.zeros(3)
    cov = np.zeros((9, 9))
    Jbg = np.zeros((9, 3))
    Jba = np.zeros((9, 3))
    F = np.eye(9)
    G = np.zeros((9, 6))
    Q = np.zeros(6)
    Q[:3], Q[3:] = qg, qa
    for k in range(dts.shape[0]):
        dt = dts[k]
        if dt <= 0:
            continue
        # midpoint rule: mean rate for the rotation, mean of the rotated specific forces
        # at the two ends (the gravity part of f then cancels to second order)
        wc = 0.5 * (W0[k] + W1[k]) - bg
        dRk, Jr = _exp_and_right_jacobian(wc * dt)
        Ra = 0.5 * (_mv(dR, A0[k] - ba) + _mv(_mm(dR, dRk), A1[k] - ba))
        ac = _mv(dR.T.copy(), Ra)  # the mean specific force in the frame at the start
        dRa = _mm(dR, _hat(ac))
        # state transition of (dphi, dv, dp) and the noise input
        F[0:3, 0:3] = dRk.T
        F[3:6, 0:3] = -dRa * dt
        F[6:9, 0:3] = -0.5 * dRa * dt * dt
        F[6:9, 3:6] = np.eye(3) * dt
        G[0:3, 0:3] = Jr * dt
        G[3:6, 3:6] = dR * dt
        G[6:9, 3:6] = 0.5 * dR * dt * dt
        cov = _mm(_mm(F, cov), F.T.copy()) + _mm(G * Q, G.T.copy())
        # bias Jacobians (first order)
        Jbg = _mm(F, Jbg)
        Jbg[0:3] -= Jr * dt
        Jba = _mm(F, Jba)
        Jba[3:6] -= dR * dt
        Jba[6:9] -= 0.5 * dR * dt * dt
        # mean
        dp = dp + dv * dt + 0.5 * Ra * dt * dt
        dv = dv + Ra * dt
        dR = _mm(dR, dRk)
    return dR, dv, dp, cov, Jbg, Jba
