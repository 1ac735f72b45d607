"""ji.laplace: exact for linear-Gaussian problems; the unconstrained mode/curvature otherwise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

import jinverse as ji

N, M, S, T = 4, 6, 0.3, 2.0


@pytest.fixture(scope="module")
def linear():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(M, N))
    prior_mean = rng.normal(size=N)
    problem = ji.InverseProblem(jnp.asarray(a), ji.priors.Gaussian(jnp.asarray(prior_mean), T),
                                ji.likelihoods.Gaussian(S))
    ys = (a @ rng.normal(size=(N, 3))).T + S * rng.normal(size=(3, M))
    cov = np.linalg.inv(a.T @ a / S**2 + np.eye(N) / T**2)
    means = (cov @ (a.T @ ys.T / S**2 + prior_mean[:, None] / T**2)).T
    return problem, ys, means, cov


def test_exact_for_linear_gaussian(linear):
    problem, ys, means, cov = linear
    approx = ji.laplace(problem, ys[0])
    np.testing.assert_allclose(approx.mean, means[0], rtol=0, atol=1e-8)
    np.testing.assert_allclose(approx.covariance, cov, rtol=0, atol=1e-8)
    assert bool(approx.ok)
    np.testing.assert_allclose(approx.mode, means[0], atol=1e-8)


def test_batched_each_exact(linear):
    problem, ys, means, cov = linear
    approx = ji.laplace(problem, ys)
    assert approx.mean.shape == (3, N) and approx.covariance.shape == (3, N, N)
    np.testing.assert_allclose(approx.mean, means, atol=1e-8)
    np.testing.assert_allclose(approx.covariance, np.broadcast_to(cov, (3, N, N)), atol=1e-8)
    assert np.all(np.asarray(approx.ok))


def test_at_a_given_point(linear):
    problem, ys, means, cov = linear
    # A quadratic log-density has the same Hessian everywhere; the mean is the given point.
    approx = ji.laplace(problem, ys[0], at=jnp.zeros(N))
    np.testing.assert_allclose(approx.mean, np.zeros(N))
    np.testing.assert_allclose(approx.covariance, cov, atol=1e-8)


def test_sample_moments(linear):
    problem, ys, means, cov = linear
    approx = ji.laplace(problem, ys)
    n = 20000
    draws = np.asarray(approx.sample(jax.random.key(0), n))
    assert draws.shape == (3, n, N)
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_array_less(np.abs(draws.mean(1) - means), np.broadcast_to(5 * sd / np.sqrt(n), means.shape))
    emp = np.cov(draws[1].T)
    # Entry (i, j) of a sample covariance has standard error sqrt((C_ii C_jj + C_ij^2) / n).
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    np.testing.assert_array_less(np.abs(emp - cov), 5 * se)


def test_constrained_prior_uses_unconstrained_mode():
    # θ > 0 with a LogNormal prior, y ~ N(θ, s): the approximation is of the density of u = log θ,
    # Jacobian included. Independent check: SciPy's minimiser and a finite-difference curvature.
    s, y = 0.5, 1.3
    problem = ji.InverseProblem(lambda t: t, ji.priors.LogNormal(jnp.zeros(1), 0.8),
                                ji.likelihoods.Gaussian(s))

    def neg(u):  # -log p(u | y) = -[log N(y; e^u, s) + log LN(e^u; 0, 0.8) + u]
        t = np.exp(u)
        return 0.5 * ((y - t) / s) ** 2 + 0.5 * (u / 0.8) ** 2

    u_star = optimize.minimize_scalar(neg, bracket=(-1, 1), tol=1e-12).x
    h = 1e-4
    curv = (neg(u_star + h) - 2 * neg(u_star) + neg(u_star - h)) / h**2
    approx = ji.laplace(problem, jnp.array([y]))
    np.testing.assert_allclose(approx.mean[0], u_star, atol=1e-6)
    np.testing.assert_allclose(approx.covariance[0, 0], 1 / curv, rtol=1e-5)
    assert bool(approx.ok)
    draws = np.asarray(approx.sample(jax.random.key(1), 100))
    assert draws.shape == (100, 1) and draws.min() > 0


def test_bad_inputs(linear):
    problem, ys, _, _ = linear
    with pytest.raises(ValueError, match="y: got shape"):
        ji.laplace(problem, jnp.ones(M + 1))
    with pytest.raises(ValueError, match="at"):
        ji.laplace(problem, ys[0], at=jnp.ones(N + 2))
    approx = ji.laplace(problem, ys[0])
    with pytest.raises(TypeError, match="key"):
        approx.sample(0, 10)
    with pytest.raises(ValueError, match="n: got 0"):
        approx.sample(jax.random.key(0), 0)


def test_streamed_in_blocks_equals_one_block():
    A = jax.random.normal(jax.random.key(5), (6, 3))
    problem = ji.InverseProblem(lambda t: jnp.tanh(A @ t), ji.priors.Gaussian(jnp.zeros(3), 1.0),
                                ji.likelihoods.Gaussian(0.2))
    Y = 0.5 * jax.random.normal(jax.random.key(6), (5, 6))
    whole = ji.laplace(problem, Y)
    blocks = ji.laplace(problem, Y, block_size=2)  # blocks of 2, the last one padded
    assert blocks.covariance.shape == (5, 3, 3) and bool(jnp.all(blocks.ok))
    # block_size streams only the Hessian step: the modes come from the same solve_map call (one
    # program), so the means are equal by construction; the covariances are the inverse 3x3
    # Hessians of blocks of another width, direct linear algebra (rounding ~ cond(H) eps only)
    assert np.allclose(blocks.mean, whole.mean, rtol=1e-10, atol=1e-12)
    assert np.allclose(blocks.covariance, whole.covariance, rtol=1e-8, atol=1e-12)
