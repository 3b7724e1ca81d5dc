"""Per-frame image preprocessing: validation, pyramids, normals (Numba kernels)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np
from numba import njit, prange

from .camera import Camera

__all__ = ["FramePyramid", "build_frame", "sigma_z", "InvalidFrameError"]


class InvalidFrameError(ValueError):
    """The frame cannot be used (wrong shape or dtype, no valid depth)."""


@njit(cache=True, parallel=True, nogil=True)
def clean_depth(depth, dmin, dmax, out):
    """``out``: the depth within [dmin, dmax], else 0.  Returns the number of valid pixels."""
    H, W = depth.shape
    n = 0
    for v in prange(H):
        for u in range(W):
            d = depth[v, u]
            ok = d >= dmin and d <= dmax  # NaN fails both tests
            out[v, u] = d if ok else 0.0
            n += ok
    return n


@njit(cache=True, parallel=True, nogil=True)
def clean_sigma(sigma, out):
    """``out``: the per-pixel depth sigma, 1 m (a weak observation) where it is not finite."""
    H, W = sigma.shape
    for v in prange(H):
        for u in range(W):
            s = sigma[v, u]
            out[v, u] = s if abs(s) < np.inf else 1.0  # NaN fails the test too


@njit(cache=True, parallel=True, nogil=True)
def rgb_to_gray(rgb, out):
    H, W, _ = rgb.shape
    for v in prange(H):
        for u in range(W):
            out[v, u] = (0.299 * rgb[v, u, 0] + 0.587 * rgb[v, u, 1] + 0.114 * rgb[v, u, 2]) * (1.0 / 255.0)


@njit(cache=True, parallel=True, nogil=True)
def downsample_depth(d, out):
    """2x2 -> 1: mean of the valid depths that agree with the nearest one (edge preserving)."""
    H, W = out.shape
    for v in prange(H):
        for u in range(W):
            dmin = 1e9
            for dv in range(2):
                for du in range(2):
                    x = d[2 * v + dv, 2 * u + du]
                    if x > 0.0 and x < dmin:
                        dmin = x
            if dmin == 1e9:
                out[v, u] = 0.0
                continue
            thr = 0.02 + 0.02 * dmin
            s = 0.0
            n = 0
            for dv in range(2):
                for du in range(2):
                    x = d[2 * v + dv, 2 * u + du]
                    if x > 0.0 and x - dmin < thr:
                        s += x
                        n += 1
            out[v, u] = s / n


@njit(cache=True, parallel=True, nogil=True)
def downsample_gray(g, out):
    H, W = out.shape
    for v in prange(H):
        for u in range(W):
            out[v, u] = 0.25 * (g[2 * v, 2 * u] + g[2 * v, 2 * u + 1] + g[2 * v + 1, 2 * u] + g[2 * v + 1, 2 * u + 1])


@njit(cache=True, parallel=True, nogil=True)
def depth_normals(depth, K, max_rel_jump, min_cos, out):
    """Camera-frame unit normals from central differences, oriented toward the camera; zero where a neighbour is
    invalid, across a depth discontinuity, or at a grazing angle (|cos| < min_cos).
    """
    H, W = depth.shape
    fx, fy, cx, cy = K[0], K[1], K[2], K[3]
    for v in prange(H):
        for u in range(W):
            out[v, u, 0] = 0.0
            out[v, u, 1] = 0.0
            out[v, u, 2] = 0.0
            if u == 0 or v == 0 or u == W - 1 or v == H - 1:
                continue
            d = depth[v, u]
            dl = depth[v, u - 1]
            dr = depth[v, u + 1]
            du_ = depth[v - 1, u]
            dd = depth[v + 1, u]
            if d <= 0 or dl <= 0 or dr <= 0 or du_ <= 0 or dd <= 0:
                continue
            thr = max_rel_jump * d
            if abs(dl - d) > thr or abs(dr - d) > thr or abs(du_ - d) > thr or abs(dd - d) > thr:
                continue
            # horizontal and vertical tangents
            ax = (u + 1 - cx) / fx * dr - (u - 1 - cx) / fx * dl
            ay = (v - cy) / fy * (dr - dl)
            az = dr - dl
            bx = (u - cx) / fx * (dd - du_)
            by = (v + 1 - cy) / fy * dd - (v - 1 - cy) / fy * du_
            bz = dd - du_
            nx = ay * bz - az * by
            ny = az * bx - ax * bz
            nz = ax * by - ay * bx
            nn = np.sqrt(nx * nx + ny * ny + nz * nz)
            if nn < 1e-12:
                continue
            nx /= nn
            ny /= nn
            nz /= nn
            px = (u - cx) / fx
            py = (v - cy) / fy
            pn = np.sqrt(px * px + py * py + 1.0)
            c = (nx * px + ny * py + nz) / pn
            if c > 0:  # orient toward the camera
                nx = -nx
                ny = -ny
                nz = -nz
                c = -c
            if -c < min_cos:
                continue
            out[v, u, 0] = nx
            out[v, u, 1] = ny
            out[v, u, 2] = nz


@njit(cache=True, parallel=True, nogil=True)
def occlusion_edges(depth, rel_jump, out):
    """1 where a 3x3 neighbour's depth differs by more than rel_jump * d (an occlusion
    boundary is near: projective distances there are unreliable), else 0."""
    H, W = depth.shape
    for v in prange(H):
        for u in range(W):
            out[v, u] = 0
            d = depth[v, u]
            if d <= 0.0:
                continue
            thr = rel_jump * d
            for dv in range(-1, 2):
                vv = v + dv
                if vv < 0 or vv >= H:
                    continue
                for du in range(-1, 2):
                    uu = u + du
                    if uu < 0 or uu >= W:
                        continue
                    q = depth[vv, uu]
                    if q > 0.0 and abs(q - d) > thr:
                        out[v, u] = 1


def sigma_z(z: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Axial depth noise sigma_z(z) = c0 + c2 (z - z0)^2 (Nguyen et al. 2012)."""
    return noise[0] + noise[1] * (z - noise[2]) ** 2


