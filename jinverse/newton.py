"""Second-order MAP steps, and the optimiser ``solve_map(optimizer="auto")`` picks by structure.

Both step kinds plug into the one MAP loop of `jinverse.map` as step objects (the protocol of
`jinverse.steps`): a step evaluates one new point and says whether it completed an optimiser
iteration, so vmapped lanes do the same work per loop step and nothing nests (the flat-loop
design of `_quasi_newton`).

- `DampedNewton`: Levenberg-Marquardt-damped Newton with a dense ``d x d`` curvature (the
  exact Hessian, or the Gauss-Newton matrix of a least-squares problem). For few unknowns.
- `NewtonCG`: inexact Newton-CG for many unknowns (Nocedal & Wright, Algorithm 7.1;
  hIPPYlib's solver). Matrix-free curvature products from `jinverse.curvature` (the generalised
  Gauss-Newton matrix when the likelihood has one, else the exact Hessian), truncated
  preconditioned CG with Eisenstat-Walker forcing and an exit on negative curvature,
  preconditioned by the prior's covariance (the inverse prior Hessian of a Gaussian or GMRF
  prior), globalised by an Armijo backtracking line search. One loop step is *either* one CG
  iteration *or* one line-search trial, evaluated by the same fused call (objective, gradient
  and one curvature product), so a lane that needs fewer CG iterations than its neighbour moves
  on to its line search and next Newton step instead of waiting in a nested CG loop.
- `choose`: the optimiser ``"auto"`` runs (see its docstring for the rules and the measurements
  behind the thresholds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import optax.tree_utils as otu

from . import curvature, dense
from .bijectors import Identity
from .likelihoods import Gaussian as GaussianLikelihood
from .priors import Gaussian as GaussianPrior
from .problem import InverseProblem
from .steps import AbstractStep, Point, Stepped, Target

#: ``"auto"`` uses flat-loop BFGS up to this many unknowns for least-squares problems (measured:
#: cheaper per solve than Gauss-Newton on benchmarks/map_batch.py's 8-unknown MLP).
BFGS_MAX = 16
#: ``"auto"`` forms the dense ``d x d`` curvature up to this many unknowns, Newton-CG above.
#: Measured on deconvolution1d (warm, 200-1000 observations, 2 CPU cores): Gauss-Newton 0.50 s
#: against Newton-CG 1.28 s at d = 128, 0.68 s against 0.85 s at d = 256, 2.77 s against 1.97 s
#: at d = 512 (the ``d`` curvature products and the O(d³) factorisation overtake CG's ~160
#: products per Newton step between 256 and 512).
DENSE_NEWTON_MAX = 256
C1 = 1e-4  # Armijo sufficient-decrease constant
MAX_TRIALS = 40  # backtracking trials per Newton step before the run counts as stalled
ETA_MAX = 0.5  # largest forcing term (CG relative residual) of Eisenstat-Walker's choice 2


def least_squares(problem: InverseProblem) -> bool:
    """Gaussian likelihood and Gaussian prior: ``-log p = 0.5 ||r(θ)||² + const``."""
    return isinstance(problem.likelihood, GaussianLikelihood) and isinstance(problem.prior, GaussianPrior)


def choose(problem: InverseProblem) -> str:
    """The optimiser ``solve_map(optimizer="auto")`` runs for ``problem``, from its structure.

    With ``d`` unknowns:
    - ``d <= DENSE_NEWTON_MAX``: Gaussian likelihood and Gaussian prior: ``"gauss-newton"``
      (Levenberg-Marquardt on the whitened residuals; for a linear forward model its first
      step is the exact posterior mean); any other: ``"newton"`` (exact dense Hessian,
      Levenberg-Marquardt damping: robust on the non-Gaussian and multimodal posteriors, e.g.
      ``slcp``, where BFGS stalls). Below ``BFGS_MAX`` unknowns a least-squares problem keeps
      flat-loop ``"bfgs"``, cheaper there per solve.
    - larger ``d``: ``"newton-cg"`` (matrix-free; the dense curvature costs ``d`` products
      per step and O(d²) memory per lane).
    """
    d, _ = curvature.flatten(problem)
    if d <= DENSE_NEWTON_MAX:
        if least_squares(problem):
            return "bfgs" if d <= BFGS_MAX else "gauss-newton"
        return "newton"
    return "newton-cg"


# -- dense damped Newton / Gauss-Newton --------------------------------------------------------

def gauss_newton_curvature(problem: InverseProblem, y, jacobian: bool = False) -> Callable:
    """``curvature(flat_u, unravel)``: the dense generalised Gauss-Newton matrix of the one log-density
    (`curvature.ggn_dense`; for a Gaussian likelihood and prior ``JᵀJ`` of the whitened
    residuals)."""
    return lambda flat_u, unravel: curvature.ggn_dense(problem, y, flat_u, jacobian=jacobian)


def exact_curvature(objective: Callable) -> Callable:
    """``curvature(flat_u, unravel)``: the dense exact Hessian of ``objective`` (a function of θ's pytree)."""

    def curvature_at(flat_u, unravel):
        return jax.hessian(lambda x: objective(unravel(x)))(flat_u)

    return curvature_at


class DampedNewton(AbstractStep):
    """Levenberg-Marquardt-damped Newton, a step of the MAP loop (`jinverse.steps`):
    ``optimizer="newton"`` (the dense exact Hessian, `exact_curvature`) or ``"gauss-newton"``
    (``gauss_newton=True``: the Gauss-Newton matrix, `gauss_newton_curvature`).

    One ``step`` is one trial: it solves ``(H + mu I) d = -g``; the trial is accepted when it
    lowers the objective (then ``mu`` shrinks), else rejected and ``mu`` grows. Every lane does
    the same work per step, so vmapped lanes stay in step. Stalled when ``mu`` exceeds 1e16 (no
    descent direction found). ``mu`` (the state) is relative to the largest diagonal entry of
    the Hessian.
    """

    gauss_newton: bool = False

    def init(self, target: Target, point: Point) -> jax.Array:
        return jnp.asarray(1e-4, jax.flatten_util.ravel_pytree(point.u)[0].dtype)

    def step(self, target: Target, point: Point, mu: jax.Array) -> Stepped:
        objective = target.objective
        curvature_at = (gauss_newton_curvature(target.problem, target.y, target.jacobian) if self.gauss_newton
                        else exact_curvature(objective))
        u, v, g = point
        flat_u, unravel = jax.flatten_util.ravel_pytree(u)
        flat_g, _ = jax.flatten_util.ravel_pytree(g)
        hess = curvature_at(flat_u, unravel)
        scale = jnp.maximum(jnp.max(jnp.abs(jnp.diagonal(hess))), 1e-12)
        eye = jnp.eye(flat_u.size, dtype=flat_u.dtype)
        # refused at trace time above 2**31 bytes, where jaxlib's LAPACK crashes (jinverse.dense)
        d = dense.solve(hess + mu * scale * eye, -flat_g, what="ji.solve_map(optimizer='newton' or "
                        "'gauss-newton')", alternative="optimizer='newton-cg'")
        trial = unravel(flat_u + d)
        v_new, g_new = jax.value_and_grad(objective)(trial)
        # Accept a decrease; at the rounding floor of the objective, accept a smaller gradient.
        floor = 8 * jnp.finfo(flat_u.dtype).eps * (1.0 + jnp.abs(v))
        decreased = (v_new < v) | ((v_new <= v + floor) & (otu.tree_norm(g_new) < otu.tree_norm(g)))
        ok = decreased & jnp.isfinite(v_new) & (jnp.dot(d, flat_g) < 0)
        keep = lambda new, old: jnp.where(ok, new, old)  # noqa: E731
        u_out = jax.tree.map(keep, trial, u)
        mu_new = jnp.where(ok, jnp.maximum(mu / 10, 1e-15), mu * 4)
        return Stepped(Point(u_out, keep(v_new, v), jax.tree.map(keep, g_new, g)), mu_new, mu_new > 1e16, True)


# -- matrix-free Newton-CG ---------------------------------------------------------------------

def prior_preconditioner(problem: InverseProblem) -> Callable:
    """``r -> Γ r`` on flat vectors, ``Γ`` the prior covariance (the inverse of the prior
    Hessian) of a Gaussian or GMRF prior on an unbounded θ: applied through the prior's own
    square root, ``Γ = S Sᵀ`` (`cov_sqrt`). For any other prior the identity."""
    prior = problem.prior
    if isinstance(prior.bijector, Identity) and callable(getattr(prior, "cov_sqrt", None)):
        shape = tuple(prior.event_shape)

        def apply(r):
            z = prior.cov_sqrt(r.reshape(shape), transpose=True)
            return jnp.ravel(prior.cov_sqrt(z)).astype(r.dtype)

        return apply
    return lambda r: r


class NewtonCGState(NamedTuple):
    x: jax.Array  # the Newton direction so far (the CG iterate)
    r: jax.Array  # CG residual, -g - C x
    z: jax.Array  # preconditioned residual, Γ r
    p: jax.Array  # CG search direction
    rz: jax.Array  # rᵀz
    eta: jax.Array  # forcing term: CG stops at ||r|| <= eta ||g||
    cg_iters: jax.Array  # CG iterations in this Newton step
    searching: jax.Array  # False: CG iterations; True: line-search trials along d
    d: jax.Array  # the Newton direction being searched along
    slope: jax.Array  # gᵀd < 0
    alpha: jax.Array  # the step length tried next
    trials: jax.Array  # trials in this line search
    products: jax.Array  # curvature products used by CG so far (statistics)


class NewtonCG(AbstractStep):
    """Inexact Newton-CG, a step of the MAP loop (`jinverse.steps`; see the module docstring):
    ``optimizer="newton-cg"``. The objective is the target's; CG never solves past half of the
    loop's gradient tolerance ``target.tol``.

    Attributes:
        ggn: curvature products from the generalised Gauss-Newton matrix (positive
            semi-definite) instead of the exact Hessian; default (None) `curvature.has_ggn`.
        max_cg: CG iterations per Newton step (default ``min(d, 500)``); the direction reached
            then is still a descent direction.

    ``step`` evaluates the objective, gradient and one curvature product at one point: at the
    current point for a CG iteration, at ``u + alpha d`` for a line-search trial; ``advanced``
    is True when a trial was accepted.
    """

    ggn: bool | None = None
    max_cg: int | None = None

    def init(self, target: Target, point: Point) -> NewtonCGState:
        precond = prior_preconditioner(target.problem)
        flat_g, _ = jax.flatten_util.ravel_pytree(point.grad)
        r = -flat_g
        z = precond(r)
        one = jnp.ones((), flat_g.dtype)
        zero_i = jnp.zeros((), jnp.int32)
        return NewtonCGState(jnp.zeros_like(r), r, z, z, jnp.dot(r, z), ETA_MAX * one, zero_i,
                             jnp.zeros((), bool), jnp.zeros_like(r), -one, one, zero_i, zero_i)

    def step(self, target: Target, at: Point, s: NewtonCGState) -> Stepped:
        problem, y, jacobian, tol = target
        d_total, _ = curvature.flatten(problem)
        ggn = curvature.has_ggn(problem) if self.ggn is None else bool(self.ggn)
        max_cg = min(d_total, 500) if self.max_cg is None else int(self.max_cg)
        precond = prior_preconditioner(problem)

        def fused(x, v):
            return curvature.value_grad_vp(problem, y, x, v, ggn=ggn, jacobian=jacobian)

        u, v, g = at
        flat_u, unravel = jax.flatten_util.ravel_pytree(u)
        flat_g, _ = jax.flatten_util.ravel_pytree(g)
        eps = jnp.finfo(flat_u.dtype).eps
        point = jnp.where(s.searching, flat_u + s.alpha * s.d, flat_u)
        v_t, g_t, cv = fused(point, jnp.where(s.searching, s.d, s.p))
        gnorm = jnp.linalg.norm(flat_g)

        # One preconditioned CG iteration on C x = -g (used where not searching).
        pcp = jnp.dot(s.p, cv)
        negative = ~(pcp > 0)  # negative or zero curvature (or NaN): stop CG here
        a = s.rz / jnp.where(negative, 1.0, pcp)
        x1, r1 = s.x + a * s.p, s.r - a * cv
        z1 = precond(r1)
        rz1 = jnp.dot(r1, z1)
        p1 = z1 + rz1 / jnp.where(s.rz > 0, s.rz, 1.0) * s.p
        exit_cg = (negative | (jnp.linalg.norm(r1) <= s.eta * gnorm) | (s.cg_iters + 1 >= max_cg))
        # On negative curvature: the direction so far, or the preconditioned gradient at first.
        direction = jnp.where(negative, jnp.where(s.cg_iters == 0, s.p, s.x), x1)
        slope = jnp.dot(flat_g, direction)
        p0 = precond(-flat_g)
        bad = ~(slope < 0)  # rounding spoilt the direction: preconditioned steepest descent
        direction = jnp.where(bad, p0, direction)
        slope = jnp.where(bad, jnp.dot(flat_g, p0), slope)

        # One Armijo backtracking trial (used where searching).
        flat_gt, _ = jax.flatten_util.ravel_pytree(g_t)
        gt_norm = jnp.linalg.norm(flat_gt)
        finite = jnp.isfinite(v_t) & jnp.isfinite(gt_norm)
        floor = 8 * eps * (1.0 + jnp.abs(v))  # at the rounding floor: judged by the gradient
        decrease = finite & ((v_t <= v + C1 * s.alpha * s.slope)
                             | ((v_t <= v + floor) & (gt_norm < gnorm)))
        accept = s.searching & decrease
        quad = -s.slope * s.alpha**2 / (2 * (v_t - v - s.slope * s.alpha))
        alpha_bt = jnp.where(finite, jnp.clip(quad, 0.1 * s.alpha, 0.5 * s.alpha), 0.1 * s.alpha)
        trials = s.trials + 1
        tiny = alpha_bt * jnp.linalg.norm(s.d) <= eps * (1.0 + jnp.linalg.norm(flat_u))
        stalled = s.searching & ~accept & ((trials >= MAX_TRIALS) | tiny)

        # Accepted: Eisenstat-Walker forcing (choice 2, with its safeguard) for the next solve,
        # never tighter than the stopping test needs, and CG restarted at the new point.
        eta = 0.9 * (gt_norm / gnorm) ** 2
        eta = jnp.where(0.9 * s.eta**2 > 0.1, jnp.maximum(eta, 0.9 * s.eta**2), eta)
        eta = jnp.minimum(jnp.maximum(eta, 0.5 * tol * (1.0 + jnp.abs(v_t)) / gt_norm), ETA_MAX)
        r_new = -flat_gt
        z_new = precond(r_new)

        cg = ~s.searching
        go = cg & exit_cg  # CG done: start the line search
        pick = lambda c, new, old: jnp.where(c, new, old)  # noqa: E731
        state = NewtonCGState(
            x=pick(accept, jnp.zeros_like(s.x), pick(cg, x1, s.x)),
            r=pick(accept, r_new, pick(cg, r1, s.r)),
            z=pick(accept, z_new, pick(cg, z1, s.z)),
            p=pick(accept, z_new, pick(cg, p1, s.p)),
            rz=pick(accept, jnp.dot(r_new, z_new), pick(cg, rz1, s.rz)),
            eta=pick(accept, eta, s.eta),
            cg_iters=jnp.where(accept, 0, s.cg_iters + cg),
            searching=(s.searching & ~accept) | go,
            d=pick(go, direction, s.d),
            slope=pick(go, slope, s.slope),
            alpha=pick(go, jnp.ones_like(s.alpha), pick(s.searching, alpha_bt, s.alpha)),
            trials=jnp.where(go | accept, 0, trials * s.searching),
            products=s.products + cg,
        )
        state = jax.tree.map(lambda new, old: new.astype(old.dtype), state, s)
        u_out = unravel(pick(accept, point, flat_u))
        g_out = jax.tree.map(lambda new, old: pick(accept, new, old), unravel(flat_gt), g)
        return Stepped(Point(u_out, pick(accept, v_t, v), g_out), state, stalled, accept)
