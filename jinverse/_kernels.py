"""Metropolis kernels with adapted proposals: pCN, adaptive-covariance RWMH, preconditioned MALA.

Each kernel is written in blackjax's style, an ``init``/``kernel`` pair over one flat
``logdensity_fn`` (a function of one vector ``z`` of the coordinates the kernel sees), accepted
or rejected by blackjax's Metropolis machinery (`blackjax.mcmc.proposal`,
`blackjax.mcmc.random_walk.rmh_proposal`):

- `pcn_kernel`: preconditioned Crank-Nicolson, ``z' = sqrt(1 - β²) z + β ξ``, reversible for the
  reference N(0, I), accepted with ``min(1, exp(Φ(z) - Φ(z')))``, ``Φ(z) = -(log π(z) + |z|²/2)``.
  Dimension-robust when the target is N(0, I) times a likelihood, i.e. in coordinates whitened
  by a Gaussian prior (``metric="prior"``: pCN) or by the Laplace approximation (gpCN).
- `rw_kernel`: random-walk Metropolis with the proposal ``z' = z + s L ξ``, ``L`` a Cholesky
  factor (matrix) or standard deviations (vector).
- `mala_kernel`: MALA preconditioned by ``M = L Lᵀ``:
  ``z' = z + (ε²/2) M ∇log π(z) + ε L ξ`` with the matching Metropolis-Hastings correction.

The warmups (`pcn_warmup`, `rwmh_warmup`, `mala_warmup`) and transitions (`pcn_step`, ...)
follow the contract of `jinverse._samplers.Method` (positions ``(chains, d)``, per-chain
adaptation vmapped over chains), except that a transition returns blackjax's info NamedTuple,
which the table reads into its per-draw statistics. The random walk and MALA adapt, in the
windows of Stan's warmup (a fast buffer, doubling slow windows, a final fast buffer), the
proposal shape ``L`` from the chain's covariance (Welford; Haario et al. 2001, Roberts &
Rosenthal 2009) and, throughout, a global scale by dual averaging towards their optimal
acceptance rates (0.234, 0.574); pCN dual-averages log β towards 0.25. All are fixed for the
kept draws.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.adaptation.mass_matrix import welford_algorithm
from blackjax.base import SamplingAlgorithm
from blackjax.mcmc import proposal, random_walk
from blackjax.mcmc.mala import MALAInfo, MALAState
from jaxtyping import Array, Float

from . import dense

PCN_OPTIONS = frozenset({"target_acceptance_rate", "initial_step_size"})
RWMH_OPTIONS = frozenset({"target_acceptance_rate", "preconditioner"})
MALA_OPTIONS = frozenset({"target_acceptance_rate", "initial_step_size", "preconditioner"})
_PRECONDITIONERS = ("auto", "dense", "diagonal", "identity")
#: Largest number of unknowns for which ``preconditioner="auto"`` adapts a dense ``L``.
DENSE_MAX_DIM = 256


# -- the Metropolis step, flagging a NaN/inf proposal ----------------------------------------
def _flagging_sampler(key, log_p_accept, state, new_state):
    """`proposal.static_binomial_sampling`, but the reported acceptance probability is NaN when
    the proposal's log-density is not finite (a fault of the model, not an ordinary rejection:
    the sampling table flags it); such a proposal is always rejected."""
    log_p_accept = jnp.where(jnp.isnan(log_p_accept), -jnp.inf, log_p_accept)
    out, (do_accept, p_accept, extra) = proposal.static_binomial_sampling(key, log_p_accept, state, new_state)
    return out, (do_accept, jnp.where(jnp.isfinite(new_state.logdensity), p_accept, jnp.nan), extra)


def _mul(chol, v):
    """``L v`` for a Cholesky factor (matrix) or standard deviations (vector)."""
    return chol @ v if chol.ndim == 2 else chol * v


def _mul_t(chol, v):
    """``Lᵀ v``."""
    return chol.T @ v if chol.ndim == 2 else chol * v


# -- pCN -------------------------------------------------------------------------------------
def pcn_init(position: Float[Array, " d"], logdensity_fn) -> random_walk.RWState:
    """The pCN state: blackjax's random-walk state (position, log-density)."""
    return random_walk.init(position, logdensity_fn)


def _pcn_ratio(prev, new):
    """``Φ(z) - Φ(z')`` with ``Φ(z) = -(log π(z) + |z|²/2)``: the target relative to N(0, I)."""
    return (new.logdensity + 0.5 * jnp.sum(new.position**2)
            - prev.logdensity - 0.5 * jnp.sum(prev.position**2))


