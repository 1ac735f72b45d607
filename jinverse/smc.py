"""Adaptive tempered sequential Monte Carlo: ``ji.sample(..., method="smc")``.

A population of particles moves from the prior to the posterior through the tempered targets

    π_β(u) ∝ p(u) p(y | θ(u))^β,    0 = β₀ < β₁ < ... < β_K = 1,

in the prior's unconstrained space ``u`` (``log p(u)`` carries the log-Jacobian, so that
``log p(u) + log p(y | θ(u))`` is ``problem.log_density(u, y)``, the one log-density). Each stage
is one step of blackjax's adaptive tempered SMC (`blackjax.smc.adaptive_tempered.build_kernel`):
the next β is the one whose incremental weights ``p(y | θ)^(β' - β)`` keep an effective sample
size of ``target_ess`` of the particles; the particles are resampled (systematic resampling)
and moved by ``num_mcmc_steps`` random-walk Metropolis steps that leave π_β invariant. The
proposal is ``N(0, s² Σ)``, with ``Σ`` the weighted covariance of the particle population at
that stage (dense up to `metric.DENSE_MAX` unknowns, else its diagonal) and ``s`` the optimal
scaling ``2.38/√d`` times a factor adapted from the previous stage's acceptance rate towards
0.234. Once β = 1 the particles are resampled once more and moved at β = 1, so the returned draws
are equally weighted and not duplicated.

The log marginal likelihood ``log p(y) = Σ_k log mean_i p(y | θ_i)^(β_k - β_(k-1))`` comes as a
by-product (unbiased in ``p(y)``; its log has a bias of order ``var/2``, small with enough
particles). The prior and likelihood are normalised densities, so it is the evidence proper.

The per-lane core (`smc_one`) is pure: jit, vmap safe; `sample_smc` is the driver that
`ji.sample` hands ``method="smc"`` to.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import blackjax.smc.adaptive_tempered as adaptive_tempered
import blackjax.smc.tempered as tempered
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.mcmc import random_walk
from blackjax.smc import resampling
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, Int, PRNGKeyArray

from . import metric as metric_lib
from ._batching import check_mesh, default_block_size, stream, tree_bytes
from ._checks import check_positive_int
from ._samplers import Stats
from .posterior import Posterior, smc_status_and_warnings, warn
from .problem import InverseProblem

OPTIONS = frozenset({"num_mcmc_steps", "target_ess", "max_stages"})
TARGET_ACCEPTANCE = 0.234  # random-walk Metropolis (Roberts, Gelman & Gilks 1997)
# Incremented each time the SMC program is traced (tests count retraces with it).
_TRACES = {"count": 0}
#: The log-likelihood SMC uses where the model's is -inf (see `smc_one`).
ZERO_LIKELIHOOD = -1e10


class SMCStats(NamedTuple):
    """Per-observation diagnostics of a tempered SMC run (each field ``(*batch,)``).

    Attributes:
        log_evidence: the estimate of ``log p(y)``.
        num_stages: tempering stages taken to reach β = 1 (the final move at β = 1 not counted).
        beta: the tempering parameter reached: 1 unless ``max_stages`` stopped the run first.
        final_ess: effective sample size of the importance weights at β = 1, before the final
            resampling (the adaptive schedule keeps it near ``target_ess`` x particles).
        acceptance_rate: mean acceptance of the last stage's mutation moves (near 0: the
            particles barely move and are mostly copies of few ancestors).
    """

    log_evidence: Float[Array, "*batch"]
    num_stages: Int[Array, "*batch"]
    beta: Float[Array, "*batch"]
    final_ess: Float[Array, "*batch"]
    acceptance_rate: Float[Array, "*batch"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Static settings of one SMC program (a new value compiles a new program)."""

    num_particles: int
    num_mcmc_steps: int = 20
    target_ess: float = 0.5
    max_stages: int = 200
    key_impl: str | None = None


