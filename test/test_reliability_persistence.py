"""Map persistence: atomic saves that survive kill -9, versioned
maps with the configuration, clear errors for incompatible maps, relocalisation in a
saved map.  No ROS."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from prism_ros.config import PrismConfig
from prism_ros.core import persistence as P

ROOT = Path(__file__).resolve().parents[1]


def _map(cfg, n_blocks=8, seed=0):
    from prism_ros.core.tsdf import TsdfMap

    m = TsdfMap(
        cfg.voxel_size_m,
        cfg.truncation_m,
        cfg.map_prior_sigma_m,
        cfg.map_min_sigma_m,
        cfg.map_max_observations,
        initial_blocks=max(16, n_blocks),
    )
    rng = np.random.default_rng(seed)
    m.block_xyz[:n_blocks] = np.stack([np.arange(n_blocks), np.zeros(n_blocks), np.zeros(n_blocks)], 1)
    m.mu[:n_blocks] = rng.normal(0, 0.01, m.mu[:n_blocks].shape)
    m.cnt[:n_blocks] = 3
    m.n_blocks = n_blocks
    return m


def test_atomic_write_failure_keeps_previous_file(tmp_path):
    p = tmp_path / "a.bin"
    P.atomic_write(str(p), lambda t: Path(t).write_bytes(b"old"))

    def boom(t):
        Path(t).write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        P.atomic_write(str(p), boom)
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.bin"]  # the temporary is gone


def test_versioned_header_with_config_and_round_trip(tmp_path):
    cfg = PrismConfig.from_yaml()
    m = _map(cfg)
    path = P.save_map(m, str(tmp_path / "m.npz"), cfg, extra={"stamp": 12.5})
    hdr = m.read_header(path)
    assert hdr["format"] == "prism_ros.tsdf" and isinstance(hdr["version"], int)
    assert hdr["voxel_size_m"] == cfg.voxel_size_m and hdr["truncation_m"] == cfg.truncation_m
    assert hdr["config"]["voxel_size_m"] == cfg.voxel_size_m and hdr["stamp"] == 12.5 and "frames" in hdr
    m2 = P.load_map(path, cfg)
    assert m2.n_blocks == m.n_blocks
    np.testing.assert_array_equal(m2.mu[: m.n_blocks], m.mu[: m.n_blocks])


def test_incompatible_or_unreadable_map_clear_error(tmp_path):
    cfg = PrismConfig.from_yaml()
    path = P.save_map(_map(cfg), str(tmp_path / "m.npz"), cfg)
    other = cfg.replace(voxel_size_m=cfg.voxel_size_m * 2, truncation_m=cfg.truncation_m * 2)
    with pytest.raises(P.MapCompatibilityError) as ei:
        P.load_map(path, other)
    msg = str(ei.value)
    assert "voxel_size_m" in msg and "truncation_m" in msg and str(cfg.voxel_size_m) in msg
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04junk")
    with pytest.raises(P.MapCompatibilityError, match="not a readable prism_ros map"):
        P.load_map(str(tmp_path / "junk.npz"), cfg)
    with open(path, "rb") as f:
        data = f.read()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(P.MapCompatibilityError):
        P.load_map(str(tmp_path / "trunc.npz"), cfg)
    with pytest.raises(FileNotFoundError):
        P.load_map(str(tmp_path / "nope.npz"), cfg)


@pytest.mark.parametrize("name", ["../x", "/abs/x.npz", "a/b", "..", "", "a\x00b"])
def test_safe_map_path_refuses_escapes(tmp_path, name):
    with pytest.raises(P.MapPathError):
        P.safe_map_path(str(tmp_path), name)


def test_safe_map_path_ok_and_symlink_escape(tmp_path):
    assert P.safe_map_path(str(tmp_path), "m") == str(tmp_path.resolve() / "m.npz")
    os.symlink("/tmp/elsewhere.npz", tmp_path / "s.npz")
    with pytest.raises(P.MapPathError, match="outside"):
        P.safe_map_path(str(tmp_path), "s.npz")


_SAVER = textwrap.dedent(
    """
    import sys, numpy as np
    from prism_ros.config import PrismConfig
    from prism_ros.core.tsdf import TsdfMap
    from prism_ros.core import persistence as P
    cfg = PrismConfig.from_yaml()
    n = int(sys.argv[2])
    m = TsdfMap(cfg.voxel_size_m, cfg.truncation_m, 0.5, 0.0005, 200, initial_blocks=n)
    rng = np.random.default_rng(1)
    m.block_xyz[:n] = np.stack([np.arange(n), np.zeros(n), np.zeros(n)], 1)
    m.mu[:n] = rng.normal(0, 0.01, m.mu[:n].shape)  # incompressible: a slow save
    m.n_blocks = n
    i = 0
    while True:
        i += 1
        P.save_map(m, sys.argv[1], cfg, extra={"generation": i})
        print("saved", i, flush=True)
    """
)


@pytest.mark.slow
def test_kill_9_during_save_keeps_previous_map(tmp_path):
    cfg = PrismConfig.from_yaml()
    path = tmp_path / "map.npz"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    kills_mid_save = 0
    for attempt in range(3):
        p = subprocess.Popen(
            [sys.executable, "-c", _SAVER, str(path), "6000"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(tmp_path),
        )
        try:
            assert p.stdout.readline().startswith("saved"), "the saver did not complete a first save"
            # kill while a temporary file is being written (the next save is in progress)
            t_end = time.monotonic() + 20
            while time.monotonic() < t_end:
                tmps = [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
                if tmps and os.path.getsize(tmp_path / tmps[0]) > 0:
                    break
                time.sleep(0.005)
            mid = any(f.endswith(".tmp") for f in os.listdir(tmp_path))
            os.kill(p.pid, signal.SIGKILL)
        finally:
            p.wait(10)
            p.stdout.close()
        kills_mid_save += int(mid)
        # the previous (complete) map is intact and loads
        hdr = P.load_map(str(path), cfg).header()
        assert P.load_map(str(path), cfg).n_blocks == 6000
        assert hdr["voxel_size_m"] == cfg.voxel_size_m
        for f in os.listdir(tmp_path):  # a stale temporary may remain; never the target torn
            if f.endswith(".tmp"):
                os.unlink(tmp_path / f)
    assert kills_mid_save >= 2, "the kill never landed during a save"


@pytest.mark.parametrize("prior_error", [(0, 0, 0, 0, 0, 0), (0.06, -0.04, 0.05, 0.0, 0.1, -0.05)])
def test_relocalisation_in_a_saved_map(redkitchen_dir, tmp_path, prior_error):
    """Build a map from 7-Scenes frames 0-59, save, load into a new filter whose prior is
    frame 60's pose (exact, or 9 cm and 6.4 deg off), track frames 60-89 against it:
    the first frame relocalises before it is fused; ATE < 3 cm.  Relocalisation ends with the
    first tracked frame: a later loss tries only recovery_max_starts starting poses (not all 8)."""
    from prism_ros.core import se3
    from prism_ros.core.filter import PrismFilter
    from prism_ros.datasets import open_dataset

    ds = open_dataset(str(redkitchen_dir))
    cfg = PrismConfig.from_yaml()
    f = PrismFilter(cfg, ds.camera, T_w_c0=ds[0].T_w_c_gt)
    for i in range(0, 60, 2):  # every other frame of 0-59 (15 fps) keeps the test short
        fr = ds[i]
        f.step(fr.rgb, fr.depth, fr.stamp)
    path = P.save_map(f.map, str(tmp_path / "kitchen.npz"), cfg)
    n_blocks = f.map.n_blocks
    del f
    g = PrismFilter(cfg, ds.camera)
    P.install_map(g, P.load_map(path, cfg), ds[60].T_w_c_gt @ se3.exp(np.array(prior_error, dtype=float)))
    assert g.map.n_blocks == n_blocks
    starts = []  # (frame, number of starting poses) of each recovery: a spy on the public Recovery.recover
    recover = g.recovery.recover
    g.recovery.recover = lambda frame, c: starts.append((i, len(c))) or recover(frame, c)
    err = []
    for i in range(60, 90):
        fr = ds[i]
        r = g.step(fr.rgb, fr.depth, fr.stamp)
        assert r.tracking_ok, (i, r.status)
        err.append(np.linalg.norm(r.T_w_c[:3, 3] - fr.T_w_c_gt[:3, 3]))
    ate = float(np.sqrt(np.mean(np.square(err))))
    print(f"relocalisation ATE {100 * ate:.2f} cm, max {100 * max(err):.2f} cm, recoveries {starts}")
    assert ate < 0.03 and max(err) < 0.05
    assert not g.relocalising
    assert all(n <= cfg.recovery_max_starts for k, n in starts if k > 60)  # only frame 60 may try all 8
    # a later loss (an unrelated view: the far end of the kitchen) tries recovery_max_starts, not 8
    i, fr, n_before = 599, ds[599], len(starts)
    g.step(fr.rgb, fr.depth, ds[89].stamp + 1 / 30)
    assert len(starts) == n_before + 1 and starts[-1][1] == cfg.recovery_max_starts