def pcn_kernel(key, state: random_walk.RWState, logdensity_fn, step_size):
    """One pCN transition with ``β = step_size`` in (0, 1]: ``(state, RWInfo)``.

    The proposal ``sqrt(1 - β²) z + β ξ`` leaves N(0, I) invariant, so the Metropolis ratio
    only holds the part of the target not in the reference. ``β = 1`` is the independence
    sampler from N(0, I).
    """
    beta = step_size
    rho = jnp.sqrt(1.0 - beta**2)

    def transition(k, z):
        return rho * z + beta * jax.random.normal(k, z.shape, z.dtype)

    generate = random_walk.rmh_proposal(logdensity_fn, transition, _pcn_ratio, _flagging_sampler)
    new_state, do_accept, p_accept = generate(key, state)
    return new_state, random_walk.RWInfo(p_accept, do_accept, new_state)


def pcn(logdensity_fn, step_size) -> SamplingAlgorithm:
    """pCN as a `blackjax.SamplingAlgorithm` (``init(position)``, ``step(key, state)``)."""
    return SamplingAlgorithm(lambda position: pcn_init(position, logdensity_fn),
                             lambda key, state: pcn_kernel(key, state, logdensity_fn, step_size))


# -- random walk with a proposal shape -------------------------------------------------------
def rw_kernel(key, state: random_walk.RWState, logdensity_fn, step_size, chol):
    """One random-walk Metropolis transition with the proposal ``z + step_size · L ξ``."""

    def transition(k, z):
        return z + step_size * _mul(chol, jax.random.normal(k, z.shape, z.dtype))

    ratio = proposal.compute_asymmetric_acceptance_ratio(random_walk.build_rmh_transition_energy(None))
    generate = random_walk.rmh_proposal(logdensity_fn, transition, ratio, _flagging_sampler)
    new_state, do_accept, p_accept = generate(key, state)
    return new_state, random_walk.RWInfo(p_accept, do_accept, new_state)


# -- preconditioned MALA ---------------------------------------------------------------------
def mala_init(position: Float[Array, " d"], logdensity_fn) -> MALAState:
    """blackjax's MALA state: position, log-density and its gradient."""
    logdensity, grad = jax.value_and_grad(logdensity_fn)(position)
    return MALAState(position, logdensity, grad)


def mala_kernel(key, state: MALAState, logdensity_fn, step_size, chol):
    """One MALA transition preconditioned by ``M = L Lᵀ``: ``(state, MALAInfo)``.

    ``z' = z + ε L ((ε/2) Lᵀ∇log π(z) + ξ)``; the reverse move needs the noise
    ``ξ + (ε/2) Lᵀ(∇log π(z) + ∇log π(z'))``, so the Hastings ratio is
    ``log π(z') - log π(z) - |that|²/2 + |ξ|²/2`` (no solve with ``L``).
    """
    k_noise, k_accept = jax.random.split(key)
    z = state.position
    xi = jax.random.normal(k_noise, z.shape, z.dtype)
    lt_g = _mul_t(chol, state.logdensity_grad)
    new_position = z + step_size * _mul(chol, 0.5 * step_size * lt_g + xi)
    new_state = mala_init(new_position, logdensity_fn)
    back = xi + 0.5 * step_size * (lt_g + _mul_t(chol, new_state.logdensity_grad))
    log_p_accept = (new_state.logdensity - state.logdensity
                    - 0.5 * jnp.sum(back**2) + 0.5 * jnp.sum(xi**2))
    state, (do_accept, p_accept, _) = _flagging_sampler(k_accept, log_p_accept, state, new_state)
    return state, MALAInfo(p_accept, do_accept)


# -- warmup: Stan's windows, dual averaging of the scale, Welford estimate of the shape -------
def windows(num_steps: int, first: int) -> list[tuple[int, bool]]:
    """Stan's warmup as ``[(length, estimates_shape)]``: a fast buffer of 75 steps, slow windows
    of ``first``, ``2 first``, ... steps (the last one takes the rest when the next would not
    fit twice), a final fast buffer of 50. A short warmup is split 15% / 75% / 10%.

    Each slow window estimates the covariance of its own draws, made with the shape estimated by
    the window before: with doubling windows that is the second half of the warmup so far.
    """
    if num_steps < 20:
        return [(num_steps, False)]
    initial, final = 75, 50
    if initial + first + final > num_steps:
        initial, final = int(0.15 * num_steps), int(0.1 * num_steps)
        return [(initial, False), (num_steps - initial - final, True), (final, False)]
    out, start, size, end = [(initial, False)], initial, first, num_steps - final
    while start < end:
        if start + 3 * size > end:
            size = end - start
        out.append((size, True))
        start, size = start + size, 2 * size
    return out + [(final, False)]


