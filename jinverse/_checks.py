"""Host-side argument checks: clear errors before anything is compiled.

Each check names the argument, what it got and what was expected. Values that are
tracers (a module built inside ``jit``) cannot be inspected and are let through.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import dense


def is_concrete(x) -> bool:
    """True when ``x`` holds values we can look at (not a tracer)."""
    return not isinstance(x, jax.core.Tracer)


def _describe(a) -> str:
    a = np.asarray(a)
    if a.size <= 6:
        return repr(a.tolist())
    return f"an array of shape {a.shape} (min {a.min()!r}, max {a.max()!r})"


def as_float_array(name: str, value, *, allow_none: bool = False):
    """Convert ``value`` to a floating JAX array, or raise a TypeError naming ``name``."""
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{name}: got None, expected a number or an array of numbers")
    if isinstance(value, jax.core.Tracer):
        return value if jnp.issubdtype(value.dtype, jnp.inexact) else value.astype(float)
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise TypeError(f"{name}: got {type(value).__name__}, expected an array of numbers") from exc
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise TypeError(f"{name}: got dtype {arr.dtype}, expected real numbers")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name}: got complex dtype {arr.dtype}, expected real numbers")
    out = jnp.asarray(value)
    if not jnp.issubdtype(out.dtype, jnp.floating):
        out = out.astype(jnp.result_type(float))
    return out


def check_finite(name: str, value) -> None:
    if value is None or not is_concrete(value):
        return
    arr = np.asarray(value)
    if arr.dtype != object and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name}: got {bad} non-finite value(s) (NaN or inf), expected finite numbers")


def check_positive(name: str, value) -> None:
    """Raise ValueError unless every entry of ``value`` is finite and > 0."""
    if value is None or not is_concrete(value):
        return
    check_finite(name, value)
    arr = np.asarray(value)
    if np.any(arr <= 0):
        raise ValueError(f"{name}: got {_describe(arr)}, expected values > 0")


def check_positive_definite(name: str, matrix) -> None:
    if not is_concrete(matrix):
        return
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{name}: got shape {m.shape}, expected a square matrix (n, n)")
    check_finite(name, m)
    if not np.allclose(m, m.T, rtol=1e-10, atol=1e-12 * max(1.0, float(np.abs(m).max()))):
        raise ValueError(f"{name}: got a non-symmetric matrix, expected a symmetric positive-definite one")
    if not dense.fits_lapack(m.shape[0], m.shape[1], m.dtype):  # NumPy's LAPACK Cholesky can crash there too (issue 19)
        ok = bool(np.all(np.isfinite(np.asarray(jax.jit(dense.cholesky)(jnp.asarray(m))))))
    else:
        try:
            np.linalg.cholesky(m)
            ok = True
        except np.linalg.LinAlgError:
            ok = False
    if not ok:
        raise ValueError(f"{name}: got a matrix that is not positive definite, expected a symmetric "
                         "positive-definite one")


def check_key(name: str, key) -> None:
    """Raise TypeError unless ``key`` is a JAX PRNG key (typed or raw uint32[2])."""
    if key is None:
        raise TypeError(f"{name}: got None, expected a JAX PRNG key, e.g. jax.random.key(0)")
    if isinstance(key, jax.Array) or isinstance(key, jax.core.Tracer):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            return
        if key.dtype == jnp.uint32 and key.shape[-1:] == (2,):
            return
    raise TypeError(
        f"{name}: got {type(key).__name__}"
        + (f" of dtype {key.dtype} and shape {key.shape}" if hasattr(key, "dtype") else "")
        + ", expected a JAX PRNG key, e.g. jax.random.key(0)"
    )


def check_positive_int(name: str, value, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: got {value!r} ({type(value).__name__}), expected an integer >= {minimum}")
    if value < minimum:
        raise ValueError(f"{name}: got {value}, expected an integer >= {minimum}")
    return int(value)
