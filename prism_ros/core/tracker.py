"""Pose MAP estimate and Laplace covariance.

Coarse-to-fine Gauss-Newton on SE(3), right perturbation T <- T Exp(xi), xi = (rho, phi), over

  * point-to-plane ICP residuals   r = n^T (T p_c - v)          (projective association
    with the render's world vertex v and normal n), variance sigma_z(d)^2 + sigma_map^2;
  * photometric residuals          r = I_render(pi(T_r^-1 T p_c)) - I_cur(u), variance
    sigma_I^2 (T_r: the render's pose, normally T_pred);
  * the dynamics prior             r = Log(T_pred^-1 T), information Sigma_pred^-1,

with Huber weights on the noise-normalised residuals.  Each pixel at pyramid level l counts as
4^l / laplace_patch_px independent measurements; the Gauss-Newton Hessian of that objective at the
optimum (prior included) is inverted for the Laplace covariance.

Model error (:func:`effective_patch_px`): the residual level ``s2 = sum w r^2 / sigma^2 / (n c_k)``
(``c_k = 2 Phi(k) - 1``, Huber threshold k) is 1 for noise the model describes; the excess
``max(0, s2 - s2_0)`` is a model-error variance correlated over ``model_error_patch_px`` pixels, so each
pixel counts as 4^l / (laplace_patch_px + model_error_patch_px * excess) measurements (docs/design.md,
"Laplace covariance"; the fit: docs/uncertainty.md, "The pose covariance model and its fit").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from . import se3
from .image import FramePyramid, build_frame
from .numba_flags import FASTMATH
from .render import Render

__all__ = [
    "TrackResult",
    "track",
    "track_params",
    "pyramid_levels",
    "frame_pyramid",
    "accumulate",
    "objective",
    "effective_patch_px",
    "huber_residual_level",
]

_NSTAT = 21 + 6 + 6  # upper-triangular H, g, [cost, n_valid, n_icp_inliers, n_photo, sum w, n_overlap]
# (n_valid and n_overlap count the valid pixels with a normal: the ones ICP can take as inliers)


@njit(cache=True, inline="always")
def _add(acc, J, r, w):
    k = 0
    for a in range(6):
        for b in range(a, 6):
            acc[k] += w * J[a] * J[b]
            k += 1
    for a in range(6):
        acc[21 + a] += w * J[a] * r
    acc[27] += w * r * r


@njit(cache=True, parallel=True, nogil=True, fastmath=FASTMATH)
def accumulate(
    depth,
    normals,
    gray,
    K,
    R,
    t,
    R_rw,
    t_rw,
    Kr,
    r_depth,
    r_vert,
    r_norm,
    r_int,
    r_sigma,
    r_gx,
    r_gy,
    noise,
    max_dist,
    max_dist_sigmas,
    min_cos,
    huber_k,
    sigma_i,
    use_photo,
    photo_min_grad,
    depth_sigma,
    ds_step,
    out,
):
    """Per-row sums of J^T W J, J^T W r and counts at pose T = (R, t) into ``out`` (H, _NSTAT); (R_rw, t_rw) maps
    world points into the render camera; ``depth_sigma``: a full-resolution sigma image (or 0x0), stride ``ds_step``.
    """
    H, W = depth.shape
    Hr, Wr = r_depth.shape
    fx, fy, cx, cy = K[0], K[1], K[2], K[3]
    rfx, rfy, rcx, rcy = Kr[0], Kr[1], Kr[2], Kr[3]
    c0, c2, z0 = noise[0], noise[1], noise[2]
    use_ds = depth_sigma.shape[0] > 0
    for v in prange(H):
        acc = out[v]
        acc[:] = 0.0
        J = np.empty(6)
        for u in range(W):
            d = depth[v, u]
            if d <= 0.0:
                continue
            cnx = normals[v, u, 0]
            cny = normals[v, u, 1]
            cnz = normals[v, u, 2]
            has_n = not (cnx == 0.0 and cny == 0.0 and cnz == 0.0)
            if has_n:  # only a pixel with a normal can be an ICP inlier: the ratios count those
                acc[28] += 1.0
            pcx = (u - cx) / fx * d
            pcy = (v - cy) / fy * d
            pcz = d
            # q = T p_c (world), p' = T_r^-1 q (render camera)
            qx = R[0, 0] * pcx + R[0, 1] * pcy + R[0, 2] * pcz + t[0]
            qy = R[1, 0] * pcx + R[1, 1] * pcy + R[1, 2] * pcz + t[1]
            qz = R[2, 0] * pcx + R[2, 1] * pcy + R[2, 2] * pcz + t[2]
            ppx = R_rw[0, 0] * qx + R_rw[0, 1] * qy + R_rw[0, 2] * qz + t_rw[0]
            ppy = R_rw[1, 0] * qx + R_rw[1, 1] * qy + R_rw[1, 2] * qz + t_rw[1]
            ppz = R_rw[2, 0] * qx + R_rw[2, 1] * qy + R_rw[2, 2] * qz + t_rw[2]
            if ppz <= 1e-3:
                continue
            uf = rfx * ppx / ppz + rcx
            vf = rfy * ppy / ppz + rcy
            ur = int(uf + 0.5)
            vr = int(vf + 0.5)
            if ur < 0 or vr < 0 or ur >= Wr or vr >= Hr:
                continue
            # ---- point-to-plane ICP
            if r_depth[vr, ur] > 0.0:
                if has_n:
                    acc[32] += 1.0
                nx = r_norm[vr, ur, 0]
                ny = r_norm[vr, ur, 1]
                nz = r_norm[vr, ur, 2]
                ex = qx - r_vert[vr, ur, 0]
                ey = qy - r_vert[vr, ur, 1]
                ez = qz - r_vert[vr, ur, 2]
                dist2 = ex * ex + ey * ey + ez * ez
                if use_ds:
                    sz = depth_sigma[v * ds_step, u * ds_step]
                else:
                    dz = d - z0
                    sz = c0 + c2 * dz * dz
                sm = r_sigma[vr, ur]
                var = sz * sz + sm * sm
                # association gate: max_dist, widened to max_dist_sigmas of the combined
                # noise where that is larger (far stereo depth: sigma_z grows as z^2)
                gate2 = max(max_dist * max_dist, max_dist_sigmas * max_dist_sigmas * var)
                if has_n and dist2 < gate2:
                    # current normal in world
                    wnx = R[0, 0] * cnx + R[0, 1] * cny + R[0, 2] * cnz
                    wny = R[1, 0] * cnx + R[1, 1] * cny + R[1, 2] * cnz
                    wnz = R[2, 0] * cnx + R[2, 1] * cny + R[2, 2] * cnz
                    if wnx * nx + wny * ny + wnz * nz >= min_cos:
                        r = nx * ex + ny * ey + nz * ez
                        sd = np.sqrt(var)
                        e = abs(r) / sd
                        w = 1.0 if e <= huber_k else huber_k / e
                        # a = R^T n (normal in the current camera frame); J = [a, p_c x a]
                        ax = R[0, 0] * nx + R[1, 0] * ny + R[2, 0] * nz
                        ay = R[0, 1] * nx + R[1, 1] * ny + R[2, 1] * nz
                        az = R[0, 2] * nx + R[1, 2] * ny + R[2, 2] * nz
                        J[0] = ax
                        J[1] = ay
                        J[2] = az
                        J[3] = pcy * az - pcz * ay
                        J[4] = pcz * ax - pcx * az
                        J[5] = pcx * ay - pcy * ax
                        _add(acc, J, r, w / var)
                        acc[29] += 1.0
                        acc[31] += w
            # ---- photometric
            if use_photo:
                if uf < 0.0 or vf < 0.0 or uf >= Wr - 1 or vf >= Hr - 1:
                    continue
                u0 = int(uf)
                v0 = int(vf)
                if (
                    r_depth[v0, u0] <= 0.0
                    or r_depth[v0, u0 + 1] <= 0.0
                    or r_depth[v0 + 1, u0] <= 0.0
                    or r_depth[v0 + 1, u0 + 1] <= 0.0
                ):
                    continue
                a = uf - u0
                b = vf - v0
                w00 = (1 - a) * (1 - b)
                w01 = a * (1 - b)
                w10 = (1 - a) * b
                w11 = a * b
                gxv = w00 * r_gx[v0, u0] + w01 * r_gx[v0, u0 + 1] + w10 * r_gx[v0 + 1, u0] + w11 * r_gx[v0 + 1, u0 + 1]
                gyv = w00 * r_gy[v0, u0] + w01 * r_gy[v0, u0 + 1] + w10 * r_gy[v0 + 1, u0] + w11 * r_gy[v0 + 1, u0 + 1]
                if abs(gxv) + abs(gyv) < photo_min_grad:
                    continue
                ir = (
                    w00 * r_int[v0, u0]
                    + w01 * r_int[v0, u0 + 1]
                    + w10 * r_int[v0 + 1, u0]
                    + w11 * r_int[v0 + 1, u0 + 1]
                )
                r = ir - gray[v, u]
                e = abs(r) / sigma_i
                w = 1.0 if e <= huber_k else huber_k / e
                # d pi / d p' (render pixels) times image gradient, pulled back to the current camera
                iz = 1.0 / ppz
                jx = gxv * rfx * iz
                jy = gyv * rfy * iz
                jz = -(gxv * rfx * ppx + gyv * rfy * ppy) * iz * iz
                # c = R_rw^T (jx, jy, jz) (world), then b = R^T c (current camera)
                wx_ = R_rw[0, 0] * jx + R_rw[1, 0] * jy + R_rw[2, 0] * jz
                wy_ = R_rw[0, 1] * jx + R_rw[1, 1] * jy + R_rw[2, 1] * jz
                wz_ = R_rw[0, 2] * jx + R_rw[1, 2] * jy + R_rw[2, 2] * jz
                bx = R[0, 0] * wx_ + R[1, 0] * wy_ + R[2, 0] * wz_
                by = R[0, 1] * wx_ + R[1, 1] * wy_ + R[2, 1] * wz_
                bz = R[0, 2] * wx_ + R[1, 2] * wy_ + R[2, 2] * wz_
                J[0] = bx
                J[1] = by
                J[2] = bz
                J[3] = pcy * bz - pcz * by
                J[4] = pcz * bx - pcx * bz
                J[5] = pcx * by - pcy * bx
                _add(acc, J, r, w / (sigma_i * sigma_i))
                acc[30] += 1.0


def _unpack(s):
    H = np.empty((6, 6))
    k = 0
    for a in range(6):
        for b in range(a, 6):
            H[a, b] = H[b, a] = s[k]
            k += 1
    return H, s[21:27].copy()


@dataclass
class TrackResult:
    T_w_c: np.ndarray
    cov: np.ndarray  # 6x6, right perturbation at T_w_c
    H_data: np.ndarray  # scaled data Hessian at the optimum (finest level)
    iterations: int
    inlier_ratio: float  # ICP inliers / n_overlap: of the pixels with a normal the map covers, not of all valid ones
    n_valid: int  # valid pixels with a normal
    n_icp: int
    n_photo: int
    prior_mahalanobis2: float
    n_overlap: int  # valid pixels with a normal that land on the rendered map (the ones ICP can associate)
    converged: bool
    residual_level: float = float("nan")  # s2 at the optimum (module docstring)
    patch_px: float = float("nan")  # effective pixels per independent measurement of the covariance


def track_params(cfg) -> dict:
    """The ``params`` of :func:`track` (association, robustness, model error) from a
    :class:`~prism_ros.core.config.FilterConfig`."""
    return dict(
        max_dist=cfg.icp_max_distance_m,
        max_dist_sigmas=cfg.icp_max_distance_sigmas,
        min_cos=float(np.cos(np.deg2rad(cfg.icp_max_normal_angle_deg))),
        huber_k=cfg.huber_k,
        sigma_i=cfg.intensity_noise_sigma,
        use_photo=bool(cfg.use_photometric),
        photo_min_grad=cfg.photometric_min_gradient,
        model_error_patch_px=cfg.model_error_patch_px,
        model_error_residual_level=cfg.model_error_residual_level,
    )


def pyramid_levels(cfg) -> int:
    """Levels of a frame's pyramid for a :class:`~prism_ros.core.config.FilterConfig`: one more than tracking
    needs (recovery's coarser stages), and at least the render level's."""
    return max(cfg.track_finest_level + cfg.track_levels + 1, cfg.render_level + 1)


def frame_pyramid(cfg, camera, rgb: np.ndarray, depth: np.ndarray, depth_sigma=None) -> FramePyramid:
    """A frame's pyramid as tracking needs it (:func:`~prism_ros.core.image.build_frame` with a FilterConfig's
    depth range, :func:`pyramid_levels`, normals from the finest tracking level, intensity only with photometric
    residuals); InvalidFrameError on unusable images."""
    levels = pyramid_levels(cfg)
    return build_frame(
        rgb,
        depth,
        camera,
        levels,
        cfg.depth_min_m,
        cfg.depth_max_m,
        depth_sigma,
        normal_levels=range(cfg.track_finest_level, levels),
        gray=bool(cfg.use_photometric),
    )


def huber_residual_level(chi2: float, n: int, huber_k: float) -> float:
    """s2 = chi2 / (n c_k), ``c_k = E[w e^2] = 2 Phi(k) - 1`` for standard normal e and Huber
    weights w = min(1, k / |e|): 1 when the residuals follow the noise model (within Huber)."""
    from math import erf, sqrt

    c_k = erf(huber_k / sqrt(2.0))  # 2 Phi(k) - 1
    return float(chi2) / (max(int(n), 1) * c_k)


def effective_patch_px(patch_px: float, model_patch_px: float, residual_level: float, level0: float) -> float:
    """Pixels per independent measurement: ``patch_px + model_patch_px * max(0, s2 - s2_0)``."""
    return float(patch_px + model_patch_px * max(0.0, residual_level - level0))


def _eval(frame: FramePyramid, lvl: int, render: Render, T: np.ndarray, T_rw: np.ndarray, noise, params, out):
    """Sums of :func:`accumulate` at pose T; ``T_rw`` maps world points into the render's camera."""
    cam = frame.cameras[lvl]
    ds = frame.depth_sigma if frame.depth_sigma is not None else np.zeros((0, 0), np.float32)
    accumulate(
        frame.depth[lvl],
        frame.normals[lvl],
        frame.gray[lvl],
        cam.params,
        np.ascontiguousarray(T[:3, :3]),
        np.ascontiguousarray(T[:3, 3]),
        np.ascontiguousarray(T_rw[:3, :3]),
        np.ascontiguousarray(T_rw[:3, 3]),
        render.camera.params,
        render.depth,
        render.vertex,
        render.normal,
        render.intensity,
        render.sigma,
        render.grad_x,
        render.grad_y,
        noise,
        params["max_dist"],
        params.get("max_dist_sigmas", 0.0),
        params["min_cos"],
        params["huber_k"],
        params["sigma_i"],
        params["use_photo"],
        params["photo_min_grad"],
        ds,
        1 << lvl,
        out,
    )
    s = out.sum(axis=0)
    Hd, gd = _unpack(s)
    return Hd, gd, s


