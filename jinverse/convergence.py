"""Convergence checks of a sampler's draws: R-hat, bulk ESS, divergences, separate modes.

R-hat and ESS are blackjax's rank-normalised estimators (`blackjax.diagnostics.rhat`,
`ess_bulk`, `ess_tail`; the same definitions as ArviZ's defaults), computed per parameter with
the batch axes kept (for `ji.sample`'s own checks of draws on the CPU, by a NumPy port of the
same steps, `jinverse._host_diagnostics`, which has nothing to compile). Their rank
normalisation sorts the pooled draws, which for long runs costs as much as the sampling:
``ji.sample(..., diagnose=False)`` skips it (status `Status.UNCHECKED`) and `Posterior.diagnose`
computes it afterwards, by the same `diagnose_draws` path. The flags and messages that follow
from these numbers are `jinverse.run_status`'s.
"""

from __future__ import annotations

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PyTree

from . import _host_diagnostics as host
from .problem import flat_leaves, flat_leaves_np
from .run_status import MODE_SEPARATION, SELF_RHAT_LIMIT, status_and_warnings


def _each_series(fn, x, chain_axis: int):
    """``fn`` (a blackjax diagnostic) on each parameter's ``(chains, draws)`` series of ``x``
    shaped ``(*batch, chains, draws, *theta)``, returning ``(*batch, *theta)``.

    The series are vmapped one by one rather than handed to ``fn`` whole: the rank
    normalisation then sorts along the minor axis, 2-3x faster on CPU than sorting the pooled
    draws of every parameter along the major one (4 x 10,000 draws x 128 parameters), with the
    same values.
    """
    batch, (c, d), theta = x.shape[:chain_axis], x.shape[chain_axis:chain_axis + 2], x.shape[chain_axis + 2:]
    series = jnp.moveaxis(x.reshape(*batch, c, d, -1), -1, 0).reshape(-1, c, d)
    out = jax.vmap(lambda one: fn(one, chain_axis=0, sample_axis=1))(series)
    return jnp.moveaxis(out.reshape(-1, *batch), 0, -1).reshape(*batch, *theta)


@functools.partial(jax.jit, static_argnames=("fn", "chain_axis"))
def per_parameter(x, fn, chain_axis):
    """``fn`` (a blackjax diagnostic) per parameter of draws ``x`` shaped ``(*batch, chains,
    draws, *theta)`` with the chain axis at ``chain_axis``: ``(*batch, *theta)``."""
    return _each_series(fn, x, chain_axis)


def _checks(xp, flat, divergent, diagnose: bool, series_stats) -> dict:
    """Worst R-hat, smallest bulk ESS, divergences and the separate-modes check of draws
    ``flat`` shaped ``(*batch, chains, draws, d)``, in ``xp`` (NumPy or ``jax.numpy``);
    ``series_stats(flat)`` gives each parameter's R-hat and bulk ESS ``(*batch, d)`` and each
    observation's worst R-hat of a chain against itself (its two halves as two chains).
    ``diagnose=False``: only the cheap checks (finite draws, divergences); R-hat and ESS NaN."""
    nb = flat.ndim - 3
    batch = flat.shape[:nb]
    finite = xp.all(xp.isfinite(flat), axis=(-3, -2, -1))
    out = {"num_divergent": xp.sum(divergent, axis=(-2, -1)), "finite": finite,
           "checked": xp.full(batch, diagnose)}
    if not diagnose:
        nan = xp.full(batch, xp.nan, flat.dtype)
        return {"max_rhat": nan, "min_ess": nan, **out}
    rhat, ess, self_rhat = series_stats(flat)
    max_rhat = xp.nanmax(rhat, axis=-1)
    # how far apart the chains' means are, in within-chain standard deviations (worst parameter)
    means, within = xp.mean(flat, axis=-2), xp.sqrt(xp.mean(xp.var(flat, axis=-2), axis=-2))
    spread = xp.max(means, axis=-2) - xp.min(means, axis=-2)
    separation = xp.max(xp.where(within > 0, spread / xp.where(within > 0, within, 1.0), 0.0), axis=-1)
    out["mode_separation"] = separation
    out["separate_modes"] = (finite & (max_rhat > SELF_RHAT_LIMIT) & (self_rhat <= SELF_RHAT_LIMIT)
                             & (separation > MODE_SEPARATION))
    return {"max_rhat": xp.where(finite, max_rhat, xp.inf),
            "min_ess": xp.where(finite, xp.nanmin(ess, axis=-1), 0.0), **out}


