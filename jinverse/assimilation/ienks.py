"""The iterative ensemble Kalman smoother (iEnKS; Bocquet and Sakov 2014), single data
assimilation, shift 1, as a method of `cycled_filter`.

Each cycle assimilates the newest observation ``y_c`` over a data-assimilation window of
``lag`` observation intervals that ends at it: the ensemble sits at the window start ``t₀``;
the analysis minimises, over the ensemble-space coordinates ``w``,

    J(w) = ½ ‖w‖² + ½ ‖(y_c - H(M_{t₀→t_c}(x̄₀ + X w))) / σ‖²,  X = A / √(N-1)

by Gauss-Newton, the model's tangent linear replaced by the ensemble's finite differences
(the transform variant: members ``x̄₀ + X w + √(N-1) X T``, sensitivities ``T⁻¹`` times their
observed anomalies). The analysed ensemble at ``t₀`` (the smoother's) is forecast to
``t_c`` (the filtering analysis, whose statistics are reported) and, once the window is full,
one interval on to the next window start. While fewer than ``lag`` intervals have passed the
window grows from model step 0. With ``lag = 1`` this is the iterative EnKF (IEnKF, Sakov,
Oliver and Bertino 2012), which for a linear model is the ETKF.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .enkf import AbstractFilter, forecast


def _sym_powers(H):
    """``H^{-1}``, ``H^{-1/2}`` and ``H^{1/2}`` of a symmetric positive definite matrix."""
    s, V = jnp.linalg.eigh(H)
    return (V / s) @ V.T, (V / jnp.sqrt(s)) @ V.T, (V * jnp.sqrt(s)) @ V.T


class IEnKS(AbstractFilter):
    """iEnKS-SDA with window ``lag`` (observation intervals), multiplicative ``inflation`` of the
    anomalies at the window start, at most ``n_iter`` Gauss-Newton iterations, stopped when the
    step ``‖Δw‖`` falls under ``tol``."""

    lag: int = 1
    inflation: float = 1.0
    n_iter: int = 10
    tol: float = 1e-4

    def init(self, E):
        return E, jnp.zeros((), jnp.int32)

    def cycle(self, step, obs_every, state, y, obs, key):
        E0, c = state
        N = E0.shape[0]
        ell = jnp.minimum(c + 1, self.lag)  # intervals from the window start to y_c
        n_steps = ell * obs_every
        mean = jnp.mean(E0, axis=0)
        A = self.inflation * (E0 - mean)
        root = jnp.sqrt(N - 1.0)
        eye = jnp.eye(N, dtype=E0.dtype)

        def members(w, T):
            return mean + (w / root) @ A + T @ A

        def update(w, Tinv, Ey):
            """One Gauss-Newton step from the members' images ``Ey`` at t_c."""
            Y = jax.vmap(obs.observe)(Ey)
            ym = jnp.mean(Y, axis=0)
            S = Tinv @ (Y - ym) / (obs.sd * root)  # (N, m): d obs / d w
            grad = w - S @ ((y - ym) / obs.sd)
            inv, T, Tinv = _sym_powers(eye + S @ S.T)  # the Gauss-Newton Hessian's powers
            dw = inv @ grad
            return w - dw, T, Tinv, jnp.linalg.norm(dw)

        Ef = forecast(step, members(jnp.zeros(N, E0.dtype), eye), n_steps)

        def body(carry):
            i, w, T, Tinv, Ey, _ = carry
            w, T, Tinv, size = update(w, Tinv, Ey)
            return i + 1, w, T, Tinv, forecast(step, members(w, T), n_steps), size

        def more(carry):
            i, *_, size = carry
            return (i < self.n_iter) & (size >= self.tol)

        w0 = jnp.zeros(N, E0.dtype)
        carry = (jnp.zeros((), jnp.int32), w0, eye, eye, Ef, jnp.asarray(jnp.inf, E0.dtype))
        _, w, T, _, Ea, _ = jax.lax.while_loop(more, body, carry)
        # Ea: the final iterate's members at t_c, the filtering analysis
        E0a = members(w, T)
        E1 = forecast(step, E0a, obs_every)
        full = c + 1 >= self.lag
        uniform = jnp.full((N,), 1.0 / N, E0.dtype)
        info = {"inflation": jnp.asarray(self.inflation, E0.dtype)}
        return (jnp.where(full, E1, E0a), c + 1), (Ef, uniform), (Ea, uniform), Ea, info
