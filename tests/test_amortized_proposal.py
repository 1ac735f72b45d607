"""q(θ | y) as the proposal of exact samplers (jinverse.amortized.proposal), against closed forms.

On y = A θ + e with θ ~ N(0, s0² I), e ~ N(0, s² I) the posterior is N(μ(y), Σ) exactly. The
proposals are Gaussians set by hand, N(μ(y) + shift, c² Σ): the exact posterior (c = 1, no
shift), one shifted by 3 posterior std (a bad q), one narrower (c = 0.5: lighter tails than the
posterior, so p/q is unbounded). Whatever q, the draws must have the posterior's mean and
covariance within Monte Carlo error (std / sqrt(ESS)); only the cost changes.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import jinverse as ji
from jinverse import amortized as am
from jinverse.amortized.estimators import MixtureNet, Normaliser
from jinverse.posterior import SamplingWarning
from jinverse.status import SamplingStatus

S0, S = 1.0, 0.3
A = np.array([[1.0, 0.5], [0.0, 1.0], [0.7, -0.4]])
COV = np.linalg.inv(A.T @ A / S**2 + np.eye(2) / S0**2)
GAIN = COV @ A.T / S**2  # μ(y) = GAIN y


def linear_problem():
    return ji.InverseProblem(jnp.asarray(A), ji.priors.Gaussian(jnp.zeros(2), S0), ji.likelihoods.Gaussian(S))



def _untrained(problem, net, norm):
    """A full-covariance MixtureDensity around ``net`` (built directly: no training)."""
    return am.MixtureDensity(problem, net, norm, jnp.zeros(0), am.fingerprint(problem),
                             (("kind", "mixture"), ("covariance", "full")))

def gaussian_q(problem, c=1.0, shift=(0.0, 0.0)):
    """A one-component `MixtureDensity` that is N(GAIN y + shift, c² COV) for every y: a linear
    shortcut for the mean, constant heads for the offset and the Cholesky factor."""
    net = MixtureNet(3, 2, 1, "full", 8, 1, jnp.float64, key=jax.random.key(0))
    L = c * np.linalg.cholesky(COV)
    rows, cols = np.tril_indices(2)
    # diagonal entries pass through exp(8 tanh(r / 8)): r = 8 artanh(log(l) / 8)
    raw = np.array([L[i, j] if i != j else 8 * np.arctanh(np.log(L[i, j]) / 8) for i, j in zip(rows, cols)])
    zero = jnp.zeros_like
    net = eqx.tree_at(
        lambda n: (n.skip.weight, n.means.weight, n.means.bias, n.scales.weight, n.scales.bias),
        net,
        (
            jnp.asarray(GAIN),
            zero(net.means.weight),
            jnp.asarray(shift, jnp.float64),
            zero(net.scales.weight),
            jnp.asarray(raw),
        ),
    )
    norm = Normaliser(jnp.zeros(3), jnp.ones(3), jnp.zeros(2), jnp.ones(2))
    return _untrained(problem, net, norm)


@pytest.fixture(scope="module")
def data():
    problem = linear_problem()
    _, y = am.simulate_pairs(problem, jax.random.key(7), 6)
    return problem, np.asarray(y)


def check_moments(draws, y, ess):
    """Mean within 5 MC standard errors (std / sqrt(ESS)); covariance entries within 5 standard
    errors of a sample covariance from ESS draws (sqrt((Σ_ii Σ_jj + Σ_ij²) / ESS))."""
    mean = np.asarray(y) @ GAIN.T
    flat = np.asarray(draws).reshape(len(y), -1, 2)
    se = np.sqrt(np.diag(COV))[None] / np.sqrt(np.asarray(ess))[:, None]
    assert np.all(np.abs(flat.mean(1) - mean) < 5 * se), (flat.mean(1) - mean) / se
    cov_se = np.sqrt((np.outer(np.diag(COV), np.diag(COV)) + COV**2)[None] / np.asarray(ess)[:, None, None])
    covs = np.stack([np.cov(f.T) for f in flat])
    assert np.all(np.abs(covs - COV) < 5 * cov_se), (covs - COV) / cov_se


def test_independence_exact_q_accepts_everything(data):
    problem, y = data
    post = am.independence_sample(gaussian_q(problem), y, jax.random.key(1))
    assert isinstance(post, ji.Posterior) and post.method == "independence"
    assert post.samples.shape == (6, 4, 1000, 2) and post.stats.acceptance_rate.shape == (6, 4, 1000)
    # p/q is constant (= p(y)): every proposal is accepted, the draws are independent
    np.testing.assert_allclose(np.asarray(post.stats.acceptance_rate), 1.0, rtol=1e-9)
    assert bool(jnp.all(post.ok)) and post.status.shape == (6,)
    assert float(jnp.min(post.min_ess)) > 3000  # 4000 independent draws
    check_moments(post.samples, y, post.min_ess)
    # one observation without batch axes: that observation's lane key gives the same draws
    one = am.independence_sample(gaussian_q(problem), y[0], jax.random.split(jax.random.key(1), 6)[0])
    np.testing.assert_allclose(np.asarray(one.samples), np.asarray(post.samples[0]), rtol=1e-12)


@pytest.mark.filterwarnings("ignore:R-hat above")  # sticky chains of a light-tailed q: R-hat ~1.01
@pytest.mark.parametrize(
    "name, c, shift, local",
    [
        ("shifted by 3 std", 1.0, 3.0, 2),
        ("lighter tails (c = 0.5)", 0.5, 0.0, 2),
        ("heavier tails (c = 2)", 2.0, 0.0, 0),
    ],
)
def test_independence_bad_q_still_exact(data, name, c, shift, local):
    """A bad q lowers the acceptance rate (and the ESS), not the accuracy: draws match the
    closed form within their own Monte Carlo error. Heavier tails (p/q bounded): IMH alone is
    uniformly ergodic; lighter or shifted ones get local random-walk moves."""
    problem, y = data
    q = gaussian_q(problem, c, shift * np.sqrt(np.diag(COV)))
    post = am.independence_sample(q, y, jax.random.key(2), local_steps=local)
    rate = float(jnp.mean(post.stats.acceptance_rate))
    assert rate < 0.8, (name, rate)  # a worse q: fewer proposals accepted
    assert bool(jnp.all(post.max_rhat < 1.05)), post.max_rhat
    check_moments(post.samples, y, post.min_ess)
    assert int(post.stats.num_integration_steps[0, 0, 0]) == 1 + local


def test_independence_acceptance_tracks_q(data):
    """A far-off q (10 std) leaves pure IMH's chains stuck: flagged (status not OK), not
    silently returned."""
    problem, y = data
    far = gaussian_q(problem, 1.0, 10 * np.sqrt(np.diag(COV)))
    with pytest.warns(SamplingWarning):
        post = am.independence_sample(far, y, jax.random.key(3))
    assert float(jnp.mean(post.stats.acceptance_rate)) < 0.01
    assert not bool(jnp.any(post.ok))
    assert np.all(np.asarray(post.status) & int(SamplingStatus.LOW_ESS))


def test_smc_from_exact_q_is_one_stage_with_the_exact_evidence(data):
    problem, y = data
    post = am.smc_sample(gaussian_q(problem), y, jax.random.key(4), num_chains=2, num_samples=1000)
    assert post.method == "smc" and post.samples.shape == (6, 2, 1000, 2)
    # the weights p/q are all p(y): β = 1 at the first stage, log mean w = log p(y) exactly
    np.testing.assert_array_equal(np.asarray(post.smc.num_stages), 1)
    marg = scipy.stats.multivariate_normal(np.zeros(3), S0**2 * A @ A.T + S**2 * np.eye(3))
    np.testing.assert_allclose(np.asarray(post.log_evidence), marg.logpdf(y), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(post.smc.final_ess), 2000, rtol=1e-9)
    assert bool(jnp.all(post.ok))
    # the particles after the final resampling and moves: correlated copies, so at least
    # ~1/4 of them effective (20 random-walk moves at acceptance ~0.3-0.5)
    check_moments(post.samples, y, np.full(6, 500.0))


def test_smc_from_a_bad_q_takes_more_stages_not_a_wrong_answer(data):
    problem, y = data
    exact = am.smc_sample(gaussian_q(problem), y, jax.random.key(5), num_chains=2, num_samples=1000)
    bad = am.smc_sample(
        gaussian_q(problem, 0.5, 3 * np.sqrt(np.diag(COV))),
        y,
        jax.random.key(5),
        num_chains=2,
        num_samples=1000,
    )
    assert bool(jnp.all(bad.smc.num_stages > exact.smc.num_stages)) and bool(jnp.all(bad.smc.beta == 1))
    check_moments(bad.samples, y, np.full(6, 500.0))
    # the evidence estimate: unbiased in p(y); each stage's log mean weight has a relative
    # error ~ 1/sqrt(ESS) with ESS ~ target_ess x particles (0.5 x 2000), so the log evidence
    # sd ~ sqrt(stages / 1000): within 5 of them
    marg = scipy.stats.multivariate_normal(np.zeros(3), S0**2 * A @ A.T + S**2 * np.eye(3))
    err = np.abs(np.asarray(bad.log_evidence) - marg.logpdf(y))
    assert np.all(err < 5 * np.sqrt(np.asarray(bad.smc.num_stages) / 1000)), (err, bad.smc.num_stages)


@pytest.mark.slow  # compiles prior-started SMC too (~20 s of CPU)
def test_smc_from_q_takes_fewer_stages_than_from_the_prior(data):
    problem, y = data
    q = gaussian_q(problem, 1.5, 0.5 * np.sqrt(np.diag(COV)))  # a q as good as a trained one, not exact
    from_q = am.smc_sample(q, y, jax.random.key(5), num_chains=2, num_samples=1000)
    prior = ji.sample(problem, y, key=jax.random.key(5), method="smc", num_chains=2, num_samples=1000)
    assert float(jnp.mean(from_q.smc.num_stages)) < float(jnp.mean(prior.smc.num_stages))
    check_moments(from_q.samples, y, np.full(6, 500.0))


def test_importance_result_status(data):
    problem, y = data
    good = am.importance_sample(gaussian_q(problem), y, jax.random.key(6), num=500)
    assert bool(jnp.all(good.ok)) and good.status.dtype == jnp.int32 and good.status.shape == (6,)
    far = am.importance_sample(
        gaussian_q(problem, 1.0, 6 * np.sqrt(np.diag(COV))), y, jax.random.key(6), num=500
    )
    assert not bool(jnp.any(far.ok))
    np.testing.assert_array_equal(np.asarray(far.status), int(SamplingStatus.LOW_ESS))
    few = am.importance_sample(gaussian_q(problem), y, jax.random.key(6), num=50)  # ESS 50 < 100
    assert not bool(jnp.any(few.ok))


def test_bad_inputs(data):
    problem, y = data
    q = gaussian_q(problem)
    with pytest.raises(TypeError, match="q: got str"):
        am.independence_sample("q", y, jax.random.key(0))
    with pytest.raises(TypeError, match="q: got int"):
        am.smc_sample(3, y, jax.random.key(0))
    with pytest.raises(ValueError, match="local_steps: got -1"):
        am.independence_sample(q, y, jax.random.key(0), local_steps=-1)
    with pytest.raises(ValueError, match="num_samples: got 2"):
        am.independence_sample(q, y, jax.random.key(0), num_samples=2)
    with pytest.raises(ValueError, match=r"y: got shape \(4, 2\)"):
        am.independence_sample(q, np.zeros((4, 2)), jax.random.key(0))
    with pytest.raises(TypeError, match="key: got"):
        am.independence_sample(q, y, 0)
    with pytest.raises(ValueError, match="options: got 'steps'"):
        am.smc_sample(q, y, jax.random.key(0), steps=3)
    assert math.isfinite(float(q.log_prob(jnp.zeros(2), y[0])))


def test_independence_on_a_bounded_prior_matches_quadrature():
    """θ ~ Uniform(-1, 1)², y = θ + N(0, 0.5² I): the chains run in the unconstrained u (q's space,
    a logit map); an untrained q (random weights) still gives the posterior mean of θ, which a
    midpoint rule on a fine grid gives independently."""
    problem = ji.InverseProblem(
        lambda t: t, ji.priors.Uniform(-jnp.ones(2), jnp.ones(2)), ji.likelihoods.Gaussian(0.5)
    )
    net = MixtureNet(2, 2, 2, "full", 8, 1, jnp.float64, key=jax.random.key(0))
    norm = Normaliser(jnp.zeros(2), jnp.ones(2), jnp.zeros(2), jnp.ones(2))
    q = _untrained(problem, net, norm)
    y = np.array([[0.8, -0.3], [1.4, 0.2]])
    post = am.independence_sample(q, y, jax.random.key(8), local_steps=2)
    h = 2 / 400
    g = np.arange(-1 + h / 2, 1, h)
    for i in range(2):  # independent coordinates: a 1-D midpoint rule each
        for j in range(2):
            w = np.exp(-0.5 * ((y[i, j] - g) / 0.5) ** 2)
            mean, sd = (
                np.sum(w * g) / np.sum(w),
                np.sqrt(np.sum(w * g**2) / np.sum(w) - (np.sum(w * g) / np.sum(w)) ** 2),
            )
            est = float(np.mean(np.asarray(post.samples[i, ..., j])))
            assert abs(est - mean) < 5 * sd / np.sqrt(float(post.min_ess[i])), (i, j, est, mean)
    assert bool(jnp.all(post.max_rhat < 1.05))
    assert np.all(np.abs(np.asarray(post.samples)) < 1)
