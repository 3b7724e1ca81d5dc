"""A procedural, exactly known RGB-D sequence for tests and benchmarks.

The scene
---------
A closed room (4 m x 3 m x 2.5 m, seen from inside) holding a table (box), spheres,
a standing cylinder, a tilted torus, small boxes, a corner cabinet, a wall panel
and a pillar.  World frame: z up, the floor is z = 0, the room spans
x in [-2, 2], y in [-1.5, 1.5].

Its signed distance function :meth:`SyntheticSequence.sdf` (metres, positive in
free space) is the union (``min``) of *exact* primitive SDFs (inverted box for the
room, boxes, spheres, capped cylinder, torus).  The min of exact SDFs is exact
wherever it is positive (free space, where the camera and every TSDF band in
front of a surface lie) and within ~1e-12 of the surface; inside the solids it
is only a bound (|value| <= true distance) where primitives overlap or touch.
Objects are axis-aligned or rotated rigidly; a bounding-sphere test skips far
primitives without changing the result.

Rendering
---------
Per pixel (REP-103 optical frame: z forward, x right, y down; pixel centres at
integer coordinates) the room's walls are intersected analytically, and the
objects whose bounding spheres the ray crosses before the wall are sphere traced
(Numba, parallel over rows) with their exact SDFs, so no surface is skipped, to
sdf < 2e-5 m; a point where the ray only grazes past an edge (the surface normal
faces away) is stepped over, and a hit is refined by one Newton step along the
ray.  ``depth`` is the z coordinate of the hit in the optical frame.  Colour is
view-independent: a procedural albedo (checkers and smooth sine "noise" on the
room, stripes / rings / sine patterns on the objects, so photometric tracking
has gradients almost everywhere) times Lambertian shading from two fixed
directional lights plus ambient.  A 320x240 frame costs ~20 ms of CPU (one core).

Noise (``noise=True``)
----------------------
* depth: z + N(0, sigma_z(z)^2) with the Kinect v1 model of :class:`PrismConfig`,
  sigma_z(z) = c0 + c2 (z - z0)^2 (defaults 0.0012 + 0.0019 (z - 0.4)^2), evaluated
  at the true depth; optional rounding to ``depth_quantum`` metres.  The noise is
  spatially correlated like a block-matching sensor's: one draw per
  ``noise_corr_px`` x ``noise_corr_px`` block (default 4 x 4 = 16 pixels, the
  filter's default ``laplace_patch_px``), so pixels are not independent;
* holes (``holes``, default = ``noise``): random dropout (``dropout``, 2 %), rays
  meeting the surface at more than ``grazing_deg`` (80 deg) from its normal, and
  noisy depths outside [``depth_min``, ``depth_max``] = [0.3, 4.0] m;
* colour: N(0, ``color_noise``^2) in uint8 counts (default 2), then rounded/clipped.

Noise is drawn from ``numpy.random.default_rng([seed, 7, global_frame_index])``, so
a frame is the same whatever ``start`` or the access order.

Trajectory
----------
The camera orbits the room centre on an ellipse (semi-axes ~1.2 m x 0.9 m, 1.2-1.5 m
high) with a varying angular rate, radial/height wobble, and looks at a point
wandering around the table, with a small roll wobble: sums of sinusoids, so
every derivative is smooth.  ``seed`` sets the phases.  Typical speeds are
0.2-0.5 m/s and 10-50 deg/s (see :meth:`gt_twists`).  Frame ``i`` is at
t = (start + i) / fps and ``T_w_c_gt`` is exact.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Optional

import numpy as np
from numba import njit, prange

from prism_ros.core.camera import Camera

from prism_ros.datasets.base import DatasetBase, Frame, slice_range

__all__ = ["SyntheticSequence", "make_scene", "scene_sdf", "render_scene", "render_rays", "pinhole_rays", "pack_scene", "look_at"]

ROOM_HALF = np.array([2.0, 1.5, 1.25])
ROOM_CENTRE = np.array([0.0, 0.0, 1.25])

# primitive types
_ROOM, _BOX, _SPHERE, _CYL, _TORUS = 0, 1, 2, 3, 4
# texture types
_TEX_ROOM, _TEX_STRIPES, _TEX_SINES, _TEX_RINGS, _TEX_NOISE = 0, 1, 2, 3, 4

_TRACE_EPS = 2e-5
_TRACE_MAX_STEPS = 400
_TRACE_T_MAX = 20.0


def _rot_z(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_x(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def make_scene():
    """Arrays describing the scene (see the module docstring).

    Returns a dict with ``ptype`` (N,) int64, ``centre`` (N,3), ``R_ow`` (N,3,3)
    world-to-object rotations, ``prm`` (N,4) sizes, ``bound`` (N,) bounding radii
    (inf for the room), ``albedo`` (N,3), ``tex`` (N,) int64, ``texk`` (N,) float64
    (texture spatial frequency, rad/m) and ``names``.
    """
    prims = []

    def add(name, ptype, centre, R_wo, prm, albedo, tex, texk):
        prims.append((name, ptype, np.asarray(centre, float), np.asarray(R_wo, float), np.asarray(prm + [0.0] * (4 - len(prm)), float), np.asarray(albedo, float), tex, float(texk)))

    I = np.eye(3)
    add("room", _ROOM, ROOM_CENTRE, I, list(ROOM_HALF), [0.8, 0.75, 0.65], _TEX_ROOM, 0.25)
    add("table", _BOX, [0.0, 0.0, 0.25], _rot_z(math.radians(20)), [0.35, 0.25, 0.25], [0.75, 0.45, 0.25], _TEX_STRIPES, 30.0)
    add("ball", _SPHERE, [0.08, 0.04, 0.65], I, [0.15], [0.3, 0.55, 0.85], _TEX_SINES, 22.0)
    add("column", _CYL, [-0.55, 0.45, 0.35], I, [0.12, 0.35], [0.85, 0.3, 0.3], _TEX_RINGS, 12.0)
    add("torus", _TORUS, [0.5, -0.45, 0.32], _rot_z(math.radians(30)) @ _rot_x(math.radians(60)), [0.2, 0.06], [0.35, 0.75, 0.35], _TEX_RINGS, 16.0)
    add("crate", _BOX, [-0.45, -0.5, 0.1], _rot_z(math.radians(45)), [0.1, 0.15, 0.1], [0.9, 0.8, 0.3], _TEX_STRIPES, 45.0)
    add("big_ball", _SPHERE, [0.55, 0.55, 0.2], I, [0.2], [0.8, 0.5, 0.75], _TEX_SINES, 18.0)
    add("cabinet", _BOX, [1.7, 1.2, 0.6], I, [0.3, 0.3, 0.6], [0.55, 0.6, 0.7], _TEX_STRIPES, 25.0)
    add("panel", _BOX, [-1.96, 0.1, 1.4], I, [0.04, 0.55, 0.35], [0.9, 0.9, 0.9], _TEX_SINES, 20.0)
    add("pillar", _CYL, [-1.7, -1.2, 1.25], I, [0.15, 1.25], [0.6, 0.6, 0.55], _TEX_RINGS, 10.0)
    add("shelf", _BOX, [1.95, -0.6, 1.1], I, [0.05, 0.4, 0.3], [0.4, 0.3, 0.6], _TEX_STRIPES, 35.0)
    return pack_scene(prims)


def pack_scene(prims, texture: Optional[np.ndarray] = None) -> dict:
    """Scene arrays (as :func:`make_scene` returns) from a list of primitives
    ``(name, ptype, centre (3,), R_wo (3,3), prm (4,), albedo (3,), tex, texk)``.

    ``texture``: a tileable 2D float32 image in [0, 1] for ``_TEX_NOISE`` primitives
    (their ``texk`` is then its texels per metre)."""
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


# ----------------------------------------------------------------------------- shading


@njit(cache=True, inline="always")
def _texture_at(texture, a, b):
    """Bilinear, wrapped lookup of a 2D texture at texel coordinates (a, b)."""
    th = texture.shape[0]
    tw = texture.shape[1]
    fa = math.floor(a)
    fb = math.floor(b)
    ta = a - fa
    tb = b - fb
    i0 = int(fa) % tw
    j0 = int(fb) % th
    i1 = (i0 + 1) % tw
    j1 = (j0 + 1) % th
    return ((1.0 - ta) * (1.0 - tb) * texture[j0, i0] + ta * (1.0 - tb) * texture[j0, i1]
            + (1.0 - ta) * tb * texture[j1, i0] + ta * tb * texture[j1, i1])


@njit(cache=True, inline="always")
def _albedo(k, px, py, pz, nx, ny, nz, ptype, centre, R_ow, albedo, tex, texk, texture, out):
    """Procedural albedo of primitive k at world point p with world normal n -> out[3]."""
    dx = px - centre[k, 0]
    dy = py - centre[k, 1]
    dz = pz - centre[k, 2]
    x = R_ow[k, 0, 0] * dx + R_ow[k, 0, 1] * dy + R_ow[k, 0, 2] * dz
    y = R_ow[k, 1, 0] * dx + R_ow[k, 1, 1] * dy + R_ow[k, 1, 2] * dz
    z = R_ow[k, 2, 0] * dx + R_ow[k, 2, 1] * dy + R_ow[k, 2, 2] * dz
    r = albedo[k, 0]
    g = albedo[k, 1]
    b = albedo[k, 2]
    tt = tex[k]
    f = texk[k]
    if tt == 0:
        # room: per-face tint, 3D checker (offset by half a square so no face lies on a
        # checker boundary) and smooth sine "noise"
        s = f
        c = (math.floor((px + 0.5 * s) / s) + math.floor((py + 0.5 * s) / s) + math.floor((pz + 0.5 * s) / s)) % 2.0
        sm = (math.sin(11.3 * px + 7.1 * py + 1.7) + math.sin(9.7 * py - 13.1 * pz + 0.4) + math.sin(15.1 * pz + 8.9 * px - 1.1)) / 6.0 + 0.5
        fine = 0.5 + 0.5 * math.sin(31.0 * px + 27.0 * py + 23.0 * pz)
        pat = 0.45 * c + 0.35 * sm + 0.2 * fine
        if nz > 0.7:  # floor
            r, g, b = 0.75, 0.6, 0.4
        elif nz < -0.7:  # ceiling
            r, g, b = 0.85, 0.85, 0.8
        elif abs(nx) > 0.7:
            r, g, b = (0.7, 0.8, 0.7) if nx > 0 else (0.8, 0.7, 0.75)
        else:
            r, g, b = (0.65, 0.75, 0.9) if ny > 0 else (0.9, 0.85, 0.6)
    elif tt == 1:
        pat = 0.5 + 0.5 * math.sin(f * (0.8 * x + 0.5 * y + 0.33 * z))
        pat = 0.6 * pat + 0.4 * (0.5 + 0.5 * math.sin(0.37 * f * (y - 0.7 * z) + 1.3))
    elif tt == 2:
        pat = (math.sin(f * x + 0.3) * math.sin(0.8 * f * y + 1.1) + math.sin(0.9 * f * z - 0.6)) / 4.0 + 0.5
    elif tt == 3:
        ang = math.atan2(y, x)
        pat = 0.5 + 0.25 * math.sin(12.0 * ang) + 0.25 * math.sin(f * z)
    else:
        # image texture (``texture``, tiled, f texels per metre) projected along the
        # dominant axis of the object-frame normal; the offset is keyed on the primitive
        ax = R_ow[k, 0, 0] * nx + R_ow[k, 0, 1] * ny + R_ow[k, 0, 2] * nz
        ay = R_ow[k, 1, 0] * nx + R_ow[k, 1, 1] * ny + R_ow[k, 1, 2] * nz
        az = R_ow[k, 2, 0] * nx + R_ow[k, 2, 1] * ny + R_ow[k, 2, 2] * nz
        off = 97.0 * k + 0.37 * texture.shape[1] * (1.0 if ax > 0 else 0.0) + 0.61 * texture.shape[0] * (1.0 if ay > 0 else 0.0) + 0.17 * texture.shape[1] * (1.0 if az > 0 else 0.0)
        if abs(ax) >= abs(ay) and abs(ax) >= abs(az):
            pat = _texture_at(texture, f * y + off, f * z + 0.5 * off)
        elif abs(ay) >= abs(az):
            pat = _texture_at(texture, f * x + 0.5 * off, f * z + off)
        else:
            pat = _texture_at(texture, f * x + off, f * y + 1.5 * off)
        if ptype[k] == 0:  # a room: per-face tint as for _TEX_ROOM
            if nz > 0.7:
                r, g, b = 0.75, 0.6, 0.4
            elif nz < -0.7:
                r, g, b = 0.85, 0.85, 0.8
            elif abs(nx) > 0.7:
                r, g, b = (0.7, 0.8, 0.7) if nx > 0 else (0.8, 0.7, 0.75)
            else:
                r, g, b = (0.65, 0.75, 0.9) if ny > 0 else (0.9, 0.85, 0.6)
    m = 0.3 + 0.7 * pat
    out[0] = r * m
    out[1] = g * m
    out[2] = b * m


# ----------------------------------------------------------------------------- renderer


@njit(cache=True, inline="always")
def _room_exit(k, ox, oy, oz, dx, dy, dz, centre, R_ow, prm):
    """Ray parameter where a ray from inside the (inverted box) room primitive k meets
    its walls, and that wall's normal (world, pointing into the room), analytically."""
    qx = ox - centre[k, 0]
    qy = oy - centre[k, 1]
    qz = oz - centre[k, 2]
    best = np.inf
    axis = 0
    sgn = 0.0
    for a in range(3):
        oa = R_ow[k, a, 0] * qx + R_ow[k, a, 1] * qy + R_ow[k, a, 2] * qz
        da = R_ow[k, a, 0] * dx + R_ow[k, a, 1] * dy + R_ow[k, a, 2] * dz
        if da > 1e-12:
            t = (prm[k, a] - oa) / da
            sg = 1.0
        elif da < -1e-12:
            t = (-prm[k, a] - oa) / da
            sg = -1.0
        else:
            continue
        if t < best:
            best = t
            axis = a
            sgn = sg
    # inward normal of the wall hit (object frame: -sgn e_axis), rotated to world (R_wo = R_ow^T)
    nx = -sgn * R_ow[k, axis, 0]
    ny = -sgn * R_ow[k, axis, 1]
    nz = -sgn * R_ow[k, axis, 2]
    return best, nx, ny, nz


