"""EuRoC ROS 1 bags (EurocBagDataset, `prism-ros run <bag> --calib`), checked against the
folder reader on a bag written from the micro sequence (skipped when the data is absent)."""

import os
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("rosbags")

DATA_DIR = Path(os.environ.get("PRISM_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
MICRO = DATA_DIR / "euroc_V1_01_easy_micro"
N_PAIRS = 12

pytestmark = [
    pytest.mark.skipif(
        not (MICRO / "mav0" / "cam0" / "data.csv").is_file(),
        reason=f"EuRoC micro dataset not found at {MICRO} "
        "(set PRISM_DATA_DIR to the folder holding euroc_V1_01_easy_micro)",
    ),
    pytest.mark.realdata,
]


def _csv(path):
    rows = []
    with open(path, "r", encoding="utf-8") as f:
        for ln in f:
            ln = ln.strip()
            if ln and not ln.startswith("#"):
                rows.append([x.strip() for x in ln.split(",")])
    return rows


def write_euroc_bag(
    bag: Path, n_pairs: int = N_PAIRS, right_offset_ns: int = 0, src: Path = MICRO, imu_before_ns: int = 1_200_000_000
) -> None:
    """A EuRoC-style ROS 1 bag (the official bags' topics) from the ASL folder ``src``'s first
    ``n_pairs`` stereo pairs (None: all) and its IMU samples from ``imu_before_ns`` before the
    first to the last frame (record time = header stamp)."""
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS1_NOETIC)
    Image, Imu, Header = (
        ts.types["sensor_msgs/msg/Image"],
        ts.types["sensor_msgs/msg/Imu"],
        ts.types["std_msgs/msg/Header"],
    )
    Time, Vec3, Quat = (
        ts.types["builtin_interfaces/msg/Time"],
        ts.types["geometry_msgs/msg/Vector3"],
        ts.types["geometry_msgs/msg/Quaternion"],
    )

    def header(seq, ns, frame):
        return Header(seq=seq, stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id=frame)

    m = src / "mav0"
    left = {int(r[0]): r[1] for r in _csv(m / "cam0" / "data.csv")}
    right = {int(r[0]): r[1] for r in _csv(m / "cam1" / "data.csv")}
    frames = sorted(set(left) & set(right))[:n_pairs]
    imu = [r for r in _csv(m / "imu0" / "data.csv") if frames[0] - imu_before_ns <= int(r[0]) <= frames[-1]]
    msgs = []  # (record ns, topic, message)
    for k, ns in enumerate(frames):
        for cam, files, dns in (("cam0", left, 0), ("cam1", right, right_offset_ns)):
            img = cv2.imread(str(m / cam / "data" / files[ns]), cv2.IMREAD_GRAYSCALE)
            msg = Image(
                header=header(k, ns + dns, cam),
                height=img.shape[0],
                width=img.shape[1],
                encoding="mono8",
                is_bigendian=0,
                step=img.shape[1],
                data=np.ascontiguousarray(img).reshape(-1),
            )
            msgs.append((ns + dns, f"/{cam}/image_raw", msg))
    zero9 = np.zeros(9)
    for k, r in enumerate(imu):
        ns = int(r[0])
        v = [float(x) for x in r[1:7]]
        msg = Imu(
            header=header(k, ns, "imu4"),
            orientation=Quat(x=0.0, y=0.0, z=0.0, w=1.0),
            orientation_covariance=zero9,
            angular_velocity=Vec3(x=v[0], y=v[1], z=v[2]),
            angular_velocity_covariance=zero9,
            linear_acceleration=Vec3(x=v[3], y=v[4], z=v[5]),
            linear_acceleration_covariance=zero9,
        )
        msgs.append((ns, "/imu0", msg))
    msgs.sort(key=lambda x: x[0])
    with Writer(bag) as w:
        conns = {
            t: w.add_connection(t, ty, typestore=ts)
            for t, ty in (
                ("/cam0/image_raw", Image.__msgtype__),
                ("/cam1/image_raw", Image.__msgtype__),
                ("/imu0", Imu.__msgtype__),
            )
        }
        for ns, topic, msg in msgs:
            w.write(conns[topic], ns, ts.serialize_ros1(msg, msg.__msgtype__))


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    p = tmp_path_factory.mktemp("euroc_bag") / "V1_01_easy_micro.bag"
    write_euroc_bag(p)
    return p


def test_detect_and_calib_required(bag):
    from prism_ros.datasets import EurocBagDataset, detect_format, open_dataset

    name, cls = detect_format(str(bag))
    assert cls is EurocBagDataset and "bag" in name
    with pytest.raises(ValueError, match="--calib"):
        open_dataset(str(bag))
    with pytest.raises(ValueError, match="--calib"):
        open_dataset(str(bag), calib=str(bag.parent))  # no sensor.yaml there


def test_bag_matches_folder(bag):
    from prism_ros.datasets import EurocBagDataset, open_dataset

    ds = open_dataset(str(bag), calib=str(MICRO), start=2, frames=8)
    ref = open_dataset(str(MICRO), start=2, frames=8)
    assert isinstance(ds, EurocBagDataset) and len(ds) == 8
    assert ds.gt_poses() is None and ds.gt_pose(0) is None  # no ground truth unless gt_path=
    np.testing.assert_array_equal(ds.frame_ns, ref.frame_ns)
    np.testing.assert_array_equal(ds.stamps(), ref.stamps())
    np.testing.assert_allclose(ds.T_body_cam, ref.T_body_cam)
    np.testing.assert_allclose(ds.T_imu_cam, ref.T_imu_cam)
    assert ds.imu_noise == ref.imu_noise
    assert (ds.camera.fx, ds.camera.cx, ds.camera.width) == (ref.camera.fx, ref.camera.cx, ref.camera.width)
    for i in (0, 1, 5, 2, 7):  # in sequence and random access
        a, b = ds[i], ref[i]
        assert a.stamp == b.stamp and a.index == b.index == i and a.T_w_c_gt is None
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_allclose(a.depth, b.depth, equal_nan=True)
        np.testing.assert_allclose(a.depth_sigma, b.depth_sigma, equal_nan=True)
    # IMU: the bag's samples are the folder's over the bag's span
    t = ref.imu.t
    sel = (t >= ds.imu.t[0]) & (t <= ds.imu.t[-1])
    assert sel.sum() == len(ds.imu) > 100
    np.testing.assert_array_equal(ds.imu.t, t[sel])
    np.testing.assert_array_equal(ds.imu.gyro, ref.imu.gyro[sel])
    np.testing.assert_array_equal(ds.imu.acc, ref.imu.acc[sel])
    csv_ns = np.array([int(r[0]) for r in _csv(MICRO / "mav0" / "imu0" / "data.csv")], dtype=np.int64)
    np.testing.assert_array_equal(ds.imu_ns, csv_ns[sel])  # exact integer stamps for the player
    # same IMU control between frames (the folder reader limited to the bag's IMU span, which
    # the static-start gravity / gyro-bias window depends on)
    from prism_ros.core.dynamics import MotionState
    from prism_ros.core.imu import ImuData

    ref.imu = ImuData(t[sel], ref.imu.gyro[sel], ref.imu.acc[sel])

    st = MotionState(np.eye(4), np.eye(6) * 1e-8, np.zeros(6), np.eye(6) * 1e-4, None)
    ca, cb = ds.control_between(0, 1, st), ref.control_between(0, 1, st)
    assert ca is not None and cb is not None
    np.testing.assert_allclose(ca.T_prev_curr, cb.T_prev_curr)
    np.testing.assert_allclose(ca.cov, cb.cov)
    # ground truth on request, mav0 as --calib
    ref2 = open_dataset(str(MICRO), frames=3)
    assert ref2.gt_source is not None
    ds2 = open_dataset(str(bag), calib=str(MICRO / "mav0"), frames=3, gt_path=ref2.gt_source)
    np.testing.assert_allclose(ds2.gt_poses(), ref2.gt_poses())
    ds.close()
    ds2.close()


def test_pairing_tolerance(tmp_path):
    """cam1 stamps 0.4 ms off cam0's still pair (the frame keeps the left stamp); 3 ms off do not."""
    from prism_ros.datasets import open_dataset

    ref = open_dataset(str(MICRO), frames=3)
    p = tmp_path / "off.bag"
    write_euroc_bag(p, n_pairs=3, right_offset_ns=400_000)
    ds = open_dataset(str(p), calib=str(MICRO))
    assert len(ds) == 3
    np.testing.assert_array_equal(ds.stamps(), ref.stamps())
    np.testing.assert_array_equal(ds[1].rgb, ref[1].rgb)
    p2 = tmp_path / "off2.bag"
    write_euroc_bag(p2, n_pairs=3, right_offset_ns=3_000_000)
    with pytest.raises(ValueError, match="no /cam0/image_raw / /cam1/image_raw image pairs"):
        open_dataset(str(p2), calib=str(MICRO))


@pytest.mark.slow
def test_cli_run_bag(bag, tmp_path):
    from conftest import run_prism_cli

    out = tmp_path / "out"
    r = run_prism_cli(
        ["run", bag, "--calib", MICRO, "--frames", "10", "--out", out, "--no-progress", "--no-report"], timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr
    traj = np.loadtxt(out / "trajectory.tum")
    assert traj.shape == (10, 8)
    assert np.linalg.norm(traj[:, 1:4] - traj[0, 1:4], axis=1).max() < 0.01  # static start
    # --calib is refused for anything but a EuRoC bag; a EuRoC bag without it names --calib
    r = run_prism_cli(
        ["run", MICRO, "--calib", MICRO, "--frames", "2", "--out", tmp_path / "x", "--no-progress"], timeout=60
    )
    assert r.returncode == 2 and "--calib" in r.stderr, r.stderr
    r = run_prism_cli(["run", bag, "--frames", "2", "--out", tmp_path / "y", "--no-progress"], timeout=60)
    assert r.returncode == 2 and "--calib" in r.stderr, r.stderr


@pytest.mark.slow
@pytest.mark.ros
def test_player_bag_with_calib(bag, tmp_path):
    """`prism-ros play <bag> --calib` publishes like an EuRoC folder: rectified left mono8,
    32FC1 depth, camera_info and the bag's IMU, with the bag's exact stamps."""
    pytest.importorskip("rclpy")
    import subprocess
    import sys

    from sensor_msgs.msg import CameraInfo, Image, Imu

    from prism_ros.datasets import open_dataset
    from prism_ros.ros import conversions as cv
    from prism_ros.ros.qos import reliable_qos
    from prism_ros.ros.env import claim_domain_id, ros_env
    from ros_harness import RosHarness

    domain = claim_domain_id(46)
    n = 4
    ref = open_dataset(str(MICRO), frames=n)
    h = RosHarness(domain)
    try:
        color = h.collect(Image, "/camera/color/image_raw", reliable_qos(100))
        depth = h.collect(Image, "/camera/depth/image_raw", reliable_qos(100))
        info = h.collect(CameraInfo, "/camera/color/camera_info", reliable_qos(100))
        imu = h.collect(Imu, "/imu", reliable_qos(400))
        cmd = [
            sys.executable,
            "-m",
            "prism_ros.ros.player",
            str(bag),
            "--calib",
            str(MICRO),
            "--frames",
            str(n),
            "--rate",
            "2",
            "--wait-for-subscribers",
            "20",
            "--clock-hz",
            "20",
        ]
        p = subprocess.run(cmd, env=ros_env(domain), capture_output=True, text=True, timeout=90)
        assert p.returncode == 0, p.stdout + p.stderr
        assert f"published {n} frames and" in p.stdout and "control_mode:=imu" in p.stdout, p.stdout
        h.wait_for(lambda: len(color) >= n and len(depth) >= n and len(info) >= n, 5)
        assert len(color) == n and len(depth) == n
        for k, (c, d) in enumerate(zip(color, depth)):
            ns = int(ref.frame_ns[k])
            assert (c.header.stamp.sec, c.header.stamp.nanosec) == (ns // 10**9, ns % 10**9)
            assert d.header.stamp == c.header.stamp and c.encoding == "mono8" and d.encoding == "32FC1"
        fr = ref[0]
        assert np.array_equal(cv.image_to_rgb(color[0])[:, :, 0], fr.rgb[:, :, 0])
        want = np.where(np.isfinite(fr.depth) & (fr.depth > 0), fr.depth, 0.0)
        assert np.allclose(cv.image_to_depth_m(depth[0]), want, atol=1e-6)
        assert info[0].k[0] == pytest.approx(ref.camera.fx)
        h.wait_for(lambda: len(imu) >= 3 * (n - 1), 5)
        imu_ns = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in imu]
        csv_ns = {int(r[0]) for r in _csv(MICRO / "mav0" / "imu0" / "data.csv")}
        assert imu_ns == sorted(set(imu_ns)) and set(imu_ns) <= csv_ns and imu_ns[-1] <= int(ref.frame_ns[-1])
        # without --calib the bag is republished raw (the raw cam0 image, no depth)
        color.clear()
        depth.clear()
        cmd = [
            sys.executable,
            "-m",
            "prism_ros.ros.player",
            str(bag),
            "--frames",
            "2",
            "--rate",
            "4",
            "--wait-for-subscribers",
            "20",
            "--clock-hz",
            "0",
        ]
        p = subprocess.run(cmd, env=ros_env(domain), capture_output=True, text=True, timeout=90)
        assert p.returncode == 0, p.stdout + p.stderr
        h.wait_for(lambda: len(color) >= 2, 5)
        raw0 = cv2.imread(str(MICRO / "mav0" / "cam0" / "data" / f"{int(ref.frame_ns[0])}.png"), cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(np.frombuffer(bytes(color[0].data), np.uint8).reshape(480, 752), raw0)
        assert len(depth) == 0
        # --calib on something that is not a EuRoC bag
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "prism_ros.ros.player",
                str(MICRO),
                "--calib",
                str(MICRO),
                "--wait-for-subscribers",
                "0",
            ],
            env=ros_env(domain),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 1 and "--calib" in p.stderr, p.stderr
    finally:
        h.shutdown()
