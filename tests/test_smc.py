"""Tempered SMC (`ji.sample(..., method="smc")`, `jinverse.smc`) against closed forms, quadrature
and reference draws.

Monte-Carlo tolerances use a conservative effective sample size of ``N / 4`` for the ``N``
particles: resampling and a finite number of mutation moves correlate the particles. Measured
(8 runs of 4000 particles): the spread of the two-mode fraction was 0.0057, the value for
4000 independent draws (0.0071), and the final weights' ESS is ~0.9 N.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy.stats import multivariate_normal

import jinverse as ji
from jinverse import smc as smc_lib
from jinverse.posterior import SamplingWarning, Status

N, M = 3, 8
CHAINS, DRAWS = 4, 1000
ESS = CHAINS * DRAWS / 4


@pytest.fixture(scope="module")
def linear():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(M, N))
    gamma, sigma = 1.5, 0.5
    problem = ji.InverseProblem(jnp.asarray(a), ji.priors.Gaussian(jnp.zeros(N), gamma),
                                ji.likelihoods.Gaussian(sigma))
    ys = (a @ rng.normal(size=(N, 2)) * gamma + sigma * rng.normal(size=(M, 2))).T
    cov = np.linalg.inv(a.T @ a / sigma**2 + np.eye(N) / gamma**2)
    means = ys @ a @ cov / sigma**2
    # log N(y; A m, A Γ Aᵀ + Σ), m = 0
    log_z = multivariate_normal(np.zeros(M), gamma**2 * a @ a.T + sigma**2 * np.eye(M)).logpdf(ys)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SamplingWarning)  # no R-hat (or other) warning
        post = ji.sample(problem, jnp.asarray(ys), key=jax.random.key(1), method="smc",
                         num_chains=CHAINS, num_samples=DRAWS)
    return problem, ys, means, cov, log_z, post


def test_linear_gaussian_moments_and_evidence(linear):
    _, _, means, cov, log_z, post = linear
    assert post.samples.shape == (2, CHAINS, DRAWS, N)
    assert post.method == "smc" and np.all(np.asarray(post.status) == 0) and post.warnings == ()
    assert np.all(np.isnan(np.asarray(post.max_rhat)))  # R-hat is not a diagnostic of SMC
    sd = np.sqrt(np.diag(cov))
    for i in range(2):
        draws = np.asarray(post.samples[i]).reshape(-1, N)
        # mean: 5 Monte-Carlo standard errors; std: 5 standard errors of a sample std, 1/sqrt(2 ESS)
        np.testing.assert_array_less(np.abs(draws.mean(0) - means[i]), 5 * sd / np.sqrt(ESS))
        np.testing.assert_array_less(np.abs(draws.std(0) / sd - 1), 5 / np.sqrt(2 * ESS))
        corr = np.corrcoef(draws.T)
        exact = cov / np.outer(sd, sd)
        np.testing.assert_array_less(np.abs(corr - exact), 5 / np.sqrt(ESS))
    # issue 13's target: log Z within 0.1 nats of the closed form (measured over 8 runs of 4000
    # particles, 7 stages: standard deviation 0.035, so 0.1 is ~3 of them)
    np.testing.assert_allclose(np.asarray(post.log_evidence), log_z, atol=0.1)
    assert np.all(np.asarray(post.smc.beta) == 1.0) and np.all(np.asarray(post.smc.num_stages) >= 1)
    assert np.all(np.asarray(post.min_ess) > 0.5 * CHAINS * DRAWS)  # the final weights' ESS


def test_batch_equals_one_at_a_time(linear):
    problem, ys, _, _, _, post = linear
    keys = jax.random.split(jax.random.key(1), 2)
    traces = []
    for i in range(2):
        traces.append(smc_lib._TRACES["count"])
        one = ji.sample(problem, jnp.asarray(ys[i]), key=keys[i], method="smc", num_chains=CHAINS,
                        num_samples=DRAWS)
        # to rounding: a vmapped lane is lowered differently from a single one
        np.testing.assert_allclose(np.asarray(one.samples), np.asarray(post.samples[i]), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(float(one.log_evidence), float(post.log_evidence[i]), rtol=1e-9)
        sliced = post[i]  # slicing keeps the evidence and the SMC statistics
        assert sliced.log_evidence.shape == () and sliced.warnings == () and int(sliced.status) == 0
    assert traces[1] == smc_lib._TRACES["count"]  # new data of the same shape: no new trace
    assert "log evidence" in one.summary() and "R-hat" in one.summary()


def test_two_modes_weighted_right():
    # y = θ² + noise, prior N(0.5, 1): modes near ±1 of unequal mass (the prior favours +1);
    # the likelihood at θ = 0 is exp(-12.5) of its peak, so an MCMC chain does not cross over
    sigma, y, m0 = 0.2, 1.0, 0.5
    problem = ji.InverseProblem(lambda t: t**2, ji.priors.Gaussian(jnp.array([m0]), 1.0),
                                ji.likelihoods.Gaussian(sigma))

    def density(t):
        return np.exp(-0.5 * (t - m0) ** 2 - 0.5 * ((y - t**2) / sigma) ** 2)

    pos = integrate.quad(density, 0, 5, points=[1.0])[0]
    neg = integrate.quad(density, -5, 0, points=[-1.0])[0]
    exact = pos / (pos + neg)  # ≈ 0.73
    smc = ji.sample(problem, jnp.array([y]), key=jax.random.key(3), method="smc", num_chains=CHAINS,
                    num_samples=DRAWS)
    frac = float(np.mean(np.asarray(smc.samples) > 0))
    assert abs(frac - exact) < 4 * np.sqrt(exact * (1 - exact) / ESS), (frac, exact)
    # the evidence too: ∫ N(θ; m0, 1) N(y; θ², σ²) dθ by quadrature
    log_z = np.log((pos + neg) / (2 * np.pi * sigma))
    assert abs(float(smc.log_evidence) - log_z) < 0.1
    # NUTS chains started in the + mode stay there
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        nuts = ji.sample(problem, jnp.array([y]), key=jax.random.key(3), init=jnp.array([1.0]),
                         jitter=0.05, num_warmup=200, num_samples=200)
    assert float(np.mean(np.asarray(nuts.samples) > 0)) > 0.99


def test_two_moons_c2st():
    bench = ji.problems.load("two_moons")
    post = ji.sample(bench.problem, bench.y, key=jax.random.key(0), method="smc", num_chains=CHAINS,
                     num_samples=DRAWS)
    assert int(post.status) == 0
    score = float(ji.problems.evaluate(bench, post, metric="c2st")["value"])
    # 4000 draws per class: the accuracy of a classifier on identical distributions scatters by
    # ~0.01 around 0.5 (plus a little overfitting); NUTS gets ~0.8 here (issue 13)
    assert score < 0.55, score


def test_options_and_refusals(linear):
    problem, ys, *_ = linear
    with pytest.raises(ValueError, match="num_mcmc_step"):
        ji.sample(problem, jnp.asarray(ys[0]), key=jax.random.key(0), method="smc", num_mcmc_step=3)
    with pytest.raises(ValueError, match="target_ess"):
        ji.sample(problem, jnp.asarray(ys[0]), key=jax.random.key(0), method="smc", target_ess=1.5)
    with pytest.raises(ValueError, match="init"):
        ji.sample(problem, jnp.asarray(ys[0]), key=jax.random.key(0), method="smc", init="map")
    with pytest.warns(SamplingWarning, match="SMC stopped before the posterior"):
        post = ji.sample(problem, jnp.asarray(ys[0]), key=jax.random.key(0), method="smc",
                         num_chains=1, num_samples=200, max_stages=1, num_mcmc_steps=2)
    assert int(post.status) & Status.TEMPERING_INCOMPLETE


def test_zero_likelihood_on_part_of_the_prior_gives_a_finite_evidence():
    # two_moons' likelihood is zero (log -inf) on ~60% of the prior for this y: the tempering
    # met 0·(-inf) = NaN there (log Z NaN, flagged). Now finite, and log Z agrees with a plain
    # Monte Carlo average of the likelihood over prior draws (an independent estimate).
    problem = ji.problems.load("two_moons").problem
    k_theta, k_y, k_run = jax.random.split(jax.random.key(0), 3)
    theta = problem.sample_prior(k_theta, (16,))
    y = jax.vmap(problem.simulate)(jax.random.split(k_y, 16), theta)[2]
    draws = problem.sample_prior(jax.random.key(7), (400_000,))
    ll = jax.jit(jax.vmap(lambda t: problem.log_likelihood(t, y)))(draws)
    assert float(jnp.mean(jnp.isneginf(ll))) > 0.3  # the case this test is about
    log_z_mc = float(jax.scipy.special.logsumexp(ll) - jnp.log(ll.size))
    post = ji.sample(problem, y, key=k_run, method="smc", num_samples=1000)
    assert int(post.status) == 0
    assert abs(float(post.log_evidence) - log_z_mc) < 0.2
