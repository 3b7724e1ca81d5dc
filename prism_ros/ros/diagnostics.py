"""The node's bookkeeping: log throttling, frame statistics and the /diagnostics status.

:class:`NodeStats` counts and times frames per reporting window and in totals since start, from any thread;
:meth:`NodeStats.report` turns a window into the one-line log summary and the ``DiagnosticStatus`` whose keys
the soak tool reads (``latency_hist_total``: every frame's receive-to-publish latency since start, 1 ms bins,
:mod:`prism_ros.stats`).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from prism_ros.stats import LatencyHistogram, StageStats

__all__ = ["Throttle", "throttle_key", "NodeStats"]

#: The publisher's clock is this machine's (or synced): an end-to-end latency outside
#: [0, 1 h) means it is not, and is left out.
_E2E_MAX_MS = 3.6e6
#: WARN level when more than this fraction of the offered frames was dropped from the queue.
_WARN_DROP_RATE = 0.1


def throttle_key(key: str, text: str) -> str:
    """Messages that differ only in numbers (stamps, sizes) are throttled together."""
    return key + ":" + re.sub(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?", "#", text)[:80]


class Throttle:
    """Per-key wall-clock throttle for log messages (works under sim time too); :meth:`admit` says whether to log,
    and the caller logs at its own call site (rclpy refuses a second severity from one call site).
    """

    def __init__(self, period_s: float = 2.0):
        self.period_s = period_s
        self._last: Dict[str, float] = {}
        self._suppressed: Dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, key: str, text: str) -> Optional[str]:
        """The line to log now for ``text`` (with the count suppressed since the last one
        of ``key``), or None: throttled."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            n = self._suppressed.pop(key, 0)
            self._last[key] = now
        return text + (f" ({n} similar messages suppressed)" if n else "")


@dataclass
class _Window:
    t0: float = field(default_factory=time.monotonic)
    processed: int = 0
    step_ms: List[float] = field(default_factory=list)
    latency_ms: List[float] = field(default_factory=list)
    latency_e2e_ms: List[float] = field(default_factory=list)
    stages: StageStats = field(default_factory=StageStats)  # the node's own stages (map cloud)
    dropped_queue: int = 0
    bad: int = 0
    lost: int = 0


def _fmt(values: List[float], fn) -> str:
    return f"{fn(values):.2f}" if values else "nan"


