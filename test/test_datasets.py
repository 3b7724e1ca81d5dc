"""Dataset readers: 7-Scenes (real data when present), TUM (a folder the test writes),
open_dataset detection, start/frames, corrupt files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy.spatial.transform import Rotation

from prism_ros.core.camera import Camera
from prism_ros.datasets import (
    DETECTORS,
    FrameLoadError,
    SevenScenesDataset,
    TumDataset,
    open_dataset,
)
from prism_ros.datasets.tum import associate, interpolate_poses, write_tum_folder
from prism_ros.sim.synthetic import SyntheticSequence


# ----------------------------------------------------------------------------- 7-Scenes (real)


@pytest.fixture(scope="module")
def kitchen(redkitchen_dir):
    return open_dataset(str(redkitchen_dir))


def test_sevenscenes_real_basics(kitchen):
    ds = kitchen
    assert isinstance(ds, SevenScenesDataset)
    assert len(ds) == 600
    c = ds.camera
    assert (c.width, c.height, c.fx, c.fy, c.cx, c.cy) == (640, 480, 585.0, 585.0, 320.0, 240.0)
    np.testing.assert_allclose(ds.stamps(), np.arange(600) / 30.0, atol=1e-12)
    f = ds[0]
    assert f.index == 0 and f.stamp == 0.0 and f.depth_sigma is None
    assert f.rgb.shape == (480, 640, 3) and f.rgb.dtype == np.uint8
    assert f.depth.shape == (480, 640) and f.depth.dtype == np.float32
    assert np.all(np.isfinite(f.depth)) and f.depth.min() == 0.0
    valid = f.depth > 0
    assert 0.6 < valid.mean() <= 1.0
    assert 1.0 < float(np.median(f.depth[valid])) < 3.0
    assert f.depth[valid].min() > 0.3 and f.depth.max() < 10.0
    assert 40 < f.rgb.mean() < 220 and f.rgb.std() > 20  # a real, non-blank colour image
    # the pose is the file's (within the SO(3) projection)
    raw = np.loadtxt(Path(ds.root) / "frame-000000.pose.txt")
    np.testing.assert_allclose(f.T_w_c_gt, raw, atol=1e-3)
    np.testing.assert_allclose(f.T_w_c_gt[:3, 3], raw[:3, 3], atol=1e-12)
    assert ds[-1].index == 599 and ds[599].stamp == pytest.approx(599 / 30.0)
    with pytest.raises(IndexError):
        ds[600]


def test_sevenscenes_poses_orthonormal(kitchen):
    P = kitchen.gt_poses()
    assert P.shape == (600, 4, 4) and P.dtype == np.float64
    R = P[:, :3, :3]
    err = np.abs(np.einsum("nij,nkj->nik", R, R) - np.eye(3)).max()
    assert err < 1e-9
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-9)
    np.testing.assert_array_equal(P[:, 3], np.tile([0.0, 0.0, 0.0, 1.0], (600, 1)))
    # handheld motion: 4.8 m over the 600 frames (data README), steps of a few mm
    steps = np.linalg.norm(np.diff(P[:, :3, 3], axis=0), axis=1)
    assert 3.5 < steps.sum() < 6.0 and steps.max() < 0.1


def test_sevenscenes_65535_is_invalid(kitchen):
    # frame 33 holds 65535 ("invalid") pixels in this data
    raw = np.asarray(Image.open(Path(kitchen.root) / "frame-000033.depth.png"))
    bad = raw == 65535
    assert bad.sum() > 0
    d = kitchen[33].depth
    assert np.all(d[bad] == 0.0) and d.max() < 10.0
    np.testing.assert_allclose(d[~bad], raw[~bad] / 1000.0, rtol=1e-6)


def test_sevenscenes_poses_are_camera_to_world(kitchen):
    """Depth of frames 0 and 45 (13 cm apart) mapped to the world with the GT poses overlaps
    (median nearest distance ~1 cm at this sampling); the inverse convention does not."""
    from scipy.spatial import cKDTree

    def world_points(i, invert=False, step=6):
        f = kitchen[i]
        P = kitchen.camera.backproject(f.depth)[::step, ::step].reshape(-1, 3).astype(np.float64)
        P = P[P[:, 2] > 0]
        T = np.linalg.inv(f.T_w_c_gt) if invert else f.T_w_c_gt
        return P @ T[:3, :3].T + T[:3, 3]

    d, _ = cKDTree(world_points(0)).query(world_points(45))
    assert np.median(d) < 0.02
    d_inv, _ = cKDTree(world_points(0, True)).query(world_points(45, True))
    assert np.median(d_inv) > 0.08


def test_sevenscenes_start_frames(redkitchen_dir, kitchen):
    ds = open_dataset(str(redkitchen_dir), start=100, frames=50)
    assert len(ds) == 50
    np.testing.assert_allclose(ds.stamps(), (100 + np.arange(50)) / 30.0)
    f = ds[0]
    assert f.index == 0 and f.stamp == pytest.approx(100 / 30.0)
    np.testing.assert_array_equal(f.depth, kitchen[100].depth)
    np.testing.assert_array_equal(f.T_w_c_gt, kitchen[100].T_w_c_gt)
    assert len(open_dataset(str(redkitchen_dir), start=590, frames=50)) == 10  # clipped at the end
    with pytest.raises(ValueError, match="beyond the end"):
        open_dataset(str(redkitchen_dir), start=600)


# ----------------------------------------------------------------------------- 7-Scenes layout (written here)


def _write_7scenes(root: Path, numbers, size=(48, 32), k=None, jpg=False):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    w, h = size
    for n in numbers:
        depth = np.full((h, w), 1500, np.uint16)
        depth[0, 0] = 0
        depth[0, 1] = 65535
        Image.fromarray(depth).save(root / f"frame-{n:06d}.depth.png")
        rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / f"frame-{n:06d}.color.{'jpg' if jpg else 'png'}")
        T = np.eye(4)
        T[:3, 3] = [0.1 * n, 0.0, 0.0]
        np.savetxt(root / f"frame-{n:06d}.pose.txt", T)
    if k is not None:
        np.savetxt(root / "camera-intrinsics.txt", k)
    return root


def test_sevenscenes_layout_any_first_frame(tmp_path):
    root = _write_7scenes(tmp_path / "seq-01", [5, 6, 7, 9])  # frame 8 missing
    ds = open_dataset(str(root))
    assert isinstance(ds, SevenScenesDataset) and len(ds) == 4
    c = ds.camera
    assert (c.fx, c.fy, c.cx, c.cy, c.width, c.height) == (585.0, 585.0, 320.0, 240.0, 48, 32)  # default K
    np.testing.assert_allclose(ds.stamps(), np.array([0, 1, 2, 4]) / 30.0)  # from frame numbers
    f = ds[0]
    assert f.depth[0, 0] == 0 and f.depth[0, 1] == 0 and f.depth[5, 5] == pytest.approx(1.5)
    assert f.T_w_c_gt[0, 3] == pytest.approx(0.5)
    ds2 = open_dataset(str(root), start=1, frames=2)
    assert len(ds2) == 2 and ds2[0].T_w_c_gt[0, 3] == pytest.approx(0.6) and ds2[0].stamp == pytest.approx(1 / 30)
    # intrinsics file and a missing / broken pose
    K = np.array([[500.0, 0, 24.0], [0, 510.0, 16.0], [0, 0, 1]])
    root2 = _write_7scenes(tmp_path / "seq-02", [0, 1, 2], k=K, jpg=True)
    (root2 / "frame-000001.pose.txt").unlink()
    (root2 / "frame-000002.pose.txt").write_text("-inf " * 16)
    ds3 = open_dataset(str(root2))
    assert (ds3.camera.fx, ds3.camera.fy, ds3.camera.cx, ds3.camera.cy) == (500.0, 510.0, 24.0, 16.0)
    assert ds3[0].T_w_c_gt is not None and ds3[1].T_w_c_gt is None and ds3[2].T_w_c_gt is None
    assert ds3.gt_poses() is None
    assert ds3[1].rgb.shape == (32, 48, 3)
    cam = Camera(100.0, 100.0, 23.5, 15.5, 48, 32)
    assert SevenScenesDataset(root2, camera=cam).camera == cam


@pytest.mark.parametrize("damage", ["garbage_depth", "truncated_depth", "truncated_jpg", "missing_color", "wrong_size"])
def test_corrupt_frame_raises_frameloaderror(tmp_path, damage):
    root = _write_7scenes(tmp_path / "seq", [0, 1, 2], size=(64, 48), jpg=True)
    # a real-sized JPEG so truncation hits the entropy-coded data
    rgb = (np.random.default_rng(1).random((48, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(root / "frame-000001.color.jpg", quality=95)
    if damage == "garbage_depth":
        bad = root / "frame-000001.depth.png"
        bad.write_bytes(b"not a png at all")
    elif damage == "truncated_depth":
        bad = root / "frame-000001.depth.png"
        bad.write_bytes(bad.read_bytes()[:60])
    elif damage == "truncated_jpg":
        bad = root / "frame-000001.color.jpg"
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "missing_color":
        bad = root / "frame-000001.color.jpg"
        bad.unlink()
    else:
        bad = root / "frame-000001.depth.png"
        Image.fromarray(np.zeros((10, 10), np.uint16)).save(bad)
    ds = open_dataset(str(root))
    assert len(ds) == 3
    ds[0], ds[2]  # the others load
    with pytest.raises(FrameLoadError) as ei:
        ds[1]
    e = ei.value
    assert e.index == 1 and Path(e.path).name in (bad.name, "frame-000001.color.png") and e.reason
    assert str(e.index) in str(e) and e.reason in str(e)
    import pickle

    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.index, e2.path, e2.reason) == (e.index, e.path, e.reason)


# ----------------------------------------------------------------------------- TUM


T0 = 1305031102.0  # TUM-like absolute stamps (float64 must keep sub-ms precision)


@pytest.fixture(scope="module")
def tum_source():
    return SyntheticSequence(width=64, height=48, n_frames=12, noise=False, seed=3)


def _write_tum(root: Path, seq: SyntheticSequence, gt_span=None, extra=True):
    frames = []
    for i in range(len(seq)):
        f = seq[i]
        f.stamp = T0 + f.stamp
        frames.append(f)
    # GT at 100 Hz, with a phase offset; optionally only over part of the sequence
    lo, hi = gt_span if gt_span is not None else (-0.05, len(seq) / seq.fps + 0.05)
    gt_t = np.arange(lo, hi, 0.01) + 0.0037
    gt_T = np.stack([seq.pose_at(t) for t in gt_t])
    write_tum_folder(root, frames, depth_stamp_offset=0.007, gt_stamps=T0 + gt_t, gt_poses=gt_T)
    if extra:
        # an extra depth image that competes for colour frame 3 (farther than the real one),
        # and a colour image with no depth within 0.02 s (must be dropped)
        t3 = frames[3].stamp
        Image.fromarray(np.zeros((48, 64), np.uint16)).save(root / "depth" / "extra.png")
        Image.fromarray(frames[0].rgb).save(root / "rgb" / "lonely.png")
        with open(root / "depth.txt", "a") as fh:
            fh.write(f"{t3 + 0.012:.6f} depth/extra.png\n")
        with open(root / "rgb.txt", "a") as fh:
            fh.write(f"{T0 + 100.0:.6f} rgb/lonely.png\n")
    return frames


def test_tum_roundtrip_association_scale_gt(tmp_path, tum_source):
    seq = tum_source
    root = tmp_path / "rgbd_dataset_freiburg1_synth"
    frames = _write_tum(root, seq)
    ds = open_dataset(str(root))
    assert isinstance(ds, TumDataset)
    assert len(ds) == len(seq)  # lonely colour image dropped, extra depth unused
    c = ds.camera
    assert (c.fx, c.fy, c.cx, c.cy, c.width, c.height) == (517.3, 516.5, 318.6, 255.3, 64, 48)
    np.testing.assert_allclose(ds.stamps(), [f.stamp for f in frames], atol=2e-6)
    for i in (0, 3, 11):
        f = ds[i]
        assert f.index == i
        np.testing.assert_array_equal(f.rgb, frames[i].rgb)
        # uint16 / 5000: exact to the 0.2 mm quantum
        src = frames[i].depth
        assert f.depth.dtype == np.float32 and np.all(np.isfinite(f.depth))
        np.testing.assert_allclose(f.depth, src, atol=0.5 / 5000 + 1e-6)
        assert f.depth.max() > 0.5  # really in metres
        # GT interpolated at the colour stamp: 100 Hz samples of a smooth trajectory
        Tt = seq.pose_at(frames[i].stamp - T0)
        assert np.abs(f.T_w_c_gt[:3, 3] - Tt[:3, 3]).max() < 2e-4
        dR = Rotation.from_matrix(f.T_w_c_gt[:3, :3].T @ Tt[:3, :3]).magnitude()
        assert dR < 1e-3
    P = ds.gt_poses()
    assert P.shape == (len(seq), 4, 4)
    # frame 3 paired with its own depth (0.007 s), not the extra one (0.012 s)
    assert ds[3].depth.max() > 0


def test_tum_gt_coverage_and_options(tmp_path, tum_source):
    seq = tum_source
    # GT only over the first ~0.2 s: frames 0..6 (t <= 0.2) have GT (within 0.02 s)
    root = tmp_path / "rgbd_dataset_freiburg3_part"
    _write_tum(root, seq, gt_span=(0.0, 0.2), extra=False)
    ds = open_dataset(str(root))
    assert ds.camera.fx == 535.4 and ds.camera.cy == 247.6
    n_gt = len(ds)
    assert 6 <= n_gt <= 7
    assert all(ds[i].T_w_c_gt is not None for i in range(n_gt))
    ds_all = TumDataset(root, require_gt=False)
    assert len(ds_all) == len(seq)
    assert ds_all[len(seq) - 1].T_w_c_gt is None and ds_all.gt_poses() is None
    # no groundtruth.txt at all: every frame, no GT
    (root / "groundtruth.txt").unlink()
    ds_none = open_dataset(str(root), start=2, frames=3)
    assert len(ds_none) == 3 and ds_none.gt_poses() is None and ds_none[0].T_w_c_gt is None
    np.testing.assert_allclose(ds_none.stamps()[0], T0 + 2 / 30.0, atol=2e-6)
    # default intrinsics for an unknown folder name, camera override
    other = tmp_path / "my_sequence"
    shutil.copytree(root, other)
    assert open_dataset(str(other)).camera.fx == 525.0
    cam = Camera(60.0, 60.0, 31.5, 23.5, 64, 48)
    assert open_dataset(str(other), camera=cam).camera == cam


def test_interpolate_poses_known_numbers():
    t = np.array([10.0, 10.01])
    xyz = np.array([[0.0, 0.0, 0.0], [0.01, 0.02, -0.04]])
    q = np.array([[0.0, 0.0, 0.0, 1.0], Rotation.from_euler("z", 0.08).as_quat()])
    out = interpolate_poses(t, xyz, q, np.array([10.0025, 10.0, 10.01, 9.99, 10.025, 9.97]), max_difference=0.02)
    T = out[0]
    np.testing.assert_allclose(T[:3, 3], [0.0025, 0.005, -0.01], atol=1e-12)
    np.testing.assert_allclose(Rotation.from_matrix(T[:3, :3]).as_rotvec(), [0, 0, 0.02], atol=1e-12)
    np.testing.assert_allclose(out[1], np.eye(4), atol=1e-12)
    np.testing.assert_allclose(out[2][:3, 3], xyz[1], atol=1e-12)
    np.testing.assert_allclose(out[3], np.eye(4), atol=1e-12)  # 0.01 s before the first sample: end sample
    assert out[4] is not None and out[5] is None  # 0.015 s after / 0.03 s before the span


def _associate_reference(a, b, max_difference):
    """TUM associate.py, verbatim logic (O(N*M))."""
    first, second = dict((x, i) for i, x in enumerate(a)), dict((x, i) for i, x in enumerate(b))
    pot = [(abs(x - y), x, y) for x in first for y in second if abs(x - y) < max_difference]
    pot.sort()
    fk, sk, matches = list(first), list(second), []
    for _, x, y in pot:
        if x in fk and y in sk:
            fk.remove(x)
            sk.remove(y)
            matches.append((first[x], second[y]))
    matches.sort(key=lambda m: a[m[0]])
    return matches


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 3000), min_size=0, max_size=25, unique=True),
    st.lists(st.integers(0, 3000), min_size=0, max_size=25, unique=True),
)
def test_associate_matches_tum_reference(ai, bi):
    a = [x / 1000.0 for x in sorted(ai)]
    b = [x / 1000.0 + 0.0003 for x in bi]  # unsorted, no exact ties
    got = associate(a, b, 0.02)
    assert got == _associate_reference(a, b, 0.02)
    assert len({i for i, _ in got}) == len(got) == len({j for _, j in got})
    assert all(abs(a[i] - b[j]) < 0.02 for i, j in got)


def test_associate_one_to_one_conflict():
    assert associate([0.0, 0.01], [0.006]) == [(1, 0)]
    assert associate([0.0, 0.033, 0.066], [0.001, 0.030, 0.034, 0.2]) == [(0, 0), (1, 2)]


# ----------------------------------------------------------------------------- open_dataset


def test_open_dataset_synthetic_and_errors(tmp_path):
    ds = open_dataset("synthetic:20", width=32, height=24, noise=False)
    assert isinstance(ds, SyntheticSequence) and len(ds) == 20
    assert len(open_dataset("synthetic", width=32, height=24)) == 150
    long = open_dataset("synthetic", start=10, frames=300, width=32, height=24)
    assert len(long) == 300 and long.stamps()[0] == pytest.approx(10 / 30.0)
    sub = open_dataset("synthetic:20", start=5, frames=4, width=32, height=24, noise=False)
    assert len(sub) == 4
    np.testing.assert_allclose(sub.stamps(), ds.stamps()[5:9])
    np.testing.assert_array_equal(sub[0].depth, ds[5].depth)
    assert len(open_dataset("synthetic:20", start=15, frames=10, width=32, height=24)) == 5
    with pytest.raises(ValueError, match="synthetic"):
        open_dataset("synthetic:abc")
    with pytest.raises(ValueError, match="does not exist"):
        open_dataset(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError) as ei:
        open_dataset(str(tmp_path / "empty"))
    msg = str(ei.value)
    assert "TUM" in msg and "7-Scenes" in msg and "rgb.txt" in msg
    # detection is a list of (name, detect_fn, class) that other formats extend
    assert [cls for _, _, cls in DETECTORS][:2] == [TumDataset, SevenScenesDataset]


def test_data_lines_skips_blanks_and_comments_and_keeps_line_numbers(tmp_path):
    from prism_ros.datasets.textfile import data_lines

    p = tmp_path / "list.txt"
    p.write_text("# header\n\n  1.0 rgb/a.png  \n\t# indented comment\n2.0,rgb/b.png\n", encoding="utf-8")
    assert list(data_lines(p)) == [(3, "1.0 rgb/a.png"), (5, "2.0,rgb/b.png")]
