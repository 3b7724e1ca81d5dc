"""OccupancyGrid / mesh MarkerArray assembly (no node is spun)."""

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("nav_msgs.msg")
pytest.importorskip("visualization_msgs.msg")
pytest.importorskip("skimage", reason="scikit-image (marching cubes) is not installed")

from builtin_interfaces.msg import Time  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from prism_ros.core.mesh import BlockMesher  # noqa: E402
from prism_ros.core.occupancy import OccupancyGridBuilder  # noqa: E402
from prism_ros.sim.synthetic import SyntheticSequence  # noqa: E402
from prism_ros.ros import conversions as cv  # noqa: E402

from test_occupancy import VOX, ZMAX, ZMIN, fuse, new_map  # noqa: E402

pytestmark = [pytest.mark.ros]

HDR = Header(stamp=Time(sec=12, nanosec=5), frame_id="odom")


def test_occupancy_grid_message_layout():
    data = np.array([[0, 10, -1], [100, 65, 25]], np.int8)  # row = y
    msg = cv.occupancy_grid_to_msg(HDR, data, (-1.25, 2.0), 0.05, 0.1)
    assert (msg.info.width, msg.info.height) == (3, 2) and msg.info.resolution == pytest.approx(0.05)
    assert (msg.info.origin.position.x, msg.info.origin.position.y, msg.info.origin.position.z) == (
        -1.25,
        2.0,
        pytest.approx(0.1),
    )
    assert msg.info.origin.orientation.w == 1.0 and msg.header.frame_id == "odom"
    assert msg.info.map_load_time.sec == 12
    # row-major from the origin: data[y * width + x]
    assert list(msg.data) == [0, 10, -1, 100, 65, 25]
    with pytest.raises(ValueError, match="-1 or in 0..100"):
        cv.occupancy_grid_to_msg(HDR, np.array([[101]]), (0, 0), 0.05)
    with pytest.raises(ValueError, match="non-empty"):
        cv.occupancy_grid_to_msg(HDR, np.zeros((0, 3), np.int8), (0, 0), 0.05)


def test_grid_and_mesh_messages_from_a_map():
    seq = SyntheticSequence(n_frames=10, seed=0)
    m = new_map()
    fuse(m, seq, range(10))
    b = OccupancyGridBuilder(VOX, ZMIN, ZMAX)
    b.update(m)
    g = b.grid()
    msg = cv.occupancy_grid_to_msg(HDR, g.data, g.origin_xy, g.resolution, g.z)
    back = np.frombuffer(bytes(np.asarray(msg.data, dtype=np.int8)), np.int8).reshape(msg.info.height, msg.info.width)
    assert np.array_equal(back, g.data)
    # a world point lands in the cell the message geometry says
    r, c = 7, 11
    x = msg.info.origin.position.x + (c + 0.5) * msg.info.resolution
    y = msg.info.origin.position.y + (r + 0.5) * msg.info.resolution
    assert g.cell_of(np.array([[x, y]])) == (np.array([r]), np.array([c]))

    me = BlockMesher(100000)
    me.update(m)
    slot, mesh = next(iter(me.meshes.items()))
    rgb = cv.sigma_colormap(mesh["sigma"], 1e-3, 0.04)
    t0 = time.perf_counter()
    mk = cv.mesh_block_marker(HDR, mesh["verts"], mesh["faces"], rgb, slot)
    assert mk.type == Marker.TRIANGLE_LIST and mk.id == slot
    assert len(mk.points) == 3 * len(mesh["faces"]) == len(mk.colors)
    f0 = mesh["faces"][0]
    assert [mk.points[1].x, mk.points[1].y, mk.points[1].z] == pytest.approx(mesh["verts"][f0[1]].tolist(), abs=1e-6)
    assert mk.colors[2].r == pytest.approx(rgb[f0[2], 0] / 255.0)
    arr = cv.mesh_marker_array(HDR, [mk])
    assert arr.markers[0].action == Marker.DELETEALL and arr.markers[1] is mk
    print(f"marker of {len(mesh['faces'])} triangles: {(time.perf_counter() - t0) * 1e3:.1f} ms")


def _publish_frames(h, camera, frames, period_s=0.05):
    """Colour, depth and camera_info of each frame into the node under test (stamps 1 s + frame time)."""
    for fr in frames:
        header = Header(stamp=cv.sec_to_stamp(1.0 + fr.stamp), frame_id="camera_color_optical_frame")
        h.pub_info.publish(cv.camera_to_camera_info(camera, header))
        h.pub_depth.publish(cv.depth_to_image(fr.depth, header, "32FC1"))
        h.pub_color.publish(cv.rgb_to_image(fr.rgb, header, "bgr8"))
        time.sleep(period_s)


