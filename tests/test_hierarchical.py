"""Hierarchical Bayes: the joint log-posterior against its formula; NUTS (ji.sample) against an
exact conjugate Gibbs sampler."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jinverse as ji
from jinverse.hierarchical import hierarchical_problem

N = 8
A_D, B_D, A_L, B_L = 1.0, 1e-2, 1.0, 1e-4


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, N)
    A = np.exp(-(((t[:, None] - t[None, :]) / 0.2) ** 2)) / N * 4
    y = A @ np.sin(2 * np.pi * t) + 0.05 * rng.normal(size=N)
    g = ji.priors.GMRF((N,), order=1, boundary="zero")
    problem = hierarchical_problem(A, g, prior_precision=(A_D, B_D), noise_precision=(A_L, B_L))
    return problem, A, y, g


def test_log_posterior_matches_formula(setup):
    problem, A, y, g = setup
    x = np.linspace(-1, 1, N)
    d, lam = 2.5, 300.0
    theta = {"x": jnp.asarray(x), "prior_precision": jnp.asarray(d), "noise_precision": jnp.asarray(lam)}
    Q = d * np.asarray(g.precision_matrix())
    ref = (stats.multivariate_normal(A @ x, np.eye(N) / lam).logpdf(y)
           + stats.multivariate_normal(np.zeros(N), np.linalg.inv(Q)).logpdf(x)
           + stats.gamma(A_D, scale=1 / B_D).logpdf(d) + stats.gamma(A_L, scale=1 / B_L).logpdf(lam))
    np.testing.assert_allclose(problem.log_posterior(theta, jnp.asarray(y)), ref, rtol=1e-10)
    # the unconstrained density adds log|dθ/du| = log δ + log λ
    u = problem.to_unconstrained(theta)
    np.testing.assert_allclose(problem.log_density(u, jnp.asarray(y)), ref + np.log(d) + np.log(lam), rtol=1e-10)


def test_prior_draws_follow_the_hierarchy(setup):
    problem, *_ = setup
    draws = jax.jit(lambda k: problem.sample_prior(k, (4000,)))(jax.random.key(0))
    d = np.asarray(draws["prior_precision"])
    assert stats.kstest(d, stats.gamma(A_D, scale=1 / B_D).cdf).pvalue > 1e-3
    # x | δ ~ N(0, (δ DᵀD)⁻¹) with DᵀD of unit determinant: δ ‖D x‖² ~ χ²_N
    D = np.asarray(ji.linear.difference_matrix(N, 1, "zero"))
    q = d * np.sum((np.asarray(draws["x"]) @ D.T) ** 2, axis=1)
    assert stats.kstest(q, stats.chi2(N).cdf).pvalue > 1e-3


def test_rejects_unsupported_prior():
    with pytest.raises(TypeError, match="GMRF"):
        hierarchical_problem(np.eye(3), ji.priors.Laplace(jnp.zeros(3), 1.0))
    with pytest.raises(TypeError, match="Gamma"):
        hierarchical_problem(np.eye(3), ji.priors.GMRF(3), prior_precision=1.0)


def _gibbs(A, y, Q, num, rng):
    """Conjugate Gibbs: x | δ, λ Gaussian; δ | x and λ | x, y Gamma."""
    n = A.shape[1]
    d, lam, out = 1.0, 100.0, []
    for it in range(num + 1000):
        H = lam * A.T @ A + d * Q
        C = np.linalg.cholesky(H)
        x = np.linalg.solve(H, lam * A.T @ y) + np.linalg.solve(C.T, rng.normal(size=n))
        d = rng.gamma(A_D + n / 2, 1 / (B_D + 0.5 * x @ Q @ x))
        lam = rng.gamma(A_L + len(y) / 2, 1 / (B_L + 0.5 * np.sum((y - A @ x) ** 2)))
        if it >= 1000:
            out.append((np.log(d), np.log(lam)))
    return np.array(out)


@pytest.mark.slow
def test_nuts_matches_conjugate_gibbs(setup):
    problem, A, y, g = setup
    post = ji.sample(problem, jnp.asarray(y), key=jax.random.key(0), num_chains=4, num_warmup=500,
                     num_samples=1000)
    ess = post.ess()
    gibbs = _gibbs(A, y, np.asarray(g.precision_matrix()), 40000, np.random.default_rng(1))
    # Gibbs chain: its effective size from the lag-1 autocorrelation (AR(1) approximation)
    for j, name in enumerate(["prior_precision", "noise_precision"]):
        logs = np.log(np.asarray(post.samples[name])).ravel()
        g_j = gibbs[:, j]
        rho = np.corrcoef(g_j[:-1], g_j[1:])[0, 1]
        ess_g = len(g_j) * (1 - rho) / (1 + rho)
        se = np.sqrt(logs.var() / float(ess[name]) + g_j.var() / ess_g)
        assert abs(logs.mean() - g_j.mean()) < 5 * se
        assert abs(logs.std() / g_j.std() - 1) < 0.1


def test_gaussian_base_prior_scales_its_variance():
    A = np.eye(3)
    base = ji.priors.Gaussian(jnp.zeros(3), jnp.array([1.0, 2.0, 0.5]))
    problem = hierarchical_problem(A, base, prior_precision=(2.0, 1.0), noise_precision=(2.0, 1.0))
    x, d, lam, y = np.array([0.3, -1.0, 0.2]), 4.0, 9.0, np.array([0.1, 0.2, 0.3])
    theta = {"x": jnp.asarray(x), "prior_precision": jnp.asarray(d), "noise_precision": jnp.asarray(lam)}
    ref = (stats.norm(x, 1 / 3).logpdf(y).sum() + stats.norm(0, np.array([1.0, 2.0, 0.5]) / 2).logpdf(x).sum()
           + stats.gamma(2.0).logpdf(d) + stats.gamma(2.0).logpdf(lam))
    np.testing.assert_allclose(problem.log_posterior(theta, jnp.asarray(y)), ref, rtol=1e-12)
