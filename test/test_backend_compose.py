"""The composed global map: submaps resampled at their anchor poses, fused, with the anchors' pose uncertainty."""

import numpy as np
import pytest

from prism_ros.core import se3
from prism_ros.core.backend.compose import compose_map
from prism_ros.core.camera import Camera
from prism_ros.core.image import build_frame
from prism_ros.core.render import trilinear_sdf
from prism_ros.core.tsdf import TsdfMap
from prism_ros.core.tsdf_kernels import query_points

CAM = Camera(100.0, 100.0, 39.5, 29.5, 80, 60)
NOISE = np.array([0.0012, 0.0019, 0.4])
VOX = 0.02


def new_map(**kw):
    args = dict(
        voxel_size_m=VOX,
        truncation_m=0.08,
        prior_sigma_m=0.5,
        min_sigma_m=0.0005,
        max_observations=200,
        initial_blocks=256,
    )
    args.update(kw)
    return TsdfMap(**args)


def integrate(m, depth, T_anchor_cam=None, grey=100):
    """Fuse one synthetic frame (depth image in the camera's optical frame) into submap ``m``."""
    rgb = np.full((CAM.height, CAM.width, 3), grey, np.uint8)
    f = build_frame(rgb, depth.astype(np.float32), CAM, 1, 0.1, 5.0)
    T = np.eye(4) if T_anchor_cam is None else T_anchor_cam
    m.integrate(f.depth[0], f.rgb, f.normals[0], CAM.params, T, NOISE)


def wall(z):
    return np.full((CAM.height, CAM.width), z)


def raw(m, pts):
    """(mu, var, count) of the voxels nearest ``pts``: the stored belief, no systematic terms."""
    pts = np.ascontiguousarray(pts, dtype=np.float64).reshape(-1, 3)
    mu, var, cnt = (np.empty(len(pts)) for _ in range(3))
    query_points(pts, m.voxel_size, m.keys, m.vals, m.mu, m.var, m.cnt, mu, var, cnt, m.prior_var)
    return mu, var, cnt


def crossing(m, origin, direction, half=0.06, step=0.002):
    """Zero crossing (signed distance from ``origin`` along the unit ``direction``, which points from free space into
    the surface) of the map's trilinear SDF."""
    s = np.arange(-half, half + 1e-9, step)
    f = np.array(
        [trilinear_sdf(m.keys, m.vals, m.mu, m.cnt, m.voxel_size, *(origin + si * direction), np.nan) for si in s]
    )
    hits = np.flatnonzero((f[:-1] > 0.0) & (f[1:] <= 0.0))
    assert len(hits) == 1, f"expected one crossing, SDF along the line: {f}"
    i = hits[0]
    return s[i] + step * f[i] / (f[i] - f[i + 1])


def test_identity_reproduces_the_submap():
    """T = I, Sigma = 0: the same observed voxels with the same mean, variance, count and colour."""
    sub = new_map()
    step = wall(1.0)
    step[:, 40:] = 1.2  # two walls and a depth edge between them: partly observed neighbourhoods
    integrate(sub, step)
    T = np.eye(4)
    T[:3, 3] = [0.0, 0.0, 0.05]  # the same walls from 5 cm closer
    integrate(sub, step - 0.05, T, grey=180)
    out = compose_map([(sub, np.eye(4), np.zeros((6, 6)))], sub)
    assert (out.voxel_size, out.truncation, out.prior_var, out.min_var, out.max_count) == (
        sub.voxel_size,
        sub.truncation,
        sub.prior_var,
        sub.min_var,
        sub.max_count,
    )
    assert out.free_space is None
    a, b = sub.observed_voxels(), out.observed_voxels()
    assert len(a["xyz"]) > 5000
    order_a = np.lexsort(np.round(a["xyz"] / VOX).astype(np.int64).T)
    order_b = np.lexsort(np.round(b["xyz"] / VOX).astype(np.int64).T)
    np.testing.assert_array_equal(np.round(a["xyz"][order_a] / VOX), np.round(b["xyz"][order_b] / VOX))
    mu_a, var_a, cnt_a = raw(sub, a["xyz"])
    mu_b, var_b, cnt_b = raw(out, a["xyz"])
    assert np.abs(mu_b - mu_a).max() <= 1e-6  # metres
    np.testing.assert_array_equal(var_b, var_a)
    np.testing.assert_array_equal(cnt_b, cnt_a)
    sa, sb = sub.extract_surface(0.011), out.extract_surface(0.011)
    assert len(sa["xyz"]) == len(sb["xyz"]) > 500
    np.testing.assert_array_equal(np.sort(sa["rgb"][:, 0]), np.sort(sb["rgb"][:, 0]))
    # the zero crossings of the near and the far wall in the same place
    for origin in ([-0.15, 0.0, 1.0], [0.2, 0.0, 1.2]):
        za = crossing(sub, np.array(origin), np.array([0.0, 0.0, 1.0]))
        zb = crossing(out, np.array(origin), np.array([0.0, 0.0, 1.0]))
        assert abs(za) < 0.5e-3 and abs(zb - za) < 1e-5
    # a pose taken as exact (None) is Sigma = 0
    again = compose_map([(sub, np.eye(4), None)], sub)
    np.testing.assert_array_equal(raw(again, a["xyz"])[1], var_a)