@njit(cache=True, parallel=True)
def _render_kernel(T_w_c, rays, ptype, centre, R_ow, prm, bound, albedo, tex, texk, texture, light1, light2):
    """Per pixel: the room (inverted box) is intersected analytically; the objects whose
    bounding spheres the ray crosses before the wall are sphere traced (exact SDFs,
    so no surface is skipped), to sdf < _TRACE_EPS, then refined by a Newton step.

    ``rays`` (H, W, 2): the pixel's ray in the optical frame as (x/z, y/z) (a pinhole
    camera: ((u - cx) / fx, (v - cy) / fy); a distorted one: its undistorted points)."""
    height = rays.shape[0]
    width = rays.shape[1]
    depth = np.zeros((height, width), dtype=np.float32)
    normal = np.zeros((height, width, 3), dtype=np.float32)
    color = np.zeros((height, width, 3), dtype=np.float32)
    cosang = np.zeros((height, width), dtype=np.float32)
    ids = np.full((height, width), -1, dtype=np.int32)
    steps = np.zeros((height, width), dtype=np.int32)
    ox = T_w_c[0, 3]
    oy = T_w_c[1, 3]
    oz = T_w_c[2, 3]
    nprim = ptype.shape[0]
    room = -1
    for k in range(nprim):
        if ptype[k] == 0:
            room = k
    h = 1e-5
    for v in prange(height):
        alb = np.empty(3)
        cand = np.empty(nprim, dtype=np.int64)
        for u in range(width):
            rx = rays[v, u, 0]
            ry = rays[v, u, 1]
            inv = 1.0 / math.sqrt(rx * rx + ry * ry + 1.0)  # = z of the unit ray in the optical frame
            cxn = rx * inv
            cyn = ry * inv
            czn = inv
            dx = T_w_c[0, 0] * cxn + T_w_c[0, 1] * cyn + T_w_c[0, 2] * czn
            dy = T_w_c[1, 0] * cxn + T_w_c[1, 1] * cyn + T_w_c[1, 2] * czn
            dz = T_w_c[2, 0] * cxn + T_w_c[2, 1] * cyn + T_w_c[2, 2] * czn
            t_far = _TRACE_T_MAX
            rnx = 0.0
            rny = 0.0
            rnz = 0.0
            if room >= 0:
                t_far, rnx, rny, rnz = _room_exit(room, ox, oy, oz, dx, dy, dz, centre, R_ow, prm)
            # candidate objects: bounding sphere crossed before the wall
            nc = 0
            t0 = t_far
            for k in range(nprim):
                if k == room:
                    continue
                qx = ox - centre[k, 0]
                qy = oy - centre[k, 1]
                qz = oz - centre[k, 2]
                b = qx * dx + qy * dy + qz * dz
                cc = qx * qx + qy * qy + qz * qz - bound[k] * bound[k]
                disc = b * b - cc
                if disc < 0.0:
                    continue
                sq = math.sqrt(disc)
                if -b + sq < 0.0 or -b - sq > t_far:
                    continue
                cand[nc] = k
                nc += 1
                t0 = min(t0, max(0.0, -b - sq))
            hitk = -1
            t = t_far
            gx = 0.0
            gy = 0.0
            gz = 0.0
            if nc > 0:
                tt = t0
                for it in range(_TRACE_MAX_STEPS):
                    steps[v, u] = it + 1
                    if tt >= t_far:
                        break
                    px = ox + tt * dx
                    py = oy + tt * dy
                    pz = oz + tt * dz
                    s = np.inf
                    ks = -1
                    for j in range(nc):
                        dj = _prim_sdf(cand[j], px, py, pz, ptype, centre, R_ow, prm)
                        if dj < s:
                            s = dj
                            ks = cand[j]
                    if s < _TRACE_EPS:
                        # a hit only if the ray enters the surface here; a ray grazing
                        # past an edge within eps (normal facing away) steps on
                        gx = _prim_sdf(ks, px + h, py, pz, ptype, centre, R_ow, prm) - _prim_sdf(ks, px - h, py, pz, ptype, centre, R_ow, prm)
                        gy = _prim_sdf(ks, px, py + h, pz, ptype, centre, R_ow, prm) - _prim_sdf(ks, px, py - h, pz, ptype, centre, R_ow, prm)
                        gz = _prim_sdf(ks, px, py, pz + h, ptype, centre, R_ow, prm) - _prim_sdf(ks, px, py, pz - h, ptype, centre, R_ow, prm)
                        if gx * dx + gy * dy + gz * dz < 0.0:
                            hitk = ks
                            t = tt
                            break
                        s = 1e-4
                    tt += s
            if hitk < 0:
                if room < 0 or not t_far < _TRACE_T_MAX:
                    continue
                k = room
                nx = rnx
                ny = rny
                nz = rnz
                c = -(nx * dx + ny * dy + nz * dz)
            else:
                k = hitk
                px = ox + t * dx
                py = oy + t * dy
                pz = oz + t * dz
                gn = math.sqrt(gx * gx + gy * gy + gz * gz)
                if gn < 1e-12:
                    continue
                nx = gx / gn
                ny = gy / gn
                nz = gz / gn
                c = -(nx * dx + ny * dy + nz * dz)
                if c > 0.05:  # refine: one Newton step along the ray (locally planar surface)
                    s0 = _prim_sdf(k, px, py, pz, ptype, centre, R_ow, prm)
                    t2 = t + s0 / c
                    s2 = _prim_sdf(k, ox + t2 * dx, oy + t2 * dy, oz + t2 * dz, ptype, centre, R_ow, prm)
                    if abs(s2) < abs(s0):
                        t = t2
            px = ox + t * dx
            py = oy + t * dy
            pz = oz + t * dz
            depth[v, u] = t * inv
            normal[v, u, 0] = nx
            normal[v, u, 1] = ny
            normal[v, u, 2] = nz
            cosang[v, u] = c
            ids[v, u] = k
            _albedo(k, px, py, pz, nx, ny, nz, ptype, centre, R_ow, albedo, tex, texk, texture, alb)
            shade = 0.45 + 0.55 * max(0.0, nx * light1[0] + ny * light1[1] + nz * light1[2]) + 0.3 * max(0.0, nx * light2[0] + ny * light2[1] + nz * light2[2])
            color[v, u, 0] = alb[0] * shade
            color[v, u, 1] = alb[1] * shade
            color[v, u, 2] = alb[2] * shade
    return depth, normal, color, cosang, ids, steps


