"""After sampling: posterior and prior predictive draws, derived quantities (`Posterior.apply`)
and `Posterior.to_arviz` with the groups ArviZ's LOO and PPC read."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import jinverse as ji
from jinverse import Posterior
from jinverse._samplers import Stats
from jinverse.convergence import _diagnostics
from jinverse.posterior import status_and_warnings

A = jnp.array([[1.0, 0.5], [-0.3, 2.0], [0.7, -1.0]])
SIGMA = 0.5
Y = jnp.array([0.4, -1.2, 0.9])


def _linear():
    return ji.InverseProblem(A, ji.priors.Gaussian(jnp.zeros(2), 1.0), ji.likelihoods.Gaussian(SIGMA))


def _exact_posterior():
    """The linear-Gaussian posterior's mean and covariance."""
    a = np.asarray(A)
    cov = np.linalg.inv(a.T @ a / SIGMA**2 + np.eye(2))
    return cov @ a.T @ np.asarray(Y) / SIGMA**2, cov


def _posterior(draws):
    """A Posterior around given draws (chains, draws, *theta), as ji.sample builds one."""
    lead = jax.tree.leaves(draws)[0].shape[:2]
    div = jnp.zeros(lead, bool)
    stats = Stats(jnp.full(lead, 0.8), div, jnp.full(lead, 7, jnp.int32), jnp.full(lead, 0.1),
                  jnp.full(lead, jnp.nan))
    flat = jnp.concatenate([a.reshape(*lead, -1) for a in jax.tree.leaves(draws)], -1)
    diag = _diagnostics(flat, div)
    status, msgs = status_and_warnings(diag, lead[0])
    return Posterior(draws, stats, diag["max_rhat"], diag["min_ess"], jnp.asarray(diag["num_divergent"]),
                     jnp.asarray(status), tuple(msgs), "test", 10)


@pytest.fixture(scope="module")
def exact():
    """4 x 2000 independent draws of the exact posterior."""
    mean, cov = _exact_posterior()
    draws = np.random.default_rng(0).multivariate_normal(mean, cov, size=(4, 2000))
    return _posterior(jnp.asarray(draws))


@pytest.fixture(scope="module")
def sampled():
    return ji.sample(_linear(), Y, key=jax.random.key(1), method="mala", metric="diagonal", num_chains=2,
                     num_warmup=300, num_samples=300)


def _check_moments(y, mean, cov):
    """Sample mean and covariance of iid rows y within Monte-Carlo error of (mean, cov)."""
    y = np.asarray(y).reshape(-1, len(mean))
    n, sd = len(y), np.sqrt(np.diag(cov))
    np.testing.assert_array_less(np.abs(y.mean(0) - mean), 4.5 * sd / np.sqrt(n))
    # var of a sample variance of a Gaussian: 2 sd^4 / n
    np.testing.assert_array_less(np.abs(y.var(0, ddof=1) - np.diag(cov)), 4.5 * np.sqrt(2 / n) * sd**2)


def test_posterior_predictive_matches_closed_form(exact):
    mean, cov = _exact_posterior()
    a = np.asarray(A)
    y = exact.posterior_predictive(_linear(), jax.random.key(2))
    assert y.shape == (4, 2000, 3)
    _check_moments(y, a @ mean, a @ cov @ a.T + SIGMA**2 * np.eye(3))
    thin = exact.posterior_predictive(_linear(), jax.random.key(2), n=50)
    assert thin.shape == (4, 50, 3)
    with pytest.raises(ValueError, match="n: got 0"):
        exact.posterior_predictive(_linear(), jax.random.key(2), n=0)


def test_prior_predictive_matches_closed_form(key):
    a = np.asarray(A)
    pp = ji.prior_predictive(_linear(), key, 8000)
    assert pp.theta.shape == (8000, 2) and pp.y.shape == (8000, 3)
    _check_moments(pp.theta, np.zeros(2), np.eye(2))
    _check_moments(pp.y, np.zeros(3), a @ a.T + SIGMA**2 * np.eye(3))
    with pytest.raises(ValueError, match="n: got 0"):
        ji.prior_predictive(_linear(), key, 0)