class _Shape(NamedTuple):
    kind: str  # "dense", "diagonal" or "identity"
    first: int  # the first slow window


def _shape(options: dict, d: int, num_warmup: int) -> _Shape:
    kind = options.get("preconditioner", "auto")
    if kind not in _PRECONDITIONERS:
        raise ValueError(f"preconditioner: got {kind!r}, expected one of {list(_PRECONDITIONERS)}")
    dense_first = max(25, math.ceil(1.5 * d))  # a full-rank dense estimate needs more than d draws
    if kind == "auto":
        fits = 75 + dense_first + 50 <= num_warmup
        kind = "dense" if d <= DENSE_MAX_DIM and fits else "diagonal"
    return _Shape(kind, dense_first if kind == "dense" else 25)


def _target(options: dict, default: float) -> float:
    target = options.get("target_acceptance_rate", default)
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
        raise ValueError(f"target_acceptance_rate: got {target!r}, expected a number in (0, 1)")
    return float(target)


def _pooled(wf_final, wf) -> tuple[Array, Array]:
    """Covariance of the pooled draws of all chains (within-chain plus between-chain parts: an
    unconverged chain inflates it, never deflates it) and their number."""
    cov, n, mean = jax.vmap(wf_final)(wf)
    dev = mean - mean.mean(0)
    between = jnp.einsum("ci,cj->ij", dev, dev) if cov.ndim == 3 else jnp.sum(dev**2, 0)
    return cov.mean(0) + between / mean.shape[0], jnp.sum(n)


def _estimate(cov, n, kind: str, old):
    """The proposal shape ``L`` from the draws' covariance, shrunk towards 1e-3 · I with the
    weight of 5 draws (Stan's regularisation of its mass matrix); the old shape is kept if the
    estimate is not finite."""
    reg = 1e-3 * (5.0 / (n + 5.0))
    if kind == "dense":
        new = dense.cholesky((n / (n + 5.0)) * cov + reg * jnp.eye(cov.shape[0], dtype=cov.dtype))
    else:
        new = jnp.sqrt((n / (n + 5.0)) * cov + reg)
    return jnp.where(jnp.all(jnp.isfinite(new)), new, old)


