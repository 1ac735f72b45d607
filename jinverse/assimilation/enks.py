"""The ensemble Kalman smoother (EnKS; Evensen and van Leeuwen 2000) in square-root form, as a
method of `cycled_filter`.

The filter is the ETKF; each analysis ``E_a = x̄ + W A`` (``W`` the ensemble transform,
`enkf.etkf_transform`) is also applied to the ensembles of the last ``lag`` observation times,
``E_j ← x̄_j + W (E_j - x̄_j)``: the analysis of the state augmented with its past (the
cross-covariances are the ensemble's), so for a linear-Gaussian model and a large ensemble the
smoothed means and covariances are those of the Rauch-Tung-Striebel smoother given the
observations up to ``lag`` times later (all of them for the full smoother). Only the newest
state's anomalies are inflated (as DAPPER's ``EnKS``), so the past is not inflated again at
every later analysis.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from .enkf import AbstractFilter, adapted, centre, etkf_transform, forecast_members
from .inflation import AdaptiveInflation


class EnKS(AbstractFilter):
    """Ensemble Kalman smoother with a lag of ``lag`` observation times (``None``: the full
    smoother, every time smoothed with all the observations), ETKF analyses with
    ``inflation`` (a number or `AdaptiveInflation`). The filtering statistics are the ETKF's;
    the smoothed ones are `FilterResult.smoothed`, ``spread_smoothed``, ``rmse_smoothed``.
    Memory: ``lag`` ensembles."""

    lag: int | None = eqx.field(default=None, static=True)
    inflation: float | AdaptiveInflation = 1.0
    pads_members: ClassVar[bool] = True

    def init(self, E, m: int = 0):
        if self.lag is None:
            raise ValueError(
                "EnKS.lag: got None, expected the number of observation times (cycled_filter "
                "sets it for the full smoother)"
            )
        return (*super().init(E), jnp.broadcast_to(E, (self.lag, *E.shape)))

    def cycle(self, step, obs_every, state, y, obs, key):
        E, w, s, past = state  # past: the last `lag` analysis ensembles, oldest first
        E, key = forecast_members(step, E, obs_every, key)
        flt, s, factor = adapted(self, s, E, y, obs)
        mean, A, W = etkf_transform(E, y, obs, flt.inflation, self.members)
        Ea = mean + W @ A
        means, anomalies, _ = jax.vmap(lambda X: centre(X, self.members))(past)
        past = means[:, None] + jnp.einsum("ij,ljn->lin", W, anomalies)
        done = past[0]  # lag times back: no later observation will change it
        past = jnp.concatenate([past[1:], Ea[None]])
        return (Ea, w, s, past), (E, w), (Ea, w), Ea, {"inflation": factor, "smoothed": done}

    def smoothed_tail(self, state):
        return state[3]
