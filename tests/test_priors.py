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


# -- the common priors of issue 14: density vs SciPy, draws vs SciPy's CDF, bijector vs finite differences

INF = np.inf
COMMON = [  # (prior, the same distribution in scipy.stats, points to evaluate at)
    (P.Cauchy(0.5, 2.0), st.cauchy(0.5, 2.0), [-30.0, -1.0, 0.5, 4.0]),
    (P.HalfCauchy(1.5), st.halfcauchy(scale=1.5), [0.01, 0.7, 3.0, 80.0]),
    (P.StudentT(3.5, -1.0, 0.8), st.t(3.5, -1.0, 0.8), [-9.0, -1.0, 0.2, 5.0]),
    (P.Exponential(2.5), st.expon(scale=1 / 2.5), [0.001, 0.3, 2.0]),
    (P.Gamma(2.5, 4.0), st.gamma(2.5, scale=1 / 4.0), [0.05, 0.6, 3.0]),
    (P.InverseGamma(3.0, 2.0), st.invgamma(3.0, scale=2.0), [0.1, 0.9, 6.0]),
    (P.Beta(2.0, 0.7), st.beta(2.0, 0.7), [0.01, 0.4, 0.999]),
    (P.TruncatedNormal(1.0, 2.0, low=0.0), st.truncnorm(-0.5, INF, 1.0, 2.0), [0.01, 1.0, 7.0]),
    (P.TruncatedNormal(-1.0, 0.5, high=-2.0), st.truncnorm(-INF, -2.0, -1.0, 0.5), [-4.0, -2.5, -2.01]),
    (P.TruncatedNormal(0.0, 1.0, low=-1.0, high=2.0), st.truncnorm(-1.0, 2.0), [-0.99, 0.0, 1.9]),
    # far in the upper tail: the mass 1e-23 is taken from the tail, not 1 - 1
    (P.TruncatedNormal(0.0, 1.0, low=10.0, high=11.0), st.truncnorm(10.0, 11.0), [10.001, 10.05, 10.5]),
]
IDS = ["cauchy", "halfcauchy", "studentt", "exponential", "gamma", "invgamma", "beta", "tn_low", "tn_high",
       "tn_box", "tn_tail"]


@pytest.mark.parametrize("prior, ref, x", COMMON, ids=IDS)
def test_common_priors_log_prob_matches_scipy(prior, ref, x):
    for xi in x:
        assert np.isclose(prior.log_prob(jnp.asarray(xi)), ref.logpdf(xi), rtol=1e-10, atol=1e-10), xi
    assert np.isclose(prior.log_prob(jnp.asarray(x)), ref.logpdf(x).sum(), rtol=1e-10)  # a vector θ: the sum
    lo, hi = ref.support()
    outside = [v for v in (lo - 1.0, hi + 1.0) if np.isfinite(v)]
    for v in outside:
        assert prior.log_prob(jnp.asarray(v)) == -np.inf
    assert np.isfinite(prior.log_prob(prior.center()))


@pytest.mark.parametrize("prior, ref, x", COMMON, ids=IDS)
def test_common_priors_draws_pass_ks_against_scipy_cdf(prior, ref, x, key):
    # KS test at level 1e-3: with a fixed key, a correct sampler fails this with probability 1e-3
    draws = np.asarray(prior.sample(key, (4000,)))
    assert draws.shape == (4000,)
    assert st.kstest(draws, ref.cdf).pvalue > 1e-3


@pytest.mark.parametrize("prior, ref, x", COMMON, ids=IDS)
def test_common_priors_bijector_round_trip_and_jacobian(prior, ref, x):
    theta = jnp.asarray(x)
    u = prior.to_unconstrained(theta)
    assert bool(jnp.all(jnp.isfinite(u)))
    assert np.allclose(prior.from_unconstrained(u), theta, rtol=1e-9, atol=1e-12)
    for ui in np.asarray(u):
        h = 1e-5  # central difference: error ~ h² |f'''| ~ 1e-10 relative here
        fd = (prior.from_unconstrained(jnp.asarray(ui + h)) - prior.from_unconstrained(jnp.asarray(ui - h))) / (2 * h)
        assert np.isclose(prior.log_det_jacobian(jnp.asarray(ui)), np.log(abs(fd)), atol=1e-6)
        assert np.isclose(prior.log_det_jacobian(jnp.asarray(ui)),
                          jnp.log(jnp.abs(jax.grad(prior.from_unconstrained)(jnp.asarray(ui)))), atol=1e-10)
    # any unconstrained value lands in the support, with a finite gradient of the sampled density
    wide = jnp.array([-3.0, 0.0, 3.0])
    inside = jax.vmap(lambda v: prior.log_prob(prior.from_unconstrained(v)))(wide)
    assert bool(jnp.all(jnp.isfinite(inside)))
    g = jax.vmap(jax.grad(lambda v: prior.log_prob(prior.from_unconstrained(v)) + prior.log_det_jacobian(v)))(wide)
    assert bool(jnp.all(jnp.isfinite(g)))


