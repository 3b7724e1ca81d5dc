"""Message conversions: images (encodings, step padding, endianness), camera_info,
PointCloud2, poses, ROS-order covariances and the camera -> base frame change."""

import array

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("sensor_msgs.msg")

from sensor_msgs.msg import CameraInfo, Image, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from prism_ros.core import se3  # noqa: E402
from prism_ros.core.camera import Camera  # noqa: E402
from prism_ros.ros import conversions as cv  # noqa: E402
from prism_ros.core.controls import OdomBuffer  # noqa: E402

pytestmark = [pytest.mark.ros]

RNG = np.random.default_rng(7)


def _img(h, w, enc, payload: bytes, step, bigendian=0):
    m = Image()
    m.height, m.width, m.encoding, m.step, m.is_bigendian = h, w, enc, step, bigendian
    m.data = array.array("B", payload)
    return m


def _padded(rows: np.ndarray, pad: int) -> bytes:
    """rows: (H, row_bytes) uint8 -> bytes with ``pad`` junk bytes per row."""
    h = rows.shape[0]
    junk = np.full((h, pad), 0xAB, np.uint8)
    return np.hstack([rows, junk]).tobytes()


# --------------------------------------------------------------------------- colour
def test_rgb8_bgr8_mono8_roundtrip_and_channel_order():
    rgb = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for enc in ("rgb8", "bgr8"):
        m = cv.rgb_to_image(rgb, encoding=enc)
        assert m.encoding == enc and m.step == 21
        np.testing.assert_array_equal(cv.image_to_rgb(m), rgb)
    # bgr8 bytes really are in B, G, R order
    m = cv.rgb_to_image(rgb, encoding="bgr8")
    raw = np.frombuffer(bytes(m.data), np.uint8).reshape(5, 7, 3)
    np.testing.assert_array_equal(raw[..., 0], rgb[..., 2])
    mono = cv.rgb_to_image(rgb, encoding="mono8")
    out = cv.image_to_rgb(mono)
    assert out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


@pytest.mark.parametrize("enc,ch", [("rgb8", 3), ("bgr8", 3), ("mono8", 1)])
def test_colour_step_padding(enc, ch):
    h, w, pad = 4, 5, 3
    px = RNG.integers(0, 256, (h, w, ch), dtype=np.uint8)
    m = _img(h, w, enc, _padded(px.reshape(h, -1), pad), w * ch + pad)
    out = cv.image_to_rgb(m)
    exp = {"rgb8": px, "bgr8": px[..., ::-1], "mono8": np.repeat(px, 3, axis=2)}[enc]
    np.testing.assert_array_equal(out, exp)


def test_colour_errors():
    with pytest.raises(cv.InputError, match="unsupported colour encoding 'yuv422'"):
        cv.image_to_rgb(_img(2, 2, "yuv422", b"\0" * 8, 4))
    with pytest.raises(cv.InputError, match="step 5 is smaller"):
        cv.image_to_rgb(_img(2, 2, "rgb8", b"\0" * 12, 5))
    with pytest.raises(cv.InputError, match="inconsistent with step"):
        cv.image_to_rgb(_img(2, 2, "rgb8", b"\0" * 5, 6))
    with pytest.raises(cv.InputError, match="inconsistent with step"):
        cv.image_to_rgb(_img(2, 2, "rgb8", b"\0" * 20, 6))
    with pytest.raises(cv.InputError, match="invalid size"):
        cv.image_to_rgb(_img(0, 2, "rgb8", b"", 6))


# --------------------------------------------------------------------------- depth
def test_depth_16uc1_mm_invalid_values_and_roundtrip():
    mm = np.array([[0, 1000, 1234], [65535, 4000, 1]], np.uint16)
    m = _img(2, 3, "16UC1", mm.astype("<u2").tobytes(), 6)
    d = cv.image_to_depth_m(m)
    assert d.dtype == np.float32
    np.testing.assert_allclose(d, [[0, 1.0, 1.234], [0, 4.0, 0.001]], atol=1e-6)
    back = cv.depth_to_image(d, encoding="16UC1")
    np.testing.assert_array_equal(np.frombuffer(bytes(back.data), "<u2").reshape(2, 3), np.where(mm == 65535, 0, mm))


