"""The per-method table behind `jinverse.sample`: build a blackjax kernel and run its warmup.

Each entry is a `Method`: ``warmup(key, logdensity_fn, positions, num_warmup, num_samples,
options) -> (states, params)`` where ``positions`` holds one flat start point per chain,
``(chains, d)``, ``states`` the chains' states after warmup and ``params`` their tuned
parameters (one copy per chain); ``step(logdensity_fn, num_warmup, num_samples, options)``
gives ``step(key, state, params) -> (state, Stats)``, one transition of one chain. The two are
apart so that draws can continue from a saved state without running the warmup again
(checkpoints). ``logdensity_fn`` takes one flat unconstrained vector. Per-chain adaptations
(window, dual averaging, MCLMC tuning) are vmapped over chains; cross-chain ones (ChEES) see all
chains at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from blackjax.adaptation.base import get_filter_adapt_info_fn
from blackjax.adaptation.mass_matrix import welford_algorithm
from blackjax.adaptation.staged_adaptation import staged_adaptation
from blackjax.adaptation.step_size import dual_averaging_adaptation
from blackjax.adaptation.window_adaptation import build_schedule
from blackjax.mcmc import diffusions, proposal, random_walk
from blackjax.mcmc.dynamic_hmc import halton_sequence
from jaxtyping import Array, Bool, Float, Int

from . import dense


class Stats(NamedTuple):
    """Per-draw sampler statistics of one chain (NaN / 0 where a sampler has no such notion)."""

    acceptance_rate: Float[Array, ""]
    is_divergent: Bool[Array, ""]
    num_integration_steps: Int[Array, ""]
    step_size: Float[Array, ""]


class Method(NamedTuple):
    """One sampler: its warmup, its tuned transition, and the option names it accepts."""

    warmup: Callable
    step: Callable
    options: frozenset[str] | None  # None: not checked (a user's own algorithm)


def _stats(info, step_size, default_steps: int) -> Stats:
    """Read the common fields off a blackjax info NamedTuple.

    A transition whose proposal met a NaN/inf log-density (a fault of the model: NaN from the
    forward, an overflowing likelihood) is flagged in ``is_divergent`` like a divergence: blackjax
    rejects such a proposal, which would otherwise go unnoticed as an ordinary rejection.
    """
    f = jnp.result_type(float)
    acc = jnp.asarray(getattr(info, "acceptance_rate", jnp.nan), f)
    div = jnp.asarray(getattr(info, "is_divergent", False), bool)
    if hasattr(info, "acceptance_rate"):  # NaN when the proposal's log-density was NaN
        div = div | jnp.isnan(acc)
    proposal = getattr(getattr(info, "proposal", None), "logdensity", None)
    if proposal is not None:
        div = div | ~jnp.isfinite(proposal)
    steps = getattr(info, "num_integration_steps", default_steps)
    return Stats(acc, div, jnp.asarray(steps, jnp.int32), jnp.asarray(step_size, f))


def _vmap_chains(fn, key, positions, *args):
    keys = jax.random.split(key, positions.shape[0])
    return jax.vmap(lambda k, p: fn(k, p, *args))(keys, positions)


# -- NUTS / HMC: Stan's window adaptation (step size + diagonal mass matrix) ----------------
_ADAPT_ONLY = ("initial_step_size",)


def dense_first_window(d: int) -> int:
    """First slow window of a dense mass matrix's warmup: Stan's 25 draws, or ``1.5 d`` if more.

    Each slow window's covariance estimate sets the metric of the next window. An estimate from
    fewer than ``d`` draws is rank-deficient (Stan's regularisation leaves ~1e-4 of variance in
    the missing directions), and NUTS then runs maximum-depth trajectories for the whole next
    window; with Stan's 25-50-100 windows a 128-dimensional posterior spent 350 warmup
    iterations at 1023 leapfrog steps (benchmarks/sampling.py). ``1.5 d`` draws give a
    full-rank estimate from the start.
    """
    return max(25, math.ceil(1.5 * d))


def _dense_schedule(num_steps: int, first: int):
    """Stan's warmup schedule (`blackjax.adaptation.window_adaptation.build_schedule`:
    ``(stage, is_window_end)`` rows; 75 fast steps, slow windows, 50 fast steps) whose first
    slow window has ``first`` steps and always ends there when the warmup has room for it.

    Stan merges a window with the next when the rest is short; merging the first one would keep
    the unadapted metric (the costly one) until the final buffer. A last window shorter than
    ``first`` would give a rank-deficient estimate: its steps only tune the step size instead.
    """
    initial, final = 75, 50
    end = num_steps - final
    if initial + first >= end:  # no room: Stan's resized schedule (one slow window)
        return build_schedule(num_steps, first_window_size=first)
    rows = [(0, False)] * initial + [(1, False)] * (first - 1) + [(1, True)]
    start, size = initial + first, 2 * first
    while start < end:
        if 3 * size > end - start:  # Stan's rule: the last window takes the rest
            size = end - start
        if size < first:  # too short for a full-rank estimate: keep the last one, tune ε
            rows += [(0, False)] * size
            break
        rows += [(1, False)] * (size - 1) + [(1, True)]
        start, size = start + size, 2 * size
    rows += [(0, False)] * final
    return jnp.array(rows)


def _window(algorithm, target: float, step_size_jitter: float = 0.0, kernel_options=(), **extra):
    def settings(options):
        opts = dict(extra)
        opts.update(options)
        target_rate = opts.pop("target_acceptance_rate", target)
        dense = opts.pop("dense_mass", False)
        jitter = opts.pop("step_size_jitter", step_size_jitter)
        return opts, target_rate, dense, jitter

    def warmup(key, logdensity_fn, positions, num_warmup, num_samples, options):
        opts, target_rate, dense, _ = settings(options)
        if dense:  # Stan's windows, the first slow one long enough for a full-rank covariance
            first = dense_first_window(positions.shape[1])
            adapt = staged_adaptation(
                algorithm, logdensity_fn, metric="welford_dense",
                schedule_fn=lambda n: _dense_schedule(n, first),
                target_acceptance_rate=target_rate,
                adaptation_info_fn=get_filter_adapt_info_fn(), **opts)
        else:
            adapt = blackjax.window_adaptation(
                algorithm, logdensity_fn, target_acceptance_rate=target_rate,
                adaptation_info_fn=get_filter_adapt_info_fn(), **opts)

        def one_chain(k, p):
            (state, params), _ = adapt.run(k, p, num_steps=num_warmup)
            return state, params

        return _vmap_chains(one_chain, key, positions)

    def make_step(logdensity_fn, num_warmup, num_samples, options):
        opts, _, _, jitter = settings(options)
        opts = {k: v for k, v in opts.items() if k not in _ADAPT_ONLY}
        default_steps = opts.get("num_integration_steps", 0)

        def step(key, state, params):
            if jitter:  # a random step size per transition breaks fixed-length HMC's resonances
                key, k_eps = jax.random.split(key)
                u = jax.random.uniform(k_eps, minval=1 - jitter, maxval=1 + jitter)
                params = {**params, "step_size": params["step_size"] * u}
            kernel = algorithm(logdensity_fn, **{**opts, **params})
            state, info = kernel.step(key, state)
            return state, _stats(info, params["step_size"], default_steps)

        return step

    names = {"target_acceptance_rate", "dense_mass", "step_size_jitter", *_ADAPT_ONLY, *kernel_options}
    return Method(warmup, make_step, frozenset(names))


# -- MALA: step size by dual averaging to the optimal 0.574 acceptance ----------------------
def _mala_warmup(key, logdensity_fn, positions, num_warmup, num_samples, options):
    target = options.get("target_acceptance_rate", 0.574)
    da_init, da_update, da_final = dual_averaging_adaptation(target)
    kernel = blackjax.mala.build_kernel()

    def one_chain(k, p):
        d = p.shape[0]
        state = blackjax.mala.init(p, logdensity_fn)

        def body(carry, k):
            state, da = carry
            state, info = kernel(k, state, logdensity_fn, jnp.exp(da.log_step_size))
            return (state, da_update(da, info.acceptance_rate)), None

        start = options.get("initial_step_size", 0.1 / d ** (1 / 3))
        (state, da), _ = jax.lax.scan(body, (state, da_init(start)), jax.random.split(k, num_warmup))
        return state, {"step_size": da_final(da)}

    return _vmap_chains(one_chain, key, positions)


# -- Metropolis kernels that report a NaN/inf proposal --------------------------------------
# blackjax turns a NaN log-density at the proposal into a plain rejection. The kernels used for
# the kept draws below are blackjax's MALA and random-walk kernels with one change: the reported
# acceptance rate is NaN when the proposal's log-density was not finite, so `_stats` flags it.
def _flagging_sampler(key, log_p_accept, state, new_state):
    out, (do_accept, p_accept, extra) = proposal.static_binomial_sampling(key, log_p_accept, state, new_state)
    return out, (do_accept, jnp.where(jnp.isfinite(new_state.logdensity), p_accept, jnp.nan), extra)


def _mala_flagging_kernel(key, state, logdensity_fn, step_size):
    """`blackjax.mala.build_kernel()`'s kernel with `_flagging_sampler`."""

    def transition_energy(state, new_state, step_size):
        theta = jax.tree.map(lambda x, new_x, g: x - new_x - step_size * g, state.position,
                             new_state.position, new_state.logdensity_grad)
        theta_dot = sum(jnp.sum(t * t) for t in jax.tree.leaves(theta))
        return -new_state.logdensity + 0.25 * (1.0 / step_size) * theta_dot

    integrator = diffusions.overdamped_langevin(jax.value_and_grad(logdensity_fn))
    key_integrator, key_rmh = jax.random.split(key)
    new_state = blackjax.mcmc.mala.MALAState(*integrator(key_integrator, state, step_size))
    ratio = proposal.compute_asymmetric_acceptance_ratio(transition_energy)
    log_p_accept = ratio(state, new_state, step_size=step_size)
    state, (do_accept, p_accept, _) = _flagging_sampler(key_rmh, log_p_accept, state, new_state)
    return state, blackjax.mcmc.mala.MALAInfo(p_accept, do_accept)


