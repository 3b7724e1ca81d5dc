"""The error model's fit tool: a traced run replays to the filter's own report, and a fit moves wrong constants back."""

import dataclasses
import json

import numpy as np
import pytest

from prism_ros.config import PrismConfig
from prism_ros.core.uncertainty import ErrorModelConstants
from prism_ros.datasets import open_dataset
from prism_ros.eval import error_fit
from prism_ros.eval.calibration import CHI2_50_6DOF
from prism_ros.tools import runner

SPEC = "synthetic:40@320x240"


@pytest.fixture(scope="module")
def trace():
    return error_fit.record(open_dataset(SPEC), PrismConfig.from_yaml())


def test_replay_with_the_shipped_constants_is_the_run_itself(trace):
    run = runner.run(open_dataset(SPEC), PrismConfig.from_yaml(), progress=False)
    assert len(trace.inputs) == run.n == 40
    np.testing.assert_array_equal(trace.T_est, run.T_est)
    P, F = error_fit.replay(trace, ErrorModelConstants())
    np.testing.assert_array_equal(P, run.error_cov)
    np.testing.assert_array_equal(F, run.error_transition)
    # other constants change the covariances, never the trajectory the trace holds
    P2, _ = error_fit.replay(trace, dataclasses.replace(ErrorModelConstants(), white_scale=10.0))
    assert np.trace(P2[-1][:6, :6]) > np.trace(P[-1][:6, :6])


def test_replay_follows_resets_between_steps():
    """A reset (the filter's map replaced) between steps is traced and replayed: the first track after it starts the
    error state afresh, live and in the replay alike."""
    from types import SimpleNamespace

    from prism_ros.core.uncertainty import PoseErrorModel

    track = SimpleNamespace(cov=1e-6 * np.eye(6), H_data=5e5 * np.eye(6), residual_level=0.8, patch_px=40.0)
    T0, T1 = np.eye(4), np.eye(4)
    T1[:3, 3] = [0.01, 0.0, 0.0]
    live = PoseErrorModel(9.0)
    live.trace = []
    out = [live.start(1e-8 * np.eye(6)), live.update(T0, T1, track), live.update(T1, T1, track)]
    live.reset()
    out.append(live.update(T1, T1, track))  # no error state: starts in the given map
    t = error_fit.ErrorTrace(
        "unit", live.trace, np.arange(4), np.stack([T0, T1, T1, T1]), np.full((4, 4, 4), np.nan), np.ones(4, bool), 9.0
    )
    assert [x["kind"] for x in live.trace] == ["start", "update", "update", "reset", "update"]
    P, F = error_fit.replay(t, ErrorModelConstants())
    np.testing.assert_array_equal(P, np.stack([r.error_cov for r in out]))
    np.testing.assert_array_equal(F, np.stack([r.error_transition for r in out]))
    assert not np.array_equal(P[3], P[2])


def test_calibration_loss():
    ideal = dict(pairs=10, coverage95=0.95, nees_median=CHI2_50_6DOF, nees_tail_frac=0.0)
    assert error_fit.calibration_loss({1: ideal, 10: ideal}) == pytest.approx(0.0)
    off = dict(ideal, coverage95=0.92, nees_median=CHI2_50_6DOF * 1.5, nees_tail_frac=0.02)
    assert error_fit.calibration_loss({1: off}) == pytest.approx(3.0)
    assert error_fit.calibration_loss({30: dict(pairs=0)}) == 0.0


def test_a_fit_takes_inflated_constants_back_down(trace):
    """Constants 8x too large (sigma 8x too pessimistic): fitting them lowers the loss and all three."""
    free = ["white_scale", "cv_pred_trans_m", "cv_pred_rot_rad"]
    c0 = ErrorModelConstants()
    wrong = dataclasses.replace(c0, **{n: 8.0 * getattr(c0, n) for n in free})
    before = error_fit.calibration_loss(error_fit.figures(trace, wrong))
    fitted, after = error_fit.fit([(trace, None)], free, wrong, iterations=60)
    assert after < 0.5 * before, (before, after)
    for n in free:
        assert getattr(fitted, n) < getattr(wrong, n), n
    figs = error_fit.figures(trace, fitted)
    assert figs[1]["nees_median"] > error_fit.figures(trace, wrong)[1]["nees_median"]
    with pytest.raises(ValueError):
        error_fit.fit([(trace, None)], ["no_such_constant"], wrong, iterations=1)


def test_command_line(tmp_path, capsys):
    out = tmp_path / "c.json"
    assert (
        error_fit.main(
            [
                "--fit",
                f"{SPEC}#0-30",
                "--hold",
                f"{SPEC}#30-40",
                "--free",
                "white_scale",
                "--iterations",
                "4",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "shipped constants" in text and "fitted (white_scale)" in text and f"{SPEC}#30-40" in text
    assert set(json.loads(out.read_text())) == {f.name for f in dataclasses.fields(ErrorModelConstants)}
