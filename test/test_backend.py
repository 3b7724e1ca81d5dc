"""The back end end to end on the synthetic room: a loop flown with drift injected into the odometry.

The camera circles the room looking at its walls; the "filter" is the exact pose with a slowly growing yaw and
translation drift (what a filter's odometry does), reported with step covariances that cover it.  The back end must
find the loop (the last submaps see the first one's walls again), verify it densely, and pull the keyframes and the
composed map back onto the room; a closure proposed a metre off must be refused.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest

from prism_ros.config import PrismConfig
from prism_ros.core import se3
from prism_ros.core.backend.compose import compose_map
from prism_ros.core.backend.worker import NO_REGISTRATION, OUTSIDE_GATE, BackEnd
from prism_ros.core.camera import Camera
from prism_ros.core.types import StepOutcome, StepResult
from prism_ros.sim.render import render_scene
from prism_ros.sim.scene import default_scene, scene_sdf
from prism_ros.sim.synthetic import look_at

CAM = Camera(525.0, 525.0, 319.5, 239.5, 640, 480)
N = 76  # frames: a little more than one turn (5 deg a frame)
STEP_SIGMA_M, STEP_SIGMA_RAD = 0.003, math.radians(0.2)
DRIFT_YAW_RAD, DRIFT_M = math.radians(0.05), 0.0006  # per frame


def _true_pose(i: int) -> np.ndarray:
    a = math.radians(5.0 * i)
    pos = np.array([0.6 * math.cos(a), 0.45 * math.sin(a), 1.3])
    look = pos + np.array([math.cos(a + 0.3), math.sin(a + 0.3), -0.25])  # outward, a little ahead
    return look_at(pos, look)


def _drift(i: int) -> np.ndarray:
    """The odometry's error after i frames: a yaw about the start and a translation, both growing linearly."""
    D = np.eye(4)
    D[:3, :3] = se3.so3_exp(np.array([0.0, 0.0, DRIFT_YAW_RAD * i]))
    D[:3, 3] = np.array([DRIFT_M * i, -0.5 * DRIFT_M * i, 0.0])
    return D


class _Frame:
    def __init__(self, rgb, depth):
        self.rgb, self.depth, self.depth_sigma = rgb, depth, None


class _Out:
    def __init__(self, res, frame):
        self.result, self.frame, self.was_reset = res, frame, False


def _cfg(**kw) -> PrismConfig:
    return PrismConfig.from_yaml().replace(backend_enabled=True, **kw)


@pytest.fixture(scope="module")
def flown():
    scene = default_scene()
    T_true = [_true_pose(i) for i in range(N)]
    frames = []
    for T in T_true:
        r = render_scene(T, CAM, scene)
        frames.append(_Frame((255 * r["color"]).astype(np.uint8), r["depth"].astype(np.float32)))
    T_odom = [_drift(i) @ T for i, T in enumerate(T_true)]
    be = BackEnd(_cfg(backend_submaps_in_memory=1), CAM, block_when_full=True)  # the first ones go to disk
    _feed(be, T_odom, frames, range(N))
    assert be.flush(120.0)
    yield dict(be=be, T_true=np.stack(T_true), T_odom=np.stack(T_odom), frames=frames, scene=scene)
    be.stop()


def _feed(be, T_odom, frames, indices, step_cov=None):
    """Frames ``indices`` into the back end as a filter's tracked steps (the first one starts the map), reported with
    ``step_cov`` (default: STEP_SIGMA_M, STEP_SIGMA_RAD)."""
    if step_cov is None:
        step_cov = np.diag([STEP_SIGMA_M**2] * 3 + [STEP_SIGMA_RAD**2] * 3)
    for i in indices:
        res = StepResult(
            stamp=0.1 * i,
            T_w_c=T_odom[i],
            pose_cov=step_cov,
            velocity=np.zeros(6),
            velocity_cov=np.eye(6),
            tracking_ok=True,
            outcome=StepOutcome.INITIALISED if i == 0 else StepOutcome.OK,
            step_cov=step_cov,
        )
        be.on_step(_Out(res, frames[i]))


def _position_errors(T, T_true):
    return np.linalg.norm(T[:, :3, 3] - T_true[:, :3, 3], axis=1)


