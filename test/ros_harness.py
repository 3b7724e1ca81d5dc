"""Test harness for the ROS side in-process (test/test_ros_*.py, test_reliability_node.py).

* :class:`RosHarness`: its own rclpy Context on a given domain id, a single-threaded
  executor spinning in a background thread (as the node's ``main`` spins it, so the
  node's callback groups behave as in production), helper subscriptions that collect
  messages, and ``wait_for``.  Loopback-only discovery is forced.
* :class:`FakeFilter`: a deterministic stand-in for PrismFilter (records calls,
  returns a given pose/covariance), so node tests do not need Numba.
* :class:`Proc` and :func:`cli_command`: ``prism-ros`` subprocesses (player, node) with
  their output collected (the two-process tests).

Domain ids and subprocess environments: :mod:`prism_ros.ros.env`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from prism_ros.core.tsdf import TsdfMap
from prism_ros.core.types import StepOutcome, StepResult

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["RosHarness", "FakeFilter", "FakeMap", "capture_throttled_logs", "Proc", "cli_command"]


def cli_command() -> List[str]:
    """The ``prism-ros`` command line of this environment (the console script, else this Python)."""
    exe = shutil.which("prism-ros")
    if exe:
        return [exe]
    return [sys.executable, "-c", "import sys; from prism_ros.cli import main; sys.exit(main(sys.argv[1:]))"]


class Proc:
    """A subprocess whose merged output is collected by a reader thread."""

    def __init__(self, args, env, log_path):
        self.log_path = log_path
        self.lines = []
        self.p = subprocess.Popen(
            args, env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        with open(self.log_path, "w") as f:
            for line in self.p.stdout:
                self.lines.append(line)
                f.write(line)
                f.flush()

    def text(self):
        return "".join(self.lines)

    def stop(self, timeout=30):
        """SIGINT, then (after ``timeout`` s) SIGUSR1 for the node's thread dump (faulthandler) and SIGKILL."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.send_signal(signal.SIGUSR1)
                time.sleep(1.0)
                self.p.kill()
                self.p.wait(5)
        self._t.join(5)
        return self.p.returncode


