"""prism-ros: argument errors exit with 2; `run` writes every output on real data."""

import json
import sys
import types

import numpy as np
import pytest

from conftest import run_prism_cli
from prism_ros import cli


@pytest.mark.parametrize(
    "argv, needle",
    [
        ([], "COMMAND"),
        (["bogus"], "invalid choice"),
        (["run"], "PATH"),
        (["run", "/nonexistent/dataset/folder"], "cannot open dataset"),
        (["run", "synthetic", "--frames", "0"], "positive integer"),
        (["run", "synthetic", "--start", "-3"], "non-negative"),
        (["run", "synthetic", "--frames", "ten"], "positive integer"),
        (["demo", "--set", "voxel_size_m=abc"], "voxel_size_m"),
        (["demo", "--set", "voxel_size_m=5"], "voxel_size_m"),
        (["demo", "--set", "no_such_param=1"], "no_such_param"),
        (["demo", "--set", "novalue"], "name=value"),
        (["demo", "--set", "voxel_size_m=0.05"], "truncation_m"),
        (["demo", "--config", "/nonexistent/prism.yaml"], "no such file"),
        (["run", "synthetic", "--stereo-matcher", "bm"], "only to EuRoC"),
        (["run", "synthetic", "--stereo-matcher", "census"], "invalid choice"),
    ],
)
def test_argument_errors_exit_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert needle in capsys.readouterr().err


def test_bad_yaml_config_exits_2(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text("/**:\n  ros__parameters:\n    huber_k: -1.0\n")
    with pytest.raises(SystemExit) as e:
        cli.main(["demo", "--config", str(p)])
    assert e.value.code == 2
    assert "huber_k" in capsys.readouterr().err


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in ("demo", "run", "node", "play"):
        assert name in out


def test_config_overrides_reach_the_config():
    parser = cli.build_parser()
    args = parser.parse_args(
        ["demo", "--set", "voxel_size_m=0.01", "--set", "truncation_m=0.04", "--set", "use_photometric=false"]
    )
    cfg = cli.config_from_args(args, parser)
    assert (cfg.voxel_size_m, cfg.truncation_m, cfg.use_photometric) == (0.01, 0.04, False)


def test_lazy_commands_forward_argv_and_report_missing_ros(monkeypatch, capsys):
    fake = types.ModuleType("prism_fake_cmd")
    seen = {}

    def fake_main(argv):
        seen["argv"] = argv
        return 3

    fake.main = fake_main
    monkeypatch.setitem(sys.modules, "prism_fake_cmd", fake)
    monkeypatch.setitem(cli.LAZY_COMMANDS, "fake", ("prism_fake_cmd", "main", "a fake"))
    assert cli.main(["fake", "--ros-args", "-p", "x:=1"]) == 3
    assert seen["argv"] == ["--ros-args", "-p", "x:=1"]

    monkeypatch.setitem(cli.LAZY_COMMANDS, "broken", ("prism_fake_needs_ros", "main", "needs rclpy"))

    def _raise(name, *a, **k):
        if name == "prism_fake_needs_ros":
            raise ModuleNotFoundError("No module named 'rclpy'", name="rclpy")
        return real_import(name, *a, **k)

    import importlib

    real_import = importlib.import_module
    monkeypatch.setattr(cli.importlib, "import_module", _raise)
    assert cli.main(["broken"]) == 1
    assert "pip install '.[ros]'" in capsys.readouterr().err


@pytest.mark.ros
def test_lazy_command_targets_exist():
    """node/play point at real functions once the ROS layer is there (needs rclpy to import)."""
    pytest.importorskip("rclpy", reason="rclpy not installed (pip install '.[ros]')")
    import importlib

    for name in ("node", "play"):
        mod, fn, _ = cli.LAZY_COMMANDS[name]
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:
                pytest.skip(f"{mod} not written yet")
            raise
        assert callable(getattr(m, fn)), f"{mod}.{fn}"


@pytest.mark.slow
def test_run_on_7scenes_writes_all_outputs(redkitchen_dir, tmp_path):
    out = tmp_path / "run"
    r = run_prism_cli(["run", redkitchen_dir, "--frames", 30, "--start", 0, "--out", out, "--no-progress"], timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    for f in (
        "trajectory.tum",
        "groundtruth.tum",
        "covariances.npz",
        "metrics.json",
        "map.ply",
        "report.png",
        "config.yaml",
    ):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    m = json.loads((out / "metrics.json").read_text())
    for k in ("frames", "fps", "fps_total", "ate_rmse_m", "stage_ms", "peak_rss_mb", "tracking_failures", "map_blocks"):
        assert k in m, k
    assert m["frames"] == 30
    assert m["fps"] > 0 and m["fps_total"] > 0 and m["fps_total"] <= m["fps"] * 1.05
    assert "total" in m["stage_ms"]
    assert 0 <= m["ate_rmse_m"] < 0.05
    assert m["peak_rss_mb"] > 50
    assert "ATE RMSE" in r.stdout

    from prism_ros.eval import metrics
    from prism_ros.tools import export

    s_est, T_est = export.read_tum(str(out / "trajectory.tum"))
    s_gt, T_gt = export.read_tum(str(out / "groundtruth.tum"))
    assert len(s_est) == len(s_gt) == 30
    np.testing.assert_allclose(s_est, np.arange(30) / 30.0, atol=1e-6)
    assert metrics.ate_rmse(T_est, T_gt) == pytest.approx(m["ate_rmse_m"], rel=1e-4, abs=1e-6)
    # the first pose starts at the ground truth of frame 0
    gt0 = np.loadtxt(redkitchen_dir / "frame-000000.pose.txt")
    np.testing.assert_allclose(T_gt[0][:3, 3], gt0[:3, 3], atol=1e-6)
    np.testing.assert_allclose(
        T_gt[0][:3, :3], gt0[:3, :3], atol=5e-4
    )  # 7-Scenes rotations are not exactly orthonormal

    c = export.read_covariances(str(out / "covariances.npz"))
    assert c["pose_cov"].shape == (30, 6, 6) and c["velocity_cov"].shape == (30, 6, 6)
    for P in c["pose_cov"][1:]:
        np.testing.assert_allclose(P, P.T, atol=1e-12 + 1e-9 * np.abs(P).max())
        assert np.linalg.eigvalsh(P).min() > 0
    ply = export.read_ply(str(out / "map.ply"))
    assert len(ply["xyz"]) > 1000 and np.all(ply["sigma"] > 0)
    assert np.all(np.abs(ply["sdf"]) <= m["map_ply_max_abs_sdf_m"] + 1e-6)


def test_runner_skips_unreadable_frames(redkitchen_copy, tmp_path):
    """A corrupt image is skipped with a warning; the run goes on."""
    from prism_ros.config import PrismConfig
    from prism_ros.datasets import open_dataset
    from prism_ros.eval.evaluate import run_offline

    d = redkitchen_copy
    (d / "frame-000003.depth.png").write_bytes(b"not a png at all")
    ds = open_dataset(str(d))
    assert len(ds) == 6
    m = run_offline(ds, PrismConfig.from_yaml(), str(tmp_path / "out"), progress=False, report=False)
    assert m["frames"] == 5 and m["frames_skipped"] == 1 and m["skipped_indices"] == [3]
    assert (tmp_path / "out" / "trajectory.tum").is_file()
