"""A trained q(θ | y) as the proposal of exact samplers: the draws follow the exact posterior
whatever q is; a good q only makes them cheaper.

- `independence_sample`: independence Metropolis-Hastings (IMH) with proposal q. Each chain starts
  at a draw of q; at every transition a fresh θ' ~ q(· | y) is accepted with probability
  ``min(1, p(θ' | y) q(θ | y) / (p(θ | y) q(θ' | y)))`` (in the unconstrained space u, where
  both densities carry the same Jacobian, which cancels), which leaves the posterior invariant.
  Its acceptance rate is the share of q's mass where ``w = p/q`` is not far below its
  posterior mean: near 1 where q is the posterior, near ``1/sup w`` at worst. Where q has
  lighter tails than the posterior, ``w`` is unbounded and IMH alone is not geometrically
  ergodic (a chain that reaches the tail where w is large stays there long: low acceptance,
  sticky chains, the R-hat/ESS flags); ``local_steps`` random-walk Metropolis moves after each
  independence step (proposal ``N(0, (2.38²/d) Σ_q)``, Σ_q the covariance of q) restore local
  exploration there. Every move leaves the posterior invariant, so the mixture does too.
- `smc_sample`: adaptive tempered SMC (`jinverse.smc`) started from q instead of the prior: the
  particles are draws of q, the path ``π_β ∝ q^(1-β) · posterior^β`` (weights ``(p/q)^δβ`` per
  stage) is tempered to β = 1 with resampling and random-walk moves. Where q is the posterior
  one stage with equal weights reaches β = 1; a poor q costs stages, not correctness. The log
  evidence estimate is ``log p(y)`` (q is normalised).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from .._batching import default_block_size, stream, tree_bytes
from .._checks import check_key, check_positive_int
from .._samplers import Stats
from ..convergence import diagnose_draws
from ..posterior import Posterior, warn
from ..smc import sample_smc
from ..traced import check_y
from .estimators import MixtureDensity, mixture_density_fn, mixture_sample, unconstrained_ravel

OPTIMAL_RW_SCALE = (
    2.38  # random-walk Metropolis: proposal covariance (2.38² / d) Σ (Roberts & Rosenthal 2001)
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Static settings of one independence-sampler program."""

    num_chains: int
    num_warmup: int
    num_samples: int
    local_steps: int
    key_impl: str | None


def mixture_covariance_factor(logw, means, chols):
    """A lower Cholesky factor of the covariance of the Gaussian mixture (regularised)."""
    w = jnp.exp(logw)
    mean = w @ means
    centred = means - mean
    cov = jnp.einsum("k,kij,klj->il", w, chols, chols) + (centred * w[:, None]).T @ centred
    d = cov.shape[0]
    return jnp.linalg.cholesky(cov + 1e-12 * jnp.trace(cov) / d * jnp.eye(d, dtype=cov.dtype))