@pytest.mark.slow
def test_node_publishes_occupancy_and_mesh():
    """The real filter in the node on the synthetic room; base frame = the room's world frame
    (T_base_camera = the first ground-truth pose), so the default band sees the room."""
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import OccupancyGrid
    from rclpy.parameter import Parameter
    from scipy.spatial.transform import Rotation
    from visualization_msgs.msg import MarkerArray

    from prism_ros.ros.node import PrismNode
    from prism_ros.ros.qos import latched_qos, reliable_qos
    from prism_ros.ros.env import claim_domain_id
    from ros_harness import RosHarness

    ds = SyntheticSequence(n_frames=20, seed=0)
    frames = [ds[i] for i in range(len(ds))]
    T0 = frames[0].T_w_c_gt
    h = RosHarness(claim_domain_id(61))
    try:
        h.node_io(depth=50)
        occ = h.collect(OccupancyGrid, "/prism/occupancy", latched_qos(1))
        mesh = h.collect(MarkerArray, "/prism/mesh", latched_qos(1))
        diag = h.collect(DiagnosticArray, "/diagnostics", reliable_qos(5))
        over = [
            Parameter("sensor_qos", value="reliable"),
            Parameter("queue_size", value=30),
            Parameter("T_base_camera_xyz_m", value=[float(v) for v in T0[:3, 3]]),
            Parameter(
                "T_base_camera_rpy_deg",
                value=[float(v) for v in Rotation.from_matrix(T0[:3, :3]).as_euler("xyz", degrees=True)],
            ),
            Parameter("occupancy_publish_rate_hz", value=4.0),
            Parameter("mesh_publish_rate_hz", value=2.0),
            Parameter("diagnostics_period_s", value=0.5),
        ]
        node = PrismNode(context=h.context, filter_factory=None, warmup=True, parameter_overrides=over)
        h.attach(node)
        _publish_frames(h, ds.camera, frames)
        assert h.wait_for(lambda: len(h.odom) >= len(ds), 60)
        n_occ = len(occ)
        assert h.wait_for(lambda: len(occ) > n_occ and len(mesh) > 0, 20)
        g = occ[-1]
        assert g.header.frame_id == "odom" and g.info.resolution == pytest.approx(0.02)
        d = np.frombuffer(bytes(np.asarray(g.data, dtype=np.int8)), np.int8)
        assert d.min() >= -1 and d.max() <= 100
        assert np.mean(d >= 65) > 0.02 and np.mean((d >= 0) & (d <= 25)) > 0.2 and np.mean(d == -1) > 0.05
        ma = mesh[-1]
        assert ma.markers[0].action == Marker.DELETEALL and len(ma.markers) > 10
        assert all(m.type == Marker.TRIANGLE_LIST and len(m.points) % 3 == 0 for m in ma.markers[1:])
        assert h.wait_for(
            lambda: any(
                kv.key == "mesh_triangles" and int(kv.value) > 0 for a in diag for s in a.status for kv in s.values
            ),
            10,
        )
        keys = {kv.key for a in diag for s in a.status for kv in s.values}
        assert {
            "occupancy_build_ms_last",
            "occupancy_snapshot_ms_last",
            "occupancy_rate_hz",
            "mesh_build_ms_last",
            "mesh_skipped_total",
            "occupancy_columns_pending",
            "mesh_blocks_pending",
            "free_space_carve_ms_last",
            "free_space_bricks",
        } <= keys
        # what the threads and callbacks cost: some window saw frames arrive and the filter work
        windows = [{kv.key: kv.value for kv in s.values} for a in diag for s in a.status]
        busy = [w for w in windows if float(w.get("callback_depth_hz", 0)) > 0]
        assert busy and max(float(w["cpu_filter_pct"]) for w in busy) > 1.0
        assert all(float(w["callback_depth_us_mean"]) > 0 and "cpu_executor_pct" in w for w in busy)
        assert any("cpu_mesh_pct" in w for w in windows)  # the mesh process is counted while it runs
        # the mesh process is a ROS node named after this one; killed, it is replaced at the next update
        assert h.wait_for(lambda: (node.get_name() + "_mesh", "/") in node.get_node_names_and_namespaces(), 10)
        pid = node._map_out.mesh_pid
        os.kill(pid, signal.SIGKILL)
        n_mesh = len(mesh)
        assert h.wait_for(lambda: len(mesh) > n_mesh and node._map_out.mesh_pid not in (None, pid), 60)
        assert node._map_out._use_mesh_process and node._map_out._mesh_failures == 1
        h.detach(node)
    finally:
        h.shutdown()


