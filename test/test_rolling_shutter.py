"""Rolling-shutter de-skew (prism_ros.core.rolling_shutter) against exact renders, and in the filter on a synthetic
sequence rendered with a rolling shutter (prism_ros.sim.synthetic, ``readout_s``)."""

import numpy as np
import pytest

from prism_ros.config import PrismConfig
from prism_ros.core import se3
from prism_ros.core.rolling_shutter import deskew, deskew_frame, max_shift_px, row_times
from prism_ros.eval.metrics import ate_rmse
from prism_ros.sim.render import render_scene
from prism_ros.sim.synthetic import SyntheticSequence

READOUT_S = 0.03  # a Kinect v1-like readout
NU = np.array([0.4, -0.2, 0.3, 1.5, -2.0, 1.0])  # m/s, rad/s: a fast hand-held swing (2.7 rad/s)


@pytest.fixture(scope="module")
def rolling():
    """A rolling-shutter render under the constant twist NU (row v at T Exp(tau_v NU)), the global-shutter render
    at T, and the sequence."""
    seq = SyntheticSequence(width=320, height=240, n_frames=12, noise=False)
    T = seq[10].T_w_c_gt
    rows = np.stack([T @ se3.exp(tau * NU) for tau in row_times(240, READOUT_S)])
    return render_scene(rows, seq.camera, seq.scene), render_scene(T, seq.camera, seq.scene), seq


def test_row_times_centre_on_the_stamp():
    tau = row_times(5, 0.04)
    np.testing.assert_allclose(tau, [-0.02, -0.01, 0.0, 0.01, 0.02])


def test_deskew_of_a_rolling_shutter_render_is_the_global_shutter_render(rolling):
    rs, gs, seq = rolling
    rgb = np.round(rs["color"] * 255).astype(np.uint8)
    sigma = (0.001 + 0.001 * rs["depth"]).astype(np.float32)
    depth, colour, sigma_out = deskew(rs["depth"], rgb, seq.camera.params, READOUT_S, NU, sigma)
    both = (gs["depth"] > 0) & (depth > 0)
    err = np.abs(gs["depth"] - depth)[both]
    raw = np.abs(gs["depth"] - rs["depth"])[(gs["depth"] > 0) & (rs["depth"] > 0)]
    assert np.median(raw) > 5e-3  # the shutter shows: 11 mm
    assert np.median(err) < 5e-5 and np.quantile(err, 0.9) < 3e-4  # 0.02 / 0.1 mm: sub-pixel re-sampling
    assert (depth > 0).mean() > 0.9  # only rows that left the field of view and depth edges are lost
    gs_rgb = np.round(gs["color"] * 255)
    assert np.abs(gs_rgb - colour).mean() < 0.3 * np.abs(gs_rgb - rgb).mean()
    # the sigma image follows its depth; pixels without a source have none
    assert np.all((sigma_out > 0) == (depth > 0))
    assert np.quantile(np.abs(sigma_out - (0.001 + 0.001 * depth))[depth > 0], 0.99) < 5e-5  # not across edges


def test_deskew_leaves_a_still_frame_alone(rolling):
    rs, _, seq = rolling
    rgb = np.round(rs["color"] * 255).astype(np.uint8)
    assert max_shift_px(rs["depth"], seq.camera.params, READOUT_S, np.zeros(6)) == 0.0
    depth, colour, sigma = deskew(rs["depth"], rgb, seq.camera.params, READOUT_S, np.zeros(6))
    np.testing.assert_array_equal(depth, rs["depth"])
    np.testing.assert_array_equal(colour, rgb)
    assert sigma is None
    # a mono image is re-sampled as the colour image's first channel
    d2, mono, _ = deskew(rs["depth"], rgb[:, :, 0].copy(), seq.camera.params, READOUT_S, NU)
    _, colour, _ = deskew(rs["depth"], rgb, seq.camera.params, READOUT_S, NU)
    assert mono.shape == (240, 320) and (d2 > 0).mean() > 0.9
    np.testing.assert_array_equal(mono, colour[:, :, 0])
    for bad_rgb in (rgb[:100], rgb[:, :, :1].copy(), np.dstack([rgb, rgb[:, :, :1]])):
        with pytest.raises(ValueError):
            deskew(rs["depth"], bad_rgb, seq.camera.params, READOUT_S, NU)
    with pytest.raises(ValueError):
        deskew(rs["depth"], rgb, seq.camera.params, READOUT_S, np.full(6, np.nan))


