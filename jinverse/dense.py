"""Dense linear algebra that does not crash the process: the one guard for every d x d
factorisation or solve in jinverse (issue 19).

**What goes wrong.** On CPU, jaxlib hands dense factorisations and solves to the LAPACK/BLAS of
SciPy's bundled OpenBLAS (``scipy-openblas32`` 0.3.30, 32-bit integers, SciPy 1.17.1). Its
float64 Cholesky of a large matrix ends the process with a segmentation fault; nothing is raised
and nothing is saved. Issue 19 suspected the batched (``vmap``) kernel on a matrix of 2**31
bytes; the probes say otherwise: the unbatched call and ``lax.map`` crash as well, float64
d = 16383 (just under 2**31 bytes) crashes too, while float32 d = 23171 (just over) works. It
looks like OpenBLAS's threaded ``dpotrf`` for large ``n`` (cf. OpenMathLib/OpenBLAS issues 1413
and 2821: segfaults in ``dpotrf_L_parallel``/``dsyrk_thread``), not a 32-bit byte offset.
Probed with ``tests/scripts/probe_dense_linalg.py`` (each case in its own subprocess, A = 2 I +
0.001) with jax 0.10.2, jaxlib 0.10.2, Python 3.11.7 on a 2-core x86-64 CPU:

=========  =======  =====  ==============  ===================  ==========================
op         dtype    d      bytes           mode                 outcome
=========  =======  =====  ==============  ===================  ==========================
cholesky   float64  16384  2**31           vmap (batch of 1)    SIGSEGV
cholesky   float64  16384  2**31           plain (no vmap)      SIGSEGV
cholesky   float64  16384  2**31           lax.map (no vmap)    SIGSEGV
cholesky   float64  16383  2**31 - 262136  plain                SIGSEGV
cholesky   float32  23171  2**31 + 97316   plain                ok (262 s)
trsm       float64  11585  2**30 - 43736   vmap, d x d rhs      ok (34 s)
cho_solve  float64  11585  2**30 - 43736   vmap, d x d rhs      ok (59 s)
solve (LU) float64  11585  2**30 - 43736   vmap, d x d rhs      ok (212 s)
trsm       float64  16384  2**31           vmap / plain, vector ok (9 s / 17 s)
eigh       float64  11585  2**30 - 43736   vmap                 ok (552 s)
=========  =======  =====  ==============  ===================  ==========================

(The last five rows: the fourth session, 2026-12-01, on a machine at load average 8-17, niced.)

From issue 19 (the same versions): float64 d = 14400 Laplace (Cholesky and ``cho_solve``) works;
d = 16384 vmapped ``cho_solve`` aborts (``munmap_chunk(): invalid pointer``), and one unbatched
run there succeeded (so the crash is not deterministic). The solves just under the guard's limit
work, with a full ``d x d`` right-hand side; a triangular solve with one vector at 16384 works.
Not probed for lack of machine time: ``cho_solve`` and ``solve`` at 16384 (the vmapped
``cho_solve`` with a vector did not finish in 25 minutes at load 17), ``eigh`` above the limit
and ``svd`` at any of these sizes (above the limit both are refused, so only sizes below it reach
LAPACK).

So the safe float64 size lies somewhere between 14400 and 16383, and what matters is the size of
the one matrix handed to LAPACK, not the batching. The guard keeps every LAPACK call under
`LAPACK_LIMIT_BYTES` = 1 GiB (float64 d < 11586, float32 d < 16384), with a margin below the
largest size seen to work.

**The guard.** `cholesky`, `solve_triangular` and `cho_solve` below call JAX directly for
matrices under `LAPACK_LIMIT_BYTES`, and above it run a *blocked* algorithm: the factorisation
and triangular solves work on diagonal blocks and panels small enough for LAPACK, and the large
updates are XLA matrix products (64-bit indexing). The results are the same up to rounding, the
functions stay pure and safe under ``jit``/``vmap``, and ``vmap`` over lanes is fine (LAPACK
sees one matrix at a time). `solve`, `eigh` and `svd` have no blocked form here: above the
limit they raise a ``ValueError`` at trace time, naming the size, the memory and what to use
instead. `check_dense` refuses up front, with the numbers, a batch of dense ``d x d`` lanes
that would not fit in memory, instead of leaving the process to be killed by the OS.

**Reproduction**: `REPRODUCTION` below, the snippet of issue 19 (crashes with jax 0.10.2 /
jaxlib 0.10.2 on CPU). ``tests/test_dense.py::test_jax_still_needs_the_guard`` (``slow``) runs it
in a subprocess and fails, saying the guard may be lifted, once it no longer crashes.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float

LAPACK_LIMIT_BYTES = 2**30
"""Matrices of at least this many bytes never reach LAPACK: 1 GiB, below the float64 14400 x 14400
(1.5 GiB) seen to work, above which crashes begin (tests lower it to exercise the blocked and
refusing paths on small matrices; it is read when a function is traced)."""

_DEFAULT_ALTERNATIVE = "a matrix-free or low-rank method"

REPRODUCTION = """\
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
d = 16384                                        # 16384**2 * 8 bytes == 2**31
A = (jnp.eye(d) * 2.0 + 0.001)[None]
one = lambda a: jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(a), True), jnp.eye(d))
jax.jit(jax.vmap(one))(A).block_until_ready()    # SIGSEGV in LAPACK's Cholesky
"""
"""The plain-JAX reproduction of issue 19: the process dies with jax 0.10.2 / jaxlib 0.10.2 on CPU."""


def matrix_bytes(rows: int, cols: int, dtype) -> int:
    """Bytes of one dense ``rows x cols`` matrix of ``dtype``."""
    return int(rows) * int(cols) * np.dtype(dtype).itemsize


def fits_lapack(rows: int, cols: int, dtype) -> bool:
    """Whether a ``rows x cols`` matrix of ``dtype`` is below `LAPACK_LIMIT_BYTES`."""
    return matrix_bytes(rows, cols, dtype) < LAPACK_LIMIT_BYTES


def check_lapack(rows: int, cols: int, dtype, *, what: str, alternative: str = _DEFAULT_ALTERNATIVE) -> None:
    """Raise ``ValueError`` if a ``rows x cols`` ``dtype`` matrix is too large to hand to LAPACK."""
    if not fits_lapack(rows, cols, dtype):
        gib = matrix_bytes(rows, cols, dtype) / 2**30
        raise ValueError(
            f"{what}: got a dense {rows} x {cols} {np.dtype(dtype).name} matrix ({gib:.2f} GiB), expected "
            f"one under {LAPACK_LIMIT_BYTES / 2**30:.2f} GiB: a larger one crashes the process in jaxlib's "
            f"LAPACK (jinverse.dense, issue 19); use {alternative}")


def available_bytes(device=None) -> int | None:
    """Memory free for new arrays on ``device`` (default: JAX's first device), or None if unknown.

    Accelerators report their allocator's limit and use; on CPU it is the host's
    ``MemAvailable`` (Linux), else the free physical pages.
    """
    device = jax.devices()[0] if device is None else device
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_dense(d: int, dtype, *, lanes: int = 1, copies: int = 1, what: str,
                alternative: str = _DEFAULT_ALTERNATIVE, available: int | None = None) -> int:
    """Refuse, before compiling, ``lanes`` lanes that each hold ``copies`` dense ``d x d`` matrices
    when they do not fit in memory.

    Args:
        d: the matrix size (number of unknowns).
        dtype: the matrices' dtype.
        lanes: lanes whose matrices are alive at once (the lanes of one vmapped block).
        copies: dense ``d x d`` matrices per lane alive at once (Hessian, factor, result...).
        what: the caller, for the message (e.g. ``"ji.laplace"``).
        alternative: what to use instead, for the message.
        available: bytes available (default: `available_bytes`; unknown means no check).

    Returns:
        The bytes needed, ``lanes * copies * d * d * itemsize``.

    Raises:
        ValueError: naming ``d``, the lanes, the GiB needed and available, and the alternative.
    """
    need = int(lanes) * int(copies) * matrix_bytes(d, d, dtype)
    available = available_bytes() if available is None else available
    if available is not None and need > available:
        raise ValueError(
            f"{what}: {lanes} lane(s) x {copies} dense {d} x {d} {np.dtype(dtype).name} matrices need "
            f"{need / 2**30:.1f} GiB, expected at most the {available / 2**30:.1f} GiB of memory available; "
            f"use fewer lanes per block (block_size) or {alternative}")
    return need


def _block(d: int, m: int, dtype) -> int:
    """Rows per block so that a ``block x max(d, m)`` panel stays within half the LAPACK limit
    (float64 d = 16384: blocks of 4096 rows)."""
    per_row = max(d, m, 1) * np.dtype(dtype).itemsize
    return int(max(1, min(d, LAPACK_LIMIT_BYTES // 2 // per_row)))


def _mT(x):
    return jnp.swapaxes(x, -1, -2)


def cholesky(a: Float[Array, "*batch d d"]) -> Float[Array, "*batch d d"]:
    """Lower Cholesky factor, as ``jnp.linalg.cholesky`` (NaN where ``a`` is not positive
    definite; the input is symmetrised), blocked above the LAPACK limit."""
    d = a.shape[-1]
    if fits_lapack(d, d, a.dtype):
        return jnp.linalg.cholesky(a)
    a = (a + _mT(a)) / 2
    b = _block(d, d, a.dtype)
    panels = []
    for k0 in range(0, d, b):  # right-looking: factor a diagonal block, solve its panel, update
        k1 = min(k0 + b, d)
        lkk = jnp.linalg.cholesky(a[..., k0:k1, k0:k1], symmetrize_input=False)
        rest = a[..., k1:, k0:k1]
        # L21 = A21 L11⁻ᵀ, then A22 -= L21 L21ᵀ (an XLA product, no LAPACK)
        l21 = lax.linalg.triangular_solve(lkk, rest, left_side=False, lower=True, transpose_a=True)
        if k1 < d:
            a = a.at[..., k1:, k1:].add(-(l21 @ _mT(l21)))
        above = jnp.zeros((*a.shape[:-2], k0, k1 - k0), a.dtype)
        panels.append(jnp.concatenate([above, lkk, l21], axis=-2))
    return jnp.concatenate(panels, axis=-1)


def solve_triangular(a: Float[Array, "*batch d d"], b: Float[Array, "*batch d ..."], *, lower: bool = True,
                     transpose_a: bool = False) -> Float[Array, "*batch d ..."]:
    """``x`` with ``op(a) x = b``, ``op(a) = aᵀ`` if ``transpose_a``; ``b`` is ``(..., d)`` or
    ``(..., d, m)``; blocked when ``a`` or ``b`` is above the LAPACK limit."""
    vector = b.ndim == a.ndim - 1
    bm = b[..., None] if vector else b
    d, m = a.shape[-1], bm.shape[-1]
    if fits_lapack(d, d, a.dtype) and fits_lapack(d, m, bm.dtype):
        x = lax.linalg.triangular_solve(a, bm, left_side=True, lower=lower, transpose_a=transpose_a)
        return x[..., 0] if vector else x
    if not lower:  # an upper a is the transpose of a lower one
        a, lower, transpose_a = _mT(a), True, not transpose_a
    blk = _block(d, m, jnp.result_type(a.dtype, bm.dtype))
    starts = list(range(0, d, blk))
    if transpose_a:  # aᵀ is upper: back substitution, last block first
        starts = starts[::-1]
    xs: dict[int, Array] = {}
    for i0 in starts:
        i1 = min(i0 + blk, d)
        rhs = bm[..., i0:i1, :]
        if not transpose_a and i0 > 0:  # subtract a[i, :i] x[:i]
            rhs = rhs - a[..., i0:i1, :i0] @ jnp.concatenate([xs[j] for j in sorted(xs)], axis=-2)
        if transpose_a and i1 < d:  # subtract a[i:, i]ᵀ x[i:]
            rhs = rhs - _mT(a[..., i1:, i0:i1]) @ jnp.concatenate([xs[j] for j in sorted(xs)], axis=-2)
        xs[i0] = lax.linalg.triangular_solve(a[..., i0:i1, i0:i1], rhs, left_side=True, lower=True,
                                             transpose_a=transpose_a)
    x = jnp.concatenate([xs[j] for j in sorted(xs)], axis=-2)
    return x[..., 0] if vector else x


def cho_solve(c_and_lower: tuple[Array, bool], b: Array) -> Array:
    """``A⁻¹ b`` from a Cholesky factor, as ``jax.scipy.linalg.cho_solve((c, lower), b)``."""
    c, lower = c_and_lower
    d = c.shape[-1]
    m = 1 if b.ndim == c.ndim - 1 else b.shape[-1]
    if fits_lapack(d, d, c.dtype) and fits_lapack(d, m, b.dtype):
        return jax.scipy.linalg.cho_solve((c, lower), b)
    low = c if lower else _mT(c)  # A = L Lᵀ
    return solve_triangular(low, solve_triangular(low, b, lower=True), lower=True, transpose_a=True)


def solve(a: Float[Array, "*batch d d"], b: Array, *, what: str = "jinverse.dense.solve",
          alternative: str = _DEFAULT_ALTERNATIVE) -> Array:
    """``jnp.linalg.solve(a, b)`` (LU); above the LAPACK limit a ``ValueError`` at trace time."""
    d = a.shape[-1]
    check_lapack(d, d, a.dtype, what=what, alternative=alternative)
    if b.ndim == a.ndim:
        check_lapack(d, b.shape[-1], b.dtype, what=what, alternative=alternative)
    return jnp.linalg.solve(a, b)


def eigh(a: Float[Array, "*batch d d"], *, what: str = "jinverse.dense.eigh",
         alternative: str = _DEFAULT_ALTERNATIVE):
    """``jnp.linalg.eigh(a)``; above the LAPACK limit a ``ValueError`` at trace time."""
    check_lapack(a.shape[-1], a.shape[-1], a.dtype, what=what, alternative=alternative)
    return jnp.linalg.eigh(a)


def svd(a: Float[Array, "*batch m n"], *, full_matrices: bool = True, what: str = "jinverse.dense.svd",
        alternative: str = _DEFAULT_ALTERNATIVE):
    """``jnp.linalg.svd(a, full_matrices=...)``; above the LAPACK limit (``a`` or a full ``U``/``V``)
    a ``ValueError`` at trace time."""
    m, n = a.shape[-2:]
    check_lapack(m, n, a.dtype, what=what, alternative=alternative)
    if full_matrices:
        k = max(m, n)
        check_lapack(k, k, a.dtype, what=what, alternative=alternative)
    return jnp.linalg.svd(a, full_matrices=full_matrices)
