"""Weak-constraint and hybrid ensemble-variational 4D-Var, and sliding windows: the engine of
`cycled_4dvar` when it is given ``model_std``/``Q``, ``hybrid`` or ``shift``.

Each window is solved in control variables (the control-variable transform of operational
4D-Var): the state at the window start is ``x₀ = x_b + S_B v₀`` with ``B = S_B S_Bᵀ``, and with
model error the states follow ``x_t = M(x_{t-1}) + S_Q v_t`` (t = 1..W, ``Q = S_Q S_Qᵀ`` per model
step: the forcing formulation of weak-constraint 4D-Var, Trémolet 2006). The controls ``v`` have
the prior ``N(0, I)``, so the cost

    J(v) = ½ ‖v‖² + ½ Σ_k ‖(y_k - H(x_{t_k}(v))) / σ_o‖²

is the strong-constraint cost ``½ ‖x₀ - x_b‖²_B + Σ_t ½ ‖η_t‖²_Q + ...`` without inverting B or
Q: a singular B (an ensemble covariance of N - 1 < n directions) or ``Q = 0`` (the strong
constraint) is allowed. `jinverse.solve_map` minimises it, Gauss-Newton by default; for a linear
model its first step is exact.

Hybrid B (Hamill and Snyder 2000; Lorenc 2003): ``B = (1 - β) B_clim + β ρ ∘ P_e``, ``P_e`` the
sample covariance of an ensemble cycled alongside by an ensemble filter (ETKF, EnKF, LETKF) on
the same observations, ``ρ`` an optional Gaspari-Cohn localisation; after each window the
ensemble is recentred on the variational analysis (its anomalies kept).

Sliding windows (``shift < window``): cycle ``c`` analyses the state at step ``c S`` over the
window ``(c S, c S + W]`` and assimilates only the observations no earlier window has (those in
the last ``S`` steps; the first window all of its own): each observation once, as the iEnKS's
single data assimilation (Bocquet and Sakov 2014). The background at ``c S`` is the previous
analysis ``S`` steps on, which has seen the observations up to ``c S + W - S`` already.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..map import solve_map
from ..priors import Gaussian as GaussianPrior
from ..problem import InverseProblem
from .enkf import ETKF, FILTERS, GC_SCALE, LETKF, AbstractFilter, EnKF, NoisyStep, ObsModel, gaspari_cohn


class Hybrid(eqx.Module):
    """The hybrid ensemble-variational background covariance of `cycled_4dvar`:
    ``B = (1 - beta) B_clim + beta ρ ∘ P_e``.

    ``ensemble``: the first ensemble at model step 0, ``(N, n)``, cycled alongside the 4D-Var
    by ``method`` (``'etkf'``, ``'enkf'``, or ``ETKF(...)``, ``EnKF(...)``, ``LETKF(...)``) on
    the same observations (with the same ``model_std`` as its model error) and recentred on the
    variational analysis after each window (``recenter``). ``beta`` in ``[0, 1]``: the weight
    of the ensemble covariance (0: the static ``B_clim``, 1: the ensemble alone, EnVar).
    ``localization``: ``None``, a radius (Gaspari-Cohn taper on the periodic grid of the state
    components, the radius in LETKF's convention: the taper is about ``exp(-1/2)`` there) or an
    ``(n, n)`` correlation matrix ρ. ``key``: for the stochastic EnKF's perturbed observations.
    """

    ensemble: Float[Array, "N n"]
    beta: float = 0.5
    method: AbstractFilter | str = "etkf"
    localization: float | Float[Array, "n n"] | None = None
    recenter: bool = eqx.field(default=True, static=True)
    key: jax.Array | None = None


class ControlWindow(eqx.Module):
    """One window's forward model in control variables ``v = (v₀, v₁, ..., v_W)``: the
    observations of the states at ``obs_every, 2 obs_every, ..., window`` steps (times ``mask``:
    zero where an observation is not assimilated in this window), ``(window // obs_every, m)``."""

    step: Callable
    observe: Callable
    background: Float[Array, " n"]
    b_sqrt: Float[Array, "n r"]  # B = b_sqrt b_sqrtᵀ
    q_sqrt: Float[Array, "n n"] | None  # Q = q_sqrt q_sqrtᵀ per model step; None: strong constraint
    mask: Float[Array, "t 1"] | None
    window: int = eqx.field(static=True)
    obs_every: int = eqx.field(static=True)

    def size(self) -> int:
        n, r = self.b_sqrt.shape
        return r + (0 if self.q_sqrt is None else self.window * n)

    def states(self, v) -> tuple[Array, Array]:
        """``(x₀, (x₁, ..., x_W))`` of the controls ``v``."""
        n, r = self.b_sqrt.shape
        x0 = self.background + self.b_sqrt @ v[:r]
        if self.q_sqrt is None:
            return x0, jax.lax.scan(lambda x, _: (self.step(x),) * 2, x0, None, length=self.window)[1]
        eta = v[r:].reshape(self.window, n) @ self.q_sqrt.T
        return x0, jax.lax.scan(lambda x, e: (self.step(x) + e,) * 2, x0, eta)[1]

    def __call__(self, v: Float[Array, " d"]) -> Float[Array, "t m"]:
        ys = jax.vmap(self.observe)(self.states(v)[1][self.obs_every - 1 :: self.obs_every])
        return ys if self.mask is None else ys * self.mask


def sqrt_psd(C: Float[Array, "n n"]) -> Float[Array, "n n"]:
    """A square root ``S`` with ``S Sᵀ = C`` of a symmetric positive semi-definite matrix (by
    ``eigh``, negative rounding-level eigenvalues set to zero; works traced)."""
    s, V = jnp.linalg.eigh(0.5 * (C + C.T))
    return V * jnp.sqrt(jnp.maximum(s, 0.0))


def checked_psd(name: str, C, n: int) -> np.ndarray:
    """``C`` (a matrix or a function ``v ↦ C v``, materialised) as a symmetric positive
    semi-definite ``(n, n)`` array, or a ValueError naming ``name``."""
    if callable(C):
        C = jax.vmap(C, out_axes=1)(jnp.eye(n))
    C = np.asarray(C, dtype=float)
    if C.shape != (n, n) or not np.all(np.isfinite(C)):
        raise ValueError(
            f"{name}: got shape {C.shape}, expected a finite ({n}, {n}) covariance for a state of size {n}"
        )
    scale = max(float(np.max(np.abs(C))), 1e-300)
    if not np.allclose(C, C.T, rtol=0, atol=1e-10 * scale) or np.linalg.eigvalsh(C).min() < -1e-10 * scale:
        raise ValueError(
            f"{name}: got a matrix that is not symmetric positive semi-definite "
            f"(smallest eigenvalue {np.linalg.eigvalsh(0.5 * (C + C.T)).min():.3g})"
        )
    return C


def localization_matrix(localization, n: int) -> np.ndarray | None:
    """ρ ``(n, n)`` from a `Hybrid`'s ``localization``: a radius on the periodic grid of ``n``
    components (LETKF's convention) or a matrix."""
    if localization is None:
        return None
    if np.ndim(localization) == 0:
        radius = float(localization)
        if not (np.isfinite(radius) and radius > 0):
            raise ValueError(
                f"Hybrid.localization: got {localization!r}, expected a radius > 0, an ({n}, {n}) "
                "matrix or None"
            )
        gap = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
        gap = np.minimum(gap, n - gap)
        return np.asarray(gaspari_cohn(jnp.asarray(gap, dtype=float), radius * GC_SCALE))
    return checked_psd("Hybrid.localization", localization, n)


def checked_hybrid(hybrid: Hybrid, n: int):
    """``(filter, E0, beta, rho, key)`` from a `Hybrid`, checked."""
    if not isinstance(hybrid, Hybrid):
        raise ValueError(f"hybrid: got {type(hybrid).__name__}, expected Hybrid(ensemble, beta=...)")
    E0 = jnp.asarray(hybrid.ensemble, dtype=float)
    if E0.ndim != 2 or E0.shape[0] < 2 or E0.shape[1] != n:
        raise ValueError(
            f"Hybrid.ensemble: got shape {tuple(E0.shape)}, expected (N, {n}) with N >= 2 members"
        )
    beta = hybrid.beta
    if np.ndim(beta) != 0 or not 0.0 <= float(beta) <= 1.0:
        raise ValueError(f"Hybrid.beta: got {beta!r}, expected a weight in [0, 1]")
    flt = hybrid.method
    if isinstance(flt, str) and flt.lower() in ("etkf", "enkf"):
        flt = FILTERS[flt.lower()]()
    if not isinstance(flt, (ETKF, EnKF, LETKF)):
        raise ValueError(
            f"Hybrid.method: got {flt!r}, expected 'etkf', 'enkf', or ETKF(...), EnKF(...), "
            "LETKF(...) (an ensemble filter whose analysis ensemble is recentred)"
        )
    key = jax.random.key(0) if hybrid.key is None else hybrid.key
    return flt, E0, float(beta), localization_matrix(hybrid.localization, n), key


def hybrid_sqrt(E, b_clim, beta, rho):
    """A square root of ``(1 - β) B_clim + β ρ ∘ P_e``, ``P_e`` the sample covariance of ``E``."""
    A = E - jnp.mean(E, axis=0)
    P = A.T @ A / (E.shape[0] - 1.0)
    if rho is not None:
        P = P * rho
    return sqrt_psd((1.0 - beta) * b_clim + beta * P)


def ensemble_setup(hybrid: Hybrid, step, H, obs_std, obs_operator, model_std, b_clim, n: int, m: int):
    """The ``ens`` argument of `control_cycles` from a `Hybrid`: the filter, its `ObsModel`
    (observation positions: the observed components' indices, for LETKF), the first ensemble,
    ``B_clim``, β, ρ, the key and the ensemble's model step (`NoisyStep` with ``model_std``)."""
    flt, E0, beta, rho, key = checked_hybrid(hybrid, n)
    a = None if obs_operator is None or callable(obs_operator) else np.asarray(obs_operator)
    loc: np.ndarray
    if obs_operator is None:
        loc = np.arange(n, dtype=float)
    elif a is not None and a.ndim == 1 and np.issubdtype(a.dtype, np.integer):
        loc = a.astype(float)
    elif isinstance(flt, LETKF):
        raise ValueError(
            "Hybrid.method: got LETKF, expected ETKF or EnKF: LETKF localises by the observed "
            "components' indices and obs_operator is not a set of components"
        )
    else:
        loc = np.zeros(m)
    std = jnp.broadcast_to(jnp.asarray(obs_std, dtype=float), (m,))
    obs = ObsModel(H, std, jnp.asarray(loc), float(n))
    estep = (
        step if model_std is None else NoisyStep(step, jnp.broadcast_to(jnp.asarray(model_std, float), (n,)))
    )
    return (flt, obs, E0, jnp.asarray(b_clim), beta, None if rho is None else jnp.asarray(rho), key, estep)


@eqx.filter_jit
def control_cycles(window: ControlWindow, lik, ys, masks, settings, ens):
    """The cycle loop: per window, the 4D-Var analysis in control variables by `solve_map`
    (from ``v = 0``: the background and no model error), the analysed trajectory, and with an
    ensemble its filter cycles over the window's first ``shift`` steps and the recentring.

    ``ys`` ``(c, t, m)`` and ``masks`` ``(c, t, 1)`` (or None) per cycle; ``settings``:
    ``(optimizer, max_steps, tol, shift, recenter)``; ``ens``: None or ``(flt, obs, E0, b_clim,
    beta, rho, key, ensemble_step)``. Returns per cycle ``(x₀, (x₁..x_W), x_b, status, steps,
    spread)``, the spread that of the ensemble at the next window start (NaN without one).
    """
    optimizer, max_steps, tol, shift, recenter = settings
    prior = GaussianPrior(jnp.zeros(window.size(), window.background.dtype), 1.0)

    def cycle(carry, inputs):
        xb, state, key = carry  # state: the ensemble filter's (its ensemble first), or None
        y, mask = inputs
        w = eqx.tree_at(lambda f: f.background, window, xb)
        if mask is not None:
            w = eqx.tree_at(lambda f: f.mask, w, mask)
        if ens is not None:
            flt, obs, _, b_clim, beta, rho, _, estep = ens
            w = eqx.tree_at(lambda f: f.b_sqrt, w, hybrid_sqrt(state[0], b_clim, beta, rho))
        res = solve_map(
            InverseProblem(w, prior, lik),
            y if mask is None else y * mask,
            optimizer=optimizer,
            max_steps=max_steps,
            tol=tol,
            warn=False,
        )
        x0, xs = w.states(res.theta)
        x_next = xs[shift - 1]
        spread = jnp.asarray(jnp.nan, xb.dtype)
        if ens is not None:
            key, sub = jax.random.split(key)
            for i in range(shift // window.obs_every):  # the filter over the window's first `shift` steps
                state = flt.cycle(estep, window.obs_every, state, y[i], obs, jax.random.fold_in(sub, i))[0]
            E = state[0]
            spread = jnp.sqrt(jnp.mean(jnp.var(E, axis=0, ddof=1)))
            if recenter:
                state = (E - jnp.mean(E, axis=0) + x_next, *state[1:])
        return (x_next, state, key), (x0, xs, xb, res.status, res.num_steps, spread)

    state0, key0 = (None, None) if ens is None else (ens[0].init(ens[2]), ens[6])
    return jax.lax.scan(cycle, (window.background, state0, key0), (ys, masks))[1]
