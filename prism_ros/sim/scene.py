"""The synthetic scene: exact primitive SDFs packed into arrays, and their union.

:func:`make_scene` is the synthetic sequence's room (4 m x 3 m x 2.5 m, seen from inside: world z up, floor z = 0, x in
[-2, 2], y in [-1.5, 1.5]) with furniture; other scenes are packed by :func:`pack_scene`. :func:`scene_sdf` (m, positive
in free space) is the union (``min``) of exact primitive SDFs: exact where positive (free space) and at the surface,
only a bound inside overlapping solids.  The renderer (:mod:`prism_ros.sim.render`) uses the same primitive kernels.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from numba import njit, prange

__all__ = ["make_scene", "pack_scene", "scene_sdf", "default_scene", "ROOM_HALF", "ROOM_CENTRE"]

ROOM_HALF = np.array([2.0, 1.5, 1.25])
ROOM_CENTRE = np.array([0.0, 0.0, 1.25])

# primitive types
_ROOM, _BOX, _SPHERE, _CYL, _TORUS = 0, 1, 2, 3, 4
# texture types
_TEX_ROOM, _TEX_STRIPES, _TEX_SINES, _TEX_RINGS, _TEX_NOISE = 0, 1, 2, 3, 4

_NO_TEXTURE = np.zeros((1, 1), np.float32)  # for scenes without _TEX_NOISE primitives


def _rot_z(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_x(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def make_scene():
    """Arrays describing the scene (module docstring): ``ptype`` (N,) int64, ``centre`` (N,3), ``R_ow`` (N,3,3)
    world-to-object, ``prm`` (N,4) sizes, ``bound`` (N,) radii (inf for the room), ``albedo`` (N,3), ``tex`` (N,)
    int64, ``texk`` (N,) (texture frequency, rad/m) and ``names``.
    """
    prims = []

    def add(name, ptype, centre, R_wo, prm, albedo, tex, texk):
        prims.append(
            (
                name,
                ptype,
                np.asarray(centre, float),
                np.asarray(R_wo, float),
                np.asarray(prm + [0.0] * (4 - len(prm)), float),
                np.asarray(albedo, float),
                tex,
                float(texk),
            )
        )

    I = np.eye(3)
    add("room", _ROOM, ROOM_CENTRE, I, list(ROOM_HALF), [0.8, 0.75, 0.65], _TEX_ROOM, 0.25)
    add(
        "table",
        _BOX,
        [0.0, 0.0, 0.25],
        _rot_z(math.radians(20)),
        [0.35, 0.25, 0.25],
        [0.75, 0.45, 0.25],
        _TEX_STRIPES,
        30.0,
    )
    add("ball", _SPHERE, [0.08, 0.04, 0.65], I, [0.15], [0.3, 0.55, 0.85], _TEX_SINES, 22.0)
    add("column", _CYL, [-0.55, 0.45, 0.35], I, [0.12, 0.35], [0.85, 0.3, 0.3], _TEX_RINGS, 12.0)
    add(
        "torus",
        _TORUS,
        [0.5, -0.45, 0.32],
        _rot_z(math.radians(30)) @ _rot_x(math.radians(60)),
        [0.2, 0.06],
        [0.35, 0.75, 0.35],
        _TEX_RINGS,
        16.0,
    )
    add(
        "crate",
        _BOX,
        [-0.45, -0.5, 0.1],
        _rot_z(math.radians(45)),
        [0.1, 0.15, 0.1],
        [0.9, 0.8, 0.3],
        _TEX_STRIPES,
        45.0,
    )
    add("big_ball", _SPHERE, [0.55, 0.55, 0.2], I, [0.2], [0.8, 0.5, 0.75], _TEX_SINES, 18.0)
    add("cabinet", _BOX, [1.7, 1.2, 0.6], I, [0.3, 0.3, 0.6], [0.55, 0.6, 0.7], _TEX_STRIPES, 25.0)
    add("panel", _BOX, [-1.96, 0.1, 1.4], I, [0.04, 0.55, 0.35], [0.9, 0.9, 0.9], _TEX_SINES, 20.0)
    add("pillar", _CYL, [-1.7, -1.2, 1.25], I, [0.15, 1.25], [0.6, 0.6, 0.55], _TEX_RINGS, 10.0)
    add("shelf", _BOX, [1.95, -0.6, 1.1], I, [0.05, 0.4, 0.3], [0.4, 0.3, 0.6], _TEX_STRIPES, 35.0)
    return pack_scene(prims)


def pack_scene(prims, texture: Optional[np.ndarray] = None) -> dict:
    """Scene arrays (as :func:`make_scene`) from primitives
    ``(name, ptype, centre (3,), R_wo (3,3), prm (4,), albedo (3,), tex, texk)``; ``texture``: a tileable float32
    image in [0, 1] for ``_TEX_NOISE`` (``texk``: texels/m).
    """
    n = len(prims)
    ptype = np.array([p[1] for p in prims], dtype=np.int64)
    centre = np.stack([p[2] for p in prims])
    R_ow = np.stack([p[3].T for p in prims])  # world-to-object = R_wo^T
    prm = np.stack([p[4] for p in prims])
    bound = np.empty(n)
    for k in range(n):
        t, q = ptype[k], prm[k]
        bound[k] = {
            _ROOM: np.inf,
            _BOX: float(np.linalg.norm(q[:3])),
            _SPHERE: q[0],
            _CYL: math.hypot(q[0], q[1]),
            _TORUS: q[0] + q[1],
        }[t]
    return {
        "ptype": ptype,
        "centre": np.ascontiguousarray(centre),
        "R_ow": np.ascontiguousarray(R_ow),
        "prm": np.ascontiguousarray(prm),
        "bound": bound,
        "albedo": np.ascontiguousarray(np.stack([p[5] for p in prims])),
        "tex": np.array([p[6] for p in prims], dtype=np.int64),
        "texk": np.array([p[7] for p in prims], dtype=np.float64),
        "names": [p[0] for p in prims],
        "texture": np.ascontiguousarray(texture if texture is not None else _NO_TEXTURE, dtype=np.float32),
    }


# ----------------------------------------------------------------------------- SDF kernels


@njit(cache=True, inline="always")
def _sd_box(x, y, z, bx, by, bz):
    qx = abs(x) - bx
    qy = abs(y) - by
    qz = abs(z) - bz
    ox = max(qx, 0.0)
    oy = max(qy, 0.0)
    oz = max(qz, 0.0)
    return math.sqrt(ox * ox + oy * oy + oz * oz) + min(max(qx, max(qy, qz)), 0.0)


@njit(cache=True, inline="always")
def _prim_sdf(k, px, py, pz, ptype, centre, R_ow, prm):
    dx = px - centre[k, 0]
    dy = py - centre[k, 1]
    dz = pz - centre[k, 2]
    x = R_ow[k, 0, 0] * dx + R_ow[k, 0, 1] * dy + R_ow[k, 0, 2] * dz
    y = R_ow[k, 1, 0] * dx + R_ow[k, 1, 1] * dy + R_ow[k, 1, 2] * dz
    z = R_ow[k, 2, 0] * dx + R_ow[k, 2, 1] * dy + R_ow[k, 2, 2] * dz
    t = ptype[k]
    if t == 0:
        return -_sd_box(x, y, z, prm[k, 0], prm[k, 1], prm[k, 2])
    elif t == 1:
        return _sd_box(x, y, z, prm[k, 0], prm[k, 1], prm[k, 2])
    elif t == 2:
        return math.sqrt(x * x + y * y + z * z) - prm[k, 0]
    elif t == 3:
        ax = math.sqrt(x * x + y * y) - prm[k, 0]
        az = abs(z) - prm[k, 1]
        ox = max(ax, 0.0)
        oz = max(az, 0.0)
        return min(max(ax, az), 0.0) + math.sqrt(ox * ox + oz * oz)
    else:
        qx = math.sqrt(x * x + y * y) - prm[k, 0]
        return math.sqrt(qx * qx + z * z) - prm[k, 1]


@njit(cache=True)
def _scene_sdf1(px, py, pz, ptype, centre, R_ow, prm, bound):
    """(distance, primitive id) of the union at one point."""
    best = np.inf
    bid = -1
    for k in range(ptype.shape[0]):
        b = bound[k]
        if b < np.inf:
            dx = px - centre[k, 0]
            dy = py - centre[k, 1]
            dz = pz - centre[k, 2]
            lb = math.sqrt(dx * dx + dy * dy + dz * dz) - b  # lower bound on this primitive's distance
            if lb >= best:
                continue
        d = _prim_sdf(k, px, py, pz, ptype, centre, R_ow, prm)
        if d < best:
            best = d
            bid = k
    return best, bid


@njit(cache=True, parallel=True)
def _scene_sdf_many(pts, ptype, centre, R_ow, prm, bound):
    n = pts.shape[0]
    out = np.empty(n)
    ids = np.empty(n, dtype=np.int64)
    for i in prange(n):
        d, k = _scene_sdf1(pts[i, 0], pts[i, 1], pts[i, 2], ptype, centre, R_ow, prm, bound)
        out[i] = d
        ids[i] = k
    return out, ids


def scene_sdf(points: np.ndarray, scene: Optional[dict] = None, return_ids: bool = False):
    """Exact (outside) SDF of the scene at (N,3) world points, float64 metres."""
    sc = scene if scene is not None else default_scene()
    pts = np.ascontiguousarray(np.asarray(points, dtype=np.float64).reshape(-1, 3))
    d, ids = _scene_sdf_many(pts, sc["ptype"], sc["centre"], sc["R_ow"], sc["prm"], sc["bound"])
    return (d, ids) if return_ids else d


_SCENE_CACHE: dict = {}


def default_scene() -> dict:
    """The synthetic sequence's scene (:func:`make_scene`), built once."""
    if "scene" not in _SCENE_CACHE:
        _SCENE_CACHE["scene"] = make_scene()
    return _SCENE_CACHE["scene"]
