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