_NO_TEXTURE = np.zeros((1, 1), np.float32)  # for scenes without _TEX_NOISE primitives
_L1 = np.array([0.35, 0.25, 1.0]) / np.linalg.norm([0.35, 0.25, 1.0])
_L2 = np.array([-0.6, -0.7, 0.4]) / np.linalg.norm([-0.6, -0.7, 0.4])


def scene_sdf(points: np.ndarray, scene: Optional[dict] = None, return_ids: bool = False):
    """Exact (outside) SDF of the scene at (N,3) world points, float64 metres."""
    sc = scene if scene is not None else _default_scene()
    pts = np.ascontiguousarray(np.asarray(points, dtype=np.float64).reshape(-1, 3))
    d, ids = _scene_sdf_many(pts, sc["ptype"], sc["centre"], sc["R_ow"], sc["prm"], sc["bound"])
    return (d, ids) if return_ids else d


def render_scene(T_w_c: np.ndarray, camera: Camera, scene: Optional[dict] = None):
    """Noise-free render at pose ``T_w_c``.

    Returns a dict: ``depth`` HxW float32 (optical z, 0 where no hit), ``normal``
    HxWx3 float32 (world frame), ``color`` HxWx3 float32 in [0, 1], ``cos_incidence``
    HxW float32 (cosine between the viewing ray and the surface normal), ``ids``
    HxW int32 (primitive index into :func:`make_scene`, 0 = room, -1 where no hit)
    and ``steps`` HxW int32 (sphere-tracing steps, a diagnostic).
    """
    return render_rays(T_w_c, pinhole_rays(camera), scene)


