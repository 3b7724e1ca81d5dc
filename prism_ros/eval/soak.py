"""``prism-ros soak PATH``: overload soak test of the prism node.

Starts ``prism-ros node`` and ``prism-ros play PATH --loop --rate R`` as two processes on a private ROS
domain (loopback discovery, ``use_sim_time``, reliable sensor QoS), samples the node's RSS and reads its
``/diagnostics`` for ``--duration-s`` seconds, prints RSS over time and ends with ONE JSON line::

  {"rss_growth_pct": ..., "latency_p95_ms": ..., "drop_rate": ..., "frames_processed": ..., ...}

* ``rss_growth_pct``: RSS at the end against RSS ``--settle-s`` after the player started
  (``rss_max_growth_pct``: the largest sample; ``rss_trend_pct``: medians of the first and last quarter
  of the settled samples, since looping rebuilds the map and RSS is a sawtooth).
* ``latency_p95_ms`` (``_p50_``, ``_p99_``, ``latency_over_100ms_frac``, ``latency_frames``): node latency
  (pair complete -> pose published, queue wait included) of every frame after settling, from the
  cumulative 1 ms histogram ``latency_hist_total``; ``latency_e2e_*``: the same from the player's send
  time; ``latency_worst_window_p95_ms``: the worst 2 s diagnostics window.
* ``drop_rate``: 1 - processed / published colour frames; ``queue_drop_rate``: drops / (processed + drops).
* ``step_p50_ms`` / ``step_p99_ms``: the filter's step after settling; ``<output>_published_total``,
  ``_skipped_total``, ``_build_ms_mean`` for the map outputs (cloud, occupancy, mesh); ``cpu_<thread>_pct``
  and ``callback_<kind>_{hz,us_mean,ms_per_s}``: the means over the settled windows of the node's figures
  (:mod:`prism_ros.ros.thread_load`).

The player preloads (``--no-preload`` to decode while playing; ``--frames 300`` per loop by default); the node gets
``use_sim_time:=true``, ``sensor_qos:=reliable``, ``queue_size:=1`` (``--queue-size``) and the dataset's
``config_hints`` (``--no-dataset-hints`` to skip; ``-p`` overrides).  See docs/node.md, "Overload and soak".

Exit status 0 when both processes ran to the end, 1 otherwise (the JSON line is printed whenever figures exist).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

import numpy as np

from prism_ros.stats import LatencyHistogram

__all__ = ["main", "build_parser"]

_CLI = "import sys; from prism_ros.cli import main; sys.exit(main(sys.argv[1:]))"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="prism-ros soak",
        description="Run the player (looping) and the node as separate processes; report RSS, latency and drops.",
    )
    ap.add_argument("path", help="dataset folder, 'synthetic[:N]' or a bag (as for prism-ros play)")
    ap.add_argument("--rate", type=float, default=3.0, help="playback speed relative to real time (default 3)")
    ap.add_argument("--duration-s", type=float, default=180.0, help="how long to play (default 180 s)")
    ap.add_argument(
        "--frames",
        type=int,
        default=300,
        help="frames per loop of the dataset (default 300; 0: all). The player preloads them: "
        "about 1.5 MB per 640x480 frame",
    )
    ap.add_argument(
        "--no-preload",
        dest="preload",
        action="store_false",
        help="decode each frame while playing instead of preloading the messages (the player then "
        "competes with the node for the CPU, unlike a camera driver)",
    )
    ap.add_argument(
        "--queue-size",
        type=int,
        default=1,
        metavar="N",
        help="the node's queue_size parameter (default 1: latency = wait + step, and the wait "
        "is at most one step with 1, two with 2; 0: the node's own default, 2)",
    )
    ap.add_argument(
        "--no-dataset-hints",
        dest="dataset_hints",
        action="store_false",
        help="do not pass the dataset's config_hints (e.g. use_photometric:=false for 7-Scenes) to the node",
    )
    ap.add_argument(
        "--settle-s", type=float, default=30.0, help="RSS growth is measured from this time on (default 30 s)"
    )
    ap.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling / printing period (default 5 s)")
    ap.add_argument(
        "--diagnostics-period-s", type=float, default=2.0, help="the node's diagnostics period (default 2 s)"
    )
    ap.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: a free one)")
    ap.add_argument("--startup-timeout-s", type=float, default=180.0, help="wait this long for the node to be ready")
    ap.add_argument("--log-dir", default=None, help="write node.log and player.log here")
    ap.add_argument(
        "--malloc-arena-max",
        type=int,
        default=None,
        metavar="N",
        help="set MALLOC_ARENA_MAX=N for the node (glibc: fewer per-thread heaps, less fragmentation)",
    )
    ap.add_argument(
        "--node-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment variable for the node (repeatable), e.g. MALLOC_MMAP_THRESHOLD_=1048576",
    )
    ap.add_argument(
        "-p", "--param", action="append", default=[], metavar="NAME:=VALUE", help="extra node parameter (repeatable)"
    )
    ap.add_argument(
        "--params-file",
        action="append",
        default=[],
        metavar="YAML",
        help="a node parameter file (repeatable, in order; soak's own settings and -p win), e.g. config/prism.yaml "
        "then config/euroc.yaml",
    )
    return ap


class _Child:
    """A child process whose merged output is collected by a reader thread."""

    def __init__(self, name: str, args: List[str], env: Dict[str, str], log_path: Optional[str]):
        self.name = name
        self.lines: List[str] = []
        self._log = open(log_path, "w") if log_path else None
        self.p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        for line in self.p.stdout:
            self.lines.append(line)
            if len(self.lines) > 5000:
                del self.lines[:1000]
            if self._log:
                self._log.write(line)
                self._log.flush()

    def has(self, text: str) -> bool:
        return any(text in ln for ln in list(self.lines))

    def stop(self, timeout_s: float = 20.0) -> Optional[int]:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self._t.join(5)
        if self._log:
            self._log.close()
        return self.p.returncode


class _DiagListener:
    """Subscribes to /diagnostics in this process (own rclpy context) and keeps the prism windows."""

    def __init__(self, domain_id: int):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor

        from prism_ros.ros.qos import reliable_qos

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(domain_id))
        self.node = rclpy.create_node("prism_soak", context=self.context)
        self.windows: List[Dict[str, float]] = []
        self._lock = threading.Lock()
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, reliable_qos(20))
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._t = threading.Thread(target=self._spin, daemon=True)
        self._t.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:
            pass

    def _on_diag(self, msg) -> None:
        t = time.monotonic()
        for st in msg.status:
            if "prism" not in st.name:
                continue
            w: Dict[str, float] = {"t": t}
            for kv in st.values:
                if kv.key.endswith("_hist_total"):
                    w[kv.key] = kv.value  # type: ignore[assignment]  # decoded by _hist
                    continue
                try:
                    w[kv.key] = float(kv.value)
                except ValueError:
                    pass
            with self._lock:
                self.windows.append(w)

    def snapshot(self) -> List[Dict[str, float]]:
        with self._lock:
            return list(self.windows)

    def close(self) -> None:
        try:
            self.executor.shutdown(timeout_sec=2.0)
        except Exception:
            pass
        self._t.join(5.0)
        try:
            self.node.destroy_node()
        except Exception:
            pass
        self.rclpy.try_shutdown(context=self.context)


def _rss_mib(proc) -> Optional[float]:
    try:
        return proc.memory_info().rss / 2**20
    except Exception:
        return None


def _published(lines: List[str]) -> Optional[int]:
    for ln in reversed(lines):
        if "published" in ln and "frames" in ln:
            try:
                return int(ln.split("published", 1)[1].split()[0])
            except (ValueError, IndexError):
                continue
    return None


def _hist_between(first: Dict, last: Dict, key: str) -> Optional[LatencyHistogram]:
    """The histogram of the frames between two diagnostics windows (None if absent or empty)."""
    try:
        h = LatencyHistogram.decode(str(last[key])) - LatencyHistogram.decode(str(first.get(key, "")))
    except (KeyError, ValueError):
        return None
    return h if h.count else None


def dataset_hint_params(path: str, user_params: List[str]) -> List[str]:
    """``name:=value`` node parameters from the dataset's ``config_hints`` (as ``prism-ros run``
    applies them), except those the user sets with ``-p``; [] for bags or unreadable paths."""
    try:
        from prism_ros.datasets import open_dataset
        from prism_ros.datasets.capabilities import HasConfigHints

        ds = open_dataset(path, frames=1)
        hints = dict(ds.config_hints) if isinstance(ds, HasConfigHints) else {}
    except Exception:
        return []
    user = {p.split(":=", 1)[0] for p in user_params}
    out = []
    for k, v in hints.items():
        if k in user:
            continue
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, (list, tuple)):
            v = "[" + ", ".join(str(x) for x in v) + "]"
        out.append(f"{k}:={v}")
    return out


def main(argv: Optional[List[str]] = None) -> int:
    a = build_parser().parse_args(argv)
    if not (a.rate > 0 and a.duration_s > 0 and a.sample_s > 0):
        print("prism-ros soak: --rate, --duration-s and --sample-s must be positive", file=sys.stderr)
        return 2
    import psutil

    from prism_ros.ros.env import claim_domain_id, ros_env

    domain = a.domain_id if a.domain_id is not None else claim_domain_id(77)
    env = ros_env(domain)
    from prism_ros.ros.transport import use_default_profile

    use_default_profile(env)  # the node's and the player's Fast DDS profile (config/fastdds.xml)
    node_env = dict(env)
    if a.malloc_arena_max:
        node_env["MALLOC_ARENA_MAX"] = str(a.malloc_arena_max)
    for kv in a.node_env:
        if "=" not in kv:
            print(f"prism-ros soak: --node-env expects NAME=VALUE, got {kv!r}", file=sys.stderr)
            return 2
        k, v = kv.split("=", 1)
        node_env[k] = v
    if a.log_dir:
        os.makedirs(a.log_dir, exist_ok=True)
    log = (lambda n: os.path.join(a.log_dir, n)) if a.log_dir else (lambda n: None)
    settle = min(a.settle_s, a.duration_s / 2)

    node_args = [
        sys.executable,
        "-c",
        _CLI,
        "node",
        "--ros-args",
        *[x for f in a.params_file for x in ("--params-file", os.path.abspath(f))],  # first: the -p below win
        "-p",
        "use_sim_time:=true",
        "-p",
        "sensor_qos:=reliable",
        "-p",
        f"diagnostics_period_s:={a.diagnostics_period_s}",
    ]
    if a.queue_size:
        node_args += ["-p", f"queue_size:={a.queue_size}"]
    hints = dataset_hint_params(a.path, a.param) if a.dataset_hints else []
    for p in hints + a.param:
        node_args += ["-p", p]
    play_args = [sys.executable, "-c", _CLI, "play", a.path, "--loop", "--rate", str(a.rate)]
    if a.frames and a.frames > 0:
        play_args += ["--frames", str(a.frames)]
    if a.preload:
        play_args += ["--preload"]

    print(
        f"prism-ros soak: domain {domain}, {a.path} at {a.rate}x for {a.duration_s:.0f} s"
        + (f", {a.frames} frames per loop" if a.frames and a.frames > 0 else "")
        + (", preloaded" if a.preload else "")
        + (f", queue_size {a.queue_size}" if a.queue_size else "")
        + (f"; dataset hints: {' '.join(hints)}" if hints else ""),
        flush=True,
    )
    diag = _DiagListener(domain)
    node = _Child("node", node_args, node_env, log("node.log"))
    player = None
    rc = 0
    samples: List[tuple] = []
    try:
        t_end = time.monotonic() + a.startup_timeout_s
        while not node.has("prism_node ready"):
            if node.p.poll() is not None or time.monotonic() > t_end:
                print("prism-ros soak: the node did not start:\n" + "".join(node.lines[-30:]), file=sys.stderr)
                return 1
            time.sleep(0.1)
        proc = psutil.Process(node.p.pid)
        player = _Child("player", play_args, env, log("player.log"))
        t0 = time.monotonic()
        next_sample = t0
        print(
            f"{'t_s':>6} {'rss_mib':>8} {'processed':>9} {'q_drops':>7} {'lat_p95_ms':>10} {'e2e_p95_ms':>10}",
            flush=True,
        )
        while True:
            now = time.monotonic()
            if now - t0 >= a.duration_s:
                break
            if node.p.poll() is not None or player.p.poll() is not None:
                who = "node" if node.p.poll() is not None else "player"
                print(
                    f"prism-ros soak: the {who} exited early:\n"
                    + "".join((node if who == "node" else player).lines[-30:]),
                    file=sys.stderr,
                )
                rc = 1
                break
            if now >= next_sample:
                rss = _rss_mib(proc)
                w = diag.snapshot()
                last = w[-1] if w else {}
                samples.append((now - t0, rss))
                print(
                    f"{now - t0:6.1f} {rss if rss is not None else float('nan'):8.1f} "
                    f"{int(last.get('processed_total', 0)):9d} {int(last.get('queue_drops_total', 0)):7d} "
                    f"{last.get('latency_ms_p95', float('nan')):10.1f} "
                    f"{last.get('latency_e2e_ms_p95', float('nan')):10.1f}",
                    flush=True,
                )
                next_sample += a.sample_s
            time.sleep(min(0.2, max(0.0, next_sample - time.monotonic())))
        samples.append((time.monotonic() - t0, _rss_mib(proc)))
    finally:
        if player is not None:
            player.stop()
        time.sleep(min(2.0 * a.diagnostics_period_s, 5.0))  # the last diagnostics window
        node_rc = node.stop()
        windows = diag.snapshot()
        diag.close()
    if player is None:
        return 1
    published = _published(player.lines)
    rss = [(t, r) for t, r in samples if r is not None]
    base = next((r for t, r in rss if t >= settle), rss[0][1] if rss else None)
    end = rss[-1][1] if rss else None
    after = [r for t, r in rss if t >= settle] or [end]
    t_settle_mono = (t0 + settle) if samples else 0.0
    last = windows[-1] if windows else {}
    # latency of every frame processed after settling: the node's cumulative histograms at
    # the end minus at the last window before the settle time
    prev = [w for w in windows if w["t"] < t_settle_mono]
    first = prev[-1] if prev else {}
    lat = _hist_between(first, last, "latency_hist_total")
    e2e = _hist_between(first, last, "latency_e2e_hist_total")
    step = _hist_between(first, last, "step_hist_total")
    # the worst diagnostics window (2 s) after settling, for where the spikes are
    late = [w for w in windows if w["t"] >= t_settle_mono]
    worst = max(
        (w["latency_ms_p95"] for w in late if w.get("latency_ms_p95", float("nan")) == w.get("latency_ms_p95")),
        default=None,
    )
    processed = int(last.get("processed_total", 0))
    qd = int(last.get("queue_drops_total", 0))
    # the map is rebuilt on every loop (stamps jump back: the node resets), so RSS is a
    # sawtooth; the trend compares medians of the first and last quarter after settling
    aft = [r for t, r in rss if t >= settle]
    q = max(1, len(aft) // 4)
    trend = (
        (100.0 * (float(np.median(aft[-q:])) - float(np.median(aft[:q]))) / float(np.median(aft[:q]))) if aft else None
    )
    out = {
        "rss_trend_pct": round(trend, 2) if trend is not None else None,
        "rss_growth_pct": round(100.0 * (end - base) / base, 2) if base else None,
        "rss_max_growth_pct": round(100.0 * (max(after) - base) / base, 2) if base else None,
        "rss_settle_mib": round(base, 1) if base else None,
        "rss_end_mib": round(end, 1) if end else None,
        "latency_p95_ms": lat.percentile(95) if lat is not None else None,
        "latency_p50_ms": lat.percentile(50) if lat is not None else None,
        "latency_p99_ms": lat.percentile(99) if lat is not None else None,
        "latency_over_100ms_frac": round(lat.fraction_over(100), 4) if lat is not None else None,
        "latency_e2e_p95_ms": e2e.percentile(95) if e2e is not None else None,
        "latency_e2e_over_100ms_frac": round(e2e.fraction_over(100), 4) if e2e is not None else None,
        "latency_frames": lat.count if lat is not None else 0,
        "latency_worst_window_p95_ms": round(worst, 1) if worst is not None else None,
        "drop_rate": round(1.0 - processed / published, 4) if published else None,
        "queue_drop_rate": round(qd / (processed + qd), 4) if processed + qd else 0.0,
        "frames_processed": processed,
        "frames_published": published,
        "duration_s": round(samples[-1][0], 1) if samples else 0.0,
        "rate": a.rate,
        "node_exit": node_rc,
        "step_p50_ms": step.percentile(50) if step is not None else None,
        "step_p99_ms": step.percentile(99) if step is not None else None,
    }
    for kind in ("cloud", "occupancy", "mesh"):  # the map outputs (totals since the node started)
        for key in ("published_total", "skipped_total", "build_ms_mean"):
            if f"{kind}_{key}" in last:
                out[f"{kind}_{key}"] = last[f"{kind}_{key}"]
    # each thread's CPU (percent of one core) and each callback kind's cost, the mean of the settled windows
    for key in sorted({k for w in late for k in w if k.startswith(("cpu_", "callback_"))}):
        out[key] = round(float(np.mean([w[key] for w in late if key in w])), 2)
    print(json.dumps(out), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
