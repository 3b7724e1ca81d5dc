"""The reference check: a trajectory registered against the map its own poses build."""

import os

import numpy as np
import pytest

from prism_ros.config import PrismConfig
from prism_ros.core import se3
from prism_ros.datasets import open_dataset
from prism_ros.eval import reference_check
from prism_ros.tools.export import write_tum

SPAN = (20, 40)


@pytest.fixture(scope="module")
def room():
    ds = open_dataset("synthetic:60@320x240,seed=0")
    return ds, PrismConfig.from_yaml().filter_config()


def test_exact_ground_truth_agrees_with_its_own_map(room):
    ds, cfg = room
    r = reference_check.check_span(ds, cfg, SPAN, every=4)
    assert list(r.index) == [20, 24, 28, 32, 36]
    assert np.isfinite(r.moved_m).all()
    assert np.median(r.moved_m) < 0.002 and r.moved_m.max() < 0.003
    assert np.degrees(r.moved_rad.max()) < 0.1
    assert "5 of 5 registered" in r.summary()


def test_poses_off_by_three_centimetres_move_back_by_as_much(room, tmp_path):
    ds, cfg = room
    off = se3.exp(np.array([0.03, 0.0, 0.0, 0.0, 0.0, 0.0]))  # 3 cm along the camera's x
    gt = reference_check.ground_truth(ds)
    T = np.stack([gt[i] @ off if SPAN[0] <= i < SPAN[1] else gt[i] for i in range(len(ds))])
    path = os.path.join(tmp_path, "shifted.tum")
    write_tum(path, ds.stamps(), T)
    poses = reference_check.poses_from_tum(ds, path)
    assert sorted(poses) == list(range(len(ds)))
    r = reference_check.check_span(ds, cfg, SPAN, poses, every=4)
    assert np.isfinite(r.moved_m).all()
    np.testing.assert_allclose(r.moved_m, 0.03, atol=0.004)
