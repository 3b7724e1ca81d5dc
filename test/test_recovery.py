"""Tracking loss and recovery on real data (7-Scenes redkitchen).

A 2 s sensor fault in the middle of the sequence -- depth blanked, or the frames
replaced by unrelated views -- must neither corrupt the map nor lose the track:
the faulty frames are rejected or flagged lost (inflated covariance, no fusion),
and from 1 s after the sensor returns the pose is within 5 cm of ground truth
(SE(3)-aligned, as for ATE; the raw 7-Scenes ground truth itself disagrees with any
frame-to-model track by up to ~9 cm here) and within 5 cm of where an uninterrupted
run is.
"""

import numpy as np
import pytest

from prism_ros.config import PrismConfig
from prism_ros.core.filter import InvalidFrameError, PrismFilter
from prism_ros.core.types import StepOutcome
from prism_ros.datasets import open_dataset
from prism_ros.eval.metrics import ate_errors, ate_rmse

FAULT = (30, 90)  # frames 30..89: 2 s at 30 Hz
END = 135  # 1.5 s after the sensor returns
RECOVER_WITHIN = 8  # frames (0.27 s at 30 Hz)


@pytest.fixture(scope="module")
def frames(redkitchen_dir):
    ds = open_dataset(redkitchen_dir, frames=END)
    other = open_dataset("synthetic", frames=20)  # another scene (a synthetic room), 640x480
    return ds, [ds[i] for i in range(END)], [other[i] for i in range(20)]


def _run(ds, frames, fault=None, unrelated=None):
    cfg = PrismConfig.from_yaml(None, ds.config_hints)
    f = PrismFilter(cfg, ds.camera, frames[0].T_w_c_gt)
    starts = []  # the starting poses of each recovery (a spy on the public Recovery.recover)
    recover = f.recovery.recover
    f.recovery.recover = lambda frame, candidates: starts.append(candidates) or recover(frame, candidates)
    poses, statuses = {}, {}
    last_fused = None  # stamp of the last fused frame
    for i, fr in enumerate(frames):
        rgb, depth = fr.rgb, fr.depth
        if fault and fault[0] <= i < fault[1]:
            if unrelated is None:
                depth = np.zeros_like(depth)
            else:
                o = unrelated[(i - fault[0]) % len(unrelated)]
                rgb, depth = o.rgb, o.depth
        fused_before = f.frames_fused
        try:
            r = f.step(rgb, depth, fr.stamp)
        except InvalidFrameError:
            statuses[i] = "rejected"
            assert f.frames_fused == fused_before
            continue
        poses[i] = r.T_w_c
        statuses[i] = r.status
        assert r.tracking_ok == r.outcome.tracked
        # a frame is fused when it is tracked and integrate_rate_hz allows it (never when lost)
        due = last_fused is None or fr.stamp - last_fused >= 0.9 / cfg.integrate_rate_hz
        assert f.frames_fused == fused_before + (r.tracking_ok and due)
        if f.frames_fused > fused_before:
            last_fused = fr.stamp
        if fault and fault[0] <= i < fault[1]:
            assert r.outcome is StepOutcome.LOST
            assert np.sqrt(np.trace(r.pose_cov[:3, :3])) > 0.05  # inflated
    # bounded cost: at most recovery_max_starts starting poses per frame, the first of them the
    # last pose; the others rotate, so a long loss tries every one of them
    assert all(1 <= len(c) <= cfg.recovery_max_starts for c in starts)
    if unrelated is not None:
        assert len(starts) >= 20
        tried = {tuple(np.round(T[:3].ravel(), 6)) for c in starts[:8] for T in c[1:]}
        assert len(tried) >= 7  # the prediction and the 6 perturbations
    return poses, statuses


@pytest.fixture(scope="module")
def reference(frames):
    ds, fr, _ = frames
    return _run(ds, fr)[0]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["blank_depth", "unrelated_frames"])
def test_recovers_after_a_2s_fault(frames, reference, kind):
    ds, fr, other = frames
    poses, statuses = _run(ds, fr, FAULT, None if kind == "blank_depth" else other)
    for i in range(*FAULT):
        assert statuses[i] == "rejected" if kind == "blank_depth" else statuses[i].startswith("lost")
    # recovery takes the last good pose and one more starting point per frame, so it may
    # need a few frames; then tracking holds
    first = next(i for i in range(FAULT[1], END) if statuses[i] == "ok" or statuses[i].startswith("recovered"))
    assert first < FAULT[1] + RECOVER_WITHIN, (first, [statuses[i] for i in range(FAULT[1], first + 1)])
    assert all(statuses[i] == "ok" for i in range(first + 1, END)), statuses
    back = FAULT[1] + 30  # 1 s after the sensor returns
    for i in range(back, END):
        assert np.linalg.norm(poses[i][:3, 3] - reference[i][:3, 3]) < 0.05, i
    # the track: frames tracked outside the fault (a lost frame's pose is the prediction,
    # published with an inflated covariance and status "lost")
    ok = [i for i in range(END) if i in poses and not (FAULT[0] <= i < FAULT[1]) and not statuses[i].startswith("lost")]
    E, G = np.stack([poses[i] for i in ok]), np.stack([fr[i].T_w_c_gt for i in ok])
    assert ate_rmse(E, G) < 0.05
    # within 5 cm of ground truth (SE(3)-aligned, as ATE) from 1 s after the sensor returns
    err = ate_errors(E, G)
    assert all(e < 0.05 for i, e in zip(ok, err) if i >= back), max(err)


