"""visualization_msgs Marker / MarkerArray of the map's mesh (``~/mesh``, one TRIANGLE_LIST a block)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from std_msgs.msg import Header

__all__ = ["mesh_block_marker", "mesh_marker_array"]


def mesh_block_marker(
    header: Header, verts: np.ndarray, faces: np.ndarray, rgb: np.ndarray, marker_id: int, ns: str = "prism_mesh"
):
    """One block's mesh -> visualization_msgs/Marker TRIANGLE_LIST (3 points per face, one
    colour per point; ``rgb`` (V, 3) uint8 per vertex)."""
    from geometry_msgs.msg import Point
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker

    V = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    F = np.asarray(faces, dtype=np.int64).reshape(-1)
    C = np.asarray(rgb, dtype=np.float64).reshape(-1, 3) / 255.0
    m = Marker()
    m.header = header
    m.ns = ns
    m.id = int(marker_id)
    m.type = Marker.TRIANGLE_LIST
    m.action = Marker.ADD
    m.pose.orientation.w = 1.0
    m.scale.x = m.scale.y = m.scale.z = 1.0
    m.color.a = 1.0
    # one Point / ColorRGBA per vertex, referenced by every face that uses it (a vertex is in about six
    # faces: six times fewer Python objects; the message is the same)
    pts = [Point(x=p[0], y=p[1], z=p[2]) for p in V.tolist()]
    cols = [ColorRGBA(r=c[0], g=c[1], b=c[2], a=1.0) for c in C.tolist()]
    idx = F.tolist()
    m.points = [pts[i] for i in idx]
    m.colors = [cols[i] for i in idx]
    return m


def mesh_marker_array(header: Header, markers: Sequence, ns: str = "prism_mesh"):
    """A complete mesh snapshot: DELETEALL (drops blocks whose mesh vanished) then every
    block's (cached) marker, so a late transient-local subscriber gets the whole mesh."""
    from visualization_msgs.msg import Marker, MarkerArray

    clear = Marker()
    clear.header = header
    clear.ns = ns
    clear.action = Marker.DELETEALL
    out = MarkerArray()
    out.markers = [clear] + list(markers)
    return out
