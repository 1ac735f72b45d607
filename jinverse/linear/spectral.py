"""The dense spectral decomposition that Tikhonov and truncated SVD share.

General form (a regularisation operator ``L``) is brought to standard form by Eldén's
transformation (Hansen 1998, §2.3): with ``L = U_L Σ_L V_Lᵀ``, ``N`` a basis of the null space of
``L`` and ``L⁺`` its pseudo-inverse on the rest, every ``x = N a + L⁺ w`` has ``‖L x‖ = ‖w‖``; the
unregularised part ``a`` is solved exactly, which projects the data off ``range(A N)`` and leaves
a standard-form problem in ``w`` with operator ``Ā = (I - P_{AN}) A L⁺``. One SVD of ``Ā`` then
gives every solution as ``x = K y + G (φ ⊙ β / s)`` for filter factors ``φ`` and ``β = Ūᵀ y``.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .. import dense
from .operators import as_operator

# above jaxlib's LAPACK limit (issue 19) the dense SVD is refused with this advice
_WHAT, _INSTEAD = "ji.linear.spectral_system", "a matrix-free operator (ji.linear.tikhonov solves by CG)"


class SpectralSystem(eqx.Module):
    """The SVD-based representation of ``min ‖A x - y‖² + lam² ‖L x‖²`` for every ``y`` and ``lam``.

    Build with `spectral_system(A, L)` once and pass it as ``A`` to `tikhonov`/`tsvd` to reuse it.
    """

    s: Float[Array, " r"]  # singular values of the standard-form operator, decreasing
    U: Float[Array, "m r"]  # its left singular vectors
    G: Float[Array, "n r"]  # maps standard-form coefficients to x
    QN: Float[Array, "m p"] | None  # orthonormal basis of range(A N) (unregularised directions)
    K: Float[Array, "n m"] | None  # y ↦ the unregularised part of x
    m: int = eqx.field(static=True)
    n: int = eqx.field(static=True)
    p: int = eqx.field(static=True)

    def coefficients(self, y: Float[Array, " m"]):
        """``(beta, perp2)``: ``Ūᵀ y`` and the squared norm of the part of ``y`` nothing can fit."""
        if self.QN is not None:  # the part of y in range(A N) is fitted exactly
            y = y - self.QN @ (self.QN.T @ y)
        beta = self.U.T @ y
        r = y - self.U @ beta
        return beta, jnp.sum(r * r)

    def solution(self, y, beta, coef):
        """``x = K y + G coef`` where ``coef = φ β / s`` (filtered standard-form coefficients)."""
        x = self.G @ coef
        if self.K is not None:
            x = x + self.K @ y
        return x


def spectral_system(A, L=None) -> SpectralSystem:
    """Decompose a dense ``A`` (``m × n``) with an optional regularisation matrix ``L`` (``p × n``).

    Raises a ValueError when the null spaces of ``A`` and ``L`` meet (the problem is then not
    regularised in those directions).
    """
    A = as_operator(A).to_dense()
    m, n = A.shape
    if L is None:
        U, s, Vt = dense.svd(A, full_matrices=False, what=_WHAT, alternative=_INSTEAD)
        return SpectralSystem(s, U, Vt.T, None, None, m, n, 0)
    L = as_operator(L, n, name="L").to_dense()
    if L.shape[1] != n:
        raise ValueError(f"L: got shape {L.shape}, expected (p, {n}) to match A of shape {A.shape}")
    _, sL, VLt = dense.svd(L, full_matrices=True, what=_WHAT, alternative=_INSTEAD)
    sL_host = np.asarray(sL)
    rank = int(np.sum(sL_host > max(L.shape) * np.finfo(sL_host.dtype).eps * sL_host[0]))
    Lpinv = VLt[:rank].T / sL[:rank]  # n × rank, with ‖L Lpinv w‖ = ‖w‖
    ALp = A @ Lpinv
    if rank == n:
        U, s, Vt = dense.svd(ALp, full_matrices=False, what=_WHAT, alternative=_INSTEAD)
        return SpectralSystem(s, U, Lpinv @ Vt.T, None, None, m, n, 0)
    N = VLt[rank:].T  # n × k basis of null(L)
    dense.check_lapack(m, N.shape[1], A.dtype, what=_WHAT, alternative=_INSTEAD)
    QN, RN = jnp.linalg.qr(A @ N)
    rdiag = np.abs(np.diag(np.asarray(RN)))
    if rdiag.min() <= 1e3 * np.finfo(rdiag.dtype).eps * max(1.0, float(np.abs(np.asarray(A)).max())) * m:
        raise ValueError("A, L: the null spaces of A and L intersect, so the problem is not regularised "
                         "there; expected null(A) ∩ null(L) = {0}")
    K = N @ jnp.linalg.solve(RN, QN.T)  # N (A N)⁺
    Abar = ALp - QN @ (QN.T @ ALp)
    U, s, Vt = dense.svd(Abar, full_matrices=False, what=_WHAT, alternative=_INSTEAD)
    G = (Lpinv - K @ ALp) @ Vt.T
    return SpectralSystem(s, U, G, QN, K, m, n, n - rank)
