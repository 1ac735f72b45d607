"""`ji.sample`: posterior sampling with blackjax, every chain and observation in one program.

The sampler target is always ``problem.log_density(u, y)`` (unconstrained space, Jacobian
included) on the flattened ``u``; draws are mapped back with ``problem.from_unconstrained``.
The per-method kernels and warmups live in `jinverse._samplers`. One *lane* is one observation
with its chains: the per-lane core (warmup, the draw loop) is `jinverse.lanes`. Lanes stream
through one compiled program in blocks (`jinverse._batching.stream`), optionally sharded over
the devices of a mesh; `jinverse.checkpoint` runs the draws in chunks saved to disk. Where the
chains start (``init=``, the Laplace metric's modes) is `jinverse.sampling_init`; the R-hat, ESS
and status of the draws, `jinverse.convergence`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from . import _samplers, traced
from . import metric as metric_lib
from . import tempering as tempering_lib
from ._batching import announce, check_mesh, default_block_size, reporter, stream, tree_bytes
from ._checks import check_key, check_positive_int
from .convergence import diagnose_draws, draw_diagnostics
from .lanes import TRACES as _TRACES  # noqa: F401  (tests count retraces with it)
from .lanes import Settings as _Settings
from .lanes import draw_lanes as _draw_lanes
from .lanes import flatten as _flat
from .lanes import lane_report, metric_ok
from .lanes import sample_lanes as _sample_lanes
from .lanes import warmup_lanes as _warmup_lanes
from .posterior import Posterior, warn
from .problem import InverseProblem
from .sampling_init import chain_starts, laplace_modes
from .smc import sample_smc

PROGRESS_CHUNKS = 10  # with progress=True on one block, the draws run in this many chunks


def _sample_in_chunks(problem, s: _Settings, lanes, run: dict, progress):
    """`_sample_lanes` with a report after each of about `PROGRESS_CHUNKS` chunks of draws
    (``progress=True`` on one block): warmup once, then `_draw_lanes` from its states. The
    draws are `_sample_lanes`'s, bit for bit (`_draw_one`: draw ``i`` uses the ``i``-th key)."""
    s = dataclasses.replace(s, draws_per_call=-(-s.num_samples // PROGRESS_CHUNKS))
    operand, n, t0 = (problem, s), run["num_lanes"], time.perf_counter()
    announce(progress, f"sampling: warmup, {s.num_warmup} steps of {s.num_chains} chains x {n} "
                       f"observation{'s' * (n > 1)} (compiling first)")
    states, params, keys = jax.block_until_ready(stream(_warmup_lanes, operand, lanes, **run))
    announce(progress, f"sampling: warmup done, {time.perf_counter() - t0:.0f} s")
    report = reporter(progress, s.num_samples, "sampling: draws")
    pieces = []
    for done in range(0, s.num_samples, s.draws_per_call):  # the last chunk may run past the end
        start = jnp.full((n,), done, jnp.int32)
        states, *piece = jax.block_until_ready(stream(_draw_lanes, operand, (lanes[0], states, params, keys, start),
                                                      **run))
        pieces.append(piece)
        report(min(done + s.draws_per_call, s.num_samples))
    draws, stats = jax.tree.map(lambda *a: jnp.concatenate(a, axis=2)[:, :, :s.num_samples], *pieces)
    if s.betas is not None:  # replica exchange: the swap rates too, from the final states
        ok, swaps = jax.vmap(lambda p, st: lane_report(s, p, st))(params, states)
        return draws, stats, (jnp.broadcast_to(ok, (n,)), swaps)
    return draws, stats, jnp.broadcast_to(metric_ok(s, params), (n,))


def _refuse_traced(method, init, progress, checkpoint, checkpoint_every) -> None:
    """A ValueError for the options of `sample` that need the host, in a call under a JAX
    transformation (traced ``y``, ``key``, ``init`` or problem)."""
    from .modes import ModeMixture

    why = " under a JAX transformation (jit/vmap: traced y, key, init or problem), expected "
    outside = "; or call ji.sample outside the transformation"
    if isinstance(method, str) and method == "smc":
        raise ValueError("method: got 'smc'" + why + "an MCMC method ('nuts', 'hmc', 'mala', 'rwmh', ...): "
                         "tempered SMC chooses its stages on the host" + outside)
    if checkpoint is not None or checkpoint_every is not None:
        name, value = ("checkpoint", checkpoint) if checkpoint is not None else ("checkpoint_every", checkpoint_every)
        raise ValueError(f"{name}: got {value!r}" + why + "None: a checkpoint writes files on the host" + outside)
    if progress is not None and progress is not False:
        raise ValueError(f"progress: got {progress!r}" + why + "None or False: progress is reported from the host"
                         + outside)
    if isinstance(init, ModeMixture) or (isinstance(init, str) and init == "modes"):
        raise ValueError(f"init: got {'a ModeMixture' if isinstance(init, ModeMixture) else repr(init)}" + why
                         + "'prior', 'map' or a θ: the mode search (ji.find_modes) runs on the host" + outside)


def _check_options(method, options: dict) -> tuple[tuple[str, Any], ...]:
    entry = None if callable(method) else _samplers.METHODS[method]
    if entry is not None and entry.options is not None:
        unknown = sorted(set(options) - entry.options)
        if unknown:
            raise ValueError(f"options: got {unknown[0]!r} (unknown for method {method!r}), expected "
                             f"some of {sorted(entry.options)}")
    return _hashable(options)


def _hashable(options: dict) -> tuple[tuple[str, Any], ...]:
    """The options as a sorted tuple (a static, hashable part of the compiled program)."""
    try:
        opts = tuple(sorted(options.items()))
        hash(opts)
    except TypeError as exc:
        raise TypeError(f"options: got {options!r}, expected hashable values (numbers, strings)") from exc
    return opts


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
    block_size: int | None = None,
    mesh: Mesh | None = None,
    batch_axis: str | None = None,
    progress: bool | Callable[[int, int], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    diagnose: bool = True,
    metric: str = "auto",
    tempering: int | str | Sequence[float] | None = None,
    swap_every: int = 1,
    adapt_ladder: bool = False,
    **options,
) -> Posterior:
    """Draw from p(θ | y) with a blackjax sampler, tuned by its own adaptation.

    Args:
        problem: the `ji.InverseProblem`.
        y: observations shaped ``(*batch, *event)``. Each observation is one *lane* (warmup and
            sampling of its ``num_chains`` chains); all lanes run through one compiled program.
            Element ``i`` of a flattened batch uses ``jax.random.split(key, B)[i]``, so it
            equals a one-at-a-time call with that key, whatever the blocking or devices (to
            rounding: XLA vectorises different lane counts differently, and adaptation, or
            NUTS's trajectory choices, can amplify last-bit differences).
        key: a JAX PRNG key.
        method: ``"nuts"`` or ``"hmc"`` (Stan's window adaptation of step size and diagonal mass
            matrix; ``metric="dense"`` for a dense one, whose first slow window is
            ``max(25, 1.5 d)`` draws for d unknowns so that every estimate is full-rank: give it
            ``num_warmup >= 75 + 1.5 d + 50``, and note that each leapfrog step then costs a
            ``d x d`` product or more; HMC takes ``num_integration_steps``
            (default 16) and draws its step size uniformly within ``step_size_jitter`` (default
            ±20%) of the tuned one at each transition),
            ``"mala"`` (step size by dual averaging to 0.574 acceptance), ``"rwmh"``
            (diagonal proposal scale, then a global scale to 0.234 acceptance), ``"mclmc"``
            (`blackjax.mclmc_find_L_and_step_size`; unadjusted, needs ≥ 2 unknowns) or
            ``"chees"`` (`blackjax.chees_adaptation` of jittered dynamic HMC across chains; the
            many-chain method for accelerators), or ``"smc"``: adaptive tempered sequential
            Monte Carlo from prior to posterior (`jinverse.smc`: ``num_chains * num_samples``
            particles, ``num_warmup`` unused, the log evidence in ``log_evidence``; for
            posteriors with several modes). Or your own algorithm: a callable
            ``build(logdensity_fn, **options) -> blackjax.SamplingAlgorithm`` where
            ``logdensity_fn`` takes one *flat* unconstrained vector, e.g.
            ``lambda ld: blackjax.nuts(ld, step_size=0.1, inverse_mass_matrix=jnp.ones(n))``;
            it is not adapted (``num_warmup`` steps of it are discarded as burn-in). Pass the
            same callable object again to reuse the compiled program.
        num_chains, num_warmup, num_samples: chains per observation, warmup (adaptation)
            steps and kept draws per chain.
        init: ``"prior"`` (default: each chain starts at its own prior draw), ``"map"``
            (`ji.solve_map`, then jittered), ``"modes"`` (`ji.find_modes` with its defaults, or
            pass its `ji.ModeMixture`: every mode found gets a chain, the others are shared by
            the modes' Laplace weights, each jittered; the posterior's ``modes`` and
            ``summary()`` report them) or a θ shaped like the prior's event or
            ``(*batch, *event)`` (jittered), or one θ per chain, ``(num_chains, *event)`` or
            ``(*batch, num_chains, *event)`` (used exactly as given, not jittered).
        jitter: standard deviation of the Gaussian perturbation, in the unconstrained space,
            that spreads chains started from one point (``init="map"`` or a given θ).
        chunk_size: observations vmapped together; chunks run one after another
            (``jax.lax.map``). Default: all the observations of a block at once, best on
            accelerators; on a CPU, where a vmapped NUTS step waits for the longest trajectory
            of all its lanes, small chunks can be faster. Results do not depend on it.
        block_size: observations per compiled call (default: what keeps a block's draws within
            ~512 MiB); larger batches stream through the same program block after block, the
            last one padded, so no new size recompiles.
        mesh: a `jax.sharding.Mesh`; each block's observations are split across its devices
            along ``batch_axis`` (default: the mesh's first axis). Results equal one device's.
        progress: True: each phase (mode search, warmup, draws, diagnostics) and its progress on
            stderr, a bar on a terminal, else a line every few seconds (``sampling: draws
            400/1000 (40%), 12 s``); on one block of observations the draws run in
            `PROGRESS_CHUNKS` chunks (the same draws, bit for bit), on several the blocks are
            counted. Or ``callback(done, total)``: after each block of observations, or, with
            ``checkpoint``, each chunk of draws.
        checkpoint: a file path. Warmup runs once, then draws are made ``checkpoint_every`` at
            a time; after each chunk the draws so far, the sampler states and the settings are
            written to this file (atomically). Calling again with the same arguments after an
            interruption (even SIGKILL) resumes from the last complete chunk, and the draws are
            identical to an uninterrupted run (resume with the same ``chunk_size``,
            ``block_size`` and ``mesh``: XLA may round a different lane count differently). A file
            written with other settings (data, key, method, counts, options) is refused. With
            ``tempering``, every replica's state, the ladder and the swap counts are saved too.
        checkpoint_every: draws per chunk (default: ``num_samples // 10``, at least 1).
        diagnose: compute R-hat and bulk ESS (default). Their rank normalisation sorts the pooled
            draws and, for long runs on a CPU, can take as long as the sampling; ``False`` skips
            it: ``max_rhat`` and ``min_ess`` are NaN, every observation's ``status`` has
            `Status.UNCHECKED` and ``warnings`` says so (no Python warning for that), while
            non-finite draws and divergences are still flagged and warned about. The draws are
            the same either way; ``post.diagnose()`` computes the rest afterwards. Not part of a
            checkpoint's settings.
        metric: the sampler's coordinates (`jinverse.metric`), for every method:
            ``"laplace"``: whitened by the Laplace approximation N(m, H⁻¹) of each observation
            (``m`` its mode by `ji.solve_map` with Newton steps, ``H`` the Gauss-Newton or exact
            curvature there from `jinverse.curvature`, dense up to `metric.DENSE_MAX` unknowns;
            above, a proper Gaussian prior's square root with a low-rank data update from
            `jinverse.lowrank`, eigenpairs kept down to ``λ < metric.LOWRANK_TOL``):
            the method samples ``z`` with ``u = m + L z``, ``L Lᵀ = H⁻¹``, and its chains start
            at draws of that Gaussian (unless ``init`` is given); where it is exact the target
            is N(0, I) and NUTS needs a few leapfrog steps per draw. ``"prior"``: whitened by a
            Gaussian prior (pCN's reference). ``"diagonal"``: the coordinates as they are and
            the method's own adaptation (NUTS/HMC: a diagonal mass matrix). ``"dense"``: an
            adapted dense mass matrix (NUTS/HMC; ``dense_mass=True`` is its older spelling;
            MALA/RWMH: ``preconditioner="dense"``). ``"auto"`` (default): ``"laplace"`` for a
            Gaussian likelihood with a Gaussian or GMRF prior (a proper one above
            `metric.DENSE_MAX` unknowns), ``"prior"`` for pCN, else ``"diagonal"``
            (`metric.choose`). An observation whose mode search goes non-finite or whose
            curvature is not positive definite is sampled with the identity whitening (the
            ``"diagonal"`` behaviour; above `metric.DENSE_MAX`, the prior's) and flagged
            `Status.METRIC_FALLBACK`. ``method="gpcn"`` is pCN with ``metric="laplace"``.
        tempering: replica exchange (parallel tempering, `jinverse.tempering`) for ``"nuts"``,
            ``"hmc"``, ``"mala"``, ``"rwmh"`` and ``"chees"``: each chain carries replicas of the
            likelihood-tempered targets ``prior x likelihood^β``, one per β of the ladder, each
            warmed up on its own target (its own step size and metric); neighbours swap states
            every ``swap_every`` draws (even/odd pairs in turn); only the β = 1 replica's draws
            are returned, and ``Posterior.tempering`` holds the ladder and the swap acceptance
            per pair. An int ``K >= 2``: ``K - 1`` βs geometric from 1 down to
            `jinverse.tempering.BETA_MIN`, then 0 (the prior, which crosses any barrier); or the
            βs, decreasing from 1 to some β ≥ 0. Costs K times the sampling; for posteriors with modes far apart.
            ``"adaptive"``: `jinverse.tempering.ADAPTIVE_K` temperatures with ``adapt_ladder=True``.
        swap_every: draws between two rounds of swaps (with ``tempering``).
        adapt_ladder: with ``tempering``, tune the βs between the ends of the given ladder during
            the warmup so that every neighbouring pair accepts about the same share of swaps
            (`jinverse.tempering.warmup`: ``ADAPT_ROUNDS`` rounds of warmup, exchange and
            update, ``num_warmup`` steps in all, then the usual warmup at the final ladder, which
            stays fixed for the draws); each observation gets its own ladder.
        **options: method settings, e.g. ``target_acceptance_rate``, ``num_integration_steps``
            (hmc), ``learning_rate`` (chees). Must be hashable; an unknown name is refused.

    Returns:
        A `ji.Posterior`: ``samples`` shaped ``(*batch, chains, draws, *theta_shape)`` in θ's own
        space, per-draw ``stats``, per-observation ``status`` and ``warnings``. A fault in one
        observation (NaN/inf from the model, divergences) is flagged in its own ``status`` and
        leaves every other observation's draws unchanged.

    Under ``jax.jit`` or ``jax.vmap`` (``y``, ``key``, ``init`` or a leaf of ``problem`` traced),
    the host-only work is skipped: only shapes and dtypes are checked (a non-finite observation
    or start is flagged `Status.NONFINITE` in its own ``status`` instead of refused), all
    observations run as one block (``block_size`` and ``mesh`` are ignored), R-hat and ESS are
    computed in JAX with the status flags from them, and ``warnings`` is empty with no warning
    raised (read ``status``; ``post.diagnose()`` outside the transformation gives the messages).
    ``checkpoint``, ``progress``, ``init="modes"`` and ``method="smc"`` need the host and are
    refused. The `Posterior` is a pytree: ``jax.jit(lambda y: ji.sample(problem, y,
    key=key).samples)(y)``, and ``jax.vmap`` over observations and keys, give the draws of the
    host call with those keys (to rounding). Gradients through the sampler are not provided.

    Example::

        post = ji.sample(problem, y, key=jax.random.key(0))
        print(post.summary())
    """
    if not isinstance(problem, InverseProblem):
        raise TypeError(f"problem: got {type(problem).__name__}, expected a jinverse.InverseProblem")
    check_key("key", key)
    is_traced = traced.is_traced(problem, y, init, key)
    if is_traced:
        _refuse_traced(method, init, progress, checkpoint, checkpoint_every)
        mesh, batch_axis, block_size = None, None, None  # one block on the caller's devices
    if isinstance(method, str) and method == "smc":  # tempered SMC: its own driver
        given = {"init": init is not None, "checkpoint": checkpoint is not None, "tempering": tempering is not None,
                 "chunk_size": chunk_size is not None, "metric": not (isinstance(metric, str) and metric == "auto")}
        for name in (n for n, g in given.items() if g):
            raise ValueError(f"{name}: given with method='smc', which starts from the prior and "
                             "chooses its own moves; expected the default")
        return sample_smc(problem, y, key=key, num_chains=num_chains, num_samples=num_samples,
                          block_size=block_size, mesh=mesh, batch_axis=batch_axis, progress=progress,
                          **options)
    num_chains = check_positive_int("num_chains", num_chains)
    num_warmup = check_positive_int("num_warmup", num_warmup)
    num_samples = check_positive_int("num_samples", num_samples, minimum=4)
    known = sorted([*_samplers.METHODS, *(a for a, (m, _) in metric_lib.ALIASES.items() if m in _samplers.METHODS)])
    if not callable(method) and method not in known:
        raise ValueError(f"method: got {method!r}, expected one of {known} "
                         "or a callable (logdensity_fn) -> blackjax.SamplingAlgorithm")
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not math.isfinite(jitter) \
            or jitter < 0:
        raise ValueError(f"jitter: got {jitter!r}, expected a finite number >= 0")
    name = method if isinstance(method, str) else getattr(method, "__name__", "custom")
    betas, ladder_rounds = tempering_lib.settings(tempering, adapt_ladder)
    swap_every = check_positive_int("swap_every", swap_every)
    tempering_lib.check_method(metric_lib.ALIASES.get(method, (method,))[0] if isinstance(method, str) else method,
                               betas)
    _hashable(options)  # before metric resolution reads any option's value
    metric, options = metric_lib.resolve(problem, method, metric, options, _flat(problem)[0])
    if isinstance(method, str) and method in metric_lib.ALIASES:
        method = metric_lib.ALIASES[method][0]
    opts = _check_options(method, options)
    if is_traced and metric == "laplace" and _flat(problem)[0] > metric_lib.DENSE_MAX:
        raise ValueError(f"metric: got 'laplace' (asked or chosen by 'auto') for {_flat(problem)[0]} unknowns "
                         f"under a JAX transformation, expected 'prior' or 'diagonal': above "
                         f"metric.DENSE_MAX = {metric_lib.DENSE_MAX} its low-rank rank search runs on the host")
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key) if isinstance(key, jax.Array) else False
    if isinstance(key, jax.Array) and key.ndim > (0 if typed else 1):
        raise ValueError(f"key: got a batch of keys of shape {key.shape}, expected one key")
    if chunk_size is not None:
        chunk_size = check_positive_int("chunk_size", chunk_size)
    if block_size is not None:
        block_size = check_positive_int("block_size", block_size)
    batch_axis = check_mesh(mesh, batch_axis)
    if not isinstance(diagnose, (bool, np.bool_)):
        raise TypeError(f"diagnose: got {diagnose!r} ({type(diagnose).__name__}), expected True or False")
    if checkpoint is None and checkpoint_every is not None:
        raise ValueError("checkpoint_every: given without checkpoint, expected a checkpoint path too")
    if checkpoint is not None:
        if not isinstance(checkpoint, (str, os.PathLike)):
            raise TypeError(f"checkpoint: got {type(checkpoint).__name__}, expected a file path")
        every = max(1, num_samples // 10) if checkpoint_every is None else checkpoint_every
        checkpoint_every = min(check_positive_int("checkpoint_every", every), num_samples)

    y, batch = traced.check_y(problem, y)  # problem.check_y unless y is traced: shapes only
    mode, init_u, start_modes = chain_starts(problem, y, batch, init, float(jitter), num_chains, key, is_traced)
    if start_modes is None and init_u is not None and init_u.ndim == len(batch) + 2:
        jitter = 0.0  # the user's starts, one per chain (init shaped (num_chains, *event)): used as given
    if init is None and metric in metric_lib.WHITENING:
        mode = "metric"
    if method == "mclmc" and _flat(problem)[0] < 2:
        raise ValueError("method: 'mclmc' needs at least 2 unknowns; use 'nuts' for a scalar θ")
    impl = str(jax.random.key_impl(key)) if typed else None
    settings = _Settings(method, num_chains, num_warmup, num_samples, mode, float(jitter), opts,
                         chunk_size, impl, checkpoint_every or 0, metric, betas, swap_every, ladder_rounds)

    # One lane per observation: its data, its key and its start.
    size = math.prod(batch)
    keys = jax.random.split(key, size) if batch else jnp.expand_dims(key, 0)
    verbose = bool(progress) and not callable(progress)
    if metric == "laplace":
        announce(progress, f"sampling: mode search for the Laplace metric ({size} observation{'s' * (size > 1)})")
    modes = laplace_modes(problem, y, batch, mesh, batch_axis, progress if verbose else None) if metric == "laplace" else None
    lanes = (y.reshape(size, *y.shape[len(batch):]), jax.random.key_data(keys) if typed else keys,
             None if init_u is None else init_u.reshape(size, *init_u.shape[len(batch):]), modes)
    multiple = chunk_size or 1
    if is_traced:  # all lanes in one block: the core once (through the host's own path)
        block_size = -(-size // multiple) * multiple
    if block_size is None:
        d = _flat(problem)[0]
        draws_bytes = num_chains * num_samples * (d * y.dtype.itemsize + 21)
        if metric in metric_lib.WHITENING:  # each lane's factor L: dense, or d x r low-rank
            cols = d if d <= metric_lib.DENSE_MAX else (modes[-1].shape[-1] if modes is not None else 0) + 1
            draws_bytes += 2 * d * cols * y.dtype.itemsize
        n_dev = 1 if mesh is None else mesh.shape[batch_axis]
        block_size = default_block_size(tree_bytes(jax.tree.map(lambda a: a[:1], lanes)) + draws_bytes,
                                        multiple * n_dev)
    run: dict[str, Any] = dict(num_lanes=size, block_size=block_size, multiple=multiple, mesh=mesh, axis=batch_axis)
    if checkpoint is None and verbose and -(-size // block_size) == 1:
        draws, stats, ok = _sample_in_chunks(problem, settings, lanes, run, progress)
    elif checkpoint is None:
        if verbose:
            announce(progress, f"sampling: {size} observations in blocks of {block_size} (warmup and draws "
                               "per block, compiling first)")
        draws, stats, ok = stream(_sample_lanes, (problem, settings), lanes, progress=progress,
                                  label="posteriors", **run)
    else:
        from .checkpoint import run_checkpointed

        (draws, stats), ok = run_checkpointed(problem, settings, lanes, checkpoint, run, progress)

    def unflatten(a):
        return a.reshape(*batch, *a.shape[1:])

    swaps = None
    if betas is not None:  # replica exchange: each lane's ladder and swap rates
        ok, swaps = ok
    draws, stats, ok, swaps = jax.tree.map(unflatten, (draws, stats, ok, swaps))
    if is_traced:  # diagnostics and status flags in JAX; no messages, no warnings
        bad = ~jnp.all(jnp.isfinite(y.reshape(*batch, -1)), axis=-1)  # refused on the host
        if init_u is not None:
            bad |= ~jnp.all(jnp.isfinite(init_u.reshape(*batch, -1)), axis=-1)
        diag = draw_diagnostics(draws, stats.is_divergent, bool(diagnose))
        return Posterior(samples=draws, stats=stats, max_rhat=jnp.where(bad, jnp.inf, diag["max_rhat"]),
                         min_ess=jnp.where(bad, 0.0, diag["min_ess"]), num_divergent=diag["num_divergent"],
                         status=traced.sampling_status(diag, num_chains, ~ok, bad), warnings=(), method=name,
                         num_warmup=num_warmup, modes=None, tempering=swaps)
    if diagnose:
        announce(progress, "sampling: diagnostics (R-hat, bulk ESS)")
    diag, status, messages = diagnose_draws(draws, stats.is_divergent, num_chains, bool(diagnose),
                                            metric_fallback=~ok)
    warn(messages)
    return Posterior(samples=draws, stats=stats, max_rhat=diag["max_rhat"], min_ess=diag["min_ess"],
                     num_divergent=diag["num_divergent"], status=status, warnings=tuple(messages),
                     method=name, num_warmup=num_warmup, modes=start_modes, tempering=swaps)
