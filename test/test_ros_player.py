"""The player (``prism-ros play`` / ``prism_player``) as a subprocess: dataset stamps
1 + i/30, encodings, camera_info and /clock; ROS 1 and ROS 2 bags via rosbags."""

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("rclpy")

from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, Imu  # noqa: E402

from prism_ros.ros import conversions as cv  # noqa: E402
from prism_ros.ros.player import default_topic_map  # noqa: E402
from prism_ros.ros.qos import reliable_qos, sensor_qos  # noqa: E402
from prism_ros.ros.env import claim_domain_id, ros_env  # noqa: E402
from ros_harness import RosHarness  # noqa: E402

pytestmark = [pytest.mark.ros]

DOMAIN_ID = claim_domain_id(44)  # exclusive on this machine while the tests run


@pytest.fixture(scope="module")
def ros():
    h = RosHarness(DOMAIN_ID)
    # Exact checks use reliable subscriptions: best-effort delivery of 640x480 images over
    # UDP loopback loses fragments when socket buffers are small (see docs/transport.md).
    h.color = h.collect(Image, "/camera/color/image_raw", reliable_qos(100))
    h.depth = h.collect(Image, "/camera/depth/image_raw", reliable_qos(100))
    h.info = h.collect(CameraInfo, "/camera/color/camera_info", reliable_qos(100))
    h.imu = h.collect(Imu, "/imu", reliable_qos(100))
    # the node's default input QoS (best effort) must match the player's publishers too
    h.color_be = h.collect(Image, "/camera/color/image_raw", sensor_qos("sensor_data", 100))
    h.clock = h.collect(Clock, "/clock", 100)
    yield h
    h.shutdown()


