"""Priors and bijectors against scipy.stats and autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st

import jinverse as ji
from jinverse import bijectors

P = ji.priors
X = np.array([0.3, 1.7, 0.9])


def test_gaussian_std_matches_scipy():
    p = P.Gaussian(jnp.array([0.0, 1.0, 2.0]), jnp.array([1.0, 0.5, 2.0]))
    ref = st.norm.logpdf(X, [0, 1, 2], [1, 0.5, 2]).sum()
    assert np.isclose(p.log_prob(X), ref, rtol=1e-12)
    assert np.isclose(P.Gaussian(0.0, 2.0).log_prob(0.7), st.norm.logpdf(0.7, 0, 2))


@pytest.mark.parametrize("form", ["cov", "precision"])
def test_gaussian_dense_matches_scipy(form, key):
    C = np.array([[2.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 0.5]])
    m = np.array([0.1, -0.2, 0.3])
    p = P.Gaussian(m, cov=C) if form == "cov" else P.Gaussian(m, precision=np.linalg.inv(C))
    assert np.isclose(p.log_prob(X), st.multivariate_normal(m, C).logpdf(X), rtol=1e-12)
    draws = np.asarray(p.sample(key, (40000,)))
    # sample covariance: entries have Monte-Carlo error ~ sqrt(2/N) * scale
    assert np.allclose(np.cov(draws.T), C, atol=0.05)
    assert np.allclose(draws.mean(0), m, atol=0.03)
    assert np.allclose(p.covariance(), C, atol=1e-12)


def test_other_priors_match_scipy():
    assert np.isclose(P.Laplace(0.5, 2.0).log_prob(X), st.laplace.logpdf(X, 0.5, 2.0).sum())
    assert np.isclose(P.Uniform(0.0, 2.0).log_prob(X), st.uniform.logpdf(X, 0, 2).sum())
    assert P.Uniform(0.0, 1.0).log_prob(X) == -np.inf
    assert np.isclose(P.LogNormal(0.2, 0.7).log_prob(X), st.lognorm.logpdf(X, 0.7, scale=np.exp(0.2)).sum())
    assert np.isclose(P.HalfNormal(1.5).log_prob(X), st.halfnorm.logpdf(X, scale=1.5).sum())
    assert P.HalfNormal(1.5).log_prob(-X) == -np.inf
    assert P.LogNormal(0.0, 1.0).log_prob(-X) == -np.inf


@pytest.mark.parametrize("prior", [P.Uniform(-1.0, 3.0), P.LogNormal(0.0, 1.0), P.HalfNormal(2.0),
                                   P.Gaussian(jnp.zeros(3), 1.0)])
def test_samples_in_support_and_bijector_round_trip(prior, key):
    draws = prior.sample(key, (1000,))
    assert bool(jnp.all(jnp.isfinite(jax.vmap(prior.log_prob)(draws))))
    u = jax.vmap(prior.to_unconstrained)(draws)
    assert np.allclose(jax.vmap(prior.from_unconstrained)(u), draws, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("b", [bijectors.Exp(), bijectors.Sigmoid(jnp.array(-1.0), jnp.array(3.0)),
                               bijectors.Identity()])
def test_log_det_jacobian_equals_autodiff(b):
    for u in (-2.3, 0.0, 0.4, 3.1):
        auto = jnp.log(jnp.abs(jax.grad(b.forward)(u)))
        assert np.isclose(b.forward_log_det_jacobian(jnp.array(u)), auto, rtol=1e-10, atol=1e-12)


def test_joint_prior_over_pytree(key):
    joint = P.Joint({"x": P.Gaussian(jnp.zeros(2), 1.0), "s": P.HalfNormal(1.0)})
    theta = {"x": jnp.array([0.1, -0.4]), "s": jnp.array(0.8)}
    ref = st.norm.logpdf([0.1, -0.4]).sum() + st.halfnorm.logpdf(0.8)
    assert np.isclose(joint.log_prob(theta), ref)
    d = joint.sample(key, (5,))
    assert d["x"].shape == (5, 2) and d["s"].shape == (5,) and bool(jnp.all(d["s"] > 0))
    u = joint.to_unconstrained(theta)
    assert np.isclose(u["s"], np.log(0.8))
    assert np.isclose(joint.log_det_jacobian(u), np.log(0.8))


@pytest.mark.parametrize("make, arg", [
    (lambda: P.Gaussian(0.0, -1.0), "std"),
    (lambda: P.Gaussian(0.0, 0.0), "std"),
    (lambda: P.Laplace(0.0, -2.0), "scale"),
    (lambda: P.LogNormal(0.0, 0.0), "scale"),
    (lambda: P.HalfNormal(-1.0), "scale"),
    (lambda: P.Uniform(1.0, 1.0), "low, high"),
    (lambda: P.Uniform(jnp.array([0.0, 2.0]), jnp.array([1.0, 1.0])), "low, high"),
    (lambda: P.Gaussian(jnp.zeros(2), cov=jnp.array([[1.0, 2.0], [2.0, 1.0]])), "cov"),
    (lambda: P.Gaussian(jnp.zeros(3), cov=jnp.eye(2)), "mean"),
    (lambda: P.Gaussian(jnp.array([0.0, jnp.nan]), 1.0), "mean"),
])
def test_bad_prior_arguments(make, arg):
    with pytest.raises(ValueError, match=arg):
        make()


def test_bad_prior_types():
    with pytest.raises(TypeError, match="std"):
        P.Gaussian(0.0, "wide")
    with pytest.raises(ValueError, match="exactly one"):
        P.Gaussian(0.0)
