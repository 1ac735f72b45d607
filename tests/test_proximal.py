"""FISTA and proximal operators: checked against SciPy solves and optimality conditions."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

import jinverse as ji
from jinverse import proximal
from jinverse.linear import tikhonov
from jinverse.regularizers import SparseL1, TotalVariation


def test_prox_tv_1d_matches_scipy_dual():
    rng = np.random.default_rng(1)
    n, t = 40, 0.7
    v = np.cumsum(rng.normal(size=n)) * 0.3
    x = np.asarray(TotalVariation((n,), prox_iters=3000).prox(jnp.asarray(v), t))
    D = np.diff(np.eye(n), axis=0)
    res = minimize(lambda p: (0.5 * np.sum((v - D.T @ p) ** 2), -(D @ (v - D.T @ p))), np.zeros(n - 1),
                   jac=True, method="L-BFGS-B", bounds=[(-t, t)] * (n - 1),
                   options=dict(ftol=1e-15, gtol=1e-12, maxiter=20000))
    np.testing.assert_allclose(x, v - D.T @ res.x, atol=1e-6)


def test_prox_tv_2d_isotropic_is_optimal():
    rng = np.random.default_rng(2)
    v = rng.normal(size=(8, 8))
    t = 0.3
    tv = TotalVariation((8, 8), prox_iters=2000)
    x = np.asarray(tv.prox(jnp.asarray(v), t))

    def obj(z):
        z = z.reshape(8, 8)
        gx, gy = np.diff(z, axis=0, append=z[-1:]), np.diff(z, axis=1, append=z[:, -1:])
        return 0.5 * np.sum((z - v) ** 2) + t * np.sum(np.sqrt(gx**2 + gy**2))

    # Certificate by weak duality: for any p with |p_pixel| <= t the dual value
    # ½‖v‖² - ½‖v - Dᵀp‖² is a lower bound of the primal minimum. SciPy's SLSQP finds such a p.
    Dn = np.diff(np.eye(8), axis=0, append=np.zeros((1, 8)))  # forward differences, zero last row
    Dn[-1] = 0.0
    D = np.vstack([np.kron(Dn, np.eye(8)), np.kron(np.eye(8), Dn)])  # rows: x-gradients, y-gradients
    np.testing.assert_allclose(D @ v.ravel(), np.concatenate([np.diff(v, axis=0, append=v[-1:]).ravel(),
                                                              np.diff(v, axis=1, append=v[:, -1:]).ravel()]))
    vv = v.ravel()

    def neg_dual(p):
        r = vv - D.T @ p
        return 0.5 * r @ r - 0.5 * vv @ vv, -(D @ r)

    cons = {"type": "ineq", "fun": lambda p: t**2 - p[:64] ** 2 - p[64:] ** 2,
            "jac": lambda p: np.hstack([np.diag(-2 * p[:64]), np.diag(-2 * p[64:])])}
    res = minimize(neg_dual, np.zeros(128), jac=True, method="SLSQP", constraints=[cons],
                   options=dict(maxiter=2000, ftol=1e-14))
    p = res.x.copy()
    norm = np.sqrt(p[:64] ** 2 + p[64:] ** 2)
    p *= np.concatenate([t / np.maximum(norm, t)] * 2)  # exactly feasible
    lower = -neg_dual(p)[0]
    assert lower <= obj(x) <= lower + 1e-6


def test_prox_l1_is_soft_thresholding():
    v = jnp.linspace(-2, 2, 8)
    np.testing.assert_allclose(SparseL1(8, scale=2.0).prox(v, 1.0),
                               np.sign(v) * np.maximum(np.abs(v) - 0.5, 0), atol=1e-14)
    H = np.asarray(ji.regularizers.haar_matrix(8))
    c = H @ np.asarray(v)
    np.testing.assert_allclose(SparseL1(8, scale=1.0, basis="haar").prox(v, 0.3),
                               H.T @ (np.sign(c) * np.maximum(np.abs(c) - 0.3, 0)), atol=1e-14)


@pytest.fixture(scope="module")
def lasso():
    rng = np.random.default_rng(3)
    m, n, sigma, scale = 30, 20, 0.1, 0.05
    A = rng.normal(size=(m, n)) / np.sqrt(m)
    x = np.zeros(n)
    x[[2, 7, 11]] = [1.0, -2.0, 0.5]
    Y = x @ A.T + sigma * rng.normal(size=(3, m))
    problem = ji.InverseProblem(jnp.asarray(A), SparseL1(n, scale=scale), ji.likelihoods.Gaussian(sigma))
    return problem, A, Y, sigma, scale


def test_fista_lasso_satisfies_kkt_and_batches(lasso):
    problem, A, Y, sigma, scale = lasso
    out = proximal.map_estimate(problem, Y, tol=1e-12, max_steps=20000)
    assert out.x.shape == (3, 20) and bool(jnp.all(out.converged))
    for i in range(3):
        x = np.asarray(out.x[i])
        g = A.T @ (A @ x - Y[i]) / sigma**2  # gradient of the smooth part
        on = np.abs(x) > 1e-9
        np.testing.assert_allclose(g[on], -np.sign(x[on]) / scale, rtol=1e-5)
        assert np.all(np.abs(g[~on]) <= 1 / scale * (1 + 1e-6))
    one = proximal.map_estimate(problem, Y[1], tol=1e-12, max_steps=20000)
    np.testing.assert_allclose(one.x, out.x[1], atol=1e-8)
    blocks = proximal.map_estimate(problem, Y, tol=1e-12, max_steps=20000, block_size=2)  # 2 + padded 1
    np.testing.assert_allclose(blocks.x, out.x, atol=1e-8)


def test_map_estimate_needs_prox():
    problem = ji.InverseProblem(jnp.eye(3), ji.priors.Gaussian(jnp.zeros(3), 1.0), ji.likelihoods.Gaussian(0.1))
    with pytest.raises(TypeError, match="prox"):
        proximal.map_estimate(problem, jnp.zeros(3))


def test_tv_beats_tikhonov_on_piecewise_constant():
    """Deblurring a piecewise-constant signal: TV (FISTA) vs Tikhonov, each at its best parameter."""
    n, sigma = 96, 0.02
    t = np.arange(n)
    A = np.exp(-0.5 * ((t[:, None] - t[None, :]) / 2.5) ** 2)
    A /= A.sum(1, keepdims=True)
    x = np.zeros(n)
    x[15:40], x[48:56], x[70:88] = 1.0, -0.5, 0.7
    Y = x @ A.T + sigma * np.random.default_rng(0).normal(size=(2, n))
    lams = np.logspace(-3, 0, 40)
    tik = tikhonov(A, np.broadcast_to(Y, (40, 2, n)), lam=np.broadcast_to(lams[:, None], (40, 2)))
    err_tik = np.linalg.norm(tik.x - x, axis=-1).min(0)
    weights = np.array([10.0, 25.0, 60.0])
    Yw = np.broadcast_to(Y, (3, 2, n))

    def solve(w, y):
        prob = ji.InverseProblem(jnp.asarray(A), TotalVariation((n,), weight=w, smoothing=0.0),
                                 ji.likelihoods.Gaussian(sigma))
        return proximal.map_estimate(prob, y, max_steps=3000, tol=1e-7).x

    err_tv = np.min([np.linalg.norm(solve(w, Yw[i]) - x, axis=-1) for i, w in enumerate(weights)], axis=0)
    ratio = err_tv / err_tik
    print("TV / Tikhonov error ratio:", ratio)
    assert np.all(ratio < 0.5)