def test_batched_posterior_predictive_keeps_axes(exact):
    draws = jnp.stack([exact.samples[:, :100], exact.samples[:, :100] + 1.0])  # (2, 4, 100, 2)
    post = _posterior(draws[0])
    batched = Posterior(draws, jax.tree.map(lambda a: jnp.stack([a[:, :100]] * 2), post.stats),
                        jnp.ones(2), jnp.ones(2), jnp.zeros(2, int), jnp.zeros(2, int), (), "test", 10)
    y = batched.posterior_predictive(_linear(), jax.random.key(3))
    assert y.shape == (2, 4, 100, 3)
    # the noise-free part follows each observation's own draws
    np.testing.assert_allclose((y[1] - y[0]).mean((0, 1)), np.asarray(A) @ np.ones(2), atol=4 * SIGMA * np.sqrt(2 / 400))


def test_apply_derived_quantity_keeps_chains(exact):
    post = _posterior(exact.samples[:, :500])
    derived = post.apply(lambda t: {"s": t[0] + t[1], "p": t * 2.0})
    assert derived.samples["s"].shape == (4, 500) and derived.samples["p"].shape == (4, 500, 2)
    np.testing.assert_allclose(derived.mean()["s"], post.samples.sum(-1).mean(), rtol=1e-12)
    # R-hat and ESS recomputed on the derived quantities: iid draws, R-hat ~ 1, ESS ~ 2000
    assert float(derived.max_rhat) < 1.02 and float(derived.min_ess) > 1500
    assert derived.checked and int(derived.status) == 0
    idata = derived.to_arviz()
    assert set(idata.posterior.data_vars) == {"s", "p"}
    with pytest.raises(TypeError, match="fn: got int"):
        post.apply(3)


def test_to_arviz_groups_and_loo(sampled, key):
    az = pytest.importorskip("arviz")
    problem = _linear()
    pp = ji.prior_predictive(problem, key, 100)
    idata = sampled.to_arviz(problem, Y, key=jax.random.key(4), prior=pp)
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data", "posterior_predictive",
                  "prior", "prior_predictive"):
        assert group in idata.groups()
    assert idata.log_likelihood["y"].shape == (2, 300, 3)
    # pointwise terms: the Gaussian density of each entry, summing to the log-likelihood
    theta = np.asarray(sampled.samples[0, 0])
    want = scipy.stats.norm.logpdf(np.asarray(Y), np.asarray(A) @ theta, SIGMA)
    np.testing.assert_allclose(idata.log_likelihood["y"].values[0, 0], want, rtol=1e-10)
    lp = problem.log_density(problem.to_unconstrained(sampled.samples[1, 7]), Y)
    np.testing.assert_allclose(idata.sample_stats["lp"].values[1, 7], lp, rtol=1e-10)
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)
    assert idata.posterior_predictive["y"].shape == (2, 300, 3)


def test_plot_ppc_runs(sampled):
    az = pytest.importorskip("arviz")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idata = sampled.to_arviz(_linear(), Y, key=jax.random.key(5))
    az.plot_ppc(idata, num_pp_samples=20)
    plt.close("all")


def test_joint_names_and_bound_likelihood_pointwise(key):
    pytest.importorskip("arviz")
    forward, lik = ji.likelihoods.bind(lambda t: A @ t["x"], ji.likelihoods.Gaussian(std=lambda t: t["sigma"]))
    prior = ji.priors.Joint({"x": ji.priors.Gaussian(jnp.zeros(2), 1.0), "sigma": ji.priors.HalfNormal(1.0)})
    problem = ji.InverseProblem(forward, prior, lik)
    draws = jax.tree.map(lambda a: a.reshape(2, 50, *a.shape[1:]), problem.sample_prior(key, (100,)))
    post = _posterior(draws)
    idata = post.to_arviz(problem, Y)
    assert set(idata.posterior.data_vars) == {"x", "sigma"}
    assert idata.posterior["x"].shape == (2, 50, 2)
    x, s = np.asarray(draws["x"][1, 3]), float(draws["sigma"][1, 3])
    np.testing.assert_allclose(idata.log_likelihood["y"].values[1, 3],
                               scipy.stats.norm.logpdf(np.asarray(Y), np.asarray(A) @ x, s), rtol=1e-10)


