"""`ji.sample`: posterior sampling with blackjax, every chain and observation in one program.

The sampler target is always ``problem.log_density(u, y)`` (unconstrained space, Jacobian
included) on the flattened ``u``; draws are mapped back with ``problem.from_unconstrained``.
The per-method kernels and warmups live in `jinverse._samplers`; the one sampling loop is
`_sample_one` below.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any

import blackjax.diagnostics as bd
import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from . import _samplers
from ._checks import check_key, check_positive_int
from .posterior import Posterior, SamplingWarning, status_and_warnings
from .problem import InverseProblem

# Incremented each time the compiled program is traced (tests count retraces with it).
_TRACES = {"count": 0}


@dataclasses.dataclass(frozen=True)
class _Settings:
    """Everything static about a call: a new value compiles a new program."""

    method: str | Callable
    num_chains: int
    num_warmup: int
    num_samples: int
    init: str  # "prior" or "given"
    jitter: float
    options: tuple[tuple[str, Any], ...]
    chunk_size: int | None = None


def _flat(problem: InverseProblem):
    """``(d, unravel)``: the size of the flat unconstrained vector and its inverse."""
    ref = problem.theta_shape_dtype()
    zeros = jax.tree.map(lambda r: jnp.zeros(r.shape, r.dtype), ref)
    flat, unravel = ravel_pytree(zeros)
    return flat.shape[0], unravel


def _sample_one(problem: InverseProblem, y, key, init_u, s: _Settings):
    """Warmup and sampling of ``s.num_chains`` chains for one observation ``y``."""
    _, unravel = _flat(problem)
    k_init, k_warm, k_draw = jax.random.split(key, 3)
    if s.init == "prior":
        theta0 = problem.sample_prior(k_init, (s.num_chains,))
        positions = jax.vmap(lambda t: ravel_pytree(problem.to_unconstrained(t))[0])(theta0)
    else:  # a given start (MAP or user's), jittered so the chains differ
        noise = jax.random.normal(k_init, (s.num_chains, init_u.shape[0]), init_u.dtype)
        positions = init_u + s.jitter * noise

    def logdensity_fn(x):
        return problem.log_density(unravel(x), y)

    build = _samplers.custom(s.method) if callable(s.method) else _samplers.METHODS[s.method]
    states, step, params = build(k_warm, logdensity_fn, positions, s.num_warmup, s.num_samples,
                                 dict(s.options))

    # The sampling loop: one draw moves every chain one transition of the tuned kernel and
    # records its position (mapped back to θ) and the transition's statistics.
    def one_draw(states, k):
        keys = jax.random.split(k, s.num_chains)
        states, stats = jax.vmap(step)(keys, states, params)
        theta = jax.vmap(lambda x: problem.from_unconstrained(unravel(x)))(states.position)
        return states, (theta, stats)

    _, (draws, stats) = jax.lax.scan(one_draw, states, jax.random.split(k_draw, s.num_samples))
    # (draws, chains, ...) -> (chains, draws, ...)
    draws = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), draws)
    stats = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), stats)
    return draws, stats


@jax.jit
def _diagnostics(flat: Float[Array, "*batch chains draws d"], divergent):
    """Worst R-hat, smallest bulk ESS (blackjax's rank-normalised estimators), divergences.

    Compiled apart from the sampler so that every method with the same draw shapes shares it.
    """
    nb = flat.ndim - 3
    finite = jnp.all(jnp.isfinite(flat), axis=(-3, -2, -1))
    # (blackjax squeezes a trailing axis of size 1: restore it)
    rhat = bd.rhat(flat, chain_axis=nb, sample_axis=nb + 1).reshape(*flat.shape[:nb], -1)
    ess = bd.ess_bulk(flat, chain_axis=nb, sample_axis=nb + 1).reshape(*flat.shape[:nb], -1)
    return {
        "max_rhat": jnp.where(finite, jnp.nanmax(rhat, axis=-1), jnp.inf),
        "min_ess": jnp.where(finite, jnp.nanmin(ess, axis=-1), 0.0),
        "num_divergent": jnp.sum(divergent, axis=(-2, -1)),
        "finite": finite,
    }


@eqx.filter_jit
def _compiled(problem, y, key, init_u, settings: _Settings, batched: bool):
    _TRACES["count"] += 1
    if not batched:
        return _sample_one(problem, y, key, init_u, settings)
    keys = jax.random.split(key, y.shape[0])
    if settings.chunk_size is None:  # every chain of every observation in lockstep
        in_u = None if init_u is None else 0
        return jax.vmap(lambda yy, kk, uu: _sample_one(problem, yy, kk, uu, settings),
                        in_axes=(0, 0, in_u))(y, keys, init_u)
    # chunk_size observations vmapped together, chunks one after another: less lockstep waste
    # (a vmapped NUTS step lasts as long as the longest trajectory among its lanes)
    return jax.lax.map(lambda a: _sample_one(problem, a[0], a[1], a[2], settings),
                       (y, keys, init_u), batch_size=settings.chunk_size)


def _start(problem, y, batch, init, jitter):
    """``("prior", None)`` or ``("given", u)`` with ``u`` flat, shaped ``(*batch, d)``."""
    if init is None or (isinstance(init, str) and init == "prior"):
        return "prior", None
    if isinstance(init, str) and init == "map":
        from .map import solve_map

        theta = solve_map(problem, y).theta
    elif isinstance(init, str):
        raise ValueError(f"init: got {init!r}, expected 'prior', 'map' or a θ shaped like the prior")
    else:
        theta = problem.check_theta(init, "init", batch)
    nb = len(batch)
    to_u = problem.to_unconstrained
    for _ in range(nb):
        to_u = jax.vmap(to_u)
    u = to_u(theta)
    flat = jnp.concatenate([a.reshape(*batch, -1) for a in jax.tree.leaves(u)], axis=-1)
    if not bool(jnp.all(jnp.isfinite(flat))):
        raise ValueError("init: got a θ outside the prior's support (its unconstrained value is not "
                         "finite), expected a point inside the support")
    return "given", flat


def sample(
    problem: InverseProblem,
    y: Float[Array, "*batch *event"],
    *,
    key: PRNGKeyArray,
    method: str | Callable = "nuts",
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 1000,
    init: str | PyTree | None = None,
    jitter: float = 0.1,
    chunk_size: int | None = None,
    **options,
) -> Posterior:
    """Draw from p(θ | y) with a blackjax sampler, tuned by its own adaptation.

    Args:
        problem: the `ji.InverseProblem`.
        y: observations shaped ``(*batch, *event)``. Every posterior of the batch is sampled in
            one compiled program (the whole warmup and sampling is vmapped over the batch);
            element ``i`` of a flattened batch uses ``jax.random.split(key, B)[i]``, so it equals
            a one-at-a-time call with that key.
        key: a JAX PRNG key.
        method: ``"nuts"`` or ``"hmc"`` (Stan's window adaptation of step size and diagonal mass
            matrix; ``dense_mass=True`` for a dense one; HMC takes ``num_integration_steps``
            (default 16) and draws its step size uniformly within ``step_size_jitter`` (default
            ±20%) of the tuned one at each transition),
            ``"mala"`` (step size by dual averaging to 0.574 acceptance), ``"rwmh"``
            (diagonal proposal scale, then a global scale to 0.234 acceptance), ``"mclmc"``
            (`blackjax.mclmc_find_L_and_step_size`; unadjusted, needs ≥ 2 unknowns) or
            ``"chees"`` (`blackjax.chees_adaptation` of jittered dynamic HMC across chains; the
            many-chain method for accelerators). Or your own algorithm: a callable
            ``build(logdensity_fn, **options) -> blackjax.SamplingAlgorithm`` where
            ``logdensity_fn`` takes one *flat* unconstrained vector, e.g.
            ``lambda ld: blackjax.nuts(ld, step_size=0.1, inverse_mass_matrix=jnp.ones(n))``;
            it is not adapted (``num_warmup`` steps of it are discarded as burn-in). Pass the
            same callable object again to reuse the compiled program.
        num_chains, num_warmup, num_samples: chains per observation, warmup (adaptation)
            steps and kept draws per chain.
        init: ``"prior"`` (default: each chain starts at its own prior draw), ``"map"``
            (`ji.solve_map`, then jittered) or a θ shaped like the prior's event or
            ``(*batch, *event)`` (jittered).
        jitter: standard deviation of the Gaussian perturbation, in the unconstrained space,
            that spreads chains started from one point (``init="map"`` or a given θ).
        chunk_size: for a batch, the number of observations vmapped together; chunks run one
            after another (``jax.lax.map``). Default: the whole batch at once, best on
            accelerators; on a CPU, where a vmapped NUTS step waits for the longest trajectory
            of all its lanes, small chunks can be faster. Results do not depend on it.
        **options: method settings, e.g. ``target_acceptance_rate``, ``num_integration_steps``
            (hmc), ``dense_mass`` (nuts/hmc), ``learning_rate`` (chees). Must be hashable.

    Returns:
        A `ji.Posterior`: ``samples`` shaped ``(*batch, chains, draws, *theta_shape)`` in θ's own
        space, per-draw ``stats``, per-observation ``status`` and ``warnings``.

    Example::

        post = ji.sample(problem, y, key=jax.random.key(0))
        print(post.summary())
    """
    check_key("key", key)
    num_chains = check_positive_int("num_chains", num_chains)
    num_warmup = check_positive_int("num_warmup", num_warmup)
    num_samples = check_positive_int("num_samples", num_samples, minimum=4)
    if not callable(method) and method not in _samplers.METHODS:
        raise ValueError(f"method: got {method!r}, expected one of {sorted(_samplers.METHODS)} "
                         "or a callable (logdensity_fn) -> blackjax.SamplingAlgorithm")
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not math.isfinite(jitter) \
            or jitter < 0:
        raise ValueError(f"jitter: got {jitter!r}, expected a finite number >= 0")
    try:
        opts = tuple(sorted(options.items()))
        hash(opts)
    except TypeError as exc:
        raise TypeError(f"options: got {options!r}, expected hashable values (numbers, strings)") from exc
    if isinstance(key, jax.Array) and key.ndim > (0 if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else 1):
        raise ValueError(f"key: got a batch of keys of shape {key.shape}, expected one key")

    y, batch = problem.check_y(y)
    mode, init_u = _start(problem, y, batch, init, float(jitter))
    if method == "mclmc" and _flat(problem)[0] < 2:
        raise ValueError("method: 'mclmc' needs at least 2 unknowns; use 'nuts' for a scalar θ")
    if chunk_size is not None:
        chunk_size = check_positive_int("chunk_size", chunk_size)
    settings = _Settings(method, num_chains, num_warmup, num_samples, mode, float(jitter), opts,
                         chunk_size)

    size = math.prod(batch)
    event = y.shape[len(batch):]
    if batch:
        y = y.reshape(size, *event)
        init_u = None if init_u is None else init_u.reshape(size, -1)
    draws, stats = _compiled(problem, y, key, init_u, settings, bool(batch))
    lead = 2 + bool(batch)  # (B?, chains, draws)
    flat = jnp.concatenate([a.reshape(*a.shape[:lead], -1) for a in jax.tree.leaves(draws)], -1)
    diag = _diagnostics(flat, stats.is_divergent)

    def unflatten(a):
        return a.reshape(*batch, *a.shape[1:]) if batch else a

    draws, stats, diag = jax.tree.map(unflatten, (draws, stats, diag))
    status, messages = status_and_warnings(diag, num_chains)
    if messages:
        warnings.warn("; ".join(messages), SamplingWarning, stacklevel=2)
    name = method if isinstance(method, str) else getattr(method, "__name__", "custom")
    return Posterior(samples=draws, stats=stats, max_rhat=diag["max_rhat"], min_ess=diag["min_ess"],
                     num_divergent=diag["num_divergent"], status=status, warnings=tuple(messages),
                     method=name, num_warmup=num_warmup)
