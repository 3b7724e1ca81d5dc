"""Approximate-time pairing of two message streams (colour and depth); ``message_filters`` is not on PyPI.

Each stream's stamps are assumed to increase.  The oldest pending message of stream A pairs with the
closest pending message of stream B when their stamps differ by at most ``slop_s``, no pending A message
is closer to that B (else the older A is dropped), and no future message can be closer (the newest stamp
seen on each stream is at least as far).  Equal stamps pair immediately; a constant offset waits for the
next message of the earlier stream.  Unpairable messages are dropped and counted; each pending queue is
bounded (``max_pending``, oldest dropped).  Not thread-safe: call it from one thread.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Deque, List, Tuple

__all__ = ["ApproxTimePairer", "PairerStats"]


@dataclass
class PairerStats:
    paired: int = 0
    dropped_a: int = 0
    dropped_b: int = 0
    resets: int = 0


class ApproxTimePairer:
    """Pair messages of streams ``a`` and ``b`` whose stamps (seconds) differ by <= slop_s."""

    def __init__(self, slop_s: float, max_pending: int = 10, reset_on_jump_back_s: float = 1.0):
        if slop_s < 0:
            raise ValueError("slop_s must be >= 0")
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.slop_s = float(slop_s)
        self.max_pending = int(max_pending)
        self.reset_on_jump_back_s = float(reset_on_jump_back_s)
        self._q: Tuple[Deque[Tuple[float, Any]], Deque[Tuple[float, Any]]] = (deque(), deque())
        self._newest = [None, None]
        self.stats = PairerStats()

    # -- public -------------------------------------------------------------
    def add_a(self, stamp: float, item: Any) -> List[Tuple[Any, Any, float, float]]:
        return self._add(0, float(stamp), item)

    def add_b(self, stamp: float, item: Any) -> List[Tuple[Any, Any, float, float]]:
        return self._add(1, float(stamp), item)

    def clear(self) -> None:
        dropped = (len(self._q[0]), len(self._q[1]))
        self.stats.dropped_a += dropped[0]
        self.stats.dropped_b += dropped[1]
        self._q[0].clear()
        self._q[1].clear()
        self._newest = [None, None]

    @property
    def pending(self) -> Tuple[int, int]:
        return len(self._q[0]), len(self._q[1])

    @property
    def dropped(self) -> int:
        return self.stats.dropped_a + self.stats.dropped_b

    # -- internals ------------------------------------------------------------
    def _drop(self, s: int) -> None:
        self._q[s].popleft()
        if s == 0:
            self.stats.dropped_a += 1
        else:
            self.stats.dropped_b += 1

    def _add(self, s: int, stamp: float, item: Any) -> List[Tuple[Any, Any, float, float]]:
        newest = self._newest[s]
        if newest is not None and stamp < newest - self.reset_on_jump_back_s:
            # Time jumped back (looped playback, restarted bag): start over.
            self.clear()
            self.stats.resets += 1
            newest = None
        if newest is not None and stamp <= newest:
            # Out of order or duplicate within one stream: cannot be paired reliably.
            if s == 0:
                self.stats.dropped_a += 1
            else:
                self.stats.dropped_b += 1
            return []
        self._newest[s] = stamp
        q = self._q[s]
        q.append((stamp, item))
        while len(q) > self.max_pending:
            self._drop(s)
        return self._match()

    def _match(self) -> List[Tuple[Any, Any, float, float]]:
        out = []
        qa, qb = self._q
        slop = self.slop_s
        while qa and qb:
            ta = qa[0][0]
            tb0 = qb[0][0]
            # Heads that can no longer pair with anything (the other stream's pending
            # and future stamps are all newer than head + slop).
            if tb0 < ta - slop:
                self._drop(1)
                continue
            if ta < tb0 - slop:
                self._drop(0)
                continue
            # Closest pending b to the oldest a.
            jb, db = 0, abs(tb0 - ta)
            for j in range(1, len(qb)):
                d = abs(qb[j][0] - ta)
                if d < db:
                    jb, db = j, d
                elif qb[j][0] > ta:
                    break
            tb = qb[jb][0]
            if db > slop:
                # Only possible when every pending b is newer than ta + slop: a is unpairable.
                self._drop(0)
                continue
            # Is a later pending a closer to that b?  Then the oldest a loses.
            better_a = any(abs(qa[i][0] - tb) < db for i in range(1, len(qa)))
            if better_a:
                self._drop(0)
                continue
            # Could a future message beat this pair?  Future stamps are > newest seen.
            na, nb = self._newest
            if not (nb - ta >= db and na - tb >= db):
                break  # wait for more messages
            # Commit: drop b's older than the partner (they lost to this a).
            for _ in range(jb):
                self._drop(1)
            a_item = qa.popleft()[1]
            b_item = qb.popleft()[1]
            self.stats.paired += 1
            out.append((a_item, b_item, ta, tb))
        return out