class NodeStats:
    """Frame statistics of the node, safe to update from any thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._w = _Window()
        self._totals = {"processed": 0, "dropped_queue": 0, "bad": 0, "bad_imu": 0}
        self._latency_hist = LatencyHistogram()  # receive -> publish, every frame since start
        self._latency_e2e_hist = LatencyHistogram()  # publication -> publish
        self._step_hist = LatencyHistogram()  # the filter's step, every frame since start

    def frame(self, step_ms: float, latency_ms: float, e2e_ms: Optional[float], lost: bool) -> None:
        """One processed frame: its step time, receive-to-publish and (when known)
        publication-to-publish latency, lost or not."""
        with self._lock:
            w = self._w
            w.processed += 1
            self._totals["processed"] += 1
            w.step_ms.append(step_ms)
            self._step_hist.add(step_ms)
            w.latency_ms.append(latency_ms)
            self._latency_hist.add(latency_ms)
            if e2e_ms is not None and 0.0 <= e2e_ms < _E2E_MAX_MS:
                w.latency_e2e_ms.append(e2e_ms)
                self._latency_e2e_hist.add(e2e_ms)
            w.lost += int(lost)

    def stage(self, name: str, ms: float) -> None:
        """Time spent outside the filter step (map cloud extraction), per window."""
        with self._lock:
            self._w.stages.add({name: ms})

    def count(self, what: str, n: int = 1) -> None:
        """``dropped_queue``, ``bad`` (refused frames), ``bad_imu`` (refused IMU samples) or a
        flag of the IMU stream (``imu_gap``, ``imu_rate``, ...: reported as ``<what>_total``)."""
        with self._lock:
            self._totals[what] = self._totals.get(what, 0) + n
            if what in ("dropped_queue", "bad"):
                setattr(self._w, what, getattr(self._w, what) + n)

    def totals(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._totals)

    def report(
        self, name: str, sync_dropped: int, tracking_status: str, stages_ms: Dict[str, float]
    ) -> Tuple[Optional[str], DiagnosticStatus]:
        """Close the window: the log summary (None when nothing happened) and the
        DiagnosticStatus named ``name``; ``stages_ms``: the filter's mean ms per stage
        over the window (the node's own stages are added)."""
        with self._lock:
            w, self._w = self._w, _Window()
            totals = dict(self._totals)
            hist, hist_e2e = self._latency_hist.encode(), self._latency_e2e_hist.encode()
            hist_step = self._step_hist.encode()
        wall = max(time.monotonic() - w.t0, 1e-6)
        n, step, lat, e2e = w.processed, w.step_ms, w.latency_ms, w.latency_e2e_ms
        stages = dict(stages_ms)
        stages.update({k: v["mean"] for k, v in w.stages.summary().items()})
        offered = n + w.dropped_queue
        drop_rate = w.dropped_queue / offered if offered else 0.0
        p95 = lambda v: np.percentile(v, 95)  # noqa: E731
        parts = [f"{n} frames in {wall:.1f} s ({n / wall:.1f} fps)"]
        if step:
            parts.append(f"step mean {np.mean(step):.1f} / max {np.max(step):.1f} ms")
            parts.append(
                f"latency mean {np.mean(lat):.1f} / max {np.max(lat):.1f} ms"
                + (f" (from publication: p95 {p95(e2e):.1f} ms)" if e2e else "")
            )
            if stages:
                parts.append("stages " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(stages.items())) + " ms (mean)")
        parts.append(
            f"queue drops {w.dropped_queue} ({100 * drop_rate:.1f}%), sync drops {sync_dropped} total, "
            f"bad inputs {w.bad}, lost {w.lost}"
        )
        level = DiagnosticStatus.WARN if (w.lost or w.bad or drop_rate > _WARN_DROP_RATE) else DiagnosticStatus.OK
        values = {
            "fps": f"{n / wall:.2f}",
            "step_ms_mean": _fmt(step, np.mean),
            "step_ms_p50": _fmt(step, np.median),
            "step_ms_p99": _fmt(step, lambda v: np.percentile(v, 99)),
            "step_hist_total": hist_step,
            "latency_ms_mean": _fmt(lat, np.mean),
            "latency_ms_p95": _fmt(lat, p95),
            "latency_ms_max": _fmt(lat, np.max),
            # from the publisher's send time (DDS source timestamp) of the later image of the
            # pair: includes transport and the time the images waited in the executor
            "latency_e2e_ms_mean": _fmt(e2e, np.mean),
            "latency_e2e_ms_p95": _fmt(e2e, p95),
            "processed_total": str(totals["processed"]),
            # every frame since start, 1 ms bins as "ms:count ..." (prism_ros.stats)
            "latency_hist_total": hist,
            "latency_e2e_hist_total": hist_e2e,
            "queue_drops_total": str(totals["dropped_queue"]),
            "bad_inputs_total": str(totals["bad"]),
            "queue_drops": str(w.dropped_queue),
            "queue_drop_rate": f"{drop_rate:.4f}",
            "sync_drops_total": str(sync_dropped),
            "bad_inputs": str(w.bad),
            "tracking_lost": str(w.lost),
            "tracking_status": tracking_status,
            "bad_imu_total": str(totals["bad_imu"]),
        }
        values.update({f"{k}_total": str(v) for k, v in sorted(totals.items()) if k.startswith("imu_")})
        values.update({f"stage_{k}_ms": f"{v:.2f}" for k, v in sorted(stages.items())})
        status = DiagnosticStatus(
            level=level,
            name=name,
            message="; ".join(parts[:1] + parts[-1:]),
            hardware_id="prism",
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )
        return ("diagnostics: " + "; ".join(parts) if (n or w.dropped_queue or w.bad) else None), status
