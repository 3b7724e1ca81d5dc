"""The node's statistics and /diagnostics status (prism_ros.ros.diagnostics), without a node."""

import time

import pytest

pytest.importorskip("diagnostic_msgs")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402

from prism_ros.ros.diagnostics import NodeStats, Throttle, throttle_key  # noqa: E402
from prism_ros.stats import LatencyHistogram  # noqa: E402

pytestmark = [pytest.mark.ros]


def _values(status):
    return {kv.key: kv.value for kv in status.values}


def test_window_totals_histogram_and_level():
    st = NodeStats()
    for k, lat in enumerate([10.2, 20.7, 30.1, 40.9]):
        st.frame(step_ms=5.0 + k, latency_ms=lat, e2e_ms=lat + 1.0, lost=(k == 3))
    st.count("dropped_queue")
    st.count("bad", 2)
    st.count("bad_imu")
    st.stage("map_cloud", 4.0)
    st.stage("map_cloud", 6.0)
    line, s = st.report("prism: filter", sync_dropped=7, tracking_status="ok", stages_ms={"track": 12.5})
    v = _values(s)
    assert s.level == DiagnosticStatus.WARN  # a lost frame and bad inputs in the window
    assert v["processed_total"] == "4" and v["queue_drops"] == "1" and v["queue_drop_rate"] == "0.2000"
    assert v["bad_inputs"] == "2" and v["tracking_lost"] == "1" and v["sync_drops_total"] == "7"
    assert v["step_ms_mean"] == "6.50" and v["latency_ms_max"] == "40.90"
    assert v["stage_track_ms"] == "12.50" and v["stage_map_cloud_ms"] == "5.00"
    hist = LatencyHistogram.decode(v["latency_hist_total"])
    assert hist.count == 4 and hist.percentile(50) == 21.0  # 1 ms bins: the median 20.7 ms lies in [20, 21)
    assert "4 frames" in line and "queue drops 1 (20.0%), sync drops 7 total, bad inputs 2, lost 1" in line
    assert st.totals() == {"processed": 4, "dropped_queue": 1, "bad": 2, "bad_imu": 1}
    # a new window: nothing happened, totals and the histogram carry on
    st.frame(step_ms=5.0, latency_ms=3.0, e2e_ms=None, lost=False)
    line, s = st.report("prism: filter", 7, "ok", {})
    v = _values(s)
    assert s.level == DiagnosticStatus.OK and v["processed_total"] == "5" and v["queue_drops"] == "0"
    assert LatencyHistogram.decode(v["latency_hist_total"]).count == 5
    assert LatencyHistogram.decode(v["latency_e2e_hist_total"]).count == 4 and v["latency_e2e_ms_mean"] == "nan"
    assert st.report("prism: filter", 7, "ok", {})[0] is None  # an empty window logs nothing


def test_e2e_from_another_clock_left_out():
    st = NodeStats()
    st.frame(5.0, 10.0, e2e_ms=-50.0, lost=False)  # publisher's clock ahead of ours
    st.frame(5.0, 10.0, e2e_ms=4e6, lost=False)  # more than an hour: not this machine's clock
    v = _values(st.report("n", 0, "ok", {})[1])
    assert v["latency_e2e_ms_mean"] == "nan" and v["latency_e2e_hist_total"] == ""


def test_throttle_per_key_counts_suppressed():
    th = Throttle(0.2)
    key = throttle_key("stamp", "frame at 1.25 s skipped")
    assert key == throttle_key("stamp", "frame at 3.5 s skipped")  # numbers do not make a new key
    assert th.admit(key, "a") == "a"
    assert th.admit(key, "b") is None and th.admit(key, "c") is None
    assert th.admit("other", "d") == "d"
    time.sleep(0.25)
    assert th.admit(key, "e") == "e (2 similar messages suppressed)"
