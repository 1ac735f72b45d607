"""The per-lane sampling core behind `ji.sample` and `jinverse.checkpoint`.

One *lane* is one observation with its chains: `warmup_one` starts and adapts them,
`draw_one` is the sampling loop; `sample_lanes`, `warmup_lanes` and `draw_lanes` run a block of
lanes (vmapped, or ``chunk_size`` at a time). Everything here is pure and per lane, safe under
``jit``/``vmap``; validation, streaming in blocks and the `Posterior` are the drivers' work
(`jinverse.sampling`, `jinverse.checkpoint`), which both import this module (so neither imports
the other).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array

from . import _samplers
from . import metric as metric_lib
from . import tempering as tempering_lib
from .problem import InverseProblem

# Incremented each time a compiled sampling program is traced (tests count retraces with it).
TRACES = {"count": 0}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything static about a call: a new value compiles a new program."""

    method: str | Callable
    num_chains: int
    num_warmup: int
    num_samples: int
    init: str  # "prior", "given" or "metric" (the whitening Gaussian's draws)
    jitter: float
    options: tuple[tuple[str, Any], ...]
    chunk_size: int | None = None
    key_impl: str | None = None  # lanes carry key data of this impl (None: raw uint32 keys)
    draws_per_call: int = 0  # draws per call of the chunked draw program (checkpoints)
    metric: str = "diagonal"  # resolved: "diagonal", "dense", "laplace" or "prior"
    betas: tuple[float, ...] | None = None  # replica exchange's ladder (`jinverse.tempering`)
    swap_every: int = 1  # draws between two rounds of replica swaps
    ladder_rounds: int = 0  # ladder updates in the warmup (adaptive ladder), 0: fixed


def flatten(problem: InverseProblem):
    """``(d, unravel)``: the size of the flat unconstrained vector and its inverse."""
    ref = problem.theta_shape_dtype()
    zeros = jax.tree.map(lambda r: jnp.zeros(r.shape, r.dtype), ref)
    flat, unravel = ravel_pytree(zeros)
    return flat.shape[0], unravel


def method_of(s: Settings) -> _samplers.Method:
    return _samplers.custom(s.method) if callable(s.method) else _samplers.METHODS[s.method]


def logdensity(problem, y):
    _, unravel = flatten(problem)
    return lambda x: problem.log_density(unravel(x), y)


def whitening(problem, s: Settings, y, mode) -> metric_lib.Whitening | metric_lib.LowRankWhitening | None:
    """The lane's change of coordinates (`jinverse.metric`), or None for an adapted metric.
    ``mode``: ``(u_map, map_ok)`` for ``"laplace"`` (found by the driver), else None."""
    if s.metric == "laplace":
        u_map, ok, *pairs = mode  # (λ, V) above metric.DENSE_MAX unknowns
        return metric_lib.laplace(problem, y, u_map, ok, tuple(pairs) or None)
    if s.metric == "prior":
        return metric_lib.prior(problem)
    return None


def target(problem, y, white):
    """The sampler's log-density: of ``u``, or of ``z`` when whitened (``u = m + L z``)."""
    ld = logdensity(problem, y)
    return ld if white is None else white.logdensity(ld)


def parts(problem, y, white):
    """The tempered target's two terms (`jinverse.tempering.parts_of`), in the sampler's coordinates."""
    _, unravel = flatten(problem)
    if white is None:
        return tempering_lib.parts_of(problem, y, unravel, lambda x: x)
    return tempering_lib.parts_of(problem, y, unravel, white.to_u, white.log_det)


def warmup_one(problem: InverseProblem, s: Settings, y, key, init_u, mode=None):
    """Start and adapt ``s.num_chains`` chains for one observation: ``(states, params, k_draw)``.

    With a whitening metric ``params`` is ``(method params, Whitening)`` and the states live in
    the whitened coordinates ``z``: a checkpoint saves the (m, L) with the states they belong to.
    """
    k_init, k_warm, k_draw = jax.random.split(key, 3)
    white = whitening(problem, s, y, mode)
    if s.init in ("prior", "metric"):
        theta0 = problem.sample_prior(k_init, (s.num_chains,))
        positions = jax.vmap(lambda t: ravel_pytree(problem.to_unconstrained(t))[0])(theta0)
    else:  # a given start (MAP or user's), jittered so the chains differ
        noise = jax.random.normal(k_init, (s.num_chains, init_u.shape[-1]), init_u.dtype)
        positions = init_u + s.jitter * noise
    if white is not None:
        positions = jax.vmap(white.to_z)(positions)
    if s.init == "metric":  # draws of the whitening Gaussian, N(0, I) in z; prior draws where it fell back
        assert white is not None  # init="metric" is only chosen with a whitening metric
        z0 = jax.random.normal(jax.random.fold_in(k_init, 1), positions.shape, positions.dtype)
        positions = jnp.where(white.ok, z0, positions)
    if s.betas is None:
        states, params = method_of(s).warmup(k_warm, target(problem, y, white), positions, s.num_warmup,
                                             s.num_samples, dict(s.options))
    else:  # replica exchange: every replica's warmup on its own tempered target
        states, params = tempering_lib.warmup(method_of(s), parts(problem, y, white), s.betas, k_warm, positions,
                                              s.num_warmup, s.num_samples, dict(s.options), s.ladder_rounds,
                                              s.swap_every)
    return states, (params if white is None else (params, white)), k_draw


