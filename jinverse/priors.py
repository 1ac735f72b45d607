"""Prior distributions over θ (``ji.priors``).

Every prior is an `equinox.Module` with ``log_prob(theta)``, ``sample(key, shape)``, the
``event_shape`` of one θ, a ``center()`` (a sensible starting point) and a ``bijector`` that
maps an unconstrained space onto its support. `Joint` combines priors over the leaves of a
pytree θ. Regularising priors (smoothness, total variation) live in `jinverse.regularizers`
and are re-exported here.
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from . import bijectors as bij
from ._checks import as_float_array, check_finite, check_positive, check_positive_definite, is_concrete

_LOG_2PI = math.log(2 * math.pi)


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


def _event(*arrays, names: tuple[str, ...] = ()) -> tuple[int, ...]:
    shapes = [jnp.shape(a) for a in arrays]
    try:
        return tuple(jnp.broadcast_shapes(*shapes))
    except ValueError:
        got = " and ".join(f"{n} of shape {s}" for n, s in zip(names, shapes))
        raise ValueError(f"{', '.join(names)}: got {got}, expected shapes that broadcast together") from None


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
            shape = _event(mean, std, names=("mean", "std"))
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
        self.chol = jnp.linalg.cholesky(matrix)

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
            return -0.5 * jnp.sum(z**2) - jnp.sum(jnp.broadcast_to(jnp.log(self.std), z.shape)) - 0.5 * n * _LOG_2PI
        logdiag = jnp.sum(jnp.log(jnp.diagonal(self.chol)))
        if self.is_precision:  # P = L L^T: quadratic form ||L^T r||^2
            z = self.chol.T @ r
            return -0.5 * jnp.sum(z**2) + logdiag - 0.5 * n * _LOG_2PI
        z = jax.scipy.linalg.solve_triangular(self.chol, r, lower=True)
        return -0.5 * jnp.sum(z**2) - logdiag - 0.5 * n * _LOG_2PI

    def sample(self, key, shape=()):
        z = jax.random.normal(key, (*shape, *self.event_shape), dtype=self.mean.dtype)
        if self.std is not None:
            return self.mean + self.std * z
        if self.is_precision:  # x = m + L^{-T} z has covariance (L L^T)^{-1}
            x = jax.scipy.linalg.solve_triangular(self.chol.T, z.reshape(-1, z.shape[-1]).T, lower=False)
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
        return jax.scipy.linalg.solve_triangular(self.chol, r, lower=True)

    def cov_sqrt(self, z, *, transpose: bool = False):
        """``S z`` (or ``Sᵀ z``) for the square root ``S`` of the covariance, ``S Sᵀ = Γ``, that
        `whiten` inverts: ``whiten(mean + S z) = z``. ``S = diag(std)``, the Cholesky factor
        ``L`` of ``cov``, or ``L⁻ᵀ`` for ``precision = L Lᵀ`` (a triangular solve). ``z`` has the
        event shape."""
        if self.std is not None:
            return self.std * z
        if self.is_precision:  # S = L^{-T}, S^T = L^{-1}
            return jax.scipy.linalg.solve_triangular(self.chol, z, lower=True, trans=0 if transpose else 1)
        return (self.chol.T if transpose else self.chol) @ z

    def variance(self) -> Float[Array, "*event"]:
        """The prior variances (the covariance's diagonal); ``O(n³)`` once for ``precision``."""
        if self.std is not None:
            return self.std**2
        if self.is_precision:  # diag(L^{-T} L^{-1}): squared column norms of L^{-1}
            inv = jax.scipy.linalg.solve_triangular(self.chol, jnp.eye(self.chol.shape[0], dtype=self.chol.dtype),
                                                    lower=True)
            return jnp.sum(inv**2, axis=0)
        return jnp.sum(self.chol**2, axis=1)

    def log_det_cov(self) -> Float[Array, ""]:
        """``log det Γ`` of the flattened θ."""
        if self.std is not None:
            return 2 * jnp.sum(jnp.broadcast_to(jnp.log(self.std), self.mean.shape))
        logdiag = 2 * jnp.sum(jnp.log(jnp.diagonal(self.chol)))
        return -logdiag if self.is_precision else logdiag

    def covariance(self) -> Float[Array, "n n"]:
        """The dense covariance matrix (of the flattened θ)."""
        if self.std is not None:
            return jnp.diag(self.std.reshape(-1) ** 2)
        c = self.chol @ self.chol.T
        return jnp.linalg.inv(c) if self.is_precision else c


def _loc_scale(loc, scale):
    """Checked ``loc`` (finite) and ``scale`` (> 0), broadcast to one event shape."""
    loc, scale = as_float_array("loc", loc), as_float_array("scale", scale)
    check_finite("loc", loc)
    check_positive("scale", scale)
    shape = _event(loc, scale, names=("loc", "scale"))
    return jnp.broadcast_to(loc, shape), jnp.broadcast_to(scale, shape)


class Laplace(AbstractPrior):
    """Laplace (double-exponential) prior: ``p(θ) ∝ exp(-|θ - loc| / scale)``; an L1 penalty."""

    loc: Float[Array, "*event"]
    scale: Float[Array, "*event"]

    def __init__(self, loc, scale):
        self.loc, self.scale = _loc_scale(loc, scale)

    @property
    def event_shape(self):
        return tuple(self.loc.shape)

    def center(self):
        return self.loc

    def log_prob(self, theta):
        return jnp.sum(-jnp.abs(theta - self.loc) / self.scale - jnp.log(2 * self.scale))

    def sample(self, key, shape=()):
        return self.loc + self.scale * jax.random.laplace(key, (*shape, *self.event_shape), self.loc.dtype)


class Uniform(AbstractPrior):
    """Uniform prior on the box ``(low, high)``; sampled and optimised through a sigmoid."""

    low: Float[Array, "*event"]
    high: Float[Array, "*event"]

    def __init__(self, low, high):
        low, high = as_float_array("low", low), as_float_array("high", high)
        check_finite("low", low)
        check_finite("high", high)
        _event(low, high, names=("low", "high"))
        if is_concrete(low) and is_concrete(high) and bool(jnp.any(low >= high)):
            raise ValueError(f"low, high: got low={low.tolist() if low.size < 7 else '...'} and "
                             f"high={high.tolist() if high.size < 7 else '...'}, expected low < high everywhere")
        shape = _event(low, high, names=("low", "high"))
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


class LogNormal(AbstractPrior):
    """Positive θ with ``log θ ~ Normal(loc, scale)``."""

    loc: Float[Array, "*event"]
    scale: Float[Array, "*event"]

    def __init__(self, loc, scale):
        self.loc, self.scale = _loc_scale(loc, scale)

    @property
    def event_shape(self):
        return tuple(self.loc.shape)

    @property
    def bijector(self):
        return bij.Exp()

    def center(self):
        return jnp.exp(self.loc)

    def log_prob(self, theta):
        safe = jnp.where(theta > 0, theta, 1.0)
        logt = jnp.log(safe)
        z = (logt - self.loc) / self.scale
        lp = jnp.sum(-0.5 * z**2 - jnp.log(self.scale) - logt - 0.5 * _LOG_2PI)
        return jnp.where(jnp.all(theta > 0), lp, -jnp.inf)

    def sample(self, key, shape=()):
        z = jax.random.normal(key, (*shape, *self.event_shape), self.loc.dtype)
        return jnp.exp(self.loc + self.scale * z)


class HalfNormal(AbstractPrior):
    """Positive θ with density ``2 N(θ; 0, scale^2)`` for θ > 0."""

    scale: Float[Array, "*event"]

    def __init__(self, scale):
        scale = as_float_array("scale", scale)
        check_positive("scale", scale)
        self.scale = scale

    @property
    def event_shape(self):
        return tuple(self.scale.shape)

    @property
    def bijector(self):
        return bij.Exp()

    def center(self):
        return self.scale * math.sqrt(2 / math.pi)  # the mean

    def log_prob(self, theta):
        z = theta / self.scale
        lp = jnp.sum(-0.5 * z**2 - jnp.log(self.scale) + 0.5 * math.log(2 / math.pi))
        return jnp.where(jnp.all(theta > 0), lp, -jnp.inf)

    def sample(self, key, shape=()):
        return self.scale * jnp.abs(jax.random.normal(key, (*shape, *self.event_shape), self.scale.dtype))


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
from .regularizers import GMRF, Gamma, SparseL1, TotalVariation  # noqa: E402, F401
