"""Pinhole camera model and image pyramids."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Camera"]


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics (pixels) of a ``width`` x ``height`` image; pixel centres at integer coordinates:
    (x, y, z) in the optical frame projects to u = fx x / z + cx, v = fy y / z + cy.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self):
        vals = (self.fx, self.fy, self.cx, self.cy)
        if not all(np.isfinite(v) for v in vals) or self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"invalid intrinsics fx={self.fx} fy={self.fy} cx={self.cx} cy={self.cy}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"invalid image size {self.width}x{self.height}")

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def params(self) -> np.ndarray:
        """(fx, fy, cx, cy) as a float64 array, the form Numba kernels take."""
        return np.array([self.fx, self.fy, self.cx, self.cy], dtype=np.float64)

    def level(self, lvl: int) -> "Camera":
        """Intrinsics of pyramid level ``lvl`` (each level halves the resolution by 2x2 averaging)."""
        if lvl == 0:
            return self
        s = 0.5**lvl
        # 2x2 block averaging maps pixel centre u to (u + 0.5) / 2 - 0.5.
        return Camera(
            self.fx * s,
            self.fy * s,
            (self.cx + 0.5) * s - 0.5,
            (self.cy + 0.5) * s - 0.5,
            self.width >> lvl,
            self.height >> lvl,
        )

    def project(self, p_c: np.ndarray) -> np.ndarray:
        """Project Nx3 optical-frame points to Nx2 pixel coordinates."""
        z = p_c[:, 2]
        return np.stack([self.fx * p_c[:, 0] / z + self.cx, self.fy * p_c[:, 1] / z + self.cy], axis=1)

    def backproject(self, depth: np.ndarray) -> np.ndarray:
        """HxW depth (metres) to HxWx3 optical-frame points."""
        h, w = depth.shape
        u = np.arange(w, dtype=np.float32)[None, :]
        v = np.arange(h, dtype=np.float32)[:, None]
        x = (u - self.cx) / self.fx * depth
        y = (v - self.cy) / self.fy * depth
        return np.stack([x, y, depth], axis=-1)