def _weighted_scale(particles, weights, dense: bool):
    """A square root of the weighted covariance of the particles: lower Cholesky factor
    ``(d, d)`` or standard deviations ``(d,)``, regularised so that a collapsed population
    still proposes moves."""
    mean = weights @ particles
    centred = particles - mean
    var = weights @ centred**2
    floor = 1e-12 + 1e-8 * jnp.mean(var)
    if not dense:
        return jnp.sqrt(var + floor)
    cov = (centred * weights[:, None]).T @ centred
    chol = jnp.linalg.cholesky(cov + floor * jnp.eye(cov.shape[0], dtype=cov.dtype))
    # a covariance that is not numerically positive definite: fall back to its diagonal
    return jnp.where(jnp.all(jnp.isfinite(chol)), chol, jnp.diag(jnp.sqrt(var + floor)))


_RMH = random_walk.build_additive_step()


def _mutation_step(key, state, logdensity_fn, scale):
    """One random-walk Metropolis step with proposal ``N(0, scale scaleᵀ)`` (a matrix) or
    ``N(0, diag(scale²))`` (a vector)."""
    def random_step(k, x):
        z = jax.random.normal(k, x.shape, x.dtype)
        return scale @ z if scale.ndim == 2 else scale * z

    return _RMH(key, state, logdensity_fn, random_step)


def smc_one(problem: InverseProblem, y, key: PRNGKeyArray, s: Settings, reference=None):
    """Tempered SMC for one observation.

    ``reference``: None (from the prior), or an object whose ``smc_start(key, y, num)`` gives
    ``num`` flat unconstrained draws ``(num, d)`` of a normalised density r(u | y) and the function
    ``u -> log r(u | y)`` (e.g. a `jinverse.amortized.MixtureDensity`). The particles then start
    from r, and the path is ``π_β ∝ r^(1-β) · posterior^β``: the same adaptive tempering with
    ``log r`` in place of the prior and ``log p(u, y) - log r(u)`` in place of the
    log-likelihood. The log evidence stays ``log p(y)`` (r is normalised); where r is the
    posterior, the first stage reaches β = 1 with equal weights.

    Returns ``(u, acceptance, stats)``: the equally weighted particles in the flat unconstrained
    space ``(num_particles, d)``, each particle's acceptance rate over its final moves
    ``(num_particles,)`` and the run's `SMCStats` (scalars). Pure: jit and vmap safe.
    """
    ref = problem.theta_shape_dtype()
    _, unravel = ravel_pytree(jax.tree.map(lambda r: jnp.zeros(r.shape, r.dtype), ref))
    k_init, k_run, k_final = jax.random.split(key, 3)
    if reference is None:
        theta0 = problem.sample_prior(k_init, (s.num_particles,))
        u0 = jax.vmap(lambda t: ravel_pytree(problem.to_unconstrained(t))[0])(theta0)

        def log_prior(x):  # the density of u: the prior at θ(u) times |dθ/du|
            u = unravel(x)
            return problem.log_prior(problem.from_unconstrained(u)) + problem.prior.log_det_jacobian(u)

        def raw_log_likelihood(x):
            return problem.log_likelihood(problem.from_unconstrained(unravel(x)), y)
    else:
        u0, log_prior = reference.smc_start(k_init, y, s.num_particles)

        def raw_log_likelihood(x):  # the posterior over the reference: log p(u, y) - log r(u)
            return problem.log_density(unravel(x), y) - log_prior(x)
    n, d = u0.shape
    dtype = u0.dtype
    dense = d <= metric_lib.DENSE_MAX

    def log_likelihood(x):
        # Where the likelihood is zero (log -inf, e.g. two_moons' bounded noise) the tempering
        # meets 0·(-inf) = NaN (at β = 0 and δ = 0). `ZERO_LIKELIHOOD` instead: the path
        # prior·L^β then passes smoothly through prior·exp(-β·1e10) outside the support, whose
        # mass is gone (e^-1e10) long before β = 1. NaN stays NaN (a fault, flagged).
        ll = raw_log_likelihood(x)
        return jnp.where(jnp.isneginf(ll), jnp.asarray(ZERO_LIKELIHOOD, ll.dtype), ll)

    parts = (log_prior, log_likelihood, _mutation_step, random_walk.init, resampling.systematic)
    adaptive = adaptive_tempered.build_kernel(*parts, target_ess=s.target_ess)
    fixed = tempered.build_kernel(*parts)
    optimal = 2.38 / math.sqrt(d)

    def stage(carry, k, final: bool = False):
        """Choose the next β (``final``: keep it), resample, move the particles
        ``num_mcmc_steps`` times at the current β with a proposal shaped by their covariance,
        reweight."""
        state, log_z, count, log_factor, _ = carry
        scale = _weighted_scale(state.particles, state.weights, dense) * (optimal * jnp.exp(log_factor))
        params = {"scale": scale[None]}
        if final:
            state, info = fixed(k, state, s.num_mcmc_steps, state.tempering_param, params)
        else:
            state, info = adaptive(k, state, s.num_mcmc_steps, params)
        acc = jnp.mean(info.update_info.acceptance_rate, axis=-1)  # per particle
        rate = jnp.mean(acc)
        # towards 0.234: halve/double the scale at acceptance 0 / ~0.58, kept within 1e-3..10
        log_factor = jnp.clip(log_factor + 1.2 * (rate - TARGET_ACCEPTANCE), math.log(1e-3), math.log(10.0))
        return (state, log_z + info.log_likelihood_increment, count + 1, log_factor, acc), None

    init = (tempered.TemperedSMCState(u0, jnp.full((n,), 1.0 / n, dtype), jnp.zeros((), dtype)),
            jnp.zeros((), dtype), jnp.zeros((), jnp.int32), jnp.zeros((), dtype), jnp.zeros((n,), dtype))

    # The tempering loop: one stage per iteration until β = 1 (or max_stages).
    def running(carry):
        state, _, count, _, _ = carry
        return (state.tempering_param < 1.0) & (count < s.max_stages)

    def body(carry):
        return stage(carry, jax.random.fold_in(k_run, carry[2]))[0]

    carry = jax.lax.while_loop(running, body, init)
    state, log_z, count, _, _ = carry
    w = state.weights
    final_ess = 1.0 / jnp.sum(w**2)
    # β stays where it is (δ = 0): resample the weighted particles and move them once more, so the
    # draws are equally weighted; the increment log mean(1) = 0 is not added.
    (state, _, _, _, acc), _ = stage(carry, k_final, final=True)
    stats = SMCStats(log_z, count, state.tempering_param, final_ess, jnp.mean(acc))
    return state.particles, acc, stats


