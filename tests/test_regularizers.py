"""Regularising priors: densities against dense/SciPy formulas, draws against their covariance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jinverse as ji
from jinverse.regularizers import GMRF, Gamma, SparseL1, TotalVariation, haar_matrix

GMRF_CASES = [((12,), o, b) for o in (1, 2) for b in ("zero", "periodic", "neumann")] + [
    ((5, 6), 1, "zero"), ((5, 6), 1, "periodic"), ((5, 6), 2, "neumann"), ((5, 6), 2, "zero")]


@pytest.mark.parametrize("shape,order,boundary", GMRF_CASES)
def test_gmrf_density_matches_dense_precision(shape, order, boundary):
    g = GMRF(shape, order, boundary, precision=2.5, mean=0.3)
    # the dense precision from the explicit difference matrices (independent of the eigen path)
    mats = [np.asarray(ji.linear.difference_matrix(n, order, boundary)) for n in shape]
    if len(shape) == 1:
        D = mats[0]
    elif order == 1:
        D = np.vstack([np.kron(mats[0], np.eye(shape[1])), np.kron(np.eye(shape[0]), mats[1])])
    else:
        D = np.kron(mats[0], np.eye(shape[1])) + np.kron(np.eye(shape[0]), mats[1])
    Q = 2.5 * D.T @ D
    np.testing.assert_allclose(g.precision_matrix(), Q, atol=1e-10)
    ev = np.linalg.eigvalsh(Q)
    nz = ev > 1e-9 * ev.max()
    assert nz.sum() == (Q.shape[0] if boundary == "zero" else Q.shape[0] - 1)
    x = np.random.default_rng(0).normal(size=shape)
    r = (x - 0.3).ravel()
    ref = -0.5 * r @ Q @ r + 0.5 * np.sum(np.log(ev[nz])) - 0.5 * nz.sum() * np.log(2 * np.pi)
    np.testing.assert_allclose(g.log_prob(jnp.asarray(x)), ref, rtol=1e-10)
    if boundary == "zero":  # proper: the normalised Gaussian density
        np.testing.assert_allclose(ref, stats.multivariate_normal(np.full(r.size, 0.3), np.linalg.inv(Q))
                                   .logpdf(x.ravel()), rtol=1e-8)


@pytest.mark.parametrize("boundary", ["zero", "neumann"])
def test_gmrf_draws_have_the_prior_covariance(boundary):
    g = GMRF((4, 4), 1, boundary, precision=3.0)
    N = 20000
    draws = np.asarray(jax.jit(lambda k: g.sample(k, (N,)))(jax.random.key(1))).reshape(N, -1)
    cov = np.linalg.pinv(np.asarray(g.precision_matrix()))  # improper: the proper part only
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / N)
    assert np.all(np.abs(np.cov(draws.T) - cov) <= 5 * se)
    assert np.all(np.abs(draws.mean(0)) <= 5 * np.sqrt(np.diag(cov) / N))


def test_total_variation_values():
    x = np.random.default_rng(0).normal(size=(6, 7))
    gx = np.diff(x, axis=0, append=x[-1:])
    gy = np.diff(x, axis=1, append=x[:, -1:])
    tv = TotalVariation((6, 7), weight=2.0, smoothing=0.1)
    np.testing.assert_allclose(tv.tv(x), np.sum(np.sqrt(gx**2 + gy**2)), rtol=1e-12)
    np.testing.assert_allclose(tv.log_prob(x), -2.0 * np.sum(np.sqrt(gx**2 + gy**2 + 0.01)), rtol=1e-12)
    x1 = np.random.default_rng(1).normal(size=9)
    np.testing.assert_allclose(TotalVariation(9).tv(x1), np.sum(np.abs(np.diff(x1))), rtol=1e-12)
    with pytest.raises(ValueError, match="improper"):
        tv.sample(jax.random.key(0))


def test_haar_is_orthonormal_and_sparsifies_steps():
    H = np.asarray(haar_matrix(16))
    np.testing.assert_allclose(H @ H.T, np.eye(16), atol=1e-12)
    step = np.r_[np.zeros(8), np.ones(8)]
    assert np.count_nonzero(np.abs(H @ step) > 1e-12) == 2  # the mean and the coarsest wavelet
    with pytest.raises(ValueError, match="power of two"):
        haar_matrix(12)


@pytest.mark.parametrize("basis,shape", [("identity", (8,)), ("haar", (8,)), ("haar", (4, 8)),
                                         ("difference", (8,))])
def test_sparse_l1_density_and_draws(basis, shape):
    p = SparseL1(shape, scale=0.5, basis=basis, loc=0.2)
    x = np.random.default_rng(2).normal(size=shape)
    c = np.asarray(p.coefficients(jnp.asarray(x - 0.2)))
    np.testing.assert_allclose(p.log_prob(x), np.sum(stats.laplace(0, 0.5).logpdf(c)), rtol=1e-10)
    draws = jax.jit(lambda k: p.sample(k, (3000,)))(jax.random.key(0))
    coef = np.asarray(jax.vmap(p.coefficients)(draws - 0.2)).reshape(3000, -1)
    # the coefficients are iid Laplace(0, 0.5): Kolmogorov-Smirnov on all of them pooled
    assert stats.kstest(coef[:, :4].ravel(), stats.laplace(0, 0.5).cdf).pvalue > 1e-3


def test_gamma_matches_scipy():
    g = Gamma(3.0, 2.0)
    for t in (0.1, 1.0, 4.0):
        np.testing.assert_allclose(g.log_prob(t), stats.gamma(3.0, scale=0.5).logpdf(t), rtol=1e-12)
    assert g.log_prob(-1.0) == -np.inf
    draws = np.asarray(g.sample(jax.random.key(0), (20000,)))
    assert abs(draws.mean() - 1.5) < 5 * np.sqrt(0.75 / 20000)
    u = g.to_unconstrained(jnp.asarray(2.0))
    np.testing.assert_allclose(g.from_unconstrained(u), 2.0)


def test_priors_reexported_and_checked():
    assert ji.priors.GMRF is GMRF and ji.priors.TotalVariation is TotalVariation
    with pytest.raises(ValueError, match="boundary"):
        GMRF(8, boundary="free")
    with pytest.raises(ValueError, match="precision"):
        GMRF(8, precision=-1.0)
    with pytest.raises(ValueError, match="shape"):
        GMRF((2, 2, 2))
