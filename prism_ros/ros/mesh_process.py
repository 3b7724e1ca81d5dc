"""~/mesh built and published by a process of its own.

A mesh update turns thousands of triangles into ROS Marker objects and serialises them: pure Python and
rclpy's C conversion, both holding the interpreter lock for hundreds of milliseconds.  In the node's process
that lock would stall the filter's thread however the work is scheduled, so the node hands each
:class:`~prism_ros.core.mesh.MeshSnapshot` (a copy of the blocks to re-mesh, taken between two filter steps)
to a child process, which keeps the mesh cache, builds the markers and publishes the MarkerArray on the
node's ``~/mesh`` topic with a publisher of its own (transient local, depth 1, like the node's).

The child is started with ``spawn`` (never ``fork``: the parent runs DDS threads), runs at the lowest
priority the system gives (Linux ``SCHED_IDLE``), and answers each snapshot with its build time and triangle
count.  While the filter steps, the parent holds the child (:meth:`MeshProcess.pause`, SIGSTOP): on a
machine with few cores an idle-priority process still takes cache, memory bandwidth and the moments before
the scheduler preempts it, and the filter's step is what must not wait.  The child dies with its parent
(``PR_SET_PDEATHSIG``), so a held child never outlives a crashed node.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from typing import Dict, Optional, Tuple

__all__ = ["MeshProcess", "OUTPUT_NICE", "mesh_marker_update"]

#: How much nicer than the filter the output workers run (Linux nice), so that they use the filter's idle
#: time and never take a core from it.
OUTPUT_NICE = 10


def mesh_marker_update(mesher, markers: Dict[int, Tuple[int, object]], snap, header, color: Tuple[str, float, float]):
    """Mesh ``snap`` into ``mesher`` and bring the per-block marker cache ``markers`` (slot -> (mesher
    version, Marker)) up to date: only re-meshed blocks get a new Marker, the others a new header.
    ``color`` = (mesh_color_mode, map_min_sigma_m, truncation_m).  Returns the whole mesh's MarkerArray."""
    from prism_ros.core.cloud_kernels import map_colors
    from prism_ros.ros import conversions as cv

    if snap.reset:  # a new map: its slots and versions start again
        markers.clear()
    mesher.apply(snap)
    for slot in [s for s in markers if s not in mesher.meshes]:
        del markers[slot]
    for slot, mesh in mesher.meshes.items():
        ver = mesher.version[slot]
        cached = markers.get(slot)
        if cached is not None and cached[0] == ver:
            cached[1].header = header
            continue
        rgb = map_colors(mesh["rgb"], mesh["sigma"], *color)  # the ~/map_cloud colormap and range
        markers[slot] = (ver, cv.mesh_block_marker(header, mesh["verts"], mesh["faces"], rgb, slot))
    return cv.mesh_marker_array(header, [m for _, m in markers.values()])


