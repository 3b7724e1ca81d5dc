"""render_reuse: while the map is unchanged (no frame fused since the last render) the filter
tracks against the previous frame's render instead of raycasting again.

On a 30 Hz synthetic sequence with the default integrate_rate_hz (10 Hz: every third frame
fused) the filter raycasts once per fusion: on the frame after each fused one.  Off, it
raycasts every tracked frame.  The trajectories agree within a millimetre.  A lost
or recovered frame, a reset and a new map each make the next frame raycast afresh.
"""

import numpy as np
import pytest

import prism_ros.core.filter as filter_module
from prism_ros.config import PrismConfig
from prism_ros.core.filter import PrismFilter
from prism_ros.datasets import open_dataset

N = 20  # frames at 30 Hz


@pytest.fixture(scope="module")
def frames():
    ds = open_dataset(f"synthetic:{N}@320x240,seed=3")
    return ds, [ds[i] for i in range(N)]


def _run(frames, monkeypatch, reuse, steps=None):
    """Steps the filter over ``steps`` (default: every frame); returns (filter, poses, rendered
    frame indices)."""
    ds, fr = frames
    rendered, current = [], [None]
    real = filter_module.render_map

    def counting(*a, **k):
        rendered.append(current[0])
        return real(*a, **k)

    monkeypatch.setattr(filter_module, "render_map", counting)
    f = PrismFilter(PrismConfig().replace(render_reuse=reuse), ds.camera, T_w_c0=fr[0].T_w_c_gt)
    poses = []
    for i in range(N) if steps is None else steps:
        current[0] = i
        r = f.step(fr[i].rgb, fr[i].depth, fr[i].stamp)
        assert r.tracking_ok, (i, r.status)
        poses.append(r.T_w_c)
    return f, np.array(poses), rendered


def test_one_raycast_per_map_change(frames, monkeypatch):
    assert PrismConfig().render_reuse and PrismConfig().integrate_rate_hz == 10.0  # the shipped defaults
    f, poses, rendered = _run(frames, monkeypatch, True)
    # fused at 0, 3, 6, ...: the map changes there, so the next frame raycasts; the two after reuse it
    assert rendered == list(range(1, N, 3))
    assert f.renders_reused == (N - 1) - len(rendered)
    f0, poses0, rendered0 = _run(frames, monkeypatch, False)
    assert rendered0 == list(range(1, N)) and f0.renders_reused == 0
    assert f.frames_fused == f0.frames_fused == len(range(0, N, 3))
    # the same trajectory within a millimetre, and both on the ground truth
    gt = np.array([x.T_w_c_gt for x in frames[1]])
    diff = np.linalg.norm(poses[:, :3, 3] - poses0[:, :3, 3], axis=1)
    err = [np.linalg.norm(p[:, :3, 3] - gt[:, :3, 3], axis=1) for p in (poses, poses0)]
    print("max |reuse - raycast every frame|", diff.max(), "max error to gt", err[0].max(), err[1].max())
    assert diff.max() < 1e-3, diff.max()
    for e in err:
        assert e.max() < 0.01


def test_reset_and_new_map_raycast_afresh(frames, monkeypatch):
    ds, fr = frames
    f, _, rendered = _run(frames, monkeypatch, True, steps=range(0, 3))
    assert rendered == [1]  # frame 2 reused frame 1's render
    assert f._last_render is not None
    f.reset(fr[0].T_w_c_gt)  # same map object, cleared: its revision changes too
    assert f._last_render is None
    rev = f.map.revision
    f.step(fr[0].rgb, fr[0].depth, fr[0].stamp)
    assert f.map.revision != rev  # fusing changes it


def test_lost_frame_forgets_the_render(frames, monkeypatch):
    ds, fr = frames
    f, _, rendered = _run(frames, monkeypatch, True, steps=range(0, 2))
    assert rendered == [1] and f._last_render is not None
    render1 = f._last_render[2]
    # a flat wall at 3.9 m where the map has none: valid depth, but nothing to track (it is
    # tracked against frame 1's render, the map being unchanged, and lost)
    r = f.step(fr[2].rgb, np.full_like(fr[2].depth, 3.9), fr[2].stamp)
    assert r.outcome.value == "lost" and f._last_render is None and f.renders_reused == 1
    # the next frame raycasts afresh (the map is unchanged, yet the prediction moved on) and tracks
    r = f.step(fr[3].rgb, fr[3].depth, fr[3].stamp)
    assert r.tracking_ok and f.renders_reused == 1
    assert f._last_render is not None and f._last_render[2] is not render1
