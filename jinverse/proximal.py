"""Proximal gradient (FISTA) for non-smooth penalties: ``min_x f(x) + g(x)`` with ``f`` smooth
and ``g`` non-smooth with a computable proximal operator (L1, exact total variation).

The gradient step is an optax update (``optax.sgd`` with the step ``1/Lipschitz``); the prox of
``g`` follows, and FISTA's momentum (Beck & Teboulle 2009) with gradient-based adaptive restart
(O'Donoghue & Candès 2015) extrapolates. `map_estimate` applies it to an `InverseProblem`:
``f = -log_likelihood`` and ``g = -log_prior`` through the prior's ``prox`` (`TotalVariation`,
`SparseL1`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Bool, Float, Int

from ._batching import stream
from .status import MAPStatus, finite_status


class ProximalResult(NamedTuple):
    """``x`` (``(*batch, *shape)``), the final objective ``f + g``, steps taken and a flag.

    ``ok`` (= ``converged``) and ``status`` (`jinverse.status.MAPStatus`: ``OK``, ``MAX_STEPS``
    or ``NONFINITE``) as on every result; ``theta`` is ``x``."""

    x: Array
    objective: Float[Array, "*batch"]
    num_steps: Int[Array, "*batch"]
    converged: Bool[Array, "*batch"]

    @property
    def theta(self) -> Array:
        return self.x

    @property
    def ok(self) -> Bool[Array, "*batch"]:
        return self.converged

    @property
    def status(self) -> Int[Array, "*batch"]:
        finite = jnp.isfinite(self.objective) & (finite_status(self.x, jnp.ndim(self.objective)) == MAPStatus.OK)
        return jnp.where(~finite, int(MAPStatus.NONFINITE),
                         jnp.where(self.converged, int(MAPStatus.OK), int(MAPStatus.MAX_STEPS))).astype(jnp.int32)


def prox_analysis_l1(v, t, D: Callable, *, bound: float, isotropic: bool, num_iter: int = 100):
    """``argmin_x ½‖x - v‖² + t ‖D x‖₁`` (groups along the last axis of ``D x`` when ``isotropic``).

    Solved through the dual ``max_{‖p‖∞ ≤ t} -½‖v - Dᵀp‖²`` by fast projected gradient with step
    ``1/bound`` (``bound ≥ ‖D‖²``: 4 for 1-D differences, 8 for the 2-D gradient); ``Dᵀ`` is
    ``jax.linear_transpose`` of ``D``. Returns ``v - Dᵀ p``.
    """
    Dt = jax.linear_transpose(D, v)

    def project(p):
        if isotropic:
            norm = jnp.sqrt(jnp.sum(p * p, axis=-1, keepdims=True))
            return p * (t / jnp.maximum(norm, t))
        return jnp.clip(p, -t, t)

    # One step: ascend the dual at the extrapolated point q, project, then Nesterov momentum.
    def step(_, state):
        p, q, s = state
        (Dtq,) = Dt(q)
        p_new = project(q + D(v - Dtq) / bound)
        s_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * s * s))
        return p_new, p_new + ((s - 1.0) / s_new) * (p_new - p), s_new

    p0 = jnp.zeros_like(D(v))
    p, _, _ = jax.lax.fori_loop(0, num_iter, step, (p0, p0, jnp.ones((), v.dtype)))
    return v - Dt(p)[0]


def lipschitz(f: Callable, x0, *, num_iter: int = 50) -> Float[Array, ""]:
    """Largest eigenvalue of the Hessian of ``f`` at ``x0`` (power iteration on Hessian-vector
    products); the gradient's Lipschitz constant when ``f`` is quadratic."""
    def hvp(v):
        return jax.jvp(jax.grad(f), (x0,), (v,))[1]

    v = jax.random.normal(jax.random.key(0), x0.shape, x0.dtype)

    def body(_, v):
        w = hvp(v)
        return w / jnp.linalg.norm(w)

    v = jax.lax.fori_loop(0, num_iter, body, v / jnp.linalg.norm(v))
    return jnp.vdot(v, hvp(v))