class MeshProcess:
    """The child process that meshes snapshots and publishes ``topic`` (an absolute topic name).

    :meth:`build` sends one snapshot and waits for the child's answer (call it from an output thread,
    never from the filter's); :meth:`pause` / :meth:`resume` hold and release the child (from the filter's
    thread, around its step); :meth:`stop` ends the child.  Create it on a thread that outlives it: the
    child is killed when that thread exits (``PR_SET_PDEATHSIG`` follows the creating thread)."""

    #: The most seconds one build may be held before :meth:`pause` lets it run through.
    MAX_HELD_S = 2.0

    def __init__(
        self,
        topic: str,
        domain_id: int,
        start_timeout_s: float = 60.0,
        node_name: str = "prism_mesh",
        namespace: str = "/",
    ):
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_child_main, args=(child, topic, int(domain_id), node_name, namespace), name=node_name, daemon=True
        )
        self._paused_at: Optional[float] = None  # monotonic time of the pause in force
        self._paused_s = 0.0  # total time held, ended pauses
        self._build_held0: Optional[float] = None  # held_s() when the build in progress began
        self._hold_lock = threading.Lock()  # pause / resume / stop from different threads
        self._stopping = False
        self._proc.start()
        child.close()
        try:
            if not self._conn.poll(start_timeout_s):
                raise RuntimeError(f"the mesh process did not start within {start_timeout_s:.0f} s")
            ready = self._conn.recv()
        except (EOFError, OSError) as e:  # it died while starting
            ready = f"it exited while starting ({type(e).__name__})"
        except RuntimeError as e:
            ready = str(e)
        if ready != "ready":
            self.stop()
            raise RuntimeError(f"the mesh process failed to start: {ready}")

    @property
    def alive(self) -> bool:
        return self._proc.is_alive()

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid

    def pause(self) -> None:
        """Hold the child (SIGSTOP) until :meth:`resume`; nothing when it is already held or gone, or when
        the build in progress has been held ``MAX_HELD_S`` in all (a filter busy without pause still gets
        a mesh, late)."""
        with self._hold_lock:
            if self._paused_at is not None or self._stopping:
                return
            held0 = self._build_held0
            if held0 is not None and self.held_s() - held0 > self.MAX_HELD_S:
                return
            if self._signal(signal.SIGSTOP):
                self._paused_at = time.monotonic()

    def resume(self) -> None:
        """Release the child held by :meth:`pause` (SIGCONT)."""
        with self._hold_lock:
            t0 = self._paused_at
            if t0 is None:
                return
            self._signal(signal.SIGCONT)
            self._paused_s += time.monotonic() - t0
            self._paused_at = None

    def held_s(self) -> float:
        """Seconds the child has been held in all, the current pause included."""
        t0 = self._paused_at
        return self._paused_s + (time.monotonic() - t0 if t0 is not None else 0.0)

    def _signal(self, sig) -> bool:
        pid = self._proc.pid
        if pid is None or self._proc.exitcode is not None:
            return False
        try:
            os.kill(pid, sig)
            return True
        except OSError:  # it exited meanwhile
            return False

    def build(
        self, stamp: Tuple[int, int], frame_id: str, snap, color: Tuple[str, float, float], timeout_s: float = 60.0
    ) -> Tuple[float, int]:
        """Mesh ``snap`` and publish the whole mesh stamped ``stamp`` (sec, nanosec) in ``frame_id``;
        ``color`` = (mesh_color_mode, map_min_sigma_m, truncation_m).  Returns (child's ms, triangles);
        RuntimeError when the child failed, died or ran longer than ``timeout_s`` (time held does not count)."""
        t0, held0 = time.monotonic(), self.held_s()
        self._build_held0 = held0
        try:
            self._conn.send(("mesh", stamp, frame_id, snap, color))
            while not self._conn.poll(1.0):
                if not self._proc.is_alive():
                    raise RuntimeError(f"the mesh process died (exit code {self._proc.exitcode})")
                if time.monotonic() - t0 - (self.held_s() - held0) > timeout_s:
                    raise RuntimeError(f"the mesh process did not answer within {timeout_s:.0f} s")
            ok, ms, tris, error = self._conn.recv()
        except (EOFError, OSError) as e:  # the pipe closed: the child is gone
            raise RuntimeError(f"the mesh process died ({type(e).__name__}, exit code {self._proc.exitcode})") from e
        finally:
            self._build_held0 = None
        if not ok:
            raise RuntimeError(error)
        return ms, tris

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._conn.closed:
            return
        with self._hold_lock:
            self._stopping = True  # never held again
        self.resume()
        try:
            if self._proc.is_alive():
                self._conn.send(None)
        except (OSError, ValueError):
            pass
        self._proc.join(timeout_s)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(2.0)
        self._conn.close()


def _lowest_priority() -> None:
    """Run this process only on CPU time nothing else wants (Linux SCHED_IDLE: a woken filter thread
    preempts it at once); where that is refused, ``OUTPUT_NICE``."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return
    except (AttributeError, OSError):
        pass
    try:
        os.nice(OUTPUT_NICE)
    except (AttributeError, OSError):
        pass


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent exits (also while it is held by SIGSTOP)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _child_main(conn, topic: str, domain_id: int, node_name: str, namespace: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the parent ends us
    _die_with_parent()
    _lowest_priority()
    try:
        import rclpy
        from std_msgs.msg import Header
        from builtin_interfaces.msg import Time
        from visualization_msgs.msg import MarkerArray

        from prism_ros.core.mesh import BlockMesher
        from prism_ros.ros.qos import latched_qos

        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain_id)
        node = rclpy.create_node(node_name, namespace=namespace, context=context)
        pub = node.create_publisher(MarkerArray, topic, latched_qos(1))
        mesher = BlockMesher(1)  # apply() meshes whatever the snapshot holds
        markers = {}  # slot -> (mesher version, Marker)
    except Exception as e:  # reported to the parent, which falls back to meshing in its own process
        conn.send(f"{type(e).__name__}: {e}")
        return
    conn.send("ready")
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            if msg is None:
                break
            _, stamp, frame_id, snap, color = msg
            t0 = time.perf_counter()
            try:
                header = Header(stamp=Time(sec=int(stamp[0]), nanosec=int(stamp[1])), frame_id=frame_id)
                pub.publish(mesh_marker_update(mesher, markers, snap, header, color))
                conn.send((True, (time.perf_counter() - t0) * 1e3, int(mesher.last_stats.get("triangles", 0)), None))
            except Exception as e:
                conn.send((False, 0.0, 0, f"{type(e).__name__}: {e}"))
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def start_mesh_process(
    topic: str, domain_id: int, node_name: str = "prism_mesh", namespace: str = "/"
) -> Tuple[Optional[MeshProcess], Optional[str]]:
    """A :class:`MeshProcess` (its ROS node ``node_name`` in ``namespace``), or (None, why) when it cannot start
    (the caller meshes in its own process)."""
    try:
        return MeshProcess(topic, domain_id, node_name=node_name, namespace=namespace), None
    except Exception as e:
        return None, f"{type(e).__name__}: {e}"