class RosHarness:
    """An rclpy context on ``domain_id`` with a spinning executor thread."""

    def __init__(self, domain_id: int):
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(domain_id))
        self.executor = SingleThreadedExecutor(context=self.context)  # as prism_node spins
        self.node = rclpy.create_node(f"prism_test_{os.getpid()}", context=self.context)
        self.executor.add_node(self.node)
        self._nodes = [self.node]
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._lock = threading.Lock()
        self._thread.start()

    def _spin(self):
        try:
            self.executor.spin()
        except Exception:  # executor shut down
            pass

    def add_node(self, node) -> None:
        self._nodes.append(node)
        self.executor.add_node(node)

    def remove_node(self, node) -> None:
        self.executor.remove_node(node)
        if node in self._nodes:
            self._nodes.remove(node)

    def collect(self, msg_type, topic: str, qos=10) -> List[Any]:
        """Subscribe and return the (growing) list of received messages."""
        out: List[Any] = []

        def cb(m):
            with self._lock:
                out.append(m)

        self.node.create_subscription(msg_type, topic, cb, qos)
        return out

    def publisher(self, msg_type, topic: str, qos=10):
        return self.node.create_publisher(msg_type, topic, qos)

    def node_io(self, depth: int = 50) -> None:
        """What every node test needs, as attributes: reliable publishers of the node's default
        camera topics (``pub_color``, ``pub_depth``, ``pub_info``, ``depth`` deep) and the
        collected ``/prism/odometry`` (``odom``) and ``/rosout`` (``rosout``; transient local,
        so a new node's first log lines arrive even if they precede discovery)."""
        from nav_msgs.msg import Odometry
        from rcl_interfaces.msg import Log
        from sensor_msgs.msg import CameraInfo, Image

        from prism_ros.ros.qos import latched_qos, reliable_qos

        self.pub_color = self.publisher(Image, "/camera/color/image_raw", reliable_qos(depth))
        self.pub_depth = self.publisher(Image, "/camera/depth/image_raw", reliable_qos(depth))
        self.pub_info = self.publisher(CameraInfo, "/camera/color/camera_info", reliable_qos(depth))
        self.odom = self.collect(Odometry, "/prism/odometry", reliable_qos(200))
        self.rosout = self.collect(Log, "/rosout", latched_qos(1000))

    def attach(self, node) -> None:
        """Spin a prism node under test here: its throttled log calls are captured into
        ``captured`` (/rosout may deliver late), and this returns once the node_io
        publishers and the node's odometry publisher are matched."""
        self.captured = capture_throttled_logs(node)
        self.add_node(node)
        pubs = (self.pub_color, self.pub_depth, self.pub_info)
        assert self.wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs), 10), "camera topics not matched"
        assert self.wait_for(lambda: node.count_subscribers("~/odometry") > 0, 10), "odometry not matched"

    def detach(self, node) -> None:
        self.remove_node(node)
        node.destroy_node()

    @staticmethod
    def wait_for(cond: Callable[[], bool], timeout_s: float = 10.0, period_s: float = 0.02) -> bool:
        t_end = time.monotonic() + timeout_s
        while time.monotonic() < t_end:
            if cond():
                return True
            time.sleep(period_s)
        return bool(cond())

    def call(self, srv_type, name: str, request=None, timeout_s: float = 30.0):
        # one client per service: a second client of the same service may send its request
        # before the server's reply writer has matched it, and the reply is then lost
        clients = self.__dict__.setdefault("_clients", {})
        cli = clients.get((srv_type, name))
        if cli is None:
            cli = clients[(srv_type, name)] = self.node.create_client(srv_type, name)
        if not cli.wait_for_service(timeout_sec=timeout_s):
            raise TimeoutError(f"service {name} not available")
        fut = cli.call_async(request if request is not None else srv_type.Request())
        if not self.wait_for(fut.done, timeout_s):
            raise TimeoutError(f"service {name} did not answer")
        return fut.result()

    def shutdown(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self._thread.join(5.0)
        for n in list(self._nodes):
            try:
                n.destroy_node()
            except Exception:
                pass
        self.rclpy.try_shutdown(context=self.context)


class FakeMap(TsdfMap):
    """An empty TsdfMap (what the occupancy grid and the mesh read: nothing observed) whose surface, cloud
    and saved file are ``n_points`` fixed random points."""

    def __init__(self, n_points: int = 50):
        super().__init__(0.05, 0.2, 0.1, 0.001, 50, initial_blocks=8)
        rng = np.random.default_rng(0)
        self.xyz = rng.uniform(-1, 1, (n_points, 3)).astype(np.float32)
        self.rgb = rng.integers(0, 255, (n_points, 3)).astype(np.uint8)
        self.sigma = rng.uniform(0.002, 0.05, n_points).astype(np.float32)
        self.count = rng.integers(1, 50, n_points).astype(np.int32)
        self.saved: List[str] = []
        # one block holding every point, fused at frame 0 (what SurfaceCloudBuilder reads)
        self.epoch, self.n_blocks, self.last_seen = 0, 1, np.zeros(1, np.int64)

    def extract_surface_blocks(self, max_abs_sdf_m: float, slots, min_count: int = 1):
        n = len(self.xyz) if 0 in list(slots) else 0
        return {k: v[:n] for k, v in self.extract_surface(max_abs_sdf_m).items()}, np.array([0, n][: len(slots) + 1])

    def extract_surface(self, max_abs_sdf_m: float, min_count: int = 1) -> Dict[str, np.ndarray]:
        return {
            "xyz": self.xyz,
            "rgb": self.rgb,
            "sigma": self.sigma,
            "sdf": np.zeros(len(self.xyz), np.float32),
            "count": self.count,
        }

    def save(self, path: str, extra=None) -> None:
        self.saved_extra = extra
        with open(path, "wb") as f:
            np.savez(f, xyz=self.xyz)
        self.saved.append(path)


class FakeFilter:
    """Returns ``T_w_c`` (default: T_w_c0 advanced 1 cm along camera z per step) and fixed covariances."""

    instances: List["FakeFilter"] = []

    def __init__(self, cfg, camera, T_w_c0=None, pose_cov=None, velocity=None, velocity_cov=None, T_w_c=None):
        self.cfg = cfg
        self.camera = camera
        self.T_w_c0 = np.eye(4) if T_w_c0 is None else np.array(T_w_c0, dtype=np.float64)
        self.pose_cov = np.diag([1e-4, 2e-4, 3e-4, 1e-5, 2e-5, 3e-5]) if pose_cov is None else np.asarray(pose_cov)
        self.velocity = np.array([0.0, 0.0, 0.3, 0.0, 0.1, 0.0]) if velocity is None else np.asarray(velocity)
        self.velocity_cov = (
            np.diag([1e-2, 2e-2, 3e-2, 1e-3, 2e-3, 3e-3]) if velocity_cov is None else np.asarray(velocity_cov)
        )
        self.fixed_T = None if T_w_c is None else np.asarray(T_w_c, dtype=np.float64)
        self.map = FakeMap()
        self.steps: List[float] = []
        self.controls: List[Any] = []
        self.resets = 0
        self.warmed = False
        self.state = None  # as PrismFilter's: what the pipeline's controls read
        FakeFilter.instances.append(self)

    def warmup(self) -> float:
        self.warmed = True
        return 0.0

    def reset(self, T_w_c0=None) -> None:
        self.resets += 1
        self.steps.clear()
        self.state = None
        if T_w_c0 is not None:
            self.T_w_c0 = np.array(T_w_c0, dtype=np.float64)

    def set_map(self, tsdf_map, T_w_c0=None) -> None:
        """As :meth:`PrismFilter.set_map`: reset, then track against ``tsdf_map``."""
        self.reset(T_w_c0)
        self.map = tsdf_map

    def step(self, rgb, depth, stamp, control=None, depth_sigma=None) -> StepResult:
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        assert depth.dtype == np.float32 and depth.shape == rgb.shape[:2]
        self.steps.append(float(stamp))
        self.controls.append(control)
        if self.fixed_T is not None:
            T = self.fixed_T
        else:
            T = self.T_w_c0.copy()
            T[:3, 3] += T[:3, :3] @ np.array([0.0, 0.0, 0.01 * len(self.steps)])
        self.state = SimpleNamespace(
            stamp=float(stamp),
            T_w_c=T.copy(),
            nu=self.velocity.copy(),
            P=self.velocity_cov.copy(),
            Sigma=self.pose_cov.copy(),
        )
        return StepResult(
            stamp=float(stamp),
            T_w_c=T.copy(),
            pose_cov=self.pose_cov.copy(),
            velocity=self.velocity.copy(),
            velocity_cov=self.velocity_cov.copy(),
            tracking_ok=True,
            inlier_ratio=0.9,
            iterations=3,
            outcome=StepOutcome.INITIALISED if len(self.steps) == 1 else StepOutcome.OK,
            timings_ms={"track": 1.0, "integrate": 1.0},
            status="ok",
        )


def capture_throttled_logs(node) -> List[Tuple[int, str]]:
    """Record every line ``node`` logs through its throttle (``_error``, ``_warn``) as
    (rcl_interfaces Log level, text), in addition to /rosout: a test can then check a
    log line even when DDS delivers /rosout late on a loaded machine."""
    from rcl_interfaces.msg import Log

    captured: List[Tuple[int, str]] = []

    def spy(log, level):
        def logged(key, text):
            if log(key, text):
                captured.append((level, text))
                return True
            return False

        return logged

    node._error, node._warn = spy(node._error, Log.ERROR), spy(node._warn, Log.WARN)
    return captured
