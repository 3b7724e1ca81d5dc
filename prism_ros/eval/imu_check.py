"""IMU pre-integration against a ground-truth state track (EuRoC ``state_groundtruth_estimate0``).

:func:`preintegration_check` gives the residuals and their coverage over non-overlapping windows;
``python -m prism_ros.eval.imu_check SEQ`` refits the constants below and prints the coverage of the fit and validation
blocks (:func:`split_blocks`).  Reference increments over [t_i, t_j] (R_wI, p, v in the world, gravity ``g_w``)::

    dR = R_i^T R_j,   dv = R_i^T (v_j - v_i - g dt),   dp = R_i^T (p_j - p_i - v_i dt - 1/2 g dt^2)

Residual r = (Log(dR_ref^T dR_imu), dv_imu - dv_ref, dp_imu - dp_ref) with :func:`prism_ros.core.imu.preintegrate`
at the ground truth's biases; its 9x9 covariance sums the IMU's white noise (x ``density_scale``), bias random walk
and the ground truth's own error (:class:`GtNoise`).  Coverage95 of a block (rot, vel, pos: 3 dof; joint: 9): the
share of windows below the chi2 95 % quantile.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Optional, Tuple

import numpy as np

from prism_ros.core import se3
from prism_ros.core.imu import ImuData, ImuNoise, preintegrate
from prism_ros.datasets.euroc_files import read_ns_csv

__all__ = [
    "StateTrack",
    "GtNoise",
    "read_euroc_state_gt",
    "fit_gravity",
    "preintegration_check",
    "EUROC_GT_NOISE",
    "EUROC_DENSITY_SCALE",
    "window_terms",
    "coverage",
    "fit_noise_model",
    "split_blocks",
    "window_starts",
    "EUROC_GRAVITY",
    "select",
    "main",
]

BLOCKS = {"rot": slice(0, 3), "vel": slice(3, 6), "pos": slice(6, 9), "joint": slice(0, 9)}


@dataclass
class StateTrack:
    """A ground-truth state track: stamps (N,), R_w_I (N,3,3), p (N,3), v (N,3) world, biases (N,3)."""

    t: np.ndarray
    R: np.ndarray
    p: np.ndarray
    v: np.ndarray
    bg: np.ndarray
    ba: np.ndarray

    def interp(self, tq: float):
        """(R, p, v, bg, ba) at ``tq``: slerp for the attitude, linear for the rest."""
        t = self.t
        if not (t[0] <= tq <= t[-1]):
            raise ValueError(f"t = {tq} outside the ground truth [{t[0]}, {t[-1]}]")
        k = int(np.clip(np.searchsorted(t, tq, side="right") - 1, 0, len(t) - 2))
        a = (tq - t[k]) / (t[k + 1] - t[k])
        R = self.R[k] @ se3.so3_exp(a * se3.so3_log(self.R[k].T @ self.R[k + 1]))
        lerp = lambda x: (1 - a) * x[k] + a * x[k + 1]  # noqa: E731
        return R, lerp(self.p), lerp(self.v), lerp(self.bg), lerp(self.ba)


def read_euroc_state_gt(path) -> StateTrack:
    """EuRoC ``state_groundtruth_estimate0/data.csv``: ns, p xyz, q wxyz, v xyz, bg xyz, ba xyz."""
    t, a = read_ns_csv(path, 16, "ns, p, q wxyz, v, bg, ba")
    R = np.stack([se3.R_from_quat_xyzw(q) for q in a[:, [4, 5, 6, 3]]])
    return StateTrack(t, R, a[:, 0:3], a[:, 7:10], a[:, 10:13], a[:, 13:16])


@dataclass(frozen=True)
class GtNoise:
    """Standard deviations of the ground truth's own error at each sample (independent)."""

    sigma_rot_rad: float = 0.0
    sigma_pos_m: float = 0.0
    sigma_vel_mps: float = 0.0
    sigma_bg_radps: float = 0.0
    sigma_ba_mps2: float = 0.0