def _play(ros, args, n_expected, timeout=90):
    for lst in (ros.color, ros.depth, ros.info, ros.imu, ros.clock, ros.color_be):
        lst.clear()
    cmd = [sys.executable, "-m", "prism_ros.ros.player", *args, "--wait-for-subscribers", "20", "--clock-hz", "20"]
    p = subprocess.run(cmd, env=ros_env(DOMAIN_ID), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout + p.stderr
    ros.wait_for(
        lambda: len(ros.color) >= n_expected and len(ros.depth) >= n_expected and len(ros.info) >= n_expected, 5
    )
    return p


@pytest.mark.slow
def test_synthetic_dataset_stamps_encodings_clock(ros):
    datasets = pytest.importorskip("prism_ros.datasets")
    ds = datasets.open_dataset("synthetic:6@320x240")  # small frames: the best-effort check below
    frames = [ds[i] for i in range(6)]  # also compiles the renderer before the player needs it
    p = _play(ros, ["synthetic:6@320x240", "--rate", "3", "--depth-encoding", "32FC1", "--color-encoding", "bgr8"], 6)
    assert "published 6 frames" in p.stdout
    assert "frames late by median" in p.stdout and "of 6 by more than a frame period, 11 ms" in p.stdout
    assert len(ros.color_be) >= 1  # best-effort subscription matched the reliable publisher
    assert len(ros.color) == 6 and len(ros.depth) == 6 and len(ros.info) >= 6
    # frame i at exactly 1 + i/30 s
    for i, m in enumerate(ros.color):
        assert m.header.stamp == cv.sec_to_stamp(1.0 + i / 30.0)
        assert round((cv.stamp_to_sec(m.header.stamp) - 1.0) * 30) == i
        assert m.encoding == "bgr8" and m.header.frame_id == "camera_color_optical_frame"
        np.testing.assert_array_equal(cv.image_to_rgb(m), frames[i].rgb)
    for i, m in enumerate(ros.depth):
        assert m.header.stamp == ros.color[i].header.stamp and m.encoding == "32FC1"
        np.testing.assert_array_equal(cv.image_to_depth_m(m), frames[i].depth)
    cam = cv.camera_info_to_camera(ros.info[0])
    assert cam == ds.camera
    # /clock: non-decreasing, starts at the first frame, covers every frame stamp
    clk = [cv.stamp_to_sec(c.clock) for c in ros.clock]
    assert clk and all(b >= a for a, b in zip(clk, clk[1:]))
    assert min(clk) == pytest.approx(1.0) and max(clk) == pytest.approx(1.0 + 5 / 30.0)
    for i in range(6):
        assert any(abs(c - (1 + i / 30)) < 1e-9 for c in clk)


@pytest.mark.slow
def test_7scenes_start_and_16uc1(ros, redkitchen_dir):
    folder = redkitchen_dir
    _play(ros, [str(folder), "--start", "10", "--frames", "3", "--rate", "5"], 3)
    assert [m.header.stamp for m in ros.color] == [cv.sec_to_stamp(1.0 + i / 30.0) for i in (10, 11, 12)]
    assert ros.depth[0].encoding == "16UC1"
    d = cv.image_to_depth_m(ros.depth[0])
    assert d.shape == (480, 640) and 0.2 < np.median(d[d > 0]) < 5.0


def _bag_messages(ts, ros1):
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    Image = ts.types["sensor_msgs/msg/Image"]
    Info = ts.types["sensor_msgs/msg/CameraInfo"]
    ImuT = ts.types["sensor_msgs/msg/Imu"]
    Roi = ts.types["sensor_msgs/msg/RegionOfInterest"]
    Quat = ts.types["geometry_msgs/msg/Quaternion"]
    Vec = ts.types["geometry_msgs/msg/Vector3"]
    rng = np.random.default_rng(5)

    def hdr(t, frame):
        st = cv.sec_to_stamp(t)
        tt = Time(sec=st.sec, nanosec=st.nanosec)
        return Header(seq=0, stamp=tt, frame_id=frame) if ros1 else Header(stamp=tt, frame_id=frame)

    out = []  # (topic, msgtype, t_ns, msg)
    rgbs = []
    for i in range(4):
        t = 100.0 + i * 0.1
        rgb = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        rgbs.append(rgb)
        mm = rng.integers(300, 4000, (6, 8)).astype(np.uint16)
        out.append(
            (
                "/cam/rgb/image_color",
                "sensor_msgs/msg/Image",
                t,
                Image(
                    header=hdr(t, "rgb"),
                    height=6,
                    width=8,
                    encoding="rgb8",
                    is_bigendian=0,
                    step=24,
                    data=rgb.reshape(-1),
                ),
            )
        )
        out.append(
            (
                "/cam/depth_registered/image_raw",
                "sensor_msgs/msg/Image",
                t + 0.001,
                Image(
                    header=hdr(t, "rgb"),
                    height=6,
                    width=8,
                    encoding="16UC1",
                    is_bigendian=0,
                    step=16,
                    data=mm.view(np.uint8).reshape(-1),
                ),
            )
        )
        k = np.array([10.0, 0, 3.5, 0, 11.0, 2.5, 0, 0, 1])
        info_kw = dict(
            header=hdr(t, "rgb"),
            height=6,
            width=8,
            distortion_model="plumb_bob",
            binning_x=0,
            binning_y=0,
            roi=Roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
        )
        if ros1:
            info_kw.update(D=np.zeros(5), K=k, R=np.eye(3).reshape(-1), P=np.zeros(12))
        else:
            info_kw.update(d=np.zeros(5), k=k, r=np.eye(3).reshape(-1), p=np.zeros(12))
        out.append(("/cam/rgb/camera_info", "sensor_msgs/msg/CameraInfo", t + 0.002, Info(**info_kw)))
        out.append(
            (
                "/imu",
                "sensor_msgs/msg/Imu",
                t + 0.05,
                ImuT(
                    header=hdr(t + 0.05, "imu"),
                    orientation=Quat(x=0, y=0, z=0, w=1),
                    orientation_covariance=np.zeros(9),
                    angular_velocity=Vec(x=0.1, y=0.2, z=0.3),
                    angular_velocity_covariance=np.zeros(9),
                    linear_acceleration=Vec(x=0, y=0, z=9.81),
                    linear_acceleration_covariance=np.zeros(9),
                ),
            )
        )
    return out, rgbs


@pytest.mark.slow
@pytest.mark.parametrize("version", ["ros2", "ros1"])
def test_bag_playback(ros, tmp_path, version):
    from rosbags.typesys import Stores, get_typestore

    if version == "ros2":
        from rosbags.rosbag2 import Writer

        ts = get_typestore(Stores.ROS2_HUMBLE)
        path = tmp_path / "bag2"
        msgs, rgbs = _bag_messages(ts, ros1=False)
        with Writer(path, version=8) as w:
            conns = {}
            for topic, ty, t, m in msgs:
                if topic not in conns:
                    conns[topic] = w.add_connection(topic, ty, typestore=ts)
                w.write(conns[topic], int(t * 1e9), ts.serialize_cdr(m, ty))
    else:
        from rosbags.rosbag1 import Writer

        ts = get_typestore(Stores.ROS1_NOETIC)
        path = tmp_path / "test.bag"
        msgs, rgbs = _bag_messages(ts, ros1=True)
        with Writer(path) as w:
            conns = {}
            for topic, ty, t, m in msgs:
                if topic not in conns:
                    conns[topic] = w.add_connection(topic, ty, typestore=ts)
                w.write(conns[topic], int(t * 1e9), ts.serialize_ros1(m, ty))
    p = _play(ros, [str(path), "--rate", "4"], 4)
    assert "/cam/rgb/image_color [sensor_msgs/msg/Image] -> camera/color/image_raw" in p.stdout
    assert len(ros.color) == 4 and len(ros.depth) == 4
    assert ros.wait_for(lambda: len(ros.imu) == 4 and len(ros.info) == 4, 5)
    for i, m in enumerate(ros.color):
        assert m.header.stamp == cv.sec_to_stamp(100.0 + i * 0.1)  # the bag's own stamps
        np.testing.assert_array_equal(cv.image_to_rgb(m), rgbs[i])
    d = cv.image_to_depth_m(ros.depth[0])
    assert d.shape == (6, 8) and d.min() >= 0.3
    cam = cv.camera_info_to_camera(ros.info[0])
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (10.0, 11.0, 3.5, 2.5)
    assert ros.imu[0].angular_velocity.z == pytest.approx(0.3)
    clk = [cv.stamp_to_sec(c.clock) for c in ros.clock]
    assert min(clk) == pytest.approx(100.0) and max(clk) == pytest.approx(100.35)


def test_default_topic_map():
    m = default_topic_map(
        {
            "/camera/rgb/image_color": "sensor_msgs/msg/Image",
            "/camera/depth/image": "sensor_msgs/msg/Image",
            "/camera/rgb/camera_info": "sensor_msgs/msg/CameraInfo",
            "/camera/depth/camera_info": "sensor_msgs/msg/CameraInfo",
            "/imu": "sensor_msgs/msg/Imu",
            "/tf": "tf2_msgs/msg/TFMessage",
        }
    )
    assert m == {
        "/camera/rgb/image_color": "camera/color/image_raw",
        "/camera/depth/image": "camera/depth/image_raw",
        "/camera/rgb/camera_info": "camera/color/camera_info",
        "/imu": "imu",
    }


def test_bad_path_fails_clearly():
    p = subprocess.run(
        [sys.executable, "-m", "prism_ros.ros.player", "/nonexistent/folder"],
        env=ros_env(DOMAIN_ID),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode != 0 and "does not exist" in p.stderr


@pytest.mark.slow
def test_euroc_folder_mono8_depth_info_imu(ros, euroc_micro_dir):
    """EuRoC folder: rectified left mono8, stereo depth 32FC1 (metres), the rectified
    camera's camera_info and the IMU at its own rate, all with EuRoC's nanosecond stamps."""
    micro = str(euroc_micro_dir)
    from prism_ros.datasets import EurocDataset
    from prism_ros.ros.player import euroc_node_params

    n = 5
    ds = EurocDataset(micro, frames=n)
    frame_ns = [int(x) for x in ds.frame_ns]
    p = _play(ros, [micro, "--frames", str(n), "--rate", "2"], n)
    assert f"published {n} frames and" in p.stdout, p.stdout
    assert "control_mode:=imu" in p.stdout and "T_base_camera_xyz_m" in p.stdout
    assert len(ros.color) == n and len(ros.depth) == n
    for k, (c, d) in enumerate(zip(ros.color, ros.depth)):
        ns = frame_ns[k]
        assert (c.header.stamp.sec, c.header.stamp.nanosec) == (ns // 10**9, ns % 10**9)  # exact EuRoC stamps
        assert d.header.stamp == c.header.stamp
        assert c.encoding == "mono8" and c.step == c.width and (c.width, c.height) == (752, 480)
        assert d.encoding == "32FC1"
    # the grey image is the rectified left image; depth in metres, plausible for the room
    fr = ds[0]
    img = cv.image_to_rgb(ros.color[0])
    assert np.array_equal(img[:, :, 0], fr.rgb[:, :, 0])
    depth = cv.image_to_depth_m(ros.depth[0])
    valid = depth[depth > 0]
    assert valid.size > 0.3 * depth.size and 0.5 < float(np.median(valid)) < 8.0
    want = np.where(np.isfinite(fr.depth) & (fr.depth > 0), fr.depth, 0.0)
    assert np.allclose(depth, want, atol=1e-6)
    info = [m for m in ros.info if m.header.stamp == ros.color[0].header.stamp][0]
    assert info.k[0] == pytest.approx(ds.camera.fx) and info.k[2] == pytest.approx(ds.camera.cx)
    assert (info.width, info.height) == (752, 480) and info.header.frame_id == ros.color[0].header.frame_id
    # IMU: 200 Hz samples with EuRoC stamps, in the body (IMU) frame, covering the frames
    ros.wait_for(lambda: len(ros.imu) >= 4 * (n - 1), 5)
    imu_ns = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in ros.imu]
    assert imu_ns == sorted(set(imu_ns))
    assert imu_ns[0] <= frame_ns[0] and imu_ns[-1] <= frame_ns[-1] and imu_ns[-1] > frame_ns[-1] - 10**7
    assert 9 * (n - 1) <= len(imu_ns) <= 11 * (n - 1) + 201
    m = ros.imu[0]
    assert m.header.frame_id == "imu_link" and m.orientation_covariance[0] == -1.0
    k = int(np.argmin(np.abs(ds.imu.t - cv.stamp_to_sec(m.header.stamp))))
    assert m.angular_velocity.z == pytest.approx(ds.imu.gyro[k, 2])
    assert m.linear_acceleration.x == pytest.approx(ds.imu.acc[k, 0])
    f = np.mean([[x.linear_acceleration.x, x.linear_acceleration.y, x.linear_acceleration.z] for x in ros.imu], 0)
    assert abs(np.linalg.norm(f) - 9.81) < 0.5  # standing still: specific force = gravity
    params = euroc_node_params(ds)
    assert np.allclose(
        cv.T_from_xyz_rpy_deg(params["T_base_camera_xyz_m"], params["T_base_camera_rpy_deg"]), ds.T_body_cam, atol=1e-4
    )


@pytest.mark.slow
def test_euroc_bad_pairs_skipped_throttled_good_frames_published(ros, euroc_bad_pairs):
    """Bad stereo pairs (cam1 image deleted, black / saturated cam0 images, see
    conftest.EUROC_BAD_PAIRS): one error line per kind of problem (throttled: frames 4 and
    7 repeat 3 and 6 within the period), a count at the end, and every good frame published
    with its own stamp.  (No node here: the node gets depth images, never pairs.)"""
    from conftest import EUROC_BAD_PAIRS
    from prism_ros.datasets import EurocDataset

    ds = EurocDataset(str(euroc_bad_pairs))
    good = [i for i in range(len(ds)) if i not in EUROC_BAD_PAIRS]
    p = _play(ros, [str(euroc_bad_pairs), "--rate", "2"], len(good))
    assert f"published {len(good)} frames and" in p.stdout, p.stdout + p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("prism-ros play: error:")]
    assert len(errors) == 3, p.stderr
    assert errors[0].startswith("prism-ros play: error: skipping frame 3: cannot load ")
    assert "cam1 (right) image missing (file not found): pair skipped, no stereo depth [missing_right: 1," in errors[0]
    assert errors[1].startswith("prism-ros play: error: skipping frame 6: ") and "cam0 (left) image black" in errors[1]
    assert (
        errors[2].startswith("prism-ros play: error: skipping frame 9: ") and "cam0 (left) image saturated" in errors[2]
    )
    assert "[saturated: 1, 5 frames skipped so far]" in errors[2]
    assert "prism-ros play: skipped 5 frames (black 2, missing_right 2, saturated 1)" in p.stderr
    assert "Traceback" not in p.stderr
    want = [int(ds.frame_ns[i]) for i in good]
    assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in ros.color] == want
    assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in ros.depth] == want
    d = cv.image_to_depth_m(ros.depth[-1])
    assert np.count_nonzero(d) > 0.3 * d.size  # a good frame after the bad ones has its stereo depth