def pinhole_rays(camera: Camera) -> np.ndarray:
    """(H, W, 2) float64 rays (x/z, y/z) of a pinhole camera's pixel centres."""
    u = (np.arange(camera.width, dtype=np.float64) - camera.cx) / camera.fx
    v = (np.arange(camera.height, dtype=np.float64) - camera.cy) / camera.fy
    return np.ascontiguousarray(np.stack(np.broadcast_arrays(u[None, :], v[:, None]), axis=-1))


def render_rays(T_w_c: np.ndarray, rays: np.ndarray, scene: Optional[dict] = None):
    """:func:`render_scene` for any central camera: ``rays`` (H, W, 2) holds each pixel's
    ray (x/z, y/z) in the optical frame (e.g. ``cv2.undistortPoints`` of the pixel
    centres of a distorted camera).  ``depth`` is the optical z of the hit."""
    sc = scene if scene is not None else _default_scene()
    T = np.ascontiguousarray(np.asarray(T_w_c, dtype=np.float64))
    rays = np.ascontiguousarray(rays, dtype=np.float64)
    if rays.ndim != 3 or rays.shape[2] != 2:
        raise ValueError(f"rays must be (H, W, 2), got {rays.shape}")
    depth, normal, color, cosang, ids, steps = _render_kernel(
        T, rays, sc["ptype"], sc["centre"], sc["R_ow"], sc["prm"], sc["bound"], sc["albedo"], sc["tex"], sc["texk"],
        sc.get("texture", _NO_TEXTURE), _L1, _L2,
    )
    return {"depth": depth, "normal": normal, "color": np.clip(color, 0.0, 1.0), "cos_incidence": cosang, "ids": ids, "steps": steps}