def test_the_loop_is_closed_and_the_keyframes_come_back(flown):
    be = flown["be"]
    f = be.figures()
    assert f["submaps"] >= 5, f
    assert f["loops_accepted"] >= 1, f
    # the loop was closed against a submap written to disk: one frozen submap is kept in memory, and candidates are at
    # least two submaps older than the active one; only the newest frozen one and the active one are in memory
    assert be.cfg.backend_loop_min_submap_gap > be.cfg.backend_submaps_in_memory
    assert be.submaps[0].map is None and os.path.isfile(be.submaps[0].path)
    assert [s.map is not None for s in be.submaps[-3:]] == [False, True, True]
    keys, ks, K_odom, K_map = be.optimised_keyframes()
    idx = np.rint(ks / 0.1).astype(int)
    T_true = flown["T_true"][idx]
    before, after = _position_errors(K_odom, T_true), _position_errors(K_map, T_true)
    # the injected drift: over 5 cm on the far side of the loop, about 4 cm at its end
    assert before.max() > 0.05 and before[-1] > 0.035, before
    assert after[-1] < 0.2 * before[-1], (before[-1], after[-1])
    assert after.max() < 0.3 * before.max(), (before.max(), after.max())
    # the last keyframe's heading is back too
    yaw_err = lambda T, G: np.linalg.norm(se3.so3_log(G[:3, :3].T @ T[:3, :3]))  # noqa: E731
    assert yaw_err(K_map[-1], T_true[-1]) < 0.3 * yaw_err(K_odom[-1], T_true[-1])


def test_the_two_copies_of_a_wall_are_merged(flown):
    """Composed at the filter's (drifted) anchor poses, the first and the last submaps put the same walls apart; at
    the optimised poses they coincide, on the true walls."""
    be, scene = flown["be"], flown["scene"]
    first, last = be.submaps[0], be.submaps[-1]
    zero = np.zeros((6, 6))

    def surface_error(sub, T_anchor):
        m = compose_map([(be.store.tsdf(sub), T_anchor, zero)], be.store.tsdf(sub))
        pts = m.extract_surface(max_abs_sdf_m=0.25 * m.voxel_size, min_count=2)["xyz"].astype(np.float64)
        return np.sqrt(np.mean(scene_sdf(pts, scene) ** 2)), pts

    X = be.graph.poses()
    err_odom_last, _ = surface_error(last, last.T_odom_anchor)
    err_opt_last, pts_last = surface_error(last, X[last.anchor_key])
    err_opt_first, pts_first = surface_error(first, X[first.anchor_key])
    assert err_odom_last > 0.03, err_odom_last  # the drifted copy
    assert err_opt_last < 0.4 * err_odom_last, (err_odom_last, err_opt_last)
    assert err_opt_first < 0.02, err_opt_first
    # where both see the same wall, the two copies lie within a voxel of each other
    from scipy.spatial import cKDTree

    d, _ = cKDTree(pts_first).query(pts_last)
    shared = d < 0.15
    assert shared.mean() > 0.05
    assert np.median(d[shared]) < be.submaps[-1].map.voxel_size, np.median(d[shared])
    # the global map: every submap at its optimised pose, on the room
    g = be.compose_now()
    pts = g.extract_surface(max_abs_sdf_m=0.25 * g.voxel_size, min_count=2)["xyz"].astype(np.float64)
    assert np.sqrt(np.mean(scene_sdf(pts, scene) ** 2)) < 0.02


