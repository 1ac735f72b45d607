"""ji.sample(..., metric=...): whitening by the Laplace approximation or a Gaussian prior.

The reference is the closed-form linear-Gaussian posterior N(mean, cov) of an ill-conditioned
12-unknown problem (precision condition number ~1e4 along random directions). Monte-Carlo tolerances: a mean to 5
standard errors (std / sqrt(bulk ESS)), a standard deviation to 5 of its standard errors
(std / sqrt(2 ESS) with the ESS of the squared deviations).
"""

import math

import blackjax.diagnostics as bd
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinverse as ji
from jinverse import metric
from jinverse.posterior import SamplingWarning, Status

N, M, SIGMA = 12, 20, 0.1
WARMUP, DRAWS = 300, 500


@pytest.fixture(scope="module")
def linear():
    rng = np.random.default_rng(0)
    # scales over two decades along random directions: no diagonal metric can undo them
    q = np.linalg.qr(rng.normal(size=(N, N)))[0]
    a = rng.normal(size=(M, N)) @ (q * np.logspace(0, -2, N)) @ q.T
    problem = ji.InverseProblem(jnp.asarray(a), ji.priors.Gaussian(jnp.zeros(N), 1.0),
                                ji.likelihoods.Gaussian(SIGMA))
    ys = (a @ rng.normal(size=(N, 2)) + SIGMA * rng.normal(size=(M, 2))).T
    cov = np.linalg.inv(a.T @ a / SIGMA**2 + np.eye(N))
    means = ys @ a @ cov / SIGMA**2  # (2, N)
    return problem, jnp.asarray(ys), means, cov


_cache = {}


def _sample(linear, **kw):
    problem, ys, _, _ = linear
    k = tuple(sorted(kw.items()))
    if k not in _cache:
        _cache[k] = ji.sample(problem, ys[0], key=jax.random.key(1), num_warmup=WARMUP,
                              num_samples=DRAWS, **kw)
    return _cache[k]


def _check_exact(post, mean, cov):
    ess = np.asarray(post.ess())
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_array_less(np.abs(np.asarray(post.mean()) - mean), 5 * sd / np.sqrt(ess))
    # the std's error follows the ESS of the squared deviations (NUTS's draws of a Gaussian are
    # antithetic for the mean, ESS > draws, but not for the variance)
    sq = (np.asarray(post.samples) - mean) ** 2  # (chains, draws, N)
    ess_sq = np.array([float(bd.effective_sample_size(jnp.asarray(sq[..., i]))) for i in range(N)])
    np.testing.assert_array_less(np.abs(np.asarray(post.std()) / sd - 1), 5 / np.sqrt(2 * ess_sq))


