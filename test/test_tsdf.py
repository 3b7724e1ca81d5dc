"""Probabilistic TSDF: closed-form Gaussian fusion, sparse allocation, queries and persistence."""

import numpy as np
import pytest

from prism_ros.core.camera import Camera
from prism_ros.core.image import build_frame
from prism_ros.core.tsdf import TsdfMap

CAM = Camera(100.0, 100.0, 39.5, 29.5, 80, 60)
NOISE = np.array([0.0012, 0.0019, 0.4])


def plane_frame(z, cam=CAM):
    depth = np.full((cam.height, cam.width), z, np.float32)
    rgb = np.full((cam.height, cam.width, 3), 100, np.uint8)
    return rgb, build_frame(rgb, depth, cam, 1, 0.1, 5.0)


def new_map(**kw):
    args = dict(
        voxel_size_m=0.02,
        truncation_m=0.08,
        prior_sigma_m=0.5,
        min_sigma_m=0.0,
        max_observations=1000,
        initial_blocks=64,
    )
    args.update(kw)
    return TsdfMap(**args)


def test_fusion_is_the_analytic_gaussian_product():
    """Two observations of a fronto-parallel plane: every updated voxel must hold
    exactly the product of the prior and both observation Gaussians."""
    m = new_map()
    T = np.eye(4)
    zs = [1.005, 0.995]
    for z in zs:
        _, f = plane_frame(z)
        m.integrate(f.depth[0], f.rgb, f.normals[0], CAM.params, T, NOISE, pose_var=1e-6)
    obs = m.observed_voxels()
    # voxels on the optical axis column, i.e. x = y = 0 (they project to the image centre)
    sel = (np.abs(obs["xyz"][:, 0]) < 1e-9) & (np.abs(obs["xyz"][:, 1]) < 1e-9)
    assert sel.sum() >= 5
    for p, mu, sig, cnt in zip(obs["xyz"][sel], obs["sdf"][sel], obs["sigma"][sel], obs["count"][sel]):
        prec, num, n = 1.0 / 0.5**2, 0.0, 0
        for z in zs:
            if z - p[2] < -0.08:
                continue  # more than tau behind the surface: not updated
            n += 1
            s = z - p[2]  # normal (0,0,-1): point-to-plane == projective here
            if s >= 0.08:  # clipped: free-space evidence N(tau, tau^2)
                s, var_obs = 0.08, 0.08**2
            else:
                sz = 0.0012 + 0.0019 * (z - 0.4) ** 2
                var_obs = sz**2 + (s * m.distance_sigma_ratio) ** 2 + 1e-6
            prec += 1.0 / var_obs
            num += s / var_obs
        if np.isclose(num / prec, 0.08, atol=1e-3):
            continue  # only free-space evidence: its variance is floored (next test)
        assert cnt == n
        assert mu == pytest.approx(num / prec, abs=2e-6)
        # the reported sigma adds the systematic terms to the fused variance
        assert sig == pytest.approx(np.sqrt(1.0 / prec + (m.distance_sigma_ratio * mu) ** 2), rel=1e-4)


def test_voxels_behind_truncation_are_not_updated_and_precision_is_capped():
    m = new_map(min_sigma_m=0.004, distance_sigma_ratio=0.0)
    _, f = plane_frame(1.0)
    for _ in range(20):
        m.integrate(f.depth[0], f.rgb, f.normals[0], CAM.params, np.eye(4), NOISE)
    obs = m.observed_voxels()
    assert obs["xyz"][:, 2].max() <= 1.0 + 0.08 + 1e-9
    assert obs["sigma"].min() >= 0.004 - 1e-7
    mu, sig, cnt = m.query(np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 0.9], [5.0, 5.0, 5.0]]))
    assert abs(mu[0]) < 1e-3 and mu[1] == pytest.approx(0.08, abs=1e-4)  # the broad prior pulls slightly
    # free-space evidence alone never gets more certain than tau / 2
    assert sig[1] == pytest.approx(0.04, rel=1e-4)
    assert np.isnan(mu[2]) and sig[2] == pytest.approx(0.5) and cnt[2] == 0