def test_a_slow_mesh_never_delays_a_frame(monkeypatch):
    """The mesh is built on the output thread: while a mesh build is held up, every frame is still
    tracked and published, and the mesh requests in the meantime are skipped (counted), not queued."""

    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.parameter import Parameter

    from prism_ros.ros.env import claim_domain_id
    from prism_ros.ros.node import PrismNode
    from prism_ros.ros.outputs import MapOutputs
    from prism_ros.ros.qos import latched_qos, reliable_qos
    from ros_harness import RosHarness
    from visualization_msgs.msg import MarkerArray

    release, building = threading.Event(), threading.Event()
    build = MapOutputs._build_mesh

    def held_build(self, *a, **kw):
        building.set()
        release.wait(60)
        return build(self, *a, **kw)

    monkeypatch.setattr(MapOutputs, "_build_mesh", held_build)
    ds = SyntheticSequence(n_frames=24, seed=0)
    frames = [ds[i] for i in range(len(ds))]
    h = RosHarness(claim_domain_id(62))
    try:
        h.node_io(depth=50)
        mesh = h.collect(MarkerArray, "/prism/mesh", latched_qos(1))
        diag = h.collect(DiagnosticArray, "/diagnostics", reliable_qos(5))
        over = [
            Parameter("sensor_qos", value="reliable"),
            Parameter("queue_size", value=30),
            Parameter("mesh_publish_rate_hz", value=10.0),
            Parameter("diagnostics_period_s", value=0.5),
        ]
        node = PrismNode(context=h.context, filter_factory=None, warmup=True, parameter_overrides=over)
        h.attach(node)
        _publish_frames(h, ds.camera, frames)
        # every frame comes out while the first mesh build is still held
        assert h.wait_for(lambda: len(h.odom) >= len(ds), 60) and building.is_set() and not mesh
        time.sleep(0.5)  # more mesh requests while it is held: skipped

        def kv(key):
            vals = [int(k.value) for a in diag for s in a.status for k in s.values if k.key == key]
            return vals[-1] if vals else -1

        assert h.wait_for(lambda: kv("mesh_skipped_total") > 0, 10)
        release.set()
        assert h.wait_for(lambda: len(mesh) > 0 and kv("mesh_published_total") > 0, 30)
        assert len(mesh[-1].markers) > 10
    finally:
        release.set()
        h.shutdown()


def test_a_dead_mesh_process_is_reported_not_hung():
    """The mesh process's death reaches the output thread as a RuntimeError (it then meshes itself)."""
    from prism_ros.ros.env import claim_domain_id
    from prism_ros.ros.mesh_process import MeshProcess

    seq = SyntheticSequence(n_frames=4, seed=0)
    m = new_map()
    fuse(m, seq, range(4))
    snap = BlockMesher(64).snapshot(m)
    proc = MeshProcess("/prism_test/mesh", claim_domain_id(63))
    try:
        ms, tris = proc.build((1, 0), "odom", snap, ("sigma", 0.001, 0.08))
        assert tris > 0 and ms > 0
        os.kill(proc._proc.pid, signal.SIGKILL)
        proc._proc.join(5)
        with pytest.raises(RuntimeError, match="died"):
            proc.build((2, 0), "odom", snap, ("sigma", 0.001, 0.08))
    finally:
        proc.stop()
    assert not proc.alive


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_mesh_process_dies_with_the_thread_that_started_it():
    """A crashed node never leaves its mesh process behind (PR_SET_PDEATHSIG follows the creating thread:
    the node creates it on its long-lived output thread)."""
    from prism_ros.ros.env import claim_domain_id
    from prism_ros.ros.mesh_process import MeshProcess

    box = {}
    starter = threading.Thread(target=lambda: box.update(proc=MeshProcess("/prism_test/mesh", claim_domain_id(64))))
    starter.start()
    starter.join(60)
    proc = box["proc"]
    proc._proc.join(10)
    assert not proc.alive, "the child outlived the thread that started it"
    assert proc._proc.exitcode == -signal.SIGKILL
    proc.stop()
