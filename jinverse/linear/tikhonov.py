"""Tikhonov regularisation: ``min_x ‖A x - y‖² + lam² ‖L x‖²``, batched over observations.

Dense path: one SVD (standard form) or Eldén's standard-form transformation (general form, see
`jinverse.linear.spectral`), then every observation and every ``lam`` costs matrix-vector
products. Matrix-free path: conjugate gradients on the normal equations
``(AᵀA + lam² LᵀL) x = Aᵀ y`` with ``Aᵀ`` from ``jax.linear_transpose``.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from .._batching import check_mesh, default_block_size, stream, tree_bytes
from .._checks import as_float_array, check_finite, check_positive, check_positive_int
from ..status import MAPStatus, finite_status
from . import paramchoice as pc
from .krylov import krylov_batch
from .operators import as_operator
from .spectral import SpectralSystem, spectral_system

METHODS = ("gcv", "lcurve", "discrepancy")


def solution_theta(result) -> Array:
    """A linear solver's ``x`` under the name every other result uses (``theta``)."""
    return result.x


def solution_status(result) -> Array:
    """A linear solver's `jinverse.status.MAPStatus` codes per observation: ``OK``, or
    ``NONFINITE`` where its ``x`` is not finite."""
    return finite_status(result.x, np.ndim(result.residual_norm))


def solution_ok(result) -> Array:
    return solution_status(result) == MAPStatus.OK


class TikhonovResult(NamedTuple):
    """Solutions ``x`` (``(*batch, n)``), the ``lam`` used for each observation (``(*batch,)``),
    the residual norm ``‖A x - y‖`` and the seminorm ``‖L x‖`` of each solution, and
    ``at_bound``: True where a parameter-choice rule ended on the edge of its search interval
    (no interior optimum, or a discrepancy target out of reach), so its ``lam`` is suspect."""

    x: Float[Array, "*batch n"]
    lam: Float[Array, "*batch"]
    residual_norm: Float[Array, "*batch"]
    solution_norm: Float[Array, "*batch"]
    at_bound: Bool[Array, "*batch"]

    @property
    def theta(self) -> Array:  # ``x``, ``status`` and ``ok`` under the names of every result
        return solution_theta(self)

    @property
    def status(self) -> Array:
        return solution_status(self)

    @property
    def ok(self) -> Array:
        return solution_ok(self)


def _check_lam(lam, noise_std):
    if isinstance(lam, str):
        if lam not in METHODS:
            raise ValueError(f"lam: got {lam!r}, expected a positive number or one of {METHODS}")
        if lam == "discrepancy" and noise_std is None:
            raise ValueError("noise_std: got None, expected the noise standard deviation for lam='discrepancy'")
        return lam
    lam = as_float_array("lam", lam)
    check_positive("lam", lam)
    return lam


def as_batch(y, m):
    y = as_float_array("y", y)
    check_finite("y", y)
    if y.ndim < 1 or y.shape[-1] != m:
        raise ValueError(f"y: got shape {y.shape}, expected (*batch, {m})")
    return y, y.shape[:-1]


def per_observation(name, value, batch_shape):
    if value is None:
        return None
    value = as_float_array(name, value)
    check_positive(name, value)
    try:
        return jnp.broadcast_to(value, batch_shape).reshape(-1)
    except ValueError:
        raise ValueError(f"{name}: got shape {value.shape}, expected a scalar or the batch shape {batch_shape}") from None


def choose_lambda(system: SpectralSystem, y, method: str, noise_std=None, tau: float = 1.0):
    """The ``lam`` that ``method`` picks for one observation ``y`` (dense path)."""
    beta, perp2 = system.coefficients(y)
    if method == "gcv":
        return pc.choose_gcv(system.s, beta, perp2, system.m, system.p)
    if method == "lcurve":
        return pc.choose_lcurve(system.s, beta, perp2)
    return pc.choose_discrepancy(system.s, beta, perp2, noise_std, system.m, tau=tau)


