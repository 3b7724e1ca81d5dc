"""~/mesh built and published by a process of its own.

A mesh update turns thousands of triangles into ROS Marker objects and serialises them: pure Python and
rclpy's C conversion, both holding the interpreter lock for hundreds of milliseconds.  In the node's process
that lock would stall the filter's thread however the work is scheduled, so the node hands each
:class:`~prism_ros.core.mesh.MeshSnapshot` (a copy of the blocks to re-mesh, taken between two filter steps)
to a child process, which keeps the mesh cache, builds the markers and publishes the MarkerArray on the
node's ``~/mesh`` topic with a publisher of its own (transient local, depth 1, like the node's).

The child is started with ``spawn`` (never ``fork``: the parent runs DDS threads), runs at the lowest
priority the system gives (Linux ``SCHED_IDLE``), and answers each snapshot with its build time and triangle
count.  It dies with its parent (``PR_SET_PDEATHSIG``).  It is never stopped with SIGSTOP around the filter's
steps: a child stopped while it holds a lock of the DDS shared-memory transport (a port another process
writes to) could stall that process, the node included (docs/results.md, "The node under full load").
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
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
    never from the filter's); :meth:`stop` ends the child.  Create it on a thread that outlives it: the
    child is killed when that thread exits (``PR_SET_PDEATHSIG`` follows the creating thread)."""

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
            target=_child_main,
            args=(child, topic, int(domain_id), node_name, namespace, os.getpid()),
            name=node_name,
            daemon=True,
        )
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

    def build(
        self, stamp: Tuple[int, int], frame_id: str, snap, color: Tuple[str, float, float], timeout_s: float = 60.0
    ) -> Tuple[float, int]:
        """Mesh ``snap`` and publish the whole mesh stamped ``stamp`` (sec, nanosec) in ``frame_id``;
        ``color`` = (mesh_color_mode, map_min_sigma_m, truncation_m).  Returns (child's ms, triangles);
        RuntimeError when the child failed, died or took longer than ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        try:
            self._conn.send(("mesh", stamp, frame_id, snap, color))
            while not self._conn.poll(1.0):
                if not self._proc.is_alive():
                    raise RuntimeError(f"the mesh process died (exit code {self._proc.exitcode})")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the mesh process did not answer within {timeout_s:.0f} s")
            ok, ms, tris, error = self._conn.recv()
        except (EOFError, OSError) as e:  # the pipe closed: the child is gone
            raise RuntimeError(f"the mesh process died ({type(e).__name__}, exit code {self._proc.exitcode})") from e
        if not ok:
            raise RuntimeError(error)
        return ms, tris

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._conn.closed:
            return
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


def _die_with_parent(parent_pid: int) -> None:
    """Linux: SIGKILL this process when the thread that started it exits (best effort: nothing elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = (
            libc.prctl(
                ctypes.c_int(1),
                ctypes.c_ulong(int(signal.SIGKILL)),
                ctypes.c_ulong(0),
                ctypes.c_ulong(0),
                ctypes.c_ulong(0),
            )
            == 0
        )  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        return
    if ok and os.getppid() != parent_pid:  # the parent died before the request: go now
        os._exit(1)


def _child_main(conn, topic: str, domain_id: int, node_name: str, namespace: str, parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the parent ends us
    _die_with_parent(parent_pid)
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