_SCENE_CACHE: dict = {}


def _default_scene():
    if "scene" not in _SCENE_CACHE:
        _SCENE_CACHE["scene"] = make_scene()
    return _SCENE_CACHE["scene"]


# ----------------------------------------------------------------------------- trajectory


def look_at(position: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0), roll: float = 0.0) -> np.ndarray:
    """4x4 camera-to-world pose of an optical frame (z forward, x right, y down) at
    ``position`` looking at ``target`` with world ``up``, rotated by ``roll`` about z."""
    z = np.asarray(target, float) - np.asarray(position, float)
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, float))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c, s = math.cos(roll), math.sin(roll)
    x, y = c * x + s * y, -s * x + c * y
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, position
    return T


class _Trajectory:
    """Smooth analytic camera trajectory (sums of sinusoids), parameterised by seed."""

    def __init__(self, seed: int, speed: float = 1.0):
        rng = np.random.default_rng([int(seed), 1234])
        self.ph = rng.uniform(0.0, 2.0 * math.pi, size=12)
        self.theta0 = rng.uniform(0.0, 2.0 * math.pi)
        self.speed = float(speed)

    def position_target_roll(self, t: float):
        t = self.speed * t
        ph = self.ph
        th = self.theta0 + 0.3 * t + 0.2 * math.sin(0.8 * t + ph[0])
        rad = 1.0 + 0.06 * math.sin(1.3 * t + ph[1])
        pos = np.array([
            1.2 * rad * math.cos(th),
            0.9 * rad * math.sin(th),
            1.35 + 0.12 * math.sin(0.9 * t + ph[2]) + 0.03 * math.sin(2.3 * t + ph[3]),
        ])
        target = np.array([
            0.25 * math.sin(1.1 * t + ph[4]) + 0.06 * math.sin(2.3 * t + ph[5]),
            0.2 * math.sin(0.9 * t + ph[6]) + 0.05 * math.sin(2.1 * t + ph[7]),
            0.45 + 0.12 * math.sin(0.7 * t + ph[8]),
        ])
        roll = 0.1 * math.sin(1.5 * t + ph[9]) + 0.03 * math.sin(2.7 * t + ph[10])
        return pos, target, roll

    def pose(self, t: float) -> np.ndarray:
        pos, target, roll = self.position_target_roll(t)
        return look_at(pos, target, roll=roll)