def test_laplace_whitening_is_the_exact_posterior(linear):
    problem, ys, means, cov = linear
    u_map = jnp.asarray(means[0])
    w = jax.jit(lambda y: metric.laplace(problem, y, u_map))(ys[0])
    assert bool(w.ok)
    np.testing.assert_allclose(w.scale @ w.scale.T, cov, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(w.log_det, 0.5 * np.linalg.slogdet(cov)[1], rtol=1e-10)
    z = jnp.arange(N, dtype=float) / N
    np.testing.assert_allclose(w.to_z(w.to_u(z)), z, atol=1e-9)
    # N(m, LLᵀ) in u is N(0, I) in z: the whitened log-density differs from -|z|²/2 by a constant
    ld = w.logdensity(lambda u: problem.log_density(u, ys[0]))
    diffs = [float(ld(z * s) + 0.5 * jnp.sum((z * s) ** 2)) for s in (0.0, 1.0, 3.0)]
    np.testing.assert_allclose(diffs, diffs[0], atol=1e-8)


def test_not_positive_definite_falls_back_to_identity():
    w = metric.from_precision(jnp.ones(3), jnp.diag(jnp.array([1.0, -1.0, 2.0])))
    assert not bool(w.ok)
    np.testing.assert_array_equal(w.scale, np.eye(3))
    np.testing.assert_array_equal(w.shift, np.zeros(3))
    assert not bool(metric.from_precision(jnp.ones(3), jnp.eye(3), ok=False).ok)


def test_laplace_metric_reproduces_the_exact_posterior(linear):
    _, _, means, cov = linear
    post = _sample(linear, metric="laplace")
    _check_exact(post, means[0], cov)
    assert int(post.status) == Status.OK


def test_auto_is_laplace_on_a_gaussian_problem(linear):
    problem = linear[0]
    assert metric.choose(problem, "nuts", N) == "laplace"
    assert metric.choose(problem, "nuts", metric.DENSE_MAX + 1) == "laplace"  # low-rank above
    assert metric.choose(problem, lambda ld: None, N) == "diagonal"
    student = ji.InverseProblem(problem.forward, problem.prior, ji.likelihoods.StudentT(SIGMA, 4.0))
    assert metric.choose(student, "nuts", N) == "diagonal"
    auto, laplace = _sample(linear), _sample(linear, metric="laplace")
    np.testing.assert_array_equal(auto.samples, laplace.samples)


def test_whitened_nuts_takes_few_leapfrog_steps(linear):
    # In z the posterior is N(0, I): every direction oscillates with period 2π, so a trajectory
    # U-turns within half a period (length π). NUTS's doubling stops at the first tree that
    # spans a U-turn, at most twice that length: steps per draw <= 2π / ε.
    post = _sample(linear, metric="laplace")
    eps = float(np.asarray(post.stats.step_size).min())
    steps = np.asarray(post.stats.num_integration_steps)
    assert steps.mean() <= 2 * math.pi / eps
    assert steps.max() <= 2 ** math.ceil(math.log2(2 * math.pi / eps + 1)) - 1
    # ... against the unwhitened posterior (condition number ~1e4), adapted diagonal metric
    diag = _sample(linear, metric="diagonal")
    assert steps.mean() < 0.5 * np.asarray(diag.stats.num_integration_steps).mean()


def test_prior_metric_and_dense_alias(linear):
    _, _, means, cov = linear
    _check_exact(_sample(linear, metric="prior"), means[0], cov)
    # dense_mass=True is the older spelling of metric="dense": the same program and draws
    dense = _sample(linear, metric="dense")
    np.testing.assert_array_equal(_sample(linear, dense_mass=True).samples, dense.samples)
    _check_exact(dense, means[0], cov)


def test_batch_equals_one_at_a_time(linear):
    problem, ys, means, cov = linear
    key = jax.random.key(3)
    post = ji.sample(problem, ys, key=key, metric="laplace", num_warmup=WARMUP, num_samples=DRAWS)
    assert post.samples.shape == (2, 4, DRAWS, N) and np.all(np.asarray(post.status) == 0)
    for i in range(2):
        _check_exact(post[i], means[i], cov)
    # Element i of the batch is the one-at-a-time call with the i-th split key, to rounding: the
    # batched MAP and dense products round differently in their last bits, and NUTS's discrete
    # trajectory choices amplify that over a long warmup, so the draws are compared after a
    # short one.
    kw = dict(metric="laplace", num_warmup=20, num_samples=10)
    short = ji.sample(problem, ys, key=key, **kw)
    single = ji.sample(problem, ys[1], key=jax.random.split(key, 2)[1], **kw)
    np.testing.assert_allclose(short.samples[1], single.samples, rtol=1e-7, atol=1e-9)


def test_a_lane_without_a_mode_falls_back_and_is_flagged(linear):
    problem, ys, means, cov = linear
    bad = ys.at[1].set(1e200)  # the objective overflows: no MAP for this observation
    with pytest.warns(ji.posterior.SamplingWarning, match="whitening metric not built"):
        post = ji.sample(problem, bad, key=jax.random.key(4), metric="laplace",
                         num_warmup=WARMUP, num_samples=DRAWS)
    status = np.asarray(post.status)
    assert status[1] & Status.METRIC_FALLBACK and not status[0] & Status.METRIC_FALLBACK
    _check_exact(post[0], means[0], cov)  # its neighbour is unaffected
    assert post[1].status & Status.METRIC_FALLBACK  # slicing keeps the flag
    assert post.diagnose().status[1] & Status.METRIC_FALLBACK  # and so does re-diagnosing


def test_checkpoint_resume_is_bit_identical_with_laplace(linear, tmp_path):
    problem, ys, _, _ = linear
    args = dict(key=jax.random.key(5), metric="laplace", num_warmup=100, num_samples=30)
    whole = ji.sample(problem, ys, **args)
    path = tmp_path / "run.npz"

    class Stop(Exception):
        pass

    def stop(done, total):
        if done >= 20:
            raise Stop

    with pytest.raises(Stop):
        ji.sample(problem, ys, checkpoint=path, checkpoint_every=10, progress=stop, **args)
    resumed = ji.sample(problem, ys, checkpoint=path, checkpoint_every=10, **args)
    assert np.array_equal(resumed.samples, whole.samples)
    assert np.array_equal(resumed.status, whole.status)
    with pytest.raises(ValueError, match=r"checkpoint: .* different settings \(metric differ"):
        ji.sample(problem, ys, checkpoint=path, checkpoint_every=10, **{**args, "metric": "prior"})


def test_bad_metric_arguments(linear):
    problem, ys, _, _ = linear
    kw = dict(key=jax.random.key(0), num_warmup=10, num_samples=10)
    with pytest.raises(ValueError, match=r"metric: got 'euclidean', expected one of \['auto'"):
        ji.sample(problem, ys[0], metric="euclidean", **kw)
    with pytest.raises(ValueError, match="metric: got 'dense' for method 'pcn', which adapts no dense mass"):
        ji.sample(problem, ys[0], method="pcn", metric="dense", **kw)
    with pytest.raises(ValueError, match="metric: got 'diagonal' for method 'gpcn', which is 'pcn' with"):
        ji.sample(problem, ys[0], method="gpcn", metric="diagonal", **kw)
    with pytest.raises(ValueError, match="dense_mass: got True with metric='laplace'"):
        ji.sample(problem, ys[0], metric="laplace", dense_mass=True, **kw)
    bounded = ji.InverseProblem(problem.forward, ji.priors.Uniform(jnp.zeros(N), jnp.ones(N)),
                                problem.likelihood)
    with pytest.raises(ValueError, match="metric: got 'prior' with a Uniform prior"):
        ji.sample(bounded, ys[0], metric="prior", **kw)
    improper = ji.InverseProblem(problem.forward, ji.priors.GMRF((N,), boundary="periodic"),
                                 problem.likelihood)
    with pytest.raises(ValueError, match="metric: got 'prior' with an improper prior"):
        ji.sample(improper, ys[0], metric="prior", **kw)


# -- above metric.DENSE_MAX: the prior's square root with a low-rank data update ------------------


@pytest.fixture
def lowrank_limits(monkeypatch):
    """metric.DENSE_MAX lowered below N, so the 12-unknown problem takes the low-rank path;
    JAX's caches cleared around it (the limit is read when a program is traced)."""
    jax.clear_caches()
    monkeypatch.setattr(metric, "DENSE_MAX", 4)
    yield monkeypatch
    jax.clear_caches()


@pytest.mark.parametrize("rank", [N, 5])
def test_lowrank_whitening_against_dense(linear, lowrank_limits, rank):
    problem, ys, means, cov = linear
    lowrank_limits.setattr(metric, "LOWRANK_RANK", rank)
    u_map = jnp.asarray(means[0])
    w = jax.jit(lambda y: metric.laplace(problem, y, u_map))(ys[0])
    assert isinstance(w, metric.LowRankWhitening) and bool(w.ok)
    scale = np.asarray(jax.vmap(w.to_u, in_axes=1, out_axes=1)(jnp.eye(N))) - np.asarray(u_map)[:, None]
    z = jnp.linspace(-1.0, 2.0, N)
    np.testing.assert_allclose(w.to_z(w.to_u(z)), z, atol=1e-9)
    if rank == N:  # every pair kept: the exact posterior covariance and log-determinant
        np.testing.assert_allclose(scale @ scale.T, cov, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(w.log_det, 0.5 * np.linalg.slogdet(cov)[1], rtol=1e-8)
    else:  # truncated: the covariance is only overstated (Γ_r - Γ is positive semi-definite)
        assert np.linalg.eigvalsh(scale @ scale.T - cov).min() > -1e-10
    # still an exact change of coordinates: the whitened density is the posterior's
    ld = w.logdensity(lambda u: problem.log_density(u, ys[0]))
    lp = jax.scipy.stats.multivariate_normal.logpdf
    vals = [float(ld(z * s)) - float(lp(w.to_u(z * s), u_map, cov)) for s in (0.0, 1.0, 2.0)]
    np.testing.assert_allclose(vals, vals[0], atol=1e-8)


def test_lowrank_laplace_metric_samples_the_exact_posterior(linear, lowrank_limits):
    """ji.sample keeps eigenpairs down to metric.LOWRANK_TOL (rank doubling from 2 here), then
    samples the exact posterior in those coordinates."""
    problem, ys, means, cov = linear
    from jinverse import lowrank

    lowrank_limits.setattr(lowrank, "_AUTO_START", 2)
    lam = np.linalg.eigvalsh(np.asarray(problem.forward.matrix).T @ np.asarray(problem.forward.matrix))[::-1] / SIGMA**2
    tol = float(lam[5])  # the 6th eigenvalue: 2 and 4 pairs are not enough, 8 are
    lowrank_limits.setattr(metric, "LOWRANK_TOL", tol)
    ranks = []
    factor = lowrank.laplace_lowrank
    lowrank_limits.setattr(lowrank, "laplace_lowrank",
                           lambda *a, **k: (ranks.append(factor(*a, **k)[0].rank), factor(*a, **k))[1])
    post = ji.sample(problem, ys[0], key=jax.random.key(3), num_warmup=WARMUP, num_samples=DRAWS)
    assert ranks == [8]
    assert int(post.status) == Status.OK
    _check_exact(post, means[0], cov)
    # the prior whitening alone (no pairs) runs too; 50 pCN draws of a data-dominated posterior
    # are far too few, and the sampler says so
    with pytest.warns(SamplingWarning, match="R-hat"):
        pcn = ji.sample(problem, ys[0], key=jax.random.key(3), method="pcn", num_warmup=200, num_samples=50)
    assert pcn.samples.shape[-1] == N


def test_lowrank_metric_refuses_a_non_gaussian_prior(linear, lowrank_limits):
    problem, ys, _, _ = linear
    laplace_prior = ji.InverseProblem(problem.forward, ji.priors.Laplace(jnp.zeros(N), 1.0),
                                      problem.likelihood)
    assert metric.choose(laplace_prior, "nuts", N) == "diagonal"
    with pytest.raises(ValueError, match="proper Gaussian prior above 4 unknowns"):
        ji.sample(laplace_prior, ys[0], key=jax.random.key(0), metric="laplace", num_warmup=10,
                  num_samples=10)