def test_truncated_normal_bounds_and_vector_parameters(key):
    p = P.TruncatedNormal(jnp.array([2.0, -1.0]), 1.0, low=jnp.array([0.0, -INF]), high=jnp.array([INF, 0.0]))
    assert p.event_shape == (2,)
    d = p.sample(key, (500,))
    assert bool(jnp.all(d[:, 0] > 0)) and bool(jnp.all(d[:, 1] < 0))
    ref = st.truncnorm(-2.0, INF, 2.0).logpdf(0.5) + st.truncnorm(-INF, 1.0, -1.0).logpdf(-0.3)
    assert np.isclose(p.log_prob(jnp.array([0.5, -0.3])), ref, rtol=1e-12)
    u = jnp.array([0.3, -0.7])
    jac = jax.jacfwd(p.from_unconstrained)(u)
    assert np.isclose(p.log_det_jacobian(u), jnp.linalg.slogdet(jac)[1], atol=1e-12)


@pytest.mark.parametrize("low, high", [(None, None), (0.0, None), (None, 1.0), (-1.0, 2.0)])
def test_flat_prior(low, high, key):
    p = P.Flat((3,), low=low, high=high)
    assert p.event_shape == (3,) and not p.is_proper
    c = p.center()
    assert float(p.log_prob(c)) == 0.0
    lo, hi = -INF if low is None else low, INF if high is None else high
    assert bool(jnp.all((c > lo) & (c < hi)))
    if low is not None:
        assert p.log_prob(jnp.full(3, low - 1.0)) == -np.inf
    u = jnp.array([-2.0, 0.1, 3.0])
    assert np.allclose(p.to_unconstrained(p.from_unconstrained(u)), u, atol=1e-12)
    jac = jax.jacfwd(p.from_unconstrained)(u)
    assert np.isclose(p.log_det_jacobian(u), jnp.linalg.slogdet(jac)[1], atol=1e-12)
    with pytest.raises(ValueError, match="improper.*init"):
        p.sample(key)


def test_improper_prior_errors_and_messages(key):
    assert P.Joint({"a": P.Flat(), "b": P.HalfNormal(1.0)}).is_proper is False
    assert P.Gaussian(0.0, 1.0).is_proper and P.Joint({"b": P.HalfNormal(1.0)}).is_proper
    with pytest.raises(ValueError, match="Flat"):
        P.Uniform(0.0, np.inf)
    with pytest.raises(ValueError, match="low < high"):
        P.Flat(low=1.0, high=0.0)
    with pytest.raises(ValueError, match="scale"):
        P.HalfCauchy(-1.0)
    with pytest.raises(ValueError, match="low < high"):
        P.TruncatedNormal(0.0, 1.0, low=2.0, high=1.0)


PUBLIC = ["AbstractPrior", "AbstractLocationScale", "Gaussian", "Laplace", "Uniform", "LogNormal", "HalfNormal",
          "Flat", "Cauchy", "HalfCauchy", "StudentT", "Exponential", "InverseGamma", "Beta", "TruncatedNormal",
          "Joint", "Interval", "GMRF", "Gamma", "SparseL1", "TotalVariation"]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_names_importable_from_the_package(name):
    """The split of priors.py into a package kept every name where it was (``jinverse.priors.X``)."""
    import importlib
    mod = importlib.import_module("jinverse.priors")
    assert getattr(mod, name) is getattr(ji.priors, name)
    exec(f"from jinverse.priors import {name}", {})


def test_location_scale_priors_share_the_base_class():
    """Laplace, Cauchy and StudentT are `AbstractLocationScale`: θ = loc + scale·z, centred at loc."""
    for p in (P.Laplace(jnp.array([0.5, -1.0]), 2.0), P.Cauchy(jnp.array([0.5, -1.0]), 2.0),
              P.StudentT(4.0, jnp.array([0.5, -1.0]), 2.0)):
        assert isinstance(p, P.AbstractLocationScale) and p.event_shape == (2,)
        assert np.array_equal(p.center(), [0.5, -1.0])
        k = jax.random.key(7)
        assert np.array_equal(p.sample(k, (3,)), p.loc + p.scale * p.standard_sample(k, (3, 2)))
        x = jnp.array([0.1, 0.2])
        assert np.isclose(p.log_prob(x), jnp.sum(p.log_prob_entries(x)))
    assert P.Interval is bijectors.Interval