#: Error of EuRoC's ground truth (40 Hz, its bias columns included), fitted by :func:`fit_noise_model` on
#: the fit blocks of the V1_02 flight (50 ms and 0.5 s windows); the other blocks validate it.
EUROC_GT_NOISE = GtNoise(
    sigma_rot_rad=0.0, sigma_pos_m=4.5e-5, sigma_vel_mps=0.0, sigma_bg_radps=1.25e-3, sigma_ba_mps2=3.08e-2
)
#: Multiplier on sensor.yaml's white-noise densities (the node's imu_noise_density_scale), fitted with
#: EUROC_GT_NOISE (rotor vibration in flight raises the effective noise above the static Allan densities).
EUROC_DENSITY_SCALE = 3.87
#: Gravity in the EuRoC Vicon world (m/s^2), :func:`fit_gravity` on V1_02's fit blocks (0.5 s windows).
EUROC_GRAVITY = np.array([-0.0196, -0.0242, -9.8163])
#: Length of the interleaved fit / validation blocks (s).
SPLIT_BLOCK_S = 5.0


def fit_gravity(imu: ImuData, gt: StateTrack, starts, window_s: float = 0.5) -> np.ndarray:
    """Gravity in the ground truth's world, least squares over the windows [t, t + window_s]
    for t in ``starts``: v_j - v_i = g dt + R_i dv_imu (biases from the ground truth)."""
    acc = []
    for ta in np.atleast_1d(np.asarray(starts, float)):
        tb = ta + window_s
        Ri, _, vi, bg, ba = gt.interp(ta)
        _, _, vj, _, _ = gt.interp(tb)
        pi = preintegrate(imu, ta, tb, ImuNoise(), bg, ba)
        acc.append((vj - vi - Ri @ pi.dv) / window_s)
    if not acc:
        raise ValueError("fit_gravity: no windows")
    return np.mean(acc, axis=0)


def split_blocks(t: np.ndarray, t0: float, block_s: float = SPLIT_BLOCK_S) -> np.ndarray:
    """True for the window starts ``t`` in the fit blocks (even ``block_s`` blocks from t0)."""
    return (np.floor((np.asarray(t, float) - t0) / block_s) % 2) == 0


def window_starts(t0: float, t1: float, window_s: float) -> np.ndarray:
    """Starts of the non-overlapping windows of ``window_s`` tiling [t0, t1]."""
    return t0 + window_s * np.arange(int(np.floor((t1 - t0) / window_s + 1e-9)))


def _gt_jacobians(Ri: np.ndarray, dR: np.ndarray, dv: np.ndarray, dp: np.ndarray, dt: float):
    """d(reference residual) / d(theta, dp, dv) of the ground truth at the window's start (Ji) and end (Jj); theta
    the right perturbation of R_w_I, dp / dv world-frame errors.
    """
    Rt = Ri.T
    Ji = np.zeros((9, 9))
    Jj = np.zeros((9, 9))
    # rotation: dR_ref = Exp(-th_i) R_i^T R_j Exp(th_j) -> residual Log(dR_ref^T dR_imu) ~ dR^T th_i - th_j
    Ji[0:3, 0:3] = dR.T
    Jj[0:3, 0:3] = -np.eye(3)
    # velocity: dv_ref = Exp(-th_i) R_i^T (...) -> d dv_ref = [dv]x th_i + R_i^T (dv_j - dv_i)
    Ji[3:6, 0:3] = -se3.hat(dv)
    Ji[3:6, 6:9] = Rt
    Jj[3:6, 6:9] = -Rt
    # position: d dp_ref = [dp]x th_i + R_i^T (dp_j - dp_i - dv_i dt)
    Ji[6:9, 0:3] = -se3.hat(dp)
    Ji[6:9, 3:6] = Rt
    Ji[6:9, 6:9] = Rt * dt
    Jj[6:9, 3:6] = -Rt
    return Ji, Jj