def imh_lane(q: MixtureDensity, y_flat, key, s: Settings):
    """IMH (plus ``local_steps`` random-walk moves) for one observation: ``(u, stats)`` with the
    kept draws ``(chains, draws, d)`` in the flat unconstrained space and per-draw `Stats`.
    Pure: jit and vmap safe."""
    problem = q.problem
    d, unravel = unconstrained_ravel(problem)
    y = y_flat.reshape(problem.data_shape())
    comps = q.components(y_flat)
    log_q = mixture_density_fn(*comps)
    scale = OPTIMAL_RW_SCALE / math.sqrt(d) * mixture_covariance_factor(*comps)

    def log_p(u):  # NaN (a fault of the model) counts as -inf: such a point is never accepted
        lp = problem.log_density(unravel(u), y)
        return jnp.where(jnp.isnan(lp), -jnp.inf, lp), jnp.isnan(lp)

    def accept(key, log_ratio):
        return jnp.log(jax.random.uniform(key, dtype=log_ratio.dtype)) < log_ratio

    def transition(state, key):
        """One independence step from q, then ``local_steps`` random-walk steps."""
        u, lp, lq = state
        k_q, k_a, k_local = jax.random.split(key, 3)
        v, lq_v = mixture_sample(k_q, *comps, 1)
        v, lq_v = v[0], lq_v[0]
        lp_v, fault = log_p(v)
        # log of p(v) q(u) / (p(u) q(v)); a finite p(v) against p(u) = 0 gives +inf (accepted)
        log_ratio = jnp.where(jnp.isfinite(lp_v), (lp_v - lq_v) - (lp - lq), -jnp.inf)
        take = accept(k_a, log_ratio)
        u, lp, lq = jnp.where(take, v, u), jnp.where(take, lp_v, lp), jnp.where(take, lq_v, lq)
        rate = jnp.exp(jnp.minimum(log_ratio, 0.0))

        def local(carry, k):
            u, lp, bad = carry
            k_z, k_a = jax.random.split(k)
            v = u + scale @ jax.random.normal(k_z, u.shape, u.dtype)
            lp_v, f = log_p(v)
            ok = accept(k_a, jnp.where(jnp.isfinite(lp_v), lp_v - lp, -jnp.inf))
            return (jnp.where(ok, v, u), jnp.where(ok, lp_v, lp), bad | f), None

        if s.local_steps:
            (u, lp, fault), _ = jax.lax.scan(local, (u, lp, fault), jax.random.split(k_local, s.local_steps))
            lq = log_q(u)
        nan = jnp.full((), jnp.nan, u.dtype)
        return (u, lp, lq), (u, Stats(rate, fault, jnp.int32(1 + s.local_steps), nan, nan))

    def chain(key):
        k_start, k_warm, k_draw = jax.random.split(key, 3)
        u0, lq0 = mixture_sample(k_start, *comps, 1)
        state = (u0[0], log_p(u0[0])[0], lq0[0])
        # burn-in: a chain started at a draw of q is near the posterior only where q is good
        state, _ = jax.lax.scan(transition, state, jax.random.split(k_warm, s.num_warmup))
        _, out = jax.lax.scan(transition, state, jax.random.split(k_draw, s.num_samples))
        return out

    return jax.vmap(chain)(jax.random.split(key, s.num_chains))


def _imh_lanes(operand, lanes):
    """`imh_lane` for every lane of a block; draws mapped back to θ."""
    q, s = operand
    unravel = unconstrained_ravel(q.problem)[1]

    def one(lane):
        y_flat, kd = lane
        key = kd if s.key_impl is None else jax.random.wrap_key_data(kd, impl=s.key_impl)
        u, stats = imh_lane(q, y_flat, key, s)
        theta = jax.vmap(jax.vmap(lambda v: q.problem.from_unconstrained(unravel(v))))(u)
        return theta, stats

    return jax.vmap(one)(lanes)


def _check_q(q) -> None:
    if not isinstance(q, MixtureDensity):
        raise TypeError(
            f"q: got {type(q).__name__}, expected a jinverse.amortized.MixtureDensity "
            "(train one with train_mixture_density)"
        )


def _lane_keys(key, batch: tuple[int, ...]):
    """One key per observation (``jax.random.split(key, B)``; ``key`` itself without batch axes,
    as `ji.sample`), as raw key data for a typed key, and the key's implementation name (None for
    a raw key)."""
    check_key("key", key)
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key) if isinstance(key, jax.Array) else False
    if isinstance(key, jax.Array) and key.ndim > (0 if typed else 1):
        raise ValueError(f"key: got a batch of keys of shape {key.shape}, expected one key")
    keys = jax.random.split(key, math.prod(batch)) if batch else jnp.expand_dims(key, 0)
    return (jax.random.key_data(keys), str(jax.random.key_impl(key))) if typed else (keys, None)


