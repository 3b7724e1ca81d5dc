"""Stereo depth front end: rectification, dense disparity, depth and its sigma.

Conventions:

* Calibration per camera (EuRoC ``sensor.yaml``): pinhole K, radial-tangential D = (k1, k2, p1, p2),
  and ``T_BS`` (camera-to-body: maps camera points into the body/IMU frame).
* The stereo extrinsic fed to OpenCV is ``T_c1_c0 = T_BS1^-1 T_BS0`` (p1 = R p0 + t), as
  :func:`cv2.stereoRectify` expects.
* Output depth lives in the RECTIFIED LEFT camera (REP-103 optical axes), whose body pose is
  ``T_B_rect = T_BS0 [R0^T | 0]`` (R0: cam0's rectifying rotation, p_rect = R0 p_c0).
* depth z = f b / d (f: rectified focal length, px; b: baseline, m; d: disparity, px);
  sigma_z = z^2 sigma_d / (f b).  Invalid pixels have depth 0 and sigma 0.

:class:`StereoRectifier` caches the maps and the matcher of one calibration; :func:`check_stereo_pair` /
:func:`check_exposure` say whether a raw pair is usable at all (the readers skip an unusable pair).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional, Tuple

import numpy as np

from .camera import Camera

__all__ = [
    "CameraCalib",
    "stereo_rectify",
    "StereoRectifier",
    "disparity_sgbm",
    "disparities_for_depth",
    "left_right_check",
    "depth_from_disparity",
    "StereoPairProblem",
    "check_exposure",
    "check_stereo_pair",
]


@dataclass
class CameraCalib:
    """One camera of a stereo rig: K (3x3), D (radtan k1 k2 p1 p2), size (w, h), T_BS (4x4 camera-to-body)."""

    K: np.ndarray
    D: np.ndarray
    size: Tuple[int, int]
    T_BS: np.ndarray = field(default_factory=lambda: np.eye(4))


def stereo_rectify(left: CameraCalib, right: CameraCalib, alpha: float = 0.0):
    """cv2.stereoRectify on two calibrations: (R0, R1, P0, P1, Q, roi0, roi1); ``alpha=0`` keeps only valid pixels,
    and equal principal points (CALIB_ZERO_DISPARITY) make disparity = f b / z exactly.
    """
    import cv2

    T_c1_c0 = np.linalg.inv(right.T_BS) @ left.T_BS
    R = np.ascontiguousarray(T_c1_c0[:3, :3])
    t = np.ascontiguousarray(T_c1_c0[:3, 3]).reshape(3, 1)
    return cv2.stereoRectify(
        left.K,
        left.D.reshape(1, -1),
        right.K,
        right.D.reshape(1, -1),
        tuple(left.size),
        R,
        t,
        flags=cv2.CALIB_ZERO_DISPARITY,
        alpha=alpha,
    )


def disparities_for_depth(f: float, baseline: float, depth_min_m: float, downscale: int = 1) -> int:
    """The number of disparities (full-resolution px, a multiple of ``16 * downscale``) that reaches depth
    ``depth_min_m``: ``f b / depth_min_m`` rounded up, with one pixel of slack.

    The search must cover the nearest depth the filter uses: a matcher matches a nearer surface somewhere
    inside its range (a wrong, far depth) rather than leaving it empty.
    """
    if depth_min_m <= 0:
        raise ValueError(f"depth_min_m must be positive, got {depth_min_m}")
    step = 16 * int(downscale)
    need = float(f) * float(baseline) / float(depth_min_m) - 1.0
    return int(max(1, np.ceil(need / step))) * step


def disparity_sgbm(
    left: np.ndarray,
    right: np.ndarray,
    num_disparities: int = 96,
    block_size: int = 5,
    min_disparity: int = 0,
    uniqueness: int = 10,
    speckle_window: int = 100,
    speckle_range: int = 2,
    matcher=None,
) -> np.ndarray:
    """Dense disparity (float32 px, left image; invalid 0, never NaN) of a rectified 8-bit pair; ``matcher``: any
    OpenCV matcher with 1/16 px output (default a StereoSGBM with the given settings).
    """
    if matcher is None:
        matcher = _make_sgbm(num_disparities, block_size, min_disparity, uniqueness, speckle_window, speckle_range)
    d = matcher.compute(np.ascontiguousarray(left), np.ascontiguousarray(right)).astype(np.float32) / 16.0
    d[~(d > max(min_disparity, 0))] = 0.0
    return d


def _make_sgbm(
    num_disparities=96,
    block_size=5,
    min_disparity=0,
    uniqueness=10,
    speckle_window=100,
    speckle_range=2,
    disp12_max_diff=-1,
    three_way=False,
):
    import cv2

    nd = int(np.ceil(num_disparities / 16.0)) * 16
    return cv2.StereoSGBM_create(
        minDisparity=int(min_disparity),
        numDisparities=nd,
        blockSize=int(block_size),
        P1=8 * block_size * block_size,
        P2=32 * block_size * block_size,
        disp12MaxDiff=int(disp12_max_diff),
        uniquenessRatio=int(uniqueness),
        speckleWindowSize=int(speckle_window),
        speckleRange=int(speckle_range),
        preFilterCap=31,
        mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY if three_way else cv2.STEREO_SGBM_MODE_SGBM,
    )


#: StereoBM's block (half-resolution px, chosen on the simulated V1_02 flight) and filters for ``matcher="bm"``;
#: an option, not the default (docs/results-euroc.md, "StereoBM: an option, not the default").
BM_BLOCK_SIZE = 9
BM_TEXTURE_THRESHOLD = 10
BM_UNIQUENESS = 15


def _make_bm(num_disparities=48, block_size=BM_BLOCK_SIZE, disp12_max_diff=1, speckle_window=100, speckle_range=2):
    import cv2

    m = cv2.StereoBM_create(int(np.ceil(num_disparities / 16.0)) * 16, int(block_size))
    m.setPreFilterType(cv2.STEREO_BM_PREFILTER_XSOBEL)
    m.setPreFilterCap(31)
    m.setTextureThreshold(BM_TEXTURE_THRESHOLD)
    m.setUniquenessRatio(BM_UNIQUENESS)
    m.setSpeckleWindowSize(int(speckle_window))
    m.setSpeckleRange(int(speckle_range))
    m.setDisp12MaxDiff(int(disp12_max_diff))
    return m


def left_right_check(disp_left: np.ndarray, disp_right: np.ndarray, max_diff: float = 1.0) -> np.ndarray:
    """Mask of left disparities d consistent with the right image's (``disp_right``, x_left = x_right + d):
    |d - disp_right(y, round(x - d))| <= max_diff.
    """
    h, w = disp_left.shape
    xs = np.arange(w, dtype=np.float32)[None, :]
    xr = np.rint(xs - disp_left).astype(np.int64)
    inside = (disp_left > 0) & (xr >= 0) & (xr < w)
    xr_c = np.clip(xr, 0, w - 1)
    dr = np.take_along_axis(disp_right, xr_c, axis=1)
    return inside & (dr > 0) & (np.abs(dr - disp_left) <= max_diff)


def depth_from_disparity(
    disp: np.ndarray, f: float, baseline: float, sigma_d: float = 0.5, min_disparity: float = 0.0
) -> Tuple[np.ndarray, np.ndarray]:
    """(depth, sigma_z), float32 metres: z = f b / d and sigma_z = z^2 sigma_d / (f b); 0 where d <= min_disparity."""
    disp = np.asarray(disp, dtype=np.float32)
    fb = float(f) * float(baseline)
    ok = np.isfinite(disp) & (disp > max(min_disparity, 0.0))
    z = np.zeros(disp.shape, np.float32)
    z[ok] = fb / disp[ok]
    s = np.zeros(disp.shape, np.float32)
    s[ok] = z[ok] ** 2 * float(sigma_d) / fb
    return z, s


class StereoRectifier:
    """Rectification maps, rectified camera and a disparity matcher for one stereo rig.

    ``compute(left_raw, right_raw)`` -> (left_rect uint8, depth float32, sigma float32).  ``downscale=1``: StereoSGBM on
    the full-resolution pair, left-right checked on the mirrored pair (``matcher`` must be ``"sgbm"``); ``downscale=2``:
    ``cv2.pyrDown`` of both rectified images, ``matcher="sgbm"`` (3-way) or ``"bm"`` (:data:`BM_BLOCK_SIZE`) over
    ``num_disparities / 2`` with the matcher's left-right check (``lr_max_diff`` half-resolution px), disparities
    doubled and upsampled by nearest neighbour.  ``sigma_d``: full-resolution px.  ``depth_min_m`` (instead of
    ``num_disparities``): search down to that depth (:func:`disparities_for_depth`).  The ``num_disparities`` leftmost
    columns get no depth (:attr:`match_region`).
    """

    def __init__(
        self,
        left: CameraCalib,
        right: CameraCalib,
        num_disparities: Optional[int] = 96,
        block_size: int = 5,
        sigma_d: float = 0.5,
        lr_max_diff: float = 1.0,
        alpha: float = 0.0,
        lr_check: bool = True,
        downscale: int = 1,
        matcher: str = "sgbm",
        depth_min_m: Optional[float] = None,
    ):
        import cv2

        if int(downscale) not in (1, 2):
            raise ValueError(f"downscale must be 1 or 2, got {downscale}")
        if matcher not in ("bm", "sgbm") or (matcher == "bm" and int(downscale) != 2):
            raise ValueError(f"matcher must be 'sgbm', or 'bm' at downscale 2; got {matcher!r} at {downscale}")
        self.downscale = int(downscale)
        self.matcher = matcher

        self.left, self.right = left, right
        R0, R1, P0, P1, Q, roi0, roi1 = stereo_rectify(left, right, alpha)
        self.R0, self.R1, self.P0, self.P1, self.Q = R0, R1, P0, P1, Q
        w, h = left.size
        self.size = (int(w), int(h))
        self.map0 = cv2.initUndistortRectifyMap(left.K, left.D, R0, P0, self.size, cv2.CV_32FC1)
        self.map1 = cv2.initUndistortRectifyMap(right.K, right.D, R1, P1, self.size, cv2.CV_32FC1)
        self.f = float(P0[0, 0])
        self.baseline = float(-P1[0, 3] / P1[0, 0])
        if self.baseline <= 0:
            raise ValueError(f"stereo baseline {self.baseline:.4f} m is not positive: cam1 must be right of cam0")
        self.camera = Camera(float(P0[0, 0]), float(P0[1, 1]), float(P0[0, 2]), float(P0[1, 2]), int(w), int(h))
        # rectified left camera in the body frame: p_rect = R0 p_c0  ->  T_c0_rect = [R0^T | 0]
        T_c0_rect = np.eye(4)
        T_c0_rect[:3, :3] = np.asarray(R0).T
        self.T_B_rect = left.T_BS @ T_c0_rect
        self.sigma_d = float(sigma_d)
        self.lr_max_diff = float(lr_max_diff)
        self.lr_check = bool(lr_check)
        if depth_min_m is not None:
            num_disparities = disparities_for_depth(self.f, self.baseline, depth_min_m, self.downscale)
        elif num_disparities is None:
            raise ValueError("StereoRectifier needs num_disparities or depth_min_m")
        self.num_disparities = int(np.ceil(num_disparities / (16.0 * self.downscale))) * 16 * self.downscale
        if self.num_disparities > w // 2:
            raise ValueError(
                f"{self.num_disparities} disparities "
                f"(depth down to {self.f * self.baseline / self.num_disparities:.3f} m) "
                f"would leave the matcher less than half of the {w} px wide image: raise depth_min_m"
            )
        #: the nearest depth the search reaches (m; to within the last disparity step)
        self.depth_min_m = self.f * self.baseline / self.num_disparities
        lr = max(0, int(round(self.lr_max_diff))) if self.lr_check else -1
        if self.downscale == 1:
            self._matcher = _make_sgbm(self.num_disparities, block_size)
        elif matcher == "bm":
            self._matcher = _make_bm(self.num_disparities // 2, disp12_max_diff=lr)
        else:
            self._matcher = _make_sgbm(self.num_disparities // 2, block_size, disp12_max_diff=lr, three_way=True)
        self._fixed0 = cv2.convertMaps(self.map0[0], self.map0[1], cv2.CV_16SC2)
        self._fixed1 = cv2.convertMaps(self.map1[0], self.map1[1], cv2.CV_16SC2)
        # pixels of the rectified left image whose source lies inside the raw image, and
        # which the matcher can reach (x >= num_disparities)
        mx, my = self.map0
        self.valid_region = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        self.match_region = self.valid_region.copy()
        self.match_region[:, : self.num_disparities] = False

    def rectify(self, left_raw: np.ndarray, right_raw: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        import cv2

        if self.downscale == 1:  # float maps: bit-identical to the original full-resolution path
            L = cv2.remap(_grey(left_raw), self.map0[0], self.map0[1], cv2.INTER_LINEAR)
            R = cv2.remap(_grey(right_raw), self.map1[0], self.map1[1], cv2.INTER_LINEAR)
        else:
            L = cv2.remap(_grey(left_raw), self._fixed0[0], self._fixed0[1], cv2.INTER_LINEAR)
            R = cv2.remap(_grey(right_raw), self._fixed1[0], self._fixed1[1], cv2.INTER_LINEAR)
        return L, R

    def disparity(self, L: np.ndarray, R: np.ndarray) -> np.ndarray:
        """Left disparity (full-resolution px, 0 invalid) of a rectified pair, left-right checked."""
        if self.downscale == 2:
            return self._upsampled(self._half_disparity(L, R))
        dl = disparity_sgbm(L, R, matcher=self._matcher)
        if self.lr_check:
            # right image's disparity: match the mirrored pair, mirror back
            dr = disparity_sgbm(
                np.ascontiguousarray(R[:, ::-1]), np.ascontiguousarray(L[:, ::-1]), matcher=self._matcher
            )[:, ::-1]
            dl = np.where(left_right_check(dl, np.ascontiguousarray(dr), self.lr_max_diff), dl, 0.0).astype(np.float32)
        dl[~self.valid_region] = 0.0
        return dl

    def compute(self, left_raw: np.ndarray, right_raw: np.ndarray):
        L, R = self.rectify(left_raw, right_raw)
        if self.downscale == 1:
            z, s = depth_from_disparity(self.disparity(L, R), self.f, self.baseline, self.sigma_d)
            return L, z, s
        # half resolution: depth and sigma from the half-resolution disparity, then upsampled
        # (the same values as from disparity()'s upsampled disparity, a quarter of the work)
        zh, sh = depth_from_disparity(self._half_disparity(L, R), self.f, self.baseline, self.sigma_d)
        return L, self._upsampled(zh), self._upsampled(sh)

    def _half_disparity(self, L: np.ndarray, R: np.ndarray) -> np.ndarray:
        """Disparity of the pyrDown'ed pair, in full-resolution px (0 invalid)."""
        import cv2

        dh = disparity_sgbm(cv2.pyrDown(L), cv2.pyrDown(R), matcher=self._matcher)
        dh *= np.float32(2.0)
        return dh

    def _upsampled(self, img_half: np.ndarray) -> np.ndarray:
        """A half-resolution image at full resolution by nearest neighbour (no mixing across
        depth edges), 0 outside the rectified image's valid region."""
        import cv2

        out = cv2.resize(img_half, self.size, interpolation=cv2.INTER_NEAREST)
        out[~self.valid_region] = 0.0
        return out


