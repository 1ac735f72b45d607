"""The ensemble Kalman sampler (EKS; Garbuno-Inigo, Hoffmann, Li and Stuart 2020) with the
finite-ensemble correction of Nüsken and Reich (ALDI, 2019): derivative-free, interacting
Langevin dynamics whose invariant law is the posterior for a linear forward model (and
approximately so otherwise), batched over observations.

In the prior-whitened variable of `jinverse.assimilation.eki` (``Φ(u) = ½ ‖ỹ - G̃(u)‖²`` with the
prior as data), each member moves by

    u_j ← u_j - Δt C^{uG} (G̃(u_j) - ỹ) + Δt (d + 1)/J (u_j - ū) + √(2 Δt) Σ_k (u_k - ū) ξ_jk / √J

``C^{uG}`` the ensemble cross-covariance (which replaces ``C ∇Φ``: exact for a linear model),
the noise in the ensemble's span with covariance ``2 Δt C``. The step is adaptive,
``Δt = step / (‖D‖_F + 1)`` with ``D_jk = ⟨G̃_k - Ḡ, G̃_j - ỹ⟩ / J`` (Kovachki and Stuart), so the
first, far-from-equilibrium steps stay stable.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from .._checks import check_positive_int
from ..problem import InverseProblem
from .eki import KalmanInversionResult, WhitenedProblem, check_gaussian, gaussian_prior


@eqx.filter_jit
def _eks_lanes(model, ys, U0, keys, n_iter: int, step):
    def one(y, key):
        target = model.target(y)
        J, d = U0.shape

        def iteration(U, k):
            Gs = jax.vmap(model)(U)
            R = Gs - target  # residuals (J, p)
            dG, dU = Gs - Gs.mean(0), U - U.mean(0)
            D = R @ dG.T / J  # D_jk = <G_k - Ḡ, G_j - ỹ> / J
            dt = step / (jnp.linalg.norm(D) + 1.0)
            noise = jax.random.normal(k, (J, J), U.dtype) @ dU / jnp.sqrt(J)
            U = U - dt * D @ dU + dt * (d + 1.0) / J * dU + jnp.sqrt(2.0 * dt) * noise
            return U, 0.5 * jnp.sum((target - model(U.mean(0))) ** 2)

        U, objective = jax.lax.scan(iteration, U0, jax.random.split(key, n_iter))
        thetas = jax.vmap(model.theta)(U)
        flat = thetas.reshape(J, -1)
        return thetas.mean(0), jnp.cov(flat.T).reshape(flat.shape[1], flat.shape[1]), thetas, objective

    return jax.vmap(one)(ys, keys)


def eks(problem: InverseProblem, y, *, key: PRNGKeyArray, n_members: int | None = None, n_iter: int = 200,
        step: float = 0.5) -> KalmanInversionResult:
    """Ensemble Kalman sampler of ``y`` (``(*batch, *event)``): ``J`` members that end as
    approximate posterior draws (exact in law for a linear forward model and ``J > d + 1``, up
    to the time discretisation), from forward evaluations only.

    Args:
        problem: an `InverseProblem` with a Gaussian prior and Gaussian likelihood.
        key: a PRNG key (the first ensemble from the prior, the noise).
        n_members: ``J`` (default ``max(4 d, 50)``).
        n_iter: Langevin steps (``J + 1`` forward evaluations each).
        step: the adaptive step's scale.

    Returns:
        A `KalmanInversionResult`: ``theta``/``covariance`` the final ensemble's mean and
        covariance, ``ensemble`` its members (the approximate posterior draws).
    """
    ys, batch = check_gaussian(problem, y)
    n_iter = check_positive_int("n_iter", n_iter)
    if not (np.ndim(step) == 0 and np.isfinite(step) and step > 0):
        raise ValueError(f"step: got {step!r}, expected a finite number > 0")
    d = gaussian_prior(problem).mean.size
    J = max(4 * d, 50) if n_members is None else check_positive_int("n_members", n_members, minimum=d + 2)
    n_lanes = int(np.prod(batch))
    k0, k1 = jax.random.split(key)
    U0 = jax.random.normal(k0, (J, d), ys.dtype)
    flat = ys.reshape((n_lanes, *ys.shape[len(batch):]))
    out = _eks_lanes(WhitenedProblem(problem), flat, U0, jax.random.split(k1, n_lanes), n_iter, float(step))
    theta, cov, ens, obj = jax.tree.map(lambda a: a.reshape((*batch, *a.shape[1:])), out)
    return KalmanInversionResult(theta, cov, ens, obj, n_iter * (J + 1))
