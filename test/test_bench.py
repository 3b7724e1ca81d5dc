"""prism-ros bench: the PRISM side on a few real frames, and a clear exit 2 when the peer is missing.

Open3D is never needed here: the peer test hides it behind a fake package that fails to import.
"""

import json
import math
import os

import pytest

from prism_ros import cli
from prism_ros.eval import bench


def test_bench_is_a_registered_command():
    assert cli.LAZY_COMMANDS["bench"][:2] == ("prism_ros.eval.bench", "main")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["synthetic", "--frames", "0"], "positive integer"),
        (["synthetic", "--peer", "nosuchpeer"], "invalid choice"),
        (["/nonexistent/dataset/folder"], "cannot open dataset"),
        (["synthetic", "--set", "no_such_param=1"], "no_such_param"),
    ],
)
def test_bench_argument_errors_exit_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["bench"] + argv)
    assert e.value.code == 2
    assert needle in capsys.readouterr().err


def test_summarize_stages_orders_and_percentiles():
    rows = [{"a": float(i), "b": 2.0} for i in range(1, 101)] + [{"c": 5.0}]
    s = bench.summarize_stages(rows)
    assert list(s) == ["a", "b", "c"]
    assert s["a"]["median"] == pytest.approx(50.5)
    assert s["a"]["p95"] == pytest.approx(95.05)
    assert s["a"]["n"] == 100 and s["c"]["n"] == 1


def test_probe_reports_a_missing_module():
    version, err = bench._probe_module("prism_ros_no_such_module_xyz")
    assert version is None and "prism_ros_no_such_module_xyz" in err


def test_peer_open3d_missing_exits_2_with_install_hint(tmp_path, monkeypatch, capsys):
    # A package named open3d that fails to import shadows any real one in the probe's interpreter.
    fake = tmp_path / "fake" / "open3d"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('simulated: open3d is not installed')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "b.json"
    rc = cli.main(["bench", "synthetic", "--frames", "3", "--peer", "open3d", "--json", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "open3d" in err and "simulated" in err
    assert "pip install" in err and "libusb-1.0-0" in err
    assert not out.exists()  # nothing was run


@pytest.mark.slow
def test_bench_prism_on_real_frames(redkitchen_dir, tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = bench.main([str(redkitchen_dir), "--frames", "15", "--json", str(out), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    for needle in ("median ms", "p95 ms", "FPS (filter)", "peak RSS", "ATE RMSE", "machine:"):
        assert needle in text

    doc = json.loads(out.read_text())
    assert doc["peer"] is None and doc["args"]["frames"] == 15
    assert doc["machine"]["cpu_count"] >= 1 and doc["machine"]["cpu_model"]
    p = doc["prism"]
    assert p["frames"] == 15
    assert p["fps"] > 0 and p["fps_total"] > 0
    assert p["fps_total"] <= p["fps"] * 1.001  # loading only adds time
    # the step's own thread is busy for most of the step; no more CPU than the cores over the loop
    assert 0.5 * p["step_ms_mean"] < p["cpu_ms_per_frame"] < (os.cpu_count() + 0.5) * 1e3 / p["fps_total"], p
    assert p["peak_rss_mb"] > 0 and p["peak_rss_bytes"] > 0
    assert p["ate_rmse_m"] is not None and math.isfinite(p["ate_rmse_m"]) and p["ate_rmse_m"] < 0.05
    assert p["ate_frames"] == 15
    stages = p["stages_ms"]
    assert {"track", "integrate", "total"} <= set(stages)
    for name, s in stages.items():
        assert 0 <= s["median"] <= s["p95"] <= s["max"] + 1e-9, name
    assert len(p["per_frame"]["step_ms"]) == 15


@pytest.mark.slow
def test_bench_on_euroc_uses_the_imu_as_run_does(euroc_micro_dir, tmp_path, capsys):
    """bench and run drive the same pipeline: on a EuRoC folder both feed the IMU as controls
    (every step after the first) and track the same poses."""
    micro = euroc_micro_dir
    out = tmp_path / "bench.json"
    assert bench.main([str(micro), "--frames", "12", "--json", str(out), "--no-progress"]) == 0
    p = json.loads(out.read_text())["prism"]
    assert "controls used (IMU)" in capsys.readouterr().out
    assert p["frames"] == 12 and p["controls_used"] == 11
    assert (
        cli.main(["run", str(micro), "--frames", "12", "--out", str(tmp_path / "run"), "--no-progress", "--no-report"])
        == 0
    )
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["controls_used"] == p["controls_used"]
    assert m["ate_rmse_m"] == pytest.approx(p["ate_rmse_m"], abs=1e-4)  # the same track