@pytest.mark.parametrize("voxel_size_m", [None, 0.03])
def test_reposed_plane_lies_on_the_transformed_plane(voxel_size_m):
    """A wall at z = 1 m of the anchor frame, composed at a rotation of 35 degrees plus a translation: the composed
    map's zero level lies on the transformed wall, at the submap's voxel size and at a coarser one."""
    sub = new_map()
    integrate(sub, wall(1.0))
    axis = np.array([1.0, 2.0, 0.5]) / np.linalg.norm([1.0, 2.0, 0.5])
    T = se3.make_T(se3.so3_exp(np.deg2rad(35.0) * axis), np.array([0.3, -0.2, 0.5]))
    out = compose_map([(sub, T, np.zeros((6, 6)))], sub, voxel_size_m)
    assert out.voxel_size == (voxel_size_m or VOX)
    n_map = T[:3, :3] @ np.array([0.0, 0.0, 1.0])  # from the camera into the wall
    errs = []
    for x in np.linspace(-0.24, 0.24, 7):
        for y in np.linspace(-0.16, 0.16, 5):
            q = T[:3, :3] @ np.array([x, y, 1.0]) + T[:3, 3]
            errs.append(crossing(out, q, n_map))
    errs = np.abs(errs)
    # within 1/200 of a submap voxel everywhere (the field is linear across the band: interpolation is exact)
    assert errs.max() < 0.005 * VOX, errs.max()
    # the composed surface voxels lie on the transformed wall too
    surf = out.extract_surface(0.5 * out.voxel_size)
    d = (surf["xyz"] - T[:3, 3]) @ n_map - 1.0
    assert len(d) > 300 and np.abs(d).max() <= 0.5 * out.voxel_size + 1e-3


def two_walls():
    """The same wall (z = 1 m in the map) in two submaps: A anchored at the map origin (two frames, grey 100), B at
    its true anchor pose (0.1, 0, 0.2) m, where the wall is 0.8 m away (one frame, grey 200)."""
    a, b = new_map(), new_map()
    integrate(a, wall(1.0))
    integrate(a, wall(1.0))
    integrate(b, wall(0.8), grey=200)
    T_b = se3.make_T(np.eye(3), np.array([0.1, 0.0, 0.2]))
    return a, b, T_b


