"""Driver checks for calls under a JAX transformation (``jax.jit``, ``jax.vmap``, ``jax.grad``).

`ji.solve_map`, `ji.laplace` and `ji.sample` accept traced inputs: then values cannot be read on the host,
so the drivers keep only the checks that read shapes and dtypes, and let the core flag bad
values per lane through its status (a non-finite observation or start ends as
``Status.NONFINITE``). The shape checks here are the eager ones, run on a concrete stand-in of
zeros with the traced value's shape and dtype, so a wrong shape gives the same message inside
``jit`` as outside.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PyTree

from .problem import InverseProblem
from .run_status import sampling_flags


def is_traced(*trees) -> bool:
    """True when any leaf of ``trees`` is a JAX tracer (the call is under a transformation)."""
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(trees))


def _stand_in(x):
    """Zeros with the shape and dtype of a traced ``x`` (a zero-stride view: no memory)."""
    if not isinstance(x, jax.core.Tracer):
        return x
    return np.broadcast_to(np.zeros((), np.dtype(x.dtype)), x.shape)


def check_y(problem: InverseProblem, y, name: str = "y") -> tuple[Array, tuple[int, ...]]:
    """`InverseProblem.check_y` for a traced ``y``: its shape and dtype checks (the same errors),
    none of its value checks; returns ``(y in the problem's precision, batch_shape)``."""
    if not isinstance(y, jax.core.Tracer):
        return problem.check_y(y, name)
    shape = tuple(y.shape)
    event = tuple(problem.data_shape())
    k = len(event)
    batch = shape[: len(shape) - k]
    fits = len(shape) >= k and shape[len(shape) - k:] == event and 0 not in shape
    # one stand-in observation where the shape fits; the whole shape where it does not, so that
    # check_y words its error with the shape the caller passed
    proxy = _stand_in(y)[(0,) * len(batch)][(None,) * len(batch)] if fits else _stand_in(y)
    with jax.ensure_compile_time_eval():  # on the host even inside an outer jit
        checked, _ = problem.check_y(proxy, name)
    return y.astype(checked.dtype), batch


def check_theta(problem: InverseProblem, theta: PyTree, name: str, batch_shape: tuple[int, ...]) -> PyTree:
    """`InverseProblem.check_theta` where some leaves of ``theta`` are traced: their shapes are
    checked (the same errors) and they are broadcast to ``(*batch, *theta_shape)``; concrete
    leaves are checked in full."""
    if not is_traced(theta):
        with jax.ensure_compile_time_eval():  # a concrete θ inside an outer jit: checked on the host
            return problem.check_theta(theta, name, batch_shape)
    ref = problem.theta_shape_dtype()
    if isinstance(ref, jax.ShapeDtypeStruct) and isinstance(theta, (list, tuple)):
        theta = jnp.asarray(theta)  # a list of numbers for an array θ, some of them traced
    with jax.ensure_compile_time_eval():
        problem.check_theta(jax.tree.map(_stand_in, theta), name, batch_shape)
    return jax.tree.map(lambda a, r: jnp.broadcast_to(jnp.asarray(a, r.dtype), (*batch_shape, *r.shape))
                        if jnp.shape(a) == r.shape else jnp.asarray(a, r.dtype), theta, ref)


def sampling_status(diag: dict, num_chains: int, metric_fallback, bad_input) -> Array:
    """`jinverse.run_status.sampling_flags` in JAX on `jinverse.convergence.draw_diagnostics`
    (``ji.sample`` under a transformation: no messages). ``bad_input`` per observation: a
    non-finite observation or start, which the host refuses and a traced call flags
    `Status.NONFINITE`."""
    return sampling_flags(dict(diag, finite=diag["finite"] & ~bad_input, metric_fallback=metric_fallback),
                          num_chains, jnp)
