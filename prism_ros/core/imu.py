"""IMU integration (gyroscope + accelerometer with gravity) into a camera-motion control.

Conventions
-----------
* IMU samples: stamps t (s), angular rate w (rad/s) and specific force a (m/s^2),
  both in the IMU frame I (EuRoC's body frame B has T_BS = I for imu0).
  Specific force f = R_wI^T (acc_w - g_w): at rest f = -R_wI^T g_w (about +9.81 up).
* Gravity ``g_w`` is expressed in the FILTER's world frame (whatever that is: the
  first ground-truth pose or the identity).  :func:`align_gravity` estimates it from
  the mean specific force of a static window and the filter's orientation.
* Extrinsic ``T_I_C`` maps camera points into the IMU frame (EuRoC: T_BS_imu^-1 T_BS_cam).
* Pre-integration between t_a and t_b (Forster et al. 2017, right perturbations)::

      dR = prod Exp((w_k - bg) dt),  dv = sum dR_k (a_k - ba) dt,
      dp = sum dv_k dt + 1/2 dR_k (a_k - ba) dt^2

  by the midpoint rule on each sub-interval between consecutive samples: w_k the
  mean of the (linearly interpolated) rates at its two ends, dR_k a_k the mean of the
  specific forces at its two ends rotated by the attitude at each end.

  and the IMU's motion in its own frame at t_a::

      T_Ia_Ib = [ dR | v_a dt_ab + 1/2 R_wIa^T g_w dt_ab^2 + dp ]

  with v_a the IMU's velocity expressed in I at t_a.  The camera increment is
  ``T_Ca_Cb = T_I_C^-1 T_Ia_Ib T_I_C``.
* Covariance: (dphi, dv, dp) noise from the gyro / accelerometer noise densities
  (discrete sigma = density / sqrt(dt_sample)), propagated sample by sample; plus the
  velocity uncertainty (dt_ab^2 P_v), the tilt uncertainty of R_wIa (it rotates
  gravity) and a bias-uncertainty term (random walk over dt_ab and an initial bias
  sigma).  Expressed as the right perturbation xi = (rho, phi) of T_Ia_Ib
  (rho = dR^T dp_err), then moved to the camera with Ad(T_I_C^-1).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
from numba import njit

from . import se3
from .types import Control

__all__ = [
    "ImuNoise",
    "ImuData",
    "Preintegrated",
    "preintegrate",
    "align_gravity",
    "static_bias_and_gravity",
    "ImuIntegrator",
]

GRAVITY = 9.81


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
        """The white-noise densities times ``density_scale`` (in flight, rotor vibration raises
        them: 3.87 on the real V1_02 flight, ``prism_ros.eval.imu_check.EUROC_DENSITY_SCALE``)."""
        from dataclasses import replace

        return replace(self, gyro_noise_density=self.gyro_noise_density * density_scale,
                       accel_noise_density=self.accel_noise_density * density_scale)

    @classmethod
    def from_sensor_yaml(cls, doc: dict) -> "ImuNoise":
        return cls(
            gyro_noise_density=float(doc.get("gyroscope_noise_density", cls.gyro_noise_density)),
            gyro_random_walk=float(doc.get("gyroscope_random_walk", cls.gyro_random_walk)),
            accel_noise_density=float(doc.get("accelerometer_noise_density", cls.accel_noise_density)),
            accel_random_walk=float(doc.get("accelerometer_random_walk", cls.accel_random_walk)),
        )


@dataclass
class ImuData:
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
        return ImuData(self.t[i0:i1 + 1], self.gyro[i0:i1 + 1], self.acc[i0:i1 + 1])


@dataclass
class Preintegrated:
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

    Rates at each sub-interval's two ends, linearly interpolated between samples (held
    constant beyond the first and last sample).  :func:`preintegrate` integrates them by
    the midpoint rule; a zero-order hold on the earlier sample lags the motion by half a
    sample period, which on the real V1_02 flight gave rotation-increment errors of
    1.3e-4 rad over 50 ms (3x the gyro white noise) and 4.7e-3 m/s in velocity.
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


def preintegrate(imu: ImuData, t0: float, t1: float, noise: ImuNoise, bg=None, ba=None,
                 nominal_rate_hz: Optional[float] = None) -> Preintegrated:
    """Pre-integrate ``imu`` over [t0, t1] (see the module docstring)."""
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


def static_bias_and_gravity(imu: ImuData, t0: float, t1: float, max_acc_std: float = 0.6,
                            max_gyro_std: float = 0.1) -> Tuple[np.ndarray, np.ndarray, bool]:
    """(gyro bias, mean specific force in I, static?) over [t0, t1].

    The window counts as static when the robust (MAD) standard deviations of the
    accelerometer and gyro stay below the thresholds (rotor vibration and short
    bumps are tolerated) and |mean f| is within 0.5 m/s^2 of g; the gyro bias is then
    the median rate (zero otherwise).
    """
    w = imu.window(t0, t1)
    if len(w) < 2:
        return np.zeros(3), (w.acc.mean(0) if len(w) else np.array([0.0, 0.0, GRAVITY])), False
    f = w.acc.mean(0)

    def rstd(x):
        return 1.4826 * np.median(np.abs(x - np.median(x, 0)), 0)

    static = bool(np.all(rstd(w.acc) < max_acc_std) and np.all(rstd(w.gyro) < max_gyro_std)
                  and abs(np.linalg.norm(f) - GRAVITY) < 0.5)
    bg = np.median(w.gyro, 0) if static else np.zeros(3)
    return bg, f, static


#: Zero-velocity update: the shortest window (s) over which the IMU must be still
#: (:func:`prism_ros.core.imu_online.detect_motion`).  On euroc_MH01_easy_slice 0.5 s finds the
#: MAV at rest on its pallet from frame 167 on (ground-truth speed < 6 mm/s from 160), 1 s from
#: 177; no frame of the hand-held part (ground-truth speed >= 0.1 m/s) counts as still, nor any
#: frame of the V1_02 flight after its still start (ground-truth speed < 1.2 cm/s there).
ZUPT_WINDOW_S = 0.5
#: The velocity sigma (m/s) of a zero-velocity update: the ground-truth speed of the MAV at rest
#: on euroc_MH01_easy_slice (frames 160-199, its tracker's jitter included) stays below 6 mm/s.
ZUPT_SIGMA_MPS = 0.01
#: The largest bias-corrected median gyro rate (rad/s) of a still window: at rest on
#: euroc_MH01_easy_slice it is 0.002-0.003 rad/s (the bias estimated from the poses).
ZUPT_MAX_RATE_RADPS = 0.02


def zero_velocity(ctl: Control, dt: float) -> Control:
    """A zero-velocity update of an IMU control: no translation over ``dt`` (variance
    (:data:`ZUPT_SIGMA_MPS` dt)^2, uncorrelated with the rotation), zero linear velocity
    (variance ZUPT_SIGMA_MPS^2); the gyro's rotation and angular velocity are kept."""
    T = np.array(ctl.T_prev_curr, float)
    T[:3, 3] = 0.0
    cov = np.array(ctl.cov, float)
    cov[:3, :] = 0.0
    cov[:, :3] = 0.0
    cov[:3, :3] = np.eye(3) * (ZUPT_SIGMA_MPS * max(dt, 0.0)) ** 2 + np.eye(3) * 1e-12
    nu = np.zeros(6) if ctl.nu_curr is None else np.array(ctl.nu_curr, float)
    nu[:3] = 0.0
    P = np.zeros((6, 6)) if ctl.nu_cov is None else np.array(ctl.nu_cov, float)
    P[:3, :] = 0.0
    P[:, :3] = 0.0
    P[:3, :3] = np.eye(3) * ZUPT_SIGMA_MPS**2
    return Control(T_prev_curr=T, cov=cov, nu_curr=nu, nu_cov=P, still=True)


