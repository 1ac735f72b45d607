"""The prior interface (`AbstractPrior`), the location-scale base class, and the checks that
every family shares: parameters broadcast to one event shape, bounds, the positive half-line."""

from __future__ import annotations

import abc
import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .. import bijectors as bij
from .._checks import as_float_array, check_finite, check_positive, is_concrete

LOG_2PI = math.log(2 * math.pi)


class AbstractPrior(eqx.Module):
    """A log-density over θ with a bijector onto its support."""

    @abc.abstractmethod
    def log_prob(self, theta) -> Float[Array, ""]:
        """log p(θ), summed over the event (normalised where the prior is proper)."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...] = ()):
        """Draws with leading axes ``shape``."""

    @property
    @abc.abstractmethod
    def event_shape(self) -> tuple[int, ...]:
        """Shape of one θ (for a pytree θ, a pytree of shapes)."""

    @abc.abstractmethod
    def center(self):
        """A point in the support where optimisation starts by default."""

    @property
    def bijector(self) -> bij.AbstractBijector:
        return bij.Identity()

    @property
    def is_proper(self) -> bool:
        """False for an improper prior (e.g. `Flat`): it has no draws, so solvers need an ``init``."""
        return True

    # The three below treat θ as a pytree; `Joint` overrides them.
    def to_unconstrained(self, theta):
        return self.bijector.inverse(theta)

    def from_unconstrained(self, u):
        return self.bijector.forward(u)

    def log_det_jacobian(self, u) -> Float[Array, ""]:
        return self.bijector.forward_log_det_jacobian(u)

    def theta_shape_dtype(self):
        """A `jax.ShapeDtypeStruct` pytree for one θ."""
        return jax.tree.map(lambda c: jax.ShapeDtypeStruct(jnp.shape(c), jnp.result_type(c)),
                            self.center())


class AbstractLocationScale(AbstractPrior):
    """A prior on the real line with ``θ = loc + scale · z`` entry by entry, ``z`` drawn from a
    standard density. Subclasses declare the ``loc`` and ``scale`` fields (with any others, in
    their own order), give the density of one entry (`log_prob_entries`) and standard draws
    (`standard_sample`); the event shape, `center` (``loc``), the sum and the draws are here."""

    loc: eqx.AbstractVar[Float[Array, "*event"]]
    scale: eqx.AbstractVar[Float[Array, "*event"]]

    @abc.abstractmethod
    def log_prob_entries(self, theta) -> Float[Array, "*event"]:
        """log p(θᵢ) of each entry, normalised."""

    @abc.abstractmethod
    def standard_sample(self, key: PRNGKeyArray, shape: tuple[int, ...]) -> Float[Array, "*shape"]:
        """Draws of ``z = (θ - loc) / scale`` of the full shape ``shape``."""

    @property
    def event_shape(self):
        return tuple(self.loc.shape)

    def center(self):
        return self.loc

    def log_prob(self, theta):
        return jnp.sum(self.log_prob_entries(theta))

    def sample(self, key, shape=()):
        return self.loc + self.scale * self.standard_sample(key, (*shape, *self.event_shape))


class AbstractPositive(AbstractPrior):
    """A prior on the positive reals, sampled and optimised through ``θ = exp(u)``. Subclasses
    declare their parameters as fields, the first of them with the event shape (the others
    broadcast to it), and give the density of one entry for θ > 0 (`log_prob_entries`), the
    draws (`sample`) and `center`; the event shape, the `Exp` bijector and the sum, -inf unless
    every θ > 0 (with no NaN from the entries off the support), are here."""

    @abc.abstractmethod
    def log_prob_entries(self, theta) -> Float[Array, "*event"]:
        """log p(θᵢ) of each entry, normalised; called with θ > 0 only."""

    @property
    def event_shape(self):
        return tuple(jnp.shape(getattr(self, dataclasses.fields(self)[0].name)))

    @property
    def bijector(self):
        return bij.Exp()

    def log_prob(self, theta):
        return positive_only(theta, self.log_prob_entries)


def broadcast_event(*arrays, names: tuple[str, ...] = ()) -> tuple[int, ...]:
    """The event shape the arrays broadcast to; a ValueError naming them if they do not."""
    shapes = [jnp.shape(a) for a in arrays]
    try:
        return tuple(jnp.broadcast_shapes(*shapes))
    except ValueError:
        got = " and ".join(f"{n} of shape {s}" for n, s in zip(names, shapes))
        raise ValueError(f"{', '.join(names)}: got {got}, expected shapes that broadcast together") from None


def checked_params(**named) -> list[Float[Array, "*event"]]:
    """Checked parameters (``name=(value, "positive" | "finite")``), broadcast to one event shape."""
    arrays = {}
    for name, (value, kind) in named.items():
        a = as_float_array(name, value)
        (check_positive if kind == "positive" else check_finite)(name, a)
        arrays[name] = a
    shape = broadcast_event(*arrays.values(), names=tuple(arrays))
    return [jnp.broadcast_to(a, shape) for a in arrays.values()]


def checked_loc_scale(loc, scale) -> tuple[Float[Array, "*event"], Float[Array, "*event"]]:
    """Checked ``loc`` (finite) and ``scale`` (> 0), broadcast to one event shape."""
    loc, scale = checked_params(loc=(loc, "finite"), scale=(scale, "positive"))
    return loc, scale


def check_low_below_high(low, high) -> None:
    """A ValueError unless ``low < high`` everywhere (checked where the values are concrete)."""
    if is_concrete(low) and is_concrete(high) and bool(jnp.any(low >= high)):
        raise ValueError(f"low, high: got low={low.tolist() if low.size < 7 else '...'} and "
                         f"high={high.tolist() if high.size < 7 else '...'}, expected low < high everywhere")


def checked_bounds(low, high, shape=()) -> tuple[Float[Array, "*event"], Float[Array, "*event"]]:
    """Checked bounds (``None`` is no bound, ±inf allowed, NaN refused, ``low < high``),
    broadcast with ``shape``."""
    low = as_float_array("low", -jnp.inf if low is None else low)
    high = as_float_array("high", jnp.inf if high is None else high)
    for name, a in (("low", low), ("high", high)):
        if is_concrete(a) and bool(jnp.any(jnp.isnan(a))):
            raise ValueError(f"{name}: got NaN, expected a number (or ±inf for no bound)")
    check_low_below_high(low, high)
    shape = broadcast_event(jnp.zeros(shape), low, high, names=("shape", "low", "high"))
    return jnp.broadcast_to(low, shape), jnp.broadcast_to(high, shape)


def positive_only(theta, lp_fn) -> Float[Array, ""]:
    """``sum(lp_fn(θ))`` where every θ > 0, else -inf (and no NaN in the unused branch)."""
    safe = jnp.where(theta > 0, theta, 1.0)
    return jnp.where(jnp.all(theta > 0), jnp.sum(lp_fn(safe)), -jnp.inf)
