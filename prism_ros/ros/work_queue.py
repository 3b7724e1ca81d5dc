"""The hand-over between the node's ROS callbacks and its one worker thread (no ROS).

Frames wait in a bounded queue (oldest dropped).  Output requests (``cloud``, ``occupancy``, ``mesh``, ...) are a set: a
slow worker serves each once.  Commands (save, load, reset) have their own queue, taken before frames; a caller waits at
most a timeout: a command still queued then is cancelled (never run later), a running one finishes and its outcome is
marked abandoned.  After :meth:`WorkQueue.stop` queued and new commands fail ("node shutting down").
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, FrozenSet, Optional, Set, Tuple

__all__ = ["Command", "WorkQueue"]


@dataclass
class Command:
    kind: str
    done: threading.Event = field(default_factory=threading.Event)
    result: str = ""
    error: Optional[str] = None
    abandoned: bool = False  # the caller timed out while the worker ran it


class WorkQueue:
    """Frames (bounded, drop-oldest) and commands for one worker thread."""

    def __init__(self, maxlen: int):
        self._cv = threading.Condition()
        self._frames: Deque[Any] = deque()
        self._commands: Deque[Command] = deque()
        self._maxlen = int(maxlen)
        self._requests: Set[str] = set()
        self._stopped = False

    # ------------------------------------------------------------ producers
    def put_frame(self, item: Any) -> int:
        """Queue a frame; the number of old frames dropped to make room."""
        with self._cv:
            self._frames.append(item)
            dropped = self._trim()
            self._cv.notify()
        return dropped

    def set_maxlen(self, maxlen: int) -> int:
        """A new bound; the number of frames dropped to meet it."""
        with self._cv:
            self._maxlen = int(maxlen)
            return self._trim()

    def _trim(self) -> int:
        n = max(len(self._frames) - self._maxlen, 0)
        for _ in range(n):
            self._frames.popleft()
        return n

    def clear_frames(self) -> None:
        with self._cv:
            self._frames.clear()

    def request(self, kind: str) -> None:
        """Ask the worker for an output (``cloud``, ``occupancy``, ``mesh``, ...)."""
        with self._cv:
            self._requests.add(kind)
            self._cv.notify()

    def run(self, kind: str, timeout_s: float) -> Tuple[bool, str]:
        """Queue command ``kind``, wait for the worker: (success, message)."""
        cmd = Command(kind)
        with self._cv:
            if self._stopped:
                return False, "node shutting down"
            self._commands.append(cmd)
            self._cv.notify()
        cmd.done.wait(timeout_s)
        with self._cv:
            if not cmd.done.is_set():
                if cmd in self._commands:
                    self._commands.remove(cmd)
                    return False, f"timed out after {timeout_s:g} s waiting for the filter thread; cancelled, not run"
                cmd.abandoned = True
                return (
                    False,
                    f"timed out after {timeout_s:g} s while the filter thread runs it; its outcome will be logged",
                )
        return cmd.error is None, cmd.error or cmd.result

    # ------------------------------------------------------------ the worker
    def take(self, wait_s: float) -> Optional[Tuple[Optional[Command], Any, FrozenSet[str]]]:
        """Wait at most ``wait_s`` for work: (a command or None, else a frame or None,
        the outputs requested since the last take); None once stopped."""
        with self._cv:
            if not (self._stopped or self._commands or self._frames or self._requests):
                self._cv.wait(wait_s)
            if self._stopped:
                return None
            cmd = self._commands.popleft() if self._commands else None
            item = self._frames.popleft() if cmd is None and self._frames else None
            requests, self._requests = frozenset(self._requests), set()
            return cmd, item, requests

    def finish(self, cmd: Command, result: str = "", error: Optional[str] = None) -> bool:
        """The worker's outcome of ``cmd``; True when its caller gave up waiting."""
        with self._cv:
            cmd.result, cmd.error = result, error
            cmd.done.set()
            return cmd.abandoned

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            pending, self._commands = list(self._commands), deque()
            self._cv.notify_all()
        for cmd in pending:
            self.finish(cmd, error="node shutting down")
