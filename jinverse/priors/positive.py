"""Priors on the positive reals, sampled and optimised through ``θ = exp(u)``, each an
`AbstractPositive` that gives only its entries' density: `HalfCauchy`, `Exponential`,
`InverseGamma` (`HalfNormal` and `LogNormal` are in `jinverse.priors.gaussian`, `Gamma` in
`jinverse.regularizers`)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln
from jaxtyping import Array, Float

from .base import AbstractPositive, checked_params


class HalfCauchy(AbstractPositive):
    """Positive θ with density ``2 Cauchy(θ; 0, scale)`` for θ > 0 (a weakly informative scale prior)."""

    scale: Float[Array, "*event"]

    def __init__(self, scale):
        (self.scale,) = checked_params(scale=(scale, "positive"))

    def center(self):
        return self.scale  # the median

    def log_prob_entries(self, theta):
        return math.log(2 / math.pi) - jnp.log(self.scale) - jnp.log1p((theta / self.scale) ** 2)

    def sample(self, key, shape=()):
        return self.scale * jnp.abs(jax.random.cauchy(key, (*shape, *self.event_shape), self.scale.dtype))


class Exponential(AbstractPositive):
    """Positive θ with density ``rate · exp(-rate θ)``."""

    rate: Float[Array, "*event"]

    def __init__(self, rate):
        (self.rate,) = checked_params(rate=(rate, "positive"))

    def center(self):
        return 1 / self.rate  # the mean

    def log_prob_entries(self, theta):
        return jnp.log(self.rate) - self.rate * theta

    def sample(self, key, shape=()):
        return jax.random.exponential(key, (*shape, *self.event_shape), self.rate.dtype) / self.rate


class InverseGamma(AbstractPositive):
    """Positive θ with ``1/θ ~ Gamma(concentration, rate=scale)``:
    ``p(θ) ∝ θ^(-concentration-1) exp(-scale/θ)`` (e.g. a noise variance)."""

    concentration: Float[Array, "*event"]
    scale: Float[Array, "*event"]

    def __init__(self, concentration, scale):
        self.concentration, self.scale = checked_params(concentration=(concentration, "positive"),
                                                 scale=(scale, "positive"))

    def center(self):
        return self.scale / (self.concentration + 1)  # the mode (the mean is infinite for a <= 1)

    def log_prob_entries(self, theta):
        a, b = self.concentration, self.scale
        return a * jnp.log(b) - gammaln(a) - (a + 1) * jnp.log(theta) - b / theta

    def sample(self, key, shape=()):
        return self.scale / jax.random.gamma(key, self.concentration, (*shape, *self.event_shape), self.scale.dtype)
