"""Statistics the pipeline keeps: per-stage step timings and latency histograms.

* :class:`StageStats`: per-stage milliseconds of every step (bounded), with median / p95 / mean / max
  summaries (``prism-ros run``, ``bench`` and the node's diagnostics read the same figures).
* :class:`LatencyHistogram`: cumulative counts in 1 ms bins (the last collects everything from
  :data:`MAX_MS` up), encoded for a diagnostics ``KeyValue``; a consumer subtracts two snapshots for the
  exact distribution in between.  Percentiles are the upper edge of their bin (at most 1 ms high).
* :class:`CpuMeter`, :class:`MachineMeter`: CPU time and hypervisor steal over an interval.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from collections import deque
from typing import Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["CpuMeter", "LatencyHistogram", "MachineMeter", "cpu_model", "MAX_MS", "StageStats", "summarize_stages"]


def summarize_stages(rows: Sequence[Dict[str, float]]) -> Dict[str, Dict[str, float]]:
    """Per-stage ``{"median", "p95", "mean", "max", "n"}`` in ms over the rows that have the stage.

    Stages keep their first-seen order."""
    order: List[str] = []
    for d in rows:
        order += [k for k in d if k not in order]
    out: Dict[str, Dict[str, float]] = {}
    for k in order:
        v = np.asarray([d[k] for d in rows if d.get(k) is not None], dtype=np.float64)
        if v.size:
            out[k] = {
                "median": float(np.median(v)),
                "p95": float(np.percentile(v, 95)),
                "mean": float(v.mean()),
                "max": float(v.max()),
                "n": int(v.size),
            }
    return out


def cpu_model(path: str = "/proc/cpuinfo") -> str:
    """The processor's name with its x86 family / model numbers (a virtual machine's name is
    often only the brand, and its generations differ in speed); the platform's processor name
    elsewhere."""
    fields: Dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block
                k, _, v = line.partition(":")
                fields.setdefault(k.strip().lower(), v.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def _process_cpu_s() -> float:
    """User + system CPU seconds of this process, all its threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _steal_s(path: str = "/proc/stat") -> Optional[float]:
    """CPU seconds the hypervisor took from this machine since boot, all CPUs summed (the
    ``steal`` column of Linux's /proc/stat), or None where it cannot be read."""
    t = _machine_times(path)
    return None if t is None else t[2]


def _machine_times(path: str = "/proc/stat") -> Optional[Tuple[float, float, float]]:
    """(busy, idle, steal) CPU seconds of the whole machine since boot, all CPUs summed
    (busy: user, nice, system, irq, softirq; idle: idle, iowait), or None where unreadable."""
    try:
        with open(path) as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        tck = os.sysconf("SC_CLK_TCK")
        return (v[0] + v[1] + v[2] + v[5] + v[6]) / tck, (v[3] + v[4]) / tck, v[7] / tck
    except (OSError, IndexError, ValueError, AttributeError):
        return None


class MachineMeter:
    """How busy the whole machine was since :meth:`reset`: the shares of its CPU capacity that ran processes (all
    of them), sat idle, or were stolen by the hypervisor.
    """

    def __init__(self, path: str = "/proc/stat"):
        self.path = path
        self.reset()

    def reset(self) -> None:
        self.t0 = _machine_times(self.path)

    def figures(self) -> Dict[str, Optional[float]]:
        """``busy_fraction``, ``idle_fraction``, ``steal_fraction`` (of busy + idle + steal;
        None where /proc/stat cannot be read)."""
        t1 = _machine_times(self.path)
        if t1 is None or self.t0 is None:
            return {"busy_fraction": None, "idle_fraction": None, "steal_fraction": None}
        d = [b - a for a, b in zip(self.t0, t1)]
        total = sum(d)
        if total <= 0:
            return {"busy_fraction": None, "idle_fraction": None, "steal_fraction": None}
        return {"busy_fraction": d[0] / total, "idle_fraction": d[1] / total, "steal_fraction": d[2] / total}


