"""Posterior benchmarks with reference posteriors (family ``"sbi"``).

The tractable-likelihood tasks of the simulation-based-inference benchmark (Lueckmann et al.,
"Benchmarking simulation-based inference", AISTATS 2021; the ``sbibm`` package), with their
priors and simulators as defined there, and the planar-arm inverse-kinematics problem of Kruse
et al. ("Benchmarking invertible architectures on inverse problems", 2021). Each comes with
reference posterior draws from an independent method (`jinverse.problems.reference`) and is
scored by C2ST against them.

Observations are generated here from ``seed`` (sbibm's ten fixed observations are not
reproduced). Options common to all: ``seed``, ``batch``, ``num_reference`` (reference draws per
observation, default 10,000) and ``reference`` (``"auto"``: build, or load from the cache, the
reference draws for every observation when the method is cheap, and only without ``batch`` for
the MCMC-based ones; ``True``/``False`` to force).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import likelihoods as lik
from .. import priors
from .._checks import check_positive_int
from ..problem import InverseProblem
from . import reference as ref
from ._registry import Benchmark, register

_LOG_2PI = math.log(2 * math.pi)


# --------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------
def observe(problem: InverseProblem, seed: int, batch: int | None):
    """``(theta_true, y)`` drawn from the prior and the simulator.

    Observation ``i`` uses ``split(key(seed), B)[i]``, so ``batch=None`` gives the first row of
    any batch with the same seed.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: got {seed!r}, expected an integer")
    if batch is not None:
        check_positive_int("batch", batch)
    keys = jax.random.split(jax.random.key(int(seed)), 1 if batch is None else batch)
    theta, y = _observe(problem, keys)
    if batch is None:
        theta, y = jax.tree.map(lambda a: a[0], (theta, y))
    return theta, y


@eqx.filter_jit
def _observe(problem, keys):
    def one(k):
        k1, k2 = jax.random.split(k)
        theta = problem.sample_prior(k1)
        return theta, problem.simulate(k2, theta)

    return jax.vmap(one)(keys)


def _check_reference(reference, num_reference, batch, cheap: bool) -> bool:
    check_positive_int("num_reference", num_reference)
    if reference == "auto":
        return cheap or batch is None
    if not isinstance(reference, bool):
        raise ValueError(f"reference: got {reference!r}, expected 'auto', True or False")
    return reference


def _per_observation(name, y, seed, num, sampler, batched: bool, extra=None):
    """Reference draws ``(*batch, num, *theta)`` for each observation of ``y``, cached on disk."""
    flat = np.asarray(y) if batched else np.asarray(y)[None]
    out = []
    for i, yi in enumerate(flat):
        parts = {"y": yi, "num": num, "seed": seed, **(extra or {})}
        key = jax.random.fold_in(jax.random.key(seed), i)

        def build(yi=yi, key=key):  # run only when the draws are not cached yet
            return sampler(key, jnp.asarray(yi), num)

        out.append(ref.cached(name, parts, build))
    draws = np.stack(out)
    return draws if batched else draws[0]


def _benchmark(name, problem, theta, y, draws, options, info, extra_ref=None):
    reference = None
    if draws is not None:
        reference = {"draws": jnp.asarray(draws), **(extra_ref or {})}
    elif extra_ref:
        reference = dict(extra_ref)
    return Benchmark(name, problem, y, theta, reference, "c2st", options, info)


def _identity(theta):
    return theta


def _build(name, problem, *, seed, batch, num_reference, reference, cheap, sampler, extra=None):
    theta, y = observe(problem, seed, batch)
    draws = None
    if _check_reference(reference, num_reference, batch, cheap):
        draws = _per_observation(name, y, seed, num_reference, sampler, batch is not None, extra)
    return theta, y, draws


