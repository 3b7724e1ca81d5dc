"""Thread priorities: background work (loading, outputs, the back end) runs below the filter's thread."""

from __future__ import annotations

import os
import threading

__all__ = ["lower_priority"]


def lower_priority(nice: int) -> bool:
    """Make the calling thread ``nice`` steps nicer (Linux, capped at 19); False where the OS does not allow it."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + int(nice)))
        return True
    except (AttributeError, OSError):
        return False
