"""Normal-type priors: `Gaussian` (diagonal, covariance or precision), `LogNormal` and
`HalfNormal` on the positive reals, and `TruncatedNormal` on an interval."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr, ndtr, ndtri
from jaxtyping import Array, Float

from .. import bijectors as bij
from .. import dense
from .._checks import as_float_array, check_finite, check_positive, check_positive_definite
from .base import LOG_2PI, AbstractPositive, AbstractPrior, broadcast_event, checked_bounds, checked_loc_scale


class Gaussian(AbstractPrior):
    """Normal prior: ``Gaussian(mean, std)`` (scalar or per-entry std),
    ``Gaussian(mean, cov=C)`` or ``Gaussian(mean, precision=P)`` for a vector θ.

    Example: ``Gaussian(jnp.zeros(8), 1.0)``.
    """

    mean: Float[Array, "*event"]
    std: Float[Array, "*event"] | None
    chol: Float[Array, "n n"] | None  # Cholesky factor of the covariance or of the precision
    is_precision: bool = eqx.field(static=True)

    def __init__(self, mean, std=None, *, cov=None, precision=None):
        given = [n for n, v in (("std", std), ("cov", cov), ("precision", precision)) if v is not None]
        if len(given) != 1:
            raise ValueError(f"Gaussian prior: got {given or 'none'} of std/cov/precision, expected exactly one")
        mean = as_float_array("mean", mean)
        check_finite("mean", mean)
        self.is_precision = precision is not None
        if std is not None:
            std = as_float_array("std", std)
            check_positive("std", std)
            shape = broadcast_event(mean, std, names=("mean", "std"))
            self.mean = jnp.broadcast_to(mean, shape)
            self.std = jnp.broadcast_to(std, shape)
            self.chol = None
            return
        name, matrix = ("precision", precision) if self.is_precision else ("cov", cov)
        matrix = as_float_array(name, matrix)
        check_positive_definite(name, matrix)
        n = matrix.shape[0]
        if mean.ndim == 0:
            mean = jnp.full((n,), mean)
        if mean.shape != (n,):
            raise ValueError(f"mean: got shape {mean.shape}, expected ({n},) to match {name} of shape {matrix.shape}")
        self.mean, self.std = mean, None
        self.chol = dense.cholesky(matrix)  # blocked above jaxlib's LAPACK limit (issue 19)

    @property
    def event_shape(self):
        return tuple(self.mean.shape)

    def center(self):
        return self.mean

    def log_prob(self, theta):
        r = theta - self.mean
        n = r.size
        if self.std is not None:
            z = r / self.std
            return -0.5 * jnp.sum(z**2) - jnp.sum(jnp.broadcast_to(jnp.log(self.std), z.shape)) - 0.5 * n * LOG_2PI
        logdiag = jnp.sum(jnp.log(jnp.diagonal(self.chol)))
        if self.is_precision:  # P = L L^T: quadratic form ||L^T r||^2
            z = self.chol.T @ r
            return -0.5 * jnp.sum(z**2) + logdiag - 0.5 * n * LOG_2PI
        z = dense.solve_triangular(self.chol, r, lower=True)
        return -0.5 * jnp.sum(z**2) - logdiag - 0.5 * n * LOG_2PI

    def sample(self, key, shape=()):
        z = jax.random.normal(key, (*shape, *self.event_shape), dtype=self.mean.dtype)
        if self.std is not None:
            return self.mean + self.std * z
        if self.is_precision:  # x = m + L^{-T} z has covariance (L L^T)^{-1}
            x = dense.solve_triangular(self.chol.T, z.reshape(-1, z.shape[-1]).T, lower=False)
            return self.mean + x.T.reshape(z.shape)
        return self.mean + z @ self.chol.T

    def whiten(self, theta):
        """``z`` with ``-log p(θ) = 0.5 ||z||² + const``: the prior as a least-squares residual
        (used for Gauss-Newton curvature)."""
        r = theta - self.mean
        if self.std is not None:
            return r / self.std
        if self.is_precision:
            return self.chol.T @ r
        return dense.solve_triangular(self.chol, r, lower=True)

    def _chol(self) -> Float[Array, "n n"]:
        """The Cholesky factor, set whenever ``std`` is None (`__init__` sets exactly one)."""
        assert self.chol is not None
        return self.chol

    def cov_sqrt(self, z, *, transpose: bool = False):
        """``S z`` (or ``Sᵀ z``) for the square root ``S`` of the covariance, ``S Sᵀ = Γ``, that
        `whiten` inverts: ``whiten(mean + S z) = z``. ``S = diag(std)``, the Cholesky factor
        ``L`` of ``cov``, or ``L⁻ᵀ`` for ``precision = L Lᵀ`` (a triangular solve). ``z`` has the
        event shape."""
        if self.std is not None:
            return self.std * z
        chol = self._chol()
        if self.is_precision:  # S = L^{-T}, S^T = L^{-1}
            return dense.solve_triangular(chol, z, lower=True, transpose_a=not transpose)
        return (chol.T if transpose else chol) @ z

    def variance(self) -> Float[Array, "*event"]:
        """The prior variances (the covariance's diagonal); ``O(n³)`` once for ``precision``."""
        if self.std is not None:
            return self.std**2
        chol = self._chol()
        if self.is_precision:  # diag(L^{-T} L^{-1}): squared column norms of L^{-1}
            inv = dense.solve_triangular(chol, jnp.eye(chol.shape[0], dtype=chol.dtype), lower=True)
            return jnp.sum(inv**2, axis=0)
        return jnp.sum(chol**2, axis=1)

    def log_det_cov(self) -> Float[Array, ""]:
        """``log det Γ`` of the flattened θ."""
        if self.std is not None:
            return 2 * jnp.sum(jnp.broadcast_to(jnp.log(self.std), self.mean.shape))
        logdiag = 2 * jnp.sum(jnp.log(jnp.diagonal(self._chol())))
        return -logdiag if self.is_precision else logdiag

    def covariance(self) -> Float[Array, "n n"]:
        """The dense covariance matrix (of the flattened θ)."""
        if self.std is not None:
            return jnp.diag(self.std.reshape(-1) ** 2)
        chol = self._chol()
        c = chol @ chol.T
        if not self.is_precision:
            return c
        return dense.solve(c, jnp.eye(c.shape[0], dtype=c.dtype), what="priors.Gaussian.covariance",
                           alternative="variance() or cov_sqrt (no dense inverse)")


class LogNormal(AbstractPositive):
    """Positive θ with ``log θ ~ Normal(loc, scale)``."""

    loc: Float[Array, "*event"]
    scale: Float[Array, "*event"]

    def __init__(self, loc, scale):
        self.loc, self.scale = checked_loc_scale(loc, scale)

    def center(self):
        return jnp.exp(self.loc)

    def log_prob_entries(self, theta):
        logt = jnp.log(theta)
        z = (logt - self.loc) / self.scale
        return -0.5 * z**2 - jnp.log(self.scale) - logt - 0.5 * LOG_2PI

    def sample(self, key, shape=()):
        z = jax.random.normal(key, (*shape, *self.event_shape), self.loc.dtype)
        return jnp.exp(self.loc + self.scale * z)


class HalfNormal(AbstractPositive):
    """Positive θ with density ``2 N(θ; 0, scale^2)`` for θ > 0."""

    scale: Float[Array, "*event"]

    def __init__(self, scale):
        scale = as_float_array("scale", scale)
        check_positive("scale", scale)
        self.scale = scale

    def center(self):
        return self.scale * math.sqrt(2 / math.pi)  # the mean

    def log_prob_entries(self, theta):
        z = theta / self.scale
        return -0.5 * z**2 - jnp.log(self.scale) + 0.5 * math.log(2 / math.pi)

    def sample(self, key, shape=()):
        return self.scale * jnp.abs(jax.random.normal(key, (*shape, *self.event_shape), self.scale.dtype))


class TruncatedNormal(AbstractPrior):
    """``Normal(loc, scale)`` restricted to ``(low, high)`` (either bound may be infinite) and
    renormalised; sampled and optimised through the `jinverse.bijectors.Interval` bijector, so the bounds hold.

    Example: ``TruncatedNormal(1.0, 2.0, low=0.0)`` is a normal with mean parameter 1 on θ > 0.
    """

    loc: Float[Array, "*event"]
    scale: Float[Array, "*event"]
    low: Float[Array, "*event"]
    high: Float[Array, "*event"]

    def __init__(self, loc, scale, *, low=None, high=None):
        loc, scale = checked_loc_scale(loc, scale)
        low, high = checked_bounds(low, high, loc.shape)
        shape = low.shape
        self.loc, self.scale = jnp.broadcast_to(loc, shape), jnp.broadcast_to(scale, shape)
        self.low, self.high = low, high

    @property
    def event_shape(self):
        return tuple(self.loc.shape)

    @property
    def bijector(self):
        return bij.Interval(self.low, self.high)

    def _standard_bounds(self):
        return (self.low - self.loc) / self.scale, (self.high - self.loc) / self.scale

    def _log_mass(self):
        """``log(Φ(β) - Φ(α))``, from the tail the interval lies in (no cancellation)."""
        alpha, beta = self._standard_bounds()
        upper = alpha > 0  # reflect: Φ(β) - Φ(α) = Φ(-α) - Φ(-β)
        hi, lo = jnp.where(upper, -alpha, beta), jnp.where(upper, -beta, alpha)
        a, b = log_ndtr(hi), log_ndtr(lo)
        return a + jnp.log1p(-jnp.exp(b - a))

    def _quantile(self, p):
        """The ``p``-quantile, reflected into the lower tail where the interval is in the upper one."""
        alpha, beta = self._standard_bounds()
        upper = alpha > 0
        hi, lo = jnp.where(upper, -alpha, beta), jnp.where(upper, -beta, alpha)
        cdf_lo, cdf_hi = ndtr(lo), ndtr(hi)
        z = ndtri(cdf_lo + p * (cdf_hi - cdf_lo))
        z = jnp.clip(jnp.where(upper, -z, z), alpha, beta)
        return self.loc + self.scale * z

    def center(self):
        return self._quantile(jnp.full(self.event_shape, 0.5, self.loc.dtype))  # the median

    def log_prob(self, theta):
        inside = jnp.all((theta >= self.low) & (theta <= self.high))
        z = (theta - self.loc) / self.scale
        lp = jnp.sum(-0.5 * z**2 - jnp.log(self.scale) - 0.5 * LOG_2PI - self._log_mass())
        return jnp.where(inside, lp, -jnp.inf)

    def sample(self, key, shape=()):
        return self._quantile(jax.random.uniform(key, (*shape, *self.event_shape), self.loc.dtype))