def _grey(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 3:
        import cv2

        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    return img


# ---------------------------------------------------------------------- bad pairs
#: :func:`check_exposure` defaults, set on the real V1_01 clip (it stays accepted 16x darker or 3x brighter).
#: A black left image is refused even with a good right one: StereoSGBM returns wrong "valid" depth for it.
EXPOSURE_DARK_LEVEL = 10
EXPOSURE_BRIGHT_LEVEL = 245
EXPOSURE_MAX_FRACTION = 0.95


def check_exposure(
    img: np.ndarray,
    dark_level: int = EXPOSURE_DARK_LEVEL,
    bright_level: int = EXPOSURE_BRIGHT_LEVEL,
    max_fraction: float = EXPOSURE_MAX_FRACTION,
) -> str:
    """'' for a usable 8-bit grey image, else why not ('black ...', 'saturated ...', 'empty'): more than
    ``max_fraction`` of the pixels <= ``dark_level`` (black) or >= ``bright_level`` (saturated).
    """
    a = np.asarray(img)
    if a.size == 0:
        return "empty"
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    n = float(a.size)
    dark = np.count_nonzero(a <= dark_level) / n
    bright = np.count_nonzero(a >= bright_level) / n
    if dark > max_fraction:
        return f"black ({dark:.0%} of the pixels <= {dark_level})"
    if bright > max_fraction:
        return f"saturated ({bright:.0%} of the pixels >= {bright_level})"
    return ""


class StereoPairProblem(NamedTuple):
    """One reason a stereo pair is unusable: ``code`` (``missing_left`` / ``missing_right``,
    ``size``, ``black``, ``saturated``), ``side`` ("left" / "right") and a message."""

    code: str
    side: str
    message: str


def check_stereo_pair(
    left: Optional[np.ndarray], right: Optional[np.ndarray], size: Optional[Tuple[int, int]] = None, **exposure
) -> List[StereoPairProblem]:
    """Problems of a raw stereo pair (empty: usable), :class:`StereoPairProblem`: ``missing_<side>`` (None or
    empty), ``size`` (not ``size`` = (width, height), or left and right differ), ``black`` / ``saturated``
    (:func:`check_exposure` with ``exposure``, per image).
    """
    out: List[StereoPairProblem] = []
    for side, img in (("left", left), ("right", right)):
        if img is None or np.asarray(img).size == 0:
            out.append(StereoPairProblem(f"missing_{side}", side, f"stereo pair without its {side} image"))
    if out:
        return out
    L, R = np.asarray(left), np.asarray(right)
    if size is not None:
        for side, img in (("left", L), ("right", R)):
            if (img.shape[1], img.shape[0]) != tuple(size):
                out.append(
                    StereoPairProblem(
                        "size", side, f"{side} image is {img.shape[1]}x{img.shape[0]}, expected {size[0]}x{size[1]}"
                    )
                )
    elif L.shape[:2] != R.shape[:2]:
        out.append(
            StereoPairProblem(
                "size", "right", f"left image {L.shape[1]}x{L.shape[0]} != right {R.shape[1]}x{R.shape[0]}"
            )
        )
    if out:
        return out
    for side, img in (("left", L), ("right", R)):
        why = check_exposure(img, **exposure)
        if why:
            out.append(StereoPairProblem(why.split()[0], side, f"{side} image {why}"))
    return out
