"""Property tests (hypothesis) for priors, likelihoods and bijectors.

Checked against independent references: SciPy's densities, autodiff Jacobians
(``log|det jax.jacfwd(forward)(u)|``) and 1-D quadrature of the unconstrained density.
Examples are derandomised and few per property, so the file is quick and reproducible.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import integrate, special, stats

import jinverse as ji
from jinverse import bijectors as bij

P, L = ji.priors, ji.likelihoods
N = 3
FAST = settings(max_examples=20, deadline=None, derandomize=True, database=None)
# Properties over PRNG seeds or with autodiff of a pytree map cost more per example.
FEW = settings(max_examples=6, deadline=None, derandomize=True, database=None)


def floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def vec(lo, hi, n=N):
    return hnp.arrays(np.float64, (n,), elements=floats(lo, hi))


positive = vec(0.1, 5.0)


# -- priors: finite inside the support, equal to SciPy ------------------------------------
@FAST
@given(mean=vec(-5, 5), std=positive, theta=vec(-20, 20))
def test_gaussian_prior_matches_scipy(mean, std, theta):
    lp = float(P.Gaussian(mean, std).log_prob(jnp.asarray(theta)))
    assert math.isfinite(lp)
    assert lp == pytest.approx(stats.norm.logpdf(theta, mean, std).sum(), rel=1e-10, abs=1e-10)


@FAST
@given(mean=vec(-5, 5), factor=hnp.arrays(np.float64, (N, N), elements=floats(-2, 2)), theta=vec(-10, 10))
def test_gaussian_prior_cov_and_precision_match_scipy(mean, factor, theta):
    cov = factor @ factor.T + 0.5 * np.eye(N)
    ref = stats.multivariate_normal.logpdf(theta, mean, cov)
    assert float(P.Gaussian(mean, cov=cov).log_prob(jnp.asarray(theta))) == pytest.approx(ref, rel=1e-9, abs=1e-9)
    prec = np.linalg.inv(cov)
    prec = 0.5 * (prec + prec.T)
    assert float(P.Gaussian(mean, precision=prec).log_prob(jnp.asarray(theta))) == pytest.approx(
        ref, rel=1e-8, abs=1e-8)


@FAST
@given(loc=vec(-5, 5), scale=positive, theta=vec(-20, 20))
def test_laplace_prior_matches_scipy(loc, scale, theta):
    lp = float(P.Laplace(loc, scale).log_prob(jnp.asarray(theta)))
    assert lp == pytest.approx(stats.laplace.logpdf(theta, loc, scale).sum(), rel=1e-10, abs=1e-10)


@FAST
@given(low=vec(-5, 5), width=positive, frac=vec(0.0, 1.0), outside=floats(1e-3, 3.0))
def test_uniform_prior_inside_and_outside(low, width, frac, outside):
    prior = P.Uniform(low, low + width)
    theta = low + frac * width
    lp = float(prior.log_prob(jnp.asarray(theta)))
    assert lp == pytest.approx(stats.uniform.logpdf(theta, low, width).sum(), rel=1e-10)
    assert float(prior.log_prob(jnp.asarray(theta).at[0].set(low[0] - outside))) == -np.inf
    assert float(prior.log_prob(jnp.asarray(theta).at[1].set(low[1] + width[1] + outside))) == -np.inf


@FAST
@given(loc=vec(-2, 2), scale=positive, theta=vec(1e-3, 50))
def test_lognormal_prior_matches_scipy(loc, scale, theta):
    prior = P.LogNormal(loc, scale)
    lp = float(prior.log_prob(jnp.asarray(theta)))
    assert lp == pytest.approx(stats.lognorm.logpdf(theta, scale, scale=np.exp(loc)).sum(), rel=1e-10, abs=1e-10)
    assert float(prior.log_prob(-jnp.asarray(theta))) == -np.inf


@FAST
@given(scale=positive, theta=vec(1e-3, 20))
def test_halfnormal_prior_matches_scipy(scale, theta):
    prior = P.HalfNormal(scale)
    lp = float(prior.log_prob(jnp.asarray(theta)))
    assert lp == pytest.approx(stats.halfnorm.logpdf(theta, scale=scale).sum(), rel=1e-10, abs=1e-10)
    assert float(prior.log_prob(-jnp.asarray(theta))) == -np.inf


@FAST
@given(a=floats(0.2, 10), b=floats(0.1, 10), theta=floats(1e-3, 30))
def test_gamma_prior_matches_scipy(a, b, theta):
    lp = float(P.Gamma(a, b).log_prob(jnp.asarray(theta)))
    assert lp == pytest.approx(stats.gamma.logpdf(theta, a, scale=1 / b), rel=1e-9, abs=1e-9)


@FAST
@given(config=st.sampled_from([((5,), 1), ((5,), 2), ((3, 3), 1), ((3, 3), 2)]), precision=floats(0.1, 10),
       theta=hnp.arrays(np.float64, (9,), elements=floats(-5, 5)))
def test_gmrf_prior_matches_scipy_with_its_dense_precision(config, precision, theta):
    """A proper (zero-boundary) GMRF is the Gaussian with precision ``precision · DᵀD``."""
    shape, order = config
    prior = P.GMRF(shape, order=order, boundary="zero", precision=precision)
    t = jnp.asarray(theta[: int(np.prod(shape))]).reshape(shape)
    q = np.asarray(prior.precision_matrix())
    ref = stats.multivariate_normal.logpdf(np.ravel(t), np.zeros(q.shape[0]), np.linalg.inv(q))
    assert float(prior.log_prob(t)) == pytest.approx(ref, rel=1e-8, abs=1e-8)


@FEW
@given(seed=st.integers(0, 2**31 - 1))
def test_prior_draws_are_in_the_support(seed):
    key = jax.random.key(seed)
    for prior in (P.Uniform(jnp.array([-1.0, 0.0, 2.0]), jnp.array([1.0, 0.5, 9.0])),
                  P.LogNormal(jnp.zeros(N), 2.0), P.HalfNormal(jnp.ones(N))):
        draws = prior.sample(key, (16,))
        lp = jax.vmap(prior.log_prob)(draws)
        assert np.all(np.isfinite(np.asarray(lp))), type(prior).__name__


# -- bijectors: round trips, into the support, log-Jacobian equal to autodiff's -------------
def _bijectors(low, width):
    return {"identity": bij.Identity(), "exp": bij.Exp(),
            "sigmoid": bij.Sigmoid(jnp.asarray(low), jnp.asarray(low + width))}


@FAST
@given(u=vec(-8, 8), low=vec(-5, 5), width=positive)
def test_bijector_round_trip_and_support(u, low, width):
    u = jnp.asarray(u)
    for name, b in _bijectors(low, width).items():
        theta = b.forward(u)
        np.testing.assert_allclose(np.asarray(b.inverse(theta)), np.asarray(u), rtol=1e-8, atol=1e-8, err_msg=name)
        if name == "exp":
            assert np.all(np.asarray(theta) > 0)
        if name == "sigmoid":
            assert np.all((np.asarray(theta) > low) & (np.asarray(theta) < low + width))


@FAST
@given(frac=vec(0.01, 0.99), low=vec(-5, 5), width=positive)
def test_bijector_inverse_then_forward(frac, low, width):
    theta = jnp.asarray(low + frac * width)
    for name, b in _bijectors(low, width).items():
        t = jnp.abs(theta) + 1e-3 if name == "exp" else theta
        np.testing.assert_allclose(np.asarray(b.forward(b.inverse(t))), np.asarray(t), rtol=1e-10, atol=1e-12,
                                   err_msg=name)


@FAST
@given(u=vec(-8, 8), low=vec(-5, 5), width=positive)
def test_log_jacobian_equals_autodiff(u, low, width):
    u = jnp.asarray(u)
    for name, b in _bijectors(low, width).items():
        sign, logdet = jnp.linalg.slogdet(jax.jacfwd(b.forward)(u))
        assert float(sign) == 1.0, name
        assert float(b.forward_log_det_jacobian(u)) == pytest.approx(float(logdet), rel=1e-9, abs=1e-9), name


@FEW
@given(u=vec(-4, 4), v=floats(-4, 4))
def test_joint_prior_log_jacobian_equals_autodiff(u, v):
    """A pytree θ: the Jacobian of the flattened map, with one bijector per leaf."""
    prior = P.Joint({"box": P.Uniform(-jnp.ones(N), 2 * jnp.ones(N)), "pos": P.HalfNormal(1.0),
                     "free": P.Gaussian(jnp.zeros(2), 1.0)})
    tree = {"box": jnp.asarray(u), "pos": jnp.asarray(v), "free": jnp.asarray(u[:2])}
    flat, unravel = jax.flatten_util.ravel_pytree(tree)

    def fwd(x):
        return jax.flatten_util.ravel_pytree(prior.from_unconstrained(unravel(x)))[0]

    _, logdet = jnp.linalg.slogdet(jax.jacfwd(fwd)(flat))
    assert float(prior.log_det_jacobian(tree)) == pytest.approx(float(logdet), rel=1e-9, abs=1e-9)
    back = prior.to_unconstrained(prior.from_unconstrained(tree))
    np.testing.assert_allclose(np.asarray(jax.flatten_util.ravel_pytree(back)[0]), np.asarray(flat), atol=1e-9)


@settings(max_examples=8, deadline=None, derandomize=True, database=None)
@given(kind=st.sampled_from(["uniform", "lognormal", "halfnormal"]), a=floats(-2, 2), b=floats(0.3, 3))
def test_unconstrained_prior_density_integrates_to_one(kind, a, b):
    """exp(log p(θ(u)) + log|dθ/du|) is a density of u: it integrates to 1 over the real line."""
    prior = {"uniform": P.Uniform(a, a + b), "lognormal": P.LogNormal(a, b), "halfnormal": P.HalfNormal(b)}[kind]
    problem = ji.InverseProblem(lambda t: t, prior, L.Gaussian(1.0))
    dens = jax.jit(lambda u: jnp.exp(problem.prior.log_prob(problem.from_unconstrained(u))
                                     + problem.prior.log_det_jacobian(u)))
    total, err = integrate.quad(lambda u: float(dens(u)), -np.inf, np.inf, limit=200)
    assert total == pytest.approx(1.0, abs=1e-6 + 10 * err)


# -- likelihoods: finite for valid data, equal to SciPy ------------------------------------
@FAST
@given(pred=vec(-10, 10), noise=vec(-3, 3), std=positive)
def test_gaussian_likelihood_matches_scipy(pred, noise, std):
    y = pred + noise * std
    lp = float(L.Gaussian(std).log_prob(jnp.asarray(y), jnp.asarray(pred)))
    assert lp == pytest.approx(stats.norm.logpdf(y, pred, std).sum(), rel=1e-10, abs=1e-10)


@FAST
@given(pred=vec(-10, 10), y=vec(-10, 10), factor=hnp.arrays(np.float64, (N, N), elements=floats(-2, 2)))
def test_gaussian_cov_likelihood_matches_scipy(pred, y, factor):
    cov = factor @ factor.T + 0.5 * np.eye(N)
    lp = float(L.Gaussian(cov=cov).log_prob(jnp.asarray(y), jnp.asarray(pred)))
    assert lp == pytest.approx(stats.multivariate_normal.logpdf(y, pred, cov), rel=1e-9, abs=1e-9)


@FAST
@given(pred=vec(-10, 10), y=vec(-50, 50), df=floats(0.5, 30), scale=floats(0.1, 5))
def test_student_t_likelihood_matches_scipy(pred, y, df, scale):
    lp = float(L.StudentT(df, scale).log_prob(jnp.asarray(y), jnp.asarray(pred)))
    assert lp == pytest.approx(stats.t.logpdf(y, df, pred, scale).sum(), rel=1e-9, abs=1e-9)


@FAST
@given(rate=vec(1e-3, 100), y=hnp.arrays(np.int64, (N,), elements=st.integers(0, 200)))
def test_poisson_likelihood_matches_scipy(rate, y):
    lp = float(L.Poisson().log_prob(jnp.asarray(y, float), jnp.asarray(rate)))
    assert math.isfinite(lp)
    assert lp == pytest.approx(stats.poisson.logpmf(y, rate).sum(), rel=1e-9, abs=1e-9)


@FAST
@given(logit=vec(-30, 30), y=hnp.arrays(np.int64, (N,), elements=st.integers(0, 1)))
def test_bernoulli_likelihood_matches_scipy(logit, y):
    lp = float(L.Bernoulli().log_prob(jnp.asarray(y, float), jnp.asarray(logit)))
    assert math.isfinite(lp)
    ref = np.sum(y * special.log_expit(logit) + (1 - y) * special.log_expit(-logit))
    assert lp == pytest.approx(ref, rel=1e-10, abs=1e-10)


@FAST
@given(logits=hnp.arrays(np.float64, (4,), elements=floats(-50, 50)), label=st.integers(0, 3))
def test_categorical_likelihood_matches_scipy(logits, label):
    lp = float(L.Categorical().log_prob(jnp.asarray(float(label)), jnp.asarray(logits)))
    assert math.isfinite(lp)
    assert lp == pytest.approx(special.log_softmax(logits)[label], rel=1e-10, abs=1e-10)


@FEW
@given(seed=st.integers(0, 2**31 - 1), pred=vec(-3, 3))
def test_simulated_data_is_valid_data(seed, pred):
    """What a likelihood simulates passes its own data check and has a finite log-likelihood."""
    key = jax.random.key(seed)
    pred = jnp.asarray(pred)
    cases = [(L.Gaussian(0.5), pred), (L.StudentT(3.0, 1.0), pred), (L.Poisson(), jnp.exp(pred)),
             (L.Bernoulli(), pred), (L.Categorical(), pred)]
    for lik, p in cases:
        y = lik.sample(key, p)
        struct = jax.ShapeDtypeStruct(p.shape, p.dtype)
        lik.check_data(np.asarray(y, float), struct)
        assert math.isfinite(float(lik.log_prob(jnp.asarray(y, float), p))), type(lik).__name__
