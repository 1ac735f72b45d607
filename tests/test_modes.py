"""`ji.find_modes` (multi-start MAP, Laplace evidence per mode, mixture of Laplace) and
``ji.sample(..., init="modes")`` against quadrature, a hand-written Laplace evidence and closed
forms."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize
from scipy.stats import multivariate_normal

import jinverse as ji
from jinverse.posterior import SamplingWarning, Status

# y = θ² + noise, prior N(0.5, 1): modes near ±1 of unequal mass (the prior favours +1), the
# likelihood at θ = 0 exp(-12.5) of its peak (an MCMC chain does not cross over)
SIGMA, Y, M0 = 0.2, 1.0, 0.5


def _log_joint(t):  # log N(θ; M0, 1) + log N(Y; θ², σ²)
    return (-0.5 * (t - M0) ** 2 - 0.5 * np.log(2 * np.pi)
            - 0.5 * ((Y - t**2) / SIGMA) ** 2 - 0.5 * np.log(2 * np.pi * SIGMA**2))


@pytest.fixture(scope="module")
def two_modes():
    problem = ji.InverseProblem(lambda t: t**2, ji.priors.Gaussian(jnp.array([M0]), 1.0),
                                ji.likelihoods.Gaussian(SIGMA))
    return problem, ji.find_modes(problem, jnp.array([Y]), key=jax.random.key(0), num_starts=16)


def test_two_modes_found_and_weighted_by_laplace_evidence(two_modes):
    _, modes = two_modes
    assert modes.weights.shape == (2,) and list(modes.num_modes[None]) == [2]
    # a Laplace evidence per mode written by hand: the mode by SciPy on each half-line, the
    # curvature -d²/dθ² log p(y, θ) = 1 + (6θ² - 2y)/σ² in closed form
    hand = []
    for lo, hi in ((0.0, 3.0), (-3.0, 0.0)):
        t = optimize.minimize_scalar(lambda t: -_log_joint(t), bounds=(lo, hi), method="bounded",
                                     options={"xatol": 1e-12}).x
        h = 1 + (6 * t**2 - 2 * Y) / SIGMA**2
        hand.append((t, _log_joint(t) + 0.5 * np.log(2 * np.pi) - 0.5 * np.log(h), 1 / h))
    # modes to the optimisers' tolerances (SciPy's xatol 1e-12, solve_map's gradient tol 1e-9)
    np.testing.assert_allclose(np.asarray(modes.theta)[:, 0], [hand[0][0], hand[1][0]], atol=1e-6)
    # the curvature at an argmin found to ~1e-7 agrees to ~1e-6 relative; so do the log Z
    np.testing.assert_allclose(np.asarray(modes.log_evidence), [hand[0][1], hand[1][1]], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(modes.covariance)[:, 0, 0], [hand[0][2], hand[1][2]], rtol=1e-5)
    ratio = np.exp(hand[0][1] - hand[1][1])
    np.testing.assert_allclose(float(modes.weights[0] / modes.weights[1]), ratio, rtol=1e-6)
    np.testing.assert_allclose(float(jnp.sum(modes.weights)), 1.0, rtol=1e-12)

    # against quadrature: each mode's mass is its half-line's integral
    density = lambda t: np.exp(_log_joint(t))  # noqa: E731
    pos = integrate.quad(density, 0, 6, points=[1.0], epsabs=0, epsrel=1e-11)[0]
    neg = integrate.quad(density, -6, 0, points=[-1.0], epsabs=0, epsrel=1e-11)[0]
    exact = pos / (pos + neg)  # ≈ 0.726
    # Laplace's method errs in each mode's log Z by eps_k = O(σ²) (the modes are near-Gaussian
    # but not exactly: here 0.017 nats each, measured by the quadrature above)
    eps = np.asarray(modes.log_evidence) - np.log([pos, neg])
    assert np.all(np.abs(eps) < 0.05), eps
    # the weight is a logistic function of the log-odds, slope at most 1/4: the weight's error
    # is at most |eps_+ - eps_-| / 4 (here the errors nearly cancel: 3e-4)
    w = float(modes.weights[0])
    assert abs(w - exact) <= 0.25 * abs(eps[0] - eps[1]) + 1e-9, (w, exact, eps)
    assert abs(w - exact) < 0.01
    assert abs(float(modes.total_log_evidence) - np.log(pos + neg)) <= np.max(np.abs(eps))
    assert "2 modes" in modes.summary()


def test_mixture_draws_match_the_weights(two_modes):
    _, modes = two_modes
    n = 20_000
    draws = np.asarray(modes.sample(jax.random.key(1), n))[:, 0]
    assert draws.shape == (n,)
    w = float(modes.weights[0])
    # independent draws: the fraction in the + mode within 4 binomial standard errors
    assert abs(np.mean(draws > 0) - w) < 4 * np.sqrt(w * (1 - w) / n)
    for k, side in enumerate((draws > 0, draws < 0)):  # each component: its Laplace Gaussian
        m, sd, nk = float(modes.mean[k, 0]), float(np.sqrt(modes.covariance[k, 0, 0])), side.sum()
        assert abs(draws[side].mean() - m) < 4 * sd / np.sqrt(nk)
        assert abs(draws[side].std() / sd - 1) < 4 / np.sqrt(2 * nk)


def test_unimodal_gaussian_one_mode_weight_one():
    rng = np.random.default_rng(0)
    n, m, gamma, sigma = 2, 5, 1.5, 0.5
    a = rng.normal(size=(m, n))
    problem = ji.InverseProblem(jnp.asarray(a), ji.priors.Gaussian(jnp.zeros(n), gamma),
                                ji.likelihoods.Gaussian(sigma))
    y = a @ rng.normal(size=n) + sigma * rng.normal(size=m)
    modes = ji.find_modes(problem, jnp.asarray(y), key=jax.random.key(2), num_starts=8)
    assert int(modes.num_modes) == 1 and modes.weights.shape == (1,) and float(modes.weights[0]) == 1.0
    cov = np.linalg.inv(a.T @ a / sigma**2 + np.eye(n) / gamma**2)
    # closed forms; the mode to the optimiser's tol (1e-9 on the gradient), the rest exact
    np.testing.assert_allclose(np.asarray(modes.theta[0]), cov @ a.T @ y / sigma**2, atol=1e-7)
    np.testing.assert_allclose(np.asarray(modes.covariance[0]), cov, rtol=1e-9)
    log_z = multivariate_normal(np.zeros(m), gamma**2 * a @ a.T + sigma**2 * np.eye(m)).logpdf(y)
    np.testing.assert_allclose(float(modes.total_log_evidence), log_z, rtol=1e-9)
    assert modes.chain_starts(3).tolist() == [0, 0, 0]


def test_chain_allocation():
    from jinverse.modes import _allocate

    # in proportion to the weights, then one for every mode while a mode has two or more
    assert _allocate(np.array([0.726, 0.274]), 4).tolist() == [0, 0, 0, 1]
    assert _allocate(np.array([0.99, 0.01]), 4).tolist() == [0, 0, 0, 1]
    assert _allocate(np.array([0.5, 0.3, 0.2, 0.0]), 10).tolist() == [0] * 5 + [1] * 3 + [2] * 2
    assert _allocate(np.array([0.4, 0.3, 0.2, 0.1]), 3).tolist() == [0, 1, 2]  # the heaviest first


@pytest.fixture(scope="module")
def nuts_on_modes(two_modes):
    problem, modes = two_modes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = ji.sample(problem, jnp.array([Y]), key=jax.random.key(3), init=modes, jitter=0.05,
                         num_warmup=200, num_samples=200)
    return modes, post, [str(w.message) for w in caught if issubclass(w.category, SamplingWarning)]


def test_chains_started_on_modes_cover_both(nuts_on_modes):
    modes, post, _ = nuts_on_modes
    assert post.modes.chain.tolist() == [0, 0, 0, 1]  # 4 chains by weights 0.73 / 0.27
    draws = np.asarray(post.samples)[..., 0]  # (chains, draws)
    # every chain stays in the mode it started in: the + mode's chains and the - mode's
    np.testing.assert_array_equal(np.mean(draws > 0, axis=1), [1, 1, 1, 0])
    np.testing.assert_allclose(np.asarray(post.mode_shares()), [0.75, 0.25])
    np.testing.assert_allclose(np.asarray(post.modes.weights), np.asarray(modes.weights))
    text = post.summary()
    assert "modes (init='modes'): 2 found" in text and f"weight {float(modes.weights[0]):.4f}, 3 chains" in text


def test_nuts_stuck_in_different_modes_warns(nuts_on_modes):
    _, post, caught = nuts_on_modes
    assert int(post.status) & Status.MULTIMODAL
    text = next(w for w in post.warnings if w.startswith("multimodal posterior"))
    assert "method='smc'" in text and "different modes" in text
    assert any("multimodal posterior" in w and "method='smc'" in w for w in caught)


def test_refusals(two_modes):
    problem, modes = two_modes
    with pytest.raises(ValueError, match="init: got a ModeMixture of batch shape"):
        ji.sample(problem, jnp.array([[Y], [Y]]), key=jax.random.key(0), init=modes)
    with pytest.raises(ValueError, match="init: given with method='smc'"):
        ji.sample(problem, jnp.array([Y]), key=jax.random.key(0), init="modes", method="smc")
    with pytest.raises(TypeError, match="jacobian"):
        ji.find_modes(problem, jnp.array([Y]), key=jax.random.key(0), jacobian=False)
    with pytest.raises(TypeError, match="key"):
        ji.find_modes(problem, jnp.array([Y]), key=None)
