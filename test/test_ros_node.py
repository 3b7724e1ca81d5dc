"""In-process tests of the prism node: outputs, stamps, frames, ROS-order covariances,
bad inputs, services, queue drops, controls, and the real filter on synthetic images."""

import os
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")

from geometry_msgs.msg import PoseWithCovarianceStamped, TwistWithCovarianceStamped  # noqa: E402
from nav_msgs.msg import Odometry, Path  # noqa: E402
from rcl_interfaces.msg import Log  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Imu, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from prism_ros.core import se3  # noqa: E402
from prism_ros.core.camera import Camera  # noqa: E402
from prism_ros.ros import conversions as cv  # noqa: E402
from prism_ros.ros.node import PrismNode  # noqa: E402
from prism_ros.ros.qos import latched_qos, reliable_qos  # noqa: E402
from prism_ros.ros.env import claim_domain_id  # noqa: E402
from ros_harness import FakeFilter, FakeMap, RosHarness  # noqa: E402

pytestmark = [pytest.mark.ros]

DOMAIN_ID = claim_domain_id(43)  # exclusive on this machine while the tests run
W, H = 64, 48
CAM = Camera(50.0, 50.0, 31.5, 23.5, W, H)
RNG = np.random.default_rng(11)


@pytest.fixture(scope="module")
def ros():
    h = RosHarness(DOMAIN_ID)
    h.node_io(depth=50)
    h.pose = h.collect(PoseWithCovarianceStamped, "/prism/pose", reliable_qos(200))
    h.twist = h.collect(TwistWithCovarianceStamped, "/prism/twist", reliable_qos(200))
    h.path = h.collect(Path, "/prism/path", reliable_qos(10))
    h.cloud = h.collect(PointCloud2, "/prism/map_cloud", latched_qos(1))
    yield h
    h.shutdown()


def _clear(h):
    for lst in (h.odom, h.pose, h.twist, h.path, h.cloud, h.rosout):
        lst.clear()


def _start(h, factory=FakeFilter, overrides=(), warmup=False):
    FakeFilter.instances.clear()
    _clear(h)
    overrides = list(overrides)
    if not any(o.name == "sensor_qos" for o in overrides):
        # exact message counting needs reliable inputs: best-effort images can lose UDP
        # fragments on a loaded machine (test_ros_player checks the best-effort match)
        overrides.append(Parameter("sensor_qos", value="reliable"))
    node = PrismNode(context=h.context, filter_factory=factory, warmup=warmup, parameter_overrides=overrides)
    h.attach(node)
    return node


def _frame(h, t, cam=CAM, rgb_enc="rgb8", depth_enc="16UC1", depth_shape=None, info=True):
    header = Header(stamp=cv.sec_to_stamp(t), frame_id="camera_color_optical_frame")
    if info:
        h.pub_info.publish(cv.camera_to_camera_info(cam, header))
    rgb = RNG.integers(0, 256, (cam.height, cam.width, 3), dtype=np.uint8)
    dshape = depth_shape or (cam.height, cam.width)
    depth = RNG.uniform(0.5, 3.0, dshape).astype(np.float32)
    h.pub_depth.publish(cv.depth_to_image(depth, header, depth_enc))
    h.pub_color.publish(cv.rgb_to_image(rgb, header, rgb_enc))


def _errors(h, text):
    got = [m.msg for m in list(h.rosout) if m.level >= Log.ERROR and m.name == "prism" and text in m.msg]
    return got or [t for lv, t in list(getattr(h, "captured", [])) if lv >= Log.ERROR and text in t]


def _spd(cov):
    c = np.asarray(cov, dtype=np.float64).reshape(6, 6)
    return np.allclose(c, c.T, atol=1e-15) and np.linalg.eigvalsh(c).min() > 0


