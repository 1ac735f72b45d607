"""The one curvature against dense autodiff Hessians and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np

import jinverse as ji
from jinverse import curvature


def _nonlinear(key, n=5, m=7):
    A = jax.random.normal(key, (m, n)) / np.sqrt(n)
    problem = ji.InverseProblem(lambda t: jnp.tanh(A @ t) + 0.1 * (A @ t) ** 2,
                                ji.priors.Gaussian(jnp.zeros(n), 0.7), ji.likelihoods.Gaussian(0.2))
    y = problem.simulate(jax.random.key(1), 0.5 * jnp.ones(n))
    return problem, y, A


def test_hvp_equals_dense_hessian(key):
    problem, y, _ = _nonlinear(key)
    u = jax.random.normal(jax.random.key(2), (5,))
    h = jax.hessian(curvature.objective(problem, y))(u)
    hv = jax.vmap(lambda v: curvature.hvp(problem, y, u, v))(jnp.eye(5))
    np.testing.assert_allclose(hv, h, rtol=1e-10, atol=1e-10)  # same derivatives, two AD orders


def test_ggn_is_jt_gamma_inv_j_plus_prior(key):
    problem, y, A = _nonlinear(key)
    u = jax.random.normal(jax.random.key(2), (5,))
    J = jax.jacfwd(problem.forward)(u)
    expected = J.T @ J / 0.2**2 + jnp.eye(5) / 0.7**2
    got = curvature.dense(lambda v: curvature.ggn_vp(problem, y, u, v), 5, u.dtype)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_ggn_exact_for_linear_gaussian(key):
    A = jax.random.normal(key, (6, 4))
    problem = ji.InverseProblem(A, ji.priors.Gaussian(jnp.zeros(4), 2.0), ji.likelihoods.Gaussian(0.3))
    y = jnp.ones(6)
    u = jnp.arange(4.0)
    h = jax.hessian(curvature.objective(problem, y))(u)
    got = curvature.dense(lambda v: curvature.ggn_vp(problem, y, u, v), 4, u.dtype)
    np.testing.assert_allclose(got, h, rtol=1e-10, atol=1e-10)
    assert curvature.has_ggn(problem)


def test_ggn_with_bounded_prior_includes_jacobian_term():
    # θ = exp(u) (LogNormal prior): the prior part is the exact Hessian in u, with the
    # log-Jacobian when jacobian=True; the likelihood part is J_u^T J_u / σ².
    problem = ji.InverseProblem(lambda t: 2.0 * t, ji.priors.LogNormal(jnp.zeros(2), 1.0),
                                ji.likelihoods.Gaussian(0.5))
    y = jnp.array([1.0, 3.0])
    u = jnp.array([0.1, -0.3])
    for jac in (True, False):
        prior_h = jax.hessian(lambda x: -(problem.prior.log_prob(jnp.exp(x))
                                          + (jnp.sum(x) if jac else 0.0)))(u)
        J = jnp.diag(2.0 * jnp.exp(u))
        got = curvature.dense(lambda v, jac=jac: curvature.ggn_vp(problem, y, u, v, jacobian=jac),
                              2, u.dtype)
        np.testing.assert_allclose(got, J.T @ J / 0.25 + prior_h, rtol=1e-10, atol=1e-12)
