"""The synthetic RGB-D sequence: exact geometry, noise model, holes, trajectory, determinism."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from prism_ros.config import PrismConfig
from prism_ros.core.camera import Camera
from prism_ros.datasets import Frame
from prism_ros.sim.synthetic import SyntheticSequence
from prism_ros.sim.synthetic import look_at, make_scene


@pytest.fixture(scope="module")
def clean():
    return SyntheticSequence(n_frames=300, noise=False)


@pytest.fixture(scope="module")
def noisy():
    return SyntheticSequence(n_frames=300, noise=True)


def _world_points(cam: Camera, depth: np.ndarray, T: np.ndarray):
    P = cam.backproject(depth).reshape(-1, 3).astype(np.float64)
    m = depth.reshape(-1) > 0
    return P[m] @ T[:3, :3].T + T[:3, 3], m


def test_frame_contract(noisy):
    f = noisy[0]
    assert isinstance(f, Frame) and f.index == 0 and f.stamp == 0.0
    assert f.rgb.shape == (240, 320, 3) and f.rgb.dtype == np.uint8
    assert f.depth.shape == (240, 320) and f.depth.dtype == np.float32
    assert np.all(np.isfinite(f.depth)) and f.depth.min() == 0.0
    assert f.T_w_c_gt.shape == (4, 4) and f.T_w_c_gt.dtype == np.float64
    c = noisy.camera
    assert (c.fx, c.fy, c.cx, c.cy) == (262.5, 262.5, 159.5, 119.5)
    np.testing.assert_allclose(noisy.stamps(), np.arange(300) / 30.0)
    np.testing.assert_allclose(noisy.gt_poses()[7], noisy[7].T_w_c_gt)


@pytest.mark.parametrize("i", [0, 77, 150, 299])
def test_clean_depth_lies_on_the_sdf(clean, i):
    f = clean[i]
    valid = f.depth > 0
    assert valid.mean() > 0.999  # a closed room: every ray hits
    P, _ = _world_points(clean.camera, f.depth, f.T_w_c_gt)
    d = np.abs(clean.sdf(P))
    assert d.max() < 1e-3 and np.median(d) < 1e-5
    assert 0.3 < f.depth[valid].min() and f.depth.max() < 4.5
    assert 1.0 < np.median(f.depth[valid]) < 3.0


def test_depth_is_optical_z_and_axes_follow_rep103(clean):
    """Camera at (-1, 0, 2) looking along +x (z up): the x = +2 wall is at depth exactly 3
    everywhere (z, not ray length); the ceiling is at the top (y down), the y = -1.5 wall
    on the right (x right)."""
    T = look_at(np.array([-1.0, 0.0, 2.0]), np.array([2.0, 0.0, 2.0]))
    np.testing.assert_allclose(T[:3, :3], [[0, 0, 1], [-1, 0, 0], [0, -1, 0]], atol=1e-12)
    r = clean.render(T)
    n = r["normal"]
    wall = (r["ids"] == 0) & (n[..., 0] < -0.99)
    assert wall.sum() > 5000
    np.testing.assert_allclose(r["depth"][wall], 3.0, atol=2e-6)
    ceiling = (r["ids"] == 0) & (n[..., 2] < -0.99)
    v_ceiling = np.nonzero(ceiling)[0]
    assert len(v_ceiling) > 500 and v_ceiling.max() < clean.camera.cy
    right = (r["ids"] == 0) & (n[..., 1] > 0.99)
    u_right = np.nonzero(right)[1]
    assert len(u_right) > 500 and u_right.min() > clean.camera.cx
    # a ceiling pixel: the ray (K^-1 [u v 1], optical z = 1) rises 0.5 m at depth z
    v, u = np.argwhere(ceiling)[0]
    ray = np.array([(u - clean.camera.cx) / clean.camera.fx, (v - clean.camera.cy) / clean.camera.fy, 1.0])
    z_expect = 0.5 / (T[:3, :3] @ ray)[2]
    assert r["depth"][v, u] == pytest.approx(z_expect, abs=2e-6)


def test_normals_and_incidence(clean):
    r = clean.render(clean.gt_poses()[40])
    valid = r["depth"] > 0
    nrm = np.linalg.norm(r["normal"][valid], axis=1)
    np.testing.assert_allclose(nrm, 1.0, atol=1e-4)
    assert r["cos_incidence"][valid].min() >= 0.0  # surfaces face the camera
    # normals agree with the SDF gradient
    f = clean[40]
    P, m = _world_points(clean.camera, f.depth, f.T_w_c_gt)
    sel = np.random.default_rng(0).choice(len(P), 2000, replace=False)
    h = 1e-4
    g = np.stack([(clean.sdf(P[sel] + h * e) - clean.sdf(P[sel] - h * e)) / (2 * h) for e in np.eye(3)], axis=1)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    n = r["normal"].reshape(-1, 3)[m][sel]
    assert np.median(np.sum(g * n, axis=1)) > 0.9999


def test_sdf_exact_values_and_eikonal(clean):
    sdf = clean.sdf
    # 0.5 m below the ceiling, far from every object
    assert sdf(np.array([[0.0, 0.0, 2.0]]))[0] == pytest.approx(0.5, abs=1e-12)
    # on the floor, 1 m from the walls: 0; under the floor: negative (inside the solid)
    assert sdf(np.array([[1.0, -1.0, 0.0]]))[0] == pytest.approx(0.0, abs=1e-12)
    assert sdf(np.array([[1.0, -1.0, -0.1]]))[0] < 0
    # centre of the ball on the table: -radius
    sc = make_scene()
    k = sc["names"].index("ball")
    assert sdf(sc["centre"][k][None])[0] == pytest.approx(-0.15, abs=1e-12)
    # Eikonal: |grad| = 1 almost everywhere in free space (exact SDF)
    rng = np.random.default_rng(1)
    P = rng.uniform([-1.9, -1.4, 0.05], [1.9, 1.4, 2.45], size=(4000, 3))
    d = sdf(P)
    P = P[d > 0.01]
    h = 1e-5
    g = np.stack([(sdf(P + h * e) - sdf(P - h * e)) / (2 * h) for e in np.eye(3)], axis=1)
    gn = np.linalg.norm(g, axis=1)
    assert np.mean(np.abs(gn - 1.0) < 1e-4) > 0.98
    assert gn.max() < 1.0 + 1e-4  # 1-Lipschitz


def test_sdf_bounding_sphere_skip_is_exact(clean):
    """The accelerated union equals the plain min over all primitives."""
    from prism_ros.sim import scene as S

    sc = make_scene()
    rng = np.random.default_rng(2)
    P = rng.uniform([-2.2, -1.7, -0.2], [2.2, 1.7, 2.7], size=(3000, 3))
    brute = np.full(len(P), np.inf)
    for k in range(len(sc["ptype"])):
        dk = np.array([S._prim_sdf(k, p[0], p[1], p[2], sc["ptype"], sc["centre"], sc["R_ow"], sc["prm"]) for p in P])
        brute = np.minimum(brute, dk)
    np.testing.assert_allclose(clean.sdf(P), brute, atol=1e-12)
    assert clean.sdf(P).dtype == np.float64 and clean.sdf(P).shape == (3000,)


def test_depth_noise_matches_the_model(clean, noisy):
    cfg = PrismConfig.from_dict()
    z_all, r_all = [], []
    for i in (10, 120, 230):
        zc = clean[i].depth.astype(np.float64)
        zn = noisy[i].depth.astype(np.float64)
        m = (zn > 0) & (zc > 0) & (zc < 3.8)  # keep clear of the 4 m cut
        z_all.append(zc[m])
        r_all.append(zn[m] - zc[m])
    z = np.concatenate(z_all)
    r = np.concatenate(r_all)
    sig = cfg.depth_noise_c0_m + cfg.depth_noise_c2_per_m * (z - cfg.depth_noise_z0_m) ** 2
    np.testing.assert_allclose(noisy.sigma_z(z), sig)
    e = r / sig
    assert len(e) > 150_000
    # one independent draw per 4x4 block: ~10^4 independent samples
    assert abs(e.mean()) < 0.03
    assert 0.96 < e.std() < 1.04
    assert 0.65 < np.mean(np.abs(e) < 1) < 0.715  # Gaussian: 68.3 %
    # the depth dependence: per-bin RMS vs the model
    for lo, hi in ((0.6, 1.5), (1.5, 2.3), (2.3, 3.8)):
        b = (z >= lo) & (z < hi)
        if b.sum() > 2000:
            ratio = np.sqrt(np.mean(r[b] ** 2)) / np.sqrt(np.mean(sig[b] ** 2))
            assert 0.95 < ratio < 1.05, (lo, hi, ratio)


def test_depth_noise_is_correlated_in_blocks(clean, noisy):
    """Like a block-matching sensor: pixels of one 4x4 block share their noise draw,
    pixels of different blocks are independent."""
    k = noisy.noise_corr_px
    assert k == 4
    zc = clean[50].depth.astype(np.float64)
    zn = noisy[50].depth.astype(np.float64)
    e = np.where((zc > 0) & (zn > 0), (zn - zc) / np.maximum(noisy.sigma_z(zc), 1e-9), np.nan)
    a, same, other = e[:, :-k], e[:, 1 : 1 - k], e[:, k:]
    inblock = (np.arange(a.shape[1]) % k != k - 1)[None, :] & np.isfinite(a) & np.isfinite(same)
    acrossm = np.isfinite(a) & np.isfinite(other)
    assert np.corrcoef(a[inblock], same[inblock])[0, 1] > 0.95
    assert abs(np.corrcoef(a[acrossm], other[acrossm])[0, 1]) < 0.05


def test_holes(clean, noisy):
    for i in (0, 150):
        zn = noisy[i].depth
        r = clean.render(noisy.gt_poses()[i])
        hole = zn == 0
        assert 0.02 < hole.mean() < 0.12
        graze = r["cos_incidence"] < math.cos(math.radians(80))
        assert np.all(hole[graze])
        valid = zn[~hole]
        assert valid.min() >= 0.3 and valid.max() <= 4.0
        eligible = ~graze & (r["depth"] > 0.35) & (r["depth"] < 3.9)
        assert abs(hole[eligible].mean() - 0.02) < 0.004  # random dropout
    # clean sequences have no holes, custom settings are honoured
    s = SyntheticSequence(width=64, height=48, n_frames=2, noise=True, holes=False)
    assert s[0].depth.min() > 0
    s = SyntheticSequence(width=64, height=48, n_frames=2, noise=False, holes=True, dropout=0.5)
    assert 0.4 < (s[0].depth == 0).mean() < 0.6


def test_depth_quantisation():
    s = SyntheticSequence(width=64, height=48, n_frames=1, depth_quantum=0.001)
    d = s[0].depth.astype(np.float64)
    v = d[d > 0]
    np.testing.assert_allclose(v * 1000, np.round(v * 1000), atol=1e-3)


def test_colour_texture_and_noise(clean, noisy):
    a = clean[60].rgb.astype(np.float64)
    b = noisy[60].rgb.astype(np.float64)
    e = (b - a).ravel()
    assert abs(e.mean()) < 0.1 and 1.8 < e.std() < 2.3  # N(0, 2^2) counts, rounded
    g = a.mean(axis=2)
    gx = np.abs(np.diff(g, axis=1))
    gy = np.abs(np.diff(g, axis=0))
    assert np.mean(gx > 1) > 0.5 and np.mean(gy > 1) > 0.5  # gradients almost everywhere
    assert np.mean(gx > 0.3) > 0.8
    assert g.std() > 25 and 40 < g.mean() < 200
    assert np.all(a.std(axis=(0, 1)) > 15)  # coloured, not grey


def test_determinism_seed_and_start(noisy):
    other = SyntheticSequence(n_frames=300, noise=True)
    for i in (0, 33):
        f, g = noisy[i], other[i]
        np.testing.assert_array_equal(f.depth, g.depth)
        np.testing.assert_array_equal(f.rgb, g.rgb)
        np.testing.assert_array_equal(f.T_w_c_gt, g.T_w_c_gt)
    np.testing.assert_array_equal(noisy[5].depth, noisy[5].depth)  # re-reading
    s1 = SyntheticSequence(n_frames=300, noise=True, seed=1)
    assert not np.array_equal(s1[0].depth, noisy[0].depth)
    assert np.abs(s1.gt_poses()[0][:3, 3] - noisy.gt_poses()[0][:3, 3]).max() > 0.01
    off = SyntheticSequence(n_frames=5, start=33, noise=True)
    f = off[0]
    assert f.index == 0 and f.stamp == pytest.approx(33 / 30.0)
    np.testing.assert_array_equal(f.depth, noisy[33].depth)
    np.testing.assert_array_equal(f.rgb, noisy[33].rgb)
    np.testing.assert_array_equal(f.T_w_c_gt, noisy[33].T_w_c_gt)
    cached = SyntheticSequence(n_frames=3, cache=2)
    x = cached[1]
    x.depth[:] = -1  # the caller's copy, not the cache
    np.testing.assert_array_equal(cached[1].depth, noisy[1].depth)


def test_trajectory_smooth_and_handheld(clean):
    tw = clean.gt_twists()
    dt = 1.0 / clean.fps
    v = np.linalg.norm(tw[:, :3], axis=1)
    w = np.degrees(np.linalg.norm(tw[:, 3:], axis=1))
    assert 0.2 < v.mean() < 0.5 and v.max() < 0.8
    assert 10 < w.mean() < 40 and 25 < w.max() < 90
    acc = np.linalg.norm(np.diff(tw, axis=0), axis=1) / dt
    assert acc.max() < 3.0  # m/s^2 and rad/s^2: no jumps
    # twists agree with the frame-to-frame motion of the poses
    P = clean.gt_poses()
    from scipy.spatial.transform import Rotation

    for i in (0, 100, 250):
        rel = np.linalg.inv(P[i]) @ P[i + 1]
        w_fd = Rotation.from_matrix(rel[:3, :3]).as_rotvec() / dt
        v_fd = rel[:3, 3] / dt
        avg = 0.5 * (tw[i] + tw[i + 1])
        assert np.abs(w_fd - avg[3:]).max() < 0.02 and np.abs(v_fd - avg[:3]).max() < 0.02
    # stays in free space, well inside the room
    assert clean.sdf(P[:, :3, 3]).min() > 0.4
    # camera-to-world optical frame: the camera looks towards the room centre (+z_c)
    to_centre = np.array([0.0, 0.0, 0.5]) - P[:, :3, 3]
    cosang = np.sum(P[:, :3, 2] * to_centre, axis=1) / np.linalg.norm(to_centre, axis=1)
    assert cosang.min() > 0.8


def test_speed_scale():
    a = SyntheticSequence(width=32, height=24, n_frames=10, noise=False)
    b = SyntheticSequence(width=32, height=24, n_frames=10, noise=False, speed=2.0)
    np.testing.assert_allclose(b.gt_poses()[3], a.pose_at(6 / 30.0), atol=1e-12)


def test_vga_and_intrinsics_options():
    s = SyntheticSequence(width=640, height=480, n_frames=2, noise=False)
    c = s.camera
    assert (c.fx, c.fy, c.cx, c.cy, c.width, c.height) == (525.0, 525.0, 319.5, 239.5, 640, 480)
    f = s[1]
    assert f.depth.shape == (480, 640) and f.rgb.shape == (480, 640, 3)
    assert (f.depth > 0).mean() > 0.999
    P, _ = _world_points(c, f.depth, f.T_w_c_gt)
    assert np.abs(s.sdf(P[::50])).max() < 1e-3
    s2 = SyntheticSequence(width=80, height=60, n_frames=1, fx=70.0, cx=40.0, cy=30.0, noise=False)
    assert (s2.camera.fx, s2.camera.fy, s2.camera.cx, s2.camera.cy) == (70.0, 70.0, 40.0, 30.0)
    # the render at another camera (a pyramid level) is consistent
    r = s.render(f.T_w_c_gt, c.level(1))
    assert r["depth"].shape == (240, 320)


def test_render_speed(clean):
    T = clean.gt_poses()[0]
    clean.render(T)
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        clean.render(T)
        ts.append(time.perf_counter() - t0)
    # ~20 ms of CPU at 320x240 on one core; generous bound for loaded CI machines
    assert np.median(ts) < 0.25, ts


def test_rolling_shutter_sees_each_row_at_its_own_time():
    """readout_s: row v is rendered at t + (v / (H - 1) - 1/2) readout_s (the middle row at the stamp), exactly the
    rows of a global-shutter render at that time; T_w_c_gt stays the pose at the stamp."""
    gs = SyntheticSequence(width=64, height=48, n_frames=8, noise=False, speed=2.0)
    rs = SyntheticSequence(width=64, height=48, n_frames=8, noise=False, speed=2.0, readout_s=0.03)
    i, H = 5, 48
    t = float(rs.stamps()[i])
    frame = rs[i]
    np.testing.assert_array_equal(frame.T_w_c_gt, gs[i].T_w_c_gt)
    for v in (0, 17, H - 1):
        T_v = gs.pose_at(t + (v / (H - 1) - 0.5) * 0.03)
        row = gs.render(T_v)["depth"][v]
        np.testing.assert_allclose(frame.depth[v], row, rtol=1e-6, atol=0)
    # the shutter shows: the first and last rows are not where a global shutter would see them
    still = gs[i].depth
    valid = (still > 0) & (frame.depth > 0)
    for v in (0, H - 1):
        assert np.abs(frame.depth[v] - still[v])[valid[v]].mean() > 1e-3


def test_motion_blur_averages_the_colour_over_the_exposure():
    """exposure_s: the colour is the mean of blur_samples renders spread evenly over the exposure; depth unblurred."""
    gs = SyntheticSequence(width=64, height=48, n_frames=8, noise=False, speed=2.0)
    bl = SyntheticSequence(width=64, height=48, n_frames=8, noise=False, speed=2.0, exposure_s=0.06, blur_samples=3)
    i = 4
    t = i / 30.0
    mean = sum(gs.render(gs.pose_at(t + d))["color"] for d in (-0.03, 0.0, 0.03)) / 3.0
    frame = bl[i]
    expected = np.clip(np.round(mean * 255.0), 0, 255)
    assert np.abs(frame.rgb.astype(np.float64) - expected).max() <= 1.0
    assert np.abs(frame.rgb.astype(np.float64) - gs[i].rgb).max() > 20.0  # the blur shows at edges
    np.testing.assert_array_equal(frame.depth, gs[i].depth)


def test_timing_options_in_the_name_round_trip():
    from prism_ros.sim.synthetic import open_synthetic

    assert SyntheticSequence(width=32, height=24, n_frames=3).name == "synthetic:3@32x24,seed=0"
    s = open_synthetic("synthetic:3@32x24,seed=1,speed=2,readout=0.03,exposure=0.01")
    assert (s.speed, s.readout_s, s.exposure_s, s.seed) == (2.0, 0.03, 0.01, 1)
    assert s.name == "synthetic:3@32x24,seed=1,speed=2.0,readout=0.03,exposure=0.01"
    assert open_synthetic(s.name).name == s.name
    third = SyntheticSequence(width=32, height=24, n_frames=3, readout_s=1 / 30)
    assert open_synthetic(third.name).readout_s == 1 / 30  # the name keeps every digit
    for bad in ("synthetic:3,readout=", "synthetic:3,readout=-0.01", "synthetic:3,exposure=nan", "synthetic:3,speed=0"):
        with pytest.raises(ValueError):
            open_synthetic(bad)
