"""Approximate-time pairing of colour and depth (prism_ros.ros.sync)."""

import numpy as np
import pytest

from prism_ros.ros.sync import ApproxTimePairer


def _feed(p, events):
    """events: list of ('a'|'b', stamp); returns the pairs (a_stamp, b_stamp)."""
    out = []
    for s, t in events:
        pairs = p.add_a(t, ("a", t)) if s == "a" else p.add_b(t, ("b", t))
        out += [(pa[1], pb[1]) for pa, pb, _, _ in pairs]
    return out


def test_equal_stamps_pair_immediately_in_any_order():
    p = ApproxTimePairer(0.02)
    assert _feed(p, [("a", 1.0)]) == []
    assert _feed(p, [("b", 1.0)]) == [(1.0, 1.0)]
    assert _feed(p, [("b", 1.1)]) == []
    assert _feed(p, [("a", 1.1)]) == [(1.1, 1.1)]
    assert p.pending == (0, 0) and p.dropped == 0


def test_constant_offset_pairs_with_at_most_one_frame_delay():
    p = ApproxTimePairer(0.02)
    ev = []
    for i in range(10):
        t = 1.0 + i / 30
        ev += [("a", t), ("b", t + 0.008)]
    pairs = _feed(p, ev)
    assert len(pairs) >= 9
    for a, b in pairs:
        assert b - a == pytest.approx(0.008)
    assert p.dropped == 0


def test_slop_respected_and_unmatched_dropped():
    p = ApproxTimePairer(0.005)
    # depth 10 ms late: never within slop -> nothing paired, queues stay bounded
    ev = []
    for i in range(50):
        t = 1.0 + i / 30
        ev += [("a", t), ("b", t + 0.010)]
    assert _feed(p, ev) == []
    assert max(p.pending) <= p.max_pending
    assert p.dropped > 0


def test_missing_frames_and_closest_match():
    p = ApproxTimePairer(0.02)
    # colour at 30 Hz, depth misses every third frame and jitters by 3 ms
    ev = []
    expected = []
    for i in range(30):
        t = 1.0 + i / 30
        ev.append(("a", t))
        if i % 3 != 2:
            ev.append(("b", t + 0.003))
            expected.append((t, t + 0.003))
    pairs = _feed(p, ev + [("a", 3.0), ("b", 3.0)])
    assert pairs[:-1] == expected[: len(pairs) - 1]
    assert pairs[-1] == (3.0, 3.0)
    for a, b in pairs:
        assert abs(a - b) <= 0.02


def test_prefers_the_closer_later_message():
    p = ApproxTimePairer(0.02)
    # a1 = 1.000 and a2 = 1.015 arrive before b = 1.014: b belongs to a2, a1 is dropped
    pairs = _feed(p, [("a", 1.000), ("a", 1.015), ("b", 1.014), ("b", 1.05), ("a", 1.05)])
    assert pairs == [(1.015, 1.014), (1.05, 1.05)]
    assert p.stats.dropped_a == 1


def test_out_of_order_dropped_and_time_jump_back_resets():
    p = ApproxTimePairer(0.02)
    assert _feed(p, [("a", 5.0), ("b", 5.0)]) == [(5.0, 5.0)]
    assert _feed(p, [("a", 4.99)]) == []  # older than the last colour: dropped
    assert p.stats.dropped_a == 1
    # a looped player restarts at t=1: the pairer starts over
    assert _feed(p, [("a", 1.0), ("b", 1.0)]) == [(1.0, 1.0)]
    assert p.stats.resets == 1


def test_bounded_under_one_stream_only():
    p = ApproxTimePairer(0.02, max_pending=4)
    for i in range(100):
        p.add_a(1.0 + i, i)
    assert p.pending == (4, 0)
    assert p.stats.dropped_a == 96


def test_random_jitter_every_pair_within_slop_and_monotone():
    rng = np.random.default_rng(3)
    p = ApproxTimePairer(0.01)
    ta = 1.0 + np.arange(300) / 30 + rng.uniform(-0.002, 0.002, 300)
    tb = 1.0 + np.arange(300) / 30 + rng.uniform(-0.002, 0.002, 300)
    ev = sorted([("a", t) for t in ta] + [("b", t) for t in tb], key=lambda e: e[1] + rng.uniform(0, 0.004))
    pairs = _feed(p, ev)
    assert len(pairs) >= 295
    assert all(abs(a - b) <= 0.01 for a, b in pairs)
    assert all(pairs[i][0] < pairs[i + 1][0] for i in range(len(pairs) - 1))


def test_invalid_args():
    with pytest.raises(ValueError):
        ApproxTimePairer(-1.0)
    with pytest.raises(ValueError):
        ApproxTimePairer(0.01, max_pending=0)
