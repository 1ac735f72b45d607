"""SBI-benchmark tasks: simulators against sbibm's formulas, references against exact posteriors."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jinverse as ji
from jinverse.problems import reference as ref
from jinverse.problems import sbi

TASKS = ["gaussian_linear", "gaussian_linear_uniform", "two_moons", "slcp", "gaussian_mixture",
         "bernoulli_glm", "inverse_kinematics"]
THETA_DIM = {"gaussian_linear": 10, "gaussian_linear_uniform": 10, "two_moons": 2, "slcp": 5,
             "gaussian_mixture": 2, "bernoulli_glm": 10, "inverse_kinematics": 4}
Y_DIM = {"gaussian_linear": 10, "gaussian_linear_uniform": 10, "two_moons": 2, "slcp": 8,
         "gaussian_mixture": 2, "bernoulli_glm": 100, "inverse_kinematics": 2}


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    old = os.environ.get("JINVERSE_CACHE")
    os.environ["JINVERSE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("JINVERSE_CACHE")
    else:
        os.environ["JINVERSE_CACHE"] = old


@pytest.mark.parametrize("name", TASKS)
def test_shapes_seed_and_finite_log_posterior(name):
    b = ji.problems.load(name, reference=False)
    assert b.metric == "c2st"
    assert b.reference is None or "draws" not in b.reference
    assert b.y.shape == (Y_DIM[name],) and b.theta_true.shape == (THETA_DIM[name],)
    assert np.isfinite(float(b.problem.log_posterior(b.theta_true, b.y)))
    again = ji.problems.load(name, reference=False)
    np.testing.assert_array_equal(b.y, again.y)
    other = ji.problems.load(name, seed=1, reference=False)
    assert not np.array_equal(b.y, other.y)
    batch = ji.problems.load(name, batch=3, reference=False)
    assert batch.y.shape == (3, Y_DIM[name]) and batch.theta_true.shape == (3, THETA_DIM[name])
    # row 0 of a batch is the unbatched data (up to vectorised sin/cos rounding)
    np.testing.assert_allclose(batch.y[0], b.y, rtol=1e-13, atol=1e-15)
    assert batch.problem.check_y(batch.y)[1] == (3,)


def test_gaussian_linear_closed_form():
    b = sbi.gaussian_linear(num_reference=4000)
    # prior N(0, 0.1 I), noise N(0, 0.1 I): precision 20 I, mean = 10 y / 20
    cov = np.linalg.inv(np.linalg.inv(0.1 * np.eye(10)) + np.linalg.inv(0.1 * np.eye(10)))
    mean = cov @ (np.linalg.inv(0.1 * np.eye(10)) @ np.asarray(b.y))
    np.testing.assert_allclose(b.reference["posterior_mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(b.reference["posterior_cov"], cov, rtol=1e-12)
    d = np.asarray(b.reference["draws"])
    se = math.sqrt(0.05 / len(d))
    assert np.max(np.abs(d.mean(0) - mean)) < 5 * se
    # sd of a sample covariance entry: ~0.05 sqrt(2/n) (diagonal), 0.05/sqrt(n) (off-diagonal)
    assert np.max(np.abs(np.cov(d.T) - cov)) < 5 * 0.05 * math.sqrt(2 / len(d))


def test_gaussian_linear_uniform_is_truncated_normal():
    b = sbi.gaussian_linear_uniform(num_reference=4000)
    y, s = np.asarray(b.y), math.sqrt(0.1)
    tn = stats.truncnorm((-1 - y) / s, (1 - y) / s, loc=y, scale=s)
    d = np.asarray(b.reference["draws"])
    assert np.all(np.abs(d) <= 1)
    assert np.max(np.abs(d.mean(0) - tn.mean()) / tn.std()) < 5 / math.sqrt(len(d))
    # one coordinate's draws against the exact CDF
    first = stats.truncnorm((-1 - y[0]) / s, (1 - y[0]) / s, loc=y[0], scale=s)
    assert stats.kstest(d[:, 0], first.cdf).pvalue > 1e-3


def test_two_moons_simulator_matches_sbibm():
    theta = jax.random.uniform(jax.random.key(1), (50, 2), minval=-1, maxval=1)
    # sbibm's _map_fun: rotate by ang = -π/4, then (-|z0|, z1)
    c, s = math.cos(-math.pi / 4), math.sin(-math.pi / 4)
    t = np.asarray(theta)
    z0, z1 = c * t[:, 0] - s * t[:, 1], s * t[:, 0] + c * t[:, 1]
    np.testing.assert_allclose(jax.vmap(sbi.two_moons_map)(theta), np.stack([-np.abs(z0), z1], 1),
                               atol=1e-14)
    # the noise: p = y - g(θ) = (r cos a + 0.25, r sin a), a ~ U(-π/2, π/2), r ~ N(0.1, 0.01²)
    lk = sbi.TwoMoonsLikelihood()
    p = np.asarray(jax.vmap(lk.sample, (0, None))(jax.random.split(jax.random.key(2), 20000),
                                                  jnp.zeros(2)))
    r, a = np.hypot(p[:, 0] - 0.25, p[:, 1]), np.arctan2(p[:, 1], p[:, 0] - 0.25)
    assert abs(r.mean() - 0.1) < 5 * 0.01 / math.sqrt(len(r)) and abs(r.std() - 0.01) < 5e-4
    assert stats.kstest(a, stats.uniform(-math.pi / 2, math.pi).cdf).pvalue > 1e-3
    # its density integrates to one over the plane
    gx, gy = np.meshgrid(np.linspace(0.2, 0.4, 801), np.linspace(-0.15, 0.15, 1201), indexing="ij")
    pts = jnp.stack([gx.ravel(), gy.ravel()], 1)
    dens = np.exp(np.asarray(jax.jit(jax.vmap(lambda q: lk.log_prob(q, jnp.zeros(2))))(pts)))
    assert dens.sum() * 0.2 / 800 * 0.3 / 1200 == pytest.approx(1.0, abs=2e-3)


def _grid_moments(problem, y, lo, hi, n):
    g = np.linspace(lo, hi, n)
    gx, gy = np.meshgrid(g, g, indexing="ij")
    pts = jnp.stack([gx.ravel(), gy.ravel()], 1)
    lp = np.asarray(jax.jit(jax.vmap(lambda t: problem.log_posterior(t, y)))(pts))
    w = np.exp(lp - lp.max())
    w /= w.sum()
    pts = np.asarray(pts)
    mean = w @ pts
    return mean, (pts - mean).T @ ((pts - mean) * w[:, None])


@pytest.mark.parametrize("name,lo,hi,n", [("two_moons", -1, 1, 1201),
                                          ("gaussian_mixture", -10, 10, 1501)])
def test_rejection_reference_matches_grid_posterior(name, lo, hi, n):
    b = ji.problems.load(name, num_reference=4000)
    mean, cov = _grid_moments(b.problem, b.y, lo, hi, n)
    d = np.asarray(b.reference["draws"])
    se = np.sqrt(np.diag(cov) / len(d))
    assert np.all(np.abs(d.mean(0) - mean) < 5 * se + 1e-3)
    np.testing.assert_allclose(np.cov(d.T), cov, atol=5 * np.max(np.diag(cov)) * math.sqrt(2 / len(d)))


def test_inverse_kinematics_reference_matches_importance_weights():
    b = sbi.inverse_kinematics(num_reference=4000)
    t = np.array([0.1, 0.3, -0.2, 0.5])
    x1, a1, a2, a3 = t  # the arm written out: rail height, then three joints
    end = [x1 + 0.5 * np.sin(a1) + 0.5 * np.sin(a1 + a2) + np.sin(a1 + a2 + a3),
           0.5 * np.cos(a1) + 0.5 * np.cos(a1 + a2) + np.cos(a1 + a2 + a3)]
    np.testing.assert_allclose(sbi.arm_forward(jnp.asarray(t)), end, rtol=1e-14)
    d = np.asarray(b.reference["draws"])
    is_mean, is_sd, ess = _importance_moments(b, d)
    assert ess > 2000
    assert np.all(np.abs(d.mean(0) - is_mean) < 5 * is_sd * math.sqrt(1 / len(d) + 1 / ess))
    np.testing.assert_allclose(d.std(0), is_sd, rtol=0.1)


def _importance_moments(b, d, n=100_000, dependence=1.0):
    """Posterior mean and sd by self-normalised importance sampling, with a Student-t proposal
    (df 5) whose scale is twice the draws' covariance, and its effective sample size."""
    prop = stats.multivariate_t(d.mean(0), 2 * np.cov(d.T), df=5, seed=0)
    th = prop.rvs(n)
    lp = np.asarray(jax.jit(jax.vmap(lambda t: b.problem.log_posterior(t, b.y)))(jnp.asarray(th)))
    lw = lp - prop.logpdf(th)
    w = np.exp(lw - lw[np.isfinite(lw)].max())
    w = np.where(np.isfinite(w), w, 0.0)
    w /= w.sum()
    mean = w @ th
    return mean, np.sqrt(w @ (th - mean) ** 2), 1 / np.sum(w**2)


