"""Per-frame preprocessing kernels: invalid depth and depth-sigma values."""

import numpy as np

from prism_ros.core.camera import Camera
from prism_ros.core.image import build_frame, clean_depth, clean_sigma


def test_clean_depth_counts_the_valid_pixels():
    d = np.array([[0.5, np.nan, 0.1, 7.0], [np.inf, -1.0, 2.0, 5.0]], np.float32)
    out = np.empty_like(d)
    n = clean_depth(d, np.float32(0.3), np.float32(5.0), out)
    np.testing.assert_array_equal(out, [[0.5, 0, 0, 0], [0, 0, 2.0, 5.0]])
    assert n == 3


def test_clean_sigma_makes_non_finite_values_a_weak_observation():
    s = np.array([[0.01, np.nan], [np.inf, -np.inf]], np.float32)
    out = np.empty_like(s)
    clean_sigma(s, out)
    np.testing.assert_array_equal(out, np.array([[0.01, 1.0], [1.0, 1.0]], np.float32))


def test_build_frame_valid_fraction_and_sigma():
    cam = Camera(100.0, 100.0, 31.5, 23.5, 64, 48)
    depth = np.full((48, 64), 2.0, np.float32)
    depth[:12] = 0.0  # a quarter invalid
    depth[12, :8] = np.nan
    sigma = np.full((48, 64), 0.02, np.float32)
    sigma[20, 5] = np.nan
    fr = build_frame(np.zeros((48, 64), np.uint8), depth, cam, 3, 0.3, 5.0, sigma)
    assert fr.valid_fraction == (36 * 64 - 8) / (48 * 64)
    assert fr.depth_sigma[20, 5] == 1.0 and fr.depth_sigma[21, 5] == np.float32(0.02)
    assert fr.depth_sigma.dtype == np.float32 and fr.rgb.shape == (48, 64, 3)
