"""Checks of an IMU stream, sample by sample: what to drop, and what to flag but keep (pure, no ROS).

:class:`ImuStreamMonitor` flags each sample with a code (:class:`ImuVerdict`):

* drop: ``nan`` (a non-finite stamp or value, :func:`nonfinite_parts`, as :meth:`ImuBuffer.add` checks too),
  ``backwards`` (a stamp before the last one, by at most ``TIMELINE_JUMP_S``), ``duplicate`` (the last stamp
  again);
* keep: ``timeline`` (a stamp more than ``TIMELINE_JUMP_S`` before the last: a new timeline, e.g. a replay
  that restarted; the monitor starts again from it, as :meth:`ImuBuffer.add` does), ``gap`` (more than
  ``max_gap_s`` since the last sample; ``ImuBuffer(max_gap_s=...)`` gives no control across it), ``rate``
  (the rate over the last ``rate_window`` samples off the declared one by more than
  ``rate_tol``; the integration uses the measured rate, the covariance the declared densities).

The node logs the messages (throttled) and counts the codes.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Deque, List, Optional, Sequence

__all__ = ["DROP_CODES", "ImuVerdict", "ImuStreamMonitor", "TIMELINE_JUMP_S", "nonfinite_parts"]

DROP_CODES = ("nan", "backwards", "duplicate")

#: A sample this much (s) older than the newest one starts a new timeline (a replay restarted)
TIMELINE_JUMP_S = 1.0


def nonfinite_parts(stamp: float, gyro: Sequence[float], acc: Sequence[float]) -> List[str]:
    """The parts of a sample that are not all finite, among "stamp", "angular velocity" and
    "linear acceleration" (empty: a finite sample)."""
    return [
        name
        for name, values in (("stamp", (stamp,)), ("angular velocity", gyro), ("linear acceleration", acc))
        if not all(math.isfinite(v) for v in values)
    ]


@dataclass
class ImuVerdict:
    """What to do with one sample: its ``code`` and a message for the log (empty when fine)."""

    code: str  # "" (fine), "nan", "backwards", "duplicate", "timeline", "gap", "rate"
    message: str = ""

    @property
    def keep(self) -> bool:
        """Whether the sample should be stored (gap / rate are flagged but kept)."""
        return self.code not in DROP_CODES


class ImuStreamMonitor:
    """Checks each IMU sample against the stream so far (see the module docstring).

    ``declared_rate_hz``: the rate the IMU should run at (EuRoC: 200 Hz).  ``max_gap_s`` defaults to 5
    periods; ``rate_tol`` to 0.2 (a rate more than +-20 % off the declared one is flagged).
    """

    def __init__(
        self, declared_rate_hz: float, max_gap_s: Optional[float] = None, rate_tol: float = 0.2, rate_window: int = 200
    ):
        if declared_rate_hz <= 0:
            raise ValueError("declared_rate_hz must be > 0")
        self.declared_rate_hz = float(declared_rate_hz)
        self.max_gap_s = 5.0 / self.declared_rate_hz if max_gap_s is None else float(max_gap_s)
        self.rate_tol = float(rate_tol)
        self._stamps: Deque[float] = deque(maxlen=int(rate_window))
        self.last: Optional[float] = None

    def measured_rate_hz(self) -> Optional[float]:
        """Samples per second over the window, None before half a window (a gap clears the window).  O(1) a sample."""
        n = len(self._stamps)
        if n < max(10, self._stamps.maxlen // 2):
            return None
        span = self._stamps[-1] - self._stamps[0]
        return (n - 1) / span if span > 0 else None

    def check(self, stamp: float, gyro, acc) -> ImuVerdict:
        """The verdict on one sample (stamp s, angular velocity rad/s, linear acceleration m/s^2)."""
        w = [float(v) for v in gyro]
        a = [float(v) for v in acc]
        bad = nonfinite_parts(float(stamp), w, a)
        if bad:
            return ImuVerdict("nan", f"IMU sample at t={stamp} has a non-finite {' and '.join(bad)}: dropped")
        last = self.last
        if last is not None and stamp < last - TIMELINE_JUMP_S:
            self.last = float(stamp)
            self._stamps.clear()
            self._stamps.append(float(stamp))
            return ImuVerdict(
                "timeline",
                f"IMU time jumped back by {last - stamp:.3f} s ({stamp:.6f} after {last:.6f}): "
                "a new timeline (a replay restarted?); the samples before it are dropped",
            )
        if last is not None and stamp < last:
            return ImuVerdict(
                "backwards", f"IMU stamp went backwards by {last - stamp:.6f} s ({stamp:.6f} after {last:.6f}): dropped"
            )
        if last is not None and stamp == last:
            return ImuVerdict("duplicate", f"IMU stamp {stamp:.6f} repeated: dropped")
        self.last = float(stamp)
        if last is not None and stamp - last > self.max_gap_s:
            self._stamps.clear()
            self._stamps.append(float(stamp))
            return ImuVerdict(
                "gap",
                f"IMU gap of {stamp - last:.3f} s (> {self.max_gap_s:.3f} s) before "
                f"t={stamp:.6f}: no IMU control across it",
            )
        self._stamps.append(float(stamp))
        r = self.measured_rate_hz()
        if r is not None and abs(r / self.declared_rate_hz - 1.0) > self.rate_tol:
            return ImuVerdict(
                "rate",
                f"IMU runs at {r:.1f} Hz, declared {self.declared_rate_hz:.1f} Hz "
                f"(tolerance {self.rate_tol:.0%}): check imu rate / noise parameters",
            )
        return ImuVerdict("")
