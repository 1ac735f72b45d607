"""The Laplace evidence log p(y), and empirical Bayes: prior and noise scales fitted to the data.

The evidence of an observation is ``p(y) = ∫ p(y, θ) dθ``. In the prior's unconstrained space
``u`` (where `ji.laplace` expands: the density of ``u`` carries the log-Jacobian), Laplace's
method gives

    log p(y) ≈ log p(y, u*) + d/2 log 2π - 1/2 log det H,    H = -∇²_u log p(y, u) at u*,

with ``u*`` the mode of ``problem.log_density(u, y, jacobian=True)`` (the one log-density, whose
prior and likelihood are normalised). It is exact for a linear forward model with Gaussian prior
and noise. It is differentiable in ``y`` and in the problem's floating-point leaves: ``u*``
through the implicit function theorem (`jinverse.implicit`, via `ji.solve_map`), ``H`` by
automatic differentiation. `empirical_bayes` maximises its sum over the observations in the
chosen scales (type-II maximum likelihood) with an optax optimiser, in log space.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Bool, Float, Int, PyTree

from . import dense, traced
from ._checks import check_positive_int
from .map import MAPResult, MAPWarning, Status, solve_map, status_report
from .problem import InverseProblem
from .status import approximation_status

_LOG_2PI = math.log(2 * math.pi)
_DENSE_COPIES = 3  # d x d arrays alive per lane: the Hessian, its factor, a temporary
# one default object, so that repeated calls reuse the compiled loop (optimizers are static)
_LBFGS = optax.lbfgs()


def log_evidence_at(problem: InverseProblem, y: Float[Array, "*event"], theta: PyTree
                    ) -> tuple[Float[Array, ""], Bool[Array, ""]]:
    """The Laplace log-evidence of one observation, expanded at ``theta`` (its mode), and
    whether the negative Hessian there is positive definite (else the value is NaN).

    Pure and per lane: jit, vmap and grad safe. ``theta`` should be the mode of the density of
    ``u`` (`ji.solve_map(..., jacobian=True)`); elsewhere this is the value of the Gaussian
    integral of the second-order expansion, not an approximation of ``log p(y)``.
    """
    u, unravel = ravel_pytree(problem.to_unconstrained(theta))

    def neg(x):
        return -problem.log_density(unravel(x), y, jacobian=True)

    chol = dense.cholesky(jax.hessian(neg)(u))
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    return -neg(u) + 0.5 * u.size * _LOG_2PI - 0.5 * logdet, jnp.all(jnp.isfinite(chol))


@eqx.filter_jit
def _evidence_lanes(problem, y, theta):
    return jax.vmap(lambda yy, tt: log_evidence_at(problem, yy, tt))(y, theta)


class Evidence(eqx.Module):
    """The Laplace log-evidence of each observation (fields carry the batch axes of ``y``).

    Attributes:
        log_evidence: ``log p(y)`` by Laplace's method, ``(*batch,)``; NaN where the negative
            Hessian at the mode is not positive definite.
        mode: the `ji.MAPResult` of the mode search (``jacobian=True``).
        ok: True where the mode search converged and the Hessian is positive definite.
        status: (a property) `jinverse.status.MAPStatus` codes, ``OK`` exactly where ``ok``;
            elsewhere the mode search's code, or ``NOT_POSITIVE_DEFINITE``.
    """

    log_evidence: Float[Array, "*batch"]
    mode: MAPResult
    ok: Bool[Array, "*batch"]

    @property
    def status(self) -> Int[Array, "*batch"]:
        return approximation_status(self.mode.status, self.ok)


def laplace_evidence(problem: InverseProblem, y: Float[Array, "*batch *event"], *, warn: bool = True,
                     **map_options) -> Evidence:
    """The Laplace approximation of ``log p(y)`` for every observation in ``y``.

    Args:
        problem: the `ji.InverseProblem`; its prior and likelihood must be normalised densities
            (all of ``ji.priors`` and ``ji.likelihoods`` are; an improper GMRF, periodic or
            Neumann, is normalised over its non-constant part by the pseudo-determinant, the
            usual convention for fitting its precision).
        y: observations ``(*batch, *event)``.
        warn: True (default): a `ji.MAPWarning` where the mode search did not converge or the
            Hessian is not positive definite (not under a transformation).
        **map_options: passed to `ji.solve_map` (``optimizer``, ``max_steps``, ``tol``...).

    Returns:
        An `Evidence`. Under ``jax.grad`` its ``log_evidence`` is differentiable with respect to
        ``y`` and the problem's floating-point leaves (the mode through the implicit function
        theorem).

    Example::

        ev = ji.laplace_evidence(problem, y)
        jax.grad(lambda s: ji.laplace_evidence(eqx.tree_at(lambda p: p.likelihood.std, problem, s),
                                               y).log_evidence.sum())(0.1)
    """
    mode = solve_map(problem, y, jacobian=True, warn=False, **map_options)
    batch = mode.status.shape
    d = ravel_pytree(problem.prior.center())[0].size
    size = math.prod(batch)
    dense.check_dense(d, mode.log_posterior.dtype, lanes=size, copies=_DENSE_COPIES, what="ji.laplace_evidence")
    y = jnp.asarray(y, mode.log_posterior.dtype)
    flat = lambda a: a.reshape(size, *a.shape[len(batch):])  # noqa: E731
    value, pd = _evidence_lanes(problem, flat(y), jax.tree.map(flat, mode.theta))
    ok = (pd & mode.converged.reshape(-1)).reshape(batch)
    if warn and not traced.is_traced(ok):
        _warn(mode.status, (mode.converged.reshape(-1) & ~pd).reshape(batch))
    return Evidence(log_evidence=value.reshape(batch), mode=mode, ok=ok)


def _warn(status, not_pd) -> None:
    msgs = [f"mode search: {m}"] if (m := status_report(status)) else []
    n = int(np.count_nonzero(np.asarray(not_pd)))
    if n:
        msgs.append(f"{n} of {np.size(not_pd)} observations: the negative Hessian at the mode is not positive "
                    "definite (no Laplace evidence there)")
    if msgs:
        warnings.warn("Laplace evidence: " + "; ".join(msgs), MAPWarning, stacklevel=3)


# -- empirical Bayes ----------------------------------------------------------------------------


class EmpiricalBayesResult(eqx.Module):
    """The type-II maximum-likelihood fit of `empirical_bayes`.

    Attributes:
        problem: the problem with the fitted scales in place.
        params: the fitted values of the selected leaves (each its starting value times the
            fitted factor), in the order ``params`` selects them.
        log_evidence: the total Laplace log-evidence (summed over the observations) at the start
            and after each optimiser step, ``(max_steps + 1,)``; NaN after the last step taken.
        num_steps: optimiser steps taken.
        status: a `ji.Status` code: ``CONVERGED`` (gradient norm below ``tol``), ``MAX_STEPS``,
            ``NONFINITE`` (the evidence or its gradient became NaN/inf) or ``STALLED`` (the
            line search could not increase the evidence).
        converged: ``status == CONVERGED``; ``ok`` is the same (as on every result).
    """

    problem: InverseProblem
    params: tuple
    log_evidence: Float[Array, " steps"]
    num_steps: Int[Array, ""]
    status: Int[Array, ""]
    converged: Bool[Array, ""]

    @property
    def ok(self) -> Bool[Array, ""]:
        return self.converged


def _selected(problem, params: Callable, name: str = "params") -> tuple:
    try:
        leaves = params(problem)
    except Exception as exc:
        raise TypeError(f"{name}: got a callable that fails on the problem ({exc}); expected e.g. "
                        "lambda p: (p.prior.std, p.likelihood.std)") from exc
    return tuple(leaves) if isinstance(leaves, (tuple, list)) else (leaves,)


def _with(problem, params, values):
    one = not isinstance(params(problem), (tuple, list))
    return eqx.tree_at(params, problem, values[0] if one else tuple(values))


def empirical_bayes(
    problem: InverseProblem,
    y: Float[Array, "*batch *event"],
    params: Callable[[InverseProblem], Any],
    *,
    optimizer: optax.GradientTransformation | None = None,
    max_steps: int = 100,
    tol: float = 1e-6,
    map_options: dict | None = None,
) -> EmpiricalBayesResult:
    """Fit scales of ``problem`` (prior std, noise std, a GMRF's precision...) by maximising the
    Laplace evidence of all observations (type-II maximum likelihood).

    Each selected leaf is multiplied by one positive factor ``exp(z)``, fitted in log space (so
    a scale stays positive and a step is relative, and a leaf stored per entry, such as a
    Gaussian prior's ``std`` vector or a covariance factor, keeps its shape profile). The
    factors are found by gradient: each evaluation solves for the mode of every observation,
    and the gradient goes through the mode by the implicit function theorem. The whole loop
    runs in one compiled program.

    Args:
        problem: the `ji.InverseProblem` holding the starting values.
        y: observations ``(*batch, *event)``, assumed independent given the scales.
        params: selects the leaves to fit, as ``equinox.tree_at``'s ``where``, e.g.
            ``lambda p: (p.prior.std, p.likelihood.std)``; each a float array, scaled as a whole.
        optimizer: an optax optimiser over the log-factors (default ``optax.lbfgs()``, with its
            zoom line search; first-order ones such as ``optax.adam(0.05)`` also work).
        max_steps: optimiser steps at most.
        tol: converged when the gradient norm of the mean negative log-evidence per observation
            (in the log-factors) is at most ``tol``.
        map_options: keyword arguments for the mode searches (`ji.solve_map`).

    Returns:
        An `EmpiricalBayesResult` with the fitted problem and the evidence trace.

    Example::

        fit = ji.empirical_bayes(problem, y, lambda p: (p.prior.std, p.likelihood.std))
        fit.params, fit.log_evidence[fit.num_steps]
    """
    if not isinstance(problem, InverseProblem):
        raise TypeError(f"problem: got {type(problem).__name__}, expected a jinverse.InverseProblem")
    if not callable(params):
        raise TypeError(f"params: got {type(params).__name__}, expected a callable selecting leaves of the "
                        "problem, e.g. lambda p: (p.prior.std, p.likelihood.std)")
    y, batch = traced.check_y(problem, y)
    start = _selected(problem, params)
    for i, leaf in enumerate(start):
        if not (isinstance(leaf, (jax.Array, np.ndarray, float)) and jnp.issubdtype(jnp.result_type(leaf), jnp.floating)):
            raise TypeError(f"params: selection {i} is {type(leaf).__name__}, expected a float array (a scale)")
        if not traced.is_traced(leaf) and not (np.all(np.isfinite(leaf)) and np.any(np.asarray(leaf) != 0)):
            raise ValueError(f"params: selection {i} is {np.asarray(leaf)!r}, expected finite scales, not all zero")
    max_steps = check_positive_int("max_steps", max_steps)
    if not (isinstance(tol, (int, float)) and tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tol: got {tol!r}, expected a positive number")
    if optimizer is None:
        optimizer = _LBFGS
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer: got {type(optimizer).__name__}, expected an optax GradientTransformation")
    map_options = dict(map_options or {})
    for bad in ("jacobian", "warn"):
        if bad in map_options:
            raise ValueError(f"map_options: got {bad!r}, which empirical_bayes sets itself")
    start = tuple(jnp.asarray(leaf, y.dtype) for leaf in start)
    z0 = tuple(jnp.zeros((), y.dtype) for _ in start)
    z, trace, steps, status = _fit(problem, y, start, z0, params, optax.with_extra_args_support(optimizer),
                                   max_steps, float(tol), map_options, math.prod(batch))
    values = tuple(s * jnp.exp(a) for s, a in zip(start, z))
    return EmpiricalBayesResult(problem=_with(problem, params, values), params=values, log_evidence=trace,
                                num_steps=steps, status=status, converged=status == Status.CONVERGED)


@eqx.filter_jit
def _fit(problem, y, start, z0, params, optimizer, max_steps, tol, map_options, n_obs):
    """The empirical-Bayes loop: one optax update of the log-scales per step (with L-BFGS, its
    line search evaluates the evidence and its gradient at the trial points)."""

    def loss(z):
        scales = tuple(s * jnp.exp(a) for s, a in zip(start, z))
        ev = laplace_evidence(_with(problem, params, scales), y, warn=False, **map_options)
        return -jnp.mean(ev.log_evidence)

    # L-BFGS's line search leaves the value and gradient at the new point in its state
    cached = otu.tree_get(optimizer.init(z0), "value", default=None) is not None

    def cond(carry):
        _, _, v, g, k, stalled, _ = carry
        finite = jnp.isfinite(v) & jnp.isfinite(otu.tree_norm(g))
        return (k < max_steps) & finite & (otu.tree_norm(g) > tol) & ~stalled

    def body(carry):
        z, state, v, g, k, _, trace = carry
        updates, state = optimizer.update(g, state, z, value=v, grad=g, value_fn=loss)
        z_new = optax.apply_updates(z, updates)
        if cached:
            v_new, g_new = otu.tree_get(state, "value"), otu.tree_get(state, "grad")
        else:
            v_new, g_new = jax.value_and_grad(loss)(z_new)
        stalled = cached & ~(v_new < v)
        return z_new, state, v_new, g_new, k + 1, stalled, trace.at[k + 1].set(-v_new * n_obs)

    v0, g0 = jax.value_and_grad(loss)(z0)
    trace = jnp.full((max_steps + 1,), jnp.nan, v0.dtype).at[0].set(-v0 * n_obs)
    carry = (z0, optimizer.init(z0), v0, g0, jnp.zeros((), jnp.int32), jnp.zeros((), bool), trace)
    z, _, v, g, k, stalled, trace = jax.lax.while_loop(cond, body, carry)
    gnorm = otu.tree_norm(g)
    status = jnp.where(~(jnp.isfinite(v) & jnp.isfinite(gnorm)), Status.NONFINITE,
                       jnp.where(gnorm <= tol, Status.CONVERGED,
                                 jnp.where(stalled, Status.STALLED, Status.MAX_STEPS)))
    return z, trace, k, status.astype(jnp.int32)
