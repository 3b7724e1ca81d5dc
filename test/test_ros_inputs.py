"""The node's input checks (prism_ros.ros.inputs) and its worker hand-over
(prism_ros.ros.work_queue): plain Python, no rclpy."""

import subprocess
import sys
import threading
import time

from prism_ros.core.camera import Camera
from prism_ros.ros import inputs
from prism_ros.ros.work_queue import WorkQueue

CAM = Camera(50.0, 50.0, 31.5, 23.5, 64, 48)
TOPICS = ("/cam/color", "/cam/depth")


def test_no_ros_imported():
    code = (
        "import sys, prism_ros.ros.inputs, prism_ros.ros.work_queue; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'sensor_msgs', 'std_msgs')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_stream_stamps_duplicate_backwards_nonfinite_and_new_timeline():
    m = inputs.StreamMonitor(TOPICS, jump_back_s=1.0)
    assert m.check(0, 10.0, now=0.0) is None
    r = m.check(0, 10.0, now=0.1)
    assert (
        r.key == "stamp_order" and r.text == "/cam/color: colour image duplicate stamp (10.000000 s after 10.000000 s)"
    )
    r = m.check(0, 9.5, now=0.2)
    assert r.key == "stamp_order" and "stamp older than the previous one" in r.text
    assert m.check(0, float("nan"), now=0.3) == inputs.Refusal("stamp", "/cam/color: non-finite stamp")
    assert m.check(0, 8.9, now=0.4) is None  # back by more than jump_back_s: a new timeline
    assert m.check(0, 9.0, now=0.5) is None  # ... whose stamps are the newest now
    # the depth stream is checked on its own
    assert m.check(1, 9.0, now=0.5) is None
    assert m.check(1, 9.0, now=0.6).text.startswith("/cam/depth: depth image duplicate stamp")


def test_stream_silence_of_the_other_stream():
    m = inputs.StreamMonitor(TOPICS, jump_back_s=1.0, silence_s=2.0)
    m.check(0, 1.0, now=100.0)
    assert m.silence(0, now=101.9) is None  # colour alone for 1.9 s: not yet
    w = m.silence(0, now=102.5)
    assert w.key == "silence1"
    assert w.text == (
        "colour images arrive on /cam/color but no depth image on /cam/depth for 2 s; "
        "nothing to pair (the pending buffer is bounded)"
    )
    m.check(1, 1.0, now=102.6)
    assert m.silence(0, now=103.0) is None  # depth is back
    assert m.silence(0, now=104.7).text.endswith("for 2 s; nothing to pair (the pending buffer is bounded)")


def test_frame_sizes():
    assert inputs.frame_refusal((48, 64, 3), (48, 64), CAM) is None
    r = inputs.frame_refusal((48, 64, 3), (24, 32), CAM)
    assert r == inputs.Refusal("size", "size mismatch: colour is 64x48 but depth is 32x24 (register depth to colour)")
    r = inputs.frame_refusal((96, 128, 3), (96, 128), CAM)
    assert r == inputs.Refusal("info_size", "size mismatch: camera_info is 64x48 but the images are 128x96")


def test_source_stamp():
    assert inputs.source_stamp_ns({"source_timestamp": 1234}) == 1234
    assert inputs.source_stamp_ns({"source_timestamp": 0}) is None
    assert inputs.source_stamp_ns({}) is None and inputs.source_stamp_ns(None) is None


# ---------------------------------------------------------------------- work queue
def test_frames_bounded_oldest_dropped_commands_first():
    q = WorkQueue(2)
    assert [q.put_frame(i) for i in range(4)] == [0, 0, 1, 1]
    assert q.set_maxlen(1) == 1
    done = []
    t = threading.Thread(target=lambda: done.append(q.run("save", 5.0)))
    t.start()
    assert _wait(lambda: q._commands)
    cmd, item, cloud = q.take(0.0)
    assert cmd.kind == "save" and item is None and not cloud  # the command before the frame
    assert q.finish(cmd, "/tmp/x.npz") is False
    t.join(5)
    assert done == [(True, "/tmp/x.npz")]
    q.request("cloud")
    q.request("mesh")
    q.request("cloud")  # missed timer ticks: served once
    assert q.take(0.0) == (None, 3, {"cloud", "mesh"})  # the newest frame survived
    assert q.take(0.01) == (None, None, set())


def test_timed_out_command_is_cancelled_not_run_later():
    q = WorkQueue(2)
    ok, msg = q.run("reset", 0.05)  # no worker takes it
    assert not ok and msg == "timed out after 0.05 s waiting for the filter thread; cancelled, not run"
    assert q.take(0.0) == (None, None, set())  # nothing left to run


def test_command_running_past_the_timeout_is_abandoned():
    q = WorkQueue(2)
    out = []
    t = threading.Thread(target=lambda: out.append(q.run("save", 0.2)))
    t.start()
    assert _wait(lambda: q._commands)
    cmd, _, _ = q.take(0.0)  # the worker starts it ...
    t.join(5)
    assert out == [(False, "timed out after 0.2 s while the filter thread runs it; its outcome will be logged")]
    assert q.finish(cmd, "saved") is True  # ... and, finishing, learns that nobody waits


def test_stop_fails_queued_and_new_commands():
    q = WorkQueue(2)
    out = []
    t = threading.Thread(target=lambda: out.append(q.run("load", 5.0)))
    t.start()
    assert _wait(lambda: q._commands)
    q.stop()
    t.join(5)
    assert out == [(False, "node shutting down")]
    assert q.run("save", 5.0) == (False, "node shutting down")
    assert q.take(0.0) is None


def _wait(cond, timeout_s=5.0):
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        if cond():
            return True
        time.sleep(0.005)
    return False


def test_take_waits_for_work():
    q = WorkQueue(3)
    threading.Timer(0.05, q.put_frame, args=("f",)).start()
    t0 = time.monotonic()
    assert q.take(5.0) == (None, "f", set())
    assert time.monotonic() - t0 < 2.0  # woken by the frame, not the timeout