def test_two_copies_of_a_wall_coincide_at_the_corrected_poses():
    a, b, T_b = two_walls()
    T_drift = T_b.copy()
    T_drift[2, 3] += 0.03  # B's anchor estimated 3 cm too far along the wall's normal
    zero = np.zeros((6, 6))
    ez = np.array([0.0, 0.0, 1.0])
    probes = [np.array([x, y, 1.0]) for x in (0.0, 0.1, 0.2) for y in (-0.1, 0.0, 0.1)]

    def crossings(parts):
        m = compose_map(parts, a)
        return m, np.array([crossing(m, p, ez) for p in probes])

    _, za = crossings([(a, np.eye(4), zero)])
    _, zb = crossings([(b, T_drift, zero)])
    _, zboth = crossings([(a, np.eye(4), zero), (b, T_drift, zero)])
    # each part alone: A on the wall, drifted B 3 cm behind it
    assert np.abs(za).max() < 0.5e-3
    assert np.abs(zb - za - 0.03).max() < 1e-3
    # both at the drifted poses: one surface between the two, where the precision-weighted mean of their SDFs
    # vanishes: nearer the copy of two frames, whose SDF is more certain there
    assert np.all((zboth > 0.001) & (zboth < 0.015)), zboth
    # B's drifted pose with its uncertainty (3 cm along the normal) weighs less: the surface moves towards A's
    _, zsig = crossings([(a, np.eye(4), zero), (b, T_drift, np.diag([0.0, 0.0, 0.03**2, 0.0, 0.0, 0.0]))])
    assert np.all(zsig < 0.5 * zboth), (zsig, zboth)
    # at the corrected poses: one surface, on the wall
    good, zgood = crossings([(a, np.eye(4), zero), (b, T_b, zero)])
    assert np.abs(zgood).max() < 0.1e-3, zgood
    # and more certain than either copy: the product of the two Gaussians
    pts = np.array([[x, y, 1.0 + dz] for x in (0.0, 0.1, 0.2) for y in (-0.1, 0.1) for dz in (-0.02, 0.0, 0.02)])
    mu_a, var_a, cnt_a = raw(a, pts)
    mu_b, var_b, cnt_b = raw(b, pts - T_b[:3, 3])
    mu_g, var_g, cnt_g = raw(good, pts)
    np.testing.assert_allclose(var_g, 1.0 / (1.0 / var_a + 1.0 / var_b), rtol=1e-5)
    np.testing.assert_allclose(mu_g, var_g * (mu_a / var_a + mu_b / var_b), rtol=1e-4, atol=1e-7)
    assert np.all(var_g < 0.75 * np.minimum(var_a, var_b))
    assert np.all(cnt_a == 2) and np.all(cnt_b == 1) and np.all(cnt_g == 3)
    # colours averaged by count: (2 x 100 + 1 x 200) / 3
    surf = good.extract_surface(0.011)
    on_both = (np.abs(surf["xyz"][:, 0] - 0.1) < 0.15) & (np.abs(surf["xyz"][:, 1]) < 0.15)
    assert on_both.sum() > 100 and np.all(surf["rgb"][on_both, 0] == 133)