def adapt(kernel, states, key, num_warmup: int, target: float, initial_scale: float,
          restart_scale: float, shape: _Shape, max_scale: float = math.inf):
    """Warm all chains up together: ``(states, {"step_size": s, "chol": L})``, one copy per chain.

    ``kernel(key, state, s, L) -> (state, info)``; ``states`` are the chains' initial states
    (leading axis: chains). In each window of `windows`, each chain's ``log s`` follows the
    Robbins-Monro recursion ``log s += (acceptance - target) / t^0.6`` (``t`` the step within
    the window, ``s`` capped at ``max_scale``). Each slow window estimates one shape ``L``
    (dense or diagonal) from the pooled draws of all chains, after which ``s`` restarts at
    ``restart_scale``, the optimal scale when ``L Lᵀ`` is the target's covariance; with
    ``shape.kind == "identity"`` (``L = I``, pCN) the warmup is one window: splitting it into
    Stan's windows made the compiled warmup grow to tens of GiB (seen with jax 0.10.2). The kept
    scale is the mean of ``log s`` over the second half of the last window.
    """
    c, d = states.position.shape
    dtype = states.position.dtype
    dense = shape.kind == "dense"
    wf_init, wf_update, wf_final = welford_algorithm(not dense)
    chol = jnp.eye(d, dtype=dtype) if dense else jnp.ones(d, dtype)
    segments = windows(num_warmup, shape.first) if shape.kind != "identity" else [(num_warmup, False)]
    cap = math.log(max_scale) if math.isfinite(max_scale) else jnp.inf
    log_s = jnp.full((c,), math.log(initial_scale), dtype)
    for i, (n, slow) in enumerate(segments):
        # one window: n transitions of every chain at the current shape, log s stochastically
        # approximated per chain, the draws of a slow window accumulated into Welford covariances
        def body(carry, xs, slow=slow, chol=chol, n=n):
            states, log_s, wf, total = carry
            k, t = xs
            step = jax.vmap(lambda k, st, ls: kernel(k, st, jnp.exp(ls), chol))
            states, info = step(jax.random.split(k, c), states, log_s)
            acc = jnp.nan_to_num(info.acceptance_rate, nan=0.0)
            log_s = jnp.minimum(log_s + (acc - target) / (t + 1.0) ** 0.6, cap)
            total = total + jnp.where(t >= n // 2, log_s, 0.0)
            wf = jax.vmap(wf_update)(wf, states.position) if wf is not None else wf
            return (states, log_s, wf, total), None

        wf = jax.vmap(lambda _: wf_init(d))(jnp.arange(c)) if slow and shape.kind != "identity" else None
        xs = (jax.random.split(jax.random.fold_in(key, i), n), jnp.arange(n))
        (states, log_s, wf, total), _ = jax.lax.scan(body, (states, log_s, wf, jnp.zeros((c,), dtype)), xs)
        mean_log_s = total / (n - n // 2)
        if slow and shape.kind != "identity":
            chol = _estimate(*_pooled(wf_final, wf), shape.kind, chol)
            log_s = jnp.full((c,), math.log(restart_scale), dtype)
        else:  # the gain restarts from the window's estimate: a far optimum is reached in steps
            log_s = mean_log_s
    params = {"step_size": jnp.exp(mean_log_s), "chol": jnp.broadcast_to(chol, (c, *chol.shape))}
    # XLA must not fuse the warmup's arithmetic into the draws': draws continued from saved
    # states and parameters (checkpoints) then equal draws made at once, bit for bit
    return jax.lax.optimization_barrier((states, params))


# -- the sampling table's entries -------------------------------------------------------------
def pcn_warmup(key, logdensity_fn, positions, num_warmup, num_samples, options):
    """pCN warmup: ``log β`` of each chain towards 0.25 acceptance (``β <= 1``), the gain
    restarted in each of Stan's windows so that a β orders of magnitude below the first is
    reached (an informative likelihood relative to the reference)."""
    target = _target(options, 0.25)
    kernel = lambda k, s, beta, chol: pcn_kernel(k, s, logdensity_fn, beta)  # noqa: E731
    states = jax.vmap(lambda p: pcn_init(p, logdensity_fn))(positions)
    states, params = adapt(kernel, states, key, num_warmup, target, options.get("initial_step_size", 0.1),
                           0.1, _Shape("identity", 0), 1.0)
    return states, {"step_size": params["step_size"]}


def pcn_step(logdensity_fn, num_warmup, num_samples, options):
    """The tuned pCN transition ``step(key, state, params) -> (state, RWInfo)``."""
    def step(key, state, params):
        state, params = jax.lax.optimization_barrier((state, params))  # see `adapt`
        return pcn_kernel(key, state, logdensity_fn, params["step_size"])

    return step


def rwmh_warmup(key, logdensity_fn, positions, num_warmup, num_samples, options):
    """Adaptive-covariance random walk: ``L`` from the windows' pooled covariance, the scale
    towards 0.234 acceptance, restarting at ``2.38 / sqrt(d)`` after each new ``L``."""
    target = _target(options, 0.234)
    d = positions.shape[1]
    s0 = 2.38 / math.sqrt(d)
    kernel = lambda k, s, eps, chol: rw_kernel(k, s, logdensity_fn, eps, chol)  # noqa: E731
    states = jax.vmap(lambda p: random_walk.init(p, logdensity_fn))(positions)
    return adapt(kernel, states, key, num_warmup, target, s0, s0, _shape(options, d, num_warmup))


def rwmh_step(logdensity_fn, num_warmup, num_samples, options):
    """The tuned random-walk transition ``step(key, state, params) -> (state, RWInfo)``."""
    def step(key, state, p):
        state, p = jax.lax.optimization_barrier((state, p))  # see `adapt`
        return rw_kernel(key, state, logdensity_fn, p["step_size"], p["chol"])

    return step


def mala_warmup(key, logdensity_fn, positions, num_warmup, num_samples, options):
    """Preconditioned MALA: ``M = L Lᵀ`` from the windows' pooled covariance, ε towards 0.574
    acceptance, restarting at ``1.65 d^(-1/6)`` (Roberts & Rosenthal's optimum) after each new
    ``L``; the first ε is ``initial_step_size`` (default ``0.1 d^(-1/3)``)."""
    target = _target(options, 0.574)
    d = positions.shape[1]
    s0 = options.get("initial_step_size", 0.1 / d ** (1 / 3))
    kernel = lambda k, s, eps, chol: mala_kernel(k, s, logdensity_fn, eps, chol)  # noqa: E731
    states = jax.vmap(lambda p: mala_init(p, logdensity_fn))(positions)
    return adapt(kernel, states, key, num_warmup, target, s0, 1.65 / d ** (1 / 6),
                 _shape(options, d, num_warmup))


def mala_step(logdensity_fn, num_warmup, num_samples, options):
    """The tuned MALA transition ``step(key, state, params) -> (state, MALAInfo)``."""
    def step(key, state, p):
        state, p = jax.lax.optimization_barrier((state, p))  # see `adapt`
        return mala_kernel(key, state, logdensity_fn, p["step_size"], p["chol"])

    return step
