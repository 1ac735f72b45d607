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
    """``theta = forward(u)``, one-to-one from all of R^n (``u`` of the same shape as θ) onto the
    support. ``forward_log_det_jacobian`` is the whole ``log |det dθ/du|``: a sum over entries
    for an elementwise map, the log-determinant of the full Jacobian otherwise (e.g. a map of
    ``(α, β)`` onto ``0 < β < 1 - α``; see ``docs/extending.md``)."""

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


class Interval(AbstractBijector):
    """Elementwise onto ``(low, high)``, where either bound may be infinite: the real line
    (identity), ``low + exp(u)``, ``high - exp(u)`` or ``low + (high - low) sigmoid(u)``.

    Unused branches are fed safe values, so gradients stay finite whatever the bounds.
    """

    low: Float[Array, "*shape"]
    high: Float[Array, "*shape"]

    def _parts(self, like):
        lo_f, hi_f = jnp.isfinite(self.low), jnp.isfinite(self.high)
        both, lower, upper = lo_f & hi_f, lo_f & ~hi_f, ~lo_f & hi_f
        lo, hi = jnp.where(lo_f, self.low, 0.0), jnp.where(hi_f, self.high, 1.0)
        width = jnp.where(both, hi - lo, 1.0)
        b = lambda m: jnp.broadcast_to(m, jnp.shape(like))  # noqa: E731
        return b(both), b(lower), b(upper), lo, hi, width

    def forward(self, u):
        both, lower, upper, lo, hi, width = self._parts(u)
        e = jnp.exp(jnp.where(lower | upper, u, 0.0))
        return jnp.where(both, lo + width * jax.nn.sigmoid(u),
                         jnp.where(lower, lo + e, jnp.where(upper, hi - e, u)))

    def inverse(self, theta):
        both, lower, upper, lo, hi, width = self._parts(theta)
        p = jnp.where(both, (theta - lo) / width, 0.5)
        gap = jnp.where(lower, theta - lo, jnp.where(upper, hi - theta, 1.0))
        return jnp.where(both, jnp.log(p) - jnp.log1p(-p), jnp.where(lower | upper, jnp.log(gap), theta))

    def forward_log_det_jacobian(self, u):
        both, lower, upper, _, _, width = self._parts(u)
        box = jnp.log(width) + jax.nn.log_sigmoid(u) + jax.nn.log_sigmoid(-u)
        return jnp.sum(jnp.where(both, box, jnp.where(lower | upper, u, 0.0)))
