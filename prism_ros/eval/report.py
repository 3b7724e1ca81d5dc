"""``report.png``: a one-page picture of an offline run (matplotlib, Agg backend).

Panels: (a) trajectory top view, SE(3)-aligned estimate against ground truth; (b) position error over time
with the filter's 2-sigma band 2 sqrt(trace Sigma_pos) (the covariance given the map, not drift); (c)
per-stage timings (ms); (d) inlier ratio and pose sigmas, tracking failures marked.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = ["make_report"]


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def make_report(
    path: str,
    stamps: Sequence[float],
    T_est: np.ndarray,
    T_gt: Optional[np.ndarray] = None,
    pose_cov: Optional[np.ndarray] = None,
    timings_ms: Optional[List[Dict[str, float]]] = None,
    inlier_ratio: Optional[Sequence[float]] = None,
    tracking_ok: Optional[Sequence[bool]] = None,
    title: str = "",
    summary: Optional[Dict[str, float]] = None,
    calibration: Optional[Dict] = None,
) -> str:
    """Draw the 2x2 report (2x3 with ``calibration``, the runner's ``metrics.json:
    calibration`` object: panels (e) coverage against lag, (f) real against predicted
    RMS error) and save it to ``path`` (PNG). Returns ``path``."""
    from prism_ros.eval import metrics

    plt = _mpl()
    stamps = np.asarray(stamps, dtype=np.float64)
    T_est = np.asarray(T_est, dtype=np.float64).reshape(-1, 4, 4)
    n = len(T_est)
    t_rel = stamps - stamps[0] if n else stamps
    has_gt = T_gt is not None and len(T_gt) == n and n >= 3
    if has_gt:
        T_gt = np.asarray(T_gt, dtype=np.float64)
        T_al, _ = metrics.align_trajectory(T_est, T_gt)
    else:
        T_al = T_est

    if calibration and calibration.get("lags"):
        fig, axes = plt.subplots(2, 3, figsize=(19, 9.5))
        (ax_a, ax_b, ax_e), (ax_c, ax_d, ax_f) = axes
        _calibration_panels(ax_e, ax_f, calibration)
    else:
        fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
        (ax_a, ax_b), (ax_c, ax_d) = axes

    # (a) top view ---------------------------------------------------------
    ref = T_gt if has_gt else T_est
    if n:
        ext = np.ptp(ref[:, :3, 3], axis=0)
        i, j = sorted(np.argsort(ext)[::-1][:2])
        lab = "xyz"
        if has_gt:
            ax_a.plot(T_gt[:, i, 3], T_gt[:, j, 3], "-", color="0.35", lw=2.0, label="ground truth")
        ax_a.plot(
            T_al[:, i, 3],
            T_al[:, j, 3],
            "-",
            color="tab:red",
            lw=1.2,
            label="estimate" + (" (SE(3)-aligned)" if has_gt else ""),
        )
        ax_a.plot(T_al[0, i, 3], T_al[0, j, 3], "o", color="tab:green", ms=7, label="start")
        if tracking_ok is not None:
            bad = ~np.asarray(tracking_ok, dtype=bool)
            if bad.any():
                ax_a.plot(T_al[bad, i, 3], T_al[bad, j, 3], "x", color="k", ms=6, label="tracking lost")
        ax_a.set_xlabel(f"{lab[i]} [m]")
        ax_a.set_ylabel(f"{lab[j]} [m]")
        ax_a.set_aspect("equal", adjustable="datalim")
        ax_a.legend(loc="best", fontsize=9)
    ax_a.set_title("(a) trajectory, top view (plane of the two largest extents)")
    ax_a.grid(alpha=0.3)

    # (b) error over time --------------------------------------------------
    if has_gt:
        err = np.linalg.norm(T_al[:, :3, 3] - T_gt[:, :3, 3], axis=1)
        rmse = float(np.sqrt(np.mean(err**2)))
        ax_b.plot(t_rel, 100 * err, color="tab:red", lw=1.2, label=f"position error (ATE RMSE {100 * rmse:.2f} cm)")
        if pose_cov is not None and len(pose_cov) == n:
            sig = np.sqrt(np.clip(np.trace(np.asarray(pose_cov)[:, :3, :3], axis1=1, axis2=2), 0, None))
            ax_b.fill_between(
                t_rel, 0, 200 * sig, color="tab:blue", alpha=0.25, label=r"filter 2$\sigma$ (pose given map)"
            )
        ax_b.set_ylabel("error [cm]")
        ax_b.legend(loc="upper left", fontsize=9)
        ax_b.set_ylim(bottom=0)
    else:
        ax_b.text(0.5, 0.5, "no ground truth", ha="center", va="center", transform=ax_b.transAxes)
    ax_b.set_xlabel("time [s]")
    ax_b.set_title("(b) position error over time")
    ax_b.grid(alpha=0.3)

    # (c) per-stage timings ------------------------------------------------
    if timings_ms:
        # pipeline order: that of the frame with the most stages, then any others
        stages = list(max(timings_ms, key=len))
        for d in timings_ms:
            stages += [k for k in d if k not in stages]
        if "total" in stages:
            stages.remove("total")
            stages.append("total")
        data = [np.array([d.get(k, np.nan) for d in timings_ms], dtype=float) for k in stages]
        data = [x[np.isfinite(x)] for x in data]
        keep = [k for k, x in enumerate(data) if len(x)]
        stages = [stages[k] for k in keep]
        data = [data[k] for k in keep]
        stages, data = stages[::-1], data[::-1]  # first stage at the top
        if data:
            try:
                ax_c.boxplot(data, orientation="horizontal", showfliers=False, widths=0.6)
            except TypeError:  # matplotlib < 3.10
                ax_c.boxplot(data, vert=False, showfliers=False, widths=0.6)
            ax_c.set_yticks(range(1, len(stages) + 1))
            ax_c.set_yticklabels([f"{s}\n(median {np.median(x):.1f})" for s, x in zip(stages, data)], fontsize=8)
            ax_c.set_xlabel("ms per frame")
            ax_c.set_xlim(left=0)
    else:
        ax_c.text(0.5, 0.5, "no timings", ha="center", va="center", transform=ax_c.transAxes)
    ax_c.set_title("(c) per-stage time (box: quartiles, whiskers 1.5 IQR)")
    ax_c.grid(alpha=0.3, axis="x")

    # (d) inlier ratio and pose sigma -------------------------------------
    if inlier_ratio is not None and len(inlier_ratio) == n:
        ax_d.plot(t_rel, inlier_ratio, color="tab:green", lw=1.0, label="inlier ratio")
        ax_d.set_ylim(0, 1.05)
        ax_d.set_ylabel("inlier ratio")
    if tracking_ok is not None and len(tracking_ok) == n:
        bad = ~np.asarray(tracking_ok, dtype=bool)
        for tb in t_rel[bad]:
            ax_d.axvline(tb, color="k", alpha=0.3, lw=0.8)
    if pose_cov is not None and len(pose_cov) == n:
        pc = np.asarray(pose_cov)
        tw = ax_d.twinx()
        st = np.sqrt(np.clip(np.trace(pc[:, :3, :3], axis1=1, axis2=2), 0, None))
        sr = np.sqrt(np.clip(np.trace(pc[:, 3:, 3:], axis1=1, axis2=2), 0, None))
        tw.semilogy(t_rel, 1000 * st, color="tab:blue", lw=1.0, label=r"$\sigma_{pos}$ [mm]")
        tw.semilogy(t_rel, np.degrees(sr) * 1000, color="tab:purple", lw=1.0, label=r"$\sigma_{rot}$ [mdeg]")
        tw.set_ylabel(r"pose $\sigma$ (sqrt trace)")
        h1, l1 = ax_d.get_legend_handles_labels()
        h2, l2 = tw.get_legend_handles_labels()
        ax_d.legend(h1 + h2, l1 + l2, loc="center left", fontsize=9, framealpha=0.9)
    ax_d.set_xlabel("time [s]")
    ax_d.set_title("(d) tracking quality and pose uncertainty")
    ax_d.grid(alpha=0.3)

    head = title or "prism_ros offline run"
    if summary:
        parts = []
        for k, v in summary.items():
            if isinstance(v, float):
                parts.append(f"{k} {v:.4g}")
            else:
                parts.append(f"{k} {v}")
        head += "\n" + ",  ".join(parts)
    fig.suptitle(head, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _calibration_panels(ax_e, ax_f, calibration: Dict) -> None:
    """(e) coverage95 against lag (and the velocity's), with the ideal 0.95 and the
    [0.90, 0.98] target band; (f) RMS real error against RMS predicted sigma per lag."""
    lags = sorted(calibration["lags"].values(), key=lambda L: L.get("k", 0))
    lags = [L for L in lags if L.get("pairs", 0) > 0]
    ks = [L["k"] for L in lags]
    pos = np.arange(len(ks))
    ax_e.axhspan(0.90, 0.98, color="tab:green", alpha=0.12, label="target [0.90, 0.98]")
    ax_e.axhline(0.95, color="tab:green", lw=1.0, ls="--", label="ideal 0.95")
    cov = [L["coverage95"] for L in lags]
    ax_e.bar(pos, cov, width=0.6, color="tab:blue", label="pose, inside 95 % ellipsoid")
    for x, L in zip(pos, lags):
        ax_e.text(
            x,
            L["coverage95"] + 0.01,
            f"{L['coverage95']:.3f}\nNEES med {L['nees_median']:.1f}",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    labels = [f"lag {k}" for k in ks]
    v = calibration.get("velocity_coverage_95")
    if v is not None:
        ax_e.bar([len(ks)], [v], width=0.6, color="tab:orange", label="velocity (chi2_6)")
        ax_e.text(len(ks), v + 0.01, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
        labels.append("twist")
    ax_e.set_xticks(range(len(labels)))
    ax_e.set_xticklabels(labels)
    ax_e.set_ylim(0, 1.12)
    ax_e.set_ylabel("coverage95")
    ax_e.legend(loc="lower left", fontsize=8)
    ax_e.set_title("(e) calibration: relative motions inside the 95 % ellipsoid")
    ax_e.grid(alpha=0.3, axis="y")

    w = 0.2
    for off, key, col, lab in (
        (-1.5 * w, "trans_err_rms_m", "tab:red", "real error, translation [mm]"),
        (-0.5 * w, "trans_sigma_rms_m", "salmon", "filter sigma, translation [mm]"),
        (0.5 * w, "rot_err_rms_deg", "tab:purple", "real error, rotation [mdeg / 10]"),
        (1.5 * w, "rot_sigma_rms_deg", "plum", "filter sigma, rotation [mdeg / 10]"),
    ):
        f = 1000.0 if key.endswith("_m") else 100.0
        ax_f.bar(pos + off, [f * L[key] for L in lags], width=w, color=col, label=lab)
    ax_f.set_xticks(pos)
    ax_f.set_xticklabels([f"lag {k}" for k in ks])
    ax_f.set_yscale("log")
    ax_f.set_ylabel("RMS")
    ax_f.legend(loc="upper left", fontsize=8)
    ax_f.set_title("(f) RMS real error vs RMS predicted sigma, per lag")
    ax_f.grid(alpha=0.3, axis="y")