def _rw_flagging_kernel(key, state, logdensity_fn, random_step):
    """`blackjax.additive_step_random_walk.build_kernel()`'s kernel with `_flagging_sampler`."""

    def transition(k, position):
        return jax.tree.map(jnp.add, position, random_step(k, position))

    ratio = proposal.compute_asymmetric_acceptance_ratio(random_walk.build_rmh_transition_energy(None))
    generate = random_walk.rmh_proposal(logdensity_fn, transition, ratio, _flagging_sampler)
    new_state, do_accept, p_accept = generate(key, state)
    return new_state, random_walk.RWInfo(p_accept, do_accept, new_state)


def _mala_step(logdensity_fn, num_warmup, num_samples, options):
    kernel = _mala_flagging_kernel

    def step(key, state, params):
        state, info = kernel(key, state, logdensity_fn, params["step_size"])
        return state, _stats(info, params["step_size"], 1)

    return step


# -- RWMH: proposal covariance from a first window, then its scale to 0.234 acceptance -------
_normal = blackjax.mcmc.random_walk.normal


def _rwmh_warmup(key, logdensity_fn, positions, num_warmup, num_samples, options):
    target = options.get("target_acceptance_rate", 0.234)
    da_init, da_update, da_final = dual_averaging_adaptation(target)
    wf_init, wf_update, wf_final = welford_algorithm(False)
    kernel = blackjax.additive_step_random_walk.build_kernel()

    def one_chain(k, p):
        d = p.shape[0]
        state = blackjax.additive_step_random_walk.init(p, logdensity_fn)
        first = num_warmup // 2

        # One warmup window: dual-average the global scale of the proposal `chol * scale`;
        # in the second half of the first window also estimate the posterior covariance.
        def window(state, chol, keys, collect):
            def body(carry, xs):
                state, da, wf = carry
                k, i = xs
                sigma = chol * jnp.exp(da.log_step_size)
                state, info = kernel(k, state, logdensity_fn, _normal(sigma))
                wf = jax.lax.cond(collect & (i >= keys.shape[0] // 2),
                                  lambda w: wf_update(w, state.position), lambda w: w, wf)
                return (state, da_update(da, info.acceptance_rate), wf), None

            carry = (state, da_init(2.38 / jnp.sqrt(d)), wf_init(d))
            (state, da, wf), _ = jax.lax.scan(body, carry, (keys, jnp.arange(keys.shape[0])))
            return state, da_final(da), wf

        k1, k2 = jax.random.split(k)
        eye = jnp.eye(d, dtype=p.dtype)
        state, scale, wf = window(state, eye, jax.random.split(k1, first), True)
        cov, n, _ = wf_final(wf)
        # Shrink towards a small multiple of the identity, as Stan does for its mass matrix.
        cov = (n / (n + 5.0)) * cov + 1e-3 * (5.0 / (n + 5.0)) * eye
        chol = dense.cholesky(cov)  # blocked above 2**31 bytes (jinverse.dense, issue 19)
        chol = jnp.where((n > d + 2) & jnp.all(jnp.isfinite(chol)), chol, eye * scale)
        state, scale, _ = window(state, chol, jax.random.split(k2, num_warmup - first), False)
        return state, {"sigma": chol * scale, "step_size": scale}

    return _vmap_chains(one_chain, key, positions)


def _rwmh_step(logdensity_fn, num_warmup, num_samples, options):
    kernel = _rw_flagging_kernel

    def step(key, state, params):
        state, info = kernel(key, state, logdensity_fn, _normal(params["sigma"]))
        return state, _stats(info, params["step_size"], 0)

    return step


# -- MCLMC: blackjax.mclmc_find_L_and_step_size (unadjusted: no accept step) ---------------
def _mclmc_kernel(options):
    return blackjax.mclmc.build_kernel(desired_energy_var=options.get("desired_energy_var", 5e-4))


def _mclmc_warmup(key, logdensity_fn, positions, num_warmup, num_samples, options):
    if positions.shape[1] < 2:
        raise ValueError("method: 'mclmc' needs at least 2 unknowns; use 'nuts' for a scalar θ")
    kernel = _mclmc_kernel(options)

    def one_chain(k, p):
        k_init, k_tune = jax.random.split(k)
        state = blackjax.mclmc.init(p, logdensity_fn, k_init)
        # Three tuning phases, each ~30% of num_warmup (+10% for the diagonal preconditioner).
        state, params, _ = blackjax.mclmc_find_L_and_step_size(
            mclmc_kernel=kernel, num_steps=num_warmup, state=state, rng_key=k_tune,
            logdensity_fn=logdensity_fn, frac_tune1=0.3, frac_tune2=0.3, frac_tune3=0.3,
            diagonal_preconditioning=options.get("diagonal_preconditioning", True))
        return state, params._asdict()

    return _vmap_chains(one_chain, key, positions)


def _mclmc_step(logdensity_fn, num_warmup, num_samples, options):
    kernel = _mclmc_kernel(options)

    def step(key, state, params):
        state, info = kernel(key, state, logdensity_fn, params["inverse_mass_matrix"],
                             params["L"], params["step_size"])
        stats = _stats(info, params["step_size"], 1)
        return state, stats._replace(is_divergent=~jnp.asarray(info.nonans, bool))

    return step


# -- ChEES: cross-chain adaptation of step size and trajectory length, jittered HMC ---------
def _chees_warmup(key, logdensity_fn, positions, num_warmup, num_samples, options):
    num_chains, d = positions.shape
    adapt = blackjax.chees_adaptation(
        logdensity_fn, num_chains,
        target_acceptance_rate=options.get("target_acceptance_rate", 0.651),
        mass_matrix_estimation=options.get("mass_matrix_estimation", "diagonal"),
        adaptation_info_fn=get_filter_adapt_info_fn())
    (states, params), _ = adapt.run(
        key, positions, options.get("initial_step_size", 0.1),
        optax.adam(options.get("learning_rate", 0.025)), num_warmup,
        max_sampling_steps=num_samples)
    # The tuned parameters are shared by every chain: one copy per chain, like the others.
    shared = {k: params[k] for k in ("step_size", "inverse_mass_matrix", "integration_steps_params")}
    return states, jax.tree.map(lambda x: jnp.broadcast_to(x, (num_chains, *jnp.shape(x))), shared)


def _chees_step(logdensity_fn, num_warmup, num_samples, options):
    # The jittered trajectory length of `blackjax.chees_adaptation` (no jitter_generator: a
    # Halton sequence indexed by the state's counter), rebuilt so that it needs no warmup.
    max_bits = np.ceil(np.log2(num_warmup + num_samples))

    def integration_steps_fn(i, num_leapfrog_steps):
        return jnp.asarray(jnp.ceil(halton_sequence(i, max_bits) * num_leapfrog_steps), dtype=int)

    def step(key, state, p):
        alg = blackjax.dynamic_hmc(
            logdensity_fn, p["step_size"], p["inverse_mass_matrix"],
            next_random_arg_fn=lambda i: i + 1, integration_steps_fn=integration_steps_fn,
            integration_steps_params=p["integration_steps_params"])
        state, info = alg.step(key, state)
        return state, _stats(info, p["step_size"], 0)

    return step


# -- A user's own blackjax algorithm: no adaptation, warmup is plain burn-in ---------------
def custom(build: Callable) -> Method:
    """Wrap ``build(logdensity_fn, **options) -> blackjax.SamplingAlgorithm`` as a table entry."""

    def make_step(logdensity_fn, num_warmup, num_samples, options):
        algorithm = build(logdensity_fn, **options)

        def step(key, state, params):
            state, info = algorithm.step(key, state)
            return state, _stats(info, jnp.nan, 0)

        return step

    def warmup(key, logdensity_fn, positions, num_warmup, num_samples, options):
        algorithm = build(logdensity_fn, **options)
        step = make_step(logdensity_fn, num_warmup, num_samples, options)

        def one_chain(k, p):
            k_init, k_run = jax.random.split(k)
            try:
                state = algorithm.init(p, k_init)
            except TypeError:
                state = algorithm.init(p)
            state, _ = jax.lax.scan(lambda s, kk: (step(kk, s, None)[0], None), state,
                                    jax.random.split(k_run, num_warmup))
            return state

        return _vmap_chains(one_chain, key, positions), None

    return Method(warmup, make_step, None)


METHODS: dict[str, Method] = {
    "nuts": _window(blackjax.nuts, 0.8, kernel_options=("max_num_doublings", "divergence_threshold")),
    "hmc": _window(blackjax.hmc, 0.65, step_size_jitter=0.2, num_integration_steps=16,
                   kernel_options=("num_integration_steps", "divergence_threshold")),
    "mala": Method(_mala_warmup, _mala_step, frozenset({"target_acceptance_rate", "initial_step_size"})),
    "rwmh": Method(_rwmh_warmup, _rwmh_step, frozenset({"target_acceptance_rate"})),
    "mclmc": Method(_mclmc_warmup, _mclmc_step, frozenset({"desired_energy_var", "diagonal_preconditioning"})),
    "chees": Method(_chees_warmup, _chees_step, frozenset(
        {"target_acceptance_rate", "mass_matrix_estimation", "initial_step_size", "learning_rate"})),
}