def test_depth_16uc1_bigendian_and_padding():
    mm = np.array([[500, 1500], [2500, 0]], np.uint16)
    rows = mm.astype(">u2").view(np.uint8).reshape(2, 4)
    m = _img(2, 2, "16UC1", _padded(rows, 4), 8, bigendian=1)
    np.testing.assert_allclose(cv.image_to_depth_m(m), mm / 1000.0, atol=1e-6)
    # mono16 is an alias
    m.encoding = "mono16"
    np.testing.assert_allclose(cv.image_to_depth_m(m), mm / 1000.0, atol=1e-6)


def test_depth_32fc1_nonfinite_invalid_and_roundtrip():
    d = np.array([[1.5, np.nan], [np.inf, -1.0]], np.float32)
    m = _img(2, 2, "32FC1", d.astype("<f4").tobytes(), 8)
    out = cv.image_to_depth_m(m)
    np.testing.assert_array_equal(out, [[1.5, 0], [0, 0]])
    good = RNG.uniform(0.3, 4, (3, 4)).astype(np.float32)
    np.testing.assert_array_equal(cv.image_to_depth_m(cv.depth_to_image(good, encoding="32FC1")), good)


def test_depth_errors():
    with pytest.raises(cv.InputError, match="unsupported depth encoding 'rgb8'"):
        cv.image_to_depth_m(_img(1, 1, "rgb8", b"\0" * 3, 3))
    with pytest.raises(cv.InputError, match="inconsistent"):
        cv.image_to_depth_m(_img(2, 2, "16UC1", b"\0" * 6, 4))


# ---------------------------------------------------------------------- camera_info
def test_camera_info_roundtrip_and_invalid():
    cam = Camera(585.0, 586.0, 320.0, 240.0, 640, 480)
    info = cv.camera_to_camera_info(cam)
    assert cv.camera_info_to_camera(info) == cam
    bad = cv.camera_to_camera_info(cam)
    bad.k = [0.0] * 9
    with pytest.raises(cv.InputError, match="invalid intrinsics"):
        cv.camera_info_to_camera(bad)
    bad = cv.camera_to_camera_info(cam)
    bad.k[0] = float("nan")
    with pytest.raises(cv.InputError, match="invalid intrinsics"):
        cv.camera_info_to_camera(bad)
    bad = cv.camera_to_camera_info(cam)
    bad.width = 0
    with pytest.raises(cv.InputError, match="invalid image size"):
        cv.camera_info_to_camera(bad)
    with pytest.raises(cv.InputError):
        cv.camera_info_to_camera(CameraInfo())  # all-zero message


# ------------------------------------------------------------------------ time/pose
def test_stamps_exact_nanoseconds():
    for i in (0, 1, 29, 30, 299, 12345):
        t = 1.0 + i / 30.0
        st = cv.sec_to_stamp(t)
        assert 0 <= st.nanosec < 1_000_000_000
        assert round((cv.stamp_to_sec(st) - 1.0) * 30.0) == i
        assert abs(cv.stamp_to_sec(st) - t) < 1e-9


def test_pose_roundtrip():
    T = se3.exp(RNG.normal(size=6))
    np.testing.assert_allclose(cv.pose_to_T(cv.T_to_pose(T)), T, atol=1e-12)
    tr = cv.T_to_transform(T)
    assert tr.translation.x == pytest.approx(T[0, 3])


