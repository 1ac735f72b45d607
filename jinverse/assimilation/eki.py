"""Derivative-free inversion of a Gaussian `InverseProblem`: ensemble Kalman inversion (EKI)
and unscented Kalman inversion (UKI), batched over observations.

Both only evaluate the forward model (no gradients: a black-box simulator will do). The prior
and the noise must be Gaussian; the problem is written as one whitened least-squares problem in
the prior's whitened variable ``u`` (``θ = m₀ + S u``, ``S Sᵀ = Γ_prior``):

    Φ(u) = ½ ‖ỹ - G̃(u)‖²,  G̃(u) = [W forward(m₀ + S u); u],  ỹ = [W y; 0]

with ``W`` the likelihood's whitening, so that ``Φ`` is the negative log-posterior up to a
constant and its minimiser is the MAP (Tikhonov-regularised EKI, Chada, Stuart and Tong 2020).

- `eki`: an ensemble of ``J`` members drawn from the prior, each iteration a Kalman update
  with the data weighted by a step ``h`` (noise ``I / h``); ``h`` grows geometrically so the
  accumulated weight ``t = Σ h`` tends to infinity and the ensemble collapses onto the MAP.
  ``'stochastic'`` perturbs the data (Iglesias, Law and Stuart 2013); ``'deterministic'`` uses
  the ETKF square root, which for a linear forward model gives exactly the Kalman posterior of
  the first ensemble's sample moments with the data weighted by ``t``.
- `uki`: unscented Kalman inversion (Huang, Schneider and Stuart 2022) with ``α = 1``,
  ``Σ_ω = C_n`` and ``Σ_ν = 2 I``: ``2d + 1`` sigma points per iteration; its fixed point for a
  linear forward model is the exact posterior mean (the MAP) and covariance, reached
  geometrically (errors halve every iteration); for a nonlinear one a Gaussian approximation.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from .._checks import check_positive_int
from ..likelihoods import Gaussian as GaussianLikelihood
from ..priors import Gaussian as GaussianPrior
from ..problem import InverseProblem
from ..status import MAPStatus, finite_status
from .enkf import ensemble_transform


class KalmanInversionResult(NamedTuple):
    """Output of `eki` / `uki` (every array field carries the batch axes of ``y`` first).

    ``theta``: the estimate (ensemble mean, or UKI's mean), shaped like θ; ``covariance``: the
    ensemble's (or UKI's) covariance of the flattened θ, ``(d, d)``; ``ensemble``: EKI's final
    members ``(J, *θ)`` (None for UKI); ``objective``: ``Φ`` at the estimate after each
    iteration (the negative log-posterior up to a constant), ``(n_iter,)``; ``num_forward``:
    forward-model evaluations per observation; ``status`` (`jinverse.status.MAPStatus` per
    observation: ``OK``, or ``NONFINITE`` where the estimate, covariance or final objective is
    NaN/inf; these methods run a fixed number of iterations, so there is no convergence code) and
    ``ok`` (``status == OK``).
    """

    theta: Array
    covariance: Array
    ensemble: Array | None
    objective: Array
    num_forward: int

    @property
    def status(self) -> Array:
        batch_ndim = jnp.ndim(self.covariance) - 2
        return finite_status((self.theta, self.covariance, self.objective[..., -1]), batch_ndim)

    @property
    def ok(self) -> Array:
        return MAPStatus.ok(self.status)


class WhitenedProblem(eqx.Module):
    """The problem as whitened least squares in the prior's whitened variable: ``u ↦ G̃(u)``
    (``__call__``), the data ``ỹ`` (``target``) and ``θ(u)`` (``theta``)."""

    problem: InverseProblem

    def theta(self, u):
        prior = self.problem.prior
        return prior.mean + prior.cov_sqrt(u.reshape(prior.event_shape))

    def __call__(self, u):
        pred = self.problem.likelihood.whiten(self.problem.forward(self.theta(u)))
        return jnp.concatenate([jnp.ravel(pred), u])

    def target(self, y):
        return jnp.concatenate([jnp.ravel(self.problem.likelihood.whiten(y)), jnp.zeros(self.problem.prior.mean.size)])


def gaussian_prior(problem: InverseProblem) -> GaussianPrior:
    """The problem's prior, known Gaussian (after `check_gaussian`)."""
    prior = problem.prior
    assert isinstance(prior, GaussianPrior)
    return prior


