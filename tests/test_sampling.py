"""ji.sample against closed forms (linear-Gaussian), 1-D quadrature and a two-mode posterior.

Tolerances follow from Monte-Carlo error: a mean is checked to 5 standard errors
(std / sqrt(bulk ESS)); a standard deviation to 5 of its standard errors (std / sqrt(2 ESS)),
plus a stated allowance for the unadjusted MCLMC's discretisation bias.
"""

from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import jinverse as ji
from jinverse import sampling
from jinverse.posterior import SamplingWarning, Status

N, M, S, T = 3, 8, 1.0, 1.0
WARMUP, DRAWS = 300, 500
# Methods whose compile takes long run in the slow suite (`make test-slow`).
FAST = ["nuts", "mala", "rwmh", "chees"]
SLOW = ["hmc", "mclmc"]
# (warmup, draws) per method: random-walk samplers need longer chains for a usable ESS.
LENGTHS = {"rwmh": (1000, 2000), "mala": (500, 1000), "hmc": (300, 1000)}


@pytest.fixture(scope="module")
def linear():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(M, N))
    problem = ji.InverseProblem(jnp.asarray(a), ji.priors.Gaussian(jnp.zeros(N), T),
                                ji.likelihoods.Gaussian(S))
    ys = a @ rng.normal(size=(N, 3)) + S * rng.normal(size=(M, 3))
    cov = np.linalg.inv(a.T @ a / S**2 + np.eye(N) / T**2)
    means = (cov @ a.T @ ys / S**2).T  # (3, N)
    return problem, ys.T, means, cov


_cache = {}


def _posterior(linear, method, **kw):
    problem, ys, _, _ = linear
    k = (method, tuple(sorted(kw.items())))
    if k not in _cache:
        warmup, draws = LENGTHS.get(method, (WARMUP, DRAWS))
        _cache[k] = ji.sample(problem, ys[0], key=jax.random.key(1), method=method,
                              num_warmup=warmup, num_samples=draws, **kw)
    return _cache[k]


def _check_exact(post, mean, cov, std_bias=0.0):
    ess = np.asarray(post.ess())
    sd = np.sqrt(np.diag(cov))
    assert post.samples.shape[-3:] == (4, post.num_draws, N)
    np.testing.assert_array_less(np.abs(np.asarray(post.mean()) - mean), 5 * sd / np.sqrt(ess))
    rel = np.abs(np.asarray(post.std()) / sd - 1)
    np.testing.assert_array_less(rel, 5 / np.sqrt(2 * ess) + std_bias)
    np.testing.assert_array_less(np.asarray(post.rhat()), 1.05)


@pytest.mark.parametrize("method", FAST + [pytest.param(m, marks=pytest.mark.slow) for m in SLOW])
def test_linear_gaussian_each_method(linear, method):
    _, _, means, cov = linear
    post = _posterior(linear, method)
    # MCLMC has no accept step: allow it a 3% bias in the standard deviation.
    _check_exact(post, means[0], cov, std_bias=0.03 if method == "mclmc" else 0.0)
    assert post.method == method
    assert post.stats.is_divergent.shape == (4, LENGTHS.get(method, (WARMUP, DRAWS))[1])
    assert np.all(np.asarray(post.stats.step_size) > 0)


def test_nuts_statistics(linear):
    post = _posterior(linear, "nuts")
    acc = np.asarray(post.stats.acceptance_rate)
    assert 0.6 < acc.mean() <= 1.0  # window adaptation targets 0.8
    assert np.all(np.asarray(post.stats.num_integration_steps) >= 1)
    assert int(post.num_divergent) == int(np.sum(post.divergences)) == 0
    assert int(post.status) == 0 and post.warnings == ()


def test_second_call_does_not_retrace(linear):
    problem, ys, means, cov = linear
    _posterior(linear, "nuts")
    before = sampling._TRACES["count"]
    post = ji.sample(problem, ys[1], key=jax.random.key(7), num_warmup=WARMUP, num_samples=DRAWS)
    assert sampling._TRACES["count"] == before
    _check_exact(post, means[1], cov)


