"""Replica exchange (parallel tempering) for `ji.sample`'s gradient-based kernels.

Each chain carries ``K`` replicas, replica ``k`` targeting the likelihood-tempered density

    log π_β(u) = log p(θ(u)) + log|dθ/du| + β log p(y | θ(u)),       1 = β_0 > β_1 > ... ≥ 0,

so that the hottest replicas see (nearly) the prior and cross between the modes the data
separate. Every replica runs the method's own warmup on its own target (vmapped over β: each
gets its own step size and metric), then the draw loop moves every replica one transition of
its tuned kernel and proposes swaps between neighbours; only replica 0 (β = 1) is recorded.

With ``adapt_ladder=True`` (or ``tempering="adaptive"``) the βs themselves are tuned during
the warmup (`warmup`, `equalise`): `ADAPT_ROUNDS` rounds, each warming the kernels up at the
current ladder, running replica exchange and moving the βs so that every neighbouring pair
rejects the same share of swaps (the cumulative-barrier update of Syed et al. 2021, §5.1);
then the ladder is fixed and the kernels warmed up once more at it, so the draws are those of
a fixed-ladder chain. Each observation gets its own ladder.

Swaps follow the deterministic even-odd scheme (non-reversible PT, Syed et al. 2021, JRSS B
84(2)): at swap round ``r`` the pairs ``(k, k+1)`` with ``k ≡ r (mod 2)`` are proposed, each
accepted with probability ``min(1, exp((β_k - β_{k+1}) (ℓ(x_{k+1}) - ℓ(x_k))))`` where ℓ is the
log-likelihood; the pairs are disjoint, so they are decided at once. A swap exchanges the two
replicas' whole states, then the log-density and its gradient are those of the new β.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

#: Methods whose states can be swapped (they carry ``position`` and ``logdensity``).
METHODS = ("nuts", "hmc", "mala", "rwmh", "chees")
#: The smallest β > 0 of a ladder given by its size (``tempering=K``): K - 1 βs geometric from 1
#: down to it, then β = 0. The prior replica moves where any β > 0 cannot: on slcp (variances
#: θ², a sign flip crosses θ = 0, where the log-likelihood goes to -inf) the βs 1 ... 1e-3 alone
#: left chains in one or two of the four modes (C2ST 0.568, R-hat 1.31), and with β = 0 added
#: every chain visited all four (0.522, R-hat 1.02; 4 x (1000 + 1000), NUTS).
BETA_MIN = 1e-3
#: The number of temperatures of ``tempering="adaptive"``.
ADAPTIVE_K = 8
#: Ladder updates of the adaptive warmup (`warmup`).
ADAPT_ROUNDS = 4
#: Lowest rejection rate a pair is given in the barrier (`equalise`): keeps it strictly increasing.
MIN_REJECTION = 1e-3


class Replicas(NamedTuple):
    """One chain's replicas during the draws: the method's states stacked over β, the running
    sums of the swap acceptance probabilities and of the swaps proposed, per pair, and the
    ladder (fixed during the draws; each chain of an observation holds the same)."""

    states: Any
    swap_sum: Float[Array, " pairs"]
    swap_tries: Float[Array, " pairs"]
    betas: Float[Array, " K"]


class TemperingStats(NamedTuple):
    """What `ji.sample(..., tempering=...)` reports per observation (``Posterior.tempering``).

    Attributes:
        betas: the ladder, ``(*batch, K)``, ``betas[..., 0] = 1``.
        swap_acceptance: mean acceptance probability of the swaps proposed between replicas
            ``k`` and ``k + 1``, over chains and draws, ``(*batch, K - 1)``. Values near 0 mean
            the neighbours' targets do not overlap (put a β between them).
    """

    betas: Float[Array, "*batch K"]
    swap_acceptance: Float[Array, "*batch pairs"]


def settings(tempering, adapt_ladder) -> tuple[tuple[float, ...] | None, int]:
    """``(betas, rounds)``: the (starting) ladder of ``tempering`` (`ladder`; ``"adaptive"``:
    `ADAPTIVE_K` temperatures, adapted) and the ladder updates of the warmup (0: fixed)."""
    if not isinstance(adapt_ladder, (bool, np.bool_)):
        raise TypeError(f"adapt_ladder: got {adapt_ladder!r}, expected True or False")
    if isinstance(tempering, str) and tempering == "adaptive":
        tempering, adapt_ladder = ADAPTIVE_K, True
    betas = ladder(tempering)
    if betas is None and adapt_ladder:
        raise ValueError("adapt_ladder: given without tempering, expected tempering=K or a ladder of βs too")
    return betas, ADAPT_ROUNDS if adapt_ladder and len(betas or ()) > 2 else 0


def ladder(tempering) -> tuple[float, ...] | None:
    """The β ladder of ``tempering``: None (no tempering), an int ``K ≥ 2`` (``K - 1`` βs
    geometric from 1 down to `BETA_MIN`, then 0), or a decreasing sequence of βs in [0, 1]
    starting at 1."""
    if tempering is None:
        return None
    if isinstance(tempering, (bool, np.bool_)):
        raise TypeError(f"tempering: got {tempering!r}, expected a number of temperatures (int >= 2) "
                        "or a sequence of βs")
    if isinstance(tempering, (int, np.integer)):
        k = int(tempering)
        if k < 2:
            raise ValueError(f"tempering: got {k}, expected at least 2 temperatures (1 is plain sampling)")
        return (*(float(b) for b in np.geomspace(1.0, BETA_MIN, k - 1)), 0.0)
    if isinstance(tempering, (str, bytes)) or not isinstance(tempering, (Sequence, np.ndarray, jax.Array)):
        raise TypeError(f"tempering: got {tempering!r}, expected an int >= 2, 'adaptive' or a "
                        "sequence of βs")
    betas = np.asarray(tempering, dtype=float)
    if betas.ndim != 1 or betas.size < 2:
        raise ValueError(f"tempering: got βs of shape {betas.shape}, expected at least 2 in a 1-D sequence")
    if not (np.all(np.isfinite(betas)) and betas[0] == 1.0 and np.all(np.diff(betas) < 0) and betas[-1] >= 0):
        raise ValueError(f"tempering: got βs {betas.tolist()}, expected a strictly decreasing sequence "
                         "in [0, 1] starting at 1")
    return tuple(float(b) for b in betas)


def check_method(method, betas) -> None:
    if betas is not None and (callable(method) or method not in METHODS):
        name = method if isinstance(method, str) else "a custom algorithm"
        raise ValueError(f"tempering: given with method {name!r}, expected one of {list(METHODS)}")


def parts_of(problem, y, unravel, to_u: Callable, log_det=0.0):
    """``parts(x) -> (a, ℓ)`` with the sampler's ``log π_β(x) = a(x) + β ℓ(x)``: ``a`` the
    prior density of the sampler coordinates ``x`` (``u = to_u(x)``, ``log_det`` its constant
    Jacobian), ℓ the log-likelihood."""

    def parts(x):
        u = unravel(to_u(x))
        theta = problem.from_unconstrained(u)
        a = problem.log_prior(theta) + problem.prior.log_det_jacobian(u) + log_det
        return a, problem.log_likelihood(theta, y)

    return parts


def tempered(parts: Callable, beta) -> Callable:
    """The log-density ``a(x) + β ℓ(x)`` of one replica."""

    def logdensity(x):
        a, ell = parts(x)
        return a + beta * ell

    return logdensity


def warmup(method, parts: Callable, betas, key, positions, num_warmup, num_samples, options, rounds: int = 0,
           swap_every: int = 1):
    """The method's warmup on every replica's target, vmapped over β: ``(Replicas, params)``,
    each shaped per chain ``(chains, K, ...)``. ``method``: a `jinverse._samplers.Method`.

    With ``rounds > 0`` the ladder is adapted first: each round warms the kernels up at the
    current ladder for ``num_warmup // (2 rounds)`` steps, runs as many draws of replica
    exchange, and moves the βs by `equalise` from the swap acceptance seen (pooled over the
    chains); the replicas' positions carry over to the next round. Then the usual warmup
    (``num_warmup`` steps) at the final ladder, from where the tuning left the replicas."""
    b = jnp.asarray(betas, positions.dtype)
    chains, pairs = positions.shape[0], b.shape[0] - 1
    zeros = jnp.zeros((chains, pairs), positions.dtype)
    if rounds == 0:
        states, params = _warm(method.warmup, parts, b, key, positions, None, num_warmup, num_samples, options)
        return Replicas(states, zeros, zeros, jnp.broadcast_to(b, (chains, b.shape[0]))), params
    n = max(num_warmup // (2 * rounds), 2)
    per_replica = jnp.broadcast_to(positions, (b.shape[0], *positions.shape))
    keys = jax.random.split(key, rounds + 1)
    step = make_step(method.step, parts, swap_every, n, num_samples, options, num_counted=n)

    # One round of the ladder's tuning: warm up at the ladder, exchange, equalise the rejections.
    def tune(carry, k):
        b, per_replica = carry
        k_warm, k_draw = jax.random.split(k)
        states, params = _warm(method.warmup, parts, b, k_warm, None, per_replica, n, num_samples, options)

        def draw(rep, ki):
            kk, i = ki
            rep, _ = jax.vmap(lambda c, st, p: step(c, st, p, i))(jax.random.split(kk, chains), rep, params)
            return rep, None

        rep = Replicas(states, zeros, zeros, jnp.broadcast_to(b, (chains, b.shape[0])))
        rep, _ = jax.lax.scan(draw, rep, (jax.random.split(k_draw, n), jnp.arange(n)))
        return (equalise(b, swap_rates(rep).swap_acceptance), jnp.swapaxes(rep.states.position, 0, 1)), None

    (b, per_replica), _ = jax.lax.scan(tune, (b, per_replica), keys[:rounds])
    states, params = _warm(method.warmup, parts, b, keys[-1], None, per_replica, num_warmup, num_samples, options)
    return Replicas(states, zeros, zeros, jnp.broadcast_to(b, (chains, b.shape[0]))), params


def _warm(method_warmup: Callable, parts: Callable, b, key, positions, per_replica, num_warmup, num_samples,
          options):
    """The method's warmup vmapped over the βs ``b``, from ``positions`` (the same for every
    replica) or ``per_replica`` ``(K, chains, d)``: states and params shaped ``(chains, K, ...)``."""
    keys = jax.random.split(key, b.shape[0])
    if per_replica is None:
        def one(k, beta):
            return method_warmup(k, tempered(parts, beta), positions, num_warmup, num_samples, options)

        out = jax.vmap(one)(keys, b)
    else:
        def start(k, beta, x):
            return method_warmup(k, tempered(parts, beta), x, num_warmup, num_samples, options)

        out = jax.vmap(start)(keys, b, per_replica)
    return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), out)  # (chains, K, ...)


def equalise(betas: Float[Array, " K"], acceptance: Float[Array, " pairs"]) -> Float[Array, " K"]:
    """A ladder with the same ends as ``betas`` on which every neighbouring pair rejects the
    same share of swaps, predicted from the swap ``acceptance`` seen on ``betas`` (Syed et al.
    2021, JRSS B 84(2), §5.1: the cumulative rejection Λ(β), the communication barrier, is
    interpolated between the βs and the new βs are placed at equal steps of Λ). Λ is taken
    linear in log β between positive βs, where a barrier that grows like log(1/β) makes it
    exact, and linear in β below the smallest positive β (down to a last β = 0). A pair
    without a proposed swap (NaN) counts as rejecting every swap."""
    k = betas.shape[0]
    rejection = jnp.clip(1.0 - jnp.nan_to_num(acceptance, nan=0.0), MIN_REJECTION, 1.0)
    barrier = jnp.concatenate([jnp.zeros((1,), betas.dtype), jnp.cumsum(rejection)])  # Λ at β_0 = 1, ...
    low = jnp.min(jnp.where(betas > 0, betas, 1.0))  # the smallest positive β
    log_low = jnp.log(low)
    coord = jnp.where(betas >= low, jnp.log(jnp.maximum(betas, low)), log_low - 1.0 + betas / low)
    c = jnp.interp(barrier[-1] * jnp.arange(k) / (k - 1), barrier, coord)
    new = jnp.where(c >= log_low, jnp.exp(jnp.maximum(c, log_low)), low * (1.0 + c - log_low))
    return new.at[0].set(betas[0]).at[-1].set(betas[-1])


def make_step(method_step: Callable, parts: Callable, swap_every: int, num_warmup, num_samples, options,
              num_counted: int | None = None):
    """``step(key, replicas, params, i) -> (replicas, stats of β = 1)``: one chain's draw ``i``,
    at the ladder the replicas carry. Swaps at draws ``i >= num_counted`` (default
    ``num_samples``: the padding of a last chunk of draws) are made but not counted in the
    swap statistics."""
    last = num_samples if num_counted is None else num_counted

    def step(key, rep: Replicas, params, i):
        b = rep.betas
        k_move, k_swap = jax.random.split(key)

        def move(k, state, p, beta):
            return method_step(tempered(parts, beta), num_warmup, num_samples, options)(k, state, p)

        states, stats = jax.vmap(move)(jax.random.split(k_move, b.shape[0]), rep.states, params, b)
        states, prob, tried = swap(k_swap, states, parts, b, i, swap_every)
        tried = tried * (i < last)
        # summed at float32 precision: programs that vectorise exp differently (one pass, chunks,
        # a resumed checkpoint) then add the same numbers
        prob = prob.astype(jnp.float32).astype(prob.dtype)
        rep = Replicas(states, rep.swap_sum + jnp.where(tried > 0, prob, 0.0), rep.swap_tries + tried, b)
        return rep, jax.tree.map(lambda a: a[0], stats)

    return step


def swap(key, states, parts: Callable, betas, i, every: int):
    """Even-odd swaps between neighbouring replicas at draw ``i`` (a round every ``every``
    draws): ``(states, acceptance probability per pair, whether each pair was proposed)``."""
    k = betas.shape[0]
    x = states.position
    (a, ell), pullback = jax.vjp(jax.vmap(parts), x)
    one, zero = jnp.ones_like(a), jnp.zeros_like(a)
    (grad_a,) = pullback((one, zero))
    (grad_ell,) = pullback((zero, one))
    pair = jnp.arange(k - 1)
    tried = (i % every == 0) & (pair % 2 == (i // every) % 2)
    log_ratio = (betas[:-1] - betas[1:]) * (ell[1:] - ell[:-1])
    log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
    prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
    accept = tried & (jnp.log(jax.random.uniform(key, (k - 1,), a.dtype)) < log_ratio)
    no = jnp.zeros((1,), bool)
    up, down = jnp.concatenate([accept, no]), jnp.concatenate([no, accept])  # j takes j+1 / j-1
    perm = jnp.arange(k) + up.astype(int) - down.astype(int)
    moved = perm != jnp.arange(k)
    new = jax.tree.map(lambda s: s[perm], states)
    # the log-density (and gradient) of the new β at the swapped-in position
    fields = {"logdensity": jnp.where(moved, a[perm] + betas * ell[perm], new.logdensity)}
    if hasattr(new, "logdensity_grad"):
        g = grad_a[perm] + betas[:, None] * grad_ell[perm]
        fields["logdensity_grad"] = jnp.where(moved[:, None], g, new.logdensity_grad)
    return new._replace(**fields), prob, tried.astype(a.dtype)


def cold(rep: Replicas):
    """The β = 1 replica's states of a block of chains (``Replicas`` with a chain axis)."""
    return jax.tree.map(lambda a: a[:, 0], rep.states)


def swap_rates(rep: Replicas) -> TemperingStats:
    """One lane's ladder and its mean swap acceptance probability per pair over the lane's
    chains (``rep`` with a chain axis)."""
    def over_chains(a):  # added in chain order, so that any program rounds the sum alike (checkpoints)
        return functools.reduce(jnp.add, [a[..., c, :] for c in range(a.shape[-2])])

    tries = over_chains(rep.swap_tries)
    rates = over_chains(rep.swap_sum) / jnp.where(tries > 0, tries, math.nan)
    # to float32 precision: a resumed checkpoint computes this outside the sampling program,
    # where XLA's division may round the last bit otherwise
    rates = rates.astype(jnp.float32).astype(rates.dtype)
    return TemperingStats(rep.betas[..., 0, :], rates)
