"""BFGS and L-BFGS as a flat loop: one objective evaluation per step, line search included.

`optax.lbfgs` runs its zoom line search as a ``while_loop`` inside the optimiser step; under
``vmap`` both loops run to the slowest lane, and the inner loop's bookkeeping costs more than the
tiny objectives of a batch of small inversions. Here a step is one trial point: the line search
(weak Wolfe conditions by bracketing, Lewis & Overton 2013) and the quasi-Newton update are a
small state machine advanced once per evaluation, so every lane of a ``vmap`` does the same work
per step and nothing nests. A pair ``(s, y)`` updates the inverse-Hessian approximation only when
``sᵀy > 0``, which the curvature condition guarantees, so the directions stay descent directions.

Two representations of the approximation H (Nocedal & Wright, ch. 6-7):
- `Dense`: BFGS with H stored (n × n per lane); one mat-vec per direction. For few unknowns this
  is the cheapest per step and needs the fewest steps.
- `Limited`: L-BFGS with the last ``m`` pairs; the two-loop recursion (Algorithm 7.4), unrolled
  over the memory, newest pair first. Memory O(m n): for many unknowns.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp

from .steps import AbstractStep, Point, Stepped, Target

C1, C2 = 1e-4, 0.9  # sufficient decrease and (weak) curvature constants
MAX_TRIALS = 40  # trial points per line search before the run counts as stalled
DENSE_MAX = 64  # the default optimiser keeps a dense H up to this many unknowns


class Limited(NamedTuple):
    """L-BFGS memory: the last m pairs, newest first."""

    s_mem: jax.Array  # (m, n) recent steps
    y_mem: jax.Array  # (m, n) recent gradient changes
    rho: jax.Array  # (m,) 1 / (sᵀy); 0 for empty slots
    gamma: jax.Array  # scale of the initial inverse Hessian

    @staticmethod
    def start(flat_g, memory_size):
        zeros = jnp.zeros((memory_size, flat_g.size), flat_g.dtype)
        # first step: steepest descent, at most unit length (as optax's scale_by_lbfgs)
        gamma = jnp.minimum(1.0, 1.0 / jnp.linalg.norm(flat_g)).astype(flat_g.dtype)
        return Limited(zeros, zeros, jnp.zeros(memory_size, flat_g.dtype), gamma)

    def update(self, sk, yk, sy, store):
        push = lambda mem, new: jnp.where(store, jnp.concatenate([new[None], mem[:-1]]), mem)  # noqa: E731
        gamma = jnp.where(store, sy / jnp.dot(yk, yk), self.gamma)
        return Limited(push(self.s_mem, sk), push(self.y_mem, yk),
                       push(self.rho, 1.0 / jnp.where(store, sy, 1.0)), gamma)

    def direction(self, g):
        """``-H g`` by the two-loop recursion."""
        q = g
        alphas = []
        for i in range(self.rho.shape[0]):
            a = self.rho[i] * jnp.dot(self.s_mem[i], q)
            q = q - a * self.y_mem[i]
            alphas.append(a)
        r = self.gamma * q
        for i in reversed(range(self.rho.shape[0])):
            b = self.rho[i] * jnp.dot(self.y_mem[i], r)
            r = r + (alphas[i] - b) * self.s_mem[i]
        return -r

    def scale(self):
        return self.gamma


class Dense(NamedTuple):
    """BFGS: the inverse-Hessian approximation itself."""

    h: jax.Array  # (n, n)
    pairs: jax.Array  # pairs taken in (not `count`: that would shadow tuple.count)

    @staticmethod
    def start(flat_g, memory_size=None):
        gamma = jnp.minimum(1.0, 1.0 / jnp.linalg.norm(flat_g)).astype(flat_g.dtype)
        return Dense(gamma * jnp.eye(flat_g.size, dtype=flat_g.dtype), jnp.zeros((), jnp.int32))

    def update(self, sk, yk, sy, store):
        # before the first update H0 = (sᵀy / yᵀy) I (Nocedal & Wright eq. 6.20)
        eye = jnp.eye(sk.size, dtype=sk.dtype)
        h = jnp.where(self.pairs == 0, sy / jnp.dot(yk, yk) * eye, self.h)
        rho = 1.0 / jnp.where(store, sy, 1.0)
        hy = h @ yk
        # (I - rho s yᵀ) H (I - rho y sᵀ) + rho s sᵀ, expanded (H symmetric)
        new = (h - rho * (jnp.outer(sk, hy) + jnp.outer(hy, sk))
               + (rho * rho * jnp.dot(yk, hy) + rho) * jnp.outer(sk, sk))
        return Dense(jnp.where(store, new, self.h), self.pairs + store)

    def direction(self, g):
        return -(self.h @ g)

    def scale(self):
        return jnp.trace(self.h) / self.h.shape[0]


class LineSearchState(NamedTuple):
    hessian: Dense | Limited  # the inverse-Hessian approximation
    d: jax.Array  # search direction (flat), a descent direction
    slope: jax.Array  # gᵀd at the current point, < 0
    alpha: jax.Array  # the step length tried next
    lo: jax.Array  # bracket: largest step known to satisfy sufficient decrease
    hi: jax.Array  # bracket: smallest step known to violate it (inf: none yet)
    trials: jax.Array  # trials in the current line search


class QuasiNewton(AbstractStep):
    """BFGS (``memory_size=None``: dense H) or L-BFGS (the last ``memory_size`` pairs), a step
    of the MAP loop (`jinverse.steps`): ``optimizer="bfgs"`` / ``"lbfgs"``.

    One ``step`` evaluates one trial point of the line search; ``advanced`` is True when the
    trial was accepted (one optimiser iteration done) and the point moves to it."""

    memory_size: int | None = 10

    def init(self, target: Target, point: Point) -> LineSearchState:
        rep = Dense if self.memory_size is None else Limited
        flat_g, _ = jax.flatten_util.ravel_pytree(point.grad)
        hessian = rep.start(flat_g, self.memory_size)
        d = hessian.direction(flat_g)
        one = jnp.ones((), flat_g.dtype)
        return LineSearchState(hessian, d, jnp.dot(flat_g, d), one, 0 * one, jnp.inf * one,
                               jnp.zeros((), jnp.int32))

    def step(self, target: Target, point: Point, s: LineSearchState) -> Stepped:
        objective = target.objective
        u, v, g = point
        flat_u, unravel = jax.flatten_util.ravel_pytree(u)
        flat_g, _ = jax.flatten_util.ravel_pytree(g)
        trial = flat_u + s.alpha * s.d
        v_t, g_t = jax.value_and_grad(objective)(unravel(trial))
        flat_gt, _ = jax.flatten_util.ravel_pytree(g_t)
        dphi = jnp.dot(flat_gt, s.d)
        finite = jnp.isfinite(v_t) & jnp.all(jnp.isfinite(flat_gt))
        # At the rounding floor of the objective (no decrease representable) a trial is judged
        # by its gradient: approximate Wolfe (Hager & Zhang 2005), or a smaller gradient.
        floor = 8 * jnp.finfo(flat_u.dtype).eps * (1.0 + jnp.abs(v))
        flat = finite & (v_t <= v + floor)
        decrease = finite & ((v_t <= v + C1 * s.alpha * s.slope)
                             | (flat & (dphi <= (2 * C1 - 1) * s.slope)))
        curvature = dphi >= C2 * s.slope
        accept = (decrease & curvature) | (flat & (jnp.dot(flat_gt, flat_gt) < jnp.dot(flat_g, flat_g)))

        # Not accepted: shrink the bracket and pick the next trial.
        hi = jnp.where(decrease, s.hi, s.alpha)
        lo = jnp.where(decrease & ~curvature, s.alpha, s.lo)
        # minimiser of the quadratic through phi(0), phi'(0), phi(alpha), kept inside the bracket
        quad = -s.slope * s.alpha**2 / (2 * (v_t - v - s.slope * s.alpha))
        shrink = jnp.where(finite & (s.lo == 0), jnp.clip(quad, 0.1 * s.alpha, 0.5 * s.alpha),
                           jnp.where(s.lo == 0, 0.1 * s.alpha, 0.5 * (lo + hi)))
        grow = jnp.where(jnp.isinf(hi), 4 * s.alpha, 0.5 * (lo + hi))
        alpha = jnp.where(decrease, grow, shrink)
        trials = s.trials + 1
        tiny = alpha * jnp.linalg.norm(s.d) <= jnp.finfo(flat_u.dtype).eps * (1.0 + jnp.linalg.norm(flat_u))
        stalled = ~accept & ((trials >= MAX_TRIALS) | tiny)

        # Accepted: store the pair (if it has positive curvature) and take the next direction.
        sk, yk = trial - flat_u, flat_gt - flat_g
        sy = jnp.dot(sk, yk)
        store = accept & (sy > jnp.finfo(flat_u.dtype).eps * jnp.linalg.norm(sk) * jnp.linalg.norm(yk))
        hessian = s.hessian.update(sk, yk, sy, store)
        d_new = hessian.direction(flat_gt)
        slope_new = jnp.dot(flat_gt, d_new)
        bad = ~(slope_new < 0)  # rounding broke the approximation: steepest descent this once
        d_new = jnp.where(bad, -hessian.scale() * flat_gt, d_new)
        slope_new = jnp.where(bad, -hessian.scale() * jnp.dot(flat_gt, flat_gt), slope_new)

        one = jnp.ones_like(s.alpha)
        pick = lambda new, old: jnp.where(accept, new, old)  # noqa: E731
        state = LineSearchState(
            hessian, pick(d_new, s.d), pick(slope_new, s.slope),
            pick(one, alpha), pick(0 * one, lo), pick(jnp.inf * one, hi),
            jnp.where(accept, 0, trials))
        state = jax.tree.map(lambda new, old: new.astype(old.dtype), state, s)  # the objective's
        # dtype may be wider than θ's (e.g. float64 constants in a float32 problem)
        u_out = unravel(pick(trial, flat_u))
        g_out = jax.tree.map(pick, g_t, g)
        return Stepped(Point(u_out, pick(v_t, v), g_out), state, stalled, accept)