def window_terms(
    imu: ImuData,
    gt: StateTrack,
    window_s: float,
    noise: ImuNoise,
    g_w: np.ndarray,
    t0: Optional[float] = None,
    t1: Optional[float] = None,
) -> Dict[str, np.ndarray]:
    """Residuals and covariance terms (each linear in one noise variance) of windows of ``window_s`` tiling
    [t0, t1] (default: where IMU and ground truth exist).  Returns ``t`` (N,) starts, ``res`` (N, 9) and (N, 9, 9)
    terms: ``gyro`` / ``acc`` (white noise at unit density), ``rw`` (``noise``'s bias random walk), ``rot`` /
    ``pos`` / ``vel`` (the ground truth's per-sample error at unit sigma).
    """
    lo = max(float(imu.t[0]), float(gt.t[0])) if t0 is None else float(t0)
    hi = min(float(imu.t[-1]), float(gt.t[-1])) if t1 is None else float(t1)
    unit_g = replace(noise, gyro_noise_density=1.0, accel_noise_density=0.0)
    unit_a = replace(noise, gyro_noise_density=0.0, accel_noise_density=1.0)
    g_w = np.asarray(g_w, float)
    out = {k: [] for k in ("t", "res", "gyro", "acc", "rw", "bg", "ba", "rot", "pos", "vel")}
    for ta in window_starts(lo, hi, window_s):
        tb = ta + window_s
        Ri, pi_, vi, bg, ba = gt.interp(ta)
        Rj, pj, vj, _, _ = gt.interp(tb)
        dt = tb - ta
        dR_ref = Ri.T @ Rj
        dv_ref = Ri.T @ (vj - vi - g_w * dt)
        dp_ref = Ri.T @ (pj - pi_ - vi * dt - 0.5 * g_w * dt * dt)
        pg = preintegrate(imu, ta, tb, unit_g, bg, ba)
        pa = preintegrate(imu, ta, tb, unit_a, bg, ba)
        out["t"].append(ta)
        out["res"].append(np.concatenate([se3.so3_log(dR_ref.T @ pg.dR), pg.dv - dv_ref, pg.dp - dp_ref]))
        out["gyro"].append(pg.cov)
        out["acc"].append(pa.cov)
        # bias random walk: the mean bias over the window departs from the one at t_i by
        # sigma^2 = rw^2 dt / 3
        out["rw"].append(
            (noise.gyro_random_walk**2 * dt / 3.0) * pg.J_bg @ pg.J_bg.T
            + (noise.accel_random_walk**2 * dt / 3.0) * pg.J_ba @ pg.J_ba.T
        )
        out["bg"].append(pg.J_bg @ pg.J_bg.T)
        out["ba"].append(pg.J_ba @ pg.J_ba.T)
        Ji, Jj = _gt_jacobians(Ri, dR_ref, dv_ref, dp_ref, dt)
        for name, s in (("rot", slice(0, 3)), ("pos", slice(3, 6)), ("vel", slice(6, 9))):
            out[name].append(Ji[:, s] @ Ji[:, s].T + Jj[:, s] @ Jj[:, s].T)
    return {k: np.asarray(v) for k, v in out.items()}


def _total_cov(terms, noise: ImuNoise, gt_noise: GtNoise, density_scale: float) -> np.ndarray:
    C = (
        (noise.gyro_noise_density * density_scale) ** 2 * terms["gyro"]
        + (noise.accel_noise_density * density_scale) ** 2 * terms["acc"]
        + terms["rw"]
        + gt_noise.sigma_rot_rad**2 * terms["rot"]
        + gt_noise.sigma_pos_m**2 * terms["pos"]
        + gt_noise.sigma_vel_mps**2 * terms["vel"]
        + gt_noise.sigma_bg_radps**2 * terms["bg"]
        + gt_noise.sigma_ba_mps2**2 * terms["ba"]
    )
    return 0.5 * (C + np.swapaxes(C, 1, 2))


def coverage(res: np.ndarray, cov: np.ndarray) -> Dict[str, Dict[str, object]]:
    """Mahalanobis distances (``d2``), coverage95 and RMS of each block of 9-dof residuals."""
    from scipy.stats import chi2

    d2, cov95, rms = {}, {}, {}
    for name, s in BLOCKS.items():
        r = res[:, s]
        d = np.einsum("ni,ni->n", r, np.linalg.solve(cov[:, s, s], r[:, :, None])[:, :, 0]) if len(r) else np.zeros(0)
        d2[name] = d
        cov95[name] = float(np.mean(d < chi2.ppf(0.95, s.stop - s.start))) if len(d) else float("nan")
        rms[name] = float(np.sqrt(np.mean(np.sum(r**2, axis=1)))) if len(d) else float("nan")
    return {"d2": d2, "coverage95": cov95, "rms": rms}


