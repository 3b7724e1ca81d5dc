"""EuRoC reader on the real micro sequence (skipped when the data is absent)."""

import os
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from prism_ros.core import se3  # noqa: E402
from prism_ros.core.dynamics import MotionState  # noqa: E402

DATA_DIR = Path(os.environ.get("PRISM_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
MICRO = DATA_DIR / "euroc_V1_01_easy_micro"

pytestmark = [
    pytest.mark.skipif(
        not (MICRO / "mav0" / "cam0" / "data.csv").is_file(),
        reason=f"EuRoC micro dataset not found at {MICRO} "
        "(set PRISM_DATA_DIR to the folder holding euroc_V1_01_easy_micro)",
    ),
    pytest.mark.realdata,
]


@pytest.fixture(scope="module")
def ds():
    from prism_ros.datasets import open_dataset

    return open_dataset(str(MICRO))


def test_detect_and_open(ds):
    from prism_ros.datasets import EurocDataset, detect_format

    name, cls = detect_format(str(MICRO))
    assert cls is EurocDataset and "EuRoC" in name
    assert isinstance(ds, EurocDataset)
    assert len(ds) == 95
    st = ds.stamps()
    assert abs(st[0] - 1403715273.262143) < 1e-5
    np.testing.assert_allclose(np.diff(st), 0.05, atol=1e-4)
    assert ds.config_hints["depth_max_m"] <= 6.0
    # mav0 itself also opens, start/frames slice
    from prism_ros.datasets import open_dataset

    sub = open_dataset(str(MICRO / "mav0"), start=10, frames=5)
    assert len(sub) == 5 and abs(sub.stamps()[0] - st[10]) < 1e-9


def test_calibration_parsing(ds):
    from prism_ros.datasets.euroc_files import read_euroc_sensor_yaml

    c0 = read_euroc_sensor_yaml(MICRO / "mav0" / "cam0" / "sensor.yaml")["calib"]
    assert c0.size == (752, 480)
    np.testing.assert_allclose(c0.K[[0, 1, 0, 1], [0, 1, 2, 2]], [458.654, 457.296, 367.215, 248.375])
    np.testing.assert_allclose(c0.D, [-0.28340811, 0.07395907, 0.00019359, 1.76187114e-05])
    assert abs(c0.T_BS[0, 3] - (-0.0216401454975)) < 1e-12
    imu = read_euroc_sensor_yaml(MICRO / "mav0" / "imu0" / "sensor.yaml")
    np.testing.assert_allclose(imu["T_BS"], np.eye(4))
    assert ds.imu_noise.gyro_noise_density == pytest.approx(1.6968e-04)
    assert ds.imu_noise.accel_noise_density == pytest.approx(2.0e-3)
    assert 0.105 < ds.stereo.baseline < 0.115  # ~11 cm rig
    cam = ds.camera
    assert (cam.width, cam.height) == (752, 480) and 400 < cam.fx < 470


def test_rectification_real_calibration_same_row(ds):
    st = ds.stereo
    T_c1_c0 = np.linalg.inv(st.right.T_BS) @ st.left.T_BS
    pts = np.array([[0.3, -0.2, 2.0], [-0.8, 0.5, 4.0], [0.0, 0.0, 1.0], [1.0, 0.4, 3.0]])
    u0, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), st.left.K, st.left.D)
    p1 = (T_c1_c0[:3, :3] @ pts.T).T + T_c1_c0[:3, 3]
    u1, _ = cv2.projectPoints(p1, np.zeros(3), np.zeros(3), st.right.K, st.right.D)
    r0 = cv2.undistortPoints(u0, st.left.K, st.left.D, R=st.R0, P=st.P0).reshape(-1, 2)
    r1 = cv2.undistortPoints(u1, st.right.K, st.right.D, R=st.R1, P=st.P1).reshape(-1, 2)
    assert np.abs(r0[:, 1] - r1[:, 1]).max() < 0.05
    # and through the cached maps: the rectified pixel samples the raw pixel of the point
    mx, my = st.map0
    for (x, y), (ux, uy) in zip(r0, u0.reshape(-1, 2)):
        xi, yi = int(round(x)), int(round(y))
        if 0 <= xi < 752 and 0 <= yi < 480:
            assert abs(mx[yi, xi] - ux) < 1.5 and abs(my[yi, xi] - uy) < 1.5


