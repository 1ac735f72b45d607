"""Location-scale priors on the real line, each a `AbstractLocationScale` that gives only the
density of one standardised entry and its standard draws: `Laplace`, `Cauchy`, `StudentT`."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln
from jaxtyping import Array, Float

from .base import AbstractLocationScale, checked_loc_scale, checked_params


class Laplace(AbstractLocationScale):
    """Laplace (double-exponential) prior: ``p(θ) ∝ exp(-|θ - loc| / scale)``; an L1 penalty."""

    loc: Float[Array, "*event"]
    scale: Float[Array, "*event"]

    def __init__(self, loc, scale):
        self.loc, self.scale = checked_loc_scale(loc, scale)

    def log_prob_entries(self, theta):
        return -jnp.abs(theta - self.loc) / self.scale - jnp.log(2 * self.scale)

    def standard_sample(self, key, shape):
        return jax.random.laplace(key, shape, self.loc.dtype)


class Cauchy(AbstractLocationScale):
    """Cauchy prior with location ``loc`` and scale ``scale``."""

    loc: Float[Array, "*event"]
    scale: Float[Array, "*event"]

    def __init__(self, loc, scale):
        self.loc, self.scale = checked_loc_scale(loc, scale)

    def log_prob_entries(self, theta):
        z = (theta - self.loc) / self.scale
        return -jnp.log1p(z**2) - jnp.log(math.pi * self.scale)

    def standard_sample(self, key, shape):
        return jax.random.cauchy(key, shape, self.loc.dtype)


class StudentT(AbstractLocationScale):
    """Student-t prior with ``df`` degrees of freedom, location ``loc`` and scale ``scale``."""

    df: Float[Array, "*event"]
    loc: Float[Array, "*event"]
    scale: Float[Array, "*event"]

    def __init__(self, df, loc, scale):
        self.df, self.loc, self.scale = checked_params(df=(df, "positive"), loc=(loc, "finite"),
                                                       scale=(scale, "positive"))

    def log_prob_entries(self, theta):
        nu, z = self.df, (theta - self.loc) / self.scale
        return (gammaln((nu + 1) / 2) - gammaln(nu / 2) - 0.5 * jnp.log(nu * math.pi) - jnp.log(self.scale)
                - (nu + 1) / 2 * jnp.log1p(z**2 / nu))

    def standard_sample(self, key, shape):
        return jax.random.t(key, self.df, shape, self.loc.dtype)
