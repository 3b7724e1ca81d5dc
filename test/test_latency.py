"""The node's cumulative latency histogram (diagnostics) and what the soak reads from it."""

import numpy as np
import pytest

from prism_ros.stats import MAX_MS, LatencyHistogram


def test_percentiles_match_numpy_within_one_bin():
    rng = np.random.default_rng(3)
    ms = np.concatenate([rng.gamma(4.0, 10.0, 5000), rng.uniform(100, 600, 200)])  # a tail of slow frames
    h = LatencyHistogram()
    for v in ms:
        h.add(v)
    assert h.count == ms.size
    for q in (50, 95, 99):
        exact = np.percentile(ms, q, method="inverted_cdf")
        assert exact <= h.percentile(q) <= exact + 1.0, q  # the upper edge of the bin that holds it
    assert h.fraction_over(100) == pytest.approx(np.mean(ms >= 100), abs=1e-12)


def test_encode_decode_and_difference_of_snapshots():
    h = LatencyHistogram()
    for v in (3.2, 3.9, 47.0, 120.5):
        h.add(v)
    early = LatencyHistogram.decode(h.encode())
    assert h.encode() == "3:2 47:1 120:1"
    for v in (47.5, 900.0, 1e9, float("nan"), -2.0):  # overflow bin, NaN ignored, negative -> 0
        h.add(v)
    later = LatencyHistogram.decode(h.encode())
    d = later - early
    assert d.count == 4
    assert d.encode() == f"0:1 47:1 900:1 {MAX_MS}:1"
    assert d.percentile(50) == 48.0 and d.percentile(100) == float(MAX_MS)
    assert LatencyHistogram().percentile(95) is None and LatencyHistogram().fraction_over(100) is None
    with pytest.raises(ValueError):
        early - later  # not two snapshots of one counter, in order
    for bad in ("3:x", "-1:2", f"{MAX_MS + 1}:1", "4:-1"):
        with pytest.raises(ValueError):
            LatencyHistogram.decode(bad)
