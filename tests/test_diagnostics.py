"""ji.diagnostics.sbc: simulation-based calibration (Talts et al. 2018).

Fast tests check the rank statistics against SciPy, the ranks on a hand-made case, that SBC
passes an exact sampler (the closed-form linear-Gaussian posterior, `ji.linear`) and flags
deliberately miscalibrated ones. The slow tests run SBC of every `ji.sample` method on three
problems (linear-Gaussian, a bounded Uniform prior, a nonlinear exponential decay with a
LogNormal prior).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jinverse as ji
from jinverse.diagnostics import chi2_sf, rank_statistics

LEVEL = 0.01


def _linear_problem():
    a = np.random.default_rng(0).normal(size=(4, 2))
    return ji.InverseProblem(jnp.asarray(a), ji.priors.Gaussian(jnp.zeros(2), 1.0),
                             ji.likelihoods.Gaussian(0.5))


@pytest.fixture(scope="module")
def linear():
    return _linear_problem()


def _exact(scale=1.0, shift=0.0, draws=99):
    """Exact linear-Gaussian posterior draws, optionally narrowed/widened or shifted (in sds)."""

    def sampler(problem, ys, key):
        post = ji.linear.linear_gaussian(problem, ys)
        x = post.sample(key, (draws,))  # (S, draws, n)
        sd = jnp.sqrt(jnp.diag(post.covariance()))
        return post.mean[:, None] + scale * (x - post.mean[:, None]) + shift * sd

    return sampler


# -- the statistics ------------------------------------------------------------------------
@pytest.mark.parametrize("dof", [1, 4, 19])
def test_chi2_sf_matches_scipy(dof):
    x = np.array([0.01, 0.5, dof, 3.0 * dof + 2.0, 60.0])
    np.testing.assert_allclose(np.asarray(chi2_sf(x, dof)), stats.chi2.sf(x, dof), rtol=1e-10)


@pytest.mark.parametrize("num_draws, num_bins", [(99, 10), (50, 7)])
def test_rank_statistics_match_scipy_chisquare(num_draws, num_bins):
    ranks = np.random.default_rng(1).integers(0, num_draws + 1, size=(80, 3))
    counts, expected, chi2, p = rank_statistics(ranks, num_draws, num_bins)
    assert counts.shape == (3, num_bins) and np.all(counts.sum(axis=1) == 80)
    assert expected.sum() == pytest.approx(80)
    for j in range(3):
        ref = stats.chisquare(counts[j], expected)
        assert chi2[j] == pytest.approx(ref.statistic, rel=1e-12)
        assert p[j] == pytest.approx(ref.pvalue, rel=1e-9)
    # 51 rank values in 7 bins: the bins hold 8 or 7 values and the expected counts say so.
    if num_draws == 50:
        assert sorted(set(np.round(expected * 51 / 80).astype(int).tolist())) == [7, 8]


def test_ranks_by_hand(linear):
    """Draws 0..9 for every simulation: the rank of θ* is the number of draws below it."""

    def grid(problem, ys, key):
        return jnp.broadcast_to(jnp.arange(10.0)[None, :, None] - 4.5, (ys.shape[0], 10, 2))

    res = ji.diagnostics.sbc(linear, key=jax.random.key(3), sampler=grid, num_simulations=30)
    truth = np.asarray(res.theta)
    expect = np.clip(np.floor(truth + 5.5), 0, 10).astype(int)
    np.testing.assert_array_equal(res.ranks, expect)
    assert res.num_draws == 10 and res.names == ("θ[0]", "θ[1]")
    np.testing.assert_array_equal(res.status, np.zeros(30))
    assert np.all(res.ok)
    assert res.y.shape == (30, 4)


def test_thin_takes_every_kth_draw(linear):
    seen = {}

    def constant(problem, ys, key):
        d = jnp.broadcast_to(jnp.arange(12.0)[None, :, None], (ys.shape[0], 12, 2))
        seen["draws"] = d
        return d

    res = ji.diagnostics.sbc(linear, key=jax.random.key(4), sampler=constant, num_simulations=10, thin=3)
    assert res.num_draws == 4  # draws 0, 3, 6, 9
    truth = np.asarray(res.theta)
    np.testing.assert_array_equal(res.ranks, np.sum(np.array([0, 3, 6, 9])[None, None] < truth[..., None], -1))


# -- calibrated and miscalibrated samplers ---------------------------------------------------
@pytest.fixture(scope="module")
def exact_runs(linear):
    runs = {}
    for name, kw in {"exact": {}, "narrow": {"scale": 0.6}, "wide": {"scale": 1.6},
                     "biased": {"shift": 0.4}}.items():
        runs[name] = ji.diagnostics.sbc(linear, key=jax.random.key(7), sampler=_exact(**kw),
                                        num_simulations=300, level=LEVEL)
    return runs


def test_sbc_passes_exact_sampler(exact_runs):
    res = exact_runs["exact"]
    assert res.passed, str(res)
    assert res.ranks.shape == (300, 2) and res.num_draws == 99 and res.num_bins == 20
    assert np.all((res.ranks >= 0) & (res.ranks <= 99))
    assert "passed" in str(res) and "θ[1]" in str(res)


@pytest.mark.parametrize("kind", ["narrow", "wide", "biased"])
def test_sbc_detects_miscalibration(exact_runs, kind):
    res = exact_runs[kind]
    assert not res.passed
    assert np.all(res.p_values < LEVEL / 2), res.p_values
    assert "FAILED" in str(res) and "not uniform" in str(res)
    ends = res.counts[:, [0, -1]].sum(axis=1)
    middle = res.counts[:, res.num_bins // 2 - 1: res.num_bins // 2 + 1].sum(axis=1)
    if kind == "narrow":  # too narrow: true values fall outside the draws
        assert np.all(ends > 3 * middle)
    elif kind == "wide":  # too wide: true values sit in the middle
        assert np.all(middle > 3 * ends)
    else:  # shifted up by 0.4 sd: a true value is below the draws' median with prob Φ(0.4)
        frac = res.counts[:, : res.num_bins // 2].sum(1) / 300
        np.testing.assert_array_less(np.abs(frac - stats.norm.cdf(0.4)), 4 * np.sqrt(0.655 * 0.345 / 300))


def test_sbc_pytree_theta_and_nonfinite_draws():
    """Component names follow the pytree; a sampler with NaN draws never passes."""
    prior = ji.priors.Joint({"a": ji.priors.Gaussian(jnp.zeros(2), 1.0), "b": ji.priors.HalfNormal(1.0)})
    problem = ji.InverseProblem(lambda t: t["a"] * t["b"], prior, ji.likelihoods.Gaussian(1.0))

    def prior_draws(problem, ys, key):  # the prior is a calibrated (if useless) posterior
        t = problem.sample_prior(key, (ys.shape[0], 50))
        return t

    res = ji.diagnostics.sbc(problem, key=jax.random.key(0), sampler=prior_draws, num_simulations=200)
    assert res.names == ("a[0]", "a[1]", "b") and res.ranks.shape == (200, 3)
    assert res.passed, str(res)

    def with_nan(problem, ys, key):
        t = prior_draws(problem, ys, key)
        return {"a": t["a"].at[0, 0, 0].set(jnp.nan), "b": t["b"]}

    bad = ji.diagnostics.sbc(problem, key=jax.random.key(0), sampler=with_nan, num_simulations=200)
    assert bad.num_nonfinite == 1 and not bad.passed and "non-finite" in str(bad)
    assert bad.status[0] == ji.posterior.Status.NONFINITE and not bad.ok[0] and np.all(bad.ok[1:])


def test_sbc_is_deterministic(linear):
    a = ji.diagnostics.sbc(linear, key=jax.random.key(5), sampler=_exact(), num_simulations=20)
    b = ji.diagnostics.sbc(linear, key=jax.random.key(5), sampler=_exact(), num_simulations=20)
    np.testing.assert_array_equal(a.ranks, b.ranks)
    np.testing.assert_array_equal(a.p_values, b.p_values)


def test_sbc_checks_the_sampler_output(linear):
    with pytest.raises(ValueError, match=r"sampler: returned draws of shape \(10, 5\), expected \(10, draws, 2\)"):
        ji.diagnostics.sbc(linear, key=jax.random.key(0), num_simulations=10,
                           sampler=lambda p, y, k: jnp.zeros((10, 5)))


# -- every sampler on three problems (slow) ----------------------------------------------------
def _bounded_problem():
    """Uniform box prior; the likelihood often puts mass against the box's edges."""
    a = jnp.array([[1.0, 1.0], [1.0, -1.0], [2.0, 0.0]])
    return ji.InverseProblem(a, ji.priors.Uniform(jnp.zeros(2), jnp.ones(2)), ji.likelihoods.Gaussian(0.3))