def independence_sample(
    q: MixtureDensity,
    y,
    key: PRNGKeyArray,
    *,
    num_chains: int = 4,
    num_warmup: int = 100,
    num_samples: int = 1000,
    local_steps: int = 0,
    block_size: int | None = None,
    progress: Any = None,
    diagnose: bool = True,
) -> Posterior:
    """Exact posterior draws by independence Metropolis-Hastings with proposal q(θ | y).

    Args:
        q: a trained `MixtureDensity` (it holds its problem).
        y: observations ``(*batch, *event)``; element ``i`` of the flattened batch uses
            ``jax.random.split(key, B)[i]``.
        key: a JAX PRNG key.
        num_chains, num_warmup, num_samples: chains per observation (each started at a draw of
            q), discarded burn-in transitions, kept draws per chain.
        local_steps: random-walk Metropolis moves after each independence step (proposal
            ``N(0, (2.38²/d) Σ_q)``): 0 for pure IMH; 1-5 where q may have lighter tails than
            the posterior or miss part of it (see the module's notes).
        block_size: observations per compiled call (default: what keeps a block's draws within
            ~512 MiB); larger batches stream through the same program.
        progress: True for progress on stderr, or ``callback(done, total)`` after each block.
        diagnose: compute R-hat and bulk ESS (as `ji.sample`).

    Returns:
        A `ji.Posterior` (``method="independence"``): ``samples`` ``(*batch, chains, draws,
        *theta_shape)``; ``stats.acceptance_rate``: each independence step's acceptance
        probability (its mean near 1: q is close to the posterior; near 0: q misses it and the
        chains stick, flagged by R-hat/ESS); ``stats.num_integration_steps``: log-density
        evaluations per transition (``1 + local_steps``); ``stats.is_divergent``: a NaN
        log-density met (rejected). ``status``/``ok``/``warnings`` as for `ji.sample`.

    Example::

        q = ji.amortized.train_mixture_density(problem, jax.random.key(0))
        post = ji.amortized.independence_sample(q, y, jax.random.key(1), local_steps=2)
    """
    _check_q(q)
    num_chains = check_positive_int("num_chains", num_chains)
    num_warmup = check_positive_int("num_warmup", num_warmup, minimum=0)
    num_samples = check_positive_int("num_samples", num_samples, minimum=4)
    local_steps = check_positive_int("local_steps", local_steps, minimum=0)
    if not isinstance(diagnose, bool):
        raise TypeError(f"diagnose: got {diagnose!r} ({type(diagnose).__name__}), expected True or False")
    y, batch = check_y(q.problem, y)
    size = math.prod(batch)
    keys, impl = _lane_keys(key, batch)
    s = Settings(num_chains, num_warmup, num_samples, local_steps, impl)
    lanes = (y.reshape(size, -1), keys)
    if block_size is None:
        d = unconstrained_ravel(q.problem)[0]
        per_lane = num_chains * num_samples * (2 * d * y.dtype.itemsize + 24)
        block_size = default_block_size(tree_bytes(jax.tree.map(lambda a: a[:1], lanes)) + per_lane, 1)
    else:
        block_size = check_positive_int("block_size", block_size)
    theta, stats = stream(
        _imh_lanes,
        (q, s),
        lanes,
        num_lanes=size,
        block_size=block_size,
        progress=progress,
        label="posteriors",
    )
    theta, stats = jax.tree.map(lambda a: a.reshape(*batch, *a.shape[1:]), (theta, stats))
    diag, status, messages = diagnose_draws(theta, stats.is_divergent, num_chains, diagnose)
    warn(messages)
    return Posterior(
        samples=theta,
        stats=stats,
        max_rhat=diag["max_rhat"],
        min_ess=diag["min_ess"],
        num_divergent=diag["num_divergent"],
        status=status,
        warnings=tuple(messages),
        method="independence",
        num_warmup=num_warmup,
    )


def smc_sample(
    q: MixtureDensity,
    y,
    key: PRNGKeyArray,
    *,
    num_chains: int = 4,
    num_samples: int = 1000,
    block_size: int | None = None,
    progress: Any = None,
    **options,
) -> Posterior:
    """Adaptive tempered SMC from q(θ | y) to the exact posterior (`jinverse.smc`, started from q).

    ``num_chains * num_samples`` particles per observation, drawn from q, tempered along
    ``q^(1-β) · posterior^β`` to β = 1 (resampling and random-walk moves at each stage). Arguments
    and result as ``ji.sample(problem, y, method="smc")`` (its options ``num_mcmc_steps``,
    ``target_ess``, ``max_stages``); ``post.smc.num_stages`` counts the stages q needed (1 where
    q is the posterior: its weights p/q are all equal), ``post.log_evidence`` estimates log p(y).
    """
    _check_q(q)
    return sample_smc(
        q.problem,
        y,
        key=key,
        num_chains=num_chains,
        num_samples=num_samples,
        block_size=block_size,
        progress=progress,
        reference=q,
        **options,
    )