def test_to_arviz_refusals(exact):
    cov_problem = ji.InverseProblem(A, ji.priors.Gaussian(jnp.zeros(2), 1.0),
                                    ji.likelihoods.Gaussian(cov=0.25 * jnp.eye(3) + 0.1))
    with pytest.raises(ValueError, match="pointwise log-likelihood needs independent entries"):
        exact.to_arviz(cov_problem, Y)
    with pytest.raises(TypeError, match="problem: got None"):
        exact.to_arviz(y=Y)


@pytest.fixture(scope="module")
def batched():
    """A posterior of two observations, (2, chains, draws, 2): exact draws of each, as ji.sample
    would return them for the batch."""
    y = jnp.stack([Y, Y + jnp.array([0.3, -0.5, 0.2])])
    a, rng = np.asarray(A), np.random.default_rng(3)
    cov = np.linalg.inv(a.T @ a / SIGMA**2 + np.eye(2))
    draws = np.stack([rng.multivariate_normal(cov @ a.T @ np.asarray(yi) / SIGMA**2, cov, size=(2, 300))
                      for yi in y])
    lead = draws.shape[:3]
    div = jnp.zeros(lead, bool)
    stats = Stats(jnp.full(lead, 0.8), div, jnp.full(lead, 7, jnp.int32), jnp.full(lead, 0.1),
                  jnp.full(lead, jnp.nan))
    diag = _diagnostics(jnp.asarray(draws), div)
    status, msgs = status_and_warnings(diag, 2)
    post = Posterior(jnp.asarray(draws), stats, diag["max_rhat"], diag["min_ess"],
                     jnp.asarray(diag["num_divergent"]), jnp.asarray(status), tuple(msgs), "test", 10)
    assert post.batch_shape == (2,)
    return post, y


def test_to_arviz_batched_one_per_observation(batched):
    az = pytest.importorskip("arviz")
    post, y = batched
    problem, k = _linear(), jax.random.key(8)
    whole = post.posterior_predictive(problem, k)
    each = post.to_arviz(problem, y, key=k, index="all")
    assert isinstance(each, list) and len(each) == 2
    for i, idata in enumerate(each):
        np.testing.assert_array_equal(idata.posterior["theta"].values, post.samples[i])
        np.testing.assert_array_equal(idata.observed_data["y"].values, y[i])
        # the same InferenceData as the observation's own posterior with its own y ...
        alone = post[i].to_arviz(problem, y[i])
        np.testing.assert_array_equal(idata.log_likelihood["y"].values, alone.log_likelihood["y"].values)
        np.testing.assert_array_equal(idata.sample_stats["lp"].values, alone.sample_stats["lp"].values)
        # ... and its predictive draws are the batch's posterior_predictive, sliced
        np.testing.assert_array_equal(idata.posterior_predictive["y"].values, whole[i])
        assert idata.attrs["observation"] == str(i)
        assert np.isfinite(az.loo(idata).elpd_loo)
    one = post.to_arviz(problem, y, key=k, index=-1)
    np.testing.assert_array_equal(one.posterior_predictive["y"].values, whole[1])
    np.testing.assert_array_equal(post.to_arviz(index=np.int64(0)).posterior["theta"].values, post.samples[0])


def test_to_arviz_batched_refusals(batched, exact):
    pytest.importorskip("arviz")
    post, y = batched
    problem = _linear()
    with pytest.raises(ValueError, match="batch shape \\(2,\\); pass index="):
        post.to_arviz(problem, y)
    with pytest.raises(IndexError, match="index: got 2"):
        post.to_arviz(problem, y, index=2)
    with pytest.raises(ValueError, match="index: got \\(0, 0\\)"):
        post.to_arviz(index=(0, 0))
    with pytest.raises(ValueError, match="index: got 'first'"):
        post.to_arviz(index="first")
    with pytest.raises(ValueError, match="index: got 0.5"):
        post.to_arviz(index=0.5)
    with pytest.raises(ValueError, match="y: got batch shape \\(\\)"):
        post.to_arviz(problem, Y, index=0)  # one observation where the batch was sampled
    with pytest.raises(ValueError, match="index: got 0, but this posterior has no batch axes"):
        exact.to_arviz(index=0)
    with pytest.raises(ValueError, match="y: got batch shape \\(2,\\)"):
        exact.to_arviz(problem, y)
