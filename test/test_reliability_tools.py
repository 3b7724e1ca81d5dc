"""Reliability: property tests of the converters and the synchroniser, the
player on a bag with an unknown message type, the offline runner on a truncated
image, a multi-second gap with the real filter, and a short ``prism-ros soak`` run."""

import array
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
_FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ converters (hypothesis)
def _img(h, w, enc, payload: bytes, step, bigendian=0):
    from sensor_msgs.msg import Image

    m = Image()
    m.height, m.width, m.encoding, m.step, m.is_bigendian = h, w, enc, step, bigendian
    m.data = array.array("B", payload)
    return m


@pytest.mark.ros
@_FAST
@given(
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    pad=st.integers(0, 5),
    enc=st.sampled_from(["rgb8", "bgr8", "mono8"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_colour_roundtrip_any_size_and_padding(h, w, pad, enc, seed):
    pytest.importorskip("rclpy")
    from prism_ros.ros import conversions as cv

    ch = 1 if enc == "mono8" else 3
    px = np.random.default_rng(seed).integers(0, 256, (h, w, ch), dtype=np.uint8)
    rows = np.hstack([px.reshape(h, -1), np.full((h, pad), 7, np.uint8)])
    out = cv.image_to_rgb(_img(h, w, enc, rows.tobytes(), w * ch + pad))
    exp = {"rgb8": px, "bgr8": px[..., ::-1], "mono8": np.repeat(px, 3, axis=2)}[enc]
    np.testing.assert_array_equal(out, exp)


@pytest.mark.ros
@_FAST
@given(
    h=st.integers(0, 5),
    w=st.integers(0, 5),
    step=st.integers(0, 40),
    n=st.integers(0, 200),
    enc=st.sampled_from(["rgb8", "bgr8", "mono8", "16UC1", "32FC1", "mono16", "yuv422", "", "bayer_rggb8"]),
    big=st.integers(0, 1),
    depth=st.booleans(),
)
def test_any_image_message_decodes_or_raises_input_error(h, w, step, n, enc, big, depth):
    """Arbitrary (inconsistent) Image messages never crash a converter with anything
    but InputError, and what they return has the message's size and a sane type."""
    pytest.importorskip("rclpy")
    from prism_ros.ros import conversions as cv

    m = _img(h, w, enc, bytes(np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)), step, big)
    try:
        out = cv.image_to_depth_m(m) if depth else cv.image_to_rgb(m)
    except cv.InputError as e:
        assert str(e)
        return
    if depth:
        assert out.shape == (h, w) and out.dtype == np.float32
        assert np.all(np.isfinite(out)) and np.all(out >= 0)
    else:
        assert out.shape == (h, w, 3) and out.dtype == np.uint8


@pytest.mark.ros
@_FAST
@given(
    d=st.lists(
        st.one_of(st.floats(0.0, 20.0, width=32), st.just(float("nan")), st.just(float("inf")), st.just(-1.0)),
        min_size=1,
        max_size=30,
    ),
)
def test_depth_32fc1_invalid_values_become_zero(d):
    pytest.importorskip("rclpy")
    from prism_ros.ros import conversions as cv

    a = np.asarray(d, np.float32).reshape(1, -1)
    out = cv.image_to_depth_m(_img(1, a.shape[1], "32FC1", a.astype("<f4").tobytes(), 4 * a.shape[1]))
    ok = np.isfinite(a) & (a > 0)
    np.testing.assert_array_equal(out[ok], a[ok])
    assert np.all(out[~ok] == 0)


@pytest.mark.ros
@_FAST
@given(n=st.integers(0, 40), seed=st.integers(0, 2**31 - 1))
def test_pointcloud2_roundtrip(n, seed):
    pytest.importorskip("rclpy")
    from std_msgs.msg import Header

    from prism_ros.ros import conversions as cv

    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-50, 50, (n, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    sigma = rng.uniform(1e-4, 1.0, n).astype(np.float32)
    wgt = rng.integers(1, 200, n).astype(np.float32)
    msg = cv.make_map_cloud(Header(frame_id="odom"), xyz, rgb, sigma, wgt)
    assert msg.width == n and msg.height == 1 and msg.row_step == msg.point_step * n
    assert len(msg.data) == msg.row_step
    got = cv.read_cloud(msg)
    np.testing.assert_array_equal(np.stack([got["x"], got["y"], got["z"]], 1).reshape(-1, 3), xyz)
    np.testing.assert_array_equal(got["sigma"], sigma)
    np.testing.assert_array_equal(got["weight"], wgt)
    np.testing.assert_array_equal(cv.unpack_rgb_float(got["rgb"]).reshape(-1, 3), rgb)


# ------------------------------------------------------------------ synchroniser (hypothesis)
@_FAST
@given(
    events=st.lists(st.tuples(st.integers(0, 1), st.floats(-0.05, 0.3), st.booleans()), min_size=0, max_size=80),
    slop=st.floats(0.0, 0.05),
    max_pending=st.integers(1, 12),
)
def test_pairer_invariants_under_arbitrary_streams(events, slop, max_pending):
    """Random interleavings, jitter, duplicates, backwards steps and gaps: every pair is
    within slop, pairs are strictly increasing per stream (until a reset), the pending
    queues stay bounded, and every message is paired, dropped or pending."""
    from prism_ros.ros.sync import ApproxTimePairer

    p = ApproxTimePairer(slop, max_pending=max_pending)
    t = [10.0, 10.0]
    n_in = [0, 0]
    last_pair = None
    resets = 0
    for s, dt, dup in events:
        t[s] = t[s] if dup else t[s] + dt
        n_in[s] += 1
        out = (p.add_a if s == 0 else p.add_b)(t[s], ("a" if s == 0 else "b", t[s]))
        if p.stats.resets != resets:
            resets, last_pair = p.stats.resets, None
        for a, b, ta, tb in out:
            assert a == ("a", ta) and b == ("b", tb)
            assert abs(ta - tb) <= slop + 1e-12
            if last_pair is not None:
                assert ta > last_pair[0] and tb > last_pair[1]
            last_pair = (ta, tb)
        pa, pb = p.pending
        assert pa <= max_pending and pb <= max_pending
    st_ = p.stats
    pa, pb = p.pending
    assert st_.paired + st_.dropped_a + pa == n_in[0]
    assert st_.paired + st_.dropped_b + pb == n_in[1]


# ------------------------------------------------------------------ player: unknown types
def _write_bag(path, ts):
    from rosbags.rosbag2 import Writer

    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    Image = ts.types["sensor_msgs/msg/Image"]
    String = ts.types["std_msgs/msg/String"]
    Vec = ts.types["geometry_msgs/msg/Vector3"]
    rng = np.random.default_rng(1)
    with Writer(path, version=8) as w:
        c_rgb = w.add_connection("/cam/color/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        c_d = w.add_connection("/cam/depth/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        c_s = w.add_connection("/chatter", "std_msgs/msg/String", typestore=ts)
        c_v = w.add_connection("/some/vector", "geometry_msgs/msg/Vector3", typestore=ts)
        for i in range(3):
            t = 50.0 + 0.1 * i
            hdr = Header(stamp=Time(sec=int(t), nanosec=int(round((t % 1) * 1e9))), frame_id="cam")
            rgb = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8).reshape(-1)
            mm = np.full((4, 5), 1000, np.uint16).view(np.uint8).reshape(-1)
            ns = int(t * 1e9)
            w.write(
                c_rgb,
                ns,
                ts.serialize_cdr(
                    Image(header=hdr, height=4, width=5, encoding="rgb8", is_bigendian=0, step=15, data=rgb),
                    "sensor_msgs/msg/Image",
                ),
            )
            w.write(
                c_d,
                ns + 1,
                ts.serialize_cdr(
                    Image(header=hdr, height=4, width=5, encoding="16UC1", is_bigendian=0, step=10, data=mm),
                    "sensor_msgs/msg/Image",
                ),
            )
            w.write(c_s, ns + 2, ts.serialize_cdr(String(data=f"hello {i}"), "std_msgs/msg/String"))
            w.write(c_v, ns + 3, ts.serialize_cdr(Vec(x=1.0, y=2.0, z=3.0), "geometry_msgs/msg/Vector3"))


@pytest.mark.ros
def test_player_skips_unknown_message_types_with_a_warning(tmp_path):
    pytest.importorskip("rclpy")
    pytest.importorskip("rosbags")
    from rosbags.typesys import Stores, get_typestore

    from prism_ros.ros.env import claim_domain_id, ros_env

    bag = tmp_path / "bag"
    _write_bag(bag, get_typestore(Stores.ROS2_HUMBLE))
    cmd = [sys.executable, "-m", "prism_ros.ros.player", str(bag), "--rate", "5", "--wait-for-subscribers", "0"]
    p = subprocess.run(cmd, env=ros_env(claim_domain_id(63)), capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "warning: skipping topic /chatter [std_msgs/msg/String]: unsupported message type" in p.stderr
    assert "warning: skipping topic /some/vector [geometry_msgs/msg/Vector3]" in p.stderr
    assert "published 3 frames" in p.stdout


# ------------------------------------------------------------------ runner: truncated JPEG
def test_runner_skips_truncated_jpeg(redkitchen_copy, tmp_path, capfd):
    pytest.importorskip("prism_ros.core.filter")
    from prism_ros.config import PrismConfig
    from prism_ros.datasets import open_dataset
    from prism_ros.eval.evaluate import run_offline

    d = redkitchen_copy
    jpg = d / "frame-000002.color.jpg"
    jpg.write_bytes(jpg.read_bytes()[:300])  # truncated mid-stream
    png = d / "frame-000004.depth.png"
    png.write_bytes(png.read_bytes()[:1000])  # truncated PNG
    m = run_offline(open_dataset(str(d)), PrismConfig.from_yaml(), str(tmp_path / "out"), progress=False, report=False)
    assert m["skipped_indices"] == [2, 4] and m["frames"] == 4
    err = capfd.readouterr().err
    assert "warning: skipping frame 2" in err and "warning: skipping frame 4" in err


# ------------------------------------------------------------------ a gap of several seconds (real filter)
def test_gap_of_several_seconds_keeps_tracking(redkitchen_dir):
    """Frames 0-15, then 5 s of silence (stamps jump by 5 s), then frames 16-25: dt is
    clamped by max_dt_s, tracking continues and the map is not corrupted."""
    pytest.importorskip("prism_ros.core.filter")
    from prism_ros.config import PrismConfig
    from prism_ros.core.filter import PrismFilter
    from prism_ros.datasets import open_dataset

    ds = open_dataset(str(redkitchen_dir))
    f = PrismFilter(PrismConfig.from_yaml(), ds.camera, T_w_c0=ds[0].T_w_c_gt)
    err = []
    for i in range(0, 26):
        fr = ds[i]
        t = fr.stamp + (5.0 if i >= 16 else 0.0)
        r = f.step(fr.rgb, fr.depth, t)
        assert r.tracking_ok, (i, r.status)
        assert np.all(np.isfinite(r.T_w_c)) and np.all(np.isfinite(r.pose_cov))
        err.append(np.linalg.norm(r.T_w_c[:3, 3] - fr.T_w_c_gt[:3, 3]))
    assert max(err[16:]) < 0.05, err
    # fused at integrate_rate_hz (10 Hz of these 30 Hz frames): 0, 3, ..., 15, then the first
    # frame after the gap and every third one on: 16, 19, 22, 25
    assert f.frames_fused == 10


# ------------------------------------------------------------------ soak (short)
@pytest.mark.slow
@pytest.mark.ros
@pytest.mark.timeout(120)
def test_soak_short_run_reports_sane_json(redkitchen_dir, tmp_path):
    pytest.importorskip("rclpy")
    pytest.importorskip("psutil")
    pytest.importorskip("prism_ros.core.filter")
    from prism_ros.ros.env import claim_domain_id

    params = tmp_path / "no_cloud.yaml"  # a parameter file reaches the node
    params.write_text("/**:\n  ros__parameters:\n    map_publish_rate_hz: 0.0\n    occupancy_publish_rate_hz: 0.5\n")
    cmd = [
        sys.executable,
        "-c",
        "import sys; from prism_ros.cli import main; sys.exit(main(sys.argv[1:]))",
        "soak",
        str(redkitchen_dir),
        "--rate",
        "3",
        "--duration-s",
        "14",
        "--settle-s",
        "6",
        "--sample-s",
        "2",
        "--frames",
        "60",
        "--domain-id",
        str(claim_domain_id(62)),
        "--log-dir",
        str(tmp_path),
        "--params-file",
        str(params),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=110, cwd=str(ROOT))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    res = json.loads(lines[-1])
    assert {"rss_growth_pct", "latency_p95_ms", "drop_rate", "frames_processed"} <= set(res)
    assert res["frames_processed"] > 10
    assert res["frames_published"] >= res["frames_processed"]
    assert 0.0 <= res["drop_rate"] < 1.0
    assert 0.0 < res["latency_p95_ms"] < 5000.0
    # percentiles over every frame after settling, from the node's cumulative histogram
    assert 0 < res["latency_frames"] <= res["frames_processed"]
    assert res["latency_p50_ms"] <= res["latency_p95_ms"] <= res["latency_p99_ms"]
    assert 0.0 <= res["latency_over_100ms_frac"] <= 1.0
    assert res["latency_e2e_p95_ms"] >= res["latency_p50_ms"]  # transport and executor wait on top
    assert math.isfinite(res["rss_growth_pct"]) and -50.0 < res["rss_growth_pct"] < 200.0
    assert res["rss_end_mib"] > 50
    assert any(ln.split()[0].replace(".", "").isdigit() for ln in lines[2:-1])  # RSS over time printed
    assert (tmp_path / "node.log").is_file() and (tmp_path / "player.log").is_file()
    assert res["cloud_published_total"] == 0 and res["occupancy_published_total"] >= 2, res
    assert res["cpu_filter_pct"] > 1.0 and res["callback_depth_hz"] > 1.0, res  # the threads' load
