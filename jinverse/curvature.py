"""The one curvature: Hessian and Gauss-Newton actions of the one log-density.

Every solver that needs second-order information takes it from here, so the curvature is
written once (DESIGN.md, "Where it goes next"): Newton-CG preconditions with it, `ji.laplace`
returns it, the samplers use it as their metric. All functions are pure and per lane: one
observation ``y``, one flat unconstrained point ``u`` (θ's leaves raveled in the prior's
unconstrained space, as `ji.sample` and `ji.laplace` use), safe under ``jit``/``vmap``/``grad``.

The objective is ``-problem.log_density(u, y, jacobian=...)``:
- `hvp`: its exact Hessian times a vector (forward-over-reverse autodiff, one extra
  gradient's cost, no matrix formed).
- `ggn_vp`: the generalised Gauss-Newton approximation ``Jᵀ H_ℓ J v + H_prior v``, ``J`` the
  Jacobian of the forward model in ``u``, ``H_ℓ`` the Hessian of ``-log p(y | prediction)`` in
  the prediction (positive semi-definite for Gaussian, Poisson, Bernoulli and Categorical
  likelihoods), ``H_prior`` the exact Hessian of the prior part. It drops the forward model's
  second derivatives, so it is positive semi-definite wherever ``H_ℓ`` and ``H_prior`` are, and
  exact for a linear forward model.
- `dense`: the matrix of such an action, column by column (for modest d).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float

from . import likelihoods
from .problem import InverseProblem

#: Likelihoods whose negative log-likelihood is convex in the prediction, so the generalised
#: Gauss-Newton matrix is positive semi-definite.
CONVEX_LIKELIHOODS = (likelihoods.Gaussian, likelihoods.Poisson, likelihoods.Bernoulli,
                      likelihoods.Categorical)


def flatten(problem: InverseProblem) -> tuple[int, Callable]:
    """``(d, unravel)``: the number of unknowns and the map from a flat vector to a θ-shaped
    pytree (in the unconstrained space)."""
    flat, unravel = ravel_pytree(problem.prior.center())
    return flat.size, unravel


def objective(problem: InverseProblem, y, *, jacobian: bool = True) -> Callable:
    """``x -> -log p(u = unravel(x) | y)``, the negative one log-density on flat vectors."""
    _, unravel = flatten(problem)
    return lambda x: -problem.log_density(unravel(x), y, jacobian=jacobian)


def hvp(problem: InverseProblem, y, u: Float[Array, " d"], v: Float[Array, " d"], *,
        jacobian: bool = True) -> Float[Array, " d"]:
    """The exact Hessian of the negative log-density at ``u`` times ``v`` (forward-over-reverse)."""
    f = objective(problem, y, jacobian=jacobian)
    return jax.jvp(jax.grad(f), (u,), (v,))[1]


def _prior_part(problem: InverseProblem, jacobian: bool) -> Callable:
    _, unravel = flatten(problem)

    def neg(x):
        w = unravel(x)
        lp = problem.prior.log_prob(problem.prior.from_unconstrained(w))
        return -(lp + problem.prior.log_det_jacobian(w)) if jacobian else -lp

    return neg


def ggn_vp(problem: InverseProblem, y, u: Float[Array, " d"], v: Float[Array, " d"], *,
           jacobian: bool = True) -> Float[Array, " d"]:
    """Generalised Gauss-Newton curvature of the negative log-density at ``u`` times ``v``.

    ``Jᵀ H_ℓ J v`` for the likelihood (one forward-mode and one reverse-mode pass through the
    forward model) plus the exact Hessian-vector product of the prior part.
    """
    prior = _prior_part(problem, jacobian)
    return misfit_ggn_vp(problem, y, u, v) + jax.jvp(jax.grad(prior), (u,), (v,))[1]


def misfit_ggn_vp(problem: InverseProblem, y, u: Float[Array, " d"], v: Float[Array, " d"]) -> Float[Array, " d"]:
    """The likelihood part of `ggn_vp` alone: ``Jᵀ H_ℓ J v``, the Gauss-Newton Hessian of the
    data misfit ``-log p(y | forward(θ(u)))`` (the prior-preconditioned low-rank Laplace
    approximation of `jinverse.lowrank` takes its dominant eigenpairs)."""
    _, unravel = flatten(problem)
    pred_fn = lambda x: problem.forward(problem.prior.from_unconstrained(unravel(x)))  # noqa: E731
    pred, jv = jax.jvp(pred_fn, (u,), (v,))
    nll = lambda p: -problem.likelihood.log_prob(y, p)  # noqa: E731
    h_jv = jax.jvp(jax.grad(nll), (pred,), (jv,))[1]
    _, vjp = jax.vjp(pred_fn, u)
    return vjp(h_jv)[0]


def misfit_hvp(problem: InverseProblem, y, u: Float[Array, " d"], v: Float[Array, " d"]) -> Float[Array, " d"]:
    """The exact Hessian of the data misfit ``-log p(y | forward(θ(u)))`` alone times ``v``
    (`hvp` without the prior part)."""
    _, unravel = flatten(problem)
    misfit = lambda x: -problem.log_likelihood(problem.prior.from_unconstrained(unravel(x)), y)  # noqa: E731
    return jax.jvp(jax.grad(misfit), (u,), (v,))[1]


def has_ggn(problem: InverseProblem) -> bool:
    """Whether the generalised Gauss-Newton matrix of ``problem`` is positive semi-definite
    for every θ: a likelihood convex in the prediction (see `CONVEX_LIKELIHOODS`)."""
    return isinstance(problem.likelihood, CONVEX_LIKELIHOODS)


def dense(matvec: Callable, d: int, dtype) -> Float[Array, "d d"]:
    """The ``d x d`` matrix of the linear map ``matvec`` (symmetrised), one column per unit vector."""
    cols = jax.vmap(matvec)(jnp.eye(d, dtype=dtype))  # rows are matvec(e_i) = column i
    return 0.5 * (cols + cols.T)


def value_grad_vp(problem: InverseProblem, y, u: Float[Array, " d"], v: Float[Array, " d"], *,
                  ggn: bool = False, jacobian: bool = True):
    """``(f(u), ∇f(u), C(u) v)`` in one pass, ``f`` the negative log-density and ``C`` its exact
    Hessian (``ggn=False``, as `hvp`) or its generalised Gauss-Newton matrix (as `ggn_vp`).

    The objective, gradient and curvature action share one linearisation of the forward model
    (one forward pass, two transposed products), so a Newton-CG iteration and a line-search
    trial cost the same and a vmapped state machine can do either in one loop step.
    """
    if not ggn:
        (val, grad), (_, cv) = jax.jvp(jax.value_and_grad(objective(problem, y, jacobian=jacobian)),
                                       (u,), (v,))
        return val, grad, cv
    _, unravel = flatten(problem)
    pred_fn = lambda x: problem.forward(problem.prior.from_unconstrained(unravel(x)))  # noqa: E731
    pred, lin = jax.linearize(pred_fn, u)
    nll = lambda p: -problem.likelihood.log_prob(y, p)  # noqa: E731
    (val_l, g_l), (_, h_jv) = jax.jvp(jax.value_and_grad(nll), (pred,), (lin(v),))
    transpose = jax.linear_transpose(lin, u)
    grad_l, cv_l = jax.vmap(lambda c: transpose(c)[0])(jnp.stack([g_l, h_jv]))
    (val_p, g_p), (_, cv_p) = jax.jvp(jax.value_and_grad(_prior_part(problem, jacobian)), (u,), (v,))
    return val_l + val_p, grad_l + g_p, cv_l + cv_p


def ggn_dense(problem: InverseProblem, y, u: Float[Array, " d"], *,
              jacobian: bool = True) -> Float[Array, "d d"]:
    """The ``d x d`` generalised Gauss-Newton matrix ``Jᵀ H_ℓ J + H_prior`` at ``u`` (the matrix
    of `ggn_vp`), from the forward Jacobian ``J`` (``d`` forward-mode passes) rather than ``d``
    matrix-vector products: the cheap form for few unknowns."""
    _, unravel = flatten(problem)
    pred_fn = lambda x: problem.forward(problem.prior.from_unconstrained(unravel(x)))  # noqa: E731
    pred = pred_fn(u)
    jac = jax.jacfwd(lambda x: jnp.ravel(pred_fn(x)))(u)  # (m, d)
    nll = lambda p: -problem.likelihood.log_prob(y, p.reshape(pred.shape))  # noqa: E731
    h_j = jax.vmap(lambda col: jax.jvp(jax.grad(nll), (jnp.ravel(pred),), (col,))[1],
                   in_axes=1, out_axes=1)(jac)
    g = jac.T @ h_j + jax.hessian(_prior_part(problem, jacobian))(u)
    return 0.5 * (g + g.T)
