"""Reliability of the prism node against bad input, in-process.

Complements test_ros_node.py (unsupported encoding, colour/depth size mismatch,
step/data inconsistency, missing camera_info, zero intrinsics, big time jump back,
parameter ranges are covered there and in test_ros_params.py).  Here: NaN / negative
intrinsics, depth all zero / NaN / inf, duplicate and backwards stamps, a gap of
several seconds, colour without depth for a long time, IMU with NaN, save_map names
leaving save_map_dir, load_map with an incompatible map.  Each case: a clear
(throttled) error, the node alive, nothing reaching the filter (map untouched).
"""

import os
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")

from rcl_interfaces.msg import Log  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Imu  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from prism_ros.config import ConfigError, PrismConfig  # noqa: E402
from prism_ros.core.camera import Camera  # noqa: E402
from prism_ros.ros import conversions as cv  # noqa: E402
from prism_ros.ros.node import PrismNode  # noqa: E402
from prism_ros.ros.qos import reliable_qos  # noqa: E402
from prism_ros.ros.env import claim_domain_id  # noqa: E402
from ros_harness import FakeFilter, RosHarness  # noqa: E402

pytestmark = [pytest.mark.ros]

DOMAIN_ID = claim_domain_id(61)
W, H = 64, 48
CAM = Camera(50.0, 50.0, 31.5, 23.5, W, H)
RNG = np.random.default_rng(5)


@pytest.fixture(scope="module")
def ros():
    h = RosHarness(DOMAIN_ID)
    h.node_io(depth=100)
    h.pub_imu = h.publisher(Imu, "/imu", reliable_qos(100))
    yield h
    h.shutdown()


def _start(h, overrides=(), factory=FakeFilter):
    FakeFilter.instances.clear()
    h.odom.clear()
    h.rosout.clear()
    overrides = list(overrides) + [Parameter("sensor_qos", value="reliable")]
    node = PrismNode(context=h.context, filter_factory=factory, warmup=False, parameter_overrides=overrides)
    h.attach(node)
    return node


def _header(t):
    return Header(stamp=cv.sec_to_stamp(t), frame_id="camera_color_optical_frame")


def _frame(h, t, depth=None, depth_enc="16UC1", info=True, color=True):
    header = _header(t)
    if info:
        h.pub_info.publish(cv.camera_to_camera_info(CAM, header))
    if depth is not None or depth_enc is not None:
        d = RNG.uniform(0.5, 3.0, (H, W)).astype(np.float32) if depth is None else depth
        if depth_enc == "raw":  # an Image message built by the caller
            h.pub_depth.publish(d)
        else:
            h.pub_depth.publish(cv.depth_to_image(d, header, depth_enc))
    if color:
        h.pub_color.publish(cv.rgb_to_image(RNG.integers(0, 256, (H, W, 3), dtype=np.uint8), header))


def _logs(h, text, level=Log.ERROR):
    """The node's log lines at ``level`` or above containing ``text``: from /rosout, or,
    when DDS has not delivered them yet (a loaded machine), from the node's own throttled
    logger calls captured in _start."""
    got = [m.msg for m in list(h.rosout) if m.level >= level and m.name == "prism" and text in m.msg]
    return got or [t for lv, t in list(h.captured) if lv >= level and text in t]


def _good_frames(h, stamps):
    for t in stamps:
        _frame(h, t)
        time.sleep(0.02)


def _steps(h, node, n):
    assert h.wait_for(lambda: node._pipeline is not None and len(FakeFilter.instances[-1].steps) >= n, 5), node.stats
    time.sleep(0.1)
    return list(FakeFilter.instances[-1].steps)


# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [[float("nan"), 0, 31.5, 0, 50, 23.5, 0, 0, 1], [50, 0, 31.5, 0, -50, 23.5, 0, 0, 1]])
def test_nan_or_negative_intrinsics_refused(ros, k):
    node = _start(ros)
    try:
        info = cv.camera_to_camera_info(CAM, _header(1.0))
        info.k = [float(x) for x in k]
        for i in range(4):
            ros.pub_info.publish(info)
            _frame(ros, 1.0 + i / 30, info=False)
            time.sleep(0.02)
        assert ros.wait_for(lambda: _logs(ros, "invalid intrinsics"), 5)
        assert ros.wait_for(lambda: node.stats["bad"] >= 3, 5), node.stats
        time.sleep(0.2)
        assert len(_logs(ros, "frames are ignored until a valid camera_info")) == 1, "throttled"
        assert len(_logs(ros, "cannot use RGB-D frame: camera_info has invalid intrinsics")) == 1, "throttled"
        assert node._pipeline is None and FakeFilter.instances == []  # no map built
        # a valid camera_info: the node goes on
        _frame(ros, 2.0)
        assert _steps(ros, node, 1)[-1] == 2.0
    finally:
        ros.detach(node)


def test_depth_all_zero_nan_inf_refused_map_untouched(ros):
    # too little valid depth is the real filter's refusal (one definition): state and map untouched
    pytest.importorskip("prism_ros.core.filter")
    node = _start(ros, [Parameter("queue_size", value=20)], factory=None)
    try:
        _good_frames(ros, [1.0, 1.1])
        assert ros.wait_for(lambda: node.stats["processed"] == 2, 60), node.stats
        f = node._pipeline.filter
        m = f.map
        map_before = (m.n_blocks, m.mu[: m.n_blocks].copy(), m.cnt[: m.n_blocks].copy())
        _frame(ros, 1.2, depth=np.zeros((H, W), np.float32))  # 16UC1 all 0
        _frame(ros, 1.3, depth=np.full((H, W), np.nan, np.float32), depth_enc="32FC1")
        _frame(ros, 1.4, depth=np.full((H, W), np.inf, np.float32), depth_enc="32FC1")
        neg = np.full((H, W), -1.0, np.float32)
        _frame(ros, 1.5, depth=neg, depth_enc="32FC1")
        assert ros.wait_for(lambda: node.stats["bad"] == 4, 10), node.stats
        assert _logs(ros, "of the depth image is valid")
        assert len(_logs(ros, "of the depth image is valid")) == 1, "throttled"
        assert node.stats["processed"] == 2 and len(ros.odom) == 2 and f.state.stamp == 1.1  # the filter refused them
        assert m.n_blocks == map_before[0]
        np.testing.assert_array_equal(m.mu[: m.n_blocks], map_before[1])
        np.testing.assert_array_equal(m.cnt[: m.n_blocks], map_before[2])
        _frame(ros, 1.6)
        assert ros.wait_for(lambda: node.stats["processed"] == 3, 10), node.stats
        assert f.state.stamp == 1.6
    finally:
        ros.detach(node)


def test_duplicate_and_backwards_stamps_refused(ros):
    node = _start(ros, [Parameter("queue_size", value=20)])
    try:
        _good_frames(ros, [1.0, 1.1, 1.2])
        before = _steps(ros, node, 3)
        _frame(ros, 1.2)  # duplicate stamps on both streams
        _frame(ros, 1.15)  # backwards by 50 ms
        assert ros.wait_for(lambda: _logs(ros, "duplicate stamp"), 5)
        assert ros.wait_for(lambda: _logs(ros, "older than the previous"), 5)
        time.sleep(0.2)
        assert FakeFilter.instances[-1].steps == before
        assert FakeFilter.instances[-1].resets == 0
        _frame(ros, 1.3)
        assert _steps(ros, node, 4) == before + [1.3]
        assert len(ros.odom) == 4
    finally:
        ros.detach(node)


def test_gap_of_several_seconds_accepted(ros):
    node = _start(ros, [Parameter("queue_size", value=20)])
    try:
        _good_frames(ros, [1.0, 1.1, 9.0, 9.1])  # an 8 s gap (bag gap, sensor hiccup)
        assert _steps(ros, node, 4) == [1.0, 1.1, 9.0, 9.1]
        assert FakeFilter.instances[-1].resets == 0
        assert node.stats["bad"] == 0
    finally:
        ros.detach(node)