def test_anchor_covariance_grows_the_variance_along_the_normal():
    """Sigma in the anchor's tangent space adds n^T J Sigma J^T n, J = d(Exp(xi) p)/d(xi) (from se3 by finite
    differences here): a translation variance along the wall's normal adds its own value and the lateral ones
    nothing; a rotation variance adds sigma_r^2 |p x n|^2, the lever arm from the anchor (not from the map origin)."""
    sub = new_map()
    integrate(sub, wall(1.0))
    integrate(sub, wall(1.0))
    T = se3.make_T(np.eye(3), np.array([0.1, -0.04, 0.2]))  # whole voxels: every sample is a voxel centre
    p_anchor = np.array([[x, y, 1.0 + dz] for x in (-0.2, 0.0, 0.16) for y in (-0.12, 0.0, 0.1) for dz in (-0.02, 0.0)])
    pts = p_anchor + T[:3, 3]
    mu0, var0, _ = raw(sub, p_anchor)
    assert np.all(np.abs(mu0) < 0.025)

    def jacobian(p, eps=1e-6):
        J = np.zeros((3, 6))
        for i in range(6):
            d = np.zeros(6)
            d[i] = eps
            J[:, i] = ((se3.exp(d) @ np.append(p, 1.0))[:3] - (se3.exp(-d) @ np.append(p, 1.0))[:3]) / (2 * eps)
        return J

    n = np.array([0.0, 0.0, 1.0])
    # translation: 3 cm along the normal, 10 cm along the wall
    S_t = np.diag([0.1**2, 0.1**2, 0.03**2, 0.0, 0.0, 0.0])
    out = compose_map([(sub, T, S_t)], sub)
    mu, var, _ = raw(out, pts)
    np.testing.assert_allclose(mu, mu0, atol=1e-7)
    np.testing.assert_allclose(var - var0, 0.03**2, rtol=1e-4)
    # the reported sigma too (same mean: the same distance term)
    s0, s1 = sub.query(p_anchor)[1], out.query(pts)[1]
    np.testing.assert_allclose(s1**2 - s0**2, 0.03**2, rtol=1e-4)
    # rotation: 2 degrees a side; the added variance follows the lever arm
    sr = np.deg2rad(2.0)
    S_r = np.diag([0.0, 0.0, 0.0, sr**2, sr**2, sr**2])
    out = compose_map([(sub, T, S_r)], sub)
    _, var, _ = raw(out, pts)
    want = np.array([n @ jacobian(p) @ S_r @ jacobian(p).T @ n for p in p_anchor])
    np.testing.assert_allclose(want, sr**2 * (p_anchor[:, 0] ** 2 + p_anchor[:, 1] ** 2), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(var - var0, want, rtol=1e-3, atol=1e-9)
    on_axis = (p_anchor[:, 0] == 0.0) & (p_anchor[:, 1] == 0.0)
    assert np.all(var[on_axis] - var0[on_axis] < 1e-9)
    assert (var - var0).max() > sr**2 * 0.2**2  # a lever arm beyond 20 cm
    # a correlated Sigma (the sign of the rho-phi cross terms matters) at a rotated anchor: the normal and the lever
    # arm are the anchor frame's; the added variance is composed(Sigma) - composed(0) at the same samples
    rng = np.random.default_rng(7)
    L = rng.normal(size=(6, 6)) * np.array([0.02, 0.02, 0.02, 0.01, 0.01, 0.01])[:, None]
    S_c = L @ L.T
    T_rot = se3.make_T(se3.so3_exp(np.array([0.3, -0.5, 0.2])), np.array([0.2, 0.1, -0.3]))
    base, unc = compose_map([(sub, T_rot, None)], sub), compose_map([(sub, T_rot, S_c)], sub)
    surf = base.extract_surface(0.5 * VOX)
    p_rot = (surf["xyz"] - T_rot[:3, 3]) @ T_rot[:3, :3]  # inv(T) c
    inner = (np.abs(p_rot[:, 0]) < 0.25) & (np.abs(p_rot[:, 1]) < 0.18)
    assert inner.sum() > 300
    added = raw(unc, surf["xyz"][inner])[1] - raw(base, surf["xyz"][inner])[1]
    want = np.array([n @ jacobian(p) @ S_c @ jacobian(p).T @ n for p in p_rot[inner]])
    np.testing.assert_allclose(added, want, rtol=1e-3, atol=1e-9)
    flipped = S_c.copy()
    flipped[:3, 3:] *= -1.0
    flipped[3:, :3] *= -1.0
    wrong = np.array([n @ jacobian(p) @ flipped @ jacobian(p).T @ n for p in p_rot[inner]])
    assert np.abs(wrong - want).max() > 0.1 * want.max()  # the test can tell the sign
    # in truncated free space the SDF is flat, no normal: the whole positional variance (the trace) is added
    free = np.array([[0.0, 0.0, 0.88], [0.1, 0.06, 0.9]])
    _, var_f0, cnt_f = raw(sub, free)
    _, var_f, _ = raw(compose_map([(sub, T, S_t)], sub), free + T[:3, 3])
    assert np.all(cnt_f > 0)
    np.testing.assert_allclose(var_f - var_f0, 0.1**2 + 0.1**2 + 0.03**2, rtol=1e-4)


def test_empty_and_invalid_parts():
    sub = new_map()
    out = compose_map([], sub)
    assert out.n_blocks == 0 and out.voxel_size == VOX
    assert compose_map([(new_map(), np.eye(4), None)], sub).n_blocks == 0
    integrate(sub, wall(1.0))
    with pytest.raises(ValueError):
        compose_map([(sub, np.diag([2.0, 1.0, 1.0, 1.0]), None)], sub)
    with pytest.raises(ValueError):
        compose_map([(sub, np.eye(4), np.eye(3))], sub)


def test_parts_added_to_a_base_equal_all_parts_composed_in_order():
    """The node keeps the frozen submaps composed and adds the active one to a copy: the same voxels as composing
    them all, the base untouched."""
    a, b, T_b = two_walls()
    c = new_map()
    integrate(c, wall(0.9), grey=50)
    T_c = se3.make_T(se3.so3_exp(np.array([0.0, 0.05, 0.0])), np.array([0.6, 0.0, 0.1]))  # partly beside the others
    S = np.diag([1e-4, 2e-4, 3e-4, 1e-5, 1e-5, 2e-5])
    parts = [(a, np.eye(4), None), (b, T_b, S), (c, T_c, 0.5 * S)]
    full = compose_map(parts, a)
    base = compose_map(parts[:2], a)
    kept = (base.mu[: base.n_blocks].copy(), base.var[: base.n_blocks].copy(), base.cnt[: base.n_blocks].copy())
    added = compose_map(parts[2:], a, base=base)
    assert added.n_blocks == full.n_blocks > base.n_blocks
    pts = full.voxel_centres()
    for x, y in zip(raw(added, pts), raw(full, pts)):
        np.testing.assert_array_equal(x, y)
    for x, y in zip((base.mu, base.var, base.cnt), kept):
        np.testing.assert_array_equal(x[: base.n_blocks], y)
    with pytest.raises(ValueError):
        compose_map(parts[2:], a, voxel_size_m=2 * VOX, base=base)
