"""C2ST and MMD against closed forms, and `ji.problems.evaluate` on point and sample results."""

import math
import types

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

import jinverse as ji
from jinverse.problems.metrics import c2st, median_bandwidth, mmd

RNG = np.random.default_rng(0)


def test_c2st_same_distribution_is_chance():
    a, b = RNG.normal(size=(1500, 2)), RNG.normal(size=(1500, 2))
    # 3,000 held-out predictions: sd of the accuracy 0.009 under the null
    assert abs(c2st(a, b) - 0.5) < 0.04


def test_c2st_disjoint_is_one():
    a, b = RNG.normal(size=(1500, 2)), RNG.normal(size=(1500, 2)) + 6.0
    assert c2st(a, b) > 0.99


def test_c2st_matches_bayes_accuracy_of_a_shift():
    # N(0, 1) vs N(1, 1): the best classifier thresholds at 1/2, accuracy Φ(1/2) = 0.691
    a, b = RNG.normal(size=(1500, 2)), RNG.normal(size=(1500, 2)) + np.array([1.0, 0.0])
    assert abs(c2st(a, b) - norm.cdf(0.5)) < 0.04  # sd 0.008 + a little underfitting


def _mmd_numpy(x, y, h):
    def k(u, v):
        return np.exp(-((u[:, None] - v[None]) ** 2).sum(-1) / (2 * h * h))

    kxx, kyy = k(x, x), k(y, y)
    np.fill_diagonal(kxx, 0)
    np.fill_diagonal(kyy, 0)
    n, m = len(x), len(y)
    return kxx.sum() / (n * (n - 1)) + kyy.sum() / (m * (m - 1)) - 2 * k(x, y).mean()


def test_mmd_equals_direct_formula():
    x, y = RNG.normal(size=(300, 2)), RNG.normal(size=(257, 2)) + 0.5  # 257: a partial block
    assert mmd(x, y, bandwidth=0.8) == pytest.approx(_mmd_numpy(x, y, 0.8), rel=1e-10)
    z = np.concatenate([x, y])
    d = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))[np.triu_indices(len(z), 1)]
    assert median_bandwidth(z) == pytest.approx(np.median(d), rel=1e-12)


def test_mmd_gaussians_closed_form():
    # x ~ N(0, I), y ~ N(Δ, I) in d dims, kernel bandwidth h:
    # MMD² = 2 (h²/(h²+2))^{d/2} (1 - exp(-|Δ|²/(2(h²+2))))
    d, h, delta = 2, 1.5, np.array([1.0, 0.0])
    x, y = RNG.normal(size=(3000, d)), RNG.normal(size=(3000, d)) + delta
    exact = 2 * (h**2 / (h**2 + 2)) ** (d / 2) * (1 - math.exp(-delta @ delta / (2 * (h**2 + 2))))
    assert mmd(x, y, bandwidth=h) == pytest.approx(exact, abs=0.01)
    same = mmd(x, RNG.normal(size=(3000, d)))
    assert abs(same) < 0.003 < mmd(x, y)


def test_metric_bad_input():
    with pytest.raises(ValueError, match="dimensions"):
        mmd(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        c2st(np.full((5, 2), np.nan), np.zeros((5, 2)))


# ---------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    import os

    old = os.environ.get("JINVERSE_CACHE")
    os.environ["JINVERSE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield ji.problems.load("gaussian_linear", batch=2, dim=2, num_reference=1500)
    if old is None:
        os.environ.pop("JINVERSE_CACHE")
    else:
        os.environ["JINVERSE_CACHE"] = old


def test_evaluate_point_estimate(linear):
    est = linear.reference["posterior_mean"]
    out = ji.problems.evaluate(linear, types.SimpleNamespace(theta=est))
    t = np.asarray(linear.theta_true)
    assert out["metric"] == "rmse"  # a point estimate cannot be scored by C2ST
    np.testing.assert_allclose(out["value"], np.sqrt(np.mean((np.asarray(est) - t) ** 2, -1)))
    rel = ji.problems.evaluate(linear, est, metric="rel_error")["value"]
    np.testing.assert_allclose(rel, np.linalg.norm(est - t, axis=-1) / np.linalg.norm(t, axis=-1))
    assert rel.shape == (2,)


def test_evaluate_posterior(linear):
    draws = np.asarray(linear.reference["draws"])  # (batch, num_reference, θ)
    mean, std = np.asarray(linear.reference["posterior_mean"]), math.sqrt(0.05)
    fresh = mean[:, None, None, :] + std * RNG.normal(size=(2, 2, 750, 2))  # (batch, chains, draws, θ)
    good = ji.problems.evaluate(linear, types.SimpleNamespace(samples=fresh))
    assert good["metric"] == "c2st" and good["value"].shape == (2,)
    assert np.all(np.abs(good["value"] - 0.5) < 0.04)
    wide = types.SimpleNamespace(samples=mean[:, None, None, :] + 3 * std * RNG.normal(size=(2, 2, 750, 2)))
    m_good = ji.problems.evaluate(linear, types.SimpleNamespace(samples=fresh), metric="mmd")["value"]
    m_wide = ji.problems.evaluate(linear, wide, metric="mmd")["value"]
    assert np.all(np.abs(m_good) < 0.01) and np.all(m_wide > 0.05)
    assert draws.shape == (2, 1500, 2)


def test_evaluate_laplace_approximation(linear):
    # the Laplace approximation is exact for this linear-Gaussian problem
    approx = ji.laplace(linear.problem, linear.y)
    out = ji.problems.evaluate(linear, approx, num_draws=1500)
    assert out["metric"] == "c2st" and np.all(np.abs(out["value"] - 0.5) < 0.04)


def test_evaluate_errors(linear):
    with pytest.raises(ValueError, match="metric"):
        ji.problems.evaluate(linear, linear.theta_true, metric="nope")
    with pytest.raises(ValueError, match="batch shape"):
        ji.problems.evaluate(linear, types.SimpleNamespace(samples=jnp.zeros((3, 1, 10, 2))))
    with pytest.raises(TypeError, match="result"):
        ji.problems.evaluate(linear, object())


def test_evaluate_image_theta():
    # θ an (4, 5) image: errors are taken over all its pixels
    truth = RNG.normal(size=(4, 5))
    problem = ji.InverseProblem(lambda t: t.sum(0), ji.priors.Gaussian(jnp.zeros((4, 5)), 1.0),
                                ji.likelihoods.Gaussian(0.1))
    b = ji.Benchmark("image", problem, jnp.zeros(5), jnp.asarray(truth))
    est = truth + 0.1 * RNG.normal(size=(4, 5))
    out = ji.problems.evaluate(b, types.SimpleNamespace(theta=est))
    assert isinstance(out["value"], float)
    assert out["value"] == pytest.approx(np.linalg.norm(est - truth) / np.linalg.norm(truth), rel=1e-12)
    draws = truth + 0.1 * RNG.normal(size=(2, 50, 4, 5))
    rmse = ji.problems.evaluate(b, types.SimpleNamespace(samples=draws), metric="rmse")["value"]
    assert rmse == pytest.approx(np.sqrt(np.mean((draws.mean((0, 1)) - truth) ** 2)), rel=1e-12)