@pytest.mark.slow
def test_colour_without_depth_for_a_long_time(ros):
    node = _start(ros, [Parameter("queue_size", value=20)])
    try:
        _good_frames(ros, [1.0])
        _steps(ros, node, 1)
        t_end = time.monotonic() + 2.6
        t = 1.0
        n = 0
        while time.monotonic() < t_end:  # depth driver died: colour only, 30 Hz
            t += 1 / 30
            _frame(ros, t, depth_enc=None)
            n += 1
            time.sleep(1 / 30)
        assert ros.wait_for(lambda: _logs(ros, "no depth image", Log.WARN), 5), [m.msg for m in ros.rosout]
        assert len(_logs(ros, "no depth image", Log.WARN)) <= 2, "throttled"
        assert node._rgbd.pairer.pending[0] <= node._rgbd.pairer.max_pending  # bounded
        assert len(FakeFilter.instances[-1].steps) == 1
        _frame(ros, t + 1.0)  # depth is back
        assert _steps(ros, node, 2)[-1] == pytest.approx(t + 1.0)
    finally:
        ros.detach(node)


def test_bad_imu_stream_flagged_throttled_node_alive(ros):
    """NaN samples, stamps going backwards or repeated are dropped; a gap and an IMU slower
    than declared are flagged; each gives one throttled warning and a diagnostics count, and
    the node keeps filtering frames."""
    node = _start(ros, [Parameter("control_mode", value="imu")])
    try:
        assert ros.wait_for(lambda: ros.pub_imu.get_subscription_count() > 0, 5)

        def imu(t, w=(0.0, 0.0, 0.1)):
            m = Imu()
            m.header = _header(t)
            m.angular_velocity.x, m.angular_velocity.y, m.angular_velocity.z = w
            m.linear_acceleration.z = 9.81
            ros.pub_imu.publish(m)
            time.sleep(0.002)

        for i in range(5):
            imu(1.0 + i * 0.005, (float("nan"), 0.0, 0.1))
        imu(1.03, (0.0, float("inf"), 0.1))
        assert ros.wait_for(lambda: node.stats["bad_imu"] == 6, 5), node.stats
        assert len(node._imu) == 0
        assert len(_logs(ros, "has a non-finite angular velocity", Log.WARN)) == 1, "throttled"
        stamps = list(1.1 + np.arange(60) / 200.0)  # 200 Hz, as declared
        for t in stamps:
            imu(t)
        imu(stamps[-1] - 0.05)  # backwards: dropped
        imu(stamps[-1])  # duplicate: dropped
        assert ros.wait_for(lambda: node.stats["bad_imu"] == 8 and len(node._imu) == 60, 5), node.stats
        t_gap = stamps[-1] + 0.2  # a 0.2 s gap (> imu_max_gap_s): kept, flagged
        for k in range(150):  # then 100 Hz although 200 Hz is declared: kept, flagged
            imu(t_gap + k / 100.0)
        assert ros.wait_for(lambda: len(node._imu) == 210, 5), len(node._imu)
        assert ros.wait_for(lambda: node.stats.get("imu_rate", 0) > 0, 5), node.stats
        st = node.stats
        assert st["imu_nan"] == 6 and st["imu_backwards"] == 1 and st["imu_duplicate"] == 1 and st["imu_gap"] == 1
        for text in ("went backwards", "repeated", "IMU gap of 0.200 s", "declared 200.0 Hz"):
            assert len(_logs(ros, text, Log.WARN)) == 1, text
        # no IMU control across the gap: the buffer reports the interval uncovered
        assert not node._imu.covers(stamps[-1] - 0.01, t_gap + 0.05)
        _good_frames(ros, [1.0, 1.05])
        assert _steps(ros, node, 2) == [1.0, 1.05]  # node alive, frames go on
    finally:
        ros.detach(node)


def _set(node, name, value):
    return node.set_parameters([Parameter(name, value=value)])[0]


