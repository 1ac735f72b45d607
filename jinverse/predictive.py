"""Predictive draws and per-draw maps: what `Posterior.posterior_predictive`, `Posterior.apply`,
`ji.prior_predictive` and `Posterior.to_arviz` compute.

Every function here works on draws shaped ``(*lead, *theta)`` (``lead`` the batch, chain and
draw axes of a posterior) and keeps ``lead``: each draw is pushed through a function of one θ,
vmapped over the leading axes flattened into one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._checks import check_key
from .likelihoods import ParametersInPrediction
from .problem import InverseProblem


class PriorPredictive(NamedTuple):
    """``n`` draws θ ~ p(θ) and, for each, one y ~ p(y | θ) (from `prior_predictive`)."""

    theta: PyTree[Float[Array, "n ..."]]
    y: Float[Array, "n ..."]


def map_draws(fn: Callable, draws: PyTree, num_lead: int) -> PyTree:
    """``fn`` (a function of one θ) on every draw of ``draws``, keeping the ``num_lead`` leading
    axes: leaves ``(*lead, *theta)`` in, leaves ``(*lead, *fn(θ))`` out."""
    leaves = jax.tree.leaves(draws)
    if not leaves:
        raise ValueError("draws: got an empty pytree, expected arrays shaped (*lead, *theta)")
    lead = tuple(np.shape(leaves[0])[:num_lead])
    n = math_prod(lead)
    flat = jax.tree.map(lambda a: jnp.reshape(a, (n, *jnp.shape(a)[num_lead:])), draws)
    out = jax.jit(jax.vmap(fn))(flat)
    return jax.tree.map(lambda a: jnp.reshape(a, (*lead, *jnp.shape(a)[1:])), out)


def math_prod(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def draw_keys(key: PRNGKeyArray, lead: tuple[int, ...]) -> PRNGKeyArray:
    """One key per draw, shaped ``lead``: the keys `simulate_draws` uses, so that a slice of them
    (one observation of a batch) simulates exactly that slice of the batch's draws."""
    check_key("key", key)
    return jnp.reshape(jax.random.split(key, math_prod(lead)), lead)


def simulate_with_keys(problem: InverseProblem, keys: PRNGKeyArray, draws: PyTree, num_lead: int) -> Array:
    """One y ~ p(y | θ) for every draw of ``draws`` (leading axes kept), draw i with ``keys[i]``."""
    return map_draws(lambda kt: problem.simulate(kt[0], kt[1]), (keys, draws), num_lead)


def simulate_draws(problem: InverseProblem, key: PRNGKeyArray, draws: PyTree, num_lead: int) -> Array:
    """One y ~ p(y | θ) for every draw of ``draws`` (leading axes kept), each with its own key."""
    lead = tuple(np.shape(jax.tree.leaves(draws)[0])[:num_lead])
    return simulate_with_keys(problem, draw_keys(key, lead), draws, num_lead)


def prior_predictive(problem: InverseProblem, key: PRNGKeyArray, n: int) -> PriorPredictive:
    """``n`` draws from the prior predictive: θ ~ p(θ), then y ~ p(y | θ).

    Returns a `PriorPredictive` with ``theta`` (leaves ``(n, *theta)``) and ``y`` (``(n, *y)``);
    pass it to ``Posterior.to_arviz(prior=...)`` for ArviZ's ``prior`` and ``prior_predictive``
    groups. Example: ``pp = ji.prior_predictive(problem, key, 500); pp.y.std(0)``.
    """
    if not isinstance(problem, InverseProblem):
        raise TypeError(f"problem: got {type(problem).__name__}, expected a ji.InverseProblem")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: got {n!r}, expected an integer >= 1")
    check_key("key", key)
    k_theta, k_y = jax.random.split(key)
    theta = problem.sample_prior(k_theta, (int(n),))
    return PriorPredictive(theta, simulate_draws(problem, k_y, theta, 1))


# -- pointwise log-likelihood (for LOO / WAIC) ------------------------------------------------
def _entry(a, axis: int, ndim: int, shape, i):
    """Entry ``i`` (flat index over ``shape``) of the ``ndim`` axes of ``a`` from ``axis``, kept as
    a length-1 axis so that the likelihood sums over one entry."""
    a = jnp.broadcast_to(a, (*a.shape[:axis], *shape, *a.shape[axis + ndim:]))
    a = jnp.reshape(a, (*a.shape[:axis], -1, *a.shape[axis + ndim:]))
    return jax.lax.dynamic_slice_in_dim(a, i, 1, axis)


def _per_entry_likelihood(lik, event, i):
    """``lik`` with each array parameter that varies over the observation's entries cut to entry
    ``i`` (scalars kept); a parameter of another shape (a covariance) has no per-entry value."""
    def cut(a):
        if not isinstance(a, (jax.Array, np.ndarray)) or np.ndim(a) == 0:
            return a
        if _broadcasts(np.shape(a), event):
            return _entry(jnp.asarray(a), 0, len(event), event, i)
        raise ValueError(f"log_likelihood: the likelihood {type(lik).__name__} has a parameter of shape "
                         f"{np.shape(a)} that does not split per entry of an observation of shape {event} "
                         "(e.g. a full covariance); pointwise log-likelihood needs independent entries")
    return jax.tree.map(cut, lik)


def _broadcasts(a, b) -> bool:
    try:
        return tuple(jnp.broadcast_shapes(a, b)) == tuple(b)
    except ValueError:
        return False


def pointwise_log_likelihood(problem: InverseProblem, theta, y) -> Float[Array, "*y"]:
    """log p(y_i | θ) for every entry i of one observation ``y`` (shape of ``y``), for a
    likelihood with independent entries (what `arviz.loo` needs as ``log_likelihood``).

    Each entry's term is the likelihood evaluated on that entry alone (its prediction and its
    per-entry parameters); `Posterior.to_arviz` checks that the terms sum to the whole
    log-likelihood, which fails loudly for a likelihood whose entries are not independent.
    """
    y = jnp.asarray(y)
    event, n = tuple(y.shape), math_prod(y.shape)
    lik, pred = problem.likelihood, jnp.asarray(problem.forward(theta))
    if isinstance(lik, ParametersInPrediction):  # rows: prediction, then the θ-parameters
        base, off = lik.base, 1
    else:
        base, off = lik, 0
    if tuple(pred.shape[off:off + len(event)]) != event and not _broadcasts(pred.shape[off:], event):
        raise ValueError(f"log_likelihood: forward returns shape {tuple(pred.shape)}, which does not split "
                         f"per entry of an observation of shape {event}")

    split = len(event) if tuple(pred.shape[off:off + len(event)]) == event else pred.ndim - off

    def one(i):
        p = _entry(pred, off, split, event, i)
        li = _per_entry_likelihood(base, event, i)
        if off:
            li = ParametersInPrediction(li, lik.names)
        return li.log_prob(_entry(y, 0, len(event), event, i), p)

    return jnp.reshape(jax.vmap(one)(jnp.arange(n)), event)
