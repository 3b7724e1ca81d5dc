"""Frozen submaps written to disk: read back voxel for voxel, composed as if in memory, their files removed."""

import copy
import os
from types import SimpleNamespace

import numpy as np

import pytest

from prism_ros.config import PrismConfig
from prism_ros.core import se3
from prism_ros.core.backend.compose import compose_map
from prism_ros.core.backend.store import SubmapStore
from prism_ros.core.backend.submaps import Submap, submap_map

from test_backend_compose import integrate, wall


def _submaps(cfg, n=4):
    """``n`` frozen submaps of walls at different depths and greys (a different content each)."""
    out = []
    for i in range(n):
        sub = Submap(i, i, np.eye(4), submap_map(cfg, 2))
        depth = wall(0.8 + 0.1 * i)
        depth[:, 40:] += 0.2
        integrate(sub.map, depth, grey=60 + 40 * i)
        sub.freeze()
        out.append(sub)
    return out


_SCALARS = ("voxel_size", "truncation", "prior_var", "min_var", "model_var", "max_count", "distance_sigma_ratio")


def _same(a, b, table=True):
    """The same voxels and parameters; with ``table``, the same hash table and capacity too."""
    n = a.n_blocks
    assert b.n_blocks == n
    for k in ("block_xyz", "mu", "var", "rgb", "cnt"):
        np.testing.assert_array_equal(getattr(a, k)[:n], getattr(b, k)[:n], err_msg=k)
    assert [getattr(a, k) for k in _SCALARS] == [getattr(b, k) for k in _SCALARS]
    if table:
        assert a.capacity == b.capacity
        np.testing.assert_array_equal(a.keys, b.keys)
        np.testing.assert_array_equal(a.vals, b.vals)


def test_submaps_beyond_the_budget_go_to_disk_and_come_back_voxel_for_voxel(tmp_path):
    cfg = PrismConfig.from_yaml().filter_config()
    subs = _submaps(cfg)
    kept = [s.map for s in subs]  # the originals, for comparison
    store = SubmapStore(cfg, in_memory=2, directory=str(tmp_path))
    for s in subs:
        store.frozen(s)
    # the two oldest are on disk, in the store's own directory under the one given, and out of memory
    assert [s.map is None for s in subs] == [True, True, False, False]
    assert os.path.dirname(store.directory) == str(tmp_path)
    assert sorted(os.listdir(store.directory)) == sorted(os.path.basename(s.path) for s in subs[:2])
    for s, m in zip(subs[:2], kept[:2]):
        back = store.tsdf(s)
        assert back is not m
        _same(back, m)
    # a closure's candidate stays read until another one is; otherwise every use reads the file again
    assert store.tsdf(subs[0], keep=True) is store.tsdf(subs[0])
    assert store.tsdf(subs[1]) is not store.tsdf(subs[1])
    # composed from disk (read one at a time, the result's table growing for them) or from memory: the same map
    poses = [se3.exp(np.array([0.05 * i, 0.0, 0.0, 0.0, 0.1 * i, 0.0])) for i in range(len(subs))]
    Sigma = np.diag([1e-6] * 3 + [1e-7] * 3)
    lazy = [(lambda s=s: store.tsdf(s), T, Sigma) for s, T in zip(subs, poses)]  # no first guess of the size
    vox = subs[-1].map.voxel_size / 5  # finer: more blocks than the table's first 1024
    composed = compose_map(lazy, subs[-1].map, vox)
    assert composed.n_blocks > 1024
    _same(composed, compose_map([(m, T, Sigma) for m, T in zip(kept, poses)], kept[-1], vox), table=False)
    assert store.on_disk == 2 and store.bytes_on_disk == sum(os.path.getsize(s.path) for s in subs[:2])
    # a new graph forgets the files; closing removes the directory
    d = store.directory
    store.clear()
    assert os.listdir(d) == []
    store.close()
    assert not os.path.exists(d) and store.directory is None
    with pytest.raises(RuntimeError, match="removed when the back end stopped"):
        store.tsdf(subs[0])