@dataclass
class FramePyramid:
    """A preprocessed RGB-D frame: level 0 is full resolution."""

    rgb: np.ndarray  # HxWx3 uint8
    depth: List[np.ndarray]  # per level, float32 metres, 0 invalid
    gray: List[np.ndarray]  # per level, float32 in [0, 1]
    normals: List[Optional[np.ndarray]]  # per level, camera frame, float32 HxWx3 (0 = unusable); None if not needed
    cameras: List[Camera]
    depth_sigma: Optional[np.ndarray]  # full-resolution per-pixel sigma (m) or None
    valid_fraction: float
    edges: np.ndarray  # uint8 occlusion-boundary mask at level ``aux_level``
    aux_level: int  # level of the normals and edges used for map fusion


def build_frame(
    rgb: np.ndarray,
    depth: np.ndarray,
    camera: Camera,
    levels: int,
    depth_min: float,
    depth_max: float,
    depth_sigma: Optional[np.ndarray] = None,
    min_cos: float = 0.15,
    normal_levels: Optional[range] = None,
    gray: bool = True,
) -> FramePyramid:
    """Validate and preprocess one RGB-D frame into a pyramid of ``levels`` levels.  Normals for ``normal_levels``
    (default all) plus the fusion level (1; 0 for a single level); ``gray=False`` skips the intensity pyramid.
    """
    H, W = camera.height, camera.width
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[:2] != (H, W):
        raise InvalidFrameError(f"colour image has shape {rgb.shape}, expected ({H}, {W}, 3)")
    if depth.shape != (H, W):
        raise InvalidFrameError(f"depth image has shape {depth.shape}, expected ({H}, {W})")
    if rgb.dtype != np.uint8:
        raise InvalidFrameError(f"colour image must be uint8, got {rgb.dtype}")
    rgb = np.ascontiguousarray(rgb)
    d0 = np.empty((H, W), np.float32)
    n_valid = clean_depth(
        np.ascontiguousarray(depth, dtype=np.float32), np.float32(depth_min), np.float32(depth_max), d0
    )
    valid = float(n_valid) / d0.size
    if depth_sigma is not None:
        if depth_sigma.shape != (H, W):
            raise InvalidFrameError(f"depth_sigma has shape {depth_sigma.shape}, expected ({H}, {W})")
        s0 = np.empty((H, W), np.float32)
        clean_sigma(np.ascontiguousarray(depth_sigma, dtype=np.float32), s0)
        depth_sigma = s0
    g0 = np.empty((H, W), np.float32)
    if gray:
        rgb_to_gray(rgb, g0)
    else:
        g0[:] = 0.0
    depths, grays, normals, cams = [d0], [g0], [], []
    for lvl in range(1, levels):
        h, w = depths[-1].shape[0] // 2, depths[-1].shape[1] // 2
        d = np.empty((h, w), np.float32)
        downsample_depth(depths[-1], d)
        g = np.empty((h, w), np.float32)
        if gray:
            downsample_gray(grays[-1], g)
        else:
            g[:] = 0.0
        depths.append(d)
        grays.append(g)
    aux_level = 1 if levels > 1 else 0
    wanted = set(range(levels) if normal_levels is None else normal_levels) | {aux_level}
    for lvl in range(levels):
        cam = camera.level(lvl)
        cams.append(cam)
        n = None
        if lvl in wanted:
            n = np.empty(depths[lvl].shape + (3,), np.float32)
            depth_normals(depths[lvl], cam.params, 0.05, min_cos, n)
        normals.append(n)
    edges = np.empty(depths[aux_level].shape, np.uint8)
    occlusion_edges(depths[aux_level], 0.05, edges)
    return FramePyramid(rgb, depths, grays, normals, cams, depth_sigma, valid, edges, aux_level)
