"""What the dense and the low-rank Laplace approximations share: a Gaussian in the prior's
unconstrained space ``u``, per observation, mapped back to θ by the problem."""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, PyTree

from . import curvature
from ._checks import check_key, check_positive_int
from .problem import InverseProblem
from .status import MAPStatus


def default_status(ok) -> Int[Array, "*batch"]:
    """``status`` of an approximation built without one (by hand, or loaded from a file written
    before it was stored): ``OK`` where ``ok``, else `MAPStatus.NOT_FOUND` (reason not known)."""
    return jnp.where(jnp.asarray(ok), int(MAPStatus.OK), int(MAPStatus.NOT_FOUND)).astype(jnp.int32)


def to_theta(problem: InverseProblem, u: Float[Array, "*lead d"]) -> PyTree:
    """Flat unconstrained points ``(*lead, d)`` mapped to θ's own space, leaves ``(*lead, *θ)``."""
    _, unravel = curvature.flatten(problem)
    fn = lambda x: problem.from_unconstrained(unravel(x))  # noqa: E731
    for _ in range(u.ndim - 1):
        fn = jax.vmap(fn)
    return fn(u)


class AbstractGaussianApproximation(eqx.Module):
    """``u ~ N(mean, Γ)`` per observation, ``θ = problem.from_unconstrained(u)``; subclasses
    hold ``Γ`` (dense, or prior plus low rank) and say how to draw from it (`_draw`)."""

    mean: eqx.AbstractVar[Float[Array, "*batch d"]]
    ok: eqx.AbstractVar[Bool[Array, "*batch"]]
    problem: eqx.AbstractVar[InverseProblem]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.mean.shape[:-1])

    @property
    def mode(self) -> PyTree:
        """The mean mapped to θ's own space, ``(*batch, *theta_shape)``."""
        return self._to_theta(self.mean)

    def _to_theta(self, u):
        return to_theta(self.problem, u)

    @abc.abstractmethod
    def _draw(self, z: Float[Array, "*batch n d"]) -> Float[Array, "*batch n d"]:
        """``mean + Γ^{1/2} z`` for standard normal ``z``, per observation."""

    def sample(self, key: PRNGKeyArray, n: int) -> PyTree:
        """``n`` draws of θ per observation, each leaf ``(*batch, n, *theta_shape)``."""
        check_key("key", key)
        n = check_positive_int("n", n)
        z = jax.random.normal(key, (*self.batch_shape, n, self.mean.shape[-1]), self.mean.dtype)
        return self._to_theta(self._draw(z))
