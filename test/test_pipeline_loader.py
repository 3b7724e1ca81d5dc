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
    assert [type(f).__name__ for _, f, _ in out] == ["PipelineFrame", "PipelineFrame", "FrameLoadError",
                                                      "PipelineFrame"]
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
    m = CpuMeter()
    t0 = time.process_time()
    while time.process_time() - t0 < 0.1:
        pass
    time.sleep(0.1)
    f = m.figures(4)
    assert 20.0 < f["cpu_ms_per_frame"] < 40.0, f
    assert 0.3 < f["cpu_cores_used"] < 0.8, f  # 0.1 s busy in about 0.2 s of wall clock
    assert 0.15 < f["cpu_steal_fraction"] < 0.3, f  # 0.05 s of about 0.2 s
    monkeypatch.setattr(stats, "_steal_s", lambda: None)
    f0 = CpuMeter().figures(0)  # no frames, no /proc/stat
    assert f0["cpu_ms_per_frame"] is None and f0["cpu_steal_fraction"] is None