def test_wrong_closures_are_refused(flown):
    """A candidate that is not the place (the submap across the room, proposed where the first one is) does not
    register or fails the gate; the right one registers, and passes the gate where, moved by a metre, it fails."""
    be = flown["be"]
    first = be.submaps[0]
    across = be.submaps[len(be.submaps) // 2]
    keys, ks, _, _ = be.optimised_keyframes()
    k = int(keys[-1])
    i = int(round(ks[-1] / 0.1))
    frame = be.verifier.frame(flown["frames"][i].rgb, flown["frames"][i].depth)
    T_a_c = se3.inv(be.graph.pose(first.anchor_key)) @ be.graph.pose(k)
    accepted_before = be.figures()["loops_accepted"]
    with be._own:
        ok, why = be.verify_closure(k, frame, across, T_a_c, 1.0)
    assert not ok and why.startswith((NO_REGISTRATION, OUTSIDE_GATE)), why
    assert be.figures()["loops_accepted"] == accepted_before
    cl = be.verifier.register(frame, be.store.tsdf(first), T_a_c, 1.0, be.cfg.backend_loop_min_overlap)
    assert cl is not None
    shift = np.eye(4)
    shift[:3, 3] = [1.0, 0.0, 0.0]
    with be._own:
        right = be.graph.check_loop(first.anchor_key, k, cl.T_a_c, cl.cov).mahalanobis2
        wrong = be.graph.check_loop(first.anchor_key, k, cl.T_a_c @ shift, cl.cov).mahalanobis2
    gate = be.cfg.backend_loop_gate_mahalanobis2
    assert right < gate < wrong, (right, gate, wrong)


def test_the_global_map_shows_the_active_submap_without_waiting_for_it_to_freeze(flown):
    """The node's global map takes in the active submap's new keyframes (here at once: ``backend_map_period_s`` 0),
    and, built on the frozen submaps kept composed, holds what composing every submap gives."""
    T, frames = flown["T_odom"], flown["frames"]
    be = BackEnd(_cfg(backend_map_period_s=0.0, backend_submaps_in_memory=0), CAM, block_when_full=True)  # on disk

    def newer(than):
        for _ in range(600):
            m = be.global_map()
            if m is not None and m is not than:
                return m
            time.sleep(0.05)
        raise AssertionError("no new global map")

    try:
        _feed(be, T, frames, range(8))  # one submap, not yet frozen
        assert be.flush(60.0)
        first = newer(None)
        _feed(be, T, frames, range(8, 12))
        assert be.flush(60.0)
        grown = newer(first)
        assert be.figures()["submaps"] == 1 and grown.n_blocks > first.n_blocks
        _feed(be, T, frames, range(12, 22))  # a second submap; the first is frozen, then composed once
        assert be.flush(60.0)
        after = newer(grown)
        assert be.figures()["submaps"] == 2 and after.n_blocks > grown.n_blocks
        _feed(be, T, frames, range(22, 24))  # one more keyframe in the second submap: onto the kept base
        assert be.flush(60.0)
        latest = newer(after)
        assert be.figures()["submaps"] == 2 and be.figures()["keyframes"] == 12
        pts = latest.voxel_centres().reshape(-1, 3)
        full = be.compose_now()
        assert full.n_blocks == latest.n_blocks
        for x, y in zip(latest.query(pts), full.query(pts)):
            np.testing.assert_array_equal(x, y)
        seen = latest.free_space.counts_at(pts)
        assert seen.max() > 0
        np.testing.assert_array_equal(seen, full.free_space.counts_at(pts))
    finally:
        be.stop()


def test_an_offline_run_writes_both_trajectories(tmp_path):
    """``prism-ros run`` with the back end: the filter's and the optimised trajectory, each with its ATE and
    calibration, the keyframes and the composed map; without a loop the optimised trajectory is the filter's."""
    from prism_ros.datasets import open_dataset
    from prism_ros.eval.evaluate import run_offline
    from prism_ros.tools.export import read_tum

    out = tmp_path / "out"
    m = run_offline(open_dataset("synthetic:40@320x240"), _cfg(), str(out), progress=False, report=False)
    for name in ("trajectory.tum", "trajectory_optimised.tum", "keyframes.npz", "map_optimised.ply"):
        assert (out / name).is_file(), name
    b, o = m["backend"], m["optimised"]
    assert b["keyframes"] >= 3 and b["submaps"] >= 1 and b["loops_accepted"] == 0
    assert abs(o["ate_rmse_m"] - m["ate_rmse_m"]) < 1e-4, (o["ate_rmse_m"], m["ate_rmse_m"])
    assert set(o["calibration"]["lags"]) == {"1", "10", "30"}
    _, T = read_tum(str(out / "trajectory.tum"))
    _, T_opt = read_tum(str(out / "trajectory_optimised.tum"))
    np.testing.assert_allclose(T_opt, T, atol=1e-6)
    kf = np.load(out / "keyframes.npz")
    assert kf["T_map_c"].shape == (b["keyframes"], 4, 4) and kf["marginal"].shape == (b["keyframes"], 6, 6)


def test_a_loop_beyond_the_view_at_the_estimate_is_found_within_its_uncertainty(flown):
    """Each step of the odometry turns 0.35 deg too far (26 cm off at the end), reported with 1 deg a step: coming
    back, no old submap overlaps the view at the graph's estimate, so only the search within the keyframe's marginal
    (``backend_loop_search_sigma``) finds the loop; verified from the pose it found, the closure brings the keyframes
    back."""
    T_true, frames = flown["T_true"], flown["frames"]
    err = se3.exp(np.array([0.0, 0.0, 0.0, 0.0, math.radians(0.35), 0.0]))  # about the camera's y axis
    T_odom = [T_true[0]]
    for i in range(1, N):
        T_odom.append(T_odom[-1] @ se3.inv(T_true[i - 1]) @ T_true[i] @ err)
    cov = np.diag([STEP_SIGMA_M**2] * 3 + [math.radians(1.0) ** 2] * 3)
    for sigma in (0.0, 3.0):
        be = BackEnd(_cfg(backend_loop_search_sigma=sigma), CAM, block_when_full=True)
        try:
            _feed(be, T_odom, frames, range(N), step_cov=cov)
            assert be.flush(120.0)
            f = be.figures()
            _, ks, K_odom, K_map = be.optimised_keyframes()
        finally:
            be.stop()
        idx = np.rint(ks / 0.1).astype(int)
        before, after = _position_errors(K_odom, T_true[idx]), _position_errors(K_map, T_true[idx])
        assert before[-1] > 0.2, before[-1]
        if sigma == 0.0:  # not even a candidate
            tried = f["loops_rejected_verification"] + f["loops_rejected_gate"] + f["loops_rejected_uninformative"]
            assert f["loops_accepted"] == 0 and tried == 0, f
            np.testing.assert_allclose(after, before, atol=1e-6)
        else:
            assert f["loops_accepted"] >= 1, f
            assert after[-1] < 0.1 * before[-1] and after.max() < 0.3 * before.max(), (before, after)


def test_best_view_searches_the_principal_axes_of_the_uncertainty():
    """Points ahead of a camera that is turned 70 deg away from them (and moved): out of view at the estimate; found at
    a pose ``T Exp(r sigma u)`` on the marginal's principal axis u (a yaw with some translation) when sigma is 25 deg,
    not when it is 5 deg, nor without the search."""
    from prism_ros.core.backend.candidates import plausible
    from prism_ros.core.backend.submaps import best_view, view_fraction

    rng = np.random.default_rng(0)
    pts = np.column_stack([rng.uniform(-0.3, 0.3, 200), rng.uniform(-0.2, 0.2, 200), rng.uniform(1.5, 2.5, 200)])
    turned = se3.exp(np.array([0.1, 0.0, 0.05, 0.0, math.radians(70.0), 0.0]))
    seen = lambda P, T: view_fraction(P, T, CAM, 0.1, 5.0)  # noqa: E731
    assert seen(pts, turned) == 0.0
    u = np.array([0.2, 0.0, 0.1, 0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)

    def cov(deg):
        return (math.radians(deg) / u[4]) ** 2 * np.outer(u, u) + 1e-10 * np.eye(6)

    f, T = best_view(pts, turned, cov(25.0), 3.0, seen)
    sigma = math.radians(25.0) / u[4]
    on_axis = [turned @ se3.exp(k * r * sigma * u) for k in (1, -1) for r in (1, 2, 3)]
    assert f > 0.9 and any(np.allclose(T, P, atol=1e-6) for P in on_axis)
    assert best_view(pts, turned, cov(5.0), 3.0, seen)[0] == 0.0
    assert best_view(pts, turned, cov(25.0), 0.0, seen) == (0.0, turned)
    # the pose found lies at its radius under the covariance: within a search of 3 sigma, not of 1.5
    assert plausible(turned, T, cov(25.0), 3.0) and not plausible(turned, T, cov(25.0), 1.5)


def test_only_frozen_submaps_with_a_surface_old_enough_and_not_just_failed_are_candidates():
    from prism_ros.core.backend.candidates import eligible
    from prism_ros.core.backend.submaps import Submap

    def sub(i, samples, frozen=True):
        return Submap(i, i, np.eye(4), None, frozen=frozen, samples=samples)

    pts = np.ones((5, 3))
    subs = [sub(0, pts), sub(1, np.zeros((0, 3))), sub(2, pts), sub(3, pts), sub(4, None, frozen=False)]
    assert [s.id for s in eligible(subs, 2, {}, key=10)] == [0, 2]  # 1 saw no surface; 3 is too recent
    assert [s.id for s in eligible(subs, 2, {0: 10}, key=10)] == [2]  # 0 failed a moment ago
    assert [s.id for s in eligible(subs, 2, {0: 10}, key=11)] == [0, 2]