def test_ground_truth_frames(ds):
    assert ds.gt_source.endswith("V1_01_easy.txt")
    Gb = ds.gt_body_poses()
    Gc = ds.gt_poses()
    assert Gb is not None and Gc is not None and len(Gc) == 95
    np.testing.assert_allclose(Gc, Gb @ ds.T_body_cam, atol=1e-12)
    np.testing.assert_allclose(ds.to_body(Gc), Gb, atol=1e-12)
    # first body pose = the TUM file's first row
    np.testing.assert_allclose(Gb[0][:3, 3], [0.878895, 2.183400, 0.948427], atol=1e-6)
    # the MAV stands still: < 3 mm
    assert np.linalg.norm(Gb[-1][:3, 3] - Gb[0][:3, 3]) < 3e-3
    # an explicit gt_path (the original EuRoC ground truth starts 1 s later: frames without gt kept / dropped)
    from prism_ros.datasets import open_dataset

    orig = MICRO / "groundtruth_from_open_vins" / "V1_01_easy_original.txt"
    d2 = open_dataset(str(MICRO), gt_path=str(orig), frames=30)
    assert d2.gt_pose(0) is None and d2.gt_pose(29) is not None
    d3 = open_dataset(str(MICRO), gt_path=str(orig), require_gt=True)
    assert 70 <= len(d3) <= 75
    assert open_dataset(str(MICRO), gt_path=False, frames=3).gt_poses() is None


def test_frame_stereo_depth_plausible(ds):
    fr = ds[40]
    assert fr.rgb.shape == (480, 752, 3) and fr.rgb.dtype == np.uint8
    assert np.array_equal(fr.rgb[..., 0], fr.rgb[..., 2])  # grey repeated
    assert fr.depth.shape == (480, 752) and fr.depth.dtype == np.float32
    assert fr.depth_sigma is not None and fr.depth_sigma.dtype == np.float32
    v = fr.depth > 0
    frac = v[ds.stereo.valid_region].mean()
    med = float(np.median(fr.depth[v]))
    assert frac >= 0.5, frac
    assert 1.0 < med < 5.0, med  # a room of a few metres (V1: ~8 x 8 m)
    assert np.all(np.isfinite(fr.depth)) and np.all(fr.depth_sigma[~v] == 0)
    np.testing.assert_allclose(
        fr.depth_sigma[v], fr.depth[v] ** 2 * ds.stereo.sigma_d / (ds.stereo.f * ds.stereo.baseline), rtol=1e-5
    )
    np.testing.assert_allclose(fr.T_w_c_gt, ds.gt_poses()[40])


def test_stereo_bm_option_on_real_images(ds):
    """StereoBM (``stereo_matcher="bm"``) on the same real pair: its own sigma_d, a depth image
    that agrees with SGBM's where both match (the real clip has no exact depth)."""
    from prism_ros.datasets import EurocDataset
    from prism_ros.datasets.euroc import STEREO_SIGMA_D_PX

    bm = EurocDataset(str(MICRO), frames=41, stereo_matcher="bm", use_imu=False)
    assert bm.stereo.matcher == "bm" and ds.stereo.matcher == "sgbm"
    assert bm.stereo.sigma_d == STEREO_SIGMA_D_PX[("bm", 2)] == 0.25
    a, b = ds[40], bm[40]
    both = (a.depth > 0) & (b.depth > 0)
    assert (b.depth > 0)[bm.stereo.match_region].mean() > 0.7
    fb = ds.stereo.f * ds.stereo.baseline
    dd = np.abs(fb / a.depth[both] - fb / b.depth[both])  # disparity difference, px
    assert np.median(dd) < 0.4 and np.mean(dd > 2.0) < 0.01, (np.median(dd), np.mean(dd > 2.0))
    np.testing.assert_allclose(b.depth_sigma[b.depth > 0], b.depth[b.depth > 0] ** 2 * 0.25 / fb, rtol=1e-5)


def test_imu_controls_static(ds):
    """IMU-only dead reckoning over the 95 static frames stays within 1 cm and 1 deg."""
    G = ds.gt_poses()
    T = G[0].copy()
    for i in range(1, len(ds)):
        s = MotionState(T, np.eye(6) * 1e-8, np.zeros(6), np.eye(6) * 1e-4, None)
        c = ds.control_between(i - 1, i, s)
        assert c is not None and np.linalg.eigvalsh(c.cov).min() > 0
        T = T @ c.T_prev_curr
    integ = ds.integrator()
    assert integ.static_start
    np.testing.assert_allclose(integ.bg, [-0.0022, 0.0215, 0.0770], atol=3e-3)  # OpenVINS' gyro bias
    assert abs(np.linalg.norm(integ.g_w) - 9.81) < 0.1
    d = se3.inv(G[0]) @ T
    assert np.linalg.norm(d[:3, 3]) < 0.01
    assert np.degrees(np.linalg.norm(se3.so3_log(d[:3, :3]))) < 1.0
    assert ds.control_between(0, 1, None) is None