def test_diagnose_false_same_draws_then_diagnose(linear):
    """diagnose=False: the draws bit for bit, flagged UNCHECKED; .diagnose() gives the rest."""
    problem, ys, _, _ = linear
    ref = _posterior(linear, "nuts")
    before = sampling._TRACES["count"]
    post = ji.sample(problem, ys[0], key=jax.random.key(1), num_warmup=WARMUP, num_samples=DRAWS,
                     diagnose=False)
    assert sampling._TRACES["count"] == before  # the same compiled sampler
    assert np.array_equal(post.samples, ref.samples)
    for a, b in zip(post.stats, ref.stats):
        assert np.array_equal(a, b, equal_nan=True)
    assert int(post.status) == Status.UNCHECKED and not post.ok and not post.checked
    assert np.isnan(post.max_rhat) and np.isnan(post.min_ess)
    assert post.warnings and "call .diagnose()" in post.warnings[0] and "call .diagnose()" in post.summary()
    done = post.diagnose()
    for f in ("max_rhat", "min_ess", "num_divergent", "status"):
        assert np.array_equal(np.asarray(getattr(done, f)), np.asarray(getattr(ref, f))), f
    assert done.warnings == ref.warnings == () and done.checked and bool(done.ok)


def test_batch_matches_exact_and_one_at_a_time(linear):
    problem, ys, means, cov = linear
    key = jax.random.key(3)
    # Started from a given θ (jittered per chain) rather than the prior. The adapted diagonal
    # metric: elementwise, it rounds alike batched or not (metric="laplace": tests/test_metric.py).
    post = ji.sample(problem, ys, key=key, init=jnp.ones(N), num_warmup=WARMUP, num_samples=DRAWS,
                     metric="diagonal")
    assert post.samples.shape == (3, 4, DRAWS, N)
    assert post.batch_shape == (3,) and post.status.shape == (3,)
    for i in range(3):
        _check_exact(post[i], means[i], cov)
    # Element i of the batch is the one-at-a-time call with the i-th split key.
    single = ji.sample(problem, ys[2], key=jax.random.split(key, 3)[2], init=jnp.ones(N),
                       num_warmup=WARMUP, num_samples=DRAWS, metric="diagonal")
    # Two programs (vmap width 3 and 1) round differently; on this Gaussian posterior the
    # leapfrog map does not amplify that, and an accept/U-turn decision would flip only on a
    # rounding-level tie, so the draws agree far inside 1e-6 (not bit for bit).
    np.testing.assert_allclose(post.samples[2], single.samples, rtol=1e-6, atol=1e-8)


