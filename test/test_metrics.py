"""Metrics: Umeyama alignment, ATE against evo, calibration figures on known Gaussians."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from scipy.stats import chi2

from prism_ros.eval import metrics


def _random_T(rng, trans_scale=1.0):
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    T[:3, 3] = rng.normal(scale=trans_scale, size=3)
    return T


def _trajectory(rng, n=200):
    """A smooth 6-DoF camera-to-world trajectory."""
    t = np.linspace(0, 4 * np.pi, n)
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, 3] = np.stack([np.cos(t), 0.5 * np.sin(2 * t), 0.2 * t], axis=1)
    rv = np.stack([0.3 * np.sin(t), 0.2 * np.cos(0.5 * t), t / 3], axis=1)
    T[:, :3, :3] = Rotation.from_rotvec(rv).as_matrix()
    return T


def test_chi2_constant():
    assert metrics.CHI2_95_6DOF == pytest.approx(chi2.ppf(0.95, 6), rel=1e-12)


@pytest.mark.parametrize("with_scale", [False, True])
def test_umeyama_recovers_known_transform(with_scale):
    rng = np.random.default_rng(0)
    src = rng.normal(size=(100, 3))
    S = _random_T(rng, 2.0)
    s = 1.7 if with_scale else 1.0
    dst = s * src @ S[:3, :3].T + S[:3, 3]
    R, t, s_est = metrics.umeyama(src, dst, with_scale=with_scale)
    np.testing.assert_allclose(R, S[:3, :3], atol=1e-10)
    np.testing.assert_allclose(t, S[:3, 3], atol=1e-10)
    assert s_est == pytest.approx(s, rel=1e-10)
    assert np.linalg.det(R) == pytest.approx(1.0)


def test_umeyama_reflection_case_gives_rotation():
    # Planar points: the SVD solution could be a reflection without the sign fix.
    rng = np.random.default_rng(1)
    src = np.c_[rng.normal(size=(50, 2)), np.zeros(50)]
    R0 = Rotation.from_euler("xyz", [10, -20, 170], degrees=True).as_matrix()
    dst = src @ R0.T
    R, t, _ = metrics.umeyama(src, dst)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(src @ R.T + t, dst, atol=1e-9)


def test_ate_is_zero_for_rigidly_moved_trajectory_and_positive_for_noise():
    rng = np.random.default_rng(2)
    G = _trajectory(rng)
    S = _random_T(rng, 3.0)
    E = np.einsum("ij,njk->nik", S, G)
    assert metrics.ate_rmse(E, G) < 1e-9
    assert metrics.ate_rmse(E, G, align=False) > 0.1
    noisy = E.copy()
    noisy[:, :3, 3] += rng.normal(scale=0.01, size=(len(E), 3))
    # RMSE of an isotropic 1 cm noise in 3D is about sqrt(3) cm (slightly less after fitting).
    assert metrics.ate_rmse(noisy, G) == pytest.approx(0.01 * np.sqrt(3), rel=0.15)


def test_ate_matches_evo_ape_with_alignment(tmp_path):
    pytest.importorskip("evo.core.trajectory")
    from evo.core import metrics as evo_metrics
    from evo.core import sync
    from evo.tools import file_interface

    from prism_ros.tools import export

    rng = np.random.default_rng(3)
    G = _trajectory(rng, 300)
    S = _random_T(rng, 1.0)
    E = np.einsum("ij,njk->nik", S, G)
    # Drift-like error: a slow rotation of the positions plus noise.
    drift = Rotation.from_rotvec(np.outer(np.linspace(0, 0.05, len(E)), [0, 0, 1])).as_matrix()
    E[:, :3, 3] = np.einsum("nij,nj->ni", drift, E[:, :3, 3]) + rng.normal(scale=0.005, size=(len(E), 3))
    stamps = np.arange(len(E)) / 30.0
    export.write_tum(str(tmp_path / "gt.tum"), stamps, G)
    export.write_tum(str(tmp_path / "est.tum"), stamps, E)

    ref = file_interface.read_tum_trajectory_file(str(tmp_path / "gt.tum"))
    est = file_interface.read_tum_trajectory_file(str(tmp_path / "est.tum"))
    ref, est = sync.associate_trajectories(ref, est)
    est.align(ref, correct_scale=False)
    ape = evo_metrics.APE(evo_metrics.PoseRelation.translation_part)
    ape.process_data((ref, est))
    evo_rmse = ape.get_statistic(evo_metrics.StatisticsType.rmse)

    ours = metrics.ate_rmse(E, G)
    assert ours > 0.01  # a non-trivial case
    assert ours == pytest.approx(evo_rmse, rel=1e-6, abs=1e-9)


def test_rpe_zero_for_rigid_offset_and_matches_injected_error():
    rng = np.random.default_rng(4)
    G = _trajectory(rng, 50)
    S = _random_T(rng)
    E = np.einsum("ij,njk->nik", S, G)
    r = metrics.rpe(E, G)
    assert r["trans_rmse"] < 1e-9 and r["rot_rmse_deg"] < 1e-5
    # Perturb every relative motion by a known 1 mm translation in the body frame.
    D = np.eye(4)
    D[:3, 3] = [0.001, 0, 0]
    E2 = [G[0]]
    for k in range(1, len(G)):
        E2.append(E2[-1] @ (np.linalg.inv(G[k - 1]) @ G[k]) @ D)
    r = metrics.rpe(np.stack(E2), G)
    np.testing.assert_allclose(r["trans"], 0.001, atol=1e-9)


def _se3_exp(xi):
    """Closed-form SE(3) exponential, xi = (rho, phi) (independent of prism_ros.core)."""
    rho, phi = np.asarray(xi[:3], float), np.asarray(xi[3:], float)
    th = np.linalg.norm(phi)
    W = metrics._hat(phi)
    if th < 1e-8:
        V = np.eye(3) + 0.5 * W
    else:
        V = np.eye(3) + (1 - np.cos(th)) / th**2 * W + (th - np.sin(th)) / th**3 * (W @ W)
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(phi).as_matrix()
    T[:3, 3] = V @ rho
    return T


def test_closed_form_exp_matches_matrix_exponential():
    from scipy.linalg import expm

    rng = np.random.default_rng(9)
    for _ in range(5):
        xi = rng.normal(size=6)
        X = np.zeros((4, 4))
        X[:3, :3] = metrics._hat(xi[3:])
        X[:3, 3] = xi[:3]
        np.testing.assert_allclose(_se3_exp(xi), expm(X), atol=1e-10)


def test_private_se3_helpers_agree_with_core():
    se3 = pytest.importorskip("prism_ros.core.se3")
    rng = np.random.default_rng(5)
    for _ in range(20):
        xi = rng.normal(scale=0.8, size=6)
        T = _se3_exp(xi)
        np.testing.assert_allclose(metrics._se3_log(T), xi, atol=1e-8)
        np.testing.assert_allclose(metrics._se3_log(T), se3.log(T), atol=1e-8)
        np.testing.assert_allclose(metrics._adjoint(T), se3.adjoint(T), atol=1e-12)
        # Ad_T xi: T Exp(xi) T^-1 = Exp(Ad_T xi)
        d = rng.normal(scale=0.1, size=6)
        np.testing.assert_allclose(T @ _se3_exp(d) @ np.linalg.inv(T), _se3_exp(metrics._adjoint(T) @ d), atol=1e-9)


def _errors_from_covariances(n: int):
    """A random trajectory G, random SPD 6x6 covariances (1 mm / 2 mrad scale) and one
    error twist drawn from each."""
    rng = np.random.default_rng(6)
    G = _trajectory(rng, n)
    A = rng.normal(size=(n, 6, 6)) * np.r_[[1e-3] * 3, [2e-3] * 3][None, :, None]
    covs = A @ np.swapaxes(A, 1, 2) + np.eye(6) * 1e-7
    xi = np.einsum("nij,nj->ni", np.linalg.cholesky(covs), rng.normal(size=(n, 6)))
    return G, covs, xi


def test_pose_coverage_is_095_for_correctly_sampled_errors():
    """Relative-motion errors drawn from the stated covariances: coverage ~ 0.95.

    Default definition: the error of the motion since the previous frame has the
    covariance Sigma_t of the current pose (map-conditioned filter)."""
    G, covs, xi = _errors_from_covariances(2001)
    n = len(G)
    E = [G[0]]
    for k in range(1, n):
        E.append(E[-1] @ np.linalg.inv(G[k - 1]) @ G[k] @ _se3_exp(xi[k]))
    E = np.stack(E)
    cov95 = metrics.pose_coverage_95(E, G, covs)
    # binomial std at n=2000 is 0.005
    assert cov95 == pytest.approx(0.95, abs=0.015)
    d2 = metrics.relative_motion_mahalanobis(E, G, covs)
    assert np.mean(d2 <= metrics.CHI2_95_6DOF) == cov95
    assert np.mean(d2) == pytest.approx(6.0, rel=0.08)  # E[chi2_6] = 6
    # 4x too small a covariance (d2 x 4) is badly over-confident, 4x too big is pessimistic
    assert np.mean(4 * d2 <= metrics.CHI2_95_6DOF) < 0.7
    assert np.mean(d2 / 4 <= metrics.CHI2_95_6DOF) > 0.99
    assert metrics.pose_coverage_95(E[:50], G[:50], covs[:50] / 4) < 0.8


def test_pose_coverage_independent_errors_definition():
    """independent=True: independent per-frame pose errors, C = Ad Sigma_(t-1) Ad^T + Sigma_t."""
    G, covs, xi = _errors_from_covariances(2001)
    n = len(G)
    E = np.stack([G[k] @ _se3_exp(xi[k]) for k in range(n)])
    d2 = metrics.relative_motion_mahalanobis(E, G, covs, independent=True)
    assert np.mean(d2 <= metrics.CHI2_95_6DOF) == pytest.approx(0.95, abs=0.015)
    # the default (map-conditioned) definition is over-confident for such errors
    assert np.mean(metrics.relative_motion_mahalanobis(E, G, covs) <= metrics.CHI2_95_6DOF) < 0.9


def test_pose_coverage_valid_mask():
    rng = np.random.default_rng(7)
    G = _trajectory(rng, 20)
    covs = np.tile(np.eye(6) * 1e-6, (20, 1, 1))
    E = G.copy()
    E[10, :3, 3] += 1.0  # a gross error at frame 10 breaks pairs (9,10) and (10,11)
    assert metrics.pose_coverage_95(E, G, covs) == pytest.approx(17 / 19)
    valid = np.ones(20, bool)
    valid[10] = False
    assert metrics.pose_coverage_95(E, G, covs, valid=valid) == 1.0


def test_map_coverage_and_rmse_on_gaussian_samples():
    rng = np.random.default_rng(8)
    n = 200_000
    sdf_true = rng.uniform(-0.08, 0.08, n)
    sigma = rng.uniform(0.002, 0.02, n)
    mu = sdf_true + sigma * rng.normal(size=n)
    band = 0.04
    inband = np.abs(sdf_true) < band
    cov = metrics.map_coverage_2sigma(mu, sigma, sdf_true, band)
    assert cov == pytest.approx(0.9545, abs=0.005)
    assert metrics.map_sdf_rmse(mu, sdf_true, band) == pytest.approx(np.sqrt(np.mean(sigma[inband] ** 2)), rel=0.02)
    # unobserved voxels (NaN mean) are ignored; over-confident sigma lowers coverage
    mu_nan = mu.copy()
    mu_nan[::2] = np.nan
    assert metrics.map_coverage_2sigma(mu_nan, sigma, sdf_true, band) == pytest.approx(0.9545, abs=0.01)
    assert metrics.map_coverage_2sigma(mu, sigma / 3, sdf_true, band) < 0.6
    assert np.isnan(metrics.map_coverage_2sigma(mu, sigma, sdf_true + 1.0, band))


def test_peak_rss_grows_with_allocation():
    """In a fresh process, touching 200 MiB raises the peak RSS to about 200 MiB above the RSS
    before (the peak already held may be higher than that RSS: imports), and the current RSS
    is never above the peak."""
    import subprocess
    import sys

    code = (
        "import numpy as np; from prism_ros.eval import metrics as m; b = m.current_rss_mb(); "
        "x = np.ones(200 * 2**20 // 8); a = m.peak_rss_mb(); c = m.current_rss_mb(); print(b, a, c)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    before, peak, current = (float(v) for v in out.stdout.split())
    assert 10 < before < 400
    assert peak - before >= 195  # (the peak may be higher still: import-time memory since freed)
    assert 195 <= current - before <= 215 and current <= peak + 1