def test_euroc_node_noise_model_is_the_stereo_sigma(euroc_micro_dir):
    """The player publishes no depth sigma: the node parameters it prints make the node's
    parametric depth noise (c0 + c2 (z - z0)^2 on the received depth) equal the reader's
    per-pixel stereo sigma z^2 sigma_d / (f b), which the offline run uses."""
    micro = str(euroc_micro_dir)
    from prism_ros.config import PrismConfig
    from prism_ros.core.image import sigma_z
    from prism_ros.datasets import EurocDataset
    from prism_ros.datasets.euroc import stereo_sigma_d
    from prism_ros.ros.player import _euroc_node_hint, euroc_node_params

    ds = EurocDataset(micro, frames=1)
    params = euroc_node_params(ds)
    assert params["depth_noise_c0_m"] == 0.0 and params["depth_noise_z0_m"] == 0.0
    assert params["depth_noise_c2_per_m"] == pytest.approx(stereo_sigma_d(2) / (ds.stereo.f * ds.stereo.baseline))
    cfg = PrismConfig.from_yaml().replace(**{k: v for k, v in params.items() if k.startswith("depth_noise")})
    noise = np.array([cfg.depth_noise_c0_m, cfg.depth_noise_c2_per_m, cfg.depth_noise_z0_m])
    fr = ds[0]
    ok = fr.depth > 0
    assert ok.mean() > 0.5
    np.testing.assert_allclose(sigma_z(fr.depth[ok].astype(np.float64), noise), fr.depth_sigma[ok], rtol=1e-5)
    # at 5 m (depth_max_m of EuRoC): 25 m^2 sigma_d / (f b) = 0.30 m
    assert sigma_z(np.array([5.0]), noise)[0] == pytest.approx(0.302, abs=1e-3)
    hint = _euroc_node_hint(ds)
    assert "-p depth_noise_c0_m:=0.0 " in hint and "-p depth_noise_z0_m:=0.0 " in hint
    assert f"-p depth_noise_c2_per_m:={params['depth_noise_c2_per_m']:.6g} " in hint


def test_lateness_summary_counts_frames_late_by_more_than_a_period():
    from prism_ros.ros.player import Lateness

    late = Lateness(maxlen=4)
    assert late.summary(0.05) == ""
    for v in (0.001, -0.002, 0.080, 0.010, 0.002):  # early is on time; the oldest falls out
        late.add(v)
    assert list(late.values) == [0.0, 0.080, 0.010, 0.002]
    assert late.summary(0.05) == (
        "frames late by median 6.0 / p95 69.5 / max 80.0 ms (1 of 4 by more than a frame period, 50 ms)"
    )
    assert late.summary() == "frames late by median 6.0 / p95 69.5 / max 80.0 ms"