def objective(
    frame: FramePyramid,
    render: Render,
    T: np.ndarray,
    T_pred: np.ndarray,
    Sigma_pred: np.ndarray,
    lvl: int,
    noise: np.ndarray,
    params: dict,
    patch_px: float,
) -> float:
    """The tracker's (scaled) negative log posterior at T, 0.5 (sum w r^2 / sigma^2 + r_p^T Lambda r_p); with unit
    Huber weights its Hessian is what :func:`track` inverts for the Laplace covariance.
    """
    T_pw = se3.inv(T_pred)
    out = np.empty((frame.depth[lvl].shape[0], _NSTAT))
    _, _, s = _eval(frame, lvl, render, T, se3.inv(render.T_w_c), noise, params, out)
    r_p = se3.log(T_pw @ T)
    Lambda = np.linalg.inv(Sigma_pred)
    return 0.5 * ((4.0**lvl) / patch_px * s[27] + r_p @ Lambda @ r_p)


def track(
    frame: FramePyramid,
    render: Render,
    T_pred: np.ndarray,
    Sigma_pred: np.ndarray,
    levels: int,
    finest: int,
    max_iters: int,
    eps: float,
    noise: np.ndarray,
    params: dict,
    patch_px: float,
) -> TrackResult:
    """Gauss-Newton MAP of the pose against ``render`` plus the prior N(T_pred, Sigma_pred); the render may come
    from any pose near T_pred (association is projective into it).
    """
    Lambda = np.linalg.inv(Sigma_pred)
    Lambda = 0.5 * (Lambda + Lambda.T)
    T_pw = se3.inv(T_pred)
    T_rw = se3.inv(render.T_w_c)
    T = T_pred.copy()
    total_iters = 0
    converged = False
    coarsest = min(finest + levels - 1, len(frame.depth) - 1)
    last = None  # (Hd, s, |dx|) of the last finest-level iteration
    for lvl in range(coarsest, finest - 1, -1):
        scale = (4.0**lvl) / patch_px
        out = np.empty((frame.depth[lvl].shape[0], _NSTAT))
        iters = max(2, max_iters >> (coarsest - lvl))
        for _ in range(iters):
            Hd, gd, s = _eval(frame, lvl, render, T, T_rw, noise, params, out)
            r_p = se3.log(T_pw @ T)
            Hm = scale * Hd + Lambda
            g = scale * gd + Lambda @ r_p
            try:
                dx = -np.linalg.solve(Hm, g)
            except np.linalg.LinAlgError:
                break
            T = T @ se3.exp(dx)
            total_iters += 1
            if lvl == finest:
                last = (Hd, s, float(np.linalg.norm(dx)))
            if np.linalg.norm(dx) < eps:
                converged = True
                break
    # Laplace: Gauss-Newton Hessian of the same (scaled) objective at the optimum.  The
    # last iteration's Hessian is reused when the finest level converged (its last step,
    # below eps, moved the pose less than that since the Hessian was evaluated).
    lvl = finest
    scale = (4.0**lvl) / patch_px
    if last is not None and last[2] < eps:
        Hd, s = last[0], last[1]
    else:
        out = np.empty((frame.depth[lvl].shape[0], _NSTAT))
        Hd, gd, s = _eval(frame, lvl, render, T, T_rw, noise, params, out)
    n_valid = int(s[28])
    n_icp = int(s[29])
    n_overlap = int(s[32])
    # model error: fewer independent measurements when the residuals exceed the noise model
    s2 = huber_residual_level(s[27], n_icp + int(s[30]), params["huber_k"])
    patch_eff = effective_patch_px(
        patch_px, params.get("model_error_patch_px", 0.0), s2, params.get("model_error_residual_level", np.inf)
    )
    scale = (4.0**lvl) / patch_eff
    H = scale * Hd + Lambda
    H = 0.5 * (H + H.T)
    cov = np.linalg.inv(H)
    cov = 0.5 * (cov + cov.T)
    r_p = se3.log(T_pw @ T)
    return TrackResult(
        T_w_c=T,
        cov=cov,
        H_data=scale * Hd,
        iterations=total_iters,
        inlier_ratio=n_icp / max(1, n_overlap),
        n_valid=n_valid,
        n_icp=n_icp,
        n_photo=int(s[30]),
        prior_mahalanobis2=float(r_p @ Lambda @ r_p),
        n_overlap=n_overlap,
        converged=converged,
        residual_level=s2,
        patch_px=patch_eff,
    )
