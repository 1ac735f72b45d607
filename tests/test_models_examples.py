"""The eight posteriordb models of examples/posteriordb_models (issue 14's acceptance): each
builds from built-ins, its log-density and gradient are finite; the log-mesquite posterior
(flat priors: Student-t in closed form) is sampled and checked; the GARCH triangle prior and
the Lotka-Volterra RK4 are checked against SciPy. The full comparison of all eight with NumPyro
is `slow` (and `benchmarks/posteriordb_numpyro.py`)."""

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats

import jinverse as ji

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

from posteriordb_models import MODELS, build, data  # noqa: E402
from posteriordb_models.models import RK4_STEPS_PER_YEAR, stan_init  # noqa: E402

MODEL_FILE = ROOT / "examples" / "posteriordb_models" / "models.py"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_builds_with_finite_density_and_gradient(name):
    """At the prior's centre and at the four starts the benchmark uses (uniform on (-2, 2)
    unconstrained), one compiled log-density and gradient."""
    problem, y = build(name)
    starts = stan_init(problem, jax.random.key(0), 4)
    points = jax.tree.map(lambda c, s: jnp.concatenate([c[None], s]), problem.prior.center(), starts)
    lp, grad = jax.jit(jax.vmap(jax.value_and_grad(problem.log_density), (0, None)))(
        jax.vmap(problem.to_unconstrained)(points), y)
    assert np.all(np.isfinite(lp))
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grad))


def test_models_are_short_and_use_built_ins_only():
    """Issue 14's rule: each model at most ~25 lines, no subclass of a jinverse class."""
    import ast

    tree = ast.parse(MODEL_FILE.read_text())
    functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    assert not [n for n in tree.body if isinstance(n, ast.ClassDef)]
    for model, _ in MODELS.values():
        f = functions[model.__name__]
        assert f.end_lineno - f.lineno + 1 <= 27, model.__name__


def test_log_mesquite_posterior_matches_the_closed_form(key):
    """Flat priors on β and σ > 0: β | y is Student-t around the least-squares fit with scale
    matrix S/(n-p-1) (XᵀX)⁻¹ and n-p-1 degrees of freedom (sd² = S/(n-p-3) (XᵀX)⁻¹), and
    σ² | y ~ InvGamma((n-p-1)/2, S/2), S the residual sum of squares. Means and sds within 5
    Monte-Carlo standard errors (sd / sqrt(ESS); the sd's about sd / sqrt(2 ESS), doubled)."""
    problem, y = build("mesquite-logmesquite")
    X, y = np.asarray(data.mesquite()["X"]), np.asarray(y)
    n, p = X.shape
    beta_hat, rss = np.linalg.lstsq(X, y, rcond=None)[:2]
    s = float(rss[0])
    sd_beta = np.sqrt(s / (n - p - 3) * np.diag(np.linalg.inv(X.T @ X)))
    a, b = (n - p - 1) / 2, s / 2
    mean_sigma = np.sqrt(b) * np.exp(scipy.special.gammaln(a - 0.5) - scipy.special.gammaln(a))
    sd_sigma = np.sqrt(b / (a - 1) - mean_sigma**2)

    post = ji.sample(problem, jnp.asarray(y), key=key, num_chains=4, num_warmup=300, num_samples=300,
                     init=stan_init(problem, jax.random.key(1), 4), metric="diagonal")
    assert int(post.num_divergent) == 0 and float(post.max_rhat) < 1.05
    for name, mean, sd in (("beta", beta_hat, sd_beta), ("sigma", mean_sigma, sd_sigma)):
        draws = np.asarray(post.samples[name])
        ess = np.asarray(post.ess()[name])
        got_mean = draws.mean((0, 1))
        got_sd = draws.std((0, 1))
        assert np.all(np.abs(got_mean - mean) < 5 * sd / np.sqrt(ess)), (name, got_mean, mean)
        assert np.all(np.abs(got_sd - sd) < 5 * 2 * sd / np.sqrt(2 * ess)), (name, got_sd, sd)


