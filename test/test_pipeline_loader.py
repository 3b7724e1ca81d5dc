"""The offline loader: frames in order, loaded ahead in one thread below the filter's priority."""

from __future__ import annotations

import os
import threading

import cv2
import numpy as np
import pytest

from prism_ros import pipeline
from prism_ros.datasets.base import Frame, FrameLoadError


pytestmark = pytest.mark.skipif(not hasattr(os, "setpriority"), reason="no per-thread priorities on this OS")


class _Recording:
    """Four frames; frame 2 is unreadable.  Records the loading thread, its nice value and
    OpenCV's thread count at each load."""

    def __init__(self):
        self.seen = []

    def __len__(self):
        return 4

    def __getitem__(self, i):
        tid = threading.get_native_id()
        self.seen.append((i, tid, os.getpriority(os.PRIO_PROCESS, tid), cv2.getNumThreads()))
        if i == 2:
            raise FrameLoadError(i, "frame2.png", "not a readable image")
        return Frame(i, 0.05 * i, np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), np.float32), None)


@pytest.fixture
def cv_threads():
    n = cv2.getNumThreads()
    yield n
    cv2.setNumThreads(n)


def _load_all(prefetch: int):
    """(recording, _frames' output, the caller's thread id, its nice) after loading all four frames."""
    ds = _Recording()
    main_tid = threading.get_native_id()
    main_nice = os.getpriority(os.PRIO_PROCESS, main_tid)
    out = list(pipeline._frames(ds, prefetch=prefetch))
    assert [i for i, _, _ in out] == [0, 1, 2, 3]
    return ds, out, main_tid, main_nice


def test_prefetch_loads_in_order_in_one_thread_below_the_filter(cv_threads):
    ds, out, main_tid, main_nice = _load_all(prefetch=2)
    assert [type(f).__name__ for _, f, _ in out] == [
        "PipelineFrame",
        "PipelineFrame",
        "FrameLoadError",
        "PipelineFrame",
    ]
    assert [f.stamp for _, f, _ in out if not isinstance(f, FrameLoadError)] == pytest.approx([0.0, 0.05, 0.15])
    tids = {tid for _, tid, _, _ in ds.seen}
    assert len(tids) == 1 and main_tid not in tids  # one loading thread, not the caller's
    assert {nice for _, _, nice, _ in ds.seen} == {min(19, main_nice + pipeline.LOADER_NICE)}
    assert {n for _, _, _, n in ds.seen} == {1}
    assert os.getpriority(os.PRIO_PROCESS, main_tid) == main_nice  # the filter's thread is untouched


def test_without_prefetch_the_caller_loads_at_its_own_priority(cv_threads):
    ds, _, main_tid, main_nice = _load_all(prefetch=0)
    assert {(tid, nice, n) for _, tid, nice, n in ds.seen} == {(main_tid, main_nice, cv_threads)}


def test_cpu_meter_counts_this_process_cpu_time(tmp_path, monkeypatch):
    """CpuMeter: about 100 ms of busy work over 4 'frames' is about 25 ms a frame on one core;
    sleeping costs no CPU; the steal is /proc/stat's 8th value over the wall time and the cores."""
    import os
    import time

    from prism_ros import stats
    from prism_ros.stats import CpuMeter

    fake = tmp_path / "stat"
    fake.write_text("cpu  1579371 288897 58288 7465668 3982 0 8932 175338 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    assert stats._steal_s(str(fake)) == 175338 / os.sysconf("SC_CLK_TCK")
    assert stats._steal_s(str(tmp_path / "absent")) is None
    steal = iter([10.0, 10.0 + 0.05 * (os.cpu_count() or 1)])  # 50 ms of every core stolen
    monkeypatch.setattr(stats, "_steal_s", lambda: next(steal))
    w0 = time.perf_counter()
    m = CpuMeter()
    t0 = time.thread_time()  # this thread's busy time (the meter counts every thread of the process)
    while time.thread_time() - t0 < 0.1:
        pass
    time.sleep(0.1)
    f = m.figures(4)
    wall = time.perf_counter() - w0
    # 25 ms a frame of this thread, plus what other threads of the test process spent meanwhile
    assert 24.0 < f["cpu_ms_per_frame"] < 40.0, f
    assert 0.095 / wall < f["cpu_cores_used"] < 0.16 / wall, (f, wall)  # 0.1 s busy, ~0.1 s asleep
    assert f["cpu_steal_fraction"] == pytest.approx(0.05 / wall, rel=0.05), (f, wall)  # 0.05 s of every core
    monkeypatch.setattr(stats, "_steal_s", lambda: None)
    f0 = CpuMeter().figures(0)  # no frames, no /proc/stat
    assert f0["cpu_ms_per_frame"] is None and f0["cpu_steal_fraction"] is None


def test_cpu_model_names_the_family_and_model_and_the_machine_meter_shares(tmp_path):
    from prism_ros import stats

    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
        "model name\t: AMD EPYC\n\nprocessor\t: 1\ncpu family\t: 25\n"
    )
    assert stats.cpu_model(str(info)) == "AMD EPYC (family 26, model 2)"
    info.write_text("processor\t: 0\nmodel name\t: Some ARM core\n")
    assert stats.cpu_model(str(info)) == "Some ARM core"
    # MachineMeter: shares of /proc/stat's user+nice+system+irq+softirq, idle+iowait, steal
    st = tmp_path / "stat"
    tck = os.sysconf("SC_CLK_TCK")
    st.write_text("cpu  100 0 0 100 0 0 0 0 0 0\n")
    m = stats.MachineMeter(str(st))
    st.write_text(f"cpu  {100 + 6 * tck} {tck} {tck} {100 + tck} {tck} 0 {tck} {tck} 0 0\n")
    f = m.figures()
    assert f["busy_fraction"] == pytest.approx(9 / 12) and f["idle_fraction"] == pytest.approx(2 / 12)
    assert f["steal_fraction"] == pytest.approx(1 / 12)
    assert stats.MachineMeter(str(tmp_path / "absent")).figures()["busy_fraction"] is None