class CpuMeter:
    """CPU time of this process and the hypervisor's steal since :meth:`reset`; ``cpu_ms_per_frame`` does not grow when
    other guests steal the cores and bounds the rate any number of cores reaches (``1000 * cores / cpu_ms_per_frame``).
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.t0, self.cpu0, self.steal0 = time.perf_counter(), _process_cpu_s(), _steal_s()

    def figures(self, frames: int) -> Dict[str, Optional[float]]:
        """``cpu_ms_per_frame``, ``cpu_cores_used`` (CPU seconds per wall second) and
        ``cpu_steal_fraction`` (the machine's capacity the hypervisor took; None off Linux)."""
        wall = time.perf_counter() - self.t0
        cpu = _process_cpu_s() - self.cpu0
        steal = _steal_s()
        stolen = (
            None
            if steal is None or self.steal0 is None or wall <= 0
            else (steal - self.steal0) / (wall * (os.cpu_count() or 1))
        )
        return {
            "cpu_ms_per_frame": 1e3 * cpu / frames if frames > 0 else None,
            "cpu_cores_used": cpu / wall if wall > 0 else None,
            "cpu_steal_fraction": stolen,
        }


class StageStats:
    """The per-stage timings (ms) of the last ``maxlen`` steps (None: all of them)."""

    def __init__(self, maxlen: Optional[int] = None):
        self.rows: Deque[Dict[str, float]] = deque(maxlen=maxlen)

    def add(self, timings_ms: Dict[str, float]) -> None:
        self.rows.append({k: float(v) for k, v in timings_ms.items()})

    def __len__(self) -> int:
        return len(self.rows)

    def clear(self) -> None:
        self.rows.clear()

    def summary(self) -> Dict[str, Dict[str, float]]:
        return summarize_stages(self.rows)

    def medians(self) -> Dict[str, float]:
        return {k: v["median"] for k, v in self.summary().items()}


#: Latencies at or above this (ms) share the last bin.
MAX_MS = 5000


class LatencyHistogram:
    """Counts of latencies in 1 ms bins ``[k, k + 1)`` ms, k = 0 .. MAX_MS (the last: >= MAX_MS)."""

    def __init__(self, counts: Optional[np.ndarray] = None):
        self.counts = np.zeros(MAX_MS + 1, np.int64) if counts is None else np.asarray(counts, np.int64)

    def add(self, ms: float) -> None:
        if ms == ms:  # NaN is not a latency
            self.counts[int(min(max(ms, 0.0), MAX_MS))] += 1

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def percentile(self, q: float) -> Optional[float]:
        """The ``q``-th percentile (0-100) in ms, None when empty; a value in the overflow
        bin is reported as MAX_MS."""
        n = self.count
        if n == 0:
            return None
        k = int(np.searchsorted(np.cumsum(self.counts), max(1.0, np.ceil(q / 100.0 * n))))
        return float(min(k + 1, MAX_MS))

    def fraction_over(self, ms: float) -> Optional[float]:
        """Share of the latencies at or above ``ms`` (an integer number of ms)."""
        n = self.count
        return float(self.counts[int(ms) :].sum()) / n if n else None

    def encode(self) -> str:
        """``"ms:count ms:count ..."`` for the non-empty bins."""
        nz = np.flatnonzero(self.counts)
        return " ".join(f"{k}:{self.counts[k]}" for k in nz)

    @classmethod
    def decode(cls, text: str) -> "LatencyHistogram":
        """Inverse of :meth:`encode`; ValueError on a malformed string."""
        h = cls()
        for item in text.split():
            k, _, c = item.partition(":")
            k, c = int(k), int(c)
            if not (0 <= k <= MAX_MS) or c < 0:
                raise ValueError(f"bad histogram entry {item!r}")
            h.counts[k] += c
        return h

    def __sub__(self, other: "LatencyHistogram") -> "LatencyHistogram":
        d = self.counts - other.counts
        if (d < 0).any():
            raise ValueError("the histograms are not snapshots of one counter (a count went down)")
        return LatencyHistogram(d)