def check_gaussian(problem, y):
    """Refuse a problem that is not Gaussian-Gaussian; return ``problem.check_y(y)``."""
    if not isinstance(problem, InverseProblem):
        raise TypeError(f"problem: got {type(problem).__name__}, expected a jinverse.InverseProblem")
    if not isinstance(problem.prior, GaussianPrior):
        raise TypeError(f"problem.prior: got {type(problem.prior).__name__}, expected a priors.Gaussian "
                        "(Kalman inversion needs a Gaussian prior)")
    lik = problem.likelihood
    if not isinstance(lik, GaussianLikelihood) or callable(lik.std):
        raise TypeError(f"problem.likelihood: got {type(lik).__name__}, expected a likelihoods.Gaussian with a "
                        "fixed std or cov (Kalman inversion needs Gaussian noise of known covariance)")
    return problem.check_y(y)


def _woodbury_solve(Z, R):
    """``(I + Zᵀ Z)⁻¹ R`` for ``Z`` ``(k, p)`` with ``k`` small (ensemble or sigma-point
    deviations), through the Cholesky factor of the ``k × k`` matrix ``I + Z Zᵀ``: no ``p × p``
    solve (XLA's CPU LU made a 480-observation Lorenz-96 EKI run 10-50x slower, and its eigh of
    an 80 × 80 matrix took ~1 s against ~1 ms for this Cholesky on the shared test machine)."""
    C = jax.scipy.linalg.cho_factor(jnp.eye(Z.shape[0], dtype=Z.dtype) + Z @ Z.T, lower=True)
    return R - Z.T @ jax.scipy.linalg.cho_solve(C, Z @ R)


def _cov(X, Y):
    return (X - X.mean(0)).T @ (Y - Y.mean(0)) / (X.shape[0] - 1)


@eqx.filter_jit
def _eki_lanes(model, ys, U0, keys, steps, deterministic: bool):
    def one(y, key):
        target = model.target(y)

        def iteration(U, inputs):
            h, k = inputs
            Gs = jax.vmap(model)(U)
            J = U.shape[0]
            if deterministic:  # ETKF in ensemble space, data noise I / h
                sh = jnp.sqrt(h)
                S = (Gs - Gs.mean(0)) * sh / jnp.sqrt(J - 1.0)
                w, T = ensemble_transform(S, (target - Gs.mean(0)) * sh)
                mean, A = U.mean(0), U - U.mean(0)
                U = mean + (w / jnp.sqrt(J - 1.0)) @ A + T @ A
            else:  # perturbed data y + η/√h, gain C_up (C_pp + I/h)⁻¹ = C_up h (I + Zᵀ Z)⁻¹
                eta = jax.random.normal(k, Gs.shape, Gs.dtype) / jnp.sqrt(h)
                Z = (Gs - Gs.mean(0)) * jnp.sqrt(h / (J - 1.0))
                U = U + h * _woodbury_solve(Z, (target + eta - Gs).T).T @ _cov(U, Gs).T
            r = target - model(U.mean(0))
            return U, 0.5 * jnp.sum(r**2)

        U, objective = jax.lax.scan(iteration, U0, (steps, jax.random.split(key, steps.shape[0])))
        thetas = jax.vmap(model.theta)(U)
        flat = thetas.reshape(U.shape[0], -1)
        return thetas.mean(0), jnp.cov(flat.T).reshape(flat.shape[1], flat.shape[1]), thetas, objective

    return jax.vmap(one)(ys, keys)


def eki(problem: InverseProblem, y, *, key: PRNGKeyArray, n_members: int | None = None, n_iter: int = 30,
        step: float = 1.0, growth: float = 2.0, method: str = "stochastic", init=None) -> KalmanInversionResult:
    """Ensemble Kalman inversion (Tikhonov-regularised) of ``y`` (``(*batch, *event)``).

    Args:
        problem: an `InverseProblem` with a Gaussian prior and Gaussian likelihood (known
            std/cov); its forward model is only evaluated, never differentiated.
        key: a PRNG key (the first ensemble, the data perturbations).
        n_members: ensemble size ``J`` (default ``max(2 d, 20)`` for ``d`` unknowns; ``J > d``
            lets the ensemble span every direction, which the MAP needs).
        n_iter: Kalman updates.
        step, growth: the data weight of update ``i`` is ``step · growth**i`` (growth 1: a
            fixed step); the accumulated weight ``t`` after all updates sets how close to the
            MAP the ensemble mean comes (the regularised problem at weight ``t``).
        method: ``'stochastic'`` (perturbed data) or ``'deterministic'`` (square root).
        init: the first ensemble ``(J, *θ)`` (e.g. a previous run's); drawn from the prior by
            default.

    Returns:
        A `KalmanInversionResult`; ``num_forward = n_iter (J + 1)``.
    """
    ys, batch = check_gaussian(problem, y)
    if method not in ("stochastic", "deterministic"):
        raise ValueError(f"method: got {method!r}, expected 'stochastic' or 'deterministic'")
    n_iter = check_positive_int("n_iter", n_iter)
    d = gaussian_prior(problem).mean.size
    if init is not None:
        prior = problem.prior
        init = jnp.asarray(init, dtype=ys.dtype)
        if init.ndim < 1 or init.shape[1:] != prior.event_shape or init.shape[0] < 2 or \
                (n_members is not None and init.shape[0] != n_members):
            raise ValueError(f"init: got shape {tuple(init.shape)}, expected ({n_members or 'J'}, "
                             f"{', '.join(map(str, prior.event_shape))}): J >= 2 members shaped like θ")
        n_members = init.shape[0]
    J = max(2 * d, 20) if n_members is None else check_positive_int("n_members", n_members, minimum=2)
    for name, v in (("step", step), ("growth", growth)):
        if not (np.ndim(v) == 0 and np.isfinite(v) and v > 0):
            raise ValueError(f"{name}: got {v!r}, expected a finite number > 0")
    steps = jnp.asarray(step * float(growth) ** np.arange(n_iter), dtype=ys.dtype)
    n_lanes = int(np.prod(batch))
    k0, k1 = jax.random.split(key)
    if init is None:
        U0 = jax.random.normal(k0, (J, d), ys.dtype)  # the prior, whitened
    else:
        U0 = jax.vmap(lambda t: jnp.ravel(gaussian_prior(problem).whiten(t)))(init)
    keys = jax.random.split(k1, n_lanes)
    flat = ys.reshape((n_lanes, *ys.shape[len(batch):]))
    out = _eki_lanes(WhitenedProblem(problem), flat, U0, keys, steps, method == "deterministic")
    theta, cov, ens, obj = jax.tree.map(lambda a: a.reshape((*batch, *a.shape[1:])), out)
    return KalmanInversionResult(theta, cov, ens, obj, n_iter * (J + 1))