def fista(f: Callable, g: Callable, prox: Callable, x0, *, step, max_steps: int = 1000,
          tol: float = 1e-8) -> ProximalResult:
    """FISTA for ``min_x f(x) + g(x)``: ``f`` smooth (gradient by autodiff), ``prox(v, step)``
    the proximal operator of ``step · g``. One problem (vmap it for a batch).

    Args:
        f, g: the smooth and non-smooth parts (``g`` only enters the reported objective).
        prox: ``prox(v, step) = argmin_x ½‖x - v‖² + step · g(x)``.
        x0: starting point.
        step: the gradient step, at most ``1/Lipschitz(∇f)`` (see `lipschitz`).
        max_steps, tol: stop when ``‖x_{k+1} - x_k‖ ≤ tol · max(1, ‖x_k‖)``.
    """
    opt = optax.sgd(step)

    class State(NamedTuple):
        x: Array
        z: Array
        t: Array
        opt_state: optax.OptState
        k: Array
        delta: Array

    def cond(s):
        return (s.k < max_steps) & (s.delta > tol * jnp.maximum(1.0, jnp.linalg.norm(s.x)))

    # One step: optax gradient update at the extrapolated point z, prox, then momentum (restarted
    # when the step points against the momentum).
    def body(s):
        updates, opt_state = opt.update(jax.grad(f)(s.z), s.opt_state, s.z)
        x_new = prox(optax.apply_updates(s.z, updates), step)
        restart = jnp.vdot(s.z - x_new, x_new - s.x) > 0
        t = jnp.where(restart, 1.0, s.t)
        t_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
        z = x_new + ((t - 1.0) / t_new) * (x_new - s.x)
        return State(x_new, z, t_new, opt_state, s.k + 1, jnp.linalg.norm(x_new - s.x))

    one = jnp.ones((), x0.dtype)
    init = State(x0, x0, one, opt.init(x0), jnp.zeros((), jnp.int32), jnp.full((), jnp.inf, x0.dtype))
    s = jax.lax.while_loop(cond, body, init)
    converged = s.delta <= tol * jnp.maximum(1.0, jnp.linalg.norm(s.x))
    return ProximalResult(s.x, f(s.x) + g(s.x), s.k, converged)


def _map_lanes(operand, Y):
    """One block of observations (a lane is one observation), through `_batching.stream`."""
    problem, x0, max_steps, tol = operand
    prior = problem.prior

    def one(y):
        f = lambda x: -problem.log_likelihood(x, y)  # noqa: E731
        g = lambda x: -prior.log_prob(x)  # noqa: E731
        step = 1.0 / (1.01 * lipschitz(f, x0))
        return fista(f, g, prior.prox, x0, step=step, max_steps=max_steps, tol=tol)

    return jax.vmap(one)(Y)


def map_estimate(problem, y, *, init=None, max_steps: int = 2000, tol: float = 1e-8,
                 block_size: int = 4096, progress=None) -> ProximalResult:
    """The MAP estimate of ``problem`` with a non-smooth prior (one with a ``prox`` method, e.g.
    `TotalVariation` or `SparseL1`) by FISTA, batched over the leading axes of ``y``.

    ``-log_likelihood`` is the smooth part (its step ``1/L`` from power iteration on Hessian-vector
    products at ``init``, exact for a linear forward with Gaussian noise); the prior enters only
    through ``prior.prox``, so TV and L1 are solved exactly, not smoothed. Observations stream
    through one compiled program ``block_size`` at a time (``progress`` as in `ji.solve_map`).
    """
    if not hasattr(problem.prior, "prox"):
        raise TypeError(f"problem.prior: got {type(problem.prior).__name__}, expected a prior with a "
                        "prox method (TotalVariation, SparseL1); use ji.solve_map for smooth priors")
    Y, batch = problem.check_y(y)
    x0 = problem.prior.center() if init is None else jnp.asarray(init, Y.dtype)
    Yf = Y.reshape(-1, *Y.shape[len(batch):])
    out = stream(_map_lanes, (problem, x0, max_steps, tol), Yf, num_lanes=Yf.shape[0],
                 block_size=block_size, progress=progress, label="FISTA")
    return jax.tree.map(lambda a: a.reshape(*batch, *a.shape[1:]), out)