def _dense_lanes(operand, lanes):
    """One block of observations on the dense (SVD) path; a lane is ``(y, lam, noise_std)``."""
    system, method, tau = operand

    def one(y, lam_i, sigma):
        beta, perp2 = system.coefficients(y)
        if method is not None:
            lam_i = choose_lambda(system, y, method, sigma, tau)
        s = system.s
        coef = s * beta / (s * s + lam_i * lam_i)
        x = system.solution(y, beta, coef)
        res = jnp.sqrt(pc.residual_sq(lam_i, s, beta, perp2))
        edge = pc.at_bound(lam_i, method, s) if method is not None else jnp.zeros((), bool)
        return x, lam_i, res, jnp.sqrt(jnp.sum(coef * coef)), edge

    return jax.vmap(one)(*lanes)


@eqx.filter_jit
def _cg_batch(A, L, Y, lam, noise_std, tau, tol, maxiter, discrepancy):
    def normal_solve(y, lm):
        def op(x):
            out = A.rmatvec(A.matvec(x))
            Lx = x if L is None else L.matvec(x)
            return out + lm * lm * (Lx if L is None else L.rmatvec(Lx))

        rhs = A.rmatvec(y)
        x, _ = jax.scipy.sparse.linalg.cg(op, rhs, tol=tol, maxiter=maxiter)
        return x

    def residual(x, y):
        return jnp.linalg.norm(A.matvec(x) - y)

    def one(y, lm, sigma):
        if discrepancy:
            # Bisection in log lam on ‖A x_lam - y‖ = tau sqrt(m) sigma; the residual grows with lam.
            target = tau * sigma * jnp.sqrt(A.shape[0])
            scale = jnp.linalg.norm(A.rmatvec(y)) / jnp.maximum(jnp.linalg.norm(y), 1e-300)

            def step(_, ab):
                a, b = ab
                c = 0.5 * (a + b)
                below = residual(normal_solve(y, jnp.exp(c)), y) < target
                return jnp.where(below, c, a), jnp.where(below, b, c)

            lo, hi = jnp.log(scale * 1e-8), jnp.log(scale * 1e2)
            a, b = jax.lax.fori_loop(0, 40, step, (lo, hi))
            lm = jnp.exp(0.5 * (a + b))
            edge = (a - lo < 1e-6) | (hi - b < 1e-6)
        else:
            edge = jnp.zeros((), bool)
        x = normal_solve(y, lm)
        Lx = x if L is None else L.matvec(x)
        return x, lm, residual(x, y), jnp.linalg.norm(Lx), edge

    sig = noise_std if noise_std is not None else jnp.zeros(Y.shape[:1], Y.dtype)
    return jax.vmap(one)(Y, lam, sig)