def test_memory_follows_the_surface_and_the_hash_grows():
    """Blocks are allocated only around the observed surface; capacity doubles on demand."""
    cam = Camera(300.0, 300.0, 159.5, 119.5, 320, 240)
    m = new_map(initial_blocks=16)
    _, f = plane_frame(2.0, cam)
    m.integrate(f.depth[0], f.rgb, f.normals[0], cam.params, np.eye(4), NOISE)
    # the plane at 2 m spans 2.13 x 1.6 m: ~(14 x 11) blocks of 16 cm, 1-2 deep
    assert 100 < m.num_blocks < 500
    assert m.capacity >= m.num_blocks
    # a dense bounding-box grid of the same extent at 2 cm would need far more memory
    dense = (2.2 / 0.02) * (1.7 / 0.02) * (2.1 / 0.02) * 13
    assert m.memory_bytes < dense
    surf = m.extract_surface(0.011)
    assert np.abs(surf["xyz"][:, 2] - 2.0).max() <= 0.0201
    # a map that will not grow again gives its spare capacity back, and still answers (and grows) the same
    probe = np.array([[0.1, 0.05, 1.99], [-0.3, 0.2, 2.01], [0.0, 0.0, 5.0]])
    before, mem, n0 = m.query(probe), m.memory_bytes, m.num_blocks
    m.shrink_to_fit()
    assert m.capacity == m.num_blocks and m.memory_bytes < mem
    for a, b in zip(before, m.query(probe)):
        np.testing.assert_array_equal(a, b)
    _, f = plane_frame(1.5, cam)
    m.integrate(f.depth[0], f.rgb, f.normals[0], cam.params, np.eye(4), NOISE)
    assert m.capacity >= m.num_blocks > n0


def test_surface_extraction_kernel_equals_the_array_expression():
    """extract_surface (two parallel Numba passes) gives exactly what the plain numpy
    selection gives: the same voxels in the same (slot, voxel) order, the same values."""
    from prism_ros.core.tsdf import BLOCK

    m = new_map(model_sigma_m=0.003, distance_sigma_ratio=0.1)
    rng = np.random.default_rng(3)
    for i, z in enumerate((1.0, 1.3, 0.9)):
        depth = (z + 0.05 * rng.standard_normal((CAM.height, CAM.width))).astype(np.float32)
        depth[rng.random(depth.shape) < 0.1] = 0.0
        rgb = rng.integers(0, 256, (CAM.height, CAM.width, 3), dtype=np.uint8)
        f = build_frame(rgb, depth, CAM, 2, 0.1, 5.0)
        T = np.eye(4)
        T[:3, 3] = [0.05 * i, -0.03 * i, 0.0]
        m.integrate(f.depth[0], f.rgb, f.normals[1], CAM.params, T, NOISE, aux_level=1)
    for max_abs, min_count in ((0.011, 1), (0.05, 2), (1.0, 1)):
        n = m.n_blocks
        mu, cnt = m.mu[:n], m.cnt[:n]
        b, l = np.nonzero((cnt >= min_count) & (np.abs(mu) <= max_abs))
        local = np.stack([l % BLOCK, (l // BLOCK) % BLOCK, l // (BLOCK * BLOCK)], axis=1)
        want = {
            "xyz": ((m.block_xyz[b] * BLOCK + local) * m.voxel_size).astype(np.float32),
            "rgb": m.rgb[b, l],
            "sigma": m.reported_sigma(m.var[b, l], mu[b, l]).astype(np.float32),
            "sdf": mu[b, l],
            "count": cnt[b, l].astype(np.float32),
        }
        got = m.extract_surface(max_abs, min_count=min_count)
        assert len(want["sdf"]) > 100
        for k, v in want.items():
            assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
            np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_save_load_round_trip(tmp_path):
    m = new_map()
    _, f = plane_frame(1.2)
    m.integrate(f.depth[0], f.rgb, f.normals[0], CAM.params, np.eye(4), NOISE)
    p = tmp_path / "map.npz"
    m.save(str(p), extra={"frame_id": "odom"})
    m2 = TsdfMap.load(str(p))
    assert m2.num_blocks == m.num_blocks
    pts = m.observed_voxels()["xyz"]
    a, b = m.query(pts), m2.query(pts)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert TsdfMap.read_header(str(p))["frame_id"] == "odom"