@pytest.mark.slow
def test_two_batch_axes(linear):
    problem, ys, means, cov = linear
    post = ji.sample(problem, ys[:2].reshape(2, 1, M), key=jax.random.key(0), method="rwmh",
                     num_warmup=50, num_samples=20)
    assert post.samples.shape == (2, 1, 4, 20, N) and post.mean().shape == (2, 1, N)
    assert post.status.shape == (2, 1) and post[1, 0].samples.shape == (4, 20, N)
    # Observations in chunks (lax.map) give the same draws as one vmap over the batch.
    chunked = ji.sample(problem, ys[:2].reshape(2, 1, M), key=jax.random.key(0), method="rwmh",
                        num_warmup=50, num_samples=20, chunk_size=1)
    np.testing.assert_allclose(chunked.samples, post.samples, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_init_map(linear):
    problem, ys, means, cov = linear
    post = ji.sample(problem, ys[0], key=jax.random.key(2), init="map", num_warmup=WARMUP,
                     num_samples=DRAWS)
    _check_exact(post, means[0], cov)


def test_custom_blackjax_algorithm(linear):
    problem, ys, means, cov = linear

    def build(logdensity_fn):
        return blackjax.mala(logdensity_fn, step_size=0.1)

    post = ji.sample(problem, ys[0], key=jax.random.key(4), method=build, num_warmup=WARMUP,
                     num_samples=2000)
    _check_exact(post, means[0], cov)
    assert post.method == "build"


def test_dense_schedule():
    from blackjax.adaptation.window_adaptation import build_schedule

    from jinverse._samplers import _dense_schedule, dense_first_window

    assert dense_first_window(3) == 25 and dense_first_window(128) == 192
    # With Stan's first window (25) it is Stan's schedule.
    for n in (10, 100, 149, 150, 300, 500, 1000, 3000):
        np.testing.assert_array_equal(_dense_schedule(n, 25), build_schedule(n))
    for n, ends in ((300, [269]), (500, [266]), (1000, [266, 949]), (3000, [266, 650, 2949])):
        s = np.asarray(_dense_schedule(n, 192))
        assert s.shape == (n, 2)
        np.testing.assert_array_equal(np.flatnonzero(s[:, 1]), ends)
        # every slow window has at least 192 steps; the steps after the last one are fast
        sizes = np.diff(np.r_[np.flatnonzero(s[:, 0])[0] - 1, ends])
        assert np.all(sizes >= 192) and not s[ends[-1] + 1:, 0].any()


def test_dense_mass_on_a_correlated_posterior():
    # 20 unknowns (so the dense warmup's first window is 30 draws, longer than Stan's 25),
    # a strongly correlated exact posterior: a dense mass matrix makes it near-isotropic, so
    # NUTS needs far fewer leapfrog steps than with a diagonal one (an identity-like or
    # rank-deficient estimate would need hundreds).
    n = 20
    rng = np.random.default_rng(5)
    a = rng.normal(size=(n, n)) @ np.diag(np.geomspace(1, 30, n)) @ rng.normal(size=(n, n)) / n
    problem = ji.InverseProblem(jnp.asarray(a), ji.priors.Gaussian(jnp.zeros(n), 1.0),
                                ji.likelihoods.Gaussian(0.1))
    y = a @ rng.normal(size=n) + 0.1 * rng.normal(size=n)
    cov = np.linalg.inv(a.T @ a / 0.01 + np.eye(n))
    mean = cov @ a.T @ y / 0.01
    dense = ji.sample(problem, y, key=jax.random.key(6), num_warmup=WARMUP, num_samples=DRAWS,
                      dense_mass=True)
    sd = np.sqrt(np.diag(cov))
    ess = np.asarray(dense.ess())
    np.testing.assert_array_less(np.abs(np.asarray(dense.mean()) - mean), 5 * sd / np.sqrt(ess))
    np.testing.assert_array_less(np.abs(np.asarray(dense.std()) / sd - 1), 5 / np.sqrt(2 * ess))
    diag = ji.sample(problem, y, key=jax.random.key(6), num_warmup=WARMUP, num_samples=DRAWS,
                     metric="diagonal")
    steps_dense = float(np.mean(dense.stats.num_integration_steps))
    steps_diag = float(np.mean(diag.stats.num_integration_steps))
    # (measured: about 10 and 670 leapfrog steps per draw)
    assert steps_dense <= 16 and steps_diag > 10 * steps_dense


def _quad_moments(logpdf, lo, hi):
    z = integrate.quad(lambda x: np.exp(logpdf(x)), lo, hi)[0]
    m = integrate.quad(lambda x: x * np.exp(logpdf(x)), lo, hi)[0] / z
    v = integrate.quad(lambda x: (x - m) ** 2 * np.exp(logpdf(x)), lo, hi)[0] / z
    return z, m, v


def test_bounded_priors_against_quadrature():
    # θ = {"pos": LogNormal, "box": Uniform(0, 2)}, observed directly with Gaussian noise:
    # the posterior factorises, each marginal is a 1-D integral.
    prior = ji.priors.Joint({"pos": ji.priors.LogNormal(0.0, 0.5), "box": ji.priors.Uniform(0.0, 2.0)})
    s = 0.6
    problem = ji.InverseProblem(lambda t: jnp.stack([t["pos"], t["box"]]), prior,
                                ji.likelihoods.Gaussian(s))
    y = np.array([1.8, 1.7])
    post = ji.sample(problem, y, key=jax.random.key(5), num_warmup=WARMUP, num_samples=1000)
    pos, box = np.asarray(post.samples["pos"]), np.asarray(post.samples["box"])
    assert pos.shape == box.shape == (4, 1000)
    assert pos.min() > 0 and box.min() > 0 and box.max() < 2

    def lp_pos(x):
        return -0.5 * (np.log(x) / 0.5) ** 2 - np.log(x) - 0.5 * ((y[0] - x) / s) ** 2

    def lp_box(x):
        return -0.5 * ((y[1] - x) / s) ** 2

    ess = post.ess()
    for draws, lp, lo, hi, e in ((pos, lp_pos, 0, np.inf, ess["pos"]), (box, lp_box, 0, 2, ess["box"])):
        z, m, v = _quad_moments(lp, lo, hi)
        assert abs(draws.mean() - m) < 5 * np.sqrt(v / float(e))
        assert abs(draws.std() / np.sqrt(v) - 1) < 5 / np.sqrt(2 * float(e))
        # The marginal CDF at the exact median.
        med = m  # a point in the bulk; its exact CDF from the integral
        p = integrate.quad(lambda x: np.exp(lp(x)), lo, med)[0] / z
        assert abs(np.mean(draws <= med) - p) < 5 * np.sqrt(p * (1 - p) / float(e))


def test_multimodal_both_modes_visited():
    # y = θ² + noise with a symmetric prior: modes at ±1 separated by a deep valley.
    problem = ji.InverseProblem(lambda t: t**2, ji.priors.Gaussian(jnp.zeros(1), 1.0),
                                ji.likelihoods.Gaussian(0.1))
    with pytest.warns(SamplingWarning, match="R-hat"):
        post = ji.sample(problem, jnp.array([1.0]), key=jax.random.key(0), num_chains=8,
                         num_warmup=200, num_samples=200)
    draws = np.asarray(post.samples)[..., 0]
    assert np.mean(draws > 0) > 0.1 and np.mean(draws < 0) > 0.1
    np.testing.assert_allclose(np.abs(draws).mean(), 1.0, atol=0.05)
    # Chains sit in different modes: R-hat flags it.
    assert int(post.status) & Status.HIGH_RHAT
    assert any("R-hat" in w for w in post.warnings)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"key": 0}, TypeError, "key"),
        ({"num_chains": 0}, ValueError, "num_chains"),
        ({"num_samples": 2.5}, TypeError, "num_samples"),
        ({"method": "gibbs"}, ValueError, "method: got 'gibbs'.*chees.*mala.*nuts"),
        ({"init": "middle"}, ValueError, "init"),
        ({"init": jnp.ones(N + 1)}, ValueError, "init"),
        ({"jitter": -1.0}, ValueError, "jitter"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"target_acceptance_rate": [0.8]}, TypeError, "options"),
        ({"bogus": 1}, ValueError, "options: got 'bogus'.*nuts.*dense_mass.*target_acceptance_rate"),
        ({"method": "mala", "dense_mass": True}, ValueError, "options: got 'dense_mass'.*initial_step_size"),
        ({"block_size": 0}, ValueError, "block_size"),
        ({"mesh": "cpu"}, TypeError, "mesh"),
        ({"checkpoint_every": 5}, ValueError, "checkpoint_every"),
    ],
)
def test_bad_inputs(linear, kwargs, error, match):
    problem, ys, _, _ = linear
    args = {"key": jax.random.key(0), **kwargs}
    with pytest.raises(error, match=match):
        ji.sample(problem, ys[0], **args)