def preintegration_check(
    imu: ImuData,
    gt: StateTrack,
    window_s: float,
    noise: ImuNoise,
    g_w: np.ndarray,
    gt_noise: GtNoise = GtNoise(),
    density_scale: float = 1.0,
    t0: Optional[float] = None,
    t1: Optional[float] = None,
) -> Dict[str, object]:
    """Pre-integration residuals against ``gt`` and their coverage over non-overlapping windows.

    Returns ``{"t", "res" (N, 9), "cov" (N, 9, 9), "d2": {block: (N,)}, "coverage95":
    {block: float}, "rms": {block: float}}`` (blocks rot, vel, pos, joint).
    """
    terms = window_terms(imu, gt, window_s, noise, g_w, t0, t1)
    cov = _total_cov(terms, noise, gt_noise, density_scale)
    out = {"t": terms["t"], "res": terms["res"], "cov": cov}
    out.update(coverage(terms["res"], cov))
    return out


def fit_noise_model(terms_list, noise: ImuNoise, blocks=("rot", "vel", "pos", "joint")) -> Tuple[float, GtNoise]:
    """(density_scale, GtNoise) that put each block's 95 % Mahalanobis quantile, in each window set of
    ``terms_list``, on the chi2 95 % quantile of its dof: least squares on the log ratios (Nelder-Mead on the log
    sigmas); matching the quantile keeps the fit honest about heavy tails.
    """
    from scipy.optimize import minimize
    from scipy.stats import chi2

    q = {b: chi2.ppf(0.95, BLOCKS[b].stop - BLOCKS[b].start) for b in blocks}

    def unpack(x):
        e = np.exp(x)
        return float(e[0]), GtNoise(*[float(v) for v in e[1:]])

    def cost(x):
        k, gn = unpack(x)
        c = 0.0
        for T in terms_list:
            d2 = coverage(T["res"], _total_cov(T, noise, gn, k))["d2"]
            c += sum(np.log(np.quantile(d2[b], 0.95) / q[b]) ** 2 for b in blocks)
        return c

    x0 = np.log([4.0, 1e-4, 2e-5, 1e-3, 7e-4, 2.5e-2])
    sol = minimize(cost, x0, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-6, "maxiter": 3000})
    return unpack(sol.x)


def select(terms: Dict[str, np.ndarray], mask: np.ndarray) -> Dict[str, np.ndarray]:
    """The windows of ``terms`` (:func:`window_terms`) where ``mask`` is true."""
    return {k: v[mask] for k, v in terms.items()}


def main(argv=None) -> int:
    """``python -m prism_ros.eval.imu_check SEQ`` (a folder with mav0/imu0 and
    mav0/state_groundtruth_estimate0): refits gravity and the noise model on the fit blocks
    and prints the coverage95 of the fit and validation blocks, with the stored constants too."""
    import argparse
    from pathlib import Path

    from prism_ros.datasets.euroc_files import read_euroc_imu_csv

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("seq")
    a = ap.parse_args(argv)
    m = Path(a.seq) / "mav0"
    imu = read_euroc_imu_csv(m / "imu0" / "data.csv")
    gt = read_euroc_state_gt(m / "state_groundtruth_estimate0" / "data.csv")
    noise = ImuNoise()
    t0, t1 = float(gt.t[0]), min(float(imu.t[-1]), float(gt.t[-1]))
    w5 = window_starts(t0, t1, 0.5)
    g = fit_gravity(imu, gt, w5[split_blocks(w5, t0)], 0.5)
    print(f"gravity (fit blocks): {np.round(g, 4)} |g| = {np.linalg.norm(g):.4f}")
    terms = {w: window_terms(imu, gt, w, noise, g, t0, t1) for w in (0.05, 0.5)}
    k, gn = fit_noise_model([select(T, split_blocks(T["t"], t0)) for T in terms.values()], noise)
    print(f"fitted density_scale = {k:.3g}, {gn}")
    for label, (kk, gg) in (
        ("refit", (k, gn)),
        ("stored", (EUROC_DENSITY_SCALE, EUROC_GT_NOISE)),
        ("sensor.yaml only", (1.0, GtNoise())),
    ):
        for w, T in terms.items():
            for part, m_ in (("fit", split_blocks(T["t"], t0)), ("validation", ~split_blocks(T["t"], t0))):
                S = select(T, m_)
                c = coverage(S["res"], _total_cov(S, noise, gg, kk))["coverage95"]
                print(
                    f"{label:17s} {w * 1000:4.0f} ms {part:10s} n={len(S['res']):3d} "
                    + " ".join(f"{b}={c[b]:.3f}" for b in BLOCKS)
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
