"""Tracker: recovery of a known motion, and the Laplace covariance against a
finite-difference Hessian of the same objective."""

import numpy as np
import pytest

from prism_ros.config import PrismConfig
from prism_ros.core import se3
from prism_ros.core.filter import PrismFilter
from prism_ros.core.image import build_frame
from prism_ros.core.render import render_map
from prism_ros.core.tracker import objective, track
from prism_ros.sim.synthetic import SyntheticSequence


@pytest.fixture(scope="module")
def scene():
    seq = SyntheticSequence(width=160, height=120, n_frames=12, noise=False)
    cfg = PrismConfig.from_dict(
        {"voxel_size_m": 0.02, "truncation_m": 0.08, "track_finest_level": 0, "render_level": 0}
    )
    f = PrismFilter(cfg, seq.camera, seq[0].T_w_c_gt)
    for i in range(0, 7):  # a map from a few exactly posed frames
        fr = seq[i]
        frame = build_frame(fr.rgb, fr.depth, seq.camera, f.levels, cfg.depth_min_m, cfg.depth_max_m)
        f._fuse(frame, fr.T_w_c_gt, np.eye(6) * 1e-10, fr.stamp)
    return seq, cfg, f


def _frame(seq, cfg, f, i):
    fr = seq[i]
    return fr, build_frame(fr.rgb, fr.depth, seq.camera, f.levels, cfg.depth_min_m, cfg.depth_max_m)


def test_tracker_recovers_known_motion(scene):
    seq, cfg, f = scene
    fr, frame = _frame(seq, cfg, f, 10)
    T_gt = fr.T_w_c_gt
    # predict from frame 4's pose: the tracker must recover 6 frames of motion
    T_pred = seq[4].T_w_c_gt
    motion = se3.log(se3.inv(T_pred) @ T_gt)
    assert np.linalg.norm(motion[:3]) > 0.02  # 2.7 cm and 0.45 deg
    Sigma_pred = np.diag([0.05**2] * 3 + [0.05**2] * 3)
    render = render_map(f.map, seq.camera, T_pred, cfg.depth_min_m, cfg.depth_max_m)
    assert render.valid_fraction > 0.5
    tr = track(frame, render, T_pred, Sigma_pred, 3, 0, 10, 1e-7, f.noise, f.track_params, cfg.laplace_patch_px)
    err = se3.log(se3.inv(T_gt) @ tr.T_w_c)
    assert np.linalg.norm(err[:3]) < 2e-3
    assert np.rad2deg(np.linalg.norm(err[3:])) < 0.1
    assert tr.inlier_ratio > 0.7
    # the Laplace covariance is SPD and tighter than the prior
    assert np.all(np.linalg.eigvalsh(tr.cov) > 0)
    assert np.all(np.diag(tr.cov) < np.diag(Sigma_pred))


@pytest.mark.parametrize("use_photo,tol", [(False, 0.1), (True, 0.2)])
def test_laplace_matches_finite_difference_hessian(scene, use_photo, tol):
    seq, cfg, f = scene
    fr, frame = _frame(seq, cfg, f, 4)
    T_pred = fr.T_w_c_gt @ se3.exp(np.array([0.004, -0.003, 0.002, 0.002, -0.001, 0.001]))
    Sigma_pred = np.diag([0.02**2] * 3 + [0.02**2] * 3)
    render = render_map(f.map, seq.camera, T_pred, cfg.depth_min_m, cfg.depth_max_m)
    params = dict(f.track_params, huber_k=1e9, use_photo=use_photo)  # quadratic objective
    tr = track(frame, render, T_pred, Sigma_pred, 3, 0, 20, 1e-9, f.noise, params, cfg.laplace_patch_px)
    T0 = tr.T_w_c

    def cost(xi):
        return objective(frame, render, T0 @ se3.exp(xi), T_pred, Sigma_pred, 0, f.noise, params, cfg.laplace_patch_px)

    # Projective association makes the objective piecewise smooth at the scale of a
    # render pixel, so a 4-point stencil with tiny steps measures the jumps.  Fit the
    # quadratic c0 + g.xi + xi^T H xi / 2 to the objective at random perturbations
    # of a few mm / mrad instead: a finite-difference Hessian robust to them.
    rng = np.random.default_rng(0)
    xs = rng.normal(scale=2e-3, size=(300, 6))
    iu = np.triu_indices(6)
    rows = []
    for x in xs:
        q = np.outer(x, x)
        q = (q + q.T - np.diag(np.diag(q)))[iu] * 0.5  # xi_a xi_b (a<b) and xi_a^2 / 2
        rows.append(np.concatenate([[1.0], x, q]))
    coef = np.linalg.lstsq(np.array(rows), np.array([cost(x) for x in xs]), rcond=None)[0]
    Hfd = np.zeros((6, 6))
    Hfd[iu] = coef[7:]
    Hfd = Hfd + np.triu(Hfd, 1).T
    cov_fd = np.linalg.inv(Hfd)
    # compare the standard deviations and the correlation structure
    sd, sd_fd = np.sqrt(np.diag(tr.cov)), np.sqrt(np.diag(cov_fd))
    assert np.all(np.abs(sd / sd_fd - 1) < tol), (sd, sd_fd)
    corr = tr.cov / np.outer(sd, sd)
    corr_fd = cov_fd / np.outer(sd_fd, sd_fd)
    assert np.abs(corr - corr_fd).max() < 0.2