def _smc_lanes(operand, lanes):
    """`smc_one` for every lane (observation) of a block: θ draws, acceptance, statistics."""
    problem, s, reference = operand
    _TRACES["count"] += 1
    _, unravel = ravel_pytree(jax.tree.map(lambda r: jnp.zeros(r.shape, r.dtype), problem.theta_shape_dtype()))

    def one(lane):
        y, kd = lane
        key = kd if s.key_impl is None else jax.random.wrap_key_data(kd, impl=s.key_impl)
        u, acc, stats = smc_one(problem, y, key, s, reference)
        theta = jax.vmap(lambda x: problem.from_unconstrained(unravel(x)))(u)
        loglik = jax.vmap(lambda t: problem.log_likelihood(t, y))(theta)
        return theta, acc, ~jnp.isfinite(loglik), stats

    if jax.tree.leaves(lanes)[0].shape[0] == 1:  # one observation: not vmapped (as ji.sample)
        return jax.tree.map(lambda a: a[None], one(jax.tree.map(lambda a: a[0], lanes)))
    return jax.vmap(one)(lanes)


def _check_options(options: dict) -> dict:
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise ValueError(f"options: got {unknown[0]!r} (unknown for method 'smc'), expected some of "
                         f"{sorted(OPTIONS)}")
    out: dict[str, int | float] = {}
    for name in ("num_mcmc_steps", "max_stages"):
        if name in options:
            out[name] = check_positive_int(name, options[name])
    if "target_ess" in options:
        t = options["target_ess"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < 1:
            raise ValueError(f"target_ess: got {t!r}, expected a number strictly between 0 and 1")
        out["target_ess"] = float(t)
    return out


def sample_smc(problem: InverseProblem, y, *, key: PRNGKeyArray, num_chains: int = 4,
               num_samples: int = 1000, block_size: int | None = None, mesh=None,
               batch_axis: str | None = None, progress: Any = None, reference=None, **options) -> Posterior:
    """`ji.sample`'s ``method="smc"``: ``num_chains * num_samples`` particles per observation.

    The particles (equally weighted after the final resampling and move) are returned as
    ``samples`` shaped ``(*batch, num_chains, num_samples, *theta_shape)``: "chains" are
    consecutive groups of particles, not Markov chains, so R-hat across them is not computed
    (``max_rhat`` is NaN) and no R-hat warning is raised. ``min_ess`` is the effective sample
    size of the importance weights at β = 1 (before the final resampling); ``log_evidence`` and
    ``smc`` (`SMCStats`: stages, β reached, final ESS, acceptance) are set. ``stats`` per draw:
    the particle's acceptance rate over its final ``num_mcmc_steps`` moves,
    ``num_integration_steps`` = ``num_mcmc_steps``, ``is_divergent`` where its log-likelihood is
    not finite. Options: ``num_mcmc_steps`` (default 20 random-walk moves per stage),
    ``target_ess`` (fraction kept per stage, default 0.5), ``max_stages`` (default 200; a run
    that stops before β = 1 is flagged `Status.TEMPERING_INCOMPLETE`). ``reference``: start
    from it instead of the prior (see `smc_one`; `jinverse.amortized.smc_sample` passes a
    trained q(θ | y)).
    """
    num_chains = check_positive_int("num_chains", num_chains)
    num_samples = check_positive_int("num_samples", num_samples, minimum=4)
    opts = _check_options(options)
    batch_axis = check_mesh(mesh, batch_axis)
    if block_size is not None:
        block_size = check_positive_int("block_size", block_size)
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key) if isinstance(key, jax.Array) else False
    if isinstance(key, jax.Array) and key.ndim > (0 if typed else 1):
        raise ValueError(f"key: got a batch of keys of shape {key.shape}, expected one key")
    n = num_chains * num_samples
    s = Settings(n, key_impl=str(jax.random.key_impl(key)) if typed else None, **opts)

    y, batch = problem.check_y(y)
    size = math.prod(batch)
    keys = jax.random.split(key, size) if batch else jnp.expand_dims(key, 0)
    lanes = (y.reshape(size, *y.shape[len(batch):]), jax.random.key_data(keys) if typed else keys)
    if block_size is None:
        d = ravel_pytree(jax.tree.map(lambda r: jnp.zeros(r.shape, r.dtype), problem.theta_shape_dtype()))[0].size
        per_lane = n * (3 * d * y.dtype.itemsize + 16) + (d * d * y.dtype.itemsize if d <= metric_lib.DENSE_MAX else 0)
        n_dev = 1 if mesh is None else mesh.shape[batch_axis]
        block_size = default_block_size(tree_bytes(jax.tree.map(lambda a: a[:1], lanes)) + per_lane, n_dev)
    theta, acc, bad, stats = stream(_smc_lanes, (problem, s, reference), lanes, num_lanes=size, block_size=block_size,
                                    mesh=mesh, axis=batch_axis, progress=progress, label="posteriors")

    def shape(a, per_particle):  # (lanes, particles, ...) -> (*batch, chains, draws, ...)
        return a.reshape(*batch, num_chains, num_samples, *a.shape[2:]) if per_particle else a.reshape(batch)

    samples = jax.tree.map(lambda a: shape(a, True), theta)
    acc, bad = shape(acc, True), shape(bad, True)
    stats = SMCStats(*(shape(a, False) for a in stats))
    nan = jnp.full(acc.shape, jnp.nan, acc.dtype)
    draw_stats = Stats(acc, bad, jnp.full(acc.shape, s.num_mcmc_steps, jnp.int32), nan, nan)
    finite = jnp.ones(batch, bool)
    for a in jax.tree.leaves(samples):
        finite &= jnp.all(jnp.isfinite(a.reshape(*batch, -1)), axis=-1)
    status, messages = smc_status_and_warnings(stats, np.asarray(finite), np.asarray(jnp.sum(bad, axis=(-2, -1))))
    warn(messages)
    return Posterior(samples=samples, stats=draw_stats, max_rhat=jnp.full(batch, jnp.nan, acc.dtype),
                     min_ess=stats.final_ess, num_divergent=jnp.sum(bad, axis=(-2, -1)),
                     status=jnp.asarray(status), warnings=tuple(messages), method="smc", num_warmup=0,
                     log_evidence=stats.log_evidence, smc=stats)