def test_slcp_likelihood_against_scipy():
    theta = jnp.array([0.5, -1.0, 1.2, -0.8, 0.7])
    lk = sbi.SLCPLikelihood()
    y = lk.sample(jax.random.key(3), sbi.slcp_params(theta))
    s1, s2, rho = 1.2**2, 0.8**2, math.tanh(0.7)
    cov = [[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]]
    exact = stats.multivariate_normal([0.5, -1.0], cov).logpdf(np.asarray(y).reshape(4, 2)).sum()
    assert float(lk.log_prob(y, sbi.slcp_params(theta))) == pytest.approx(exact, rel=1e-12)
    many = jax.vmap(lk.sample, (0, None))(jax.random.split(jax.random.key(4), 20000),
                                          sbi.slcp_params(theta)).reshape(-1, 2)
    np.testing.assert_allclose(np.cov(np.asarray(many).T), cov, rtol=0.05)
    # the four modes: the likelihood is even in θ₂ and θ₃
    flipped = theta * jnp.array([1, 1, -1, -1, 1])
    assert float(lk.log_prob(y, sbi.slcp_params(flipped))) == pytest.approx(exact, rel=1e-12)


def test_gaussian_mixture_likelihood_against_scipy():
    lk, theta, y = sbi.GaussianMixtureLikelihood(), jnp.array([0.3, -2.0]), jnp.array([0.1, -1.5])
    exact = np.log(0.5 * stats.multivariate_normal(theta, np.eye(2)).pdf(y)
                   + 0.5 * stats.multivariate_normal(theta, 0.01 * np.eye(2)).pdf(y))
    assert float(lk.log_prob(y, theta)) == pytest.approx(exact, rel=1e-12)