def tikhonov(A, y, *, lam, L=None, noise_std=None, method: str = "auto", n: int | None = None,
             tau: float = 1.0, tol: float = 1e-10, maxiter: int | None = None,
             krylov_dim: int | None = None, block_size: int | None = None, mesh=None,
             progress=None) -> TikhonovResult:
    """Tikhonov-regularised solution of ``A x ≈ y``: ``min ‖A x - y‖² + lam² ‖L x‖²``.

    Args:
        A: a dense ``(m, n)`` matrix, a linear JAX function of an ``n``-vector (give ``n``), a
            `LinearOperator`, or a prebuilt `SpectralSystem` (which already includes ``L``).
        y: observations ``(*batch, m)``; every observation gets its own ``lam``.
        lam: a positive number (or one per observation), or ``"gcv"``, ``"lcurve"`` (corner
            of the L-curve, maximum curvature) or ``"discrepancy"`` (needs ``noise_std``).
        L: regularisation operator ``(p, n)`` (matrix or linear function), e.g.
            `difference_matrix(n, 1)`; None for standard form ``L = I``.
        noise_std: the noise standard deviation (scalar or per observation) for the discrepancy
            principle ``‖A x - y‖ = tau · sqrt(m) · noise_std``.
        method: ``"dense"`` (SVD; matrix-free operators are materialised with ``jax.jacfwd``),
            ``"cg"`` (matrix-free conjugate gradients on the normal equations; a numeric ``lam``
            or ``"discrepancy"``), ``"krylov"`` (matrix-free, standard form: every rule on a
            ``krylov_dim``-step Golub-Kahan bidiagonalisation, see `jinverse.linear.krylov`) or
            ``"auto"`` (dense unless a matrix-free operator has ``n > 2048``; then krylov for
            GCV and the L-curve, CG otherwise).
        tol, maxiter: CG stopping rule (relative residual) and iteration cap.
        krylov_dim: bidiagonalisation steps for ``"krylov"`` (default ``min(m, n, 100)``).
        block_size, mesh, progress: dense path: observations stream through one compiled
            program in padded blocks (default: what fits ~512 MiB), optionally split across the
            devices of a `jax.sharding.Mesh` (its first axis), as in `ji.solve_map`.

    Returns:
        `TikhonovResult` with leading axes ``batch``.

    Example::

        res = ji.linear.tikhonov(A, y, lam="gcv")          # y: (1000, m) → res.x: (1000, n)
    """
    lam = _check_lam(lam, noise_std)
    chosen = lam if isinstance(lam, str) else None
    if method not in ("auto", "dense", "cg", "krylov"):
        raise ValueError(f"method: got {method!r}, expected 'auto', 'dense', 'cg' or 'krylov'")
    system: SpectralSystem | None  # the dense path's SVD (None: a matrix-free path, on op)
    if isinstance(A, SpectralSystem):
        if L is not None:
            raise ValueError("L: got a matrix with a prebuilt SpectralSystem, which already includes L")
        if method in ("cg", "krylov"):
            raise ValueError(f"method: got {method!r} with a SpectralSystem, expected 'dense' or 'auto'")
        op, system, m = None, A, A.m
    else:
        op = as_operator(A, n)
        if method == "auto":
            method = ("dense" if op.is_dense or op.shape[1] <= 2048
                      else "krylov" if chosen in ("gcv", "lcurve") and L is None else "cg")
        system = spectral_system(op, L) if method == "dense" else None
        m = op.shape[0]
    Y, batch_shape = as_batch(y, m)
    Yf = Y.reshape(-1, m)
    B = Yf.shape[0]
    sig = per_observation("noise_std", noise_std, batch_shape)
    lam_b = jnp.zeros((B,), Yf.dtype) if chosen else per_observation("lam", lam, batch_shape)

    if system is not None:
        axis = check_mesh(mesh, None)
        sig_b = sig if sig is not None else jnp.zeros((B,), Yf.dtype)
        n_dev = 1 if mesh is None else mesh.shape[axis]
        size = block_size or default_block_size(tree_bytes(Yf[:1]) * 4 + 8 * system.s.size, n_dev)
        out = stream(_dense_lanes, (system, chosen, tau), (Yf, lam_b, sig_b), num_lanes=B,
                     block_size=size, mesh=mesh, axis=axis, progress=progress, label="Tikhonov")
    else:
        assert op is not None  # only a SpectralSystem leaves op None, and it is the system
        if method == "krylov":
            if L is not None:
                raise ValueError("L: method='krylov' is for standard form; use 'dense' or 'cg' with L")
            k = check_positive_int("krylov_dim", krylov_dim or min(*op.shape, 100))
            out = krylov_batch(op, Yf, lam_b, sig, chosen, tau, min(k, *op.shape))
        else:
            if chosen in ("gcv", "lcurve"):
                raise ValueError(f"lam: got {chosen!r} with method='cg'; GCV and the L-curve need the "
                                 "spectrum: use method='krylov' or 'dense' (or a numeric lam / 'discrepancy')")
            Lop = None if L is None else as_operator(L, op.shape[1], name="L")
            maxiter = maxiter or 10 * op.shape[1]
            out = _cg_batch(op, Lop, Yf, lam_b, sig, tau, tol, maxiter, chosen == "discrepancy")
    x, lam_out, res, sol, edge = out
    return TikhonovResult(x.reshape(*batch_shape, -1), lam_out.reshape(batch_shape),
                          res.reshape(batch_shape), sol.reshape(batch_shape), edge.reshape(batch_shape))
