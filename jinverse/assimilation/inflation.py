"""Adaptive multiplicative inflation, estimated from the innovations as the cycle runs.

The forecast covariance a filter should have, ``λ P_f`` (``P_f`` the ensemble's sample
covariance), is estimated at every analysis from the innovation statistics (Desroziers et al.
2005; Li, Kalnay and Miyoshi 2009): with whitened innovations ``d = R^{-1/2}(y - H x̄_f)`` of
``m`` observations and the normalised whitened observed anomalies ``Ŝ`` (so that
``tr(H P_f Hᵀ R⁻¹) = ‖Ŝ‖²``),

    E[dᵀd] = λ ‖Ŝ‖² + m   ⇒   λ_o = (dᵀd - m) / ‖Ŝ‖²,

an unbiased but noisy estimate (variance ``v_o ≈ 2 (λ ‖Ŝ‖² + m)² / (m ‖Ŝ‖⁴)`` for Gaussian
innovations). It is merged with the running estimate as a Gaussian update (Miyoshi 2011),

    λ ← (λ v_o + λ_o v) / (v + v_o),

with a fixed prior variance ``v`` per cycle (a random walk: λ can follow slow changes; the
smaller ``v``, the longer the memory, about ``v_o / v`` cycles) and λ kept in ``[minimum,
maximum]``. The anomalies are multiplied by ``sqrt(λ)`` before the analysis. One scalar λ for the
whole state, estimated from all the observations of each time (left-out observations, with
``std = inf``, count for nothing).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float


class AdaptiveInflation(eqx.Module):
    """Adaptive multiplicative inflation for ``ETKF``, ``EnKF``, ``LETKF`` and ``EnKS``: pass it as their
    ``inflation``, e.g. ``ETKF(inflation=AdaptiveInflation())``; the factor used at each
    observation time is `FilterResult.inflation`.

    ``initial``: the first covariance factor λ (the anomalies are multiplied by ``sqrt(λ)``);
    ``var``: the variance of λ's random walk per cycle (Miyoshi 2011 used ``0.04²`` with a few
    hundred observations per grid point; larger follows faster and wanders more);
    ``minimum``/``maximum``: bounds on λ (1 by default: no deflation).
    """

    initial: float = 1.0
    var: float = 0.03
    minimum: float = 1.0
    maximum: float = 10.0

    def init(self, dtype) -> Array:
        return jnp.asarray(self.initial, dtype)

    def update(self, lam: Array, S: Float[Array, "N m"], d: Float[Array, " m"]) -> Array:
        """λ after the observations of one time: ``S`` the normalised whitened observed anomalies
        of the (uninflated) forecast ensemble, ``d`` the whitened innovation of its mean (zero
        for a left-out observation)."""
        m = jnp.sum(jnp.any(S != 0, axis=0) | (d != 0))  # observations that count
        s2 = jnp.maximum(jnp.sum(S**2), jnp.finfo(S.dtype).tiny)
        lam_o = (jnp.sum(d**2) - m) / s2
        v_o = 2.0 * (lam * s2 + m) ** 2 / (jnp.maximum(m, 1) * s2**2)
        new = (lam * v_o + lam_o * self.var) / (self.var + v_o)
        return jnp.clip(jnp.where(m > 0, new, lam), self.minimum, self.maximum)