def test_garch_prior_is_uniform_on_the_triangle(key):
    """α₁ ~ Beta(1, 2), β₁ = (1 - α₁) b with b ~ U(0, 1): density 2 on α₁ + β₁ < 1, so β₁'s
    marginal is Beta(1, 2) too and α₁ + β₁ is Beta(2, 1) (KS at level 1e-3)."""
    problem, _ = build("garch-garch11")
    prior = problem.prior.priors
    k1, k2 = jax.random.split(key)
    a1 = np.asarray(prior["alpha1"].sample(k1, (20000,)))
    beta1 = (1 - a1) * np.asarray(prior["b"].sample(k2, (20000,)))
    assert scipy.stats.kstest(beta1, scipy.stats.beta(1, 2).cdf).pvalue > 1e-3
    assert scipy.stats.kstest(a1 + beta1, scipy.stats.beta(2, 1).cdf).pvalue > 1e-3
    # and the density itself: p(α₁) p(b) |db/dβ₁| = 2 (1 - α₁) / (1 - α₁)
    t = {"mu": jnp.array(0.0), "alpha0": jnp.array(1.0), "alpha1": jnp.array(0.3), "b": jnp.array(0.6)}
    lp = sum(prior[k].log_prob(t[k]) for k in ("alpha1", "b"))
    assert np.isclose(float(lp) + np.log(1 / (1 - 0.3)), np.log(2.0), rtol=1e-12)


def test_lotka_volterra_rk4_matches_scipy():
    """The fixed-step RK4 forward model against SciPy's adaptive solver (rtol 1e-10) at a
    point near the posterior mode: the log-populations agree to 1e-4, far below σ ≈ 0.25."""
    problem, _ = build("hudson_lynx_hare-lotka_volterra")
    theta = np.array([0.55, 0.028, 0.80, 0.024])
    z0 = np.array([33.0, 6.0])
    t = {"theta": jnp.asarray(theta), "z_init": jnp.asarray(z0), "sigma": jnp.array([0.25, 0.25])}
    got = np.asarray(problem.forward(t))[0]  # row 0: log z; rows 1, 2: the σ's (bind)

    def rhs(_, z):
        return [(theta[0] - theta[1] * z[1]) * z[0], (-theta[2] + theta[3] * z[0]) * z[1]]

    sol = scipy.integrate.solve_ivp(rhs, (0, 20), z0, t_eval=np.arange(0.0, 21.0), rtol=1e-10, atol=1e-10)
    assert RK4_STEPS_PER_YEAR >= 10
    np.testing.assert_allclose(got, np.log(sol.y.T), atol=1e-4)


def test_multivariate_gaussian_likelihood_matches_scipy(key):
    lik = ji.likelihoods.MultivariateGaussian()
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4))
    cov, mean, y = a @ a.T + 0.5 * np.eye(4), rng.normal(size=4), rng.normal(size=4)
    pred = jnp.asarray(np.vstack([mean, cov]))
    assert np.isclose(lik.log_prob(jnp.asarray(y), pred), scipy.stats.multivariate_normal(mean, cov).logpdf(y),
                      rtol=1e-12)
    assert lik.log_prob(jnp.asarray(y), pred.at[1:].set(-jnp.eye(4))) == -jnp.inf  # not positive definite
    draws = jax.vmap(lambda k: lik.sample(k, pred))(jax.random.split(key, 20000))
    # sample covariance within ~5 standard errors (var of a cov entry ≈ (C_ij² + C_ii C_jj) / N)
    se = np.sqrt((cov**2 + np.outer(np.diag(cov), np.diag(cov))) / 20000)
    assert np.all(np.abs(np.cov(np.asarray(draws).T) - cov) < 5 * se)
    with pytest.raises(ValueError, match=r"forward: returns shape \(4, 4\), expected \(n \+ 1, n\)"):
        lik.event_shape(jax.ShapeDtypeStruct((4, 4), jnp.float64))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_posterior_matches_numpyro(name):
    """Every parameter's mean and sd within 4 combined Monte-Carlo standard errors of NumPyro's."""
    pytest.importorskip("numpyro")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import posteriordb_numpyro as bench

    _, s_ji, _ = bench.run_jinverse(name, 500, 1000, 1)
    _, s_np, _ = bench.run_numpyro(name, 500, 1000, 1)
    for stat, param, z in bench.compare(s_ji, {k: s_np[k] for k in s_ji}):
        assert np.all(z < 4), (stat, param, z)