# --------------------------------------------------------------------------------------
# likelihoods that jinverse.likelihoods lacks
# --------------------------------------------------------------------------------------
def _normal_logpdf(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - jnp.log(scale) - 0.5 * _LOG_2PI


class TwoMoonsLikelihood(lik.AbstractLikelihood):
    """sbibm's two-moons noise: ``y = g(θ) + p``, ``p = (r cos a + 0.25, r sin a)``,
    ``a ~ U(-π/2, π/2)``, ``r ~ N(0.1, 0.01²)``; the prediction is ``g(θ)``.

    Its density in ``p`` is ``N(r; 0.1, 0.01²) / (π r)`` on the half-plane ``p₀ > 0.25``.
    """

    def log_prob(self, y, prediction):
        u = y - prediction - jnp.array([0.25, 0.0])
        inside = u[0] > 0
        r = jnp.sqrt(jnp.sum(jnp.where(inside, u, 1.0) ** 2))
        lp = _normal_logpdf(r, 0.1, 0.01) - jnp.log(jnp.pi) - jnp.log(r)
        return jnp.where(inside, lp, -jnp.inf)

    def sample(self, key, prediction):
        k1, k2 = jax.random.split(key)
        dt = jnp.result_type(prediction)
        a = jax.random.uniform(k1, (), dt, -jnp.pi / 2, jnp.pi / 2)
        r = 0.1 + 0.01 * jax.random.normal(k2, (), dt)
        return prediction + jnp.stack([r * jnp.cos(a) + 0.25, r * jnp.sin(a)])


class SLCPLikelihood(lik.AbstractLikelihood):
    """``num_data`` i.i.d. bivariate normals; the prediction is ``(m₀, m₁, s₁, s₂, ρ)``
    (standard deviations and correlation), the data their draws flattened to ``2 num_data``."""

    num_data: int = 4

    def _chol(self, prediction):
        s1, s2, rho = prediction[2], prediction[3], prediction[4]
        return jnp.array([[s1, 0.0], [rho * s2, s2 * jnp.sqrt(1 - rho**2)]])

    def log_prob(self, y, prediction):
        x = y.reshape(self.num_data, 2) - prediction[:2]
        s1, s2, rho = prediction[2], prediction[3], prediction[4]
        z1 = x[:, 0] / s1
        z2 = (x[:, 1] / s2 - rho * z1) / jnp.sqrt(1 - rho**2)
        logdet = jnp.log(s1) + jnp.log(s2) + 0.5 * jnp.log1p(-(rho**2))
        return jnp.sum(-0.5 * (z1**2 + z2**2) - logdet - _LOG_2PI)

    def sample(self, key, prediction):
        z = jax.random.normal(key, (self.num_data, 2), jnp.result_type(prediction))
        return (prediction[:2] + z @ self._chol(prediction).T).reshape(-1)

    def event_shape(self, prediction):
        if tuple(prediction.shape) != (5,):
            raise ValueError(f"forward: returns shape {prediction.shape}, expected (5,) for SLCP")
        return (2 * self.num_data,)


class GaussianMixtureLikelihood(lik.AbstractLikelihood):
    """sbibm's mixture noise: ``y ~ 0.5 N(θ, I) + 0.5 N(θ, 0.1² I)``."""

    def log_prob(self, y, prediction):
        comp = [jnp.log(0.5) + jnp.sum(_normal_logpdf(y, prediction, s)) for s in (1.0, 0.1)]
        return jax.scipy.special.logsumexp(jnp.stack(comp))

    def sample(self, key, prediction):
        k1, k2 = jax.random.split(key)
        scale = jnp.where(jax.random.bernoulli(k1, 0.5), 1.0, 0.1)
        return prediction + scale * jax.random.normal(k2, jnp.shape(prediction), jnp.result_type(prediction))


# --------------------------------------------------------------------------------------
# tasks
# --------------------------------------------------------------------------------------
_COMMON = "Options: seed, batch, num_reference, reference."


@register("gaussian_linear", "sbibm Gaussian linear: 10-D N(0, 0.1 I) prior, y ~ N(θ, 0.1 I); "
          "closed-form posterior", "sbi")
def gaussian_linear(*, seed=0, batch=None, dim=10, num_reference=10_000, reference="auto"):
    """sbibm ``gaussian_linear``: θ ~ N(0, 0.1 I_dim), y | θ ~ N(θ, 0.1 I_dim).

    The posterior is N(y / 2, 0.05 I); ``reference`` also holds its mean and covariance.
    """
    dim = check_positive_int("dim", dim)
    s0 = s = math.sqrt(0.1)
    problem = InverseProblem(_identity, priors.Gaussian(jnp.zeros(dim), s0), lik.Gaussian(s))
    var = 1 / (1 / s0**2 + 1 / s**2)

    def sampler(key, y, num):
        return var / s**2 * y + math.sqrt(var) * jax.random.normal(key, (num, dim), y.dtype)

    theta, y, draws = _build("gaussian_linear", problem, seed=seed, batch=batch,
                             num_reference=num_reference, reference=reference, cheap=True,
                             sampler=sampler, extra={"dim": dim})
    exact = {"posterior_mean": var / s**2 * y, "posterior_cov": var * jnp.eye(dim)}
    opts = dict(seed=seed, batch=batch, dim=dim, num_reference=num_reference)
    return _benchmark("gaussian_linear", problem, theta, y, draws, opts, {}, exact)


@register("gaussian_linear_uniform", "sbibm Gaussian linear with a U(-1, 1)^10 prior; exact "
          "truncated-normal posterior", "sbi")
def gaussian_linear_uniform(*, seed=0, batch=None, dim=10, num_reference=10_000, reference="auto"):
    """sbibm ``gaussian_linear_uniform``: θ ~ U(-1, 1)^dim, y | θ ~ N(θ, 0.1 I).

    The posterior is a product of normals N(y_i, 0.1) truncated to [-1, 1], sampled exactly by
    the inverse CDF.
    """
    dim = check_positive_int("dim", dim)
    s = math.sqrt(0.1)
    problem = InverseProblem(_identity, priors.Uniform(-jnp.ones(dim), jnp.ones(dim)), lik.Gaussian(s))

    def sampler(key, y, num):
        lo, hi = jax.scipy.special.ndtr((-1 - y) / s), jax.scipy.special.ndtr((1 - y) / s)
        u = jax.random.uniform(key, (num, dim), y.dtype)
        return jnp.clip(y + s * jax.scipy.special.ndtri(lo + u * (hi - lo)), -1.0, 1.0)

    theta, y, draws = _build("gaussian_linear_uniform", problem, seed=seed, batch=batch,
                             num_reference=num_reference, reference=reference, cheap=True,
                             sampler=sampler, extra={"dim": dim})
    opts = dict(seed=seed, batch=batch, dim=dim, num_reference=num_reference)
    return _benchmark("gaussian_linear_uniform", problem, theta, y, draws, opts, {})


def two_moons_map(theta):
    """sbibm's two-moons map ``g(θ) = (-|θ₀ + θ₁| / √2, (θ₁ - θ₀) / √2)``."""
    z0 = (theta[..., 0] + theta[..., 1]) / math.sqrt(2)
    z1 = (theta[..., 1] - theta[..., 0]) / math.sqrt(2)
    return jnp.stack([-jnp.abs(z0), z1], axis=-1)


@register("two_moons", "sbibm two moons: 2-D, U(-1, 1)^2 prior, crescent-shaped bimodal "
          "posterior; exact reference by inverting the simulator", "sbi")
def two_moons(*, seed=0, batch=None, num_reference=10_000, reference="auto"):
    """sbibm ``two_moons``: θ ~ U(-1, 1)², y = g(θ) + p with sbibm's crescent noise p.

    Reference draws invert the simulator exactly: draw p, solve ``g(θ) = y - p`` (two solutions,
    ``±z₀``, one chosen at random), keep θ inside the prior box.
    """
    problem = InverseProblem(two_moons_map, priors.Uniform(-jnp.ones(2), jnp.ones(2)),
                             TwoMoonsLikelihood())
    noise = TwoMoonsLikelihood()

    def sampler(key, y, num):
        def propose(k, n):
            k1, k2 = jax.random.split(k)
            p = jax.vmap(noise.sample)(jax.random.split(k1, n), jnp.zeros((n, 2), y.dtype))
            q = y - p  # = g(θ) = (-|z0|, z1)
            sign = jnp.where(jax.random.bernoulli(k2, 0.5, (n,)), 1.0, -1.0)
            z0, z1 = jnp.where(q[:, 0] <= 0, -q[:, 0], jnp.nan) * sign, q[:, 1]
            return jnp.stack([(z0 - z1) / math.sqrt(2), (z0 + z1) / math.sqrt(2)], axis=-1)

        def log_accept(t):
            return jnp.where(jnp.all(jnp.abs(t) <= 1), 0.0, -jnp.inf)

        return ref.rejection(key, propose, log_accept, num, chunk=2**15)

    theta, y, draws = _build("two_moons", problem, seed=seed, batch=batch,
                             num_reference=num_reference, reference=reference, cheap=True,
                             sampler=sampler)
    return _benchmark("two_moons", problem, theta, y, draws,
                      dict(seed=seed, batch=batch, num_reference=num_reference),
                      {"multimodal": "two crescent halves (±z₀), and the density has a kink "
                                     "(|θ₀ + θ₁|) where the halves meet"})


def slcp_params(theta):
    """SLCP's map ``θ ↦ (m₀, m₁, s₁, s₂, ρ) = (θ₀, θ₁, θ₂², θ₃², tanh θ₄)``."""
    return jnp.stack([theta[0], theta[1], theta[2] ** 2, theta[3] ** 2, jnp.tanh(theta[4])])


def _nuts_sampler(problem, *, chains=8, num_warmup=1000, thin=5, fold_init=None, fold=None):
    """A reference builder: SIR starts from the prior, then a long checked NUTS run in u-space.

    ``fold_init(θ)`` maps the starting points into one region (e.g. one orthant) and ``fold(key,
    θ)`` applies an exact symmetry of the posterior to the final draws.
    """

    def sampler(key, y, num):
        k1, k2, k3 = jax.random.split(key, 3)
        init = ref.sir(k1, lambda k, n: problem.sample_prior(k, (n,)),
                       lambda t: problem.log_likelihood(t, y), chains)
        if fold_init is not None:
            init = fold_init(init)
        u0 = jax.vmap(problem.to_unconstrained)(init)
        u = ref.nuts_reference(k2, lambda u: problem.log_density(u, y, jacobian=True), u0, num,
                               num_warmup=num_warmup, thin=thin)
        theta = jax.vmap(problem.from_unconstrained)(jnp.asarray(u))
        return theta if fold is None else fold(k3, theta)

    return sampler


def _slcp_flip(key, theta):
    # The likelihood depends on θ₂, θ₃ only through their squares: flip their signs at random.
    signs = jnp.where(jax.random.bernoulli(key, 0.5, (theta.shape[0], 2)), 1.0, -1.0)
    return theta.at[:, 2:4].multiply(signs)


@register("slcp", "sbibm SLCP: 5 parameters, U(-3, 3)^5 prior, 4 bivariate-normal draws; "
          "four-mode posterior, reference by checked long NUTS runs", "sbi")
def slcp(*, seed=0, batch=None, num_reference=10_000, reference="auto"):
    """sbibm ``slcp`` (simple likelihood, complex posterior).

    θ ~ U(-3, 3)⁵; y is 4 draws of N(m, S), m = (θ₀, θ₁), S's standard deviations θ₂², θ₃² and
    correlation tanh θ₄, flattened to 8 numbers. The posterior is invariant under the sign flips
    of θ₂ and θ₃ (four modes): the reference samples one orthant with NUTS (convergence-checked)
    and flips those signs at random.
    """
    problem = InverseProblem(slcp_params, priors.Uniform(-3 * jnp.ones(5), 3 * jnp.ones(5)),
                             SLCPLikelihood())
    sampler = _nuts_sampler(problem, fold_init=lambda t: t.at[:, 2:4].set(jnp.abs(t[:, 2:4])),
                            fold=_slcp_flip)
    theta, y, draws = _build("slcp", problem, seed=seed, batch=batch, num_reference=num_reference,
                             reference=reference, cheap=False, sampler=sampler)
    return _benchmark("slcp", problem, theta, y, draws,
                      dict(seed=seed, batch=batch, num_reference=num_reference),
                      {"multimodal": "four modes (the signs of θ₂ and θ₃ are not identified)"})


@register("gaussian_mixture", "sbibm Gaussian mixture: 2-D, U(-10, 10)^2 prior, "
          "y ~ 0.5 N(θ, I) + 0.5 N(θ, 0.01 I); exact rejection reference", "sbi")
def gaussian_mixture(*, seed=0, batch=None, num_reference=10_000, reference="auto"):
    """sbibm ``gaussian_mixture``. The posterior is the mixture centred at y, truncated to the box:
    reference draws are exact (draw from the mixture, keep those inside the prior)."""
    problem = InverseProblem(_identity, priors.Uniform(-10 * jnp.ones(2), 10 * jnp.ones(2)),
                             GaussianMixtureLikelihood())
    noise = GaussianMixtureLikelihood()

    def sampler(key, y, num):
        def propose(k, n):
            return jax.vmap(noise.sample, (0, None))(jax.random.split(k, n), y)

        def log_accept(t):
            return jnp.where(jnp.all(jnp.abs(t) <= 10), 0.0, -jnp.inf)

        return ref.rejection(key, propose, log_accept, num, chunk=2**15)

    theta, y, draws = _build("gaussian_mixture", problem, seed=seed, batch=batch,
                             num_reference=num_reference, reference=reference, cheap=True,
                             sampler=sampler)
    return _benchmark("gaussian_mixture", problem, theta, y, draws,
                      dict(seed=seed, batch=batch, num_reference=num_reference), {})


def bernoulli_glm_design(duration: int = 100, filter_length: int = 9, seed: int = 42) -> np.ndarray:
    """The design matrix ``(duration, 1 + filter_length)``: a column of ones and the white-noise
    stimulus lagged by 0 .. filter_length-1 steps (zero before the start)."""
    stim = np.random.default_rng(seed).standard_normal(duration)
    cols = [np.concatenate([np.zeros(j), stim[: duration - j]]) for j in range(filter_length)]
    return np.column_stack([np.ones(duration), *cols])


def bernoulli_glm_precision(dim: int = 10) -> np.ndarray:
    """sbibm's prior precision: 0.5 for the offset, FᵀF for the filter, F = D² + diag(√(i/M))."""
    m = dim - 1
    d = np.eye(m) - np.eye(m, k=-1)
    f = d @ d + np.diag(np.sqrt(np.arange(m) / m))
    out = np.zeros((dim, dim))
    out[0, 0] = 0.5
    out[1:, 1:] = f.T @ f
    return out


@register("bernoulli_glm", "sbibm Bernoulli GLM: 10 parameters (offset + 9-tap filter), "
          "100 binary responses to white noise; reference by checked long NUTS runs", "sbi")
def bernoulli_glm(*, seed=0, batch=None, num_reference=10_000, reference="auto"):
    """sbibm ``bernoulli_glm``: y_t ~ Bernoulli(σ(x_tᵀ θ)), θ ~ N(0, B⁻¹) with sbibm's smoothness
    precision B, 100 time steps of a white-noise stimulus (drawn here from numpy's seed 42).

    ``y`` is the raw binary response; sbibm observes its sufficient statistic ``Xᵀy``
    (``info["summary"]``), which gives the same posterior.
    """
    x = jnp.asarray(bernoulli_glm_design())
    prior = priors.Gaussian(jnp.zeros(10), precision=jnp.asarray(bernoulli_glm_precision()))
    problem = InverseProblem(x, prior, lik.Bernoulli())
    theta, y, draws = _build("bernoulli_glm", problem, seed=seed, batch=batch,
                             num_reference=num_reference, reference=reference, cheap=False,
                             sampler=_nuts_sampler(problem))
    info = {"design_matrix": x, "summary": y @ x}
    return _benchmark("bernoulli_glm", problem, theta, y, draws,
                      dict(seed=seed, batch=batch, num_reference=num_reference), info)


_ARM = (0.5, 0.5, 1.0)


def arm_forward(theta):
    """End point of Kruse et al.'s arm: a rail offset θ₀ and joint angles θ₁..θ₃, lengths 0.5,
    0.5, 1: ``(θ₀ + Σ lᵢ sin φᵢ, Σ lᵢ cos φᵢ)`` with ``φ = cumsum(θ₁..θ₃)``."""
    phi = jnp.cumsum(theta[1:])
    lengths = jnp.asarray(_ARM, theta.dtype)
    return jnp.stack([theta[0] + jnp.sum(lengths * jnp.sin(phi)), jnp.sum(lengths * jnp.cos(phi))])


@register("inverse_kinematics", "Kruse et al. planar arm on a rail: 4 parameters, 2-D end point "
          "(many-to-one); exact rejection reference", "sbi")
def inverse_kinematics(*, seed=0, batch=None, noise=0.01, num_reference=10_000, reference="auto"):
    """θ ~ N(0, diag(0.25, 0.5, 0.5, 0.5)²) (rail height, three joint angles); y = arm_forward(θ)
    plus Gaussian noise of standard deviation ``noise`` (absolute, in units of the arm, whose
    reach is 2). A 2-D set of θ reaches each end point. Reference: exact rejection sampling of
    the angles from their prior (rail height integrated out), then the rail height from its
    Gaussian conditional."""
    if not (isinstance(noise, (int, float)) and not isinstance(noise, bool) and noise > 0):
        raise ValueError(f"noise: got {noise!r}, expected a number > 0 (the end-point noise std)")
    prior = priors.Gaussian(jnp.zeros(4), jnp.array([0.25, 0.5, 0.5, 0.5]))
    problem = InverseProblem(arm_forward, prior, lik.Gaussian(float(noise)))

    def sampler(key, y, num):
        # The rail height θ₀ enters linearly: integrate it out, rejection-sample the angles from
        # their prior with the marginal likelihood, then draw θ₀ from its Gaussian conditional.
        s0 = prior.std[0]

        def log_accept(phi):
            e = arm_forward(jnp.concatenate([jnp.zeros(1, phi.dtype), phi]))
            return -0.5 * (y[0] - e[0]) ** 2 / (noise**2 + s0**2) - 0.5 * (y[1] - e[1]) ** 2 / noise**2

        k1, k2 = jax.random.split(key)
        phi = ref.rejection(k1, lambda k, n: prior.sample(k, (n,))[:, 1:], log_accept, num, chunk=2**17)
        phi = jnp.asarray(phi)
        reach = jax.vmap(lambda p: arm_forward(jnp.concatenate([jnp.zeros(1, p.dtype), p]))[0])(phi)
        var = 1 / (1 / s0**2 + 1 / noise**2)
        rail = var * (y[0] - reach) / noise**2 + jnp.sqrt(var) * jax.random.normal(k2, (num,), phi.dtype)
        return jnp.concatenate([rail[:, None], phi], axis=1)

    theta, y, draws = _build("inverse_kinematics", problem, seed=seed, batch=batch,
                             num_reference=num_reference, reference=reference, cheap=True,
                             sampler=sampler, extra={"noise": float(noise)})
    return _benchmark("inverse_kinematics", problem, theta, y, draws,
                      dict(seed=seed, batch=batch, noise=noise, num_reference=num_reference), {})
