"""builtin_interfaces/Time <-> seconds (float) and nanoseconds (int)."""

from __future__ import annotations

from builtin_interfaces.msg import Time

__all__ = ["stamp_to_sec", "sec_to_stamp", "stamp_to_ns"]


def stamp_to_sec(stamp: Time) -> float:
    """Time -> seconds."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def stamp_to_ns(stamp: Time) -> int:
    """Time -> integer nanoseconds (exact)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def sec_to_stamp(t: float) -> Time:
    """Seconds -> Time, rounded to the nearest nanosecond.  Raises ValueError on a negative time."""
    ns = int(round(float(t) * 1e9))
    if ns < 0:
        raise ValueError(f"negative time {t}")
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
