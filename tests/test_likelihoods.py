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


# -- issue 14: more likelihoods, against scipy.stats

def test_lognormal_likelihood():
    y, mu = np.array([0.2, 1.5, 7.0]), np.array([-1.0, 0.3, 2.0])
    ref = st.lognorm.logpdf(y, 0.6, scale=np.exp(mu)).sum()
    assert np.isclose(L.LogNormal(0.6).log_prob(y, mu), ref, rtol=1e-12)
    s = np.array([0.3, 0.6, 1.2])
    assert np.isclose(L.LogNormal(s).log_prob(y, mu), st.lognorm.logpdf(y, s, scale=np.exp(mu)).sum(), rtol=1e-12)
    with pytest.raises(ValueError, match="positive"):
        L.LogNormal(0.6).check_data(np.array([1.0, 0.0, 2.0]), jax.ShapeDtypeStruct((3,), jnp.float64))


def test_lognormal_likelihood_draws(key):
    mu = jnp.full((4000,), 0.4)
    y = np.asarray(L.LogNormal(0.7).sample(key, mu))
    assert st.kstest(y, st.lognorm(0.7, scale=np.exp(0.4)).cdf).pvalue > 1e-3  # level 1e-3


def test_negative_binomial():
    y = np.array([0.0, 3.0, 12.0, 250.0])
    mu, phi = np.array([0.5, 4.0, 10.0, 300.0]), 2.5
    ref = st.nbinom.logpmf(y, phi, phi / (phi + mu)).sum()
    assert np.isclose(L.NegativeBinomial(phi).log_prob(y, mu), ref, rtol=1e-12)
    assert np.isclose(L.NegativeBinomial(phi, log_mean=True).log_prob(y, np.log(mu)), ref, rtol=1e-12)
    phis = np.array([0.3, 1.0, 8.0, 50.0])
    ref = st.nbinom.logpmf(y, phis, phis / (phis + mu)).sum()
    assert np.isclose(L.NegativeBinomial(phis).log_prob(y, mu), ref, rtol=1e-12)


def test_negative_binomial_draws(key):
    # gamma-Poisson draws: mean μ and variance μ + μ²/φ within 5 Monte-Carlo standard errors
    mu, phi, n = 6.0, 2.0, 20000
    y = np.asarray(L.NegativeBinomial(phi).sample(key, jnp.full((n,), mu)))
    var = mu + mu**2 / phi
    assert np.all(y == np.round(y)) and y.min() >= 0
    assert abs(y.mean() - mu) < 5 * np.sqrt(var / n)
    ref = st.nbinom(phi, phi / (phi + mu))
    var_se = np.sqrt((ref.moment(4) - 4 * mu * ref.moment(3) + 6 * mu**2 * ref.moment(2) - 3 * mu**4 - var**2) / n)
    assert abs(y.var() - var) < 5 * var_se


def test_binomial(key):
    n, y, eta = np.array([10.0, 1.0, 40.0]), np.array([3.0, 1.0, 40.0]), np.array([-0.5, 2.0, 3.0])
    p = 1 / (1 + np.exp(-eta))
    assert np.isclose(L.Binomial(n).log_prob(y, eta), st.binom.logpmf(y, n, p).sum(), rtol=1e-12)
    assert np.isclose(L.Binomial(1.0).log_prob(y[1:2], eta[1:2]), L.Bernoulli().log_prob(y[1:2], eta[1:2]))
    draws = np.asarray(L.Binomial(20.0).sample(key, jnp.full((20000,), 0.4)))
    pp = 1 / (1 + np.exp(-0.4))
    assert draws.max() <= 20 and abs(draws.mean() - 20 * pp) < 5 * np.sqrt(20 * pp * (1 - pp) / 20000)
    with pytest.raises(ValueError, match="num_trials"):
        L.Binomial(n).check_data(np.array([3.0, 2.0, 5.0]), jax.ShapeDtypeStruct((3,), jnp.float64))
    with pytest.raises(ValueError, match="num_trials"):
        L.Binomial(2.5)


def test_poisson_log_rate(key):
    k, eta = np.array([0.0, 2.0, 12.0, 1000.0]), np.array([-40.0, 1.0, 2.5, 700.0])
    ref = st.poisson.logpmf(k, np.exp(eta)).sum()
    lik = L.Poisson(log_rate=True)
    assert np.isclose(lik.log_prob(k, eta), ref, rtol=1e-12)
    g = jax.grad(lambda e: lik.log_prob(k, e))(jnp.asarray(eta))
    assert np.allclose(g, k - np.exp(eta), rtol=1e-12)
    # log-rate 710: the rate e^710 is beyond float64 and so is |log p|: -inf, where rates gave NaN
    assert float(lik.log_prob(jnp.array([3.0]), jnp.array([710.0]))) == -np.inf
    assert np.isnan(L.Poisson().log_prob(jnp.array([3.0]), jnp.exp(jnp.array([710.0]))))
    draws = np.asarray(lik.sample(key, jnp.full((20000,), np.log(3.0))))
    assert abs(draws.mean() - 3.0) < 5 * np.sqrt(3.0 / 20000)


# -- likelihood parameters that are unknowns (functions of θ), joined to the forward model by `bind`

def test_bind_unknown_scales_match_scipy():
    X = np.array([[1.0, 0.5], [1.0, -1.0], [1.0, 2.0], [1.0, 0.0]])
    y = np.array([0.7, -0.4, 2.2, 0.1])
    group = np.array([0, 1, 1, 0])
    theta = {"beta": jnp.array([0.2, 0.9]), "sigma": jnp.array([0.5, 1.7]), "nu": jnp.array(4.5)}
    fwd = lambda t: jnp.asarray(X) @ t["beta"]  # noqa: E731
    mean = X @ np.asarray(theta["beta"])
    sig = np.asarray(theta["sigma"])[group]

    forward, lik = L.bind(fwd, L.Gaussian(std=lambda t: t["sigma"][group]))  # one scale per group
    assert forward(theta).shape == (2, 4)
    assert np.isclose(lik.log_prob(y, forward(theta)), st.norm.logpdf(y, mean, sig).sum(), rtol=1e-12)
    assert lik.event_shape(jax.eval_shape(forward, theta)) == (4,)

    forward, lik = L.bind(fwd, L.StudentT(df=lambda t: t["nu"], scale=lambda t: t["sigma"][0]))
    assert forward(theta).shape == (3, 4)
    ref = st.t.logpdf(y, 4.5, mean, float(theta["sigma"][0])).sum()
    assert np.isclose(lik.log_prob(y, forward(theta)), ref, rtol=1e-12)

    forward, lik = L.bind(fwd, L.Gaussian(0.3))  # nothing to bind: unchanged
    assert forward is fwd and isinstance(lik, L.Gaussian)


def test_unbound_theta_parameter_is_refused():
    lik = L.Gaussian(std=lambda t: t["sigma"])
    problem = ji.InverseProblem(lambda t: t["x"], ji.priors.Joint({"x": ji.priors.Gaussian(jnp.zeros(3), 1.0),
                                                                   "sigma": ji.priors.HalfNormal(1.0)}), lik)
    with pytest.raises(TypeError, match="bind"):
        problem.check_y(np.zeros(3))
    with pytest.raises(TypeError, match="bind"):
        lik.log_prob(jnp.zeros(3), jnp.zeros(3))
    forward, lik = L.bind(lambda t: t["x"], L.Gaussian(std=lambda t: t["sigma"][:2]))
    with pytest.raises(ValueError, match="std"):
        forward({"x": jnp.zeros(3), "sigma": jnp.ones(2)})
