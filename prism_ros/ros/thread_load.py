"""What the node's threads and callbacks cost, for the diagnostics (no rclpy).

* :class:`ThreadLoad`: CPU time of named threads of this process (the ROS executor, the filter, the output
  thread), of the rest of the process (Numba's worker threads, DDS) and of child processes (the mesh process),
  in percent of one core over each reporting window.  Linux only (``/proc``); elsewhere it reports nothing.
* :class:`CallbackTimes`: wall time inside each kind of subscription callback (IMU, images, camera_info): the
  interpreter lock those callbacks hold is time the filter's thread cannot run Python.  rclpy's own taking and
  deserialising of a message is not inside the callback: the executor's CPU share covers both.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from typing import Callable, Dict, Optional, Tuple

__all__ = ["ThreadLoad", "CallbackTimes"]

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def _cpu_s(path: str) -> Optional[float]:
    """utime + stime (s) from a /proc .../stat file; None when unreadable (thread or process gone)."""
    try:
        with open(path, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * _TICK_S
    except (OSError, IndexError, ValueError):
        return None


class ThreadLoad:
    """CPU share (percent of one core) of named threads, the rest of this process, and child processes."""

    def __init__(self):
        self._lock = threading.Lock()
        self._threads: Dict[str, int] = {}  # name -> native thread id
        self._children: Dict[str, int] = {}  # name -> pid
        self._last: Dict[str, float] = {}  # CPU seconds at the last window, or at registration
        self._t_last = time.monotonic()
        self.available = os.path.exists("/proc/self/stat")

    def register_thread(self, name: str, tid: Optional[int] = None) -> None:
        """Count thread ``tid`` (native id; default: the calling thread) as ``name`` (again: nothing changes).
        Its CPU counts from now on: its past, until now in "other", stays out of both."""
        tid = threading.get_native_id() if tid is None else int(tid)
        with self._lock:
            if self._threads.get(name) == tid:
                return
            self._threads[name] = tid
            v = _cpu_s(f"/proc/{os.getpid()}/task/{tid}/stat") if self.available else None
            if v is not None:
                self._last[name] = v
                if "other" in self._last:
                    self._last["other"] -= v

    def register_child(self, name: str, pid: Optional[int]) -> None:
        """Count process ``pid`` as ``name``, its CPU from now on (None: forget it)."""
        with self._lock:
            if pid is None:
                self._children.pop(name, None)
                self._last.pop(name, None)
            elif self._children.get(name) != int(pid):
                self._children[name] = int(pid)
                v = _cpu_s(f"/proc/{int(pid)}/stat") if self.available else None
                if v is not None:
                    self._last[name] = v

    def _read(self) -> Dict[str, float]:
        now: Dict[str, float] = {}
        pid = os.getpid()
        total = _cpu_s(f"/proc/{pid}/stat")
        named = 0.0
        for name, tid in self._threads.items():
            v = _cpu_s(f"/proc/{pid}/task/{tid}/stat")
            if v is not None:
                now[name] = v
                named += v
        if total is not None:
            now["other"] = total - named  # Numba's workers, DDS threads, finished threads
        for name, cpid in self._children.items():
            v = _cpu_s(f"/proc/{cpid}/stat")
            if v is not None:
                now[name] = v
        return now

    def window(self) -> Dict[str, float]:
        """Percent of one core each used since the last call, or since it was registered (the first call: since
        construction)."""
        if not self.available:
            return {}
        with self._lock:
            now, t = self._read(), time.monotonic()
            dt = max(t - self._t_last, 1e-6)
            out = {k: 100.0 * max(v - self._last.get(k, 0.0), 0.0) / dt for k, v in now.items()}
            self._last, self._t_last = now, t
        return out


class CallbackTimes:
    """Count and wall time of each kind of callback, per reporting window; :meth:`wrap` times a callback."""

    def __init__(self):
        self._lock = threading.Lock()
        self._acc: Dict[str, Tuple[int, float]] = {}
        self._t0 = time.monotonic()
        self.thread_id: Optional[int] = None  # native id of the thread that ran the last callback (the executor's)

    def wrap(self, kind: str, fn: Callable) -> Callable:
        @functools.wraps(fn)  # rclpy reads the signature: a second parameter takes the MessageInfo
        def timed(*args):
            self.thread_id = threading.get_native_id()
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                dt = time.perf_counter() - t0
                with self._lock:
                    n, s = self._acc.get(kind, (0, 0.0))
                    self._acc[kind] = (n + 1, s + dt)

        return timed

    def window(self) -> Dict[str, Tuple[float, float, float]]:
        """kind -> (calls per second, mean µs a call, ms a second) since the last call."""
        with self._lock:
            acc, self._acc = self._acc, {}
            t = time.monotonic()
            dt, self._t0 = max(t - self._t0, 1e-6), t
        return {k: (n / dt, 1e6 * s / max(n, 1), 1e3 * s / dt) for k, (n, s) in acc.items()}