def _blackjax_stats(flat):
    """`_checks`'s ``series_stats`` in JAX: blackjax's `rhat` and `ess_bulk`."""
    import blackjax.diagnostics as bd  # (here: importing blackjax is not free, and only this path needs it)

    nb = flat.ndim - 3
    c, n, d = flat.shape[nb:]
    halves = flat[..., : 2 * (n // 2), :].reshape(*flat.shape[:nb], c, 2, n // 2, d)
    self_rhat = jnp.nanmax(_each_series(bd.rhat, halves, nb + 1), axis=(-2, -1))
    return _each_series(bd.rhat, flat, nb), _each_series(bd.ess_bulk, flat, nb), self_rhat


@functools.partial(jax.jit, static_argnames="diagnose")
def _diagnostics(flat: Float[Array, "*batch chains draws d"], divergent, diagnose: bool = True):
    """`_checks` in JAX with blackjax's estimators, compiled apart from the sampler so that
    every method with the same draw shapes shares it."""
    return _checks(jnp, flat, divergent, diagnose, _blackjax_stats)


def _on_host(arrays) -> bool:
    """Whether every array is concrete (no tracer) and held by CPU devices (NumPy arrays included)."""
    return all(not isinstance(a, jax.core.Tracer)
               and (not isinstance(a, jax.Array) or all(dev.platform == "cpu" for dev in a.devices()))
               for a in arrays)


def draw_diagnostics(samples: PyTree, divergent, diagnose: bool = True) -> dict:
    """Per observation, arrays shaped ``(*batch,)``: ``max_rhat``, ``min_ess``,
    ``num_divergent``, ``finite``, ``checked`` (and ``separate_modes``, ``mode_separation`` when
    ``diagnose``), for draws shaped ``(*batch, chains, draws, *theta_shape)``.

    Draws on the CPU outside a transformation are checked in NumPy (`jinverse._host_diagnostics`,
    nothing to compile); otherwise (under ``jit``/``vmap``, or on an accelerator) in JAX, with
    the batch axes flattened to one lane axis, as the sampler returns them, so every caller runs
    the same compiled `_diagnostics`. Both give the same values to rounding.
    """
    batch = tuple(divergent.shape[:-2])
    nb, size = len(batch), math.prod(batch)
    if _on_host([*jax.tree.leaves(samples), divergent]):
        draws = flat_leaves_np(samples, nb + 2)
        draws = draws.reshape(size, *draws.shape[nb:])
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: a constant or NaN series
            diag = _checks(np, draws, np.reshape(np.asarray(divergent), (size, *divergent.shape[nb:])),
                           diagnose, host.draw_stats)
        return {k: jnp.asarray(np.reshape(v, batch)) for k, v in diag.items()}
    flat = flat_leaves(samples, nb + 2)
    flat = flat.reshape(size, *flat.shape[nb:])
    diag = _diagnostics(flat, jnp.reshape(divergent, (size, *divergent.shape[nb:])), diagnose=diagnose)
    return jax.tree.map(lambda a: a.reshape(batch), diag)


def diagnose_draws(samples: PyTree, divergent, num_chains: int, diagnose: bool = True,
                   metric_fallback=False):
    """``(diag, status, messages)`` for draws shaped ``(*batch, chains, draws, *theta_shape)``;
    ``metric_fallback`` per observation (see `status_and_warnings`).

    The one path of `ji.sample` and `Posterior.diagnose`: `draw_diagnostics`, then the host's
    `status_and_warnings`.
    """
    batch = tuple(divergent.shape[:-2])
    diag = draw_diagnostics(samples, divergent, diagnose)
    diag["metric_fallback"] = np.broadcast_to(np.asarray(metric_fallback, bool), batch)
    status, messages = status_and_warnings(diag, num_chains)
    return diag, status, messages
