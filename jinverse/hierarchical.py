"""Hierarchical Bayes: the prior precision and the noise precision as unknowns.

``hierarchical_problem(forward, prior, ...)`` builds an ordinary `ji.InverseProblem` over
``θ = {"x": x, "prior_precision": δ, "noise_precision": λ}`` with

    p(x, δ, λ | y) ∝ N(y; f(x), λ⁻¹ I) · p(x | δ) · Gamma(δ; a_δ, b_δ) · Gamma(λ; a_λ, b_λ),

where ``p(x | δ)`` is the given prior with its precision scaled to ``δ`` (a `GMRF` with
``precision=δ``, or a `Gaussian` with standard deviation ``std / sqrt(δ)``). Its normalising
constant in ``δ`` (``rank/2 · log δ``) is exact, which is what lets the data choose δ. ``ji.sample``
then samples all three jointly through the one ``log_posterior`` (δ and λ in log space through
their bijectors); the ratio ``δ / λ`` plays the role of the Tikhonov ``lam²``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._checks import as_float_array, check_positive
from .likelihoods import AbstractLikelihood
from .priors import AbstractPrior, Gaussian, Joint
from .problem import InverseProblem
from .regularizers import GMRF, Gamma

_LOG_2PI = math.log(2 * math.pi)


def _with_precision(prior, delta):
    """``prior`` with its precision scale set to ``delta`` (works on traced ``delta``)."""
    if isinstance(prior, GMRF):
        return eqx.tree_at(lambda p: p.precision, prior, delta)
    if isinstance(prior, Gaussian) and prior.std is not None:
        return eqx.tree_at(lambda p: p.std, prior, prior.std / jnp.sqrt(delta))
    raise TypeError(f"prior: got {type(prior).__name__}, expected a GMRF or a Gaussian with std= "
                    "(its precision becomes the unknown prior_precision)")


class HierarchicalPrior(AbstractPrior):
    """``p(x | δ) p(δ) p(λ)`` over ``{"x", "prior_precision", "noise_precision"}``."""

    base: AbstractPrior
    prior_precision: Gamma
    noise_precision: Gamma

    def __init__(self, base, prior_precision: Gamma, noise_precision: Gamma):
        _with_precision(base, 1.0)  # raises for unsupported priors
        for name, p in (("prior_precision", prior_precision), ("noise_precision", noise_precision)):
            if not isinstance(p, Gamma) or p.event_shape != ():
                raise TypeError(f"{name}: got {type(p).__name__}, expected a scalar ji.priors.Gamma")
        self.base, self.prior_precision, self.noise_precision = base, prior_precision, noise_precision

    def _joint(self):
        return Joint({"x": self.base, "prior_precision": self.prior_precision,
                      "noise_precision": self.noise_precision})

    @property
    def event_shape(self):
        return self._joint().event_shape

    def center(self):
        return self._joint().center()

    def log_prob(self, theta):
        delta, lam = theta["prior_precision"], theta["noise_precision"]
        safe = jnp.where(delta > 0, delta, 1.0)
        lp_x = _with_precision(self.base, safe).log_prob(theta["x"])
        lp = lp_x + self.prior_precision.log_prob(delta) + self.noise_precision.log_prob(lam)
        return jnp.where(delta > 0, lp, -jnp.inf)

    def sample(self, key, shape=()):
        k1, k2, k3 = jax.random.split(key, 3)
        delta = self.prior_precision.sample(k1, shape)
        lam = self.noise_precision.sample(k2, shape)
        keys = jax.random.split(k3, math.prod(shape)).reshape(shape) if shape else k3
        draw = lambda k, d: _with_precision(self.base, d).sample(k)  # noqa: E731
        for _ in shape:
            draw = jax.vmap(draw)
        return {"x": draw(keys, delta), "prior_precision": delta, "noise_precision": lam}

    def to_unconstrained(self, theta):
        return self._joint().to_unconstrained(theta)

    def from_unconstrained(self, u):
        return self._joint().from_unconstrained(u)

    def log_det_jacobian(self, u):
        return self._joint().log_det_jacobian(u)


class GaussianPrecision(AbstractLikelihood):
    """``y ~ N(mean, λ⁻¹ I)`` where the prediction carries λ: ``prediction = concat(mean, [λ])``.

    The likelihood of `hierarchical_problem`; one observation has the shape of ``mean``.
    """

    def event_shape(self, prediction):
        return (prediction.shape[0] - 1,)

    def log_prob(self, y, prediction):
        mean, lam = prediction[:-1], prediction[-1]
        m = mean.shape[0]
        return -0.5 * lam * jnp.sum((y - mean) ** 2) + 0.5 * m * (jnp.log(lam) - _LOG_2PI)

    def sample(self, key, prediction):
        mean, lam = prediction[:-1], prediction[-1]
        return mean + jax.random.normal(key, mean.shape, mean.dtype) / jnp.sqrt(lam)


class _AppendPrecision(eqx.Module):
    forward: Callable

    def __call__(self, theta) -> Float[Array, " m_plus_1"]:
        pred = self.forward(theta["x"])
        if pred.ndim != 1:
            raise ValueError(f"forward: returns shape {pred.shape}, expected a vector (m,)")
        lam = theta["noise_precision"]
        return jnp.concatenate([pred, jnp.reshape(lam, (1,)).astype(pred.dtype)])


def _gamma(name, value):
    if isinstance(value, Gamma):
        return value
    try:
        a, b = value
    except (TypeError, ValueError):
        raise TypeError(f"{name}: got {value!r}, expected a Gamma prior or (concentration, rate)") from None
    a, b = as_float_array(name, a), as_float_array(name, b)
    check_positive(name, a)
    check_positive(name, b)
    return Gamma(a, b)


def hierarchical_problem(forward, prior, *, prior_precision=(1.0, 1e-4),
                         noise_precision=(1.0, 1e-4)) -> InverseProblem:
    """An `InverseProblem` whose prior precision δ and noise precision λ are unknowns.

    Args:
        forward: maps ``x`` to a prediction vector (a matrix is ``x ↦ A x``).
        prior: the prior of ``x`` at precision 1: a `GMRF` (its ``precision`` becomes δ) or
            a `Gaussian` with ``std`` (its variance becomes ``std² / δ``).
        prior_precision, noise_precision: `Gamma` hyperpriors or ``(concentration, rate)``
            pairs; the default ``(1, 1e-4)`` is weakly informative for precisions up to ~1e5.

    Example::

        problem = ji.hierarchical.hierarchical_problem(A, ji.priors.GMRF(64, order=2))
        post = ji.sample(problem, y, key=jax.random.key(0))
        post.mean()["prior_precision"], post.mean()["noise_precision"]
    """
    if not callable(forward):
        from .problem import MatrixOperator

        forward = MatrixOperator(jnp.asarray(forward))
    hp = HierarchicalPrior(prior, _gamma("prior_precision", prior_precision),
                           _gamma("noise_precision", noise_precision))
    return InverseProblem(_AppendPrecision(forward), hp, GaussianPrecision())
