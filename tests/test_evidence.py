"""ji.laplace_evidence and ji.empirical_bayes against the linear-Gaussian closed form
log N(y; A m, A Γ Aᵀ + Σ) (where Laplace's method is exact), SciPy's maximiser of it, and the
scales that generated deconvolution1d data."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import optimize, stats

import jinverse as ji

M, N, S0, T0 = 8, 3, 0.4, 1.5


@pytest.fixture(scope="module")
def linear():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(M, N))
    mean = rng.normal(size=N)
    problem = ji.InverseProblem(jnp.asarray(a), ji.priors.Gaussian(jnp.asarray(mean), T0), ji.likelihoods.Gaussian(S0))
    ys = (a @ (mean[:, None] + 0.8 * rng.normal(size=(N, 20)))).T + 0.25 * rng.normal(size=(20, M))
    return problem, jnp.asarray(ys), a, mean


def closed_form(a, mean, ys, t, s):
    """log N(y; A m, t² A Aᵀ + s² I) per observation, in JAX (differentiable)."""
    cov = t**2 * a @ a.T + s**2 * jnp.eye(a.shape[0])
    chol = jnp.linalg.cholesky(cov)
    r = jax.scipy.linalg.solve_triangular(chol, (ys - a @ mean).T, lower=True)
    return -0.5 * jnp.sum(r**2, axis=0) - jnp.sum(jnp.log(jnp.diag(chol))) - 0.5 * a.shape[0] * jnp.log(2 * jnp.pi)


SCALES = lambda p: (p.prior.std, p.likelihood.std)  # noqa: E731


def with_scales(problem, t, s):
    return eqx.tree_at(SCALES, problem, (jnp.asarray(t, float), jnp.asarray(s, float)))


def test_linear_gaussian_evidence_is_the_closed_form(linear):
    problem, ys, a, mean = linear
    ev = ji.laplace_evidence(problem, ys)
    assert ev.log_evidence.shape == (20,) and bool(jnp.all(ev.ok))
    ref = stats.multivariate_normal(a @ mean, T0**2 * a @ a.T + S0**2 * np.eye(M)).logpdf(np.asarray(ys))
    # exact up to rounding: the mode is found to tol 1e-9 and enters at second order
    np.testing.assert_allclose(ev.log_evidence, ref, rtol=1e-12)
    one = ji.laplace_evidence(problem, ys[3])
    assert one.log_evidence.shape == ()
    np.testing.assert_allclose(one.log_evidence, ref[3], rtol=1e-12)


def test_evidence_gradient(linear):
    problem, ys, a, mean = linear
    # one gradient in the scales and the observations (through the mode and the Hessian)
    total = lambda t, s, y: ji.laplace_evidence(with_scales(problem, t, s), y).log_evidence.sum()  # noqa: E731
    got = jax.grad(total, argnums=(0, 1, 2))(T0, S0, ys[:4])
    want = jax.grad(lambda t, s, y: closed_form(a, mean, y, t, s).sum(), argnums=(0, 1, 2))(T0, S0, ys[:4])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-8, atol=1e-12)


def test_empirical_bayes_finds_the_closed_form_maximiser(linear):
    problem, ys, a, mean = linear
    start = with_scales(problem, 1.0, 1.0)
    fit = ji.empirical_bayes(start, ys, SCALES, tol=1e-9)
    assert bool(fit.converged) and int(fit.num_steps) < 50

    neg = jax.value_and_grad(lambda z: -closed_form(a, mean, ys, *jnp.exp(z)).sum())
    ref = optimize.minimize(lambda z: tuple(map(np.asarray, neg(z))), np.zeros(2), jac=True, method="BFGS",
                            options={"gtol": 1e-8})
    assert ref.success
    got = np.array([float(fit.params[0]), float(fit.params[1])])
    # both are stationary to ~1e-9 in the log-scales; the maximiser is well conditioned here
    np.testing.assert_allclose(got, np.exp(ref.x), rtol=1e-6)
    trace = np.asarray(fit.log_evidence[: int(fit.num_steps) + 1])
    np.testing.assert_allclose(trace[-1], -ref.fun, rtol=1e-10)
    assert np.all(np.diff(trace) > -1e-9 * np.abs(trace[1:]))  # the line search only climbs
    assert np.all(np.isnan(np.asarray(fit.log_evidence[int(fit.num_steps) + 1:])))
    # the fitted problem carries the fitted scales
    np.testing.assert_allclose(fit.problem.likelihood.std, fit.params[1])


def test_empirical_bayes_first_order_optimizer(linear):
    problem, ys, _, _ = linear
    fit = ji.empirical_bayes(with_scales(problem, 1.0, 1.0), ys, lambda p: p.likelihood.std,
                             optimizer=optax.adam(0.1), max_steps=5)
    trace = np.asarray(fit.log_evidence)
    assert int(fit.num_steps) == 5 and trace[5] > trace[0]
    assert isinstance(fit.params, tuple) and fit.params[0].shape == ()


def test_empirical_bayes_bad_arguments(linear):
    problem, ys, _, _ = linear
    with pytest.raises(TypeError, match="params"):
        ji.empirical_bayes(problem, ys, "likelihood.std")
    with pytest.raises(TypeError, match="params: got a callable that fails"):
        ji.empirical_bayes(problem, ys, lambda p: p.likelihood.scale)
    with pytest.raises(TypeError, match="params: selection 0"):
        ji.empirical_bayes(problem, ys, lambda p: p.forward)
    with pytest.raises(ValueError, match="map_options"):
        ji.empirical_bayes(problem, ys, SCALES, map_options={"jacobian": False})
    with pytest.raises(ValueError, match="y: got shape"):
        ji.empirical_bayes(problem, ys[:, :3], SCALES)


def log_scale_se(a, ys, t, s):
    """Standard errors of (log t, log s) at the fit from the observed information: the inverse
    Hessian of the closed-form negative log-evidence in the log-scales."""
    def neg(z):
        return -closed_form(a, jnp.zeros(a.shape[1]), ys, t * jnp.exp(z[0]), s * jnp.exp(z[1])).sum()

    return np.sqrt(np.diag(np.linalg.inv(np.asarray(jax.hessian(neg)(jnp.zeros(2))))))


def test_empirical_bayes_deconvolution1d_simulated():
    # 8 observations drawn from deconvolution1d's own prior and noise: type-II ML is consistent,
    # so the fitted scales lie within 4 standard errors of the generating ones (SE from the
    # observed information, ~3.5% for the prior std, ~3% for the noise std with these 8 draws;
    # a correct fit falls outside with probability ~1e-4). Measured: 1.7 and 0.6 SE.
    b = ji.problems.load("deconvolution1d")
    problem = b.problem
    t0, s0 = float(problem.prior.std[0]), float(problem.likelihood.std)
    theta = problem.sample_prior(jax.random.key(3), (8,))
    ys = jax.vmap(problem.simulate)(jax.random.split(jax.random.key(4), 8), theta)
    fit = ji.empirical_bayes(with_scales(problem, 2 * t0, 0.5 * s0), ys, SCALES)
    assert bool(fit.converged)
    t, s = float(fit.params[0]), float(fit.params[1])
    se = log_scale_se(b.info["A"], ys, t, s)
    assert abs(np.log(t / t0)) < 4 * se[0] and abs(np.log(s / s0)) < 4 * se[1]


def test_empirical_bayes_deconvolution1d_benchmark_data():
    # The benchmark's own data: a fixed phantom blurred, with 8 noise draws of known std. The
    # phantom is no prior draw, so only the noise std has a generating value: with a smoothness
    # prior (GMRF, order 2, its precision fitted too) the fitted noise std lies within 4 standard
    # errors of it (SE ~2.7% from the evidence's observed information; measured 1.2 SE; the
    # realised noise RMS of these draws is itself 0.954 of the std).
    b = ji.problems.load("deconvolution1d", batch=8)
    s0 = float(b.problem.likelihood.std)
    gmrf = ji.priors.GMRF((128,), order=2, precision=1.0)
    problem = ji.InverseProblem(b.problem.forward, gmrf, ji.likelihoods.Gaussian(2 * s0))
    fit = ji.empirical_bayes(problem, b.y, lambda p: (p.prior.precision, p.likelihood.std))
    assert bool(fit.converged)
    delta, s = fit.params[0], float(fit.params[1])
    a, dtd = b.info["A"], gmrf.mats[0].T @ gmrf.mats[0]

    def neg(z):  # closed form: y ~ N(0, A (δ DᵀD)⁻¹ Aᵀ + s² I)
        cov = a @ jnp.linalg.inv(delta * jnp.exp(z[0]) * dtd) @ a.T + (s * jnp.exp(z[1])) ** 2 * jnp.eye(128)
        chol = jnp.linalg.cholesky(cov)
        r = jax.scipy.linalg.solve_triangular(chol, b.y.T, lower=True)
        return 0.5 * jnp.sum(r**2) + 8 * (jnp.sum(jnp.log(jnp.diag(chol))) + 64 * jnp.log(2 * jnp.pi))

    se = np.sqrt(np.diag(np.linalg.inv(np.asarray(jax.hessian(neg)(jnp.zeros(2))))))
    assert abs(np.log(s / s0)) < 4 * se[1]
    # the fit is the closed form's stationary point (per observation, to the fit's tol 1e-6)
    assert float(jnp.linalg.norm(jax.grad(neg)(jnp.zeros(2)))) / 8 < 1e-5