def test_depth_guided_render_matches_full_raycast(scene):
    """Rays started near the measured depth find the same surface as full rays."""
    seq, cfg, f = scene
    fr = seq[5]
    full = render_map(f.map, seq.camera, fr.T_w_c_gt, cfg.depth_min_m, cfg.depth_max_m)
    guided = render_map(
        f.map,
        seq.camera,
        fr.T_w_c_gt,
        cfg.depth_min_m,
        cfg.depth_max_m,
        guide=fr.depth.astype(np.float32),
        guide_margin=0.3,
    )
    both = (full.depth > 0) & (guided.depth > 0)
    assert both.sum() > 0.95 * (full.depth > 0).sum()
    assert np.mean(np.abs(full.depth[both] - guided.depth[both]) < 1e-3) > 0.99
    assert np.mean(np.abs(full.normal[both] - guided.normal[both]).max(axis=1) < 1e-2) > 0.99


def test_association_gate_widens_with_the_depth_sigma(scene):
    """A frame 0.3 m behind the map (every pixel beyond icp_max_distance_m = 0.1 m) is an
    outlier under the fixed gate; with a per-pixel depth sigma of 0.12 m (far stereo depth)
    icp_max_distance_sigmas = 3 widens the gate to about 0.36 m and the pixels associate.
    Without a depth sigma (the sensor model: a few mm here) the gate stays at 0.1 m."""
    seq, cfg, f = scene
    fr = seq[4]
    far = np.where(fr.depth > 0, fr.depth + 0.3, 0).astype(np.float32)

    def inliers(sigmas, depth_sigma):
        frame = build_frame(fr.rgb, far, seq.camera, f.levels, cfg.depth_min_m, cfg.depth_max_m, depth_sigma)
        render = render_map(f.map, seq.camera, fr.T_w_c_gt, cfg.depth_min_m, cfg.depth_max_m)
        params = dict(f.track_params, max_dist=0.1, max_dist_sigmas=sigmas, use_photo=False)
        tr = track(
            frame, render, fr.T_w_c_gt, np.eye(6) * 1e-12, 1, 0, 1, 1e-9, f.noise, params, cfg.laplace_patch_px
        )  # the prior pins the pose: association is what is measured
        return tr.n_icp, tr.n_overlap

    sigma = np.full(fr.depth.shape, 0.12, np.float32)
    n_fixed, n_overlap = inliers(0.0, sigma)
    n_wide, _ = inliers(3.0, sigma)
    n_sensor, _ = inliers(3.0, None)
    assert n_overlap > 5000, (n_fixed, n_wide, n_sensor, n_overlap)
    assert n_fixed < 0.02 * n_overlap  # 0.3 m > 0.1 m: rejected
    assert n_wide > 0.8 * n_overlap  # 0.3 m < 3 x 0.12 m: associated
    assert n_sensor < 0.02 * n_overlap


def test_tracker_associates_into_a_render_from_its_own_pose(scene):
    """A render made at another pose than the prediction (render_reuse: the previous frame's)
    tracks as well as one made at the prediction: association goes through render.T_w_c."""
    seq, cfg, f = scene
    fr, frame = _frame(seq, cfg, f, 10)
    T_gt, T_pred = fr.T_w_c_gt, seq[8].T_w_c_gt
    Sigma_pred = np.diag([0.05**2] * 3 + [0.05**2] * 3)
    errs = {}
    for name, T_render in (("at the prediction", T_pred), ("at an older pose", seq[5].T_w_c_gt)):
        render = render_map(f.map, seq.camera, T_render, cfg.depth_min_m, cfg.depth_max_m)
        tr = track(frame, render, T_pred, Sigma_pred, 3, 0, 10, 1e-7, f.noise, f.track_params, cfg.laplace_patch_px)
        e = se3.log(se3.inv(T_gt) @ tr.T_w_c)
        errs[name] = (np.linalg.norm(e[:3]), np.rad2deg(np.linalg.norm(e[3:])), tr.inlier_ratio)
    moved = se3.log(se3.inv(seq[5].T_w_c_gt) @ T_pred)
    assert np.linalg.norm(moved[:3]) > 0.015  # the older render is 2.1 cm and 0.44 deg away
    for name, (e_t, e_r, inl) in errs.items():
        assert e_t < 2e-3 and e_r < 0.1 and inl > 0.7, (name, errs)
    # the same older render, mislabelled as made at the prediction, misleads the tracker
    render = render_map(f.map, seq.camera, seq[5].T_w_c_gt, cfg.depth_min_m, cfg.depth_max_m)
    render.T_w_c = T_pred.copy()
    tr = track(frame, render, T_pred, Sigma_pred, 3, 0, 10, 1e-7, f.noise, f.track_params, cfg.laplace_patch_px)
    e = se3.log(se3.inv(T_gt) @ tr.T_w_c)
    assert np.linalg.norm(e[:3]) > 4e-3, errs  # 6.5 mm, against 0.3 mm above
