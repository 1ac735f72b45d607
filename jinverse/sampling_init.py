"""Where `ji.sample`'s chains start, set up per observation before any lane runs.

`chain_starts` turns ``init=`` into flat unconstrained starts: the prior's draws (in the lanes),
the MAP, a given θ (one for all chains or one per chain), or the modes of `ji.find_modes`, whose
`jinverse.posterior.ChainModes` the posterior reports. `laplace_modes` finds each observation's
mode for ``metric="laplace"``: the centre of its whitening (`jinverse.metric`), around which the
chains start unless ``init`` is given.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from . import lowrank, traced
from . import metric as metric_lib
from .lanes import flatten
from .posterior import ChainModes
from .problem import flat_leaves


def chain_starts(problem, y, batch, init, jitter, num_chains=1, key=None, is_traced=False):
    """``("prior", None, None)`` or ``("given", u, modes)`` with ``u`` flat, shaped ``(*batch, d)``,
    or ``(*batch, num_chains, d)`` with a start per chain: the user's (``init`` shaped
    ``(num_chains, *event)`` or ``(*batch, num_chains, *event)``) or on the modes of
    ``init="modes"`` (or a `ji.ModeMixture`), whose `posterior.ChainModes` is ``modes`` (else None).
    ``is_traced``: only shapes are checked (a start outside the support is the lane's status)."""
    from .modes import ModeMixture, find_modes

    if init is None or (isinstance(init, str) and init == "prior"):
        return "prior", None, None
    if isinstance(init, str) and init == "modes":
        # its own key, so that the sampler's keys are those of any other init
        init = find_modes(problem, y, key=jax.random.fold_in(key, 0x6D6F), warn=False)
    if isinstance(init, ModeMixture):
        return _start_on_modes(problem, y, batch, init, num_chains)
    if isinstance(init, str) and init == "map":
        from .map import solve_map

        # only a start: the sampler's own diagnostics (SamplingWarning) judge the draws
        theta = solve_map(problem, y, warn=False).theta
    elif isinstance(init, str):
        raise ValueError(f"init: got {init!r}, expected 'prior', 'map', 'modes', a ji.ModeMixture "
                         "or a θ shaped like the prior")
    else:  # one θ for all chains (event or (*batch, *event)), or one per chain: no chain axis in batch
        def check_theta(theta, name, shape):
            return traced.check_theta(problem, theta, name, shape) if is_traced else \
                problem.check_theta(theta, name, shape)

        try:
            theta = check_theta(init, "init", batch)
        except ValueError as error:
            per_chain, theta = (*batch, num_chains), None
            for shape in (per_chain, (num_chains,)):
                try:
                    theta = check_theta(init, "init", shape)
                except ValueError:
                    continue
                lead = len(shape)
                theta = jax.tree.map(lambda a: jnp.broadcast_to(a, (*per_chain, *a.shape[lead:])), theta)  # noqa: B023
                break
            deeper = any(np.ndim(a) > len(batch) + len(r.shape)
                         for a, r in zip(jax.tree.leaves(init), jax.tree.leaves(problem.theta_shape_dtype())))
            if theta is None and not deeper:
                raise
            if theta is None:  # an extra axis: meant as per-chain starts, presumably
                raise ValueError(f"{error}; or one start per chain, with a leading axis of num_chains={num_chains}"
                                 + (" after the batch axes" if batch else "")) from None
            batch = per_chain
    nb = len(batch)
    to_u = problem.to_unconstrained
    for _ in range(nb):
        to_u = jax.vmap(to_u)
    u = to_u(theta)
    flat = flat_leaves(u, len(batch))
    if not is_traced and not bool(jnp.all(jnp.isfinite(flat))):
        raise ValueError("init: got a θ outside the prior's support (its unconstrained value is not "
                         "finite), expected a point inside the support")
    return "given", flat, None


def _start_on_modes(problem, y, batch, mixture, num_chains):
    """Chains started on the modes of ``mixture`` (`ji.ModeMixture.chain_starts`)."""
    if mixture.batch_shape != batch or mixture.mean.shape[-1] != flatten(problem)[0]:
        raise ValueError(f"init: got a ModeMixture of batch shape {mixture.batch_shape} and "
                         f"{mixture.mean.shape[-1]} unknowns, expected batch shape {batch} and "
                         f"{flatten(problem)[0]} (ji.find_modes of this problem and y)")
    if not np.all(mixture.num_modes > 0):
        raise ValueError(f"init: no mode was found for {int(np.sum(mixture.num_modes == 0))} observations "
                         "(ji.find_modes); raise num_starts, or use init='prior'")
    chain = mixture.chain_starts(num_chains)
    u = jnp.take_along_axis(mixture.mean, jnp.asarray(chain)[..., None], axis=-2)  # (*batch, chains, d)
    nb = len(batch)
    loc = flat_leaves(mixture.theta, nb + 1)
    return "given", u, ChainModes(weights=mixture.weights, ok=mixture.ok, chain=jnp.asarray(chain), theta=loc)


def laplace_modes(problem, y, batch, mesh, batch_axis, progress=None):
    """Per observation, the mode of the unconstrained density (``jacobian=True``) by
    `ji.solve_map` (Newton: the Hessian is formed anyway), flat ``(size, d)``, and whether it is
    usable ``(size,)``: the centres of the ``"laplace"`` metric. Any finite point is usable (the
    change of coordinates is exact whatever its centre; a mode not converged to ``tol`` only
    whitens less well), so only a non-finite search makes a lane fall back. Above `metric.DENSE_MAX` unknowns also
    the low-rank whitening's eigenvalues and eigenvectors (`lowrank.laplace_lowrank`)."""
    from .map import Status as MAPStatus
    from .map import solve_map

    # dense Newton while the dense whitening is affordable; above, the matrix-free default
    optimizer = "newton" if flatten(problem)[0] <= metric_lib.DENSE_MAX else "auto"
    res = solve_map(problem, y, optimizer=optimizer, jacobian=True, warn=False, mesh=mesh,
                    batch_axis=batch_axis, progress=progress)
    size = math.prod(batch)
    to_u = problem.to_unconstrained
    for _ in range(len(batch)):
        to_u = jax.vmap(to_u)
    u = to_u(res.theta)
    flat = flat_leaves(u, len(batch)).reshape(size, -1)
    ok = jnp.reshape(res.status != MAPStatus.NONFINITE, (size,))
    if flat.shape[-1] <= metric_lib.DENSE_MAX:
        return flat, ok
    # the low-rank whitening's eigenpairs, as many as the data inform (metric.LOWRANK_TOL)
    approx, pd = lowrank.laplace_lowrank(
        problem, y.reshape(size, *y.shape[len(batch):]), flat, ok, (size,), rank="auto", key=jax.random.key(0),
        oversampling=10, power_iters=1, block_size=None, mesh=mesh, axis=batch_axis, progress=None,
        tol=metric_lib.LOWRANK_TOL)
    return flat, ok & pd, approx.eigvals, approx.eigvecs