def test_bad_y_and_support():
    problem = ji.InverseProblem(lambda t: t, ji.priors.LogNormal(jnp.zeros(2), 1.0),
                                ji.likelihoods.Gaussian(1.0))
    with pytest.raises(ValueError, match="y: got shape"):
        ji.sample(problem, jnp.ones(3), key=jax.random.key(0))
    with pytest.raises(ValueError, match="support"):
        ji.sample(problem, jnp.ones(2), key=jax.random.key(0), init=-jnp.ones(2))
    scalar = ji.InverseProblem(lambda t: t, ji.priors.Gaussian(0.0, 1.0), ji.likelihoods.Gaussian(1.0))
    with pytest.raises(ValueError, match="mclmc"):
        ji.sample(scalar, jnp.ones(()), key=jax.random.key(0), method="mclmc")


def test_problem_must_be_an_inverse_problem(linear):
    _, ys, _, _ = linear
    before = sampling._TRACES["count"]
    with pytest.raises(TypeError, match="problem: got str"):
        ji.sample("not a problem", ys[0], key=jax.random.key(0))
    with pytest.raises(ValueError, match="options"):
        ji.sample(linear[0], ys[0], key=jax.random.key(0), bogus=1)
    assert sampling._TRACES["count"] == before  # refused before compiling


