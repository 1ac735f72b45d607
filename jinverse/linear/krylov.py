"""Matrix-free parameter choice: Tikhonov on a Golub-Kahan (Lanczos) bidiagonalisation.

For large ``n`` the SVD of ``A`` is out of reach, but ``k`` steps of Golub-Kahan
bidiagonalisation started at ``y`` (``A V_k = U_{k+1} B_k``, ``y = β₁ U_{k+1} e₁``) give a small
``(k + 1) × k`` problem whose Tikhonov solutions ``x = V_k z`` have *exactly* the residual norm
of the projected one, ``‖B_k z - β₁ e₁‖`` (hybrid LSQR; Chung, Nagy & O'Leary 2008). GCV, the
L-curve and the discrepancy principle are then applied to the SVD of ``B_k``, with the true data
length ``m`` in GCV's trace term. With ``k = rank(A)`` this is the dense answer; in general it is
exact on the Krylov space, which captures the large singular values first. Full
reorthogonalisation keeps the basis orthonormal in floating point.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from . import paramchoice as pc
from .operators import LinearOperator


def bidiagonalize(A: LinearOperator, y, k: int):
    """``(U, B, V, beta1)``: ``k`` Golub-Kahan steps from ``y`` with full reorthogonalisation.

    ``U`` is ``(m, k + 1)``, ``B`` lower bidiagonal ``(k + 1, k)``, ``V`` is ``(n, k)``. A breakdown
    (the Krylov space exhausted) leaves zero columns, which carry zero singular values.
    """
    m, n = A.shape
    tiny = jnp.finfo(y.dtype).tiny ** 0.5

    def normalise(v):
        nv = jnp.linalg.norm(v)
        return jnp.where(nv > tiny, v / jnp.where(nv > tiny, nv, 1.0), 0.0), nv

    beta1 = jnp.linalg.norm(y)
    u0, _ = normalise(y)
    U = jnp.zeros((m, k + 1), y.dtype).at[:, 0].set(u0)
    V = jnp.zeros((n, k), y.dtype)
    alphas = jnp.zeros((k,), y.dtype)
    betas = jnp.zeros((k,), y.dtype)

    # Step j: v_j from Aᵀu_j (orthogonalised against every earlier v), then u_{j+1} from A v_j
    # (against every earlier u); alpha_j and beta_{j+1} are the bidiagonal entries.
    def step(j, state):
        U, V, alphas, betas = state
        v = A.rmatvec(U[:, j])
        v = v - V @ (V.T @ v)
        v = v - V @ (V.T @ v)
        v, alpha = normalise(v)
        u = A.matvec(v)
        u = u - U @ (U.T @ u)
        u = u - U @ (U.T @ u)
        u, beta = normalise(u)
        return U.at[:, j + 1].set(u), V.at[:, j].set(v), alphas.at[j].set(alpha), betas.at[j].set(beta)

    U, V, alphas, betas = jax.lax.fori_loop(0, k, step, (U, V, alphas, betas))
    B = jnp.zeros((k + 1, k), y.dtype)
    B = B.at[jnp.arange(k), jnp.arange(k)].set(alphas).at[jnp.arange(1, k + 1), jnp.arange(k)].set(betas)
    return U, B, V, beta1


@eqx.filter_jit
def krylov_batch(A: LinearOperator, Y, lam, noise_std, method, tau, k: int):
    """Tikhonov with parameter choice on the ``k``-step bidiagonalisation of each observation."""
    m = A.shape[0]

    def one(y, lam_i, sigma):
        _, B, V, beta1 = bidiagonalize(A, y, k)
        Ub, s, Vbt = jnp.linalg.svd(B, full_matrices=False)
        beta = beta1 * Ub[0]  # Ubᵀ (β₁ e₁)
        perp2 = jnp.maximum(beta1**2 - jnp.sum(beta**2), 0.0)
        if method == "gcv":
            lam_i = pc.choose_gcv(s, beta, perp2, m)
        elif method == "lcurve":
            lam_i = pc.choose_lcurve(s, beta, perp2)
        elif method == "discrepancy":
            lam_i = pc.choose_discrepancy(s, beta, perp2, sigma, m, tau=tau)
        coef = s * beta / (s * s + lam_i * lam_i)
        x = V @ (Vbt.T @ coef)
        res = jnp.sqrt(pc.residual_sq(lam_i, s, beta, perp2))
        edge = pc.at_bound(lam_i, method, s) if method is not None else jnp.zeros((), bool)
        return x, lam_i, res, jnp.sqrt(jnp.sum(coef * coef)), edge

    sig = noise_std if noise_std is not None else jnp.zeros(Y.shape[:1], Y.dtype)
    return jax.vmap(one)(Y, lam, sig)
