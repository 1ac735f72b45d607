"""The iterative ensemble Kalman smoother (iEnKS; Bocquet and Sakov 2014), shift 1, single (SDA)
or multiple data assimilation (MDA), as a method of `cycled_filter`.

Each cycle analyses a data-assimilation window of ``lag`` observation intervals that ends at
the newest observation ``y_c``: the ensemble sits at the window start ``t₀``; the analysis
minimises, over the ensemble-space coordinates ``w``,

    J(w) = ½ ‖w‖² + ½ Σ_p β_p ‖(y_p - H_p(M_{t₀→t_p}(x̄₀ + X w))) / σ_p‖²,  X = A / √(N-1)

over the window's observation times ``t_1..t_L`` (``t_L = t_c``), by Gauss-Newton, the model's
tangent linear replaced by the ensemble's finite differences (the transform variant: members
``x̄₀ + X w + √(N-1) X T``, sensitivities ``T⁻¹`` times their observed anomalies).

- SDA (default): only the newest observation, ``β = (0, ..., 0, 1)``: each observation is
  assimilated once, when it enters the window; the older ones are in the prior already.
- MDA (``mda=True``): every observation of the window, with ``β_p = 1/L``; as the window slides
  by one interval each observation is assimilated in ``L`` windows, with weights summing to 1
  (R inflated by ``1/β``). The prior at ``t₀`` then holds the observation at position ``p`` with
  weight ``(L - p)/L`` only, so the analysis reported (filtering at ``t_c``, smoothed at ``t₀``)
  is a second, *balancing* minimisation from the same prior with the weights that complete each
  to 1, ``β_p = p/L`` (Bocquet and Sakov 2014, section 3); the MDA analysis proper
  (``β_p = 1/L``) gives the next window's prior. Two minimisations per cycle. For a linear
  model both the balancing analysis and SDA are the Kalman smoother.

The analysed ensemble at ``t₀`` (the smoothed one, at the observation time leaving the window:
`FilterResult.smoothed`) is forecast through the window (the filtering analysis at ``t_c``,
whose statistics are reported) and, once the window is full, its first interval gives the next
window start. While fewer than ``lag`` intervals have passed the window grows from model step 0.
With ``lag = 1`` this is the iterative EnKF (IEnKF, Sakov, Oliver and Bertino 2012), which for a
linear model is the ETKF.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .enkf import AbstractFilter, forecast


def _sym_powers(H):
    """``H^{-1}``, ``H^{-1/2}`` and ``H^{1/2}`` of a symmetric positive definite matrix."""
    s, V = jnp.linalg.eigh(H)
    return (V / s) @ V.T, (V / jnp.sqrt(s)) @ V.T, (V * jnp.sqrt(s)) @ V.T


class IEnKS(AbstractFilter):
    """iEnKS with window ``lag`` (observation intervals), multiplicative ``inflation`` of the
    anomalies at the window start, at most ``n_iter`` Gauss-Newton iterations, stopped when the
    step ``‖Δw‖`` falls under ``tol``; ``mda``: multiple data assimilation (every observation of
    the window, weights ``1/lag``) instead of single."""

    lag: int = eqx.field(default=1, static=True)
    inflation: float = 1.0
    n_iter: int = eqx.field(default=10, static=True)
    tol: float = 1e-4
    mda: bool = eqx.field(default=False, static=True)

    def init(self, E, m: int = 0):
        L = self.lag
        # the window's last `lag` observations, their stds (inf: none yet) and time indices, and
        # the last analysis trajectory
        window = (jnp.zeros((L, m), E.dtype), jnp.full((L, m), jnp.inf, E.dtype), jnp.zeros(L, jnp.int32))
        return E, jnp.zeros((), jnp.int32), window, jnp.broadcast_to(E, (L, *E.shape))

    def cycle(self, step, obs_every, state, y, obs, key):
        E0, c, (y0, sd, idx), _ = state
        L, N = self.lag, E0.shape[0]
        y0 = jnp.concatenate([y0[1:], y[None]])
        sd = jnp.concatenate([sd[1:], obs.sd[None]])
        idx = jnp.concatenate([idx[1:], jnp.asarray(obs.index, jnp.int32)[None]])
        p = jnp.arange(1, L + 1)
        active = p > L - jnp.minimum(c + 1, L)  # intervals inside the (growing) window
        mean = jnp.mean(E0, axis=0)
        A = self.inflation * (E0 - mean)
        root = jnp.sqrt(N - 1.0)
        eye = jnp.eye(N, dtype=E0.dtype)

        def members(w, T):
            return mean + (w / root) @ A + T @ A

        def trajectory(E):  # (L, N, n): the members at the window's observation times
            def interval(E, act):
                E = jnp.where(act, forecast(step, E, obs_every), E)
                return E, E

            return jax.lax.scan(interval, E, active)[1]

        def observed(traj):
            return jax.vmap(lambda i, E: jax.vmap(obs.at(i).observe)(E))(idx, traj)  # (L, N, m)

        def solve(weight):
            """Gauss-Newton on J with weights β_p ``(L,)``: the final ``w``, ``T`` and trajectory."""
            sd_w = sd / jnp.sqrt(weight)[:, None]  # R / β (inf: no weight)

            def update(w, Tinv, traj):
                Y = observed(traj)
                ym = jnp.mean(Y, axis=1, keepdims=True)
                S = Tinv @ jnp.moveaxis((Y - ym) / (sd_w[:, None] * root), 1, 0).reshape(N, -1)  # d obs / d w
                grad = w - S @ ((y0 - ym[:, 0]) / sd_w).reshape(-1)
                inv, T, Tinv = _sym_powers(eye + S @ S.T)  # the Gauss-Newton Hessian's powers
                dw = inv @ grad
                return w - dw, T, Tinv, jnp.linalg.norm(dw)

            def body(carry):
                i, w, T, Tinv, traj, _ = carry
                w, T, Tinv, size = update(w, Tinv, traj)
                return i + 1, w, T, Tinv, trajectory(members(w, T)), size

            def more(carry):
                i, *_, size = carry
                return (i < self.n_iter) & (size >= self.tol)

            w0 = jnp.zeros(N, E0.dtype)
            carry = (jnp.zeros((), jnp.int32), w0, eye, eye, prior, jnp.asarray(jnp.inf, E0.dtype))
            _, w, T, _, traj, _ = jax.lax.while_loop(more, body, carry)
            return w, T, traj

        prior = trajectory(members(jnp.zeros(N, E0.dtype), eye))
        full = c + 1 >= L
        newest = (p == L).astype(E0.dtype)
        if self.mda:  # balancing: complete every observation to weight 1 (all of them while growing)
            w, T, traj = solve(jnp.where(c >= L, p / L, 1.0))
            # the MDA analysis for the next prior: weights 1/L; the first full window, whose prior
            # holds nothing yet, gives position p the (L - p + 1)/L that earlier windows would have
            _, _, nxt = solve(jnp.where(c >= L, 1.0 / L, (L - p + 1.0) / L))
        else:
            w, T, traj = solve(newest)
            nxt = traj
        smoothed = members(w, T)
        info = {"inflation": jnp.asarray(self.inflation, E0.dtype), "smoothed": smoothed}
        uniform = jnp.full((N,), 1.0 / N, E0.dtype)
        # while the window grows its start stays at step 0: SDA's prior there takes each
        # observation as it comes; MDA's keeps none (its balancing weights are 1 until full)
        start = jnp.where(full, nxt[0], E0 if self.mda else smoothed)
        state = (start, c + 1, (y0, sd, idx), traj)
        return state, (prior[-1], uniform), (traj[-1], uniform), traj[-1], info

    def smoothed_tail(self, state):
        return state[3]