# --------------------------------------------------------------------------------------
def test_outputs_stamps_frames_and_ros_order_covariance(ros):
    # Base yawed by +90 deg in the world; default optical mounting (camera z = base x).
    T_b_c = cv.T_from_xyz_rpy_deg([0.0, 0.0, 0.0], [-90.0, 0.0, -90.0])
    T_w_b = se3.make_T(se3.so3_exp([0.0, 0.0, np.pi / 2]), [1.0, 2.0, 0.5])
    T_w_c = T_w_b @ T_b_c
    # camera-frame (right perturbation) covariance: large along camera z (optical axis)
    # translation and about camera y (pointing down) rotation; tiny elsewhere
    cov_c = np.diag([1e-6, 2e-6, 4e-4, 3e-6, 9e-4, 5e-6])
    vel_c = np.array([0.0, 0.0, 0.3, 0.0, 0.1, 0.0])  # forward 0.3 m/s, turning about camera y

    def factory(cfg, cam, T_w_c0=None):
        return FakeFilter(cfg, cam, T_w_c0, pose_cov=cov_c, velocity=vel_c, T_w_c=T_w_c)

    node = _start(ros, factory, [Parameter("queue_size", value=50), Parameter("map_publish_rate_hz", value=20.0)])
    try:
        stamps = [1.0 + i / 30.0 for i in range(12)]
        for t in stamps:
            _frame(ros, t)
            time.sleep(0.02)
        assert ros.wait_for(
            lambda: len(ros.odom) >= len(stamps) and len(ros.pose) >= len(stamps) and len(ros.twist) >= len(stamps), 10
        ), (
            len(ros.odom),
            node.stats,
        )
        want = [cv.sec_to_stamp(t) for t in stamps]
        for lst in (ros.odom, ros.pose, ros.twist):
            assert [(m.header.stamp.sec, m.header.stamp.nanosec) for m in lst] == [(s.sec, s.nanosec) for s in want]
        o = ros.odom[-1]
        assert o.header.frame_id == "odom" and o.child_frame_id == "base_link"
        assert ros.pose[-1].header.frame_id == "odom"
        assert ros.twist[-1].header.frame_id == "base_link"
        np.testing.assert_allclose(cv.pose_to_T(o.pose.pose), T_w_b, atol=1e-9)
        # Expected ROS covariance by hand: camera z = base x = world y (yaw 90), camera y = base -z = world -z.
        # ~/pose: the pose given the map (the filter's covariance of the step)
        P = np.asarray(ros.pose[-1].pose.covariance).reshape(6, 6)
        assert _spd(P)
        assert P[1, 1] == pytest.approx(4e-4) and P[0, 0] == pytest.approx(1e-6) and P[2, 2] == pytest.approx(2e-6)
        assert P[5, 5] == pytest.approx(9e-4) and P[3, 3] == pytest.approx(3e-6) and P[4, 4] == pytest.approx(5e-6)
        # ~/odometry (REP-105): the steps compounded since the start (the first frame, the origin, has
        # its own covariance); the pose does not move here, so after 12 frames it is 12 steps' covariance
        np.testing.assert_allclose(np.asarray(o.pose.covariance).reshape(6, 6), 12 * P, rtol=1e-9, atol=1e-15)
        # Twist in base_link: forward 0.3 along base x, turning -0.1 about base z (camera y is down)
        tw = o.twist.twist
        np.testing.assert_allclose([tw.linear.x, tw.linear.y, tw.linear.z], [0.3, 0, 0], atol=1e-12)
        np.testing.assert_allclose([tw.angular.x, tw.angular.y, tw.angular.z], [0, 0, -0.1], atol=1e-12)
        TC = np.asarray(o.twist.covariance).reshape(6, 6)
        assert _spd(TC)
        # camera velocity_cov diag (1e-2, 2e-2, 3e-2, 1e-3, 2e-3, 3e-3): base vx <- camera vz, wz <- camera wy
        assert TC[0, 0] == pytest.approx(3e-2) and TC[1, 1] == pytest.approx(1e-2) and TC[5, 5] == pytest.approx(2e-3)
        # path and cloud
        assert ros.wait_for(lambda: ros.path and len(ros.path[-1].poses) == len(stamps), 5)
        assert ros.path[-1].header.frame_id == "odom"
        assert ros.wait_for(lambda: len(ros.cloud) > 0, 5)
        c = ros.cloud[-1]
        assert [f.name for f in c.fields] == ["x", "y", "z", "rgb", "sigma", "weight"]
        assert c.header.frame_id == "odom" and c.width == 50
        assert (c.header.stamp.sec, c.header.stamp.nanosec) in [(s.sec, s.nanosec) for s in want]
        pts = cv.read_cloud(c)
        assert np.all(pts["sigma"] > 0) and np.all(pts["weight"] >= 1)
        assert node.stats["processed"] == len(stamps) and node.stats["bad"] == 0
        # the filter's world is the base's start frame: T_w_c0 = T_base_camera
        np.testing.assert_allclose(FakeFilter.instances[-1].T_w_c0, T_b_c, atol=1e-12)
    finally:
        ros.detach(node)