def align_gravity(f_mean_I: np.ndarray, R_w_I: np.ndarray, magnitude: Optional[float] = GRAVITY) -> np.ndarray:
    """Gravity in the world from the static mean specific force: g_w = -R_wI f (scaled to ``magnitude``)."""
    g = -np.asarray(R_w_I, float) @ np.asarray(f_mean_I, float)
    if magnitude is not None:
        g = g / max(np.linalg.norm(g), 1e-9) * magnitude
    return g


def pose_window(h: list, t: float, T_w_c, span_s: float):
    """The moving-start fallback's window of the filter's poses: ``(t, T_w_c)`` is appended to
    ``h`` when newer than its last; (stamps, poses) once ``h`` holds >= 3 poses spanning
    ``span_s`` seconds, else None.  (:class:`ImuIntegrator` and :class:`prism_ros.core.controls.ImuBuffer`.)"""
    if not h or t > h[-1][0]:
        h.append((float(t), np.asarray(T_w_c, float).copy()))
    if len(h) < 3 or h[-1][0] - h[0][0] < span_s:
        return None
    return np.array([x[0] for x in h]), np.stack([x[1] for x in h])


class ImuIntegrator:
    """Turns an IMU stream into :class:`Control` increments of the camera.

    ``control(t_prev, t_curr, T_w_c, nu_c, P_nu=None, Sigma=None)``: the camera
    increment T_prev_curr and its covariance (right perturbation, (rho, phi)), from
    the filter's pose T_w_c and body velocity nu_c = (v, w) (camera frame) at t_prev.

    Gravity and the gyro bias are set by :meth:`initialise` (static start only; a
    moving window is refused), :meth:`initialise_from_poses` (moving start, from the
    filter's poses), or explicitly through ``g_w`` / ``bg``; :meth:`refine_biases`
    re-estimates both biases from the filter's recent poses.
    """

    def __init__(self, imu: ImuData, T_I_C: np.ndarray, noise: Optional[ImuNoise] = None,
                 g_w: Optional[np.ndarray] = None, bg: Optional[np.ndarray] = None, ba: Optional[np.ndarray] = None,
                 pose_alignment_s: Optional[float] = 1.0, pose_sigma_m: float = 5e-3, pose_sigma_rad: float = 1e-3,
                 max_gravity_sigma_mps2: float = 0.3):
        self.imu = imu
        #: moving start: after this much pose track (the filter's states passed to control()),
        #: gravity from the poses (initialise_from_poses); None disables the fallback
        self.pose_alignment_s = pose_alignment_s
        self.pose_sigma_m = float(pose_sigma_m)
        self.pose_sigma_rad = float(pose_sigma_rad)
        #: a pose alignment whose gravity sigma (largest axis) is above this is not used
        self.max_gravity_sigma_mps2 = float(max_gravity_sigma_mps2)
        self.pose_history: list = []  # [(t, T_w_c)] while gravity is unknown
        self.T_I_C = np.asarray(T_I_C, dtype=np.float64)
        self.T_C_I = se3.inv(self.T_I_C)
        self.noise = noise or ImuNoise()
        self.g_w = None if g_w is None else np.asarray(g_w, float)
        self.bg = np.zeros(3) if bg is None else np.asarray(bg, float)
        self.ba = np.zeros(3) if ba is None else np.asarray(ba, float)
        self.static_start: Optional[bool] = None
        self.init_check = None  # MotionCheck of the last initialise()
        self.rate_hz = 1.0 / float(np.median(np.diff(imu.t))) if len(imu.t) > 1 else 200.0

    def initialise(self, T_w_c: np.ndarray, t0: float, window_s: float = 1.0, t_end: Optional[float] = None) -> bool:
        """Static alignment: gravity in the filter's world and the gyro bias from the samples
        within ``window_s`` around ``t0`` (clipped to ``t_end``).

        Returns whether the window was still (:func:`prism_ros.core.imu_online.detect_motion`,
        outcome in :attr:`init_check`).  A moving window is REFUSED: gravity stays unknown
        (``g_w`` None, :meth:`control` returns None: the caller keeps its constant-velocity
        prior) and the caller retries with a later window, or aligns from the filter's
        poses with :meth:`initialise_from_poses` once it has tracked ~1 s.
        """
        from .imu_online import detect_motion

        lo = max(t0 - 0.5 * window_s, float(self.imu.t[0]))
        hi = lo + window_s if t_end is None else min(lo + window_s, t_end)
        chk = detect_motion(self.imu, lo, hi)
        self.init_check = chk
        self.static_start = chk.static
        if not chk.static:
            return False
        R_w_I = (np.asarray(T_w_c, float) @ self.T_C_I)[:3, :3]
        # measured magnitude: cancels the accelerometer bias along gravity at rest
        self.g_w = align_gravity(chk.f_mean, R_w_I, magnitude=None)
        self.bg = chk.gyro_median
        return True

    def initialise_from_poses(self, stamps, T_w_c, pos_sigma_m: Optional[float] = None,
                              rot_sigma_rad: Optional[float] = None):
        """Moving-start fallback: gravity (and the gyro bias) from the filter's camera poses
        ``T_w_c`` (K+1, 4, 4) at ``stamps`` (:func:`prism_ros.core.imu_online.gravity_from_poses`;
        ~1 s of tracking).  Sets ``g_w`` / ``bg`` unless the gravity sigma exceeds
        ``max_gravity_sigma_mps2``; returns the :class:`BiasEstimate`."""
        from .imu_online import gravity_from_poses

        ps = self.pose_sigma_m if pos_sigma_m is None else pos_sigma_m
        rs = self.pose_sigma_rad if rot_sigma_rad is None else rot_sigma_rad
        T_w_I = np.asarray(T_w_c, float).reshape(-1, 4, 4) @ self.T_C_I
        est = gravity_from_poses(self.imu, stamps, T_w_I[:, :3, :3], T_w_I[:, :3, 3], self.noise, self.bg, self.ba,
                                 rs, ps)
        if np.sqrt(np.max(np.diag(est.cov_g))) <= self.max_gravity_sigma_mps2:
            self.g_w, self.bg = est.g_w, est.bg
            self.static_start = False
            self.pose_history = []
        return est

    def _pose_fallback(self, t: float, T_w_c: np.ndarray) -> bool:
        """Remember the filter's pose while gravity is unknown; align from the poses once they
        span ``pose_alignment_s``.  True when gravity is known now."""
        if self.pose_alignment_s is None:
            return False
        h = self.pose_history
        win = pose_window(h, t, T_w_c, self.pose_alignment_s)
        if win is None:
            return False
        if not (self.imu.t[0] <= h[0][0] and h[-1][0] <= self.imu.t[-1]):
            self.pose_history = h[1:]
            return False
        self.initialise_from_poses(*win)
        if self.g_w is None:  # not good enough: slide the window on
            self.pose_history = h[1:]
        return self.g_w is not None

    def refine_biases(self, stamps, T_w_c, pos_sigma_m: Optional[float] = None, rot_sigma_rad: Optional[float] = None,
                      gate: bool = True):
        """Online bias refinement from the filter's recent camera poses (needs gravity):
        :func:`prism_ros.core.imu_online.estimate_biases`.  With ``gate`` each bias is taken
        only when its estimate's sigma (largest axis) is below ``noise.gyro_bias_sigma`` /
        ``noise.accel_bias_sigma`` (a noisy pose track must not make it worse);
        ``est.applied`` = (gyro taken, accel taken)."""
        from .imu_online import estimate_biases

        if self.g_w is None:
            raise RuntimeError("ImuIntegrator.refine_biases: gravity unknown")
        ps = self.pose_sigma_m if pos_sigma_m is None else pos_sigma_m
        rs = self.pose_sigma_rad if rot_sigma_rad is None else rot_sigma_rad
        T_w_I = np.asarray(T_w_c, float).reshape(-1, 4, 4) @ self.T_C_I
        est = estimate_biases(self.imu, stamps, T_w_I[:, :3, :3], T_w_I[:, :3, 3], self.g_w, self.noise, self.bg,
                              self.ba, rs, ps)
        take_g = not gate or np.sqrt(np.max(np.diag(est.cov_bg))) < self.noise.gyro_bias_sigma
        take_a = not gate or np.sqrt(np.max(np.diag(est.cov_ba))) < self.noise.accel_bias_sigma
        if take_g:
            self.bg = est.bg
        if take_a:
            self.ba = est.ba
        est.applied = (bool(take_g), bool(take_a))
        return est

    def body_velocity_I(self, nu_c: np.ndarray) -> np.ndarray:
        """IMU-origin velocity expressed in I from the camera twist (v_c, w_c)."""
        v_c, w_c = np.asarray(nu_c[:3], float), np.asarray(nu_c[3:], float)
        p_I_in_C = self.T_C_I[:3, 3]
        return self.T_I_C[:3, :3] @ (v_c + np.cross(w_c, p_I_in_C))

    def imu_increment(self, t0: float, t1: float, R_w_I: np.ndarray, v_I: np.ndarray,
                      P_v: Optional[np.ndarray] = None, tilt_cov: Optional[np.ndarray] = None,
                      with_velocity: bool = False):
        """(T_Ia_Ib, 6x6 cov (rho, phi) right perturbation) of the IMU frame; with
        ``with_velocity`` also (nu_Ib, 6x6 cov): the IMU frame's twist at t1 in I_b,
        v_b = dR^T (v_I + g_I dt + dv) and the bias-corrected gyro rate."""
        if self.g_w is None:
            raise RuntimeError("ImuIntegrator: gravity unknown; call initialise() or pass g_w")
        pi = preintegrate(self.imu, t0, t1, self.noise, self.bg, self.ba, self.rate_hz)
        dt = pi.dt
        g_I = np.asarray(R_w_I, float).T @ self.g_w
        t = v_I * dt + 0.5 * g_I * dt * dt + pi.dp
        T = se3.make_T(pi.dR, t)
        # covariance of (dphi, dp_err) in I_a coordinates
        C = pi.cov.copy()
        n = self.noise
        Qb = np.zeros((9, 9))
        sbg2 = n.gyro_bias_sigma**2 + n.gyro_random_walk**2 * dt
        sba2 = n.accel_bias_sigma**2 + n.accel_random_walk**2 * dt
        Qb += sbg2 * pi.J_bg @ pi.J_bg.T + sba2 * pi.J_ba @ pi.J_ba.T
        C += Qb
        cov_phi = C[0:3, 0:3]
        cov_p = C[6:9, 6:9]
        cov_pphi = C[6:9, 0:3]
        if P_v is not None:  # unknown initial velocity
            cov_p = cov_p + dt * dt * np.asarray(P_v, float)
        if tilt_cov is not None:  # attitude error rotates gravity: d(R^T g) = [R^T g]x dtheta
            Jg = 0.5 * dt * dt * se3.hat(g_I)
            cov_p = cov_p + Jg @ np.asarray(tilt_cov, float) @ Jg.T
        # right perturbation of T: rho = dR^T dp_err
        Rt = pi.dR.T
        cov = np.zeros((6, 6))
        cov[:3, :3] = Rt @ cov_p @ Rt.T
        cov[3:, 3:] = cov_phi
        cov[:3, 3:] = Rt @ cov_pphi
        cov[3:, :3] = cov[:3, 3:].T
        cov = 0.5 * (cov + cov.T)
        if not with_velocity:
            return T, cov
        v_b = Rt @ (v_I + g_I * dt + pi.dv)
        C_v = C[3:6, 3:6].copy()
        if P_v is not None:
            C_v += np.asarray(P_v, float)
        if tilt_cov is not None:
            Jv = dt * se3.hat(g_I)
            C_v += Jv @ np.asarray(tilt_cov, float) @ Jv.T
        P = np.zeros((6, 6))
        P[:3, :3] = Rt @ C_v @ Rt.T
        P[3:, 3:] = np.eye(3) * (n.gyro_noise_density**2 * self.rate_hz + n.gyro_bias_sigma**2)
        return T, cov, np.concatenate([v_b, pi.w_end]), P

    def control(self, t_prev: float, t_curr: float, T_w_c: np.ndarray, nu_c: np.ndarray,
                P_nu: Optional[np.ndarray] = None, Sigma: Optional[np.ndarray] = None) -> Optional[Control]:
        """The camera increment, or None while gravity is unknown (moving start, see
        :meth:`initialise`; the pose fallback, ``pose_alignment_s``, runs from here)."""
        if self.g_w is None and not self._pose_fallback(t_prev, T_w_c):
            return None
        T_w_c = np.asarray(T_w_c, float)
        R_w_I = (T_w_c @ self.T_C_I)[:3, :3]
        v_I = self.body_velocity_I(nu_c)
        P_v = None
        if P_nu is not None:
            # v_I = R_IC (v_c - [p]x w_c): linear map of nu
            p = self.T_C_I[:3, 3]
            J = self.T_I_C[:3, :3] @ np.hstack([np.eye(3), -se3.hat(p)])
            P_v = J @ np.asarray(P_nu, float) @ J.T
        tilt = None
        if Sigma is not None:  # camera-frame right-perturbation rotation cov -> IMU frame
            R_IC = self.T_I_C[:3, :3]
            tilt = R_IC @ np.asarray(Sigma, float)[3:, 3:] @ R_IC.T
        T_I, cov_I, nu_I, P_I = self.imu_increment(t_prev, t_curr, R_w_I, v_I, P_v, tilt, with_velocity=True)
        T_c = self.T_C_I @ T_I @ self.T_I_C
        A = se3.adjoint(self.T_C_I)
        cov_c = A @ cov_I @ A.T
        # the camera twist at t1: w_c = R_CI w_I, v_c = R_CI v_I - w_c x p (p: the IMU origin in C)
        R_CI, p = self.T_C_I[:3, :3], self.T_C_I[:3, 3]
        J = np.zeros((6, 6))
        J[:3, :3] = R_CI
        J[3:, 3:] = R_CI
        J[:3, 3:] = se3.hat(p) @ R_CI
        nu_c1 = J @ nu_I
        P_c1 = J @ P_I @ J.T
        ctl = Control(T_prev_curr=T_c, cov=0.5 * (cov_c + cov_c.T), nu_curr=nu_c1, nu_cov=0.5 * (P_c1 + P_c1.T))
        return zero_velocity(ctl, t_curr - t_prev) if self.still_between(t_prev, t_curr) else ctl

    def still_between(self, t0: float, t1: float) -> bool:
        """Whether the IMU stands still over [t0, t1], and at least the :data:`ZUPT_WINDOW_S`
        before ``t1``: :func:`prism_ros.core.imu_online.detect_motion` (its thresholds measured on
        real EuRoC data at rest and in flight) and a median rate within
        :data:`ZUPT_MAX_RATE_RADPS` of the gyro bias (a steady turn keeps the dispersion low);
        False where the samples do not cover the window (10 ms of slack at its start: two
        samples at 200 Hz)."""
        from .imu_online import detect_motion

        lo = min(t0, t1 - ZUPT_WINDOW_S)
        if float(self.imu.t[0]) > lo + 0.01:
            return False
        chk = detect_motion(self.imu, lo, t1)
        return chk.static and float(np.linalg.norm(chk.gyro_median - self.bg)) <= ZUPT_MAX_RATE_RADPS
