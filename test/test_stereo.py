"""Stereo front end: rectification geometry, left-right check, depth from disparity."""

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from prism_ros.core import se3  # noqa: E402
from prism_ros.core.stereo import (  # noqa: E402
    CameraCalib,
    StereoRectifier,
    depth_from_disparity,
    left_right_check,
    stereo_rectify,
)
from prism_ros.datasets.euroc_files import read_euroc_sensor_yaml  # noqa: E402

# EuRoC-like rig (values of V1_01's cam0/cam1 sensor.yaml)
K0 = np.array([[458.654, 0, 367.215], [0, 457.296, 248.375], [0, 0, 1.0]])
D0 = np.array([-0.28340811, 0.07395907, 0.00019359, 1.76187114e-05])
K1 = np.array([[457.587, 0, 379.999], [0, 456.134, 255.238], [0, 0, 1.0]])
D1 = np.array([-0.28368365, 0.07451284, -0.00010473, -3.55590700e-05])
T_BS0 = np.array(
    [
        [0.0148655429818, -0.999880929698, 0.00414029679422, -0.0216401454975],
        [0.999557249008, 0.0149672133247, 0.025715529948, -0.064676986768],
        [-0.0257744366974, 0.00375618835797, 0.999660727178, 0.00981073058949],
        [0, 0, 0, 1.0],
    ]
)
T_BS1 = np.array(
    [
        [0.0125552670891, -0.999755099723, 0.0182237714554, -0.0198435579556],
        [0.999598781151, 0.0130119051815, 0.0251588363115, 0.0453689425024],
        [-0.0253898008918, 0.0179005838253, 0.999517347078, 0.00786212447038],
        [0, 0, 0, 1.0],
    ]
)


def _rig():
    return CameraCalib(K0, D0, (752, 480), T_BS0), CameraCalib(K1, D1, (752, 480), T_BS1)


def test_rectification_known_point_same_row():
    c0, c1 = _rig()
    R0, R1, P0, P1, Q, _, _ = stereo_rectify(c0, c1)
    T_c1_c0 = np.linalg.inv(T_BS1) @ T_BS0
    rng = np.random.default_rng(0)
    # points in front of both cameras, spread over the image
    pts = np.column_stack([rng.uniform(-1.0, 1.0, 30), rng.uniform(-0.6, 0.6, 30), rng.uniform(1.0, 6.0, 30)])
    u0, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), K0, D0)
    p1 = (T_c1_c0[:3, :3] @ pts.T).T + T_c1_c0[:3, 3]
    u1, _ = cv2.projectPoints(p1, np.zeros(3), np.zeros(3), K1, D1)
    r0 = cv2.undistortPoints(u0, K0, D0, R=R0, P=P0).reshape(-1, 2)
    r1 = cv2.undistortPoints(u1, K1, D1, R=R1, P=P1).reshape(-1, 2)
    assert np.abs(r0[:, 1] - r1[:, 1]).max() < 0.05  # same row (px)
    # the disparity gives the depth in the rectified left camera (= cam0 depth rotated by R0)
    f = P0[0, 0]
    b = -P1[0, 3] / P1[0, 0]
    z_rect = (R0 @ pts.T).T[:, 2]
    np.testing.assert_allclose(f * b / (r0[:, 0] - r1[:, 0]), z_rect, rtol=1e-3)
    assert 0.10 < b < 0.12