def _nonlinear_problem():
    """Exponential decay ``A exp(-k t)`` with LogNormal priors on the amplitude and rate."""
    t = jnp.linspace(0.0, 3.0, 6)
    return ji.InverseProblem(lambda th: th[0] * jnp.exp(-th[1] * t),
                             ji.priors.LogNormal(jnp.zeros(2), 0.5), ji.likelihoods.Gaussian(0.1))


PROBLEMS = {"linear": _linear_problem, "bounded": _bounded_problem, "nonlinear": _nonlinear_problem}
# (num_chains, num_warmup, num_samples, thin): thin to about one draw per effective sample.
SETTINGS = {
    "nuts": (2, 300, 200, 2),
    "hmc": (2, 300, 200, 2),
    "chees": (4, 300, 100, 2),
    "mala": (2, 500, 400, 4),
    "mclmc": (2, 500, 400, 4),
    "rwmh": (2, 500, 1000, 10),
}


@pytest.mark.slow
@pytest.mark.parametrize("problem_name", list(PROBLEMS))
@pytest.mark.parametrize("method", list(SETTINGS))
def test_sbc_every_sampler(method, problem_name):
    chains, warmup, draws, thin = SETTINGS[method]
    res = ji.diagnostics.sbc(PROBLEMS[problem_name](), key=jax.random.key(11), sampler=method,
                             num_simulations=100, thin=thin, num_chains=chains, num_warmup=warmup,
                             num_samples=draws, level=LEVEL)
    assert res.num_nonfinite == 0
    assert res.passed, f"{method} on {problem_name}:\n{res}"
