"""integrate_rate_hz: the filter tracks every frame but fuses depth at most this often.

On a 30 Hz synthetic sequence the rate limit fuses every third frame at 10 Hz (the
default) and every other frame at 15 Hz; 0 fuses every tracked frame.  The map's own
observation counts show it: a voxel seen by every frame holds one observation per fused
frame, not per tracked one.
"""

import numpy as np
import pytest

from prism_ros.config import PrismConfig
from prism_ros.core.filter import PrismFilter
from prism_ros.datasets import open_dataset

N = 20  # frames at 30 Hz


@pytest.fixture(scope="module")
def frames():
    ds = open_dataset(f"synthetic:{N}@320x240,seed=3")
    return ds, [ds[i] for i in range(N)]


@pytest.mark.parametrize(
    "rate_hz, fused", [(0.0, list(range(N))), (10.0, list(range(0, N, 3))), (15.0, list(range(0, N, 2)))]
)
def test_fusion_follows_integrate_rate(frames, rate_hz, fused):
    ds, fr = frames
    assert PrismConfig().integrate_rate_hz == 10.0  # the shipped default
    f = PrismFilter(PrismConfig().replace(integrate_rate_hz=rate_hz), ds.camera, T_w_c0=fr[0].T_w_c_gt)
    fused_at = []
    for i, x in enumerate(fr):
        before = f.frames_fused
        r = f.step(x.rgb, x.depth, x.stamp)
        assert r.tracking_ok, (i, r.status)
        if f.frames_fused > before:
            fused_at.append(i)
    assert fused_at == fused
    assert int(f.map.cnt[: f.map.n_blocks].max()) == len(fused)
    # tracking does not suffer from fusing fewer frames on this sequence
    err = np.linalg.norm(f.T_w_c[:3, 3] - fr[-1].T_w_c_gt[:3, 3])
    assert err < 0.01, err