def test_rectifier_class_maps_and_body_extrinsic():
    c0, c1 = _rig()
    st = StereoRectifier(c0, c1)
    assert st.camera.width == 752 and st.camera.height == 480
    assert abs(st.camera.fx - st.P0[0, 0]) < 1e-9
    assert st.valid_region.mean() > 0.99  # alpha = 0: no black border
    # T_B_rect: rectified left optical axis ~ cam0 optical axis, origin at cam0
    np.testing.assert_allclose(st.T_B_rect[:3, 3], T_BS0[:3, 3])
    R = st.T_B_rect[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
    ang = np.degrees(np.linalg.norm(se3.so3_log(T_BS0[:3, :3].T @ R)))
    assert ang < 3.0


def test_depth_from_disparity_formula():
    d = np.array([[0.0, 10.0, 20.0, -1.0, np.nan]], np.float32)
    z, s = depth_from_disparity(d, 400.0, 0.1, sigma_d=0.5)
    np.testing.assert_allclose(z[0, :3], [0.0, 4.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(s[0, 1:3], [16 * 0.5 / 40, 4 * 0.5 / 40], rtol=1e-6)
    assert z[0, 3] == 0 and z[0, 4] == 0 and s[0, 0] == 0
    assert z.dtype == np.float32 and np.all(np.isfinite(z))


def test_left_right_check():
    dl = np.zeros((1, 10), np.float32)
    dr = np.zeros((1, 10), np.float32)
    dl[0, 5] = 3.0
    dr[0, 2] = 3.2  # consistent: x_r = 5 - 3 = 2
    dl[0, 7] = 2.0
    dr[0, 5] = 6.0  # inconsistent
    dl[0, 1] = 4.0  # falls outside the right image
    m = left_right_check(dl, dr, 1.0)
    assert m[0, 5] and not m[0, 7] and not m[0, 1]
    assert m.sum() == 1


W_PLANE, H_PLANE, F_PLANE, B_PLANE = 480, 320, 400.0, 0.12


def _plane_rig(**kw):
    """An ideal rig (no distortion, 12 cm baseline) and the pair it sees of a textured plane
    whose depth grows with the row, 1.5 m (top) to 3 m (bottom): (rectifier, L8, R8, z_true_row)."""
    W, H, f, b = W_PLANE, H_PLANE, F_PLANE, B_PLANE
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    T1 = np.eye(4)
    T1[0, 3] = b  # cam1 is b to the right of cam0 (body = cam0)
    st = StereoRectifier(
        CameraCalib(K, np.zeros(4), (W, H)),
        CameraCalib(K, np.zeros(4), (W, H), T1),
        num_disparities=64,
        sigma_d=0.5,
        **kw,
    )
    rng = np.random.default_rng(3)
    tex = cv2.GaussianBlur(rng.uniform(0, 255, (H, W + 200)).astype(np.float32), (0, 0), 1.2)
    tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX)
    # plane: depth varies with the row, z(y) from 1.5 m (top) to 3 m (bottom)
    ys = np.arange(H, dtype=np.float32)
    z_true_row = 1.5 + 1.5 * ys / (H - 1)
    d_row = f * b / z_true_row
    xs = np.arange(W, dtype=np.float32)
    mx_l = np.tile(xs[None, :] + 100, (H, 1)).astype(np.float32)
    my = np.tile(ys[:, None], (1, W)).astype(np.float32)
    left = cv2.remap(tex, mx_l, my, cv2.INTER_LINEAR)
    right = cv2.remap(tex, (mx_l + d_row[:, None]).astype(np.float32), my, cv2.INTER_LINEAR)
    return st, left.astype(np.uint8), right.astype(np.uint8), z_true_row


def test_depth_on_synthetic_stereo_pair():
    """A textured slanted plane seen by an ideal rig (no distortion, 12 cm baseline)."""
    W, H, f, b = W_PLANE, H_PLANE, F_PLANE, B_PLANE
    st, L8, R8, z_true_row = _plane_rig()
    np.testing.assert_allclose(st.R0, np.eye(3), atol=1e-9)
    assert abs(st.baseline - b) < 1e-9
    grey, z, s = st.compute(L8, R8)
    assert grey.shape == (H, W) and z.dtype == np.float32 and s.dtype == np.float32
    zt = np.tile(z_true_row[:, None], (1, W))
    v = z > 0
    inner = np.zeros_like(v)
    inner[5:-5, st.num_disparities + 5 : -5] = True
    assert v[inner].mean() > 0.9
    rel = np.abs(z[v & inner] - zt[v & inner]) / zt[v & inner]
    assert np.median(rel) < 0.01
    assert np.percentile(rel, 95) < 0.04
    # sigma follows z^2 sigma_d / (f b)
    np.testing.assert_allclose(s[v], z[v] ** 2 * 0.5 / (f * b), rtol=1e-5)


@pytest.mark.parametrize("matcher", ["sgbm", "bm"])
def test_half_resolution_compute_equals_depth_of_the_upsampled_disparity(matcher):
    """At downscale 2, compute() converts the half-resolution disparity and upsamples depth and
    sigma; that must give exactly the values of converting disparity()'s full-resolution image
    (with either matcher, and both give the plane's depth)."""
    st, L8, R8, z_true_row = _plane_rig(downscale=2, matcher=matcher)
    assert st.matcher == matcher
    grey, z, s = st.compute(L8, R8)
    Lr, Rr = st.rectify(L8, R8)
    z_ref, s_ref = depth_from_disparity(st.disparity(Lr, Rr), st.f, st.baseline, st.sigma_d)
    assert np.array_equal(grey, Lr)
    assert z.dtype == s.dtype == np.float32 and z.shape == (H_PLANE, W_PLANE)
    assert np.array_equal(z, z_ref) and np.array_equal(s, s_ref)
    v = z > 0
    assert v.mean() > 0.7  # a real depth image, not an empty one that trivially matches
    zt = np.tile(z_true_row[:, None], (1, W_PLANE))
    assert np.median(np.abs(z[v] - zt[v]) / zt[v]) < 0.02


def test_bm_only_at_half_resolution():
    with pytest.raises(ValueError, match="bm"):
        _plane_rig(downscale=1, matcher="bm")
    with pytest.raises(ValueError, match="matcher"):
        _plane_rig(downscale=2, matcher="census")


def test_read_sensor_yaml_camera(tmp_path):
    p = tmp_path / "sensor.yaml"
    p.write_text(
        "%YAML:1.0\nsensor_type: camera\nT_BS:\n  cols: 4\n  rows: 4\n  data: [1, 0, 0, 0.1, 0, 1, 0, 0, "
        "0, 0, 1, 0, 0, 0, 0, 1]\nresolution: [640, 480]\ncamera_model: pinhole\n"
        "intrinsics: [400, 401, 320, 240]\ndistortion_model: radial-tangential\n"
        "distortion_coefficients: [0.1, -0.01, 0.001, 0.002]\n"
    )
    c = read_euroc_sensor_yaml(p)["calib"]
    assert c.size == (640, 480)
    assert c.K[0, 0] == 400 and c.K[1, 1] == 401 and c.K[0, 2] == 320 and c.K[1, 2] == 240
    np.testing.assert_allclose(c.D, [0.1, -0.01, 0.001, 0.002])
    assert c.T_BS[0, 3] == 0.1
    p.write_text(p.read_text().replace("radial-tangential", "equidistant"))
    with pytest.raises(ValueError, match="not supported"):
        read_euroc_sensor_yaml(p)
