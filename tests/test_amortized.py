"""jinverse.amortized: networks trained on simulated pairs, checked against closed forms.

The linear-Gaussian problem y = A θ + e, θ ~ N(0, s0² I), e ~ N(0, s² I) has the posterior
N(μ(y), Σ) with Σ = (AᵀA/s² + I/s0²)⁻¹ and μ(y) = Σ Aᵀ y / s²: the point estimator must approach μ,
the mixture density N(μ, Σ), and an importance sampler whose q is that exact posterior has ESS = N
and log mean w = log p(y) = log N(y; 0, s0² AAᵀ + s² I).
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

S0, S = 1.0, 0.3
A = np.array([[1.0, 0.5], [0.0, 1.0], [0.7, -0.4]])


def linear_problem(s=S):
    return ji.InverseProblem(jnp.asarray(A), ji.priors.Gaussian(jnp.zeros(2), S0), ji.likelihoods.Gaussian(s))


def posterior(y, s=S):
    cov = np.linalg.inv(A.T @ A / s**2 + np.eye(2) / S0**2)
    return (cov @ A.T @ np.asarray(y).T / s**2).T, cov


def untrained(problem, m, d, num_components, covariance="full", width=8):
    """A `MixtureDensity` with random weights and identity standardisation (no training)."""
    net = MixtureNet(m, d, num_components, covariance, width, 1, jnp.float64, key=jax.random.key(0))
    norm = Normaliser(jnp.zeros(m), jnp.ones(m), jnp.zeros(d), jnp.ones(d))
    return am.MixtureDensity(problem, net, norm, jnp.zeros(0), am.fingerprint(problem),
                             (("kind", "mixture"), ("covariance", covariance)))


@pytest.fixture(scope="module")
def data():
    problem = linear_problem()
    theta, y = am.simulate_pairs(problem, jax.random.key(7), 64)
    return problem, np.asarray(y)


@pytest.fixture(scope="module")
def point(data):
    return am.train_point_estimator(data[0], jax.random.key(1), num_steps=1000, batch_size=256, width=32)


@pytest.fixture(scope="module")
def mdn(data):
    return am.train_mixture_density(data[0], jax.random.key(2), num_components=1, num_steps=600,
                                    batch_size=256, width=32)


def test_simulate_pairs_follow_prior_and_likelihood(data):
    problem = data[0]
    theta, y = am.simulate_pairs(problem, jax.random.key(3), 20000)
    assert theta.shape == (20000, 2) and y.shape == (20000, 3)
    # y ~ N(0, s0² AAᵀ + s² I) marginally: compare the covariance (MC error ~ sqrt(2/n) relative)
    cov = S0**2 * A @ A.T + S**2 * np.eye(3)
    np.testing.assert_allclose(np.cov(np.asarray(y).T), cov, atol=5 * math.sqrt(2 / 20000) * cov.max())


def test_point_estimator_approaches_posterior_mean(point, data):
    problem, y = data
    mean, cov = posterior(y)
    est = np.asarray(point(y))
    assert est.shape == y.shape[:1] + (2,)
    # the training loss is noisy (posterior variance ~ 0.08 per coordinate): the fitted mean is
    # within a small fraction of the posterior std, far closer than the prior mean (0) is
    err = np.sqrt(np.mean((est - mean) ** 2, axis=0))
    assert np.all(err < 0.15 * np.sqrt(np.diag(cov))), err
    assert np.mean((est - mean) ** 2) < 0.02 * np.mean(mean**2)
    # one observation without batch axis equals the batched answer
    np.testing.assert_allclose(np.asarray(point(y[3])), est[3], rtol=1e-10, atol=1e-12)


def test_mixture_density_matches_closed_form_posterior(mdn, data):
    problem, y = data
    mean, cov = posterior(y)
    logw, means, chols = jax.vmap(mdn.components)(jnp.asarray(y))
    np.testing.assert_allclose(np.asarray(means[:, 0]), mean, atol=0.1 * math.sqrt(cov.max()))
    fitted = np.asarray(jnp.einsum("bij,bkj->bik", chols[:, 0], chols[:, 0]))
    # KL(p || q) between the exact N(μ, Σ) and the fitted N(m, C), per observation: the quantity
    # maximum-likelihood training minimises on average (a KL of 0.01 nats costs ~2% of the IS-ESS)
    inv = np.linalg.inv(fitted)
    diff = np.asarray(means[:, 0]) - mean
    kl = 0.5 * (np.einsum("bij,ji->b", inv, cov) + np.einsum("bi,bij,bj->b", diff, inv, diff) - 2
                + np.log(np.linalg.det(fitted) / np.linalg.det(cov)))
    assert np.mean(kl) < 0.01 and np.max(kl) < 0.1, (np.mean(kl), np.max(kl))
    np.testing.assert_allclose(fitted.mean(0), cov, atol=0.1 * cov.max())
    # log q agrees with scipy's Gaussian at the fitted parameters, in θ's own space
    theta = np.array([0.3, -0.2])
    want = scipy.stats.multivariate_normal(np.asarray(means[0, 0]), fitted[0]).logpdf(theta)
    np.testing.assert_allclose(float(mdn.log_prob(jnp.asarray(theta), y[0])), want, rtol=1e-10)


def test_mixture_log_prob_normalises_on_a_bounded_prior():
    """An untrained 3-component full-covariance q on a Uniform(-1, 1)² prior (so a change of
    variables u -> θ) integrates to 1 over the box, by a midpoint rule on a fine grid."""
    problem = ji.InverseProblem(lambda t: t, ji.priors.Uniform(-jnp.ones(2), jnp.ones(2)),
                                ji.likelihoods.Gaussian(0.5))
    q = untrained(problem, 2, 2, 3)
    h = 2 / 400
    g = np.arange(-1 + h / 2, 1, h)
    pts = jnp.asarray(np.stack(np.meshgrid(g, g), -1).reshape(-1, 2))
    dens = jnp.exp(jax.jit(jax.vmap(lambda t: q.log_prob(t, jnp.array([0.2, -0.4]))))(pts))
    assert abs(float(jnp.sum(dens)) * h * h - 1) < 2e-3


def test_importance_ess_exact_q_and_log_evidence(data):
    """q set by hand to the exact posterior (a linear map of y, constant covariance): every weight
    equals p(y), so the ESS is N and log mean w is the closed-form log evidence."""
    problem, y = data
    q = untrained(problem, 3, 2, 1)
    mean_map, cov = posterior(np.eye(3))  # μ(y) = M y with M = mean_map.T
    M = mean_map.T
    L = np.linalg.cholesky(cov)
    net = q.net
    net = eqx.tree_at(lambda n: n.skip.weight, net, jnp.asarray(M))
    net = eqx.tree_at(lambda n: (n.means.weight, n.means.bias, n.scales.weight), net,
                      (jnp.zeros_like(net.means.weight), jnp.zeros_like(net.means.bias),
                       jnp.zeros_like(net.scales.weight)))
    # scale raw vector in tril order: diagonal entries through exp(8 tanh(r / 8)), so r = 8 artanh(log(l) / 8)
    rows, cols = np.tril_indices(2)
    raw = np.array([L[i, j] if i != j else 8 * np.arctanh(np.log(L[i, j]) / 8) for i, j in zip(rows, cols)])
    net = eqx.tree_at(lambda n: n.scales.bias, net, jnp.asarray(raw))
    exact = eqx.tree_at(lambda e: e.net, q, net)
    r = am.importance_sample(exact, y[:8], jax.random.key(4), num=500)
    np.testing.assert_allclose(np.asarray(r.ess), 500, rtol=1e-8)
    marg = scipy.stats.multivariate_normal(np.zeros(3), S0**2 * A @ A.T + S**2 * np.eye(3))
    np.testing.assert_allclose(np.asarray(r.log_evidence), marg.logpdf(y[:8]), rtol=1e-8)
    assert r.theta.shape == (8, 500, 2) and r.log_weights.shape == (8, 500)

    # a q shifted by 3 posterior std: few effective draws
    wrong = eqx.tree_at(lambda e: e.norm.u_loc, exact, jnp.asarray(3 * np.sqrt(np.diag(cov))))
    rw = am.importance_sample(wrong, y[:8], jax.random.key(4), num=500)
    assert float(jnp.max(rw.ess_fraction)) < 0.1


def test_importance_trained_q_and_corrected_mean(mdn, data):
    problem, y = data
    mean, cov = posterior(y[:16])
    r = am.importance_sample(mdn, y[:16], jax.random.key(5), num=2000)
    assert float(jnp.min(r.ess_fraction)) > 0.5
    # the self-normalised mean: MC error ~ posterior std / sqrt(ESS)
    tol = 5 * np.sqrt(np.diag(cov)) / np.sqrt(np.asarray(r.ess))[:, None]
    assert np.all(np.abs(np.asarray(r.mean()) - mean) < tol)
    draws = r.resample(jax.random.key(6), 3000)
    assert draws.shape == (16, 3000, 2)
    np.testing.assert_allclose(np.cov(np.asarray(draws[0]).T), cov, atol=0.15 * cov.max())


def test_warm_start_reduces_map_steps(point, data):
    problem, y = data
    cold = ji.solve_map(problem, y, optimizer="bfgs")
    warm = ji.solve_map(problem, y, optimizer="bfgs", init=point)
    assert bool(jnp.all(warm.converged)) and bool(jnp.all(cold.converged))
    np.testing.assert_allclose(np.asarray(warm.theta), posterior(y)[0], atol=1e-6)
    # BFGS converges superlinearly: the start 2-3% of a posterior std away saves a step or so
    assert float(jnp.mean(warm.num_steps)) < float(jnp.mean(cold.num_steps))
    rep = am.map_report(point, y, result=warm)
    assert rep.gap.shape == (64,) and bool(jnp.all(rep.gap >= -1e-9))
    np.testing.assert_array_equal(np.asarray(rep.status), np.asarray(warm.status))
    assert bool(jnp.all(rep.ok))
    # a MAP cut short is not OK (its gap is against an unconverged point)
    short = am.map_report(point, y, optimizer="bfgs", max_steps=1, warn=False)
    assert not bool(jnp.any(short.ok)) and bool(jnp.all(short.status == ji.Status.MAX_STEPS))
    # the gap of a Gaussian posterior is ½ (θ - μ)ᵀ Σ⁻¹ (θ - μ)
    diff = np.asarray(point(y)) - posterior(y)[0]
    want = 0.5 * np.einsum("bi,ij,bj->b", diff, np.linalg.inv(posterior(y)[1]), diff)
    np.testing.assert_allclose(np.asarray(rep.gap), want, rtol=1e-5, atol=1e-9)


@pytest.mark.slow  # trains its own network (~10 s of CPU)
def test_mixture_start_cuts_map_steps_on_a_ring():
    """y = ||θ - c||² + noise: the posterior is a ring, its mean (what a point estimator learns)
    near its centre, no good start; the best component of a mixture density sits on the ring."""
    c = jnp.array([0.3, -0.2])
    problem = ji.InverseProblem(lambda t: jnp.sum((t - c) ** 2), ji.priors.Uniform(-2 * jnp.ones(2), 2 * jnp.ones(2)),
                                ji.likelihoods.Gaussian(0.05))
    _, y = am.simulate_pairs(problem, jax.random.key(3), 64)
    q = am.train_mixture_density(problem, jax.random.key(0), num_components=6, num_steps=400, width=32)
    cold = ji.solve_map(problem, y, optimizer="bfgs")
    warm = ji.solve_map(problem, y, optimizer="bfgs", init=q)
    assert bool(jnp.all(warm.converged)) and bool(jnp.all(cold.converged))
    assert float(jnp.mean(warm.num_steps)) < 0.7 * float(jnp.mean(cold.num_steps))
    rep = am.map_report(q, y, result=warm)
    # the start is on the ring: its squared radius within a few noise std of the observation's
    r2 = jnp.sum((rep.theta - c) ** 2, -1)
    assert float(jnp.median(jnp.abs(r2 - y))) < 3 * 0.05
    assert bool(jnp.all(rep.gap >= -1e-9))


def test_mixture_as_map_start(mdn, data):
    problem, y = data
    start = mdn.map_start(problem, y[:4])
    np.testing.assert_allclose(np.asarray(start), posterior(y[:4])[0], atol=0.1)
    res = ji.solve_map(problem, y[:4], init=mdn)
    assert bool(jnp.all(res.converged))


def test_save_load_round_trip(point, mdn, data, tmp_path):
    problem, y = data
    for est in (point, mdn):
        path = am.save(est, tmp_path / "net.eqx")
        back = am.load(path, linear_problem())  # an equal problem built anew
        assert type(back) is type(est) and back.config == est.config
        for a, b in zip(jax.tree.leaves(eqx.filter(est, eqx.is_array)), jax.tree.leaves(eqx.filter(back, eqx.is_array))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(back.sample(jax.random.key(0), y[:2], 5)),
                                  np.asarray(mdn.sample(jax.random.key(0), y[:2], 5)))


def test_fingerprint_mismatch_is_an_error(point, data, tmp_path):
    problem, y = data
    other = linear_problem(s=0.31)
    assert am.fingerprint(other) != am.fingerprint(problem) == am.fingerprint(linear_problem())
    path = am.save(point, tmp_path / "p.eqx")
    with pytest.raises(ValueError, match="problem: has fingerprint .* trained for a problem with fingerprint"):
        am.load(path, other)
    with pytest.raises(ValueError, match="problem: has fingerprint"):
        ji.solve_map(other, y, init=point)


def test_bad_inputs(point, mdn, data, tmp_path):
    problem, y = data
    with pytest.raises(TypeError, match="problem: got str"):
        am.train_point_estimator("p", jax.random.key(0))
    with pytest.raises(TypeError, match="key: got"):
        am.train_point_estimator(problem, 0)
    with pytest.raises(ValueError, match="num_steps: got 0"):
        am.train_point_estimator(problem, jax.random.key(0), num_steps=0)
    with pytest.raises(ValueError, match="learning_rate: got -1"):
        am.train_mixture_density(problem, jax.random.key(0), learning_rate=-1.0)
    with pytest.raises(ValueError, match="covariance: got 'dense'"):
        am.train_mixture_density(problem, jax.random.key(0), covariance="dense")
    with pytest.raises(ValueError, match=r"y: got shape \(4, 2\)"):
        point(np.zeros((4, 2)))
    with pytest.raises(TypeError, match="q: got PointEstimator"):
        am.importance_sample(point, y, jax.random.key(0))
    with pytest.raises(TypeError, match="num: got 1.5"):
        am.importance_sample(mdn, y, jax.random.key(0), num=1.5)
    with pytest.raises(TypeError, match="estimator: got int"):
        am.save(3, tmp_path / "x")
    (tmp_path / "junk").write_bytes(b"hello\n")
    with pytest.raises(ValueError, match="not a jinverse.amortized estimator file"):
        am.load(tmp_path / "junk", problem)
    with pytest.raises(TypeError, match="problem: got str"):
        am.fingerprint("x")


B = np.array([[1.0, 0.0], [0.5, 1.0], [0.0, -1.0], [0.3, 0.2]])
C = np.array([0.2, -0.1, 0.4, 0.0])
M = np.array([[1.0, 0.2, 0.0, 0.5], [0.0, 1.0, 0.3, 0.0], [0.4, 0.0, 1.0, -0.2]])


def test_latent_problem_with_a_linear_decoder_is_the_closed_form():
    """θ = B z + c, z ~ N(0, I), y = M θ + e: Gaussian in z, posterior mean in closed form."""
    problem = ji.InverseProblem(jnp.asarray(M), ji.priors.Gaussian(jnp.zeros(4), 1.0), ji.likelihoods.Gaussian(S))
    g = lambda z: jnp.asarray(B) @ z + jnp.asarray(C)  # noqa: E731
    latent = am.latent_problem(problem, g, 2)
    y = np.array([[0.3, -0.5, 1.0], [1.2, 0.1, -0.3]])
    G = M @ B
    cov = np.linalg.inv(G.T @ G / S**2 + np.eye(2))
    want = (cov @ G.T @ (y - M @ C).T / S**2).T
    z = ji.solve_map(latent, y).theta
    np.testing.assert_allclose(np.asarray(z), want, atol=1e-7)
    np.testing.assert_allclose(np.asarray(am.decode(g, z)), want @ B.T + C, atol=1e-7)
    with pytest.raises(ValueError, match=r"decoder: returns \(3,\) for a code of shape \(2,\), expected θ's shape \(4,\)"):
        am.latent_problem(problem, lambda z: jnp.zeros(3) + z[0], 2)
    with pytest.raises(TypeError, match="decoder: got int"):
        am.latent_problem(problem, 3, 2)


@pytest.mark.slow  # trains its own network (~10 s of CPU)
def test_train_decoder_learns_the_examples_subspace():
    """Examples on a 2-D plane in R^4: decoded N(0, I) codes stay on that plane and spread over it."""
    z = jax.random.normal(jax.random.key(0), (4000, 2))
    examples = np.asarray(z) @ B.T + C
    g = am.train_decoder(examples, 2, jax.random.key(1), num_steps=600, width=32, noise=0.1)
    out = np.asarray(am.decode(g, jax.random.normal(jax.random.key(2), (2000, 2))))
    coef, *_ = np.linalg.lstsq(B, (out - C).T, rcond=None)
    resid = out - C - (B @ coef).T
    spread = np.sqrt(np.mean((examples - C) ** 2))
    assert np.sqrt(np.mean(resid**2)) < 0.1 * spread
    # the decoded N(0, I) spreads like the examples (a VAE's codes match N(0, I) only roughly:
    # here to ~0.1 spread in the mean and ~20% in the covariance), neither collapsed nor inflated
    assert np.max(np.abs(out.mean(0) - examples.mean(0))) < 0.25 * spread
    ratio = np.trace(np.cov(out.T)) / np.trace(np.cov(examples.T))
    assert 0.6 < ratio < 1.5, ratio
    with pytest.raises(ValueError, match="examples: got shape"):
        am.train_decoder(np.zeros(5), 2, jax.random.key(0))


def test_fingerprint_is_the_same_in_another_process(data):
    """A file saved in one session must load in the next: the fingerprint holds no addresses."""
    import subprocess
    import sys
    code = ("import jax, jax.numpy as jnp, numpy as np; jax.config.update('jax_enable_x64', True); import jinverse as ji; "
            f"A = np.array({A.tolist()}); "
            f"p = ji.InverseProblem(jnp.asarray(A), ji.priors.Gaussian(jnp.zeros(2), {S0}), ji.likelihoods.Gaussian({S})); "
            "print(ji.amortized.fingerprint(p))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == am.fingerprint(data[0])