def test_the_back_end_removes_its_submaps_when_it_stops(tmp_path):
    """Through the back end's own parameters: ``backend_submaps_in_memory`` 0 writes every frozen submap to
    ``backend_submap_dir``; :meth:`BackEnd.stop` removes them."""
    from prism_ros.core.backend.worker import BackEnd

    from test_backend import CAM, _feed, _true_pose

    cfg = PrismConfig.from_yaml().replace(
        backend_enabled=True,
        backend_submaps_in_memory=0,
        backend_submap_dir=str(tmp_path),
        backend_submap_angle_deg=20.0,
    )
    be = BackEnd(cfg, CAM, block_when_full=True)
    try:
        from prism_ros.sim.render import render_scene
        from prism_ros.sim.scene import default_scene

        scene = default_scene()
        T = [_true_pose(i) for i in range(12)]
        frames = []
        for Ti in T:
            r = render_scene(Ti, CAM, scene)
            frames.append(SimpleNamespace(rgb=(255 * r["color"]).astype(np.uint8), depth=r["depth"], depth_sigma=None))
        _feed(be, T, frames, range(12))
        assert be.flush(60.0)
        with be._own:
            frozen = [s for s in be.submaps if s.frozen]
            assert len(frozen) >= 2 and all(s.map is None and os.path.isfile(s.path) for s in frozen)
            assert be.submaps[-1].map is not None
        f = be.figures()
        assert f["submaps_on_disk"] == len(frozen) and f["submaps_on_disk_mb"] > 0 and f["submap_write_failures"] == 0
        assert be.warning == ""
        assert be.compose_now() is not None
    finally:
        be.stop()
    assert os.listdir(tmp_path) == []


def test_a_submap_that_cannot_be_written_stays_in_memory(tmp_path):
    """No usable directory (here a file stands where it should be): the submap stays in memory, the failure is counted
    and said, and the store goes on."""
    cfg = PrismConfig.from_yaml().filter_config()
    subs = _submaps(cfg, 2)
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("")
    store = SubmapStore(cfg, in_memory=0, directory=str(blocker))
    for s in subs:
        store.frozen(s)
    assert all(s.map is not None and s.path is None for s in subs)
    assert store.write_failures == 2 and store.on_disk == 0 and "Error" in store.last_error
    assert store.tsdf(subs[0]) is subs[0].map
    store.close()


def test_disk_errors_keep_the_store_going(tmp_path, monkeypatch):
    """A write that fails half way leaves no file, keeps the submap in memory and is tried again at the next freeze; a
    submap whose file is gone or cut short counts as not there (the composed map leaves it out), and says so until a
    new graph."""
    cfg = PrismConfig.from_yaml().filter_config()
    subs = _submaps(cfg, 4)
    kept = copy.deepcopy(subs[2].map)
    store = SubmapStore(cfg, in_memory=1, directory=str(tmp_path))
    real_save = type(subs[0].map).save

    def full_disk(self, path, extra=None, compress=True):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(subs[0].map), "save", full_disk)
    store.frozen(subs[0])
    store.frozen(subs[1])
    assert subs[0].map is not None and store.write_failures == 1 and "No space left" in store.last_error
    assert os.listdir(store.directory) == []
    monkeypatch.setattr(type(subs[0].map), "save", real_save)
    store.frozen(subs[2])  # the disk has room again: both older ones go
    assert [s.map is None for s in subs[:3]] == [True, True, False] and store.on_disk == 2 and store.last_error == ""
    store.frozen(subs[3])
    assert subs[2].map is None and store.on_disk == 3
    os.remove(subs[0].path)
    with open(subs[1].path, "r+b") as f:
        f.truncate(100)
    assert store.tsdf(subs[0]) is None and store.tsdf(subs[1]) is None and store.read_failures == 2
    assert "could not be read back" in store.last_error
    T, Sigma = np.eye(4), np.zeros((6, 6))
    parts = [(lambda s=s: store.tsdf(s), T, Sigma) for s in subs[:3]]
    composed = compose_map(parts, subs[3].map)
    assert composed.n_blocks > 0
    _same(composed, compose_map([(kept, T, Sigma)], kept), table=False)
    store.close()
