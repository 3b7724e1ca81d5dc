"""The back end's keyframe pose graph: covariance conventions against GTSAM, loop closure on a drifted square,
marginals, the robust kernel and the loop gate, and the relative marginal against first-order compounding."""

import gtsam
import numpy as np
import pytest

from prism_ros.core import se3
from prism_ros.core.backend.graph import LoopCheck, PoseGraph, from_gtsam_cov, to_gtsam_cov

CHI2_6DOF_999 = 22.46

# Odometry noise per keyframe step (0.2 m apart): 1 cm per axis, 5 mrad per axis.
REL_COV = np.diag([0.01**2] * 3 + [0.005**2] * 3)
# A registration-grade loop closure: 1 cm, 5 mrad.
LOOP_COV = np.diag([0.01**2] * 3 + [0.005**2] * 3)
N = 40


def _random_cov(rng, sig_t, sig_r):
    A = rng.normal(size=(6, 6))
    C = A @ A.T / 6.0 + np.eye(6)
    d = np.array([sig_t] * 3 + [sig_r] * 3) / np.sqrt(np.diag(C))
    return C * np.outer(d, d)


def _square_truth():
    """N keyframes around a 2 m x 2 m square (corners turn by 90 deg), with roll/pitch wobble and a z wave."""
    side, step = 2.0, 8.0 / N
    corners = [(0.0, 0.0), (side, 0.0), (side, side), (0.0, side)]
    dirs = [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)]
    out = []
    for k in range(N):
        s = k * step
        edge = int(round(s, 9) // side)
        u = s - edge * side
        p = np.array(corners[edge]) + u * np.array(dirs[edge])
        wobble = se3.so3_exp(np.array([0.05 * np.sin(0.7 * k), 0.05 * np.cos(0.5 * k), 0.0]))
        R = se3.so3_exp(np.array([0.0, 0.0, edge * np.pi / 2])) @ wobble
        out.append(se3.make_T(R, np.array([p[0], p[1], 0.1 * np.sin(2 * np.pi * k / N)])))
    return out


def _drifted_odometry(truth, yaw_bias=0.003, scale=1.005):
    """Odometry from the true relative motions with a constant per-step yaw error and scale error."""
    odom = [truth[0]]
    for a, b in zip(truth[:-1], truth[1:]):
        Z = se3.inv(a) @ b
        Z[:3, 3] *= scale
        odom.append(odom[-1] @ Z @ se3.exp(np.array([0, 0, 0, 0, 0, yaw_bias])))
    return odom


def _chain(odom, **kw):
    g = PoseGraph(**kw)
    for k, T in enumerate(odom):
        g.add_keyframe(k, T, None if k == 0 else REL_COV)
    g.update()
    return g


def _rms(g, truth):
    P = g.poses()
    return float(np.sqrt(np.mean([np.sum((P[k][:3, 3] - truth[k][:3, 3]) ** 2) for k in range(len(truth))])))


def _pos_sigma(g, k):
    return float(np.sqrt(np.trace(g.marginal(k)[:3, :3])))


@pytest.fixture(scope="module")
def square():
    truth = _square_truth()
    return truth, _drifted_odometry(truth)


# ---------------------------------------------------------------- conventions
def test_cov_conversion_round_trip_and_block_order():
    C = _random_cov(np.random.default_rng(1), 0.1, 0.02)
    G = to_gtsam_cov(C)
    assert np.allclose(G[:3, :3], C[3:, 3:]) and np.allclose(G[3:, 3:], C[:3, :3])
    assert np.allclose(G[:3, 3:], C[3:, :3])
    assert np.allclose(from_gtsam_cov(G), C, atol=0)


def test_gtsam_tangent_is_ours_permuted():
    """Pose3.Logmap(T_bar.between(T_bar Exp(xi))) == (phi, rho) exactly; retract agrees to first order (whatever
    the build's retraction); se3.adjoint is gtsam's AdjointMap with the blocks permuted."""
    rng = np.random.default_rng(2)
    T_bar = se3.exp(rng.normal(size=6))
    P = gtsam.Pose3(T_bar)
    for _ in range(20):
        xi = rng.normal(size=6) * 0.3
        xg = np.concatenate([xi[3:], xi[:3]])
        assert np.allclose(gtsam.Pose3.Logmap(P.between(gtsam.Pose3(T_bar @ se3.exp(xi)))), xg, atol=1e-9)
        small = xi * 1e-4
        sg = np.concatenate([small[3:], small[:3]])
        assert np.allclose(P.retract(sg).matrix(), T_bar @ se3.exp(small), atol=1e-10)
        assert np.allclose(P.localCoordinates(gtsam.Pose3(T_bar @ se3.exp(small))), sg, atol=1e-10)
    Ad = se3.adjoint(T_bar)
    assert np.allclose(to_gtsam_cov(Ad), P.AdjointMap(), atol=1e-12)
    xi = rng.normal(size=6) * 0.3
    assert np.allclose(T_bar @ se3.exp(xi) @ se3.inv(T_bar), se3.exp(Ad @ xi), atol=1e-10)


def test_cov_conversion_monte_carlo():
    rng = np.random.default_rng(3)
    C = _random_cov(rng, 0.05, 0.03)
    T_bar = se3.exp(np.array([1.0, -2.0, 0.5, 0.3, -0.4, 1.1]))
    P = gtsam.Pose3(T_bar)
    L = np.linalg.cholesky(C)
    samples = np.array(
        [gtsam.Pose3.Logmap(P.between(gtsam.Pose3(T_bar @ se3.exp(L @ z)))) for z in rng.normal(size=(20000, 6))]
    )
    S = np.cov(samples.T)
    G = to_gtsam_cov(C)
    d = np.sqrt(np.diag(G))
    # Sample error of a correlation with 20000 samples is below 0.01; a wrong block order would be off by O(1).
    assert np.max(np.abs((S - G) / np.outer(d, d))) < 0.03
    assert np.allclose(np.sqrt(np.diag(S)) / d, 1.0, atol=0.03)


# ---------------------------------------------------------------- the square loop
def test_loop_closure_removes_drift(square):
    truth, odom = square
    end_err = np.linalg.norm(odom[-1][:3, 3] - truth[-1][:3, 3])
    assert 0.10 < end_err < 0.20
    g = _chain(odom)
    # Without closures the graph is the odometry: the map frame is the odom frame.
    assert np.allclose(g.pose(N - 1), odom[-1], atol=1e-6)
    assert np.allclose(g.correction(N - 1, odom[-1]), np.eye(4), atol=1e-6)
    before = _rms(g, truth)
    assert before > 0.06
    assert g.update() == 0.0
    g.add_loop(N - 1, 0, se3.inv(truth[-1]) @ truth[0], LOOP_COV)
    assert g.n_loops == 1
    ms = g.update()
    assert ms > 0.0 and g.last_update_ms == ms
    after = _rms(g, truth)
    assert after < 0.2 * before
    assert after < 0.015
    # The correction maps odom to map and is no longer the identity at the end of the loop.
    C = g.correction(N - 1, odom[-1])
    assert np.allclose(C @ odom[-1], g.pose(N - 1))
    assert np.linalg.norm(C[:3, 3]) > 0.05
    # A new keyframe starts from the previous keyframe's corrected estimate.
    step = se3.exp(np.array([0.2, 0, 0, 0, 0, 0.01]))
    g.add_keyframe(N, odom[-1] @ step, REL_COV)
    assert np.allclose(g.pose(N), g.pose(N - 1) @ step, atol=1e-9)
    assert g.keys == list(range(N + 1))
    g.update()
    assert np.linalg.norm(g.pose(N)[:3, 3] - (truth[-1] @ step)[:3, 3]) < 0.015


def test_marginals_grow_along_chain_and_shrink_after_closure(square):
    truth, odom = square
    g = _chain(odom)
    # With the gauge prior tiny, keyframe 1's marginal is the first odometry covariance.
    assert np.allclose(g.marginal(1), REL_COV, rtol=1e-4, atol=1e-12)
    sig = np.array([_pos_sigma(g, k) for k in range(N)])
    assert sig[0] < 1e-5
    # Along the first side every step adds uncertainty.  (Later the lever arm of early heading errors shortens as
    # the square turns back, so the position sigma is not monotonic all the way round.)
    assert np.all(np.diff(sig[1:11]) > 0)
    assert sig[10] < sig[20] < sig[N - 1]
    assert sig[N - 1] / sig[10] > 1.8
    g.add_loop(N - 1, 0, se3.inv(truth[-1]) @ truth[0], LOOP_COV)
    g.update()
    after = _pos_sigma(g, N - 1)
    assert after / sig[N - 1] < 0.25
    # The far side of the loop is helped less than its ends.
    assert _pos_sigma(g, N // 2) / sig[N // 2] > after / sig[N - 1]


def test_robust_kernel_and_gate_reject_a_wrong_closure(square):
    truth, odom = square
    good = (N - 1, 0, se3.inv(truth[-1]) @ truth[0])
    # A false match between keyframes 29 and 9 (opposite sides), its translation off by 1 m.
    bad = (29, 9, se3.inv(truth[29]) @ truth[9] @ se3.make_T(np.eye(3), np.array([1.0, 0.0, 0.0])))

    def run(**kw):
        g = _chain(odom, **kw)
        checks = [g.check_loop(a, b, T, LOOP_COV) for a, b, T in (good, bad)]
        before = _rms(g, truth)
        for a, b, T in (good, bad):
            g.add_loop(a, b, T, LOOP_COV)
        g.update()
        return g, checks, before

    g, (cg, cb), before = run()
    assert isinstance(cg, LoopCheck)
    assert cg.mahalanobis2 < CHI2_6DOF_999
    assert cb.mahalanobis2 > 10 * CHI2_6DOF_999
    assert 0.9 < np.linalg.norm(cb.residual[:3]) < 1.1
    assert g.n_loops == 2
    robust = _rms(g, truth)
    assert robust < 0.025 and robust < 0.3 * before
    # Control: with the kernel effectively Gaussian the wrong closure wrecks the map.
    g_gauss, _, _ = run(loop_kernel_scale=1e6)
    assert _rms(g_gauss, truth) > 0.1


def test_check_loop_parts(square):
    truth, odom = square
    g = _chain(odom)
    T = se3.inv(truth[-1]) @ truth[0]
    c = g.check_loop(N - 1, 0, T, LOOP_COV)
    T_est = se3.inv(g.pose(N - 1)) @ g.pose(0)
    assert np.allclose(c.residual, se3.log(se3.inv(T_est) @ T))
    assert np.allclose(c.cov, g.relative_marginal(N - 1, 0) + LOOP_COV)
    assert np.isclose(c.mahalanobis2, c.residual @ np.linalg.solve(c.cov, c.residual))


# ---------------------------------------------------------------- relative marginal
def test_relative_marginal_matches_compounded_odometry():
    rng = np.random.default_rng(4)
    T0 = se3.exp(np.array([0.5, 0.2, -0.1, 0.1, -0.2, 0.7]))
    Z1 = se3.exp(np.array([0.3, 0.05, 0.02, 0.05, 0.1, 0.4]))
    Z2 = se3.exp(np.array([0.25, -0.1, 0.03, -0.08, 0.02, -0.5]))
    C1, C2 = _random_cov(rng, 0.02, 0.01), _random_cov(rng, 0.03, 0.015)
    g = PoseGraph()
    g.add_keyframe(0, T0, None)
    g.add_keyframe(1, T0 @ Z1, C1)
    g.add_keyframe(2, T0 @ Z1 @ Z2, C2)
    g.update()

    # Independent first-order compounding: numerical Jacobians of Log((Z1 Z2)^-1 Z1 Exp(n1) Z2 Exp(n2)).
    Z12_inv = se3.inv(Z1 @ Z2)

    def f(n1, n2):
        return se3.log(Z12_inv @ Z1 @ se3.exp(n1) @ Z2 @ se3.exp(n2))

    h = 1e-6
    J1 = np.column_stack([(f(h * e, np.zeros(6)) - f(-h * e, np.zeros(6))) / (2 * h) for e in np.eye(6)])
    J2 = np.column_stack([(f(np.zeros(6), h * e) - f(np.zeros(6), -h * e)) / (2 * h) for e in np.eye(6)])
    expected = J1 @ C1 @ J1.T + J2 @ C2 @ J2.T
    got = g.relative_marginal(0, 2)
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-10)
    # And it is not simply the sum (the transport matters for these motions).
    assert not np.allclose(C1 + C2, expected, rtol=0.05)
    # The reverse direction is the same uncertainty transported to the other end.
    A = se3.adjoint(Z1 @ Z2)
    assert np.allclose(g.relative_marginal(2, 0), A @ got @ A.T, rtol=1e-4, atol=1e-10)
    assert np.allclose(g.relative_marginal(1, 1), 0.0)


def test_input_checks():
    g = PoseGraph()
    g.add_keyframe(3, np.eye(4), None)
    with pytest.raises(ValueError):
        g.add_keyframe(3, np.eye(4), REL_COV)
    with pytest.raises(ValueError):
        g.add_keyframe(4, np.eye(4), None)
    with pytest.raises(KeyError):
        g.add_loop(3, 9, np.eye(4), LOOP_COV)
    with pytest.raises(KeyError):
        g.marginal(3)  # staged, not yet smoothed
    assert np.allclose(g.pose(3), np.eye(4))
    g.update()
    assert g.marginal(3).shape == (6, 6)
