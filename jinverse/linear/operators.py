"""Linear operators for `ji.linear`: a dense matrix or a matrix-free linear JAX function.

The adjoint of a matrix-free operator is always ``jax.linear_transpose`` of the forward map,
never written by hand; a dense matrix of it is ``jax.jacfwd`` (one forward pass per column).
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import as_float_array, check_finite, check_positive_int


class LinearOperator(eqx.Module):
    """``x ↦ A x`` on vectors of length ``n`` giving vectors of length ``m``.

    Build one with `as_operator`. ``matrix`` is set for a dense operator, else ``fn`` is a
    linear JAX function of one vector.
    """

    matrix: Float[Array, "m n"] | None
    fn: Callable | None
    shape: tuple[int, int] = eqx.field(static=True)

    def matvec(self, x: Float[Array, " n"]) -> Float[Array, " m"]:
        if self.matrix is not None:
            return self.matrix @ x
        return self._function()(x)

    def rmatvec(self, r: Float[Array, " m"]) -> Float[Array, " n"]:
        """The adjoint ``Aᵀ r`` (``jax.linear_transpose`` for a matrix-free operator)."""
        if self.matrix is not None:
            return self.matrix.T @ r
        x0 = jax.ShapeDtypeStruct((self.shape[1],), r.dtype)
        (out,) = jax.linear_transpose(self._function(), x0)(r)
        return out

    def to_dense(self) -> Float[Array, "m n"]:
        """The dense matrix (``jax.jacfwd`` of a matrix-free operator)."""
        if self.matrix is not None:
            return self.matrix
        return jax.jacfwd(self._function())(jnp.zeros((self.shape[1],), jnp.result_type(float)))

    @property
    def is_dense(self) -> bool:
        return self.matrix is not None

    def _function(self) -> Callable:
        if self.fn is None:  # as_operator sets exactly one of matrix and fn
            raise ValueError("LinearOperator: got matrix=None and fn=None, expected one of them (build it "
                             "with ji.linear.as_operator)")
        return self.fn


def as_operator(A, n: int | None = None, *, name: str = "A") -> LinearOperator:
    """A `LinearOperator` from a dense ``(m, n)`` matrix or a linear function of an ``n``-vector.

    Args:
        A: a matrix, a `LinearOperator`, an object with a ``.matrix`` attribute (e.g.
            `ji.MatrixOperator`), or a callable that is linear in its one vector argument.
        n: the input length; required for a callable.
    """
    if isinstance(A, LinearOperator):
        return A
    if hasattr(A, "matrix") and not callable(A.matrix):
        A = A.matrix
    if isinstance(A, (np.ndarray, jax.Array, list, tuple)):
        M = as_float_array(name, A)
        if M.ndim != 2:
            raise ValueError(f"{name}: got an array of shape {M.shape}, expected a matrix (m, n)")
        check_finite(name, M)
        if n is not None and n != M.shape[1]:
            raise ValueError(f"n: got {n}, expected {M.shape[1]} (the columns of {name})")
        return LinearOperator(M, None, (int(M.shape[0]), int(M.shape[1])))
    if callable(A):
        if n is None:
            raise TypeError(f"n: got None, expected the input length of the matrix-free {name}")
        n = check_positive_int("n", n)
        try:
            out = jax.eval_shape(A, jax.ShapeDtypeStruct((n,), jnp.result_type(float)))
        except Exception as exc:
            raise ValueError(f"{name}: failed on a vector of length {n}: {exc}") from exc
        if not isinstance(out, jax.ShapeDtypeStruct) or out.ndim != 1:
            raise ValueError(f"{name}: returns {out}, expected a vector (m,)")
        return LinearOperator(None, A, (int(out.shape[0]), n))
    raise TypeError(f"{name}: got {type(A).__name__}, expected a matrix or a linear function")


_BOUNDARIES = ("none", "zero", "periodic", "neumann")


def difference_matrix(n: int, order: int = 1, boundary: str = "none") -> Float[Array, "p n"]:
    """The dense 1-D difference matrix of ``order`` 1 or 2 on ``n`` points.

    ``boundary``:
      - ``"none"``: only interior differences, ``(n - order, n)`` (Hansen's ``get_l``);
      - ``"zero"``: the signal is zero outside, square and invertible;
      - ``"periodic"``: wraps around, square, null space the constants;
      - ``"neumann"``: reflecting ends (zero slope), null space the constants; for order 1 the
        same as ``"none"``.
    """
    n = check_positive_int("n", n, minimum=3)
    if order not in (1, 2):
        raise ValueError(f"order: got {order!r}, expected 1 or 2")
    if boundary not in _BOUNDARIES:
        raise ValueError(f"boundary: got {boundary!r}, expected one of {_BOUNDARIES}")
    eye = np.eye(n)
    if order == 1:
        if boundary in ("none", "neumann"):
            D = eye[1:] - eye[:-1]
        elif boundary == "zero":
            D = eye - np.eye(n, k=-1)
        else:
            D = eye - np.roll(eye, -1, axis=1)
    else:
        if boundary == "none":
            D = eye[:-2] - 2 * eye[1:-1] + eye[2:]
        else:
            D = np.eye(n, k=-1) - 2 * eye + np.eye(n, k=1)
            if boundary == "periodic":
                D[0, -1] = D[-1, 0] = 1.0
            elif boundary == "neumann":
                D[0, 0] = D[-1, -1] = -1.0
    return jnp.asarray(D, dtype=jnp.result_type(float))