@pytest.fixture(scope="module")
def nan_model():
    """A forward undefined (NaN) beyond θ[0] > 1.5; a clean batch and one whose second
    observation's likelihood pulls θ[0] to 3, so its chains keep proposing into the NaN region.
    MALA: blackjax's kernel would reject a NaN proposal silently; ji.sample's flags it."""
    a = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)))

    def forward(t):
        return jnp.where(t[0] > 1.5, jnp.nan, a @ t)

    problem = ji.InverseProblem(forward, ji.priors.Gaussian(jnp.zeros(3), 1.0), ji.likelihoods.Gaussian(0.2))
    good = a @ jnp.array([0.2, -0.3, 0.1])
    bad = a @ jnp.array([3.0, 0.0, 0.0])
    args = dict(key=jax.random.key(0), method="mala", num_warmup=100, num_samples=50)
    clean_y = jnp.stack([good, 0.8 * good, 0.5 * good])
    with pytest.warns(SamplingWarning):  # (short chains: R-hat/ESS warnings only)
        clean = ji.sample(problem, clean_y, **args)
    return problem, clean_y, bad, args, clean


def test_fault_in_one_observation_is_flagged_and_isolated(nan_model):
    problem, clean_y, bad, args, clean = nan_model
    with pytest.warns(SamplingWarning, match="NaN/inf log-density"):
        faulty = ji.sample(problem, clean_y.at[1].set(bad), **args)
    status = np.asarray(faulty.status)
    assert status[1] & Status.DIVERGENCES and int(faulty.num_divergent[1]) > 0
    assert not status[0] & Status.DIVERGENCES and not status[2] & Status.DIVERGENCES
    assert not np.any(np.asarray(clean.status) & Status.DIVERGENCES)
    chain_ok = np.asarray(faulty.chain_ok)
    assert chain_ok.shape == (3, 4) and not chain_ok[1].all() and chain_ok[[0, 2]].all()
    # The other observations (same per-observation keys) are bit for bit the fault-free run's.
    for i in (0, 2):
        assert np.array_equal(faulty.samples[i], clean.samples[i])
        assert np.array_equal(faulty.stats.step_size[i], clean.stats.step_size[i])


class _ULAState(NamedTuple):
    position: jax.Array
    logdensity: jax.Array


def _ula(logdensity_fn, step_size=0.002):
    """Unadjusted Langevin: no accept step, so a NaN gradient makes NaN draws (a custom method)."""

    def step(key, state):
        g = jax.grad(logdensity_fn)(state.position)
        x = state.position + step_size * g + jnp.sqrt(2 * step_size) * jax.random.normal(key, g.shape)
        return _ULAState(x, logdensity_fn(x)), ()

    return blackjax.base.SamplingAlgorithm(lambda x: _ULAState(x, logdensity_fn(x)), step)


