"""Batched MAP estimation: maximise the one log-posterior with an optax optimiser.

`solve_map` validates its inputs on the host, flattens the batch (and the starts) into one axis
and runs `_solve_one` — the one MAP loop — over it with ``jax.lax.map(..., batch_size=chunk)``:
each chunk is a ``vmap`` of the loop, so a lane only waits for the slowest lane of its own chunk
(see the performance notes in DESIGN.md). Large batches go through the same compiled program in
blocks of fixed size, so memory stays bounded and no new size recompiles.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu
from jax.sharding import Mesh
from jaxtyping import Array, Bool, Float, Int, PyTree

from . import implicit, traced
from ._batching import check_mesh, default_block_size, stream, tree_bytes
from ._checks import check_key, check_positive_int
from ._quasi_newton import QuasiNewton
from .newton import DampedNewton, NewtonCG, choose, least_squares
from .problem import InverseProblem, flat_leaves_np
from .status import MAPStatus as Status  # (the name this module always had: ji.Status)
from .steps import AbstractStep, OptaxStep, Point, Target

# What to try, per status: the advice of `status_report` (and so of `MAPWarning`).
_STATUS_ADVICE = {
    Status.MAX_STEPS: "for max_steps, raise max_steps, or for an ill-conditioned problem use "
                      "optimizer='newton' (or 'gauss-newton' for a Gaussian likelihood and prior)",
    Status.NONFINITE: "for non-finite values, check that the forward model and the log-density are finite at "
                      "the start (the prior's center, or prior draws with num_starts > 1) and around it, "
                      "or pass init= a point where they are",
    Status.STALLED: "for a stall, check that the log-density is smooth with a correct gradient (no "
                    "round/argmax/clip in the forward model), rescale θ, loosen tol or try optimizer='newton'",
}


class MAPWarning(UserWarning):
    """Raised by `solve_map` (and `ji.laplace`) when some elements did not converge: counts per
    `Status`, the first few indices, and what to try. Silence it with ``warn=False``."""


def status_report(status, noun: str = "observation", *, show: int = 5) -> str:
    """One paragraph on the elements of ``status`` (`Status` codes, any shape) that did not
    converge: how many per status, the first ``show`` indices of each, and what to try; ``""``
    when all converged. The text of `MAPWarning`, for drivers and applications that report it.

    Example: ``"3 of 10 observations did not converge: 2 stopped at max_steps without converging
    (rows 1, 5), 1 non-finite objective or gradient (row 4). To try: ..."``
    """
    codes = np.asarray(status)
    bad = codes != Status.CONVERGED
    n_bad = int(np.count_nonzero(bad))
    if n_bad == 0:
        return ""
    kinds = [Status(int(c)) for c in np.unique(codes[bad])]
    if codes.ndim == 0:
        head = f"the {noun} did not converge: {kinds[0].describe()}"
    else:
        parts = []
        for kind in kinds:
            where = np.argwhere(codes == kind)
            if codes.ndim == 1:
                idx = [str(int(i)) for i in where[:show, 0]]
                label = "row" if len(where) == 1 else "rows"
            else:
                idx = [str(tuple(int(i) for i in w)) for w in where[:show]]
                label = "element" if len(where) == 1 else "elements"
            more = ", ..." if len(where) > show else ""
            parts.append(f"{len(where)} {kind.describe()} ({label} {', '.join(idx)}{more})")
        head = f"{n_bad} of {codes.size} {noun}s did not converge: " + ", ".join(parts)
    tips = [_STATUS_ADVICE[k] for k in kinds if k in _STATUS_ADVICE]
    return head + (". To try: " + "; ".join(tips) + "." if tips else ".")


class MAPResult(eqx.Module):
    """The MAP estimate for each batch element (all fields carry the batch axes of ``y``).

    Attributes:
        theta: the estimate, ``(*batch, *theta_shape)``, in θ's own (constrained) space.
        log_posterior: the unnormalised log-posterior at ``theta``.
        grad_norm: the gradient norm of the objective (in the unconstrained space) at the end.
        num_steps: optimiser steps taken.
        ok: True where the status is `Status.CONVERGED` (``== 0``, as on every result);
            ``converged`` is the same mask under its older name.
        status: a `Status` (`jinverse.status.MAPStatus`) code per element.
        starts: with ``num_starts > 1``, the result of every start, with an extra axis after the
            batch axes (``(*batch, num_starts, ...)``); None otherwise.
    """

    theta: PyTree
    log_posterior: Float[Array, "*batch"]
    grad_norm: Float[Array, "*batch"]
    num_steps: Int[Array, "*batch"]
    ok: Bool[Array, "*batch"]
    status: Int[Array, "*batch"]
    starts: MAPResult | None = None

    def __init__(self, theta, log_posterior, grad_norm, num_steps, ok=None, status=None, starts=None, *,
                 converged=None):
        if (ok is None) == (converged is None) or status is None:
            raise TypeError("MAPResult: expected theta, log_posterior, grad_norm, num_steps, ok (or its "
                            "older name converged) and status")
        self.theta, self.log_posterior, self.grad_norm, self.num_steps = theta, log_posterior, grad_norm, num_steps
        self.ok = converged if ok is None else ok
        self.status, self.starts = status, starts

    @property
    def converged(self) -> Bool[Array, "*batch"]:
        """``ok`` under its older name: True where the status is `Status.CONVERGED`."""
        return self.ok

    def messages(self) -> np.ndarray:
        """A human-readable reason per batch element."""
        codes = np.asarray(self.status)
        return np.vectorize(lambda c: Status(int(c)).describe(), otypes=[object])(codes)

    def distinct(self, index: tuple[int, ...] = (), *, atol: float = 1e-3) -> list[PyTree]:
        """The distinct converged solutions among the starts of batch element ``index``.

        Many-to-one forward models have several: each start that converged is kept unless it is
        within ``atol`` (max-abs, flattened θ) of one already kept; best log-posterior first.
        """
        batch = np.shape(self.status)
        try:  # JAX clamps an index that is out of range: check it on the host first
            one = np.ndim(np.empty(batch)[index]) == 0
        except IndexError:
            one = None
        if not one:
            raise IndexError(f"index: got {index!r}, expected the index of one element of the batch "
                             f"shape {batch}")
        if self.starts is None:
            return [jax.tree.map(lambda a: a[index], self.theta)]
        s = self.starts
        lp = np.asarray(s.log_posterior[index])
        ok = np.asarray(s.ok[index])
        flat = flat_leaves_np(jax.tree.map(lambda a: a[index], s.theta), 1)  # (starts, d)
        kept: list[int] = []
        for j in np.argsort(-lp):
            if ok[j] and all(np.max(np.abs(flat[j] - flat[k])) > atol for k in kept):
                kept.append(int(j))
        return [jax.tree.map(lambda a: a[index][j], s.theta) for j in kept]


#: The built-in MAP steps by name (``solve_map(optimizer=name)``): step objects of the protocol
#: in `jinverse.steps`. A user's own `steps.AbstractStep` is passed as ``optimizer=`` directly.
STEPS: dict[str, AbstractStep] = {
    "bfgs": QuasiNewton(memory_size=None),
    "lbfgs": QuasiNewton(memory_size=10),
    "newton": DampedNewton(),
    "gauss-newton": DampedNewton(gauss_newton=True),
    "newton-cg": NewtonCG(),
}


def as_step(optimizer) -> AbstractStep:
    """The step object of ``optimizer``: a name of `STEPS`, an optax ``GradientTransformation``
    (`steps.OptaxStep`) or a step object itself."""
    if isinstance(optimizer, str):
        return STEPS[optimizer]
    if isinstance(optimizer, optax.GradientTransformation):
        return OptaxStep(optax.with_extra_args_support(optimizer))
    return optimizer


class _Settings(NamedTuple):
    optimizer: Any  # a name of STEPS, an optax GradientTransformation or a steps.AbstractStep
    max_steps: int
    tol: float
    chunk_size: int
    jacobian: bool = False  # maximise the density of u (log-Jacobian included) instead of θ's


def _solve_one(problem: InverseProblem, y, u0, settings: _Settings):
    """The MAP loop for one observation and one start, in the unconstrained space.

    Each loop step calls the optimiser's ``step`` (the protocol of `jinverse.steps`): it
    evaluates one new point and returns it (objective and gradient there), its state, and
    whether it completed an optimiser iteration (counted against max_steps):
    `_quasi_newton.QuasiNewton` takes one trial of (L-)BFGS's line search (the line search and
    the quasi-Newton update in the same flat loop); `steps.OptaxStep` one optax update, with any
    line search inside it; `newton.DampedNewton` one damped-Newton trial; `newton.NewtonCG` one
    CG iteration or one line-search trial of Newton-CG. The loop stops when the gradient is
    small, the objective is non-finite, it stops decreasing, or at max_steps.
    """
    step = as_step(settings.optimizer)
    target = Target(problem, y, settings.jacobian, settings.tol)
    v0, g0 = jax.value_and_grad(target.objective)(u0)

    def small(p: Point):
        return otu.tree_norm(p.grad) <= settings.tol * (1.0 + jnp.abs(p.value))

    def cond(carry):
        u, _, v, g, k, stalled = carry
        p = Point(u, v, g)
        finite = jnp.isfinite(p.value) & jnp.isfinite(otu.tree_norm(p.grad))
        return (k < settings.max_steps) & finite & ~small(p) & ~stalled

    def body(carry):
        u, state, v, g, k, _ = carry
        p = Point(u, v, g)
        out = step.step(target, p, state)
        u, v, g = out.point
        return u, out.state, v, g, k + out.advanced, out.stalled & ~small(out.point)

    start = Point(u0, v0, g0)
    # the carry keeps the order (u, state, value, grad, ...): with the Point first, XLA's CPU
    # while loop ran L-BFGS 1.25x slower (same program, other parameter order)
    carry = (u0, step.init(target, start), v0, g0, jnp.zeros((), jnp.int32), jnp.zeros((), bool))
    u, _, v, g, k, stalled = jax.lax.while_loop(cond, body, carry)
    gnorm = otu.tree_norm(g)
    finite = jnp.isfinite(v) & jnp.isfinite(gnorm) & jnp.all(
        jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(u)]))
    # Stalled at the rounding floor (no decrease representable) with a small gradient counts as
    # converged, like SciPy's relative-reduction test; a stall far from a stationary point does not.
    done = small(Point(u, v, g)) | (stalled & (gnorm <= math.sqrt(settings.tol) * (1.0 + jnp.abs(v))))
    status = jnp.where(~finite, Status.NONFINITE,
                       jnp.where(done, Status.CONVERGED,
                                 jnp.where(stalled, Status.STALLED, Status.MAX_STEPS)))
    return problem.from_unconstrained(u), -v, gnorm, k, status.astype(jnp.int32)


def _solve_lanes(operand, lanes):
    """All (observation, start) lanes of one block: lax.map over chunks of vmapped loops."""
    problem, settings = operand
    fn = functools.partial(_solve_one, problem, settings=settings)
    return jax.lax.map(lambda args: fn(*args), lanes, batch_size=settings.chunk_size)


def _solve_lanes_implicit(operand, lanes):
    """`_solve_lanes` with each lane's optimum differentiable by the implicit function theorem
    (`implicit.mode`): the lanes of a call under ``jit``/``vmap``/``grad``."""
    problem, settings = operand
    fn = functools.partial(_solve_one, settings=settings)
    return jax.lax.map(lambda args: implicit.mode(fn, problem, *args, jacobian=settings.jacobian),
                       lanes, batch_size=settings.chunk_size)


def solve_map(
    problem: InverseProblem,
    y: Float[Array, "*batch *event"],
    *,
    optimizer: optax.GradientTransformation | str | None = None,
    init: PyTree | None = None,
    max_steps: int = 500,
    tol: float | None = None,
    num_starts: int = 1,
    key: jax.Array | None = None,
    chunk_size: int | None = None,
    block_size: int | None = None,
    mesh: Mesh | None = None,
    batch_axis: str | None = None,
    progress: bool | Callable[[int, int], None] | None = None,
    jacobian: bool = False,
    warn: bool = True,
) -> MAPResult:
    """Maximum a-posteriori estimate of θ for every observation in ``y``.

    Args:
        problem: the `InverseProblem`.
        y: observations shaped ``(*batch, *event)``; every result carries the ``batch`` axes.
        optimizer: ``"auto"`` (default, also ``None``): chosen by structure (`newton.choose`):
            up to 16 unknowns with a Gaussian likelihood and prior, flat-loop ``"bfgs"`` (the
            cheapest there); up to 64 unknowns, ``"gauss-newton"`` for a Gaussian likelihood and
            prior, else ``"newton"``; above that ``"newton-cg"``. Or by name: ``"bfgs"`` /
            ``"lbfgs"``: quasi-Newton with a weak-Wolfe line search written as a flat loop of one
            objective evaluation per step (dense n x n inverse Hessian; or the last 10 pairs).
            ``"newton"``: Levenberg-Marquardt-damped Newton steps with the dense Hessian of the
            same log-posterior. ``"gauss-newton"``: the same damped steps with the Gauss-Newton
            matrix (Gaussian likelihood and Gaussian prior only); for a linear forward model its
            first step is the exact posterior mean. ``"newton-cg"``: inexact Newton-CG with
            matrix-free curvature products (generalised Gauss-Newton where the likelihood has
            one, else the exact Hessian), Eisenstat-Walker forcing, a negative-curvature exit,
            the prior covariance as preconditioner and an Armijo line search, one CG iteration
            or one line-search trial per loop step (for ill-conditioned problems with many
            unknowns: ``deconvolution1d`` converges in 5 Newton steps where L-BFGS stops
            unconverged after 500). Or any optax ``GradientTransformation``
            (``optax.lbfgs()``, ``optax.adam(1e-2)``...), or a step object of one's own
            (`jinverse.steps.AbstractStep`; the names above are those of `STEPS`).
        init: starting θ, shaped like one θ or ``(*batch, *theta_shape)``, or a trained
            `jinverse.amortized` estimator (its answer for each observation); default the prior's
            center (one start; where the log-density is not finite there, the best of 64 prior
            draws with a fixed key) or draws from the prior (``num_starts > 1``).
        max_steps: optimiser steps per start.
        tol: converged when ``||grad|| <= tol * (1 + |objective|)``, gradient taken in the
            unconstrained space; default 1e-9 in float64, 1e-4 in float32. A run that can no
            longer lower the objective (rounding floor) counts as converged when
            ``||grad|| <= sqrt(tol) * (1 + |objective|)``, else it is `Status.STALLED`.
        num_starts: starts per observation; the best (highest log-posterior) is returned and all
            are kept in ``result.starts`` (`MAPResult.distinct` lists the distinct solutions).
        key: a JAX PRNG key, required when starts are drawn from the prior.
        chunk_size: lanes (observation × start pairs) vmapped together inside ``lax.map``
            (default 32 on CPU, 8192 on accelerators): a lane waits only for the slowest lane of
            its chunk, while wider chunks keep an accelerator busy.
        block_size: lanes per compiled call (default: what fits ~512 MiB of lane data, at most
            65,536); larger batches stream through the same program in blocks, the last one
            padded, so memory stays bounded and no new size recompiles.
        mesh: a `jax.sharding.Mesh`; each block's lanes are split across its devices along
            ``batch_axis`` (default: the mesh's first axis). Results equal the one-device ones.
        progress: True for a progress line on stderr across blocks, or ``callback(done, total)``.
        jacobian: False (default): the mode of p(θ | y) in θ's own space. True: the mode of the
            density of the unconstrained ``u`` (log-Jacobian included), where `ji.laplace`
            expands; the two coincide for unbounded priors.
        warn: True (default): a `MAPWarning` when any element did not converge, with the counts
            per status, the first few indices and what to try (`status_report`). False for
            callers that read ``status`` themselves. (This waits for the result.)

    Returns:
        A `MAPResult`; elements that did not converge or went non-finite are flagged in
        ``status``/``converged`` and never affect other elements.

    Under ``jax.jit``, ``jax.vmap`` or ``jax.grad`` (``y``, ``init``, ``key`` or a leaf of
    ``problem`` traced), the host-only work is skipped: only shapes and dtypes are checked (a
    non-finite observation or start is flagged ``Status.NONFINITE`` instead of refused), all
    lanes run as one block (``block_size``, ``mesh`` and ``progress`` are ignored), no warning
    is raised, and ``theta`` and ``log_posterior`` are differentiable with respect to ``y`` and
    the problem's floating-point leaves (prior and noise scales...) by the implicit function
    theorem (`jinverse.implicit`), not through the optimiser's loop.

    Example::

        result = ji.solve_map(problem, y_batch)      # y_batch.shape == (1000, m)
        result.theta.shape                           # (1000, n)
        jax.jacrev(lambda y: ji.solve_map(problem, y).theta)(y_batch[0])   # (n, m)
    """
    if not isinstance(problem, InverseProblem):
        raise TypeError(f"problem: got {type(problem).__name__}, expected a jinverse.InverseProblem")
    map_start = getattr(init, "map_start", None)
    if callable(map_start):  # a trained jinverse.amortized estimator: its θ for y
        init = map_start(problem, y)
    is_traced = traced.is_traced(problem, y, init, key)
    y, batch_shape = traced.check_y(problem, y)  # problem.check_y unless y is traced: shapes only
    max_steps = check_positive_int("max_steps", max_steps)
    num_starts = check_positive_int("num_starts", num_starts)
    if chunk_size is None:  # CPU: small chunks (lanes wait for their chunk's slowest); GPU: wide ones
        chunk_size = 32 if jax.default_backend() == "cpu" else 8192
    chunk_size = check_positive_int("chunk_size", chunk_size)
    batch_axis = check_mesh(mesh, batch_axis)
    if tol is None:
        tol = 1e-9 if y.dtype == jnp.float64 else 1e-4
    if not (isinstance(tol, (int, float)) and tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tol: got {tol!r}, expected a positive number")
    if optimizer is None or (isinstance(optimizer, str) and optimizer == "auto"):
        optimizer = choose(problem)  # by structure: see newton.choose
    if isinstance(optimizer, str):
        if optimizer not in STEPS:
            raise ValueError(f"optimizer: got {optimizer!r}, expected 'bfgs', 'lbfgs', 'newton', 'gauss-newton' "
                             "or an optax GradientTransformation, or 'newton-cg' or 'auto' (the default), or "
                             "a jinverse.steps.AbstractStep")
        if optimizer == "gauss-newton" and not least_squares(problem):
            raise ValueError(f"optimizer: 'gauss-newton' needs a Gaussian likelihood and a Gaussian prior, "
                             f"got {type(problem.likelihood).__name__} and {type(problem.prior).__name__}; "
                             "use 'newton' or 'lbfgs'")
    elif not isinstance(optimizer, (optax.GradientTransformation, AbstractStep)):
        raise TypeError(f"optimizer: got {type(optimizer).__name__}, expected 'bfgs', 'lbfgs', "
                        "'newton', 'gauss-newton', 'newton-cg', 'auto', an optax GradientTransformation "
                        "or a jinverse.steps.AbstractStep")
    optimizer = as_step(optimizer)

    n_obs = math.prod(batch_shape)
    event = y.shape[len(batch_shape):]
    theta0 = _starts(problem, init, num_starts, key, batch_shape)  # (n_obs, S, *theta)
    u0 = jax.tree.map(lambda a: a.reshape(n_obs * num_starts, *a.shape[2:]),
                      jax.vmap(jax.vmap(problem.to_unconstrained))(theta0))
    y_rep = jnp.repeat(y.reshape(n_obs, *event), num_starts, axis=0)
    if init is None and num_starts == 1:  # the prior's center may lie where the density is not finite
        u0 = _finite_starts(problem, y_rep, u0, bool(jacobian))

    lanes = n_obs * num_starts
    n_dev = 1 if mesh is None else mesh.shape[batch_axis]
    chunk_size = min(chunk_size, -(-lanes // n_dev))
    if block_size is None:
        per_lane = tree_bytes((y_rep[:1], jax.tree.map(lambda a: a[:1], u0))) * 4
        block_size = default_block_size(per_lane, chunk_size * n_dev)
    settings = _Settings(optimizer, max_steps, float(tol), chunk_size, bool(jacobian))
    if is_traced:  # one block, padded as `stream` pads it, with implicit derivatives
        idx = np.minimum(np.arange(-(-lanes // chunk_size) * chunk_size), lanes - 1)
        block = (y_rep, u0) if idx.size == lanes else jax.tree.map(lambda a: a[idx], (y_rep, u0))
        outs = _solve_lanes_implicit((problem, settings), block)
        return _collect(jax.tree.map(lambda a: a[:lanes], outs), n_obs, num_starts, batch_shape)
    outs = stream(_solve_lanes, (problem, settings), (y_rep, u0),
                  num_lanes=lanes, block_size=block_size, multiple=chunk_size, mesh=mesh,
                  axis=batch_axis, progress=progress, label="MAP")
    result = _collect(outs, n_obs, num_starts, batch_shape)
    # The driver warns from the status codes (the core never does); not while traced by jit.
    if warn and not isinstance(result.status, jax.core.Tracer):
        message = status_report(result.status)
        if message:
            warnings.warn(message, MAPWarning, stacklevel=2)
    return result


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _collect(outs, n_obs: int, num_starts: int, batch_shape: tuple[int, ...]) -> MAPResult:
    """Per-lane outputs -> a `MAPResult` with the batch axes: the best start of each observation,
    and every start in ``starts`` when there are several."""
    theta, lp, gnorm, steps, status = jax.tree.map(
        lambda a: a.reshape(n_obs, num_starts, *a.shape[1:]), outs)
    all_starts = MAPResult(theta, lp, gnorm, steps, status == Status.CONVERGED, status)
    best = jnp.argmax(jnp.where(jnp.isfinite(lp), lp, -jnp.inf), axis=1)
    pick = jax.tree.map(lambda a: jnp.take_along_axis(
        a, best.reshape(n_obs, 1, *([1] * (a.ndim - 2))), axis=1)[:, 0], all_starts)
    unflat = functools.partial(_unflatten_batch, batch_shape=batch_shape)
    result = jax.tree.map(unflat, pick)
    if num_starts > 1:
        result = eqx.tree_at(lambda r: r.starts, result, jax.tree.map(unflat, all_starts),
                             is_leaf=lambda x: x is None)
    return result


FALLBACK_DRAWS = 64  # prior draws tried where the log-density is not finite at the prior's center


def _finite_starts(problem, y_rep, u0, jacobian: bool):
    """``u0`` (the prior's center per lane), except where the log-density is not finite there
    (e.g. ``slcp``: a zero scale in the likelihood at the center): the best of `FALLBACK_DRAWS`
    prior draws (a fixed key, so reproducible). One evaluation per lane; the draws only when
    some lane needs them."""
    bad = ~jnp.isfinite(_lane_densities(problem, u0, y_rep, jacobian))
    if traced.is_traced(problem, y_rep, u0):  # under a transformation: decided on the device
        return jax.lax.cond(jnp.any(bad), lambda: _best_draws(problem, u0, y_rep, bad, jacobian), lambda: u0)
    if not bool(jnp.any(bad)):
        return u0
    return _best_draws(problem, u0, y_rep, bad, jacobian)


@eqx.filter_jit
def _lane_densities(problem, u0, y_rep, jacobian):
    return jax.lax.map(lambda a: problem.log_density(a[0], a[1], jacobian=jacobian), (u0, y_rep),
                       batch_size=1024)


@eqx.filter_jit
def _best_draws(problem, u0, y_rep, bad, jacobian):
    draws = jax.vmap(problem.to_unconstrained)(problem.sample_prior(jax.random.key(0), (FALLBACK_DRAWS,)))
    lp = jax.lax.map(lambda y: jax.vmap(lambda u: problem.log_density(u, y, jacobian=jacobian))(draws),
                     y_rep, batch_size=64)
    best = jnp.argmax(jnp.where(jnp.isfinite(lp), lp, -jnp.inf), axis=1)
    return jax.tree.map(lambda old, d: jnp.where(bad.reshape(-1, *([1] * (old.ndim - 1))), d[best], old),
                        u0, draws)


def _unflatten_batch(a, batch_shape):
    return a.reshape(*batch_shape, *a.shape[1:])


def _check_one_key(key) -> None:
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if key.ndim > (0 if typed else 1):
        raise ValueError(f"key: got a batch of keys of shape {key.shape}, expected one key")


def _starts(problem, init, num_starts, key, batch_shape):
    """Starting θ shaped ``(n_obs, num_starts, *theta_shape)``."""
    n_obs = math.prod(batch_shape)
    if init is not None:
        theta = traced.check_theta(problem, init, "init", batch_shape)
        theta = jax.tree.map(lambda a: a.reshape(n_obs, *a.shape[len(batch_shape):]), theta)
        if num_starts == 1:
            return jax.tree.map(lambda a: a[:, None], theta)
        check_key("key", key)
        _check_one_key(key)
        draws = problem.sample_prior(key, (n_obs, num_starts - 1))
        return jax.tree.map(lambda a, d: jnp.concatenate([a[:, None], d.astype(a.dtype)], axis=1), theta, draws)
    if num_starts == 1:
        center = problem.prior.center()
        return jax.tree.map(lambda c: jnp.broadcast_to(c, (n_obs, 1, *jnp.shape(c))), center)
    if key is None:
        raise TypeError("key: got None, expected a JAX PRNG key (num_starts > 1 draws starts from the prior)")
    check_key("key", key)
    _check_one_key(key)
    return problem.sample_prior(key, (n_obs, num_starts))