def test_late_subscriber_gets_map_cloud(ros):
    node = _start(ros, overrides=[Parameter("map_publish_rate_hz", value=10.0)])
    try:
        _frame(ros, 1.0)
        assert ros.wait_for(lambda: len(ros.cloud) > 0, 5)
        late = ros.collect(PointCloud2, "/prism/map_cloud", latched_qos(1))
        assert ros.wait_for(lambda: len(late) > 0, 5)
    finally:
        ros.detach(node)


# Exact counting of bursts of bad frames: queue_size 10 also makes the node's image reader
# history (max(2, queue_size)) deep enough that no burst is cut short in DDS.
_BURST = [Parameter("queue_size", value=10)]


def test_bad_inputs_logged_node_alive_map_untouched(ros):
    node = _start(ros, overrides=_BURST)
    try:
        # 1. frames before any camera_info
        for i in range(3):
            _frame(ros, 1.0 + i / 30, info=False)
        assert ros.wait_for(lambda: _errors(ros, "no camera_info"), 5)
        # 2. invalid intrinsics
        bad_cam_info = cv.camera_to_camera_info(CAM, Header(stamp=cv.sec_to_stamp(1.2)))
        bad_cam_info.k = [0.0] * 9
        ros.pub_info.publish(bad_cam_info)
        assert ros.wait_for(lambda: _errors(ros, "invalid intrinsics"), 5)
        _frame(ros, 1.25, info=False)
        # 3. wrong encoding (valid camera_info first)
        ros.pub_info.publish(cv.camera_to_camera_info(CAM))
        time.sleep(0.2)
        for i in range(5):
            _frame(ros, 1.3 + i / 30, rgb_enc="bgr8", info=False)  # fine
            time.sleep(0.03)
        header = Header(stamp=cv.sec_to_stamp(2.0))
        img = cv.rgb_to_image(np.zeros((H, W, 3), np.uint8), header)
        img.encoding = "yuv422"
        ros.pub_depth.publish(cv.depth_to_image(np.ones((H, W), np.float32), header))
        ros.pub_color.publish(img)
        assert ros.wait_for(lambda: _errors(ros, "unsupported colour encoding 'yuv422'"), 5)
        # 4. size mismatch between colour and depth
        _frame(ros, 2.1, depth_shape=(H // 2, W // 2), info=False)
        assert ros.wait_for(lambda: _errors(ros, "size mismatch"), 5)
        # 5. step/data inconsistent (many times: throttled to one error per 2 s)
        for i in range(6):
            header = Header(stamp=cv.sec_to_stamp(2.2 + i / 30))
            img = cv.rgb_to_image(np.zeros((H, W, 3), np.uint8), header)
            img.step = W * 3 + 7
            ros.pub_depth.publish(cv.depth_to_image(np.ones((H, W), np.float32), header))
            ros.pub_color.publish(img)
            time.sleep(0.01)
        assert ros.wait_for(lambda: _errors(ros, "inconsistent with step"), 5)
        time.sleep(0.3)
        assert len(_errors(ros, "inconsistent with step")) == 1, "errors must be throttled"
        assert len(_errors(ros, "no camera_info")) == 1
        # 6. camera_info size does not match the images
        ros.pub_info.publish(cv.camera_to_camera_info(Camera(50.0, 50.0, 31.5, 23.5, 2 * W, 2 * H)))
        time.sleep(0.2)
        _frame(ros, 2.5, info=False)
        assert ros.wait_for(lambda: _errors(ros, "camera_info is 128x96"), 5)
        # The node is alive and keeps going; only good frames reached the filter: the one
        # that was waiting for a valid camera_info (1.25) and the five bgr8 frames.
        assert ros.wait_for(lambda: len(ros.odom) >= 6, 5)
        f = FakeFilter.instances[-1]
        assert f.steps == pytest.approx([1.25] + [1.3 + i / 30 for i in range(5)])
        ros.pub_info.publish(cv.camera_to_camera_info(CAM))
        time.sleep(0.2)
        _frame(ros, 3.0, info=False)
        assert ros.wait_for(lambda: len(ros.odom) == 7, 5)
        assert node.stats["bad"] == 3 + 1 + 1 + 6 + 1
    finally:
        ros.detach(node)


def test_bad_inputs_before_first_good_frame_create_no_filter(ros):
    node = _start(ros, overrides=_BURST)
    try:
        for i in range(3):
            _frame(ros, 1.0 + i / 30, info=False)  # the newest waits for a camera_info
        assert ros.wait_for(lambda: node.stats["bad"] >= 2, 5)
        # a camera_info for another image size: the waiting frame is refused
        ros.pub_info.publish(cv.camera_to_camera_info(Camera(50.0, 50.0, 31.5, 23.5, 2 * W, 2 * H)))
        assert ros.wait_for(lambda: _errors(ros, "camera_info is 128x96"), 5)
        ros.pub_info.publish(cv.camera_to_camera_info(CAM))
        time.sleep(0.2)
        _frame(ros, 1.2, depth_enc="32FC1", depth_shape=(H, W + 2), info=False)
        assert ros.wait_for(lambda: _errors(ros, "size mismatch"), 5)
        assert ros.wait_for(lambda: node.stats["bad"] == 4, 5)
        time.sleep(0.2)
        assert node._pipeline is None  # map untouched: no filter (and so no map) was ever built
        assert FakeFilter.instances == []
        r = ros.call(Trigger, "/prism/save_map")
        assert not r.success and "no map yet" in r.message
        assert len(ros.odom) == 0
    finally:
        ros.detach(node)


def test_services_save_map_atomic_and_reset(ros, tmp_path):
    d = tmp_path / "maps"
    node = _start(ros, overrides=[Parameter("save_map_dir", value=str(d)), Parameter("queue_size", value=20)])
    try:
        for i in range(4):
            _frame(ros, 1.0 + i / 30)
            time.sleep(0.02)
        assert ros.wait_for(lambda: len(ros.odom) >= 4, 5)
        r = ros.call(Trigger, "/prism/save_map")
        assert r.success, r.message
        assert os.path.dirname(r.message) == str(d) and os.path.isfile(r.message)
        assert r.message.endswith(".npz")
        assert sorted(os.listdir(d)) == [os.path.basename(r.message)]  # no temporary left behind
        assert np.load(r.message)["xyz"].shape == (50, 3)
        f = FakeFilter.instances[-1]
        assert f.map.saved and f.map.saved[0] != r.message  # written elsewhere, then renamed
        r = ros.call(Trigger, "/prism/reset")
        assert r.success
        assert f.resets == 1
        n = len(ros.odom)
        _frame(ros, 5.0)
        assert ros.wait_for(lambda: len(ros.odom) == n + 1, 5)
        assert f.steps == [5.0]
        assert ros.wait_for(lambda: ros.path and len(ros.path[-1].poses) == 1, 5)
    finally:
        ros.detach(node)


def test_queue_is_bounded_and_drops_oldest(ros):
    class Slow(FakeFilter):
        def step(self, *a, **k):
            time.sleep(0.15)
            return super().step(*a, **k)

    node = _start(ros, Slow, [Parameter("queue_size", value=2)])
    try:
        stamps = [1.0 + i / 30 for i in range(15)]
        for t in stamps:
            _frame(ros, t)
            time.sleep(0.01)
        assert ros.wait_for(lambda: node.stats["processed"] + node.stats["dropped_queue"] >= 15, 10), node.stats
        st = node.stats
        assert st["dropped_queue"] >= 5
        assert st["processed"] + st["dropped_queue"] == 15
        f = FakeFilter.instances[-1]
        assert f.steps[-1] == pytest.approx(stamps[-1])  # the newest frame is never the one dropped
        assert ros.wait_for(lambda: len(ros.odom) == st["processed"], 5)
    finally:
        ros.detach(node)


def test_time_jump_back_resets(ros):
    node = _start(ros, overrides=[Parameter("queue_size", value=20)])
    try:
        for t in (10.0, 10.1, 10.2):
            _frame(ros, t)
            time.sleep(0.03)
        assert ros.wait_for(lambda: len(ros.odom) == 3, 5)
        odom_cov = [np.asarray(m.pose.covariance).reshape(6, 6) for m in ros.odom]
        step = np.asarray(ros.pose[-1].pose.covariance).reshape(6, 6)
        assert np.allclose(odom_cov[0], step) and np.trace(odom_cov[2]) > np.trace(odom_cov[1]) > 1.99 * np.trace(step)
        _frame(ros, 1.0)
        assert ros.wait_for(lambda: len(ros.odom) == 4, 5)
        assert FakeFilter.instances[-1].resets == 1
        assert np.allclose(np.asarray(ros.odom[-1].pose.covariance).reshape(6, 6), step)  # it restarts
    finally:
        ros.detach(node)


def test_odometry_control(ros):
    node = _start(ros, overrides=[Parameter("control_mode", value="odometry"), Parameter("queue_size", value=20)])
    pub_odom = ros.publisher(Odometry, "/odom", reliable_qos(50))
    try:
        assert ros.wait_for(lambda: pub_odom.get_subscription_count() > 0, 5)
        for k in range(30):  # base drives forward at 0.3 m/s, odometry at 100 Hz
            o = Odometry()
            o.header.stamp = cv.sec_to_stamp(1.0 + k * 0.01)
            o.pose.pose = cv.T_to_pose(se3.make_T(np.eye(3), [0.3 * k * 0.01, 0.0, 0.0]))
            o.twist.covariance = cv.cov_to_msg(np.diag([0.01] * 3 + [0.0025] * 3))  # sigma 0.1 m/s, 0.05 rad/s
            pub_odom.publish(o)
        time.sleep(0.2)
        _frame(ros, 1.0)
        time.sleep(0.05)
        _frame(ros, 1.2)
        assert ros.wait_for(lambda: len(ros.odom) == 2, 5)
        ctl = FakeFilter.instances[-1].controls
        assert ctl[0] is None
        # 0.06 m forward in the base frame = +z in the camera optical frame
        np.testing.assert_allclose(ctl[1].T_prev_curr[:3, 3], [0.0, 0.0, 0.06], atol=1e-9)
        # the messages' own twist covariance over the 0.2 s (isotropic: the same in the camera
        # frame), plus the 2 mm / 2 mrad floor
        np.testing.assert_allclose(
            ctl[1].cov, np.diag([0.01 * 0.04 + 4e-6] * 3 + [0.0025 * 0.04 + 4e-6] * 3), rtol=1e-9, atol=1e-15
        )
    finally:
        node.destroy_subscription(node.sub_odom)
        ros.detach(node)


def test_save_does_not_starve_sensor_callbacks(ros, tmp_path):
    saving = threading.Event()

    class SlowSaveMap(FakeMap):
        def save(self, path, extra=None):
            saving.set()
            time.sleep(1.5)
            super().save(path, extra)

    def factory(cfg, cam, T_w_c0=None):
        f = FakeFilter(cfg, cam, T_w_c0)
        f.map = SlowSaveMap()
        return f

    node = _start(
        ros, factory, [Parameter("control_mode", value="imu"), Parameter("save_map_dir", value=str(tmp_path))]
    )
    pub_imu = ros.publisher(Imu, "/imu", reliable_qos(100))
    try:
        assert ros.wait_for(lambda: pub_imu.get_subscription_count() > 0, 5)
        _frame(ros, 1.0)
        assert ros.wait_for(lambda: len(ros.odom) == 1, 5)
        cli = ros.node.create_client(Trigger, "/prism/save_map")
        assert cli.wait_for_service(timeout_sec=5)
        fut = cli.call_async(Trigger.Request())
        assert saving.wait(5)
        for k in range(20):  # during the save: the IMU callback keeps up
            m = Imu()
            m.header.stamp = cv.sec_to_stamp(2.0 + 0.005 * k)
            m.linear_acceleration.z = 9.81
            pub_imu.publish(m)
        assert ros.wait_for(lambda: len(node._imu) == 20, 1.0), len(node._imu)
        assert not fut.done()  # still saving
        assert ros.wait_for(fut.done, 10) and fut.result().success, fut.result()
    finally:
        ros.detach(node)


def test_timed_out_command_cancelled_not_run_later(ros):
    started = threading.Event()

    class Slow(FakeFilter):
        def step(self, *a, **k):
            started.set()
            time.sleep(1.5)
            return super().step(*a, **k)

    FakeFilter.instances.clear()
    _clear(ros)
    node = PrismNode(
        context=ros.context,
        filter_factory=Slow,
        warmup=False,
        command_timeout_s=0.3,
        parameter_overrides=[Parameter("sensor_qos", value="reliable")],
    )
    ros.attach(node)
    try:
        _frame(ros, 1.0)
        assert started.wait(5)
        r = ros.call(Trigger, "/prism/reset")  # the worker is busy with the step
        assert not r.success and r.message == "timed out after 0.3 s waiting for the filter thread; cancelled, not run"
        assert ros.wait_for(lambda: len(ros.odom) == 1, 5)
        time.sleep(0.5)
        f = FakeFilter.instances[-1]
        assert f.resets == 0 and f.steps == [1.0]  # the reset never ran
    finally:
        ros.detach(node)


# --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_filter_on_synthetic_sequence(ros):
    pytest.importorskip("prism_ros.core.filter")
    datasets = pytest.importorskip("prism_ros.datasets")
    ds = datasets.open_dataset("synthetic", frames=20)
    frames = [ds[i] for i in range(len(ds))]  # render first (Numba compile) so publishing is paced
    node = _start(
        ros,
        factory=None,
        warmup=True,
        overrides=[Parameter("queue_size", value=30), Parameter("map_publish_rate_hz", value=5.0)],
    )
    try:
        assert node._pipeline is None
        T_b_c = node.T_base_camera
        stamps = []
        for fr in frames:
            t = 1.0 + fr.stamp
            stamps.append(t)
            header = Header(stamp=cv.sec_to_stamp(t), frame_id="camera_color_optical_frame")
            ros.pub_info.publish(cv.camera_to_camera_info(ds.camera, header))
            ros.pub_depth.publish(cv.depth_to_image(fr.depth, header, "32FC1"))
            ros.pub_color.publish(cv.rgb_to_image(fr.rgb, header, "bgr8"))
            time.sleep(0.05)
        assert ros.wait_for(lambda: len(ros.odom) >= len(ds), 60), (len(ros.odom), node.stats)
        assert [cv.stamp_to_sec(m.header.stamp) for m in ros.odom] == pytest.approx(stamps, abs=1e-9)
        T0 = frames[0].T_w_c_gt
        for m, i in zip(ros.odom, range(len(ds))):
            # world = base start frame: T_w'_b = T_b_c inv(T0) T_gt(i) inv(T_b_c)
            want = T_b_c @ se3.inv(T0) @ frames[i].T_w_c_gt @ se3.inv(T_b_c)
            got = cv.pose_to_T(m.pose.pose)
            assert np.linalg.norm(got[:3, 3] - want[:3, 3]) < 0.02, i
            assert _spd(m.pose.covariance) and _spd(m.twist.covariance)
            assert np.asarray(m.pose.covariance).reshape(6, 6).diagonal().max() < 1.0
        assert ros.wait_for(lambda: ros.cloud and ros.cloud[-1].width > 100, 10)
        pts = cv.read_cloud(ros.cloud[-1])
        assert set(pts) == {"x", "y", "z", "rgb", "sigma", "weight"}
        assert np.all(np.isfinite(pts["x"])) and np.all(pts["sigma"] > 0)
    finally:
        ros.detach(node)


def test_backend_outputs_in_the_map_frame(ros):
    """With the back end: ~/pose and ~/path in map_frame (the pose with the graph's marginal), ~/odometry still in
    odom, the map outputs from the composed global map in map_frame, the back end's figures in the diagnostics.  A
    submap a keyframe, none of the frozen ones kept in memory: they are composed from disk."""
    node = _start(
        ros,
        overrides=[
            Parameter("backend_enabled", value=True),
            Parameter("queue_size", value=50),
            Parameter("map_publish_rate_hz", value=10.0),
            Parameter("backend_submap_distance_m", value=0.05),
            Parameter("backend_submaps_in_memory", value=0),
        ],
    )
    try:
        stamps = [1.0 + i / 30.0 for i in range(25)]  # the fake filter moves 1 cm a frame: keyframes at 0, 10, 20
        for t in stamps:
            _frame(ros, t)
            time.sleep(0.02)
        assert ros.wait_for(lambda: len(ros.odom) >= len(stamps) and len(ros.pose) >= len(stamps), 20), node.stats
        assert ros.odom[-1].header.frame_id == "odom"
        assert ros.pose[-1].header.frame_id == "map"
        assert _spd(ros.pose[-1].pose.covariance)
        # no closure: the correction is the identity, the map pose is the odometry's
        np.testing.assert_allclose(
            cv.pose_to_T(ros.pose[-1].pose.pose), cv.pose_to_T(ros.odom[-1].pose.pose), atol=1e-9
        )
        assert ros.wait_for(lambda: ros.path and ros.path[-1].header.frame_id == "map", 5)
        assert ros.wait_for(lambda: node._backend.figures()["keyframes"] >= 3, 10), (
            node._backend.figures(),
            node._backend.error,
        )
        f = node._backend.figures()
        assert f["submaps"] >= 3 and f["submaps_on_disk"] >= 2 and f["submap_write_failures"] == 0, f
        assert ros.wait_for(lambda: ros.cloud and ros.cloud[-1].header.frame_id == "map", 10)
        assert node._backend.error == "" and node._backend.warning == ""
    finally:
        ros.detach(node)
