"""What the node's threads and callbacks cost (prism_ros.ros.thread_load), without a node."""

import inspect
import os
import threading
import time

import pytest

from prism_ros.ros.thread_load import CallbackTimes, ThreadLoad

linux_only = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux /proc")


def _spin(stop: threading.Event) -> None:
    x = 0
    while not stop.is_set():
        x += 1


@linux_only
def test_a_busy_thread_shows_its_cpu_and_a_sleeping_one_none():
    load = ThreadLoad()
    stop = threading.Event()
    busy = threading.Thread(target=_spin, args=(stop,), daemon=True)
    idle = threading.Thread(target=stop.wait, daemon=True)
    busy.start()
    idle.start()
    load.register_thread("busy", busy.native_id)
    load.register_thread("idle", idle.native_id)
    load.window()  # start the window
    time.sleep(0.6)
    cpu = load.window()
    stop.set()
    busy.join()
    idle.join()
    # the busy thread holds the interpreter lock most of the window (this thread sleeps); 10 ms ticks
    assert cpu["busy"] > 40.0, cpu
    assert cpu["idle"] < 5.0, cpu
    assert cpu["other"] < 50.0, cpu  # this test's main thread slept
    # a child process is read from its own /proc entry from the moment it is registered (its past CPU, here
    # this whole test process's, never counts), and forgotten with None
    load.register_child("me", os.getpid())
    time.sleep(0.2)
    assert load.window()["me"] < 100.0
    load.register_child("me", None)
    assert "me" not in load.window()


def test_callback_times_count_calls_and_keep_the_signature_rclpy_reads():
    times = CallbackTimes()
    with_info = times.wrap("image", lambda msg, info: time.sleep(0.002))
    plain = times.wrap("imu", lambda msg: None)
    # rclpy passes the MessageInfo to callbacks whose signature binds two arguments
    inspect.signature(with_info).bind(object(), object())
    with pytest.raises(TypeError):
        inspect.signature(plain).bind(object(), object())
    for _ in range(5):
        with_info(1, 2)
    for _ in range(20):
        plain(1)
    w = times.window()
    assert set(w) == {"image", "imu"}
    hz, us, ms_per_s = w["image"]
    assert us >= 2000.0 and us < 2000.0 + 50_000.0  # each call slept 2 ms
    assert ms_per_s == pytest.approx(hz * us / 1000.0)
    assert w["imu"][0] == pytest.approx(4 * hz)  # 20 calls against 5 in the same window
    assert times.thread_id == threading.get_native_id()
    assert times.window() == {}  # a new window


def test_a_failing_callback_is_still_counted():
    times = CallbackTimes()
    bad = times.wrap("info", lambda msg: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        bad(None)
    assert times.window()["info"][0] > 0
