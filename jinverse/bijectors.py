"""Maps from an unconstrained space R^n to a prior's support.

A bijector maps ``u`` (unconstrained) to ``theta = forward(u)``; samplers and optimisers work
on ``u``. The log-determinant of the Jacobian is used in exactly one place:
`jinverse.problem.InverseProblem.log_density`.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


class AbstractBijector(eqx.Module):
    """``theta = forward(u)``; elementwise, so the log-Jacobian is a sum over entries."""

    @abc.abstractmethod
    def forward(self, u: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        """Unconstrained ``u`` to constrained ``theta``."""

    @abc.abstractmethod
    def inverse(self, theta: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        """Constrained ``theta`` to unconstrained ``u``."""

    @abc.abstractmethod
    def forward_log_det_jacobian(self, u: Float[Array, "*shape"]) -> Float[Array, ""]:
        """log |d theta / d u|, summed over all entries of ``u``."""


class Identity(AbstractBijector):
    """The whole real line: no transform."""

    def forward(self, u):
        return u

    def inverse(self, theta):
        return theta

    def forward_log_det_jacobian(self, u):
        return jnp.zeros((), dtype=jnp.result_type(u))


class Exp(AbstractBijector):
    """Positive reals: ``theta = exp(u)``."""

    def forward(self, u):
        return jnp.exp(u)

    def inverse(self, theta):
        return jnp.log(theta)

    def forward_log_det_jacobian(self, u):
        return jnp.sum(u)


class Sigmoid(AbstractBijector):
    """A box ``(low, high)``: ``theta = low + (high - low) * sigmoid(u)``."""

    low: Float[Array, "*shape"]
    high: Float[Array, "*shape"]

    def forward(self, u):
        return self.low + (self.high - self.low) * jax.nn.sigmoid(u)

    def inverse(self, theta):
        p = (theta - self.low) / (self.high - self.low)
        return jnp.log(p) - jnp.log1p(-p)

    def forward_log_det_jacobian(self, u):
        width = jnp.broadcast_to(jnp.log(self.high - self.low), jnp.shape(u))
        return jnp.sum(width + jax.nn.log_sigmoid(u) + jax.nn.log_sigmoid(-u))
