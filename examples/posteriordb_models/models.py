"""Eight models of Stan's posterior database (posteriordb), written with jinverse's built-ins
only: `ji.InverseProblem`, `ji.priors`, `ji.likelihoods` (unknown likelihood parameters through
`ji.likelihoods.bind`) and the ODE step of `jinverse.problems.dynamics`. No subclassing.

Each function takes its data (`data.py`) and returns ``(problem, y)``. The parameter names,
priors and likelihoods are posteriordb's (the Stan programs are quoted in each docstring's first
line); `benchmarks/posteriordb_numpyro.py` writes the same eight in NumPyro and compares.

Run all eight: ``PYTHONPATH=examples python -m posteriordb_models``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import jinverse as ji
from jinverse import likelihoods as L
from jinverse import priors as P
from jinverse.problems.dynamics import rk4_step

RK4_STEPS_PER_YEAR = 20  # fixed-step RK4 (h = 0.05 y) for the Lotka-Volterra ODE


def eight_schools(d):
    """eight_schools_noncentered: θ = μ + τ θ̃, y ~ N(θ, σ), μ ~ N(0, 5), τ ~ HalfCauchy(5)."""
    prior = P.Joint({"mu": P.Gaussian(0.0, 5.0), "tau": P.HalfCauchy(5.0),
                     "theta_trans": P.Gaussian(jnp.zeros(8), 1.0)})
    problem = ji.InverseProblem(lambda t: t["mu"] + t["tau"] * t["theta_trans"], prior, L.Gaussian(d["sigma"]))
    return problem, jnp.asarray(d["y"])


def lotka_volterra(d):
    """lotka_volterra (hudson_lynx_hare): log y ~ N(log z(t), σ_k), z the predator-prey ODE."""
    def forward(t):
        a, b, c, e = t["theta"]
        def f(z):  # z = (hare u, lynx v)
            return jnp.stack([(a - b * z[1]) * z[0], (-c + e * z[0]) * z[1]])
        def year(z, _):
            z = jax.lax.fori_loop(0, RK4_STEPS_PER_YEAR, lambda i, z: rk4_step(f, z, 1 / RK4_STEPS_PER_YEAR), z)
            return z, z
        z = jax.lax.scan(year, t["z_init"], None, length=len(d["ts"]))[1]
        return jnp.log(jnp.vstack([t["z_init"], z]))  # (21, 2): 1900 (y_init) then 1901-1920
    prior = P.Joint({"theta": P.TruncatedNormal(jnp.array([1.0, 0.05, 1.0, 0.05]), jnp.array([0.5, 0.05, 0.5, 0.05]),
                                                low=0.0),
                     "z_init": P.LogNormal(jnp.log(10.0) * jnp.ones(2), 1.0),
                     "sigma": P.LogNormal(-jnp.ones(2), 1.0)})
    forward, lik = L.bind(forward, L.LogNormal(scale=lambda t: t["sigma"]))  # one σ per species (column)
    return ji.InverseProblem(forward, prior, lik), jnp.asarray(d["y"])


def kidiq(d):
    """kidscore_momhsiq: kid_score ~ N(β₁ + β₂ mom_hs + β₃ mom_iq, σ), flat β, σ ~ HalfCauchy(2.5)."""
    X = jnp.column_stack([jnp.ones_like(d["mom_hs"]), d["mom_hs"], d["mom_iq"]])
    forward, lik = L.bind(lambda t: X @ t["beta"], L.Gaussian(std=lambda t: t["sigma"]))
    prior = P.Joint({"beta": P.Flat((3,)), "sigma": P.HalfCauchy(2.5)})
    return ji.InverseProblem(forward, prior, lik), jnp.asarray(d["kid_score"])


def gp_regression(d):
    """gp_regr: y ~ N(0, α² exp(-(xᵢ - xⱼ)² / 2ρ²) + σ I), ρ ~ Gamma(25, 4), α ~ N⁺(0, 2), σ ~ N⁺(0, 1)."""
    x = jnp.asarray(d["x"])
    def forward(t):
        k = t["alpha"] ** 2 * jnp.exp(-0.5 * (x[:, None] - x) ** 2 / t["rho"] ** 2)
        return jnp.vstack([jnp.zeros_like(x), k + t["sigma"] * jnp.eye(len(x))])  # mean over covariance
    prior = P.Joint({"rho": P.Gamma(25.0, 4.0), "alpha": P.HalfNormal(2.0), "sigma": P.HalfNormal(1.0)})
    return ji.InverseProblem(forward, prior, L.MultivariateGaussian()), jnp.asarray(d["y"])


def gp_poisson_regression(d):
    """gp_pois_regr: k ~ Poisson(exp(f)), f = chol(K(α, ρ) + 1e-10 I) f̃, f̃ ~ N(0, I)."""
    x = jnp.asarray(d["x"])
    def forward(t):
        k = t["alpha"] ** 2 * jnp.exp(-0.5 * (x[:, None] - x) ** 2 / t["rho"] ** 2) + 1e-10 * jnp.eye(len(x))
        return jnp.linalg.cholesky(k) @ t["f_tilde"]  # the log-rates
    prior = P.Joint({"rho": P.Gamma(25.0, 4.0), "alpha": P.HalfNormal(2.0),
                     "f_tilde": P.Gaussian(jnp.zeros(len(x)), 1.0)})
    return ji.InverseProblem(forward, prior, L.Poisson(log_rate=True)), jnp.asarray(d["k"])


def ar_k(d):
    """arK: y_t ~ N(α + Σₖ βₖ y_{t-k}, σ) for t > K, α, β ~ N(0, 10), σ ~ HalfCauchy(2.5)."""
    y, K = jnp.asarray(d["y"]), d["K"]
    lags = jnp.column_stack([y[K - k:len(y) - k] for k in range(1, K + 1)])  # lags[t, k-1] = y[t + K - k]
    forward, lik = L.bind(lambda t: t["alpha"] + lags @ t["beta"], L.Gaussian(std=lambda t: t["sigma"]))
    prior = P.Joint({"alpha": P.Gaussian(0.0, 10.0), "beta": P.Gaussian(jnp.zeros(K), 10.0),
                     "sigma": P.HalfCauchy(2.5)})
    return ji.InverseProblem(forward, prior, lik), y[K:]


def garch(d):
    """garch11: y_t ~ N(μ, σ_t), σ_t² = α₀ + α₁ (y_{t-1} - μ)² + β₁ σ_{t-1}², σ_1 given.

    Stan's flat prior on 0 < β₁ < 1 - α₁ (uniform on the triangle) is written as α₁ ~ Beta(1, 2)
    and β₁ = (1 - α₁) b, b ~ Uniform(0, 1): the same density (2 on the triangle) and the same
    unconstrained coordinates (logit α₁, logit b) as Stan's bounds."""
    y = jnp.asarray(d["y"])
    def sigma(t):
        beta1 = (1 - t["alpha1"]) * t["b"]
        def step(s, y_prev):
            s = jnp.sqrt(t["alpha0"] + t["alpha1"] * (y_prev - t["mu"]) ** 2 + beta1 * s**2)
            return s, s
        return jnp.concatenate([jnp.array([d["sigma1"]]), jax.lax.scan(step, d["sigma1"], y[:-1])[1]])
    forward, lik = L.bind(lambda t: jnp.full(len(y), t["mu"]), L.Gaussian(std=sigma))
    prior = P.Joint({"mu": P.Flat(), "alpha0": P.Flat(low=0.0), "alpha1": P.Beta(1.0, 2.0), "b": P.Uniform(0.0, 1.0)})
    return ji.InverseProblem(forward, prior, lik), y


def log_mesquite(d):
    """logmesquite: log weight ~ N(X β, σ) (X: 1, the five log sizes, group), flat β and σ > 0."""
    X = jnp.asarray(d["X"])
    forward, lik = L.bind(lambda t: X @ t["beta"], L.Gaussian(std=lambda t: t["sigma"]))
    prior = P.Joint({"beta": P.Flat((7,)), "sigma": P.Flat(low=0.0)})
    return ji.InverseProblem(forward, prior, lik), jnp.log(jnp.asarray(d["weight"]))


def stan_init(problem, key, num_chains: int):
    """One start per chain, uniform on (-2, 2) in the unconstrained space (Stan's and NumPyro's
    default); the improper flat priors need it (they have no draws)."""
    u = problem.prior.to_unconstrained(problem.prior.center())
    leaves, tree = jax.tree.flatten(u)
    keys = jax.random.split(key, len(leaves))
    u = jax.tree.unflatten(tree, [jax.random.uniform(k, (num_chains, *jnp.shape(v)), minval=-2, maxval=2)
                                  for k, v in zip(keys, leaves)])
    return jax.vmap(problem.prior.from_unconstrained)(u)
