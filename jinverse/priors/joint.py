"""`Joint`: independent priors over the leaves of a pytree θ."""

from __future__ import annotations

import jax
from jaxtyping import PyTree

from .base import AbstractPrior


def _is_prior(x) -> bool:
    return isinstance(x, AbstractPrior)


class Joint(AbstractPrior):
    """Independent priors over the leaves of a pytree θ.

    Example: ``Joint({"x": Gaussian(jnp.zeros(4), 1.0), "noise": HalfNormal(1.0)})`` is a prior
    over ``theta = {"x": ..., "noise": ...}``.
    """

    priors: PyTree[AbstractPrior]

    def __init__(self, priors):
        leaves = jax.tree.leaves(priors, is_leaf=_is_prior)
        bad = [type(p).__name__ for p in leaves if not _is_prior(p)]
        if not leaves or bad:
            raise TypeError(f"priors: got a pytree with leaves {bad or 'none'}, expected a pytree of priors")
        self.priors = priors

    def _map(self, fn, *trees):
        return jax.tree.map(fn, self.priors, *trees, is_leaf=_is_prior)

    @property
    def event_shape(self):
        return self._map(lambda p: p.event_shape)

    def center(self):
        return self._map(lambda p: p.center())

    def log_prob(self, theta):
        return sum(jax.tree.leaves(self._map(lambda p, t: p.log_prob(t), theta)))

    def sample(self, key, shape=()):
        leaves, treedef = jax.tree.flatten(self.priors, is_leaf=_is_prior)
        keys = jax.random.split(key, len(leaves))
        return jax.tree.unflatten(treedef, [p.sample(k, shape) for p, k in zip(leaves, keys)])

    @property
    def bijector(self):
        raise AttributeError("Joint priors have one bijector per leaf: use to_unconstrained/from_unconstrained")

    def to_unconstrained(self, theta):
        return self._map(lambda p, t: p.to_unconstrained(t), theta)

    def from_unconstrained(self, u):
        return self._map(lambda p, v: p.from_unconstrained(v), u)

    def log_det_jacobian(self, u):
        return sum(jax.tree.leaves(self._map(lambda p, v: p.log_det_jacobian(v), u)))

    @property
    def is_proper(self):
        return all(p.is_proper for p in jax.tree.leaves(self.priors, is_leaf=_is_prior))