def _log_so3(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R).as_rotvec()


# ----------------------------------------------------------------------------- the dataset


class SyntheticSequence(DatasetBase):
    """Procedural RGB-D sequence with exact geometry and ground truth (module docstring).

    ``fx``/``fy``/``cx``/``cy`` default to a Kinect-like camera scaled to the image:
    fx = fy = 525 * width / 640, cx = (width - 1) / 2, cy = (height - 1) / 2.
    ``config`` (a PrismConfig) supplies the depth noise model (defaults otherwise).
    ``start`` shifts the trajectory: frame i is at t = (start + i) / fps and uses the
    noise of global frame start + i.  ``speed`` scales the trajectory's time (2 = twice
    as fast).  ``cache`` keeps the last ``cache`` rendered frames.
    """

    def __init__(
        self,
        width: int = 320,
        height: int = 240,
        n_frames: int = 150,
        fps: float = 30.0,
        seed: int = 0,
        noise: bool = True,
        fx: Optional[float] = None,
        fy: Optional[float] = None,
        cx: Optional[float] = None,
        cy: Optional[float] = None,
        holes: Optional[bool] = None,
        dropout: float = 0.02,
        grazing_deg: float = 80.0,
        depth_min: float = 0.3,
        depth_max: float = 4.0,
        depth_quantum: float = 0.0,
        color_noise: float = 2.0,
        noise_corr_px: int = 4,
        config=None,
        start: int = 0,
        speed: float = 1.0,
        cache: int = 0,
        name: Optional[str] = None,
    ):
        if n_frames <= 0:
            raise ValueError(f"n_frames must be positive, got {n_frames}")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        w, h = int(width), int(height)
        f = 525.0 * w / 640.0
        self.camera = Camera(
            float(fx if fx is not None else f),
            float(fy if fy is not None else (fx if fx is not None else f)),
            float(cx if cx is not None else (w - 1) / 2.0),
            float(cy if cy is not None else (h - 1) / 2.0),
            w,
            h,
        )
        if config is None:
            from prism_ros.core.config import FilterConfig

            config = FilterConfig()  # the declared defaults
        c0, c2, z0 = config.depth_noise_c0_m, config.depth_noise_c2_per_m, config.depth_noise_z0_m
        self.noise_c0, self.noise_c2, self.noise_z0 = float(c0), float(c2), float(z0)
        self.fps = float(fps)
        self.seed = int(seed)
        self.noise = bool(noise)
        self.holes = self.noise if holes is None else bool(holes)
        self.dropout = float(dropout)
        self.grazing_deg = float(grazing_deg)
        self.depth_min = float(depth_min)
        self.depth_max = float(depth_max)
        self.depth_quantum = float(depth_quantum)
        self.color_noise = float(color_noise)
        self.noise_corr_px = max(1, int(noise_corr_px))
        self.start = int(start)
        self.scene = _default_scene()
        self._traj = _Trajectory(self.seed, speed)
        self._stamps = (self.start + np.arange(int(n_frames))) / self.fps
        self._gt = [self._traj.pose(t) for t in self._stamps]
        self._cache: "OrderedDict[int, Frame]" = OrderedDict()
        self._cache_size = int(cache)
        self.name = name or f"synthetic:{int(n_frames)}@{w}x{h},seed={self.seed}{'' if self.noise else ',clean'}"

    # --- geometry / ground truth ------------------------------------------------
    def sdf(self, points: np.ndarray) -> np.ndarray:
        """Signed distance (metres, float64, positive in free space) at (N,3) world points.

        Exact outside the solids; inside it is a bound (see the module docstring)."""
        return scene_sdf(points, self.scene)

    def sigma_z(self, z) -> np.ndarray:
        """Depth noise std (m) of the model used for the noise: c0 + c2 (z - z0)^2."""
        z = np.asarray(z, dtype=np.float64)
        return self.noise_c0 + self.noise_c2 * (z - self.noise_z0) ** 2

    def pose_at(self, t: float) -> np.ndarray:
        """Exact camera-to-world pose at time ``t`` seconds (any t, not just frame times)."""
        return self._traj.pose(float(t))

    def gt_twists(self, h: float = 1e-4) -> np.ndarray:
        """(N,6) exact body-frame velocities (vx, vy, vz, wx, wy, wz) at the frame times
        (m/s, rad/s, camera optical frame, ROS twist order; central differences of the
        analytic trajectory with step ``h``)."""
        out = np.empty((len(self), 6))
        for i, t in enumerate(self._stamps):
            Ta, Tb, T = self.pose_at(t - h), self.pose_at(t + h), self._gt[i]
            R = T[:3, :3]
            out[i, :3] = R.T @ (Tb[:3, 3] - Ta[:3, 3]) / (2 * h)
            out[i, 3:] = _log_so3(Ta[:3, :3].T @ Tb[:3, :3]) / (2 * h)
        return out

    # --- rendering ----------------------------------------------------------------
    def render(self, T_w_c: np.ndarray, camera: Optional[Camera] = None) -> dict:
        """Noise-free render (see :func:`render_scene`) at any pose, default camera."""
        return render_scene(T_w_c, camera or self.camera, self.scene)

    def _load(self, i: int) -> Frame:
        if i in self._cache:
            self._cache.move_to_end(i)
            fr = self._cache[i]
            return Frame(fr.index, fr.stamp, fr.rgb.copy(), fr.depth.copy(), fr.T_w_c_gt.copy(), None)
        T = self._gt[i]
        r = render_scene(T, self.camera, self.scene)
        depth = r["depth"]
        color = r["color"]
        if self.noise or self.holes:
            rng = np.random.default_rng([self.seed, 7, self.start + i])
            valid = depth > 0
            if self.noise:
                z = depth.astype(np.float64)
                # spatially correlated, like a structured-light sensor's block matching:
                # one N(0, 1) draw per noise_corr_px x noise_corr_px block of pixels
                k = self.noise_corr_px
                H, W = depth.shape
                n = rng.standard_normal(((H + k - 1) // k, (W + k - 1) // k))
                n = np.repeat(np.repeat(n, k, axis=0), k, axis=1)[:H, :W]
                zn = np.where(valid, z + self.sigma_z(z) * n, 0.0)
                if self.depth_quantum > 0:
                    zn = np.round(zn / self.depth_quantum) * self.depth_quantum
                depth = zn.astype(np.float32)
                color = color * np.float32(255.0) + np.float32(self.color_noise) * rng.standard_normal(color.shape, dtype=np.float32)
            else:
                color = color * 255.0
            if self.holes:
                keep = valid & (rng.random(depth.shape, dtype=np.float32) >= self.dropout)
                keep &= r["cos_incidence"] >= math.cos(math.radians(self.grazing_deg))
                keep &= (depth >= self.depth_min) & (depth <= self.depth_max)
                depth = np.where(keep, depth, np.float32(0.0)).astype(np.float32)
            depth[~np.isfinite(depth)] = 0.0
            rgb = np.clip(np.round(color), 0, 255).astype(np.uint8)
        else:
            rgb = np.clip(np.round(color * 255.0), 0, 255).astype(np.uint8)
        fr = Frame(index=i, stamp=float(self._stamps[i]), rgb=rgb, depth=np.ascontiguousarray(depth, dtype=np.float32), T_w_c_gt=T.copy())
        if self._cache_size > 0:
            self._cache[i] = Frame(fr.index, fr.stamp, rgb.copy(), fr.depth.copy(), T.copy(), None)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return fr


def open_synthetic(name: str, start: int = 0, frames: Optional[int] = None, **kw) -> SyntheticSequence:
    """Open ``"synthetic"`` or ``"synthetic:<n_frames>[@<w>x<h>][,seed=<s>][,clean]"`` (the name a sequence prints).

    Plain ``"synthetic"`` has ``start + frames`` frames (150 when ``frames`` is None); ``start``/``frames``
    then select a window, frame i being at (start + i) / fps.  640x480 unless ``width``/``height`` are given.
    """
    p = str(name)
    if p == "synthetic" or p.startswith("synthetic:"):
        # plain 'synthetic': as long as start/frames ask (150 frames by default)
        n_total = kw.pop("n_frames", None)
        if n_total is None:
            n_total = int(start) + int(frames) if frames is not None and int(frames) > 0 else 150
        if p.startswith("synthetic:"):
            spec = p.split(":", 1)[1]
            try:
                spec, *options = spec.split(",")  # the options the sequence's name prints
                for opt in options:
                    key, _, value = opt.strip().partition("=")
                    if key == "seed" and value:
                        kw["seed"] = int(value)
                    elif key == "clean" and not value:
                        kw["noise"] = False
                    else:
                        raise ValueError(opt)
                if "@" in spec:  # synthetic:<n_frames>@<width>x<height>
                    spec, size = spec.split("@", 1)
                    w, h = size.lower().split("x")
                    kw["width"], kw["height"] = int(w), int(h)
                n_total = int(spec)
            except ValueError:
                raise ValueError(f"'{p}': expected 'synthetic', 'synthetic:<n_frames>' or "
                                 f"'synthetic:<n_frames>@<width>x<height>' with integers, optionally "
                                 f"followed by ',seed=<s>' and ',clean' (as the sequence's name prints)") from None
        if n_total <= 0:
            raise ValueError(f"'{p}': the number of frames must be positive")
        lo, hi = slice_range(int(n_total), start, frames, what=f"'{p}'")
        kw.setdefault("width", 640)  # a Kinect-like 640x480 camera, the filter's design point
        kw.setdefault("height", 480)
        return SyntheticSequence(n_frames=hi - lo, start=lo, **kw)