def test_save_map_name_outside_the_directory_refused(ros, tmp_path):
    d = tmp_path / "maps"
    d.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside / "x.npz", d / "escape.npz")  # a symlink in save_map_dir pointing out
    node = _start(ros, [Parameter("save_map_dir", value=str(d))])
    try:
        for bad in ("../evil", "../../etc/passwd", str(outside / "abs.npz"), "sub/dir.npz", "..", "escape"):
            r = _set(node, "save_map_name", bad)
            assert not r.successful and "save_map_name" in r.reason, bad
            assert node.get_parameter("save_map_name").value == ""
        assert _set(node, "save_map_name", "kitchen").successful
        _good_frames(ros, [1.0, 1.1])
        _steps(ros, node, 2)
        r = ros.call(Trigger, "/prism/save_map")
        assert r.success, r.message
        assert r.message == str((d / "kitchen.npz").resolve())
        assert sorted(os.listdir(d)) == ["escape.npz", "kitchen.npz"]  # no temporary left
        assert os.listdir(outside) == []
        # the name was valid when set; a symlink created afterwards is caught at save time
        os.symlink(outside / "y.npz", d / "late.npz")
        assert _set(node, "save_map_name", "late2").successful
        os.rename(d / "late.npz", d / "late2.npz")
        r = ros.call(Trigger, "/prism/save_map")
        assert not r.success and "outside save_map_dir" in r.message
        assert os.listdir(outside) == []
        # starting the node with a bad name is refused
        with pytest.raises(ConfigError, match="save_map_name"):
            PrismNode(
                context=ros.context,
                filter_factory=FakeFilter,
                warmup=False,
                parameter_overrides=[Parameter("save_map_dir", value=str(d)), Parameter("save_map_name", value="../x")],
            )
    finally:
        ros.detach(node)


def test_load_map_compatible_and_incompatible(ros, tmp_path):
    from prism_ros.core.tsdf import TsdfMap
    from prism_ros.core import persistence

    cfg = PrismConfig.from_yaml()
    good = TsdfMap(cfg.voxel_size_m, cfg.truncation_m, 0.5, 0.0005, 200, initial_blocks=64)
    persistence.save_map(good, str(tmp_path / "good.npz"), cfg)
    bad = TsdfMap(2 * cfg.voxel_size_m, 4 * cfg.truncation_m, 0.5, 0.0005, 200, initial_blocks=64)
    persistence.save_map(bad, str(tmp_path / "bad.npz"))
    # at start-up: a clear configuration error
    with pytest.raises(ConfigError, match="voxel_size_m"):
        PrismNode(
            context=ros.context,
            filter_factory=FakeFilter,
            warmup=False,
            parameter_overrides=[Parameter("load_map_path", value=str(tmp_path / "bad.npz"))],
        )
    node = _start(ros)
    try:
        r = _set(node, "load_map_path", str(tmp_path / "bad.npz"))
        assert not r.successful and "voxel_size_m" in r.reason and "truncation_m" in r.reason
        r = _set(node, "load_map_path", str(tmp_path / "missing.npz"))
        assert not r.successful and "does not exist" in r.reason
        (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 truncated")
        r = _set(node, "load_map_path", str(tmp_path / "junk.npz"))
        assert not r.successful and "not a readable prism_ros map" in r.reason
        r = ros.call(Trigger, "/prism/load_map")
        assert not r.success and "load_map_path" in r.message
        assert _set(node, "load_map_path", str(tmp_path / "good.npz")).successful
        _good_frames(ros, [1.0, 1.1])
        _steps(ros, node, 2)
        r = ros.call(Trigger, "/prism/load_map")
        assert r.success and "loaded" in r.message, r.message
        f = FakeFilter.instances[-1]
        assert isinstance(f.map, TsdfMap) and f.resets == 2  # loaded when the filter started, and by the service
        assert _logs(ros, "loaded", Log.INFO)
        _frame(ros, 1.2)
        assert _steps(ros, node, 1)[-1] == 1.2  # node goes on with the loaded map
    finally:
        ros.detach(node)