def test_large_unpredicted_motion_keeps_the_track(redkitchen_dir):
    """Every 15th frame (2 Hz): the motion between frames is beyond the constant-velocity
    prediction and ICP can settle in a wrong basin with a few inliers; such doubtful frames
    are re-tracked from other starting points and the better track is kept."""
    ds = open_dataset(redkitchen_dir, frames=300)
    cfg = PrismConfig.from_yaml(None, ds.config_hints)
    frames = [ds[i] for i in range(0, 300, 15)]
    f = PrismFilter(cfg, ds.camera, frames[0].T_w_c_gt)
    res = [f.step(fr.rgb, fr.depth, fr.stamp) for fr in frames]
    assert all(r.tracking_ok for r in res)
    assert any("doubtful" in r.status for r in res)  # the case this test is about happened
    E, G = np.stack([r.T_w_c for r in res]), np.stack([fr.T_w_c_gt for fr in frames])
    assert ate_rmse(E, G) < 0.03
    assert max(ate_errors(E, G)) < 0.06


def test_a_jump_recovered_after_a_tracked_frame_keeps_the_measured_velocity():
    """The camera speeds up 8-fold between two frames (synthetic, 30 Hz stamps, every 8th
    trajectory frame from frame 9 on).  With tracking_max_prior_mahalanobis2 = 5 the accurate
    track of that frame is a jump the dynamics cannot explain, and recovery confirms it.  Both
    poses are then trusted, so the velocity is the step between them (2.2 m/s), not a restart
    at rest: at 6.7 Hz in the simulated V1_02 turn the restart at rest lost the next frames."""
    from prism_ros.core import se3

    ds = open_dataset("synthetic:90@320x240,seed=2")
    f = PrismFilter(PrismConfig().replace(tracking_max_prior_mahalanobis2=5.0), ds.camera, T_w_c0=ds[0].T_w_c_gt)
    idx = list(range(10)) + [9 + 8 * k for k in range(1, 4)]
    out = []
    for n, i in enumerate(idx):
        fr = ds[i]
        out.append((f.step(fr.rgb, fr.depth, n / 30.0), fr))
    assert all(r.outcome is StepOutcome.OK for r, _ in out[1:10])
    r, fr = out[10]
    assert r.outcome is StepOutcome.RECOVERED, r.status
    assert np.linalg.norm(r.T_w_c[:3, 3] - fr.T_w_c_gt[:3, 3]) < 0.005
    true_nu = se3.log(se3.inv(out[9][1].T_w_c_gt) @ fr.T_w_c_gt) * 30.0
    assert np.linalg.norm(true_nu[:3]) > 2.0
    assert np.linalg.norm(r.velocity[:3] - true_nu[:3]) < 0.05, (r.velocity[:3], true_nu[:3])
    assert all(r.outcome is StepOutcome.OK for r, _ in out[11:])


def test_an_imu_control_bridges_a_gap_longer_than_max_dt_s():
    """The node fell 0.8 s behind (synthetic, 30 Hz stamps, frames 10-33 dropped; max_dt_s
    0.5).  With a control across the gap (the IMU's increment and its twist at the frame) the
    frame is tracked from the control's prediction as any other, and the velocity is the
    IMU's (the step between the poses is the mean over the gap, not the current velocity).
    Without one the gap restarts the motion model at rest, as before.  (On the simulated
    V1_02 flight at rate 1 every lost node run started at such a gap, 0.55-0.85 s.)"""
    from prism_ros.core import se3
    from prism_ros.core.types import Control

    ds = open_dataset("synthetic:40@320x240,seed=2")
    gt = [ds[i].T_w_c_gt for i in range(len(ds))]
    nu_true = se3.log(se3.inv(gt[33]) @ gt[34]) * 30.0  # the twist at frame 34 (camera frame)
    gap_ctl = Control(
        se3.inv(gt[9]) @ gt[34], np.diag([1e-4] * 3 + [1e-5] * 3), nu_curr=nu_true, nu_cov=np.eye(6) * 1e-4
    )
    for control in (gap_ctl, None):
        f = PrismFilter(PrismConfig(), ds.camera, T_w_c0=gt[0])
        assert f.cfg.max_dt_s < 25 / 30.0 <= f.cfg.control_max_dt_s
        res = [f.step(ds[i].rgb, ds[i].depth, i / 30.0) for i in range(10)]
        r = f.step(ds[34].rgb, ds[34].depth, 34 / 30.0, control)
        assert r.tracking_ok, r.status
        assert np.linalg.norm(r.T_w_c[:3, 3] - gt[34][:3, 3]) < 0.01
        if control is not None:
            assert r.outcome is StepOutcome.OK and r.status == "ok", r.status
            np.testing.assert_allclose(r.velocity, nu_true)
        else:
            np.testing.assert_allclose(r.velocity, 0.0)  # restarted at rest
        nxt = f.step(ds[35].rgb, ds[35].depth, 35 / 30.0)
        assert nxt.outcome is StepOutcome.OK and all(x.tracking_ok for x in res)
        assert np.linalg.norm(nxt.T_w_c[:3, 3] - gt[35][:3, 3]) < 0.01
