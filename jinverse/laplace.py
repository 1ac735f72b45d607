"""`ji.laplace`: a Gaussian approximation of p(θ | y) from the Hessian at the mode.

Uses the one density of the package, ``problem.log_density``, with the Jacobian term, in the
prior's unconstrained space (as Stan's Laplace sampler does).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, PyTree

from . import curvature, dense, lowrank, traced
from ._batching import check_mesh, default_block_size, stream, tree_bytes
from ._gaussian import AbstractGaussianApproximation, default_status
from .problem import InverseProblem
from .status import approximation_status


class GaussianApproximation(AbstractGaussianApproximation):
    """``u ~ N(mean, covariance)`` with ``θ = problem.from_unconstrained(u)``.

    ``u`` is θ flattened (pytree leaves concatenated) in the prior's unconstrained space; for an
    unconstrained prior (Gaussian, Laplace, ...) it *is* θ flattened, and the approximation is a
    Gaussian over θ itself.

    Attributes:
        mean: the mode of the unconstrained log-density, ``(*batch, d)``.
        covariance: the inverse negative Hessian there, ``(*batch, d, d)``.
        ok: ``(*batch,)``: True where the mode search converged (`ji.solve_map` status)
            and the negative Hessian is positive definite; the approximation is NaN elsewhere.
        problem: the problem, used to map draws back to θ.
        status: ``(*batch,)`` `jinverse.status.MAPStatus` codes, ``OK`` exactly where ``ok``;
            elsewhere the mode search's code, or ``NOT_POSITIVE_DEFINITE``.
    """

    mean: Float[Array, "*batch d"]
    covariance: Float[Array, "*batch d d"]
    ok: Bool[Array, "*batch"]
    problem: InverseProblem
    status: Int[Array, "*batch"] = None  # type: ignore[assignment]  # None: from ok (default_status)

    def __post_init__(self):
        if self.status is None:
            self.status = default_status(self.ok)

    def _draw(self, z):
        chol = dense.cholesky(self.covariance)
        return self.mean[..., None, :] + jnp.einsum("...ij,...nj->...ni", chol, z)


_DENSE_COPIES = 5  # d x d arrays alive per lane in `_laplace_one`


def _laplace_one(problem, y, u):
    """Mean ``u`` and covariance ``(-∇² log p(u | y))⁻¹``; NaN where the Hessian is not PD."""
    _, unravel = curvature.flatten(problem)

    def neg(x):
        return -problem.log_density(unravel(x), y, jacobian=True)

    # jinverse.dense: blocked above 1 GiB per matrix, where jaxlib's LAPACK may crash (issue 19)
    chol = dense.cholesky(jax.hessian(neg)(u))
    eye = jnp.eye(u.shape[0], dtype=u.dtype)
    cov = dense.cho_solve((chol, True), eye)
    pd = jnp.all(jnp.isfinite(chol))
    return jnp.where(pd, cov, jnp.nan), pd


def _laplace_lanes(problem, lanes):
    """One block of observations: each lane is one observation and its expansion point."""
    y, u = lanes
    return jax.vmap(lambda yy, uu: _laplace_one(problem, yy, uu))(y, u)


def laplace(
    problem: InverseProblem,
    y: Float[Array, "*batch *event"],
    *,
    at: PyTree | None = None,
    rank: int | str | None = None,
    key: PRNGKeyArray | None = None,
    oversampling: int = 10,
    power_iters: int = 1,
    block_size: int | None = None,
    mesh: Mesh | None = None,
    batch_axis: str | None = None,
    progress: bool | Callable[[int, int], None] | None = None,
    warn: bool = True,
) -> GaussianApproximation | lowrank.LowRankGaussianApproximation:
    """The Laplace approximation of p(θ | y): a Gaussian at the mode, covariance the inverse
    negative Hessian of ``problem.log_density``.

    The approximation lives in the prior's unconstrained space ``u`` (θ itself for Gaussian and
    other unbounded priors): it is the mode and Hessian of the density of ``u``, Jacobian term
    included. The mode is found by `ji.solve_map` with ``jacobian=True`` (the one MAP loop; for an
    unbounded prior it is the ordinary MAP, for a bounded prior the mode of ``u`` differs from
    the MAP of θ). For a linear forward model
    with Gaussian prior and noise the result is the exact posterior.

    Args:
        problem: the `ji.InverseProblem`.
        y: observations ``(*batch, *event)``; every result carries the batch axes.
        at: a θ (one, or one per observation) at which to expand instead of the mode; no
            search for the mode then.
        rank: None (default): the dense covariance above. An int ``r`` (or ``"auto"``: grow
            ``r`` until the eigenvalues fall below 0.1) for large θ with a Gaussian prior: the
            prior plus a rank-``r`` update from the dominant eigenpairs of the prior-preconditioned
            Gauss-Newton misfit Hessian, ``O(d r)`` memory; returns a
            `ji.LowRankGaussianApproximation` (see `jinverse.lowrank`).
        key, oversampling, power_iters: the randomized eigensolver's probes (default key 0),
            extra probes beyond ``r``, and subspace iterations (with ``rank``).
        block_size, mesh, batch_axis, progress: as in `ji.solve_map`: observations stream
            through one compiled program in padded blocks (default: what fits ~512 MiB of
            inputs and covariances), optionally split across the devices of ``mesh``.
        warn: True (default): one `ji.MAPWarning` when the mode search did not converge for
            some observations (as `ji.solve_map` words it) or the Hessian is not positive
            definite there; ``ok`` flags them either way.

    Returns:
        A `ji.GaussianApproximation` with ``mean`` ``(*batch, d)``, ``covariance``
        ``(*batch, d, d)`` and ``sample(key, n)`` giving θ draws.

    Under ``jax.jit``, ``jax.vmap`` or ``jax.grad`` (``y``, ``at`` or a leaf of ``problem``
    traced), only shapes are checked, all observations run as one block, no warning is raised
    (``ok`` says where the mode search failed or the Hessian is not positive definite; an
    ``at`` outside the prior's support is an `equinox.error_if` error), and the mode is
    differentiable by the implicit function theorem (`ji.solve_map`); ``rank="auto"``, which
    chooses the rank on the host, is refused there.

    Example::

        approx = ji.laplace(problem, y)
        draws = approx.sample(jax.random.key(0), 1000)
    """
    is_traced = traced.is_traced(problem, y, at, key)
    y, batch = traced.check_y(problem, y)  # problem.check_y unless y is traced: shapes only
    axis = check_mesh(mesh, batch_axis)
    if rank is not None:  # fail before the mode search
        lowrank.check_args(problem, rank, key, oversampling, power_iters)
        if is_traced and rank == "auto":
            raise TypeError("rank: got 'auto' under a JAX transformation (traced inputs), expected an int: "
                            "'auto' chooses the rank from the eigenvalues on the host")
    if at is None:  # the mode of the density of u: the one MAP loop, with the log-Jacobian
        from .map import solve_map, status_report

        # solve_map does not warn itself: laplace warns once below, from this call site
        mode = solve_map(problem, y, jacobian=True, mesh=mesh, batch_axis=batch_axis, progress=progress,
                         warn=False)
        theta, found, codes = mode.theta, mode.ok.reshape(-1), mode.status.reshape(-1)
        search = status_report(mode.status) if warn and not is_traced else ""
    else:
        theta = traced.check_theta(problem, at, "at", batch)
        found = jnp.ones((math.prod(batch),), bool)  # at a user's point only the Hessian must be PD
        codes = jnp.zeros((math.prod(batch),), jnp.int32)
        search = ""
    to_u = lambda t: ravel_pytree(problem.to_unconstrained(t))[0]  # noqa: E731
    for _ in batch:
        to_u = jax.vmap(to_u)
    u0 = to_u(theta)
    if is_traced:  # the mode search flags its own failures; a user's point is checked on the device
        if at is not None:
            u0 = eqx.error_if(u0, ~jnp.all(jnp.isfinite(u0)),
                              "at: got a θ outside the prior's support, expected a point inside it")
    elif not bool(jnp.all(jnp.isfinite(u0))):
        raise ValueError("at: got a θ outside the prior's support, expected a point inside it")
    size = math.prod(batch)
    y = y.reshape(size, *y.shape[len(batch):])
    u0 = u0.reshape(size, -1)
    if is_traced and rank is not None:  # the per-lane core on all observations: no blocks, no warnings
        return _laplace_traced(problem, y, u0, found, codes, batch, rank, key, oversampling, power_iters)
    if rank is not None:  # prior plus low-rank update, O(d r) per observation
        approx, pd = lowrank.laplace_lowrank(problem, y, u0, found, batch, rank=rank, key=key,
                                             oversampling=oversampling, power_iters=power_iters,
                                             block_size=block_size, mesh=mesh, axis=axis, progress=progress)
        if warn:
            _warn(search, (found & ~pd).reshape(batch))
        # (replace, not eqx.tree_at: that would rebuild the problem inside, a copy of the one given)
        return dataclasses.replace(approx, status=approximation_status(codes.reshape(batch), approx.ok))
    d = u0.shape[-1]
    n_dev = 1 if mesh is None else mesh.shape[axis]
    if block_size is None:
        per_lane = (tree_bytes(y[:1]) + (d * d + 2 * d) * u0.dtype.itemsize) * 2
        block_size = default_block_size(per_lane, n_dev)
    # refuse before compiling a block whose vmapped lanes (each with its Hessian, factor, identity,
    # covariance and masked copy) cannot fit: per device on accelerators, all of them on a host
    lanes = size if is_traced else min(block_size, size)
    lanes = lanes if mesh is None or jax.default_backend() == "cpu" else -(-lanes // n_dev)
    dense.check_dense(d, u0.dtype, lanes=lanes, copies=_DENSE_COPIES, what="ji.laplace",
                      alternative="ji.laplace(..., rank=r) (prior plus low-rank update, O(d r) memory)")
    if is_traced:  # the per-lane core on all observations at once: no blocks, no warnings
        return _laplace_traced(problem, y, u0, found, codes, batch, None, key, oversampling, power_iters)
    cov, pd = stream(_laplace_lanes, problem, (y, u0), num_lanes=size, block_size=block_size, mesh=mesh,
                     axis=axis, progress=progress, label="Laplace")
    ok = (pd & found).reshape(batch)
    if warn:
        _warn(search, (found & ~pd).reshape(batch))
    u, cov = u0.reshape(*batch, -1), cov.reshape(*batch, *cov.shape[1:])
    return GaussianApproximation(mean=u, covariance=cov, ok=ok, problem=problem,
                                 status=approximation_status(codes.reshape(batch), ok))


def _laplace_traced(problem, y, u0, found, codes, batch, rank, key, oversampling, power_iters):
    """`laplace` under a transformation: the lanes of `_laplace_lanes` (or of the low-rank
    `lowrank.factor`) vmapped over all observations."""
    if rank is None:
        cov, pd = _laplace_lanes(problem, (y, u0))
        ok = (pd & found).reshape(batch)
        return GaussianApproximation(mean=u0.reshape(*batch, -1), covariance=cov.reshape(*batch, *cov.shape[1:]),
                                     ok=ok, problem=problem, status=approximation_status(codes.reshape(batch), ok))
    size, d = u0.shape
    keys = jax.random.split(jax.random.key(0) if key is None else key, size)

    def one(yy, uu, kk):  # as lowrank.laplace_lowrank's lanes
        f = lowrank.factor(problem, yy, uu, rank, kk, oversampling=oversampling, power_iters=power_iters)
        pd = jnp.all(jnp.isfinite(f.eigvals) & (f.eigvals > -1)) & jnp.all(jnp.isfinite(f.eigvecs))
        return f.eigvals, f.eigvecs, pd

    lam, vecs, pd = jax.vmap(one)(y, u0, keys)
    ok = (pd & found).reshape(batch)
    return lowrank.LowRankGaussianApproximation(
        mean=u0.reshape(*batch, d), eigvals=lam.reshape(*batch, rank), eigvecs=vecs.reshape(*batch, d, rank),
        ok=ok, problem=problem, status=approximation_status(codes.reshape(batch), ok))


def _warn(search: str, not_pd) -> None:
    """One `MAPWarning` for `laplace`'s caller: the mode search's report, and the modes found
    where the negative Hessian is not positive definite."""
    from .map import MAPWarning

    not_pd = jnp.asarray(not_pd)
    msgs = [f"mode search: {search}"] if search else []
    n = int(jnp.count_nonzero(not_pd))
    if n:
        where = "" if not_pd.ndim == 0 else f"{n} of {not_pd.size} observations: "
        msgs.append(f"{where}the negative Hessian at the mode is not positive definite (a saddle point or "
                    "a flat direction; no Gaussian approximation there)")
    if msgs:
        warnings.warn("Laplace: " + "; ".join(msgs), MAPWarning, stacklevel=3)
