"""Implicit differentiation of the MAP: derivatives of θ* by the implicit function theorem.

θ* maximises the one log-density over the unconstrained ``u`` for given ψ = (the problem's
floating-point leaves: prior and noise scales, a network's weights..., and the observation
``y``). At the optimum ``∇_u f(u*, ψ) = 0`` with ``f = -problem.log_density``, so

    u̇* = -H⁻¹ (∂²f/∂u∂ψ) ψ̇,    H = ∇²_u f(u*, ψ),

one linear solve with the Hessian of the one log-density instead of a derivative of the
optimiser's loop (which would be wrong before convergence, costly, and impossible in reverse
mode through a ``while_loop``). `mode` attaches this rule as a custom JVP to any per-lane MAP
solver: the rule is linear in the tangents and its solve is a `jax.lax.custom_linear_solve`, so
JAX transposes it for reverse mode (as optimistix's ``implicit_jvp``): ``jax.grad`` and
``jax.jacrev`` cost one solve with ``H`` per cotangent, ``jax.jacfwd`` one per tangent, and
derivatives of any order work (the rule calls `mode` again).

``H`` is the dense Hessian (LU solve) up to `DENSE_MAX` unknowns; above, it is applied
matrix-free (`jinverse.curvature`-style Hessian-vector products, forward over reverse) inside
conjugate gradients preconditioned by the prior covariance (`newton.prior_preconditioner`).
``ji.solve_map`` uses `mode` whenever its inputs are traced, so
``jax.grad(lambda y: ji.solve_map(problem, y).theta.sum())`` differentiates through it.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PyTree

from . import dense, newton
from .problem import InverseProblem

#: Up to this many unknowns the backward solve forms the dense Hessian (``d`` Hessian-vector
#: products and an LU factorisation); above, conjugate gradients (the MAP's own threshold).
DENSE_MAX = newton.DENSE_NEWTON_MAX
#: Relative residual of the conjugate-gradient solve (float64; float32 uses its square root).
CG_RTOL = 1e-10

_SOLVERS = ("auto", "dense", "cg")


def mode(solve: Callable, problem: InverseProblem, y: Float[Array, "*event"], u0: PyTree, *,
         jacobian: bool = False, linear_solver: str = "auto"):
    """``solve(problem, y, u0)`` with its MAP differentiable in ``(problem, y)`` by the implicit
    function theorem (pure, per lane: one observation, one start).

    Args:
        solve: the per-lane MAP solver, returning ``(theta, log_density, *aux)``: the optimum
            ``θ*`` (θ's own space), ``problem.log_density(u*, y, jacobian=jacobian)`` there,
            and anything else (steps, status...), whose derivatives are zero.
        problem, y: the problem and the observation; their floating-point leaves are the ψ
            that derivatives are taken with respect to.
        u0: the start (unconstrained); the optimum does not depend on it (zero derivative).
        jacobian: whether ``solve`` maximises the density of ``u`` with the log-Jacobian
            (as ``ji.solve_map(..., jacobian=True)``), which changes the stationarity condition.
        linear_solver: ``"auto"`` (dense up to `DENSE_MAX` unknowns, else CG), ``"dense"``
            or ``"cg"``.

    Returns:
        ``solve``'s outputs, unchanged; ``θ*`` has derivative ``-∂θ/∂u · H⁻¹ ∂²f/∂u∂ψ`` (plus
        the direct dependence of a bounded prior's bijector on ψ), the log-density its total
        derivative along ``θ*(ψ)``.

    Example::

        solve = lambda p, y, u0: (u_star, log_density, status)   # any per-lane MAP solver
        jax.jacrev(lambda y: implicit.mode(solve, problem, y, u0)[0])(y)
    """
    if linear_solver not in _SOLVERS:
        raise ValueError(f"linear_solver: got {linear_solver!r}, expected one of {_SOLVERS}")
    return _mode(problem, y, jax.lax.stop_gradient(u0), solve=solve, jacobian=bool(jacobian),
                 linear_solver=linear_solver)


@eqx.filter_custom_jvp
def _mode(problem, y, u0, *, solve, jacobian, linear_solver):
    return solve(problem, y, u0)


def _is_none(x) -> bool:
    return x is None


@_mode.def_jvp
def _mode_jvp(primals, tangents, *, solve, jacobian, linear_solver):
    problem, y, u0 = primals
    out = _mode(problem, y, u0, solve=solve, jacobian=jacobian, linear_solver=linear_solver)
    t_psi = tangents[:2]  # the start's tangent is ignored: θ* does not depend on it
    zero = jax.tree.map(lambda _: None, out[2:])
    if not jax.tree.leaves(t_psi):
        return out, (jax.tree.map(lambda _: None, out[0]), None, *zero)
    # the differentiated leaves of (problem, y), and the rest, held fixed
    diff = jax.tree.map(lambda t, a: None if t is None else a, t_psi, (problem, y), is_leaf=_is_none)
    rest = jax.tree.map(lambda t, a: a if t is None else None, t_psi, (problem, y), is_leaf=_is_none)
    x, unravel = ravel_pytree(problem.to_unconstrained(out[0]))

    def grad_u(z, d):
        p, yy = eqx.combine(d, rest)
        return jax.grad(lambda w: -p.log_density(unravel(w), yy, jacobian=jacobian))(z)

    _, mixed = jax.jvp(lambda d: grad_u(x, d), (diff,), (t_psi,))  # (∂²f/∂u∂ψ) ψ̇

    def hvp(v):
        return jax.jvp(lambda z: grad_u(z, diff), (x,), (v,))[1]

    u_dot = -jax.lax.custom_linear_solve(hvp, mixed, _solver(problem, x, grad_u, diff, linear_solver),
                                         symmetric=True)

    def theta_and_density(z, d):
        p, yy = eqx.combine(d, rest)
        w = unravel(z)
        return p.from_unconstrained(w), p.log_density(w, yy, jacobian=jacobian)

    _, (t_theta, t_lp) = jax.jvp(theta_and_density, (x, diff), (u_dot, t_psi))
    return out, (t_theta, t_lp, *zero)


def _solver(problem, x, grad_u, diff, linear_solver) -> Callable:
    """``solve(matvec, b) = H⁻¹ b``: dense LU of the Hessian, or preconditioned CG."""
    d = x.shape[0]
    if linear_solver == "dense" or (linear_solver == "auto" and d <= DENSE_MAX):
        hess = jax.jacfwd(lambda z: grad_u(z, diff))(x)
        hess = 0.5 * (hess + hess.T)
        return lambda _, b: dense.solve(hess, b, what="implicit differentiation of the MAP",
                                        alternative="linear_solver='cg' (matrix-free)")
    rtol = CG_RTOL if x.dtype == jnp.float64 else CG_RTOL**0.5
    precondition = newton.prior_preconditioner(problem)
    return lambda matvec, b: jax.scipy.sparse.linalg.cg(matvec, b, tol=rtol, atol=0.0, M=precondition)[0]