@eqx.filter_jit
def _uki_lanes(model, ys, n_iter: int):
    def one(y):
        target = model.target(y)
        d = model.problem.prior.mean.size
        eye = jnp.eye(d, dtype=y.dtype)

        def iteration(carry, _):
            m, C = carry
            Ch = 2.0 * C  # prediction with α = 1, Σ_ω = C
            L = jnp.linalg.cholesky(0.5 * (Ch + Ch.T))
            dev = jnp.sqrt(float(d)) * L.T  # rows: the sigma points' offsets (±)
            pts = jnp.concatenate([m[None], m + dev, m - dev])
            Gs = jax.vmap(model)(pts)
            g0 = Gs[0]  # the mean's image (the modified unscented transform's mean)
            dG = Gs[1:] - g0
            Cup = (dev.T @ (dG[:d] - dG[d:])) / (2 * d)
            # C_pp = dGᵀ dG / (2d) + 2 I (Σ_ν = 2 I) = 2 (I + Zᵀ Z), Z = dG / √(4d)
            K = 0.5 * _woodbury_solve(dG / jnp.sqrt(4.0 * d), Cup.T).T
            m_new = m + K @ (target - g0)
            C_new = Ch - K @ Cup.T
            return (m_new, 0.5 * (C_new + C_new.T)), 0.5 * jnp.sum((target - g0) ** 2)

        (m, C), objective = jax.lax.scan(iteration, (jnp.zeros(d, y.dtype), eye), None, length=n_iter)
        # the objective at iteration i is Φ at the mean that iteration started from: shift by one
        objective = jnp.concatenate([objective[1:], 0.5 * jnp.sum((target - model(m)) ** 2)[None]])
        prior = model.problem.prior
        S = jax.vmap(lambda z: prior.cov_sqrt(z.reshape(prior.event_shape)).ravel(), out_axes=1)(eye)
        return model.theta(m), S @ C @ S.T, objective

    return jax.vmap(one)(ys)


def uki(problem: InverseProblem, y, *, n_iter: int = 30) -> KalmanInversionResult:
    """Unscented Kalman inversion of ``y`` (``(*batch, *event)``): a Gaussian approximation of
    the posterior from ``2d + 1`` forward evaluations per iteration, no gradients.

    For a linear forward model the mean and covariance converge geometrically (the error halves
    every iteration) to the exact posterior's. ``d`` should be modest: a dense ``d × d``
    covariance and its Cholesky factor every iteration.

    Returns:
        A `KalmanInversionResult` (``ensemble`` None); ``num_forward = n_iter (2 d + 1) + 1``.
    """
    ys, batch = check_gaussian(problem, y)
    n_iter = check_positive_int("n_iter", n_iter)
    d = gaussian_prior(problem).mean.size
    n_lanes = int(np.prod(batch))
    flat = ys.reshape((n_lanes, *ys.shape[len(batch):]))
    out = _uki_lanes(WhitenedProblem(problem), flat, n_iter)
    theta, cov, obj = jax.tree.map(lambda a: a.reshape((*batch, *a.shape[1:])), out)
    return KalmanInversionResult(theta, cov, None, obj, n_iter * (2 * d + 1) + 1)
