"""Priors on an interval: `Uniform` on a box and `Beta` on (0, 1) (both through a sigmoid), and
the improper `Flat` prior, whose bounds may be infinite (through `jinverse.bijectors.Interval`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import betaln
from jaxtyping import Array, Float

from .. import bijectors as bij
from .._checks import as_float_array, check_finite, is_concrete
from .base import AbstractPrior, broadcast_event, check_low_below_high, checked_bounds, checked_params


class Uniform(AbstractPrior):
    """Uniform prior on the box ``(low, high)``; sampled and optimised through a sigmoid."""

    low: Float[Array, "*event"]
    high: Float[Array, "*event"]

    def __init__(self, low, high):
        low, high = as_float_array("low", low), as_float_array("high", high)
        for name, a in (("low", low), ("high", high)):
            if is_concrete(a) and bool(jnp.any(jnp.isinf(a))):
                raise ValueError(f"{name}: got {int(jnp.sum(jnp.isinf(a)))} non-finite value(s) (inf), expected "
                                 "finite bounds (a uniform density needs a finite width); for a flat prior on a "
                                 "half-line use the improper Flat(low=...) or Flat(high=...)")
        check_finite("low", low)
        check_finite("high", high)
        shape = broadcast_event(low, high, names=("low", "high"))
        check_low_below_high(low, high)
        self.low, self.high = jnp.broadcast_to(low, shape), jnp.broadcast_to(high, shape)

    @property
    def event_shape(self):
        return tuple(self.low.shape)

    @property
    def bijector(self):
        return bij.Sigmoid(self.low, self.high)

    def center(self):
        return 0.5 * (self.low + self.high)

    def log_prob(self, theta):
        inside = jnp.all((theta >= self.low) & (theta <= self.high))
        log_width = jnp.broadcast_to(jnp.log(self.high - self.low), jnp.shape(theta))
        return jnp.where(inside, -jnp.sum(log_width), -jnp.inf)

    def sample(self, key, shape=()):
        return jax.random.uniform(key, (*shape, *self.event_shape), self.low.dtype, self.low, self.high)


class Beta(AbstractPrior):
    """θ in (0, 1) with density ``∝ θ^(a-1) (1-θ)^(b-1)``; sampled and optimised through a sigmoid."""

    a: Float[Array, "*event"]
    b: Float[Array, "*event"]

    def __init__(self, a, b):
        self.a, self.b = checked_params(a=(a, "positive"), b=(b, "positive"))

    @property
    def event_shape(self):
        return tuple(self.a.shape)

    @property
    def bijector(self):
        return bij.Sigmoid(jnp.zeros_like(self.a), jnp.ones_like(self.a))

    def center(self):
        return self.a / (self.a + self.b)  # the mean

    def log_prob(self, theta):
        inside = jnp.all((theta > 0) & (theta < 1))
        t = jnp.where((theta > 0) & (theta < 1), theta, 0.5)
        lp = jnp.sum((self.a - 1) * jnp.log(t) + (self.b - 1) * jnp.log1p(-t) - betaln(self.a, self.b))
        return jnp.where(inside, lp, -jnp.inf)

    def sample(self, key, shape=()):
        return jax.random.beta(key, self.a, self.b, (*shape, *self.event_shape), self.a.dtype)


class Flat(AbstractPrior):
    """The improper flat prior ``p(θ) ∝ 1`` on ``(low, high)``; either bound may be left out
    (infinite). ``Flat(low=0.0)`` is the flat prior on the positive reals, ``Flat((3,))`` on R³.

    It has no draws: `sample` raises, so give ``ji.sample``/``ji.solve_map`` an ``init``.
    ``log_prob`` is 0 inside the bounds (-inf outside); the posterior is proper only when the
    likelihood makes it so.
    """

    low: Float[Array, "*event"]
    high: Float[Array, "*event"]

    def __init__(self, shape: tuple[int, ...] = (), *, low=None, high=None):
        self.low, self.high = checked_bounds(low, high, tuple(shape))

    @property
    def event_shape(self):
        return tuple(self.low.shape)

    @property
    def is_proper(self):
        return False

    @property
    def bijector(self):
        return bij.Interval(self.low, self.high)

    def center(self):
        return self.bijector.forward(jnp.zeros(self.event_shape, self.low.dtype))

    def log_prob(self, theta):
        inside = jnp.all((theta >= self.low) & (theta <= self.high))
        return jnp.where(inside, 0.0, -jnp.inf).astype(jnp.result_type(theta, self.low))

    def sample(self, key, shape=()):
        raise ValueError("prior: Flat is improper and has no draws; give a starting point instead, "
                         "e.g. ji.sample(problem, y, key=key, init=theta0) or init='map'")