def test_run_offline_writes_body_frame_and_uses_imu(ds, tmp_path):
    from prism_ros.config import PrismConfig
    from prism_ros.datasets import open_dataset
    from prism_ros.eval.evaluate import run_offline

    short = open_dataset(str(MICRO), frames=6)
    cfg = PrismConfig.from_yaml().replace(**short.config_hints)
    m = run_offline(short, cfg, str(tmp_path), progress=False, report=False, write_map=False)
    assert m["frames"] == 6 and m["controls_used"] == 5 and m["tracking_failures"] == 0
    body = np.loadtxt(tmp_path / "trajectory_body.tum")
    gtb = np.loadtxt(tmp_path / "groundtruth_body.tum")
    assert body.shape == (6, 8) and gtb.shape == (6, 8)
    np.testing.assert_allclose(gtb[0, 1:4], [0.878895, 2.183400, 0.948427], atol=1e-5)
    # the static MAV: estimated motion well under 1 cm and 1 deg
    cam = np.loadtxt(tmp_path / "trajectory.tum")
    T0 = se3.make_T(se3.R_from_quat_xyzw(cam[0, 4:8]), cam[0, 1:4])
    T1 = se3.make_T(se3.R_from_quat_xyzw(cam[-1, 4:8]), cam[-1, 1:4])
    d = se3.inv(T0) @ T1
    assert np.linalg.norm(d[:3, 3]) < 0.01
    assert np.degrees(np.linalg.norm(se3.so3_log(d[:3, :3]))) < 1.0


def test_a_second_run_on_the_same_dataset_object_starts_its_imu_afresh():
    """The IMU's gravity alignment and biases belong to a run: a second run over the same dataset object gets a new
    integrator and the same trajectory as the first."""
    from prism_ros.config import PrismConfig
    from prism_ros.datasets import open_dataset
    from prism_ros.tools import runner

    short = open_dataset(str(MICRO), frames=6)
    cfg = PrismConfig.from_yaml().replace(**short.config_hints)
    first = runner.run(short, cfg, progress=False).T_est
    integ = short.integrator()
    assert integ.g_w is not None  # aligned by the first run
    second = runner.run(short, cfg, progress=False).T_est
    assert short.integrator() is not integ
    np.testing.assert_array_equal(second, first)


def test_bad_pairs_skipped_with_clear_messages(euroc_bad_pairs):
    """A pair with its cam1 image deleted, black or saturated cam0 images: the reader
    raises FrameLoadError naming the frame, the camera and the problem (no stereo depth,
    not even a zero-depth frame); the offline run skips exactly those frames and tracks
    the rest."""
    from conftest import EUROC_BAD_PAIRS
    from prism_ros.config import PrismConfig
    from prism_ros.datasets import FrameLoadError, open_dataset
    from prism_ros.pipeline import run_dataset

    ds = open_dataset(str(euroc_bad_pairs))
    assert len(ds) == 12
    for i, kind in EUROC_BAD_PAIRS.items():
        with pytest.raises(FrameLoadError) as e:
            ds[i]
        assert e.value.kind == kind and e.value.index == i
        cam = "cam1" if kind == "missing_right" else "cam0"
        assert f"/{cam}/data/" in e.value.path and str(e.value).startswith(f"frame {i}: ")
    msg = {i: str(_err(ds, i)) for i in EUROC_BAD_PAIRS}
    assert "cam1 (right) image missing (file not found): pair skipped, no stereo depth" in msg[3]
    assert "cam0 (left) image black (100% of the pixels <= 10): pair skipped" in msg[6]
    assert "cam0 (left) image saturated (100% of the pixels >= 245): pair skipped" in msg[9]

    lines = []
    cfg = PrismConfig.from_yaml().replace(**ds.config_hints)
    pipe, rs = run_dataset(ds, cfg, progress=False, log=lines.append)
    assert rs.skipped == sorted(EUROC_BAD_PAIRS) and rs.frames == 12 - len(EUROC_BAD_PAIRS)
    skip_lines = [ln for ln in lines if ln.startswith("warning: skipping frame")]
    assert skip_lines == [f"warning: skipping frame {i}: {msg[i]}" for i in sorted(EUROC_BAD_PAIRS)]
    assert not [ln for ln in lines if "tracking lost" in ln]
    assert rs.controls_used == rs.frames - 1  # the IMU bridges the skipped frames


def _err(ds, i):
    from prism_ros.datasets import FrameLoadError

    try:
        ds[i]
    except FrameLoadError as e:
        return e
    raise AssertionError(f"frame {i} loaded")
