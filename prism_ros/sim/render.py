"""Ray casting of a packed scene (:mod:`prism_ros.sim.scene`): depth, normals, colour.

Per pixel (REP-103 optical frame, pixel centres at integer coordinates) the room's walls are intersected analytically
and the objects whose bounding spheres the ray crosses first are sphere traced with their exact SDFs (Numba, parallel
over rows), then refined by a Newton step.  ``depth`` is the optical z of the hit.  Colour is view-independent: a
procedural albedo (or a tiled texture) times Lambertian shading from two fixed directional lights plus ambient.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from numba import njit, prange

from prism_ros.core.camera import Camera

from .scene import _NO_TEXTURE, _prim_sdf, default_scene

__all__ = ["render_scene", "render_rays", "pinhole_rays"]

_TRACE_EPS = 2e-5
_TRACE_MAX_STEPS = 400
_TRACE_T_MAX = 20.0


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
    return (
        (1.0 - ta) * (1.0 - tb) * texture[j0, i0]
        + ta * (1.0 - tb) * texture[j0, i1]
        + (1.0 - ta) * tb * texture[j1, i0]
        + ta * tb * texture[j1, i1]
    )


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
        sm = (
            math.sin(11.3 * px + 7.1 * py + 1.7)
            + math.sin(9.7 * py - 13.1 * pz + 0.4)
            + math.sin(15.1 * pz + 8.9 * px - 1.1)
        ) / 6.0 + 0.5
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
        off = (
            97.0 * k
            + 0.37 * texture.shape[1] * (1.0 if ax > 0 else 0.0)
            + 0.61 * texture.shape[0] * (1.0 if ay > 0 else 0.0)
            + 0.17 * texture.shape[1] * (1.0 if az > 0 else 0.0)
        )
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
def _render_kernel(T_rows, rays, ptype, centre, R_ow, prm, bound, albedo, tex, texk, texture, light1, light2):
    """Per pixel: the room intersected analytically, the objects whose bounding spheres the ray crosses first sphere
    traced to sdf < _TRACE_EPS and refined by a Newton step.  ``rays`` (H, W, 2): each pixel's (x/z, y/z);
    ``T_rows`` (H, 4, 4): the camera-to-world pose each image row is seen from.
    """
    height = rays.shape[0]
    width = rays.shape[1]
    depth = np.zeros((height, width), dtype=np.float32)
    normal = np.zeros((height, width, 3), dtype=np.float32)
    color = np.zeros((height, width, 3), dtype=np.float32)
    cosang = np.zeros((height, width), dtype=np.float32)
    ids = np.full((height, width), -1, dtype=np.int32)
    steps = np.zeros((height, width), dtype=np.int32)
    nprim = ptype.shape[0]
    room = -1
    for k in range(nprim):
        if ptype[k] == 0:
            room = k
    h = 1e-5
    for v in prange(height):
        T_w_c = T_rows[v]
        ox = T_w_c[0, 3]
        oy = T_w_c[1, 3]
        oz = T_w_c[2, 3]
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
                        gx = _prim_sdf(ks, px + h, py, pz, ptype, centre, R_ow, prm) - _prim_sdf(
                            ks, px - h, py, pz, ptype, centre, R_ow, prm
                        )
                        gy = _prim_sdf(ks, px, py + h, pz, ptype, centre, R_ow, prm) - _prim_sdf(
                            ks, px, py - h, pz, ptype, centre, R_ow, prm
                        )
                        gz = _prim_sdf(ks, px, py, pz + h, ptype, centre, R_ow, prm) - _prim_sdf(
                            ks, px, py, pz - h, ptype, centre, R_ow, prm
                        )
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
            shade = (
                0.45
                + 0.55 * max(0.0, nx * light1[0] + ny * light1[1] + nz * light1[2])
                + 0.3 * max(0.0, nx * light2[0] + ny * light2[1] + nz * light2[2])
            )
            color[v, u, 0] = alb[0] * shade
            color[v, u, 1] = alb[1] * shade
            color[v, u, 2] = alb[2] * shade
    return depth, normal, color, cosang, ids, steps


_L1 = np.array([0.35, 0.25, 1.0]) / np.linalg.norm([0.35, 0.25, 1.0])
_L2 = np.array([-0.6, -0.7, 0.4]) / np.linalg.norm([-0.6, -0.7, 0.4])


def render_scene(T_w_c: np.ndarray, camera: Camera, scene: Optional[dict] = None):
    """Noise-free render at pose ``T_w_c`` (4x4; or (H, 4, 4), one pose per image row: a rolling shutter): a dict
    of ``depth`` HxW float32 (optical z, 0 = no hit), ``normal`` HxWx3 (world), ``color`` HxWx3 in [0, 1],
    ``cos_incidence`` HxW, ``ids`` HxW int32 (primitive index, 0 = room, -1 no hit) and ``steps`` HxW int32
    (sphere-tracing steps).
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
    centres of a distorted camera).  ``depth`` is the optical z of the hit in the frame of the pixel's row:
    ``T_w_c`` is one 4x4 pose or (H, 4, 4), one per row."""
    sc = scene if scene is not None else default_scene()
    rays = np.ascontiguousarray(rays, dtype=np.float64)
    if rays.ndim != 3 or rays.shape[2] != 2:
        raise ValueError(f"rays must be (H, W, 2), got {rays.shape}")
    T = np.asarray(T_w_c, dtype=np.float64)
    if T.shape == (4, 4):
        T = np.broadcast_to(T, (rays.shape[0], 4, 4))
    if T.shape != (rays.shape[0], 4, 4):
        raise ValueError(f"T_w_c must be 4x4 or ({rays.shape[0]}, 4, 4), got {T.shape}")
    T = np.ascontiguousarray(T)
    depth, normal, color, cosang, ids, steps = _render_kernel(
        T,
        rays,
        sc["ptype"],
        sc["centre"],
        sc["R_ow"],
        sc["prm"],
        sc["bound"],
        sc["albedo"],
        sc["tex"],
        sc["texk"],
        sc.get("texture", _NO_TEXTURE),
        _L1,
        _L2,
    )
    return {
        "depth": depth,
        "normal": normal,
        "color": np.clip(color, 0.0, 1.0),
        "cos_incidence": cosang,
        "ids": ids,
        "steps": steps,
    }