def test_a_frame_is_kept_as_it_came_when_the_twist_is_unusable():
    """A NaN twist, or one so large (an IMU spike) that most depth would leave the image, leaves the frame as it
    came (the step then tracks the raw frame instead of refusing it as nearly empty); so does a frame of the
    wrong size (the filter's preprocessing refuses it by name)."""
    seq = SyntheticSequence(width=64, height=48, n_frames=3, noise=False)
    fr = seq[0]
    for nu in (np.full(6, np.nan), 1000.0 * NU):
        rgb, depth, sigma = deskew_frame(seq.camera, READOUT_S, nu, fr.rgb, fr.depth)
        assert rgb is fr.rgb and depth is fr.depth and sigma is None
    rgb, depth, _ = deskew_frame(seq.camera, READOUT_S, NU, fr.rgb[:10], fr.depth)
    assert rgb.shape == (10, 64, 3) and depth is fr.depth
    # a usable twist is applied
    _, depth, _ = deskew_frame(seq.camera, READOUT_S, NU, fr.rgb, fr.depth)
    assert depth is not fr.depth and (depth > 0).mean() > 0.5


def test_the_filter_deskews_from_its_second_frame_with_the_control_twist():
    """PrismFilter with camera_readout_s: the first frame (no velocity yet) as it came, then the IMU control's
    twist is used (a still control: no change)."""
    from prism_ros.core.filter import PrismFilter
    from prism_ros.core.types import Control

    seq = SyntheticSequence(width=64, height=48, n_frames=3, noise=False)
    f = PrismFilter(PrismConfig.from_yaml().replace(camera_readout_s=READOUT_S), seq.camera, seq[0].T_w_c_gt)
    fr = seq[0]
    assert f._deskew(fr.rgb, fr.depth, None, None)[1] is fr.depth
    f.step(fr.rgb, fr.depth, fr.stamp)
    moving = Control(np.eye(4), np.eye(6) * 1e-4, nu_curr=NU, nu_cov=np.eye(6))
    still = Control(np.eye(4), np.eye(6) * 1e-4, nu_curr=np.zeros(6), nu_cov=np.eye(6), still=True)
    assert f._deskew(fr.rgb, fr.depth, None, moving)[1] is not fr.depth
    np.testing.assert_array_equal(f._deskew(fr.rgb, fr.depth, None, still)[1], fr.depth)


def test_filter_with_the_readout_tracks_a_rolling_shutter_sequence():
    """synthetic:60@320x240 at twice the speed, read out over 30 ms: the filter told the readout
    (camera_readout_s) has less than 0.6 of the ATE of one that takes it for a global shutter
    (docs/uncertainty.md, "Rolling shutter and motion blur")."""
    from prism_ros.datasets import open_dataset
    from prism_ros.tools import runner

    ates = {}
    for readout in (0.0, READOUT_S):
        ds = open_dataset(f"synthetic:60@320x240,seed=0,speed=2,readout={READOUT_S}")
        cfg = PrismConfig.from_yaml().replace(camera_readout_s=readout)
        result = runner.run(ds, cfg, progress=False)
        assert all(result.recorder.tracking_ok)
        ates[readout] = ate_rmse(result.T_est, ds.gt_poses())
    assert ates[READOUT_S] < 0.6 * ates[0.0], ates