def test_default_base_camera_rotation_is_rep103_optical():
    T = cv.T_from_xyz_rpy_deg([0.1, 0.2, 0.3], [-90.0, 0.0, -90.0])
    # optical z (forward) -> base x, optical x (right) -> base -y, optical y (down) -> base -z
    np.testing.assert_allclose(T[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(T[:3, :3] @ [1, 0, 0], [0, -1, 0], atol=1e-12)
    np.testing.assert_allclose(T[:3, :3] @ [0, 1, 0], [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(T[:3, 3], [0.1, 0.2, 0.3])


def _sample_ros_cov(T_bar, cov_body, n=20000):
    """Monte Carlo: sample T = T_bar Exp(xi), measure parent-frame position and
    small fixed-axis rotation errors (ROS order)."""
    L = np.linalg.cholesky(cov_body)
    xs = RNG.normal(size=(n, 6)) @ L.T
    errs = np.empty((n, 6))
    for k, xi in enumerate(xs):
        T = T_bar @ se3.exp(xi)
        errs[k, :3] = T[:3, 3] - T_bar[:3, 3]
        errs[k, 3:] = se3.so3_log(T[:3, :3] @ T_bar[:3, :3].T)  # rotation error about parent axes
    return np.cov(errs.T)


def test_ros_order_covariance_rotated_anisotropic():
    # Body covariance: large along body x translation and body z rotation only.
    cov_body = np.diag([4e-4, 1e-6, 1e-6, 1e-6, 1e-6, 9e-4])
    R = se3.so3_exp(np.array([0.0, 0.0, np.pi / 2]))  # body x -> world y, body z -> world z
    T = se3.make_T(R, [1.0, 2.0, 3.0])
    ros = se3.cov_body_to_world(T, cov_body)
    assert ros[1, 1] == pytest.approx(4e-4) and ros[0, 0] == pytest.approx(1e-6)
    assert ros[5, 5] == pytest.approx(9e-4)
    # A general rotation, checked against sampling of the actual perturbation.
    T = se3.make_T(se3.so3_exp(np.array([0.4, -0.7, 1.1])), [0.5, -1.0, 2.0])
    A = RNG.normal(size=(6, 6)) * 0.01
    cov_body = A @ A.T + np.diag([4e-4, 1e-5, 1e-5, 1e-5, 2.5e-4, 1e-5])
    mc = _sample_ros_cov(T, cov_body)
    ros = se3.cov_body_to_world(T, cov_body)
    np.testing.assert_allclose(ros, mc, atol=0.08 * np.abs(ros).max())
    msg = cv.cov_to_msg(ros)
    assert len(msg) == 36
    np.testing.assert_allclose(cv.msg_to_cov(msg), ros)


def test_camera_state_to_base_frame_change():
    T_b_c = cv.T_from_xyz_rpy_deg([0.2, -0.05, 0.1], [-90.0, 0.0, -90.0])
    T_w_c = se3.make_T(se3.so3_exp(np.array([0.1, 0.5, -0.3])), [1.0, 0.2, 0.4])
    A = RNG.normal(size=(6, 6)) * 0.01
    cov_c = A @ A.T + np.diag([1e-4, 9e-4, 1e-5, 4e-4, 1e-5, 1e-5])
    V_c = np.array([0.3, -0.1, 0.5, 0.2, -0.4, 0.1])
    Vcov_c = np.diag([1e-2, 2e-2, 3e-2, 1e-3, 2e-3, 3e-3])
    T_w_b, cov_ros, V_b, Vcov_b = cv.camera_state_to_base(T_w_c, cov_c, V_c, Vcov_c, T_b_c)
    np.testing.assert_allclose(T_w_b @ T_b_c, T_w_c, atol=1e-12)
    # pose covariance: sample camera perturbations, look at the base pose in the parent frame
    n = 20000
    xs = RNG.normal(size=(n, 6)) @ np.linalg.cholesky(cov_c).T
    errs = np.empty((n, 6))
    for k, xi in enumerate(xs):
        Tb = T_w_c @ se3.exp(xi) @ se3.inv(T_b_c)
        errs[k, :3] = Tb[:3, 3] - T_w_b[:3, 3]
        errs[k, 3:] = se3.so3_log(Tb[:3, :3] @ T_w_b[:3, :3].T)
    mc = np.cov(errs.T)
    np.testing.assert_allclose(cov_ros, mc, atol=0.08 * np.abs(cov_ros).max())
    np.testing.assert_allclose(cov_ros, cov_ros.T)
    assert np.all(np.linalg.eigvalsh(cov_ros) > 0)
    # twist: finite-difference the base motion produced by the camera body twist
    dt = 1e-6
    Tb1 = T_w_c @ se3.exp(V_c * dt) @ se3.inv(T_b_c)
    V_fd = se3.log(se3.inv(T_w_b) @ Tb1) / dt
    np.testing.assert_allclose(V_b, V_fd, atol=1e-5)
    np.testing.assert_allclose(Vcov_b, Vcov_b.T)
    assert np.all(np.linalg.eigvalsh(Vcov_b) > 0)


# ----------------------------------------------------------------------- clouds
def test_map_cloud_fields_and_roundtrip():
    n = 100
    xyz = RNG.normal(size=(n, 3)).astype(np.float32)
    rgb = RNG.integers(0, 256, (n, 3), dtype=np.uint8)
    sigma = RNG.uniform(0.001, 0.1, n).astype(np.float32)
    weight = RNG.integers(1, 200, n).astype(np.float32)
    msg = cv.make_map_cloud(Header(frame_id="odom"), xyz, rgb, sigma, weight)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb", "sigma", "weight"]
    assert all(f.datatype == PointField.FLOAT32 and f.count == 1 for f in msg.fields)
    assert msg.point_step == 24 and msg.row_step == 24 * n and msg.width == n and msg.height == 1
    assert len(msg.data) == 24 * n
    back = cv.read_cloud(msg)
    np.testing.assert_array_equal(np.stack([back["x"], back["y"], back["z"]], 1), xyz)
    np.testing.assert_array_equal(cv.unpack_rgb_float(back["rgb"]), rgb)
    np.testing.assert_array_equal(back["sigma"], sigma)
    np.testing.assert_array_equal(back["weight"], weight)
    empty = cv.make_map_cloud(Header(), np.zeros((0, 3)), np.zeros((0, 3), np.uint8), [], [])
    assert empty.width == 0 and len(empty.data) == 0


def test_sigma_colormap_equals_the_array_formula():
    """The one-pass kernel gives exactly the formula's colours (float32 and float64 sigma, NaN, clipping)."""
    rng = np.random.default_rng(0)
    s64 = np.concatenate([10.0 ** rng.uniform(-4, 0, 5000), [np.nan, 0.0, 1e-9, 2e-3, 4e-2, 10.0]])
    for s in (s64, s64.astype(np.float32)):
        lo, hi = 0.002, 0.04
        x = np.asarray(s, dtype=np.float64)
        t = np.nan_to_num((np.log(np.clip(x, lo, hi)) - np.log(lo)) / (np.log(hi) - np.log(lo)), nan=1.0)
        want = np.round(
            np.stack([np.clip(1.5 - np.abs(4.0 * t - c), 0.0, 1.0) for c in (3.0, 2.0, 1.0)], axis=1) * 255.0
        ).astype(np.uint8)
        np.testing.assert_array_equal(cv.sigma_colormap(s, lo, hi), want)


def test_map_cloud_columns_must_have_a_row_a_point():
    xyz = np.zeros((3, 3), np.float32)
    rgb = np.zeros((3, 3), np.uint8)
    msg = cv.make_map_cloud(Header(), xyz, rgb, [0.01], np.ones(3))  # a single sigma is spread
    np.testing.assert_array_equal(cv.read_cloud(msg)["sigma"], np.full(3, 0.01, np.float32))
    with pytest.raises(ValueError):
        cv.make_map_cloud(Header(), xyz, rgb, np.ones(2), np.ones(3))  # a short column is refused


def test_package_reexports_and_core_packing_agree():
    """Every name of the conversions package resolves; the message carries the core kernel's rows."""
    from prism_ros.core.cloud_kernels import CLOUD_FIELDS, pack_cloud_points
    from prism_ros.ros.conversions import common, image

    assert all(hasattr(cv, name) for name in cv.__all__)
    assert cv.InputError is common.InputError is image.InputError
    xyz = np.array([[0.0, 1.0, 2.0], [np.inf, 0.0, 0.0]], np.float32)
    rgb = np.array([[1, 2, 3], [250, 128, 0]], np.uint8)
    pts, finite = pack_cloud_points(xyz, rgb, [0.01, 0.02], [1.0, 2.0])
    msg = cv.make_map_cloud(Header(), xyz, rgb, [0.01, 0.02], [1.0, 2.0])
    assert pts.shape == (2, len(CLOUD_FIELDS)) and not finite and not msg.is_dense
    assert bytes(msg.data) == pts.tobytes()


def test_sigma_colormap_monotone_blue_to_red():
    s = np.array([0.001, 0.002, 0.01, 0.04, 1.0])
    c = cv.sigma_colormap(s, 0.002, 0.04).astype(int)
    assert c.shape == (5, 3) and c.dtype == np.int64
    assert c[0, 2] > c[0, 0] and c[-1, 0] > c[-1, 2]  # low sigma blue, high sigma red
    np.testing.assert_array_equal(c[0], c[1])  # clipped below lo


# ------------------------------------------------- odometry control in the camera frame
def test_odometry_increment_in_camera_frame():
    T_b_c = cv.T_from_xyz_rpy_deg([0.1, 0.0, 0.2], [-90.0, 0.0, -90.0])
    buf = OdomBuffer()
    P0 = se3.make_T(se3.so3_exp([0, 0, 0.1]), [1.0, 0.0, 0.0])
    step = se3.exp([0.1, 0.0, 0.0, 0.0, 0.0, 0.05])  # base moves forward and turns left
    buf.add(1.0, P0)
    buf.add(2.0, P0 @ step)
    ctl = buf.increment(1.0, 2.0, T_b_c)
    np.testing.assert_allclose(T_b_c @ ctl.T_prev_curr, step @ T_b_c, atol=1e-12)
    # base forward (+x) is camera +z
    assert ctl.T_prev_curr[2, 3] > 0.09
    assert np.all(np.linalg.eigvalsh(ctl.cov) > 0)
    half = buf.increment(1.0, 1.5, T_b_c)
    assert half.T_prev_curr[2, 3] == pytest.approx(ctl.T_prev_curr[2, 3] / 2, rel=0.05)


# ------------------------------------------------------------------- message assembly
def test_state_messages_frames_stamps_and_agreement():
    T_b_c = cv.T_from_xyz_rpy_deg([0.1, 0.0, 0.2], [-90.0, 0.0, -90.0])
    T_w_c = se3.make_T(se3.so3_exp([0.0, 0.0, 0.3]), [1.0, 2.0, 0.5]) @ T_b_c
    cov = np.diag([1e-6, 2e-6, 4e-4, 3e-6, 9e-4, 5e-6])
    vel = np.array([0.0, 0.0, 0.3, 0.0, 0.1, 0.0])
    stamp = cv.sec_to_stamp(12.5)
    m = cv.state_messages(stamp, T_w_c, cov, vel, 2 * cov, T_b_c, "odom", "base_link")
    T_w_b, P, tw, TC = cv.camera_state_to_base(T_w_c, cov, vel, 2 * cov, T_b_c)
    for msg in (m.pose, m.odom, m.path_pose, m.tf):
        assert msg.header.frame_id == "odom" and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 500_000_000)
    assert (
        m.twist.header.frame_id == "base_link"
        and m.odom.child_frame_id == "base_link"
        and m.tf.child_frame_id == "base_link"
    )
    np.testing.assert_allclose(cv.pose_to_T(m.pose.pose.pose), T_w_b, atol=1e-12)
    np.testing.assert_allclose(cv.pose_to_T(m.path_pose.pose), T_w_b, atol=1e-12)
    t = m.tf.transform
    np.testing.assert_allclose([t.translation.x, t.translation.y, t.translation.z], T_w_b[:3, 3], atol=1e-12)
    np.testing.assert_allclose(cv.msg_to_cov(m.odom.pose.covariance), P, atol=1e-15)
    np.testing.assert_allclose(cv.msg_to_cov(m.odom.twist.covariance), TC, atol=1e-15)
    v = m.twist.twist.twist
    np.testing.assert_allclose(
        [v.linear.x, v.linear.y, v.linear.z, v.angular.x, v.angular.y, v.angular.z], tw, atol=1e-12
    )
    assert cv.path_message([m.path_pose, m.path_pose]).header.frame_id == "odom"


def test_surface_cloud_colour_modes():
    surf = {
        "xyz": np.zeros((3, 3), np.float32),
        "rgb": np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8),
        "sigma": np.array([1e-4, 0.004, 0.04], np.float32),
        "count": np.array([1, 2, 3], np.int32),
    }
    h = Header(frame_id="odom")
    rgb = cv.read_cloud(cv.surface_cloud(h, surf, "rgb", 0.0005, 0.08))
    np.testing.assert_array_equal(cv.unpack_rgb_float(rgb["rgb"]), surf["rgb"])
    sig = cv.read_cloud(cv.surface_cloud(h, surf, "sigma", 0.0005, 0.08))
    # log scale from the precision floor 0.5 mm (blue) to half the truncation band, 4 cm (red)
    np.testing.assert_array_equal(cv.unpack_rgb_float(sig["rgb"]), cv.sigma_colormap(surf["sigma"], 0.0005, 0.04))
    c = cv.unpack_rgb_float(sig["rgb"]).astype(int)
    assert c[0, 2] > c[0, 0] and c[2, 0] > c[2, 2]
    np.testing.assert_array_equal(sig["weight"], [1, 2, 3])


def test_rgbd_pairs_are_decoded_where_processed_not_on_arrival(monkeypatch):
    """RgbdAssembler hands a pair on still encoded (a pair the full queue drops is never
    decoded); decode() gives the arrays, and a pair whose data cannot be decoded is reported
    then, as a bad frame."""
    from prism_ros.ros.frames import RgbdAssembler

    cam = Camera(50.0, 50.0, 31.5, 23.5, 64, 48)
    reports, delivered = [], []
    rgbd = RgbdAssembler(("/c", "/d", "/i"), 0.02, lambda *r: reports.append(r), delivered.append)
    rgbd.on_info(cv.camera_to_camera_info(cam))
    calls = []
    real = cv.image_to_rgb
    monkeypatch.setattr(cv, "image_to_rgb", lambda m: calls.append(1) or real(m))
    grey = RNG.integers(0, 255, (48, 64), dtype=np.uint8)
    depth = np.full((48, 64), 1.25, np.float32)
    for k in range(3):
        h = Header()
        h.stamp = cv.sec_to_stamp(10.0 + 0.05 * k)
        rgbd.on_image(0, cv.rgb_to_image(np.repeat(grey[:, :, None], 3, axis=2), h, "mono8"), None)
        rgbd.on_image(1, cv.depth_to_image(depth, h, "32FC1"), None)
    assert len(delivered) == 3 and calls == [] and reports == []
    fr = rgbd.decode(delivered[-1])
    assert calls == [1] and fr.stamp == pytest.approx(10.1)
    np.testing.assert_array_equal(fr.rgb, np.repeat(grey[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(fr.depth, depth)
    delivered[0].color.data = delivered[0].color.data[:100]  # truncated in transit
    assert rgbd.decode(delivered[0]) is None
    assert reports and reports[-1][:2] == ("bad", "color"), reports
