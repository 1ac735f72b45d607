"""Ensemble analysis steps: stochastic EnKF, ETKF, LETKF and a bootstrap particle filter.

Each filter is an `equinox.Module` holding its settings, with one pure method
``analyse(E, w, y, obs, key) -> (E_next, w_next, E_stat, w_stat)``: ``E`` is the forecast
ensemble ``(N, n)`` (members in rows) with weights ``w`` (summing to one; equal except in the
particle filter), ``y`` one observation ``(m,)`` and ``obs`` an `ObsModel` (the observation
operator, the observation-error std per component, and the observation positions for
localisation). ``(E_next, w_next)`` is the analysis ensemble that is forecast next;
``(E_stat, w_stat)`` give the analysis mean and spread (the weighted particles before
resampling for the particle filter, the analysis ensemble otherwise). No host work: safe under
``jit``/``vmap``/``lax.scan``.

Conventions (Hunt, Kostelich and Szunyogh 2007; Sakov and Oke 2008): anomalies
``A = E - mean`` are multiplied by ``inflation`` before each analysis (multiplicative prior
inflation; DAPPER's ``infl`` multiplies the analysis anomalies instead, the same thing one
forecast later). R is diagonal, ``diag(std²)``; everything is done in observation space
whitened by it, in the ensemble space of size N (an N × N eigendecomposition per analysis,
per grid point for the LETKF).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .inflation import AdaptiveInflation


class TimeVarying(eqx.Module):
    """An observation operator that changes with the observation time: ``fn(i, x) -> (m,)``,
    ``i`` the observation time's index (``0..k-1``, an integer array: index arrays with it, or
    branch with ``jnp.where``/``lax.switch``), ``x`` one state ``(n,)``. The number of
    observations ``m`` is fixed; leave out some at a time with NaN observations."""

    fn: Callable

    def __call__(self, i, x):
        return self.fn(i, x)


class ObsModel(eqx.Module):
    """What an analysis needs to know about the observations of one time.

    ``operator``: ``x ↦ H(x)`` on one state ``(n,)`` → ``(m,)``, or a `TimeVarying` operator;
    ``std``: observation-error std per component ``(m,)``, or per time and component ``(k, m)``
    (``inf`` for an observation left out); ``locations``: each observation's position ``(m,)``
    on the state's grid (state component ``i`` sits at ``i``); ``period``: the domain's period
    (the state size for Lorenz-96), ``inf`` for a non-periodic domain; ``index``: the
    observation time this model is at (`at` moves it). Analyses call `observe` and read `sd`.
    """

    operator: Callable
    std: Float[Array, "*k m"]
    locations: Float[Array, " m"]
    period: float = eqx.field(static=True)
    index: Int[Array, ""] | int = 0

    def at(self, i) -> ObsModel:
        """The same observations at observation time ``i``."""
        return ObsModel(self.operator, self.std, self.locations, self.period, i)

    def observe(self, x: Float[Array, " n"]) -> Float[Array, " m"]:
        if isinstance(self.operator, TimeVarying):
            return self.operator(self.index, x)
        return self.operator(x)

    def mask(self, y: Float[Array, " m"]) -> tuple[Array, ObsModel]:
        """``(y, obs)`` with the NaN observations left out: ``y`` zero and the std ``inf`` there
        (an analysis gives them no weight)."""
        miss = jnp.isnan(y)
        std = jnp.where(miss, jnp.inf, self.sd)
        return jnp.where(miss, 0.0, y), ObsModel(self.operator, std, self.locations, self.period, self.index)

    @property
    def sd(self) -> Float[Array, " m"]:
        """The observation-error std at this time ``(m,)``."""
        return self.std if self.std.ndim == 1 else self.std[self.index]


GC_SCALE = (10.0 / 3.0) ** 0.5  # GC half-width over the radius where the taper is ~exp(-1/2)


def gaspari_cohn(distance: Float[Array, "*shape"], radius) -> Float[Array, "*shape"]:
    """Gaspari and Cohn's (1999, eq. 4.10) compactly supported 5th-order taper: 1 at distance
    0, zero from ``2 radius`` on (``radius`` is the half-width ``c``)."""
    r = jnp.abs(distance) / radius
    inner = (((-0.25 * r + 0.5) * r + 0.625) * r - 5.0 / 3.0) * r**2 + 1.0
    rs = jnp.where(r > 0, r, 1.0)
    outer = ((((r / 12.0 - 0.5) * r + 0.625) * r + 5.0 / 3.0) * r - 5.0) * r + 4.0 - 2.0 / (3.0 * rs)
    return jnp.where(r <= 1.0, inner, jnp.where(r < 2.0, outer, 0.0))


def centre(X: Float[Array, "N d"], members: Bool[Array, " N"] | None = None):
    """``(mean, X - mean, N)`` over the members: all rows, or those where ``members`` is true
    (a padded ensemble of a mixed-size batch; the other rows get zero anomalies and no say)."""
    if members is None:
        mean = jnp.mean(X, axis=0)
        return mean, X - mean, X.shape[0]
    on = members[:, None]
    N = jnp.sum(members).astype(X.dtype)
    mean = jnp.sum(jnp.where(on, X, 0.0), axis=0) / N
    return mean, jnp.where(on, X - mean, 0.0), N


def member_weights(members: Bool[Array, " N"] | None, N: int, dtype) -> Array:
    """Equal weights over the members (all ``N`` rows, or those where ``members`` is true)."""
    if members is None:
        return jnp.full((N,), 1.0 / N, dtype)
    return members.astype(dtype) / jnp.sum(members).astype(dtype)


def _anomalies(E, inflation, members=None):
    mean, A, N = centre(E, members)
    return mean, inflation * A, N


def _whitened_obs(E, y, obs: ObsModel, members=None):
    """Normalised whitened observation anomalies ``Ŝ = (Y - ȳ) / (σ √(N-1))`` ``(N, m)`` and
    the whitened innovation ``(y - ȳ) / σ``, with ``Y`` the observed ensemble (over the
    ``members``: zero rows for the padding)."""
    Y = jax.vmap(obs.observe)(E)
    ym, dY, N = centre(Y, members)
    S = dY / (obs.sd * jnp.sqrt(N - 1.0))
    return S, (y - ym) / obs.sd, Y


def ensemble_transform(S, d):
    """ETKF in ensemble space: mean weights ``w = (I + Ŝ Ŝᵀ)⁻¹ Ŝ d`` (to multiply the normalised
    anomalies) and the symmetric square root ``T = (I + Ŝ Ŝᵀ)^{-1/2}`` (mean-preserving)."""
    s, V = jnp.linalg.eigh(S @ S.T)
    s = jnp.maximum(s, 0.0)
    w = V @ ((V.T @ (S @ d)) / (1.0 + s))
    T = (V / jnp.sqrt(1.0 + s)) @ V.T
    return w, T


def forecast(step, E: Float[Array, "N n"], steps) -> Float[Array, "N n"]:
    """Every member ``steps`` model steps on (members vmapped; ``steps`` may be traced)."""
    return jax.vmap(lambda x: jax.lax.fori_loop(0, steps, lambda _, z: step(z), x))(E)


class NoisyStep(eqx.Module):
    """A model step with additive model error: ``x ↦ step(x) + η``, ``η ~ N(0, diag(std²))`` per
    model step (Q = diag(std²)); what ``cycled_filter(..., model_std=...)`` forecasts with."""

    step: Callable
    std: Float[Array, " n"]

    def __call__(self, x, key):
        return self.step(x) + self.std * jax.random.normal(key, x.shape, x.dtype)

    def forecast(self, E: Float[Array, "N n"], steps, key: PRNGKeyArray) -> Float[Array, "N n"]:
        """Every member ``steps`` noisy steps on, each member with its own noise."""
        def one(x, k):
            return jax.lax.fori_loop(0, steps, lambda i, z: self(z, jax.random.fold_in(k, i)), x)

        return jax.vmap(one)(E, jax.random.split(key, E.shape[0]))


def forecast_members(step, E, obs_every: int, key: PRNGKeyArray) -> tuple[Array, PRNGKeyArray]:
    """The forecast ensemble ``obs_every`` model steps on, and the key left for the analysis
    (a `NoisyStep`'s model error draws from its own)."""
    if isinstance(step, NoisyStep):
        k_model, key = jax.random.split(key)
        return step.forecast(E, obs_every, k_model), key
    return forecast(step, E, obs_every), key


class AbstractFilter(eqx.Module):
    """A cycled ensemble method. ``init(E0) -> state``; ``cycle(step, obs_every, state, y, obs,
    key) -> (state, (E_f, w_f), (E_a, w_a), E_next, info)``: one observation time, with the
    forecast and analysis (weighted) ensembles there for the statistics, the analysis ensemble
    that carries on, and ``info``, a dict with the ``"inflation"`` factor used and, for a
    smoother, ``"smoothed"``: the ensemble at the observation time leaving its lag (final).
    Filters only write ``analyse(E, w, y, obs, key) -> (E_next, w_next, E_stat, w_stat)``,
    called after ``obs_every`` model steps of every member; smoothers override ``cycle`` (and
    ``smoothed_tail(state)``, the last ``lag`` times' smoothed ensembles).

    ``members``: which rows of the ensemble are members, the others padding with no influence
    (``None``: all). `cycled_filter` sets it for a batch of experiments with different ensemble
    sizes, padded to the largest, for a method with ``pads_members`` (one that honours it)."""

    members: Bool[Array, " N"] | None = eqx.field(default=None, kw_only=True)
    pads_members: ClassVar[bool] = False

    def init(self, E, m: int = 0):
        """The state before the first cycle from the first ensemble (``m``: observations per time)."""
        return E, member_weights(self.members, E.shape[0], E.dtype), inflation_state(self, E.dtype)

    def cycle(self, step, obs_every: int, state, y, obs: ObsModel, key: PRNGKeyArray):
        E, w, s = state
        E, key = forecast_members(step, E, obs_every, key)
        flt, s, factor = adapted(self, s, E, y, obs)
        En, wn, Es, ws = flt.analyse(E, w, y, obs, key)
        return (En, wn, s), (E, w), (Es, ws), En, {"inflation": factor}

    def analyse(self, E, w, y, obs: ObsModel, key: PRNGKeyArray):
        raise NotImplementedError

    def smoothed_tail(self, state):
        return None


def inflation_state(flt, dtype) -> Array:
    """The adaptive inflation's first λ, or a placeholder for a fixed inflation."""
    infl = getattr(flt, "inflation", None)
    return infl.init(dtype) if isinstance(infl, AdaptiveInflation) else jnp.zeros((), dtype)


def adapted(flt, s, E, y, obs: ObsModel):
    """``(filter, s, factor)``: the filter with this time's anomaly inflation factor (an
    `AdaptiveInflation` updated from the forecast ensemble ``E``'s innovations), the new
    inflation state and the factor (NaN for a method without inflation)."""
    infl = getattr(flt, "inflation", None)
    if isinstance(infl, AdaptiveInflation):
        S, d, _ = _whitened_obs(E, y, obs, flt.members)
        s = infl.update(s, S, d)
        factor = jnp.sqrt(s)
        return eqx.tree_at(lambda f: f.inflation, flt, factor), s, factor
    return flt, s, jnp.asarray(jnp.nan if infl is None else infl, E.dtype)


def etkf_transform(E: Float[Array, "N n"], y, obs: ObsModel, inflation, members=None) -> tuple[Array, Array, Array]:
    """``(mean, A, W)`` with the ETKF analysis ``mean + W A``: ``A`` the forecast anomalies times
    ``inflation``, ``W = 1 wᵀ / √(N-1) + T`` (mean weights and symmetric square root). A
    smoother applies the same ``W`` to the (uninflated) anomalies of its earlier states. With
    ``members``, over those rows only: the padding's anomalies and ``Ŝ`` rows are zero, so ``W``
    is block diagonal up to the mean weights, and the padding lands on the analysis mean."""
    mean, A, N = _anomalies(E, inflation, members)
    S, d, _ = _whitened_obs(mean + A, y, obs, members)
    wm, T = ensemble_transform(S, d)
    return mean, A, wm[None, :] / jnp.sqrt(N - 1.0) + T


class ETKF(AbstractFilter):
    """Ensemble transform Kalman filter (square root, symmetric transform; DAPPER's
    ``EnKF('Sqrt')``): deterministic, the analysis ensemble has exactly the Kalman analysis mean
    and covariance of the (inflated) forecast ensemble's sample covariance for a linear H."""

    inflation: float | AdaptiveInflation = 1.0
    pads_members: ClassVar[bool] = True

    def analyse(self, E, w, y, obs, key):
        mean, A, W = etkf_transform(E, y, obs, self.inflation, self.members)
        Ea = mean + W @ A
        return Ea, w, Ea, w


class EnKF(AbstractFilter):
    """Stochastic ensemble Kalman filter (perturbed observations; Burgers et al. 1998): member
    ``i`` is updated with ``y + ε_i``, ``ε ~ N(0, R)`` centred over the ensemble (as DAPPER's
    ``EnKF('PertObs')``). The gain is the ensemble gain, applied in ensemble space."""

    inflation: float | AdaptiveInflation = 1.0
    pads_members: ClassVar[bool] = True

    def analyse(self, E, w, y, obs, key):
        mean, A, N = _anomalies(E, self.inflation, self.members)
        Ef = mean + A
        S, _, Y = _whitened_obs(Ef, y, obs, self.members)
        # member i's perturbation is row i of one draw (rows do not depend on how many there
        # are), centred over the members: a padded ensemble perturbs its members as a run alone
        eps = centre(jax.random.normal(key, Y.shape, Y.dtype), self.members)[1]
        eps = eps * jnp.isfinite(obs.sd)  # none for a left-out observation
        D = (y - Y) / obs.sd + eps  # whitened perturbed innovations (N, m)
        m = S.shape[1]
        # symmetric eigendecompositions, not LU solves: with XLA's CPU LU a 2000-cycle Lorenz-96 run
        # (N = m = 40) took 2-11 s instead of 0.3 s on the shared 2-core machine
        if S.shape[0] <= m:  # gain in ensemble space: (I + Ŝ Ŝᵀ)⁻¹ Ŝ, N × N
            s, V = jnp.linalg.eigh(S @ S.T)
            G = V @ ((V.T @ (S @ D.T)) / (1.0 + jnp.maximum(s, 0.0))[:, None])  # (N, N)
            Ea = Ef + G.T @ A / jnp.sqrt(N - 1.0)
        else:  # the same, Ŝ (I + Ŝᵀ Ŝ)⁻¹, m × m
            s, V = jnp.linalg.eigh(S.T @ S)
            X = V @ ((V.T @ D.T) / (1.0 + jnp.maximum(s, 0.0))[:, None])  # (m, N)
            Ea = Ef + X.T @ (S.T @ A) / jnp.sqrt(N - 1.0)
        return Ea, w, Ea, w


class LETKF(AbstractFilter):
    """Local ETKF (Hunt et al. 2007): each state component ``i`` gets its own ETKF transform
    from the observations, ``R⁻¹`` tapered by ``gaspari_cohn(distance(i, obs), c)`` (R-
    localisation). ``radius`` follows Sakov's and DAPPER's ``loc_rad``: the taper is about
    ``exp(-1/2)`` at ``distance = radius``, ``c = sqrt(10/3) radius``, so observations beyond
    ``2c ≈ 3.65 radius`` are ignored. All grid points at once (vmapped), each an ``N × N``
    eigendecomposition."""

    radius: float
    inflation: float | AdaptiveInflation = 1.0
    pads_members: ClassVar[bool] = True

    def analyse(self, E, w, y, obs, key):
        mean, A, N = _anomalies(E, self.inflation, self.members)
        S, d, _ = _whitened_obs(mean + A, y, obs, self.members)
        grid = jnp.arange(E.shape[1], dtype=E.dtype)
        gap = jnp.abs(grid[:, None] - obs.locations[None, :])  # (n, m)
        if obs.period != float("inf"):
            gap = jnp.minimum(gap % obs.period, obs.period - gap % obs.period)
        taper = jnp.sqrt(gaspari_cohn(gap, self.radius * GC_SCALE))

        def local(t):
            return ensemble_transform(S * t, d * t)

        wm, T = jax.vmap(local)(taper)  # (n, N), (n, N, N)
        Ea = mean + jnp.einsum("ik,ki->i", wm, A) / jnp.sqrt(N - 1.0) + jnp.einsum("ijk,ki->ji", T, A)
        return Ea, w, Ea, w


class ParticleFilter(AbstractFilter):
    """Bootstrap particle filter (sequential importance resampling, Gordon et al. 1993; DAPPER's
    ``PartFilt``): the weights are multiplied by the Gaussian likelihood; when the effective
    sample size ``1 / Σ w²`` falls to ``threshold · N`` or below, systematic resampling, then
    the duplicated particles are jittered (regularisation: without it a deterministic model
    keeps copies of a few particles) with ``N(0, (reg · N^{-1/(n+4)})² C_w + jitter² I)``,
    ``C_w`` the weighted ensemble covariance and ``N^{-1/(n+4)}`` Scott's bandwidth. The
    analysis mean/spread are the weighted particles' before resampling."""

    reg: float = 0.0
    jitter: float = 0.0
    threshold: float = 1.0

    def analyse(self, E, w, y, obs, key):
        r = (y - jax.vmap(obs.observe)(E)) / obs.sd
        w = jax.nn.softmax(jnp.log(w) - 0.5 * jnp.sum(r**2, axis=-1))
        k1, k2 = jax.random.split(key)
        N, n = E.shape
        positions = (jax.random.uniform(k1, (), E.dtype) + jnp.arange(N, dtype=E.dtype)) / N
        idx = jnp.clip(jnp.searchsorted(jnp.cumsum(w), positions), 0, N - 1)  # sorted
        dups = (idx == jnp.roll(idx, 1)) | (idx == jnp.roll(idx, -1))
        mean = w @ E
        C12 = jnp.sqrt(w / (1.0 - jnp.sum(w**2)))[:, None] * (E - mean)
        s, V = jnp.linalg.eigh(C12.T @ C12)  # C_w, n × n
        z1, z2 = jax.random.normal(k2, (2, N, n), E.dtype)
        noise = self.reg * N ** (-1.0 / (n + 4)) * (z1 @ (V * jnp.sqrt(jnp.maximum(s, 0.0))).T) + self.jitter * z2
        Er = E[idx] + jnp.where(dups[:, None], noise, 0.0)
        resample = 1.0 / jnp.sum(w**2) <= self.threshold * N
        uniform = jnp.full_like(w, 1.0 / N)
        return jnp.where(resample, Er, E), jnp.where(resample, uniform, w), E, w


FILTERS = {"etkf": ETKF, "enkf": EnKF, "letkf": LETKF, "pf": ParticleFilter}


def checked_model_std(model_std, n: int) -> Array:
    """``model_std`` as ``(n,)``: a scalar or one per component, finite and >= 0."""
    a = np.asarray(model_std, dtype=float) if np.ndim(model_std) <= 1 else None
    if a is None or a.shape not in ((), (n,)) or not np.all(np.isfinite(a) & (a >= 0)):
        raise ValueError(f"model_std: got {model_std!r}, expected a std >= 0, scalar or one per state component ({n})")
    return jnp.broadcast_to(jnp.asarray(a), (n,))