def test_nonfinite_draws_flagged_without_diagnosis():
    """A forward with a log term undefined beyond θ[0] > 1.5, observation 1 pulling θ[0] to 3:
    the unadjusted sampler's gradient turns NaN there and so do its draws (flagged without R-hat)."""
    a = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)))
    problem = ji.InverseProblem(lambda t: a @ t + 0.01 * jnp.log(1.5 - t[0]),
                                ji.priors.Gaussian(jnp.zeros(3), 1.0), ji.likelihoods.Gaussian(0.2))
    y = jnp.stack([a @ jnp.array([0.2, -0.3, 0.1]), a @ jnp.array([3.0, 0.0, 0.0]), a @ jnp.array([0.1, 0.1, 0.1])])
    with pytest.warns(SamplingWarning, match="non-finite draws in 1 of 3") as record:
        post = ji.sample(problem, y, key=jax.random.key(0), method=_ula, num_warmup=50, num_samples=20,
                         diagnose=False)
    assert not any("not computed" in str(w.message) for w in record)  # asked for: not warned
    status = np.asarray(post.status)
    assert status[1] & Status.NONFINITE and np.all(status & Status.UNCHECKED)
    assert status[0] == status[2] == Status.UNCHECKED and np.all(np.isnan(post.max_rhat))
    assert not np.isfinite(np.asarray(post.samples[1])).all() and np.isfinite(np.asarray(post.samples[0])).all()
    with pytest.warns(SamplingWarning, match="non-finite"):
        assert np.asarray(post.diagnose().status)[1] & Status.NONFINITE


@pytest.mark.slow  # two MCLMC compilations, ~20 s
def test_mclmc_options_reach_its_tuning(linear):
    """``desired_energy_var`` sets the step size that MCLMC's tuning looks for (it used to reach
    only the kernel, not the tuning: every value gave the same step size)."""
    problem, ys, _, _ = linear
    steps = [float(np.asarray(ji.sample(problem, ys[0], key=jax.random.key(0), method="mclmc", num_chains=1,
                                        num_warmup=200, num_samples=4, diagnose=False,
                                        desired_energy_var=v).stats.step_size).mean())
             for v in (1e-2, 1e-5)]
    assert steps[0] > 2 * steps[1], steps


@pytest.mark.slow  # two MCLMC compilations
def test_mclmc_draws_once_per_decoherence_length(linear):
    """By default a draw is ceil(L / ε) integration steps apart (one momentum decoherence
    length); ``steps_per_draw=1`` keeps every step, as blackjax's loop does."""
    problem, ys, means, cov = linear
    kw = dict(key=jax.random.key(2), method="mclmc", num_warmup=300, num_samples=500)
    auto = ji.sample(problem, ys[0], **kw)
    every = ji.sample(problem, ys[0], steps_per_draw=1, **kw)
    assert np.all(np.asarray(every.stats.num_integration_steps) == 1)
    assert np.all(np.asarray(auto.stats.num_integration_steps) >= 1)
    _check_exact(auto, means[0], cov, std_bias=0.03)
    assert float(np.min(auto.ess())) > float(np.min(every.ess()))


def test_energy_recorded_for_hamiltonian_samplers(linear):
    """NUTS records the Hamiltonian of each draw (ArviZ's BFMI and energy plot read it); a
    random walk has none (NaN)."""
    import arviz as az

    nuts, rwmh = _posterior(linear, "nuts"), _posterior(linear, "rwmh")
    assert np.all(np.isfinite(np.asarray(nuts.stats.energy)))
    assert np.all(np.isnan(np.asarray(rwmh.stats.energy)))
    bfmi = az.bfmi(nuts.to_arviz())
    assert bfmi.shape == (4,) and np.all(bfmi > 0.3)  # a Gaussian target: no heavy energy tails