def draw_one(problem: InverseProblem, s: Settings, y, states, params, k_draw, start, count: int):
    """Draws ``start .. start + count - 1`` of one observation's chains: ``(states, draws, stats)``.

    Draw ``i`` uses ``jax.random.split(k_draw, num_samples)[i]`` whatever the chunking, so draws
    made in chunks equal draws made at once. Indices past the end repeat the last draw's key (a
    padded last chunk; the caller drops them).
    """
    _, unravel = flatten(problem)
    white = None
    if s.metric in metric_lib.WHITENING:
        params, white = params
    to_u = (lambda x: x) if white is None else white.to_u
    if s.betas is None:
        step = method_of(s).step(target(problem, y, white), s.num_warmup, s.num_samples, dict(s.options))
    else:  # replica exchange: every replica moves, neighbours swap, β = 1's statistics
        tempered = tempering_lib.make_step(method_of(s).step, parts(problem, y, white), s.swap_every,
                                           s.num_warmup, s.num_samples, dict(s.options))
    index = jnp.minimum(start + jnp.arange(count), s.num_samples - 1)
    keys = jax.random.split(k_draw, s.num_samples)[index]

    # The sampling loop: one draw moves every chain one transition of the tuned kernel and
    # records its position (mapped back to θ) and the transition's statistics. A transition that
    # ends where the log-density is not finite (NaN/inf from the model) is a fault: flagged as
    # divergent, so the observation's status says so.
    def one_draw(states, k):
        if s.betas is None:
            states, stats = jax.vmap(step)(jax.random.split(k, s.num_chains), states, params)
            now = states
        else:
            k, i = k
            states, stats = jax.vmap(lambda kk, st, p: tempered(kk, st, p, i))(
                jax.random.split(k, s.num_chains), states, params)
            now = tempering_lib.cold(states)
        lp = getattr(now, "logdensity", None)
        if lp is not None:
            stats = stats._replace(is_divergent=stats.is_divergent | ~jnp.isfinite(lp))
        theta = jax.vmap(lambda x: problem.from_unconstrained(unravel(to_u(x))))(now.position)
        return states, (theta, stats)

    # (replica exchange: the draws' own numbers, so that swaps past the end are not counted)
    states, (draws, stats) = jax.lax.scan(one_draw, states,
                                          keys if s.betas is None else (keys, start + jnp.arange(count)))
    # (draws, chains, ...) -> (chains, draws, ...)
    draws, stats = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), (draws, stats))
    return states, draws, stats


def wrap_key(kd, s: Settings):
    return kd if s.key_impl is None else jax.random.wrap_key_data(kd, impl=s.key_impl)


def unwrap_key(key, s: Settings):
    return key if s.key_impl is None else jax.random.key_data(key)


def map_lanes(fn, lanes, chunk_size):
    """``fn`` over the lanes of a block: one vmap, or ``chunk_size`` lanes at a time."""
    if jax.tree.leaves(lanes)[0].shape[0] == 1:
        # one lane (one observation): not vmapped, so that its rounding matches the long-standing
        # unbatched program (XLA lowers a batch of one differently from a larger batch)
        return jax.tree.map(lambda a: a[None], fn(jax.tree.map(lambda a: a[0], lanes)))
    if chunk_size is None:  # every chain of every observation in lockstep
        return jax.vmap(fn)(lanes)
    # chunks one after another: less lockstep waste (a vmapped NUTS step lasts as long as the
    # longest trajectory among its lanes)
    return jax.lax.map(fn, lanes, batch_size=chunk_size)


def sample_lanes(operand, lanes, draw: bool = True):
    """Warmup and all draws of every lane (observation) of one block; ``draw=False``: warmup
    only (checkpointed runs), giving ``(states, params, draw key data)`` per lane."""
    problem, s = operand
    TRACES["count"] += 1

    def one(lane):
        y, kd, init_u, mode = lane
        states, params, k_draw = warmup_one(problem, s, y, wrap_key(kd, s), init_u, mode)
        if not draw:
            return states, params, unwrap_key(k_draw, s)
        final, draws, stats = draw_one(problem, s, y, states, params, k_draw, 0, s.num_samples)
        return draws, stats, lane_report(s, params, final)

    return map_lanes(one, lanes, s.chunk_size)


def metric_ok(s: Settings, params) -> Array:
    """Whether a lane's whitening is the one asked for (True for an adapted metric): read off
    the tuned parameters of `warmup_one` (what a checkpoint saves)."""
    if s.metric in metric_lib.WHITENING:
        return params[1].ok
    return jnp.ones((), bool)


def lane_report(s: Settings, params, states):
    """`metric_ok`, and with replica exchange also the lane's ladder and swap acceptance per
    pair (`jinverse.tempering.swap_rates`), from its tuned parameters and final states."""
    if s.betas is None:
        return metric_ok(s, params)
    return metric_ok(s, params), tempering_lib.swap_rates(states)


def warmup_lanes(operand, lanes):
    return sample_lanes(operand, lanes, draw=False)


def draw_lanes(operand, lanes):
    """``s.draws_per_call`` draws from given states (checkpointed runs), per lane."""
    problem, s = operand
    TRACES["count"] += 1

    def one(lane):
        y, states, params, kd, start = lane
        return draw_one(problem, s, y, states, params, wrap_key(kd, s), start, s.draws_per_call)

    return map_lanes(one, lanes, s.chunk_size)
