"""The IMU's camera-motion control: pre-integrated IMU motion moved to the camera, with gravity.

* Gravity ``g_w`` is in the FILTER's world frame, from the static alignment or the filter's poses
  (:mod:`prism_ros.core.imu.alignment`).  ``T_I_C`` maps camera points into the IMU frame (EuRoC: T_BS_imu^-1 T_BS_cam).
* The IMU's motion from the pre-integration (dR, dv, dp) of
  :func:`prism_ros.core.imu.preintegration.preintegrate`, with v_a its velocity in I at t_a::

      T_Ia_Ib = [ dR | v_a dt_ab + 1/2 R_wIa^T g_w dt_ab^2 + dp ],   T_Ca_Cb = T_I_C^-1 T_Ia_Ib T_I_C

* Covariance: the pre-integration's plus the velocity (dt_ab^2 P_v), tilt (it rotates gravity) and bias uncertainty, as
  the right perturbation (rho, phi) of T_Ia_Ib (rho = dR^T dp_err), moved to the camera with Ad(T_I_C^-1).
* Where the IMU stands still (:meth:`ImuIntegrator.still_between`) the control is a zero-velocity update
  (:func:`zero_velocity`).  Design: docs/design.md, "Dynamics and velocity".
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import numpy as np

from .. import se3
from ..types import Control
from .alignment import BiasEstimate, MotionCheck, align_gravity, detect_motion, estimate_biases, gravity_from_poses
from .preintegration import ImuData, ImuNoise, preintegrate

__all__ = ["ZUPT_WINDOW_S", "ZUPT_SIGMA_MPS", "ZUPT_MAX_RATE_RADPS", "zero_velocity", "pose_fallback", "ImuIntegrator"]

#: Zero-velocity update: the shortest window (s) over which the IMU must be still (:func:`detect_motion`);
#: set on euroc_MH01_easy_slice (at rest and hand-held) and the V1_02 flight.
ZUPT_WINDOW_S = 0.5
#: The velocity sigma (m/s) of a zero-velocity update: above the ground-truth speed at rest on euroc_MH01_easy_slice.
ZUPT_SIGMA_MPS = 0.01
#: The largest bias-corrected median gyro rate (rad/s) of a still window (set on euroc_MH01_easy_slice at rest).
ZUPT_MAX_RATE_RADPS = 0.02


def zero_velocity(ctl: Control, dt: float) -> Control:
    """A zero-velocity update of an IMU control: no translation over ``dt`` (variance
    (:data:`ZUPT_SIGMA_MPS` dt)^2, uncorrelated with the rotation), zero linear velocity
    (variance ZUPT_SIGMA_MPS^2).  The gyro's rotation is kept; the angular velocity is its mean over the
    interval, ``Log(dR) / dt`` with the rotation's covariance / dt^2 (a single gyro sample carries the frame's
    vibration: 1-3 deg/s on a MAV at rest with its rotors running)."""
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
    if dt > 0:
        nu[3:] = se3.so3_log(T[:3, :3]) / dt
        P[3:, 3:] = cov[3:, 3:] / (dt * dt)
    return Control(T_prev_curr=T, cov=cov, nu_curr=nu, nu_cov=P, still=True)


def pose_fallback(
    history: List[Tuple[float, np.ndarray]],
    t: float,
    T_w_c: np.ndarray,
    span_s: Optional[float],
    align: Callable[[np.ndarray, np.ndarray], bool],
) -> Tuple[list, bool]:
    """The moving-start fallback: append the filter's pose ``T_w_c`` at ``t`` to ``history`` (when newer), and once
    >= 3 poses span ``span_s`` (None: never) try ``align(stamps, poses)``.  Returns (the history to keep,
    aligned): empty once aligned, without its oldest pose when the alignment failed.
    """
    if span_s is None:
        return history, False
    if not history or t > history[-1][0]:
        history.append((float(t), np.asarray(T_w_c, float).copy()))
    if len(history) < 3 or history[-1][0] - history[0][0] < span_s:
        return history, False
    if align(np.array([x[0] for x in history]), np.stack([x[1] for x in history])):
        return [], True
    return history[1:], False


class ImuIntegrator:
    """Turns an IMU stream into :class:`Control` increments of the camera.

    ``control(t_prev, t_curr, T_w_c, nu_c, P_nu=None, Sigma=None)``: the camera increment T_prev_curr and its
    right-perturbation covariance, from the filter's pose and body velocity nu_c = (v, w) (camera frame) at
    t_prev.  Gravity and the gyro bias: :meth:`initialise` (static start), :meth:`initialise_from_poses` (moving
    start) or ``g_w`` / ``bg``; :meth:`refine_biases` re-estimates both from the filter's recent poses.
    """

    def __init__(
        self,
        imu: ImuData,
        T_I_C: np.ndarray,
        noise: Optional[ImuNoise] = None,
        g_w: Optional[np.ndarray] = None,
        bg: Optional[np.ndarray] = None,
        ba: Optional[np.ndarray] = None,
        pose_alignment_s: Optional[float] = 1.0,
        pose_sigma_m: float = 5e-3,
        pose_sigma_rad: float = 1e-3,
        max_gravity_sigma_mps2: float = 0.3,
    ):
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
        self.init_check: Optional[MotionCheck] = None  # of the last initialise()
        self.rate_hz = 1.0 / float(np.median(np.diff(imu.t))) if len(imu.t) > 1 else 200.0

    def initialise(self, T_w_c: np.ndarray, t0: float, window_s: float = 1.0, t_end: Optional[float] = None) -> bool:
        """Static alignment: gravity and the gyro bias from the samples within ``window_s`` around ``t0`` (clipped to
        ``t_end``).  Returns whether the window was still (:attr:`init_check`); a moving window is REFUSED: ``g_w``
        stays None and :meth:`control` returns None.
        """
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

    def initialise_from_poses(
        self, stamps, T_w_c, pos_sigma_m: Optional[float] = None, rot_sigma_rad: Optional[float] = None
    ) -> BiasEstimate:
        """Moving-start fallback: gravity and the gyro bias from the filter's camera poses ``T_w_c`` (K+1, 4, 4) at
        ``stamps`` (:func:`~prism_ros.core.imu.alignment.gravity_from_poses`); sets ``g_w`` / ``bg`` unless the gravity
        sigma exceeds ``max_gravity_sigma_mps2``.  Returns the :class:`BiasEstimate`.
        """
        ps = self.pose_sigma_m if pos_sigma_m is None else pos_sigma_m
        rs = self.pose_sigma_rad if rot_sigma_rad is None else rot_sigma_rad
        T_w_I = np.asarray(T_w_c, float).reshape(-1, 4, 4) @ self.T_C_I
        est = gravity_from_poses(
            self.imu, stamps, T_w_I[:, :3, :3], T_w_I[:, :3, 3], self.noise, self.bg, self.ba, rs, ps
        )
        if np.sqrt(np.max(np.diag(est.cov_g))) <= self.max_gravity_sigma_mps2:
            self.g_w, self.bg = est.g_w, est.bg
            self.static_start = False
            self.pose_history = []
        return est

    def _align_from_pose_window(self, stamps: np.ndarray, T_w_c: np.ndarray) -> bool:
        """:func:`pose_fallback`'s alignment: from the poses when the samples cover them."""
        if not (self.imu.t[0] <= stamps[0] and stamps[-1] <= self.imu.t[-1]):
            return False
        self.initialise_from_poses(stamps, T_w_c)
        return self.g_w is not None

    def refine_biases(
        self,
        stamps,
        T_w_c,
        pos_sigma_m: Optional[float] = None,
        rot_sigma_rad: Optional[float] = None,
        gate: bool = True,
    ) -> BiasEstimate:
        """Online bias refinement from the filter's recent camera poses (needs gravity,
        :func:`~prism_ros.core.imu.alignment.estimate_biases`); with ``gate`` a bias is taken only when its sigma is
        below ``noise.gyro_bias_sigma`` / ``noise.accel_bias_sigma``; ``est.applied`` = (gyro taken, accel taken).
        """
        if self.g_w is None:
            raise RuntimeError("ImuIntegrator.refine_biases: gravity unknown")
        ps = self.pose_sigma_m if pos_sigma_m is None else pos_sigma_m
        rs = self.pose_sigma_rad if rot_sigma_rad is None else rot_sigma_rad
        T_w_I = np.asarray(T_w_c, float).reshape(-1, 4, 4) @ self.T_C_I
        est = estimate_biases(
            self.imu, stamps, T_w_I[:, :3, :3], T_w_I[:, :3, 3], self.g_w, self.noise, self.bg, self.ba, rs, ps
        )
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

    def imu_increment(
        self,
        t0: float,
        t1: float,
        R_w_I: np.ndarray,
        v_I: np.ndarray,
        P_v: Optional[np.ndarray] = None,
        tilt_cov: Optional[np.ndarray] = None,
        with_velocity: bool = False,
    ):
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

    def control(
        self,
        t_prev: float,
        t_curr: float,
        T_w_c: np.ndarray,
        nu_c: np.ndarray,
        P_nu: Optional[np.ndarray] = None,
        Sigma: Optional[np.ndarray] = None,
    ) -> Optional[Control]:
        """The camera increment, or None while gravity is unknown (moving start, see
        :meth:`initialise`; the pose fallback, ``pose_alignment_s``, runs from here)."""
        if self.g_w is None:
            self.pose_history, aligned = pose_fallback(
                self.pose_history, t_prev, T_w_c, self.pose_alignment_s, self._align_from_pose_window
            )
            if not aligned:
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
        """Whether the IMU stands still over [t0, t1], and at least the :data:`ZUPT_WINDOW_S` before ``t1``:
        :func:`~prism_ros.core.imu.alignment.detect_motion` and a median rate within :data:`ZUPT_MAX_RATE_RADPS`
        of the gyro bias; False where the samples do not cover the window (10 ms of slack at its start).
        """
        lo = min(t0, t1 - ZUPT_WINDOW_S)
        if float(self.imu.t[0]) > lo + 0.01:
            return False
        chk = detect_motion(self.imu, lo, t1)
        return chk.static and float(np.linalg.norm(chk.gyro_median - self.bg)) <= ZUPT_MAX_RATE_RADPS