def test_bernoulli_glm_definition():
    prec = sbi.bernoulli_glm_precision()
    m = 9
    d = np.zeros((m, m))
    for i in range(m):
        d[i, i] = 1.0
        if i:
            d[i, i - 1] = -1.0
    f = d @ d + np.diag([math.sqrt(i / m) for i in range(m)])
    np.testing.assert_allclose(prec[1:, 1:], f.T @ f)
    assert prec[0, 0] == 0.5 and np.all(prec[0, 1:] == 0)
    x = sbi.bernoulli_glm_design()
    assert x.shape == (100, 10) and np.all(x[:, 0] == 1) and np.all(x[1:, 2] == x[:-1, 1])
    b = sbi.bernoulli_glm(reference=False)
    assert set(np.unique(np.asarray(b.y))) <= {0.0, 1.0}
    np.testing.assert_allclose(b.info["summary"], np.asarray(b.y) @ x)
    # log-likelihood: Σ y ψ - log(1 + e^ψ) with ψ = Xθ
    psi = x @ np.asarray(b.theta_true)
    ll = np.sum(np.asarray(b.y) * psi - np.logaddexp(0, psi))
    assert float(b.problem.log_likelihood(b.theta_true, b.y)) == pytest.approx(ll, rel=1e-12)


def test_reference_cache_builds_once():
    calls = []

    def build():
        calls.append(1)
        return np.arange(6.0).reshape(3, 2)

    a = ref.cached("unit", {"y": np.ones(2), "num": 3}, build)
    b = ref.cached("unit", {"y": np.ones(2), "num": 3}, build)
    c = ref.cached("unit", {"y": np.zeros(2), "num": 3}, build)
    assert len(calls) == 2 and np.array_equal(a, b) and np.array_equal(a, c)
    assert str(ref.cache_dir()) == os.environ["JINVERSE_CACHE"]


def test_convergence_diagnostics():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4, 1000, 2))
    assert np.all(np.abs(ref.split_rhat(iid) - 1) < 0.01)
    assert np.all(ref.ess(iid) > 0.6 * 4000)  # Geyer's truncation errs low for iid draws
    stuck = iid + np.array([0, 0, 0, 1.0])[:, None, None]
    assert np.all(ref.split_rhat(stuck) > 1.1)
    # AR(1) with coefficient φ: ESS ≈ n (1 - φ) / (1 + φ)
    phi, x = 0.8, np.zeros((4, 4000, 1))
    e = rng.normal(size=x.shape)
    for t in range(1, 4000):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    assert ref.ess(x)[0] == pytest.approx(16000 * (1 - phi) / (1 + phi), rel=0.25)
    arviz = pytest.importorskip("arviz")
    assert ref.ess(x)[0] == pytest.approx(float(arviz.ess(x[..., 0], method="mean")), rel=0.1)
    assert ref.split_rhat(stuck)[0] == pytest.approx(float(arviz.rhat(stuck[..., 0], method="split")),
                                                     rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["slcp", "bernoulli_glm"])
def test_nuts_reference_against_importance_sampling(name):
    b = ji.problems.load(name, num_reference=4000)
    d = np.asarray(b.reference["draws"])
    is_mean, is_sd, ess = _importance_moments(b, d, n=200_000)
    assert ess > 2000
    # the thinned NUTS draws are not independent: allow an ESS of a tenth of their number
    assert np.all(np.abs(d.mean(0) - is_mean) < 5 * is_sd * math.sqrt(10 / len(d) + 1 / ess))
    np.testing.assert_allclose(d.std(0), is_sd, rtol=0.1)


@pytest.mark.slow
def test_nuts_on_gaussian_linear_passes_c2st():
    # end to end: ji.sample's NUTS posterior is indistinguishable from the closed form
    b = ji.problems.load("gaussian_linear", batch=2, num_reference=4000)
    post = ji.sample(b.problem, b.y, key=jax.random.key(0), num_chains=4, num_samples=1000)
    out = ji.problems.evaluate(b, post)
    assert out["metric"] == "c2st" and out["value"].shape == (2,)
    assert np.all(out["value"] < 0.56)  # null sd 0.006 for 4,000 vs 4,000 (plus autocorrelation)
    wrong = ji.problems.load("gaussian_linear", batch=2, seed=1, num_reference=4000)
    assert np.all(ji.problems.evaluate(wrong, post)["value"] > 0.9)
