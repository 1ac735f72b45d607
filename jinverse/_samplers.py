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
from blackjax.adaptation.staged_adaptation import staged_adaptation
from blackjax.adaptation.window_adaptation import build_schedule
from blackjax.mcmc.dynamic_hmc import halton_sequence
from jaxtyping import Array, Bool, Float, Int

from . import _kernels


class Stats(NamedTuple):
    """Per-draw sampler statistics of one chain (NaN / 0 where a sampler has no such notion)."""

    acceptance_rate: Float[Array, ""]
    is_divergent: Bool[Array, ""]
    num_integration_steps: Int[Array, ""]
    step_size: Float[Array, ""]
    #: the Hamiltonian (potential + kinetic) at the transition's end (HMC-family samplers;
    #: NaN elsewhere): ArviZ's ``energy``, for the BFMI and energy plots
    energy: Float[Array, ""]


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
    energy = jnp.asarray(getattr(info, "energy", jnp.nan), f)
    return Stats(acc, div, jnp.asarray(steps, jnp.int32), jnp.asarray(step_size, f), energy)


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


# -- MCLMC: blackjax.mclmc_find_L_and_step_size (unadjusted: no accept step) ---------------
#: The momentum decoherence length is ``L_FACTOR`` x (the tuning run's autocorrelation length).
L_FACTOR = 0.4
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
            desired_energy_var=options.get("desired_energy_var", 5e-4),
            l_factor=options.get("l_factor", L_FACTOR),
            diagonal_preconditioning=options.get("diagonal_preconditioning", True))
        return state, params._asdict()

    return _vmap_chains(one_chain, key, positions)


def _mclmc_step(logdensity_fn, num_warmup, num_samples, options):
    kernel = _mclmc_kernel(options)

    # A draw every momentum decoherence length L (≈ L / ε integration steps) rather than every
    # step: on two_moons (4 x (500 + 1000)) R-hat 1.040 -> 1.005 and bulk ESS 188 -> 1411 at the
    # same wall time (compilation dominates); gaussian_mixture R-hat 1.060 -> 1.019, ESS 97 -> 322.
    # ``steps_per_draw=1`` keeps every step.
    per_draw = options.get("steps_per_draw", "auto")

    def one(key, state, params):
        return kernel(key, state, logdensity_fn, params["inverse_mass_matrix"], params["L"], params["step_size"])

    def step(key, state, params):
        if per_draw == "auto":  # one momentum decoherence length L of integration per draw
            n = jnp.maximum(1, jnp.ceil(params["L"] / params["step_size"])).astype(int)
        else:
            n = per_draw
        state, info = one(key, state, params)
        nonans = jnp.asarray(info.nonans, bool)

        def body(i, carry):
            st, ok = carry
            st, inf = one(jax.random.fold_in(key, i), st, params)
            return st, ok & jnp.asarray(inf.nonans, bool)

        state, nonans = jax.lax.fori_loop(1, n, body, (state, nonans))
        stats = _stats(info, params["step_size"], 1)
        return state, stats._replace(is_divergent=~nonans, num_integration_steps=jnp.asarray(n, stats.num_integration_steps.dtype))

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


# -- pCN, adaptive-covariance RWMH, preconditioned MALA: `jinverse._kernels` ----------------
def _kernel_method(warmup: Callable, make_step: Callable, options: frozenset[str], steps: int) -> Method:
    """A `jinverse._kernels` sampler as a table entry: its transition's info read by `_stats`."""

    def make(logdensity_fn, num_warmup, num_samples, opts):
        inner = make_step(logdensity_fn, num_warmup, num_samples, opts)

        def step(key, state, params):
            state, info = inner(key, state, params)
            return state, _stats(info, params["step_size"], steps)

        return step

    return Method(warmup, make, options)


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
    "mala": _kernel_method(_kernels.mala_warmup, _kernels.mala_step, _kernels.MALA_OPTIONS, 1),
    "rwmh": _kernel_method(_kernels.rwmh_warmup, _kernels.rwmh_step, _kernels.RWMH_OPTIONS, 0),
    "pcn": _kernel_method(_kernels.pcn_warmup, _kernels.pcn_step, _kernels.PCN_OPTIONS, 0),
    "mclmc": Method(_mclmc_warmup, _mclmc_step, frozenset({"desired_energy_var", "diagonal_preconditioning",
                                                         "l_factor", "steps_per_draw"})),
    "chees": Method(_chees_warmup, _chees_step, frozenset(
        {"target_acceptance_rate", "mass_matrix_estimation", "initial_step_size", "learning_rate"})),
}
