"""Likelihoods against scipy.stats."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st

import jinverse as ji

L = ji.likelihoods
F = np.array([0.3, -1.2, 2.0])
Y = np.array([0.5, -1.0, 1.1])


def test_gaussian():
    assert np.isclose(L.Gaussian(0.5).log_prob(Y, F), st.norm.logpdf(Y, F, 0.5).sum(), rtol=1e-12)
    s = np.array([0.5, 1.0, 2.0])
    assert np.isclose(L.Gaussian(s).log_prob(Y, F), st.norm.logpdf(Y, F, s).sum(), rtol=1e-12)
    C = np.array([[1.0, 0.2, 0.0], [0.2, 0.5, 0.1], [0.0, 0.1, 2.0]])
    assert np.isclose(L.Gaussian(cov=C).log_prob(Y, F), st.multivariate_normal(F, C).logpdf(Y), rtol=1e-12)


def test_student_t():
    assert np.isclose(L.StudentT(3.0, 0.7).log_prob(Y, F), st.t.logpdf(Y, 3.0, F, 0.7).sum(), rtol=1e-12)


def test_poisson():
    rate, k = np.array([0.5, 3.0, 10.0]), np.array([0.0, 2.0, 12.0])
    assert np.isclose(L.Poisson().log_prob(k, rate), st.poisson.logpmf(k, rate).sum(), rtol=1e-12)


def test_bernoulli_and_categorical():
    logits, y = np.array([0.3, -2.0]), np.array([1.0, 0.0])
    p = 1 / (1 + np.exp(-logits))
    assert np.isclose(L.Bernoulli().log_prob(y, logits), st.bernoulli.logpmf(y, p).sum(), rtol=1e-12)
    z = np.array([1.0, 2.0, -0.5])
    assert np.isclose(L.Categorical().log_prob(1, z), z[1] - np.log(np.exp(z).sum()), rtol=1e-12)
    assert L.Categorical().event_shape(jax.ShapeDtypeStruct((3,), jnp.float64)) == ()


def test_simulate_shapes(key):
    for lik, pred in [(L.Gaussian(0.1), F), (L.Poisson(), np.abs(F)), (L.Bernoulli(), F),
                      (L.StudentT(4.0, 1.0), F)]:
        assert lik.sample(key, jnp.asarray(pred)).shape == F.shape
    assert L.Categorical().sample(key, jnp.asarray(F)).shape == ()


@pytest.mark.parametrize("make, arg, exc", [
    (lambda: L.Gaussian(-0.1), "std", ValueError),
    (lambda: L.Gaussian(jnp.array([0.1, 0.0])), "std", ValueError),
    (lambda: L.StudentT(-1.0, 1.0), "df", ValueError),
    (lambda: L.StudentT(3.0, 0.0), "scale", ValueError),
    (lambda: L.Gaussian(cov=-jnp.eye(2)), "cov", ValueError),
    (lambda: L.Gaussian(), "exactly one", ValueError),
])
def test_bad_likelihood_arguments(make, arg, exc):
    with pytest.raises(exc, match=arg):
        make()
