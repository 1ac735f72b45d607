"""Truncated SVD: keep the ``k`` largest singular components, batched over observations.

With a regularisation operator ``L`` this is the truncated GSVD in Eldén's standard form (see
`jinverse.linear.spectral`): the null space of ``L`` is always kept.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from . import paramchoice as pc
from .operators import as_operator
from .spectral import SpectralSystem, spectral_system
from .tikhonov import METHODS, as_batch, per_observation, solution_ok, solution_status, solution_theta


class TSVDResult(NamedTuple):
    """Solutions ``x`` (``(*batch, n)``), the truncation index ``k`` of each, its residual norm
    and seminorm ``‖L x‖``."""

    x: Float[Array, "*batch n"]
    k: Int[Array, "*batch"]
    residual_norm: Float[Array, "*batch"]
    solution_norm: Float[Array, "*batch"]

    @property
    def theta(self) -> Array:  # ``x``, ``status`` and ``ok`` under the names of every result
        return solution_theta(self)

    @property
    def status(self) -> Array:
        return solution_status(self)

    @property
    def ok(self) -> Array:
        return solution_ok(self)


@eqx.filter_jit
def _tsvd_batch(system: SpectralSystem, Y, k, noise_std, method, tau):
    s = system.s
    safe = jnp.where(s > 0, s, 1.0)

    def one(y, k_i, sigma):
        beta, perp2 = system.coefficients(y)
        if method == "gcv":
            k_i = pc.choose_k_gcv(s, beta, perp2, system.m, system.p)
        elif method == "lcurve":
            k_i = pc.choose_k_lcurve(s, beta, perp2)
        elif method == "discrepancy":
            k_i = pc.choose_k_discrepancy(s, beta, perp2, sigma, system.m, tau=tau)
        keep = jnp.arange(s.shape[0]) < k_i
        coef = jnp.where(keep, beta / safe, 0.0)
        x = system.solution(y, beta, coef)
        res = jnp.sqrt(pc.tsvd_residual_sq(s, beta, perp2)[k_i])
        return x, k_i, res, jnp.sqrt(jnp.sum(coef * coef))

    sig = noise_std if noise_std is not None else jnp.zeros(Y.shape[:1], Y.dtype)
    return jax.vmap(one)(Y, k, sig)


def tsvd(A, y, *, k, L=None, noise_std=None, tau: float = 1.0, n: int | None = None) -> TSVDResult:
    """Truncated-SVD solution of ``A x ≈ y`` keeping ``k`` components.

    Args:
        A: a dense ``(m, n)`` matrix, a linear function (give ``n``; materialised with
            ``jax.jacfwd``) or a prebuilt `SpectralSystem`.
        y: observations ``(*batch, m)``; each gets its own ``k``.
        k: an integer (or one per observation), or ``"gcv"``, ``"lcurve"``, ``"discrepancy"``
            (smallest ``k`` with ``‖A x_k - y‖ ≤ tau · sqrt(m) · noise_std``).
        L: optional regularisation operator (truncated GSVD).
        noise_std: noise standard deviation, for ``"discrepancy"``.
    """
    system = A if isinstance(A, SpectralSystem) else spectral_system(as_operator(A, n), L)
    r = system.s.shape[0]
    Y, batch_shape = as_batch(y, system.m)
    Yf = Y.reshape(-1, system.m)
    sig = per_observation("noise_std", noise_std, batch_shape)
    if isinstance(k, str):
        if k not in METHODS:
            raise ValueError(f"k: got {k!r}, expected an integer or one of {METHODS}")
        if k == "discrepancy" and sig is None:
            raise ValueError("noise_std: got None, expected the noise standard deviation for k='discrepancy'")
        method, kb = k, jnp.zeros(Yf.shape[:1], jnp.int32)
    else:
        karr = np.asarray(k)
        if not np.issubdtype(karr.dtype, np.integer) or np.any(karr < 0) or np.any(karr > r):
            raise ValueError(f"k: got {k!r}, expected integers in [0, {r}] or a method name")
        method = None
        kb = jnp.broadcast_to(jnp.asarray(karr, jnp.int32), batch_shape).reshape(-1)
    x, kk, res, sol = _tsvd_batch(system, Yf, kb, sig, method, tau)
    return TSVDResult(x.reshape(*batch_shape, -1), kk.reshape(batch_shape), res.reshape(batch_shape),
                      sol.reshape(batch_shape))

