"""Prior distributions over θ (``ji.priors``).

Every prior is an `equinox.Module` with ``log_prob(theta)``, ``sample(key, shape)``, the
``event_shape`` of one θ, a ``center()`` (a sensible starting point) and a ``bijector`` that
maps an unconstrained space onto its support. `Joint` combines priors over the leaves of a
pytree θ. Regularising priors (smoothness, total variation) live in `jinverse.regularizers`
and are re-exported here.

On the real line: `Gaussian`, `Laplace`, `Cauchy`, `StudentT`; positive: `LogNormal`,
`HalfNormal`, `HalfCauchy`, `Exponential`, `Gamma`, `InverseGamma`; bounded: `Uniform`, `Beta`,
`TruncatedNormal` (either bound may be infinite); improper: `Flat` (optionally half-bounded,
``is_proper`` False: it has no draws, so solvers need an ``init``).
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import betaln, gammaln, log_ndtr, ndtr, ndtri
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
        for name, a in (("low", low), ("high", high)):
            if is_concrete(a) and bool(jnp.any(jnp.isinf(a))):
                raise ValueError(f"{name}: got {int(jnp.sum(jnp.isinf(a)))} non-finite value(s) (inf), expected "
                                 "finite bounds (a uniform density needs a finite width); for a flat prior on a "
                                 "half-line use the improper Flat(low=...) or Flat(high=...)")
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


def _params(**named):
    """Checked parameters (``name=(value, "positive" | "finite")``), broadcast to one event shape."""
    arrays = {}
    for name, (value, kind) in named.items():
        a = as_float_array(name, value)
        (check_positive if kind == "positive" else check_finite)(name, a)
        arrays[name] = a
    shape = _event(*arrays.values(), names=tuple(arrays))
    return [jnp.broadcast_to(a, shape) for a in arrays.values()]


def _positive_only(theta, lp_fn):
    """``sum(lp_fn(θ))`` where every θ > 0, else -inf (and no NaN in the unused branch)."""
    safe = jnp.where(theta > 0, theta, 1.0)
    return jnp.where(jnp.all(theta > 0), jnp.sum(lp_fn(safe)), -jnp.inf)


class Interval(bij.AbstractBijector):
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


def _bounds(low, high, shape=()):
    """Checked bounds (NaN refused, ``low < high``), broadcast with ``shape``."""
    low, high = as_float_array("low", -jnp.inf if low is None else low), as_float_array("high", jnp.inf if high is None else high)
    for name, a in (("low", low), ("high", high)):
        if is_concrete(a) and bool(jnp.any(jnp.isnan(a))):
            raise ValueError(f"{name}: got NaN, expected a number (or ±inf for no bound)")
    if is_concrete(low) and is_concrete(high) and bool(jnp.any(low >= high)):
        raise ValueError(f"low, high: got low={low.tolist() if low.size < 7 else '...'} and "
                         f"high={high.tolist() if high.size < 7 else '...'}, expected low < high everywhere")
    shape = _event(jnp.zeros(shape), low, high, names=("shape", "low", "high"))
    return jnp.broadcast_to(low, shape), jnp.broadcast_to(high, shape)


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
        self.low, self.high = _bounds(low, high, tuple(shape))

    @property
    def event_shape(self):
        return tuple(self.low.shape)

    @property
    def is_proper(self):
        return False

    @property
    def bijector(self):
        return Interval(self.low, self.high)

    def center(self):
        return self.bijector.forward(jnp.zeros(self.event_shape, self.low.dtype))

    def log_prob(self, theta):
        inside = jnp.all((theta >= self.low) & (theta <= self.high))
        return jnp.where(inside, 0.0, -jnp.inf).astype(jnp.result_type(theta, self.low))

    def sample(self, key, shape=()):
        raise ValueError("prior: Flat is improper and has no draws; give a starting point instead, "
                         "e.g. ji.sample(problem, y, key=key, init=theta0) or init='map'")


class Cauchy(AbstractPrior):
    """Cauchy prior with location ``loc`` and scale ``scale``."""

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
        z = (theta - self.loc) / self.scale
        return jnp.sum(-jnp.log1p(z**2) - jnp.log(math.pi * self.scale))

    def sample(self, key, shape=()):
        return self.loc + self.scale * jax.random.cauchy(key, (*shape, *self.event_shape), self.loc.dtype)


class HalfCauchy(AbstractPrior):
    """Positive θ with density ``2 Cauchy(θ; 0, scale)`` for θ > 0 (a weakly informative scale prior)."""

    scale: Float[Array, "*event"]

    def __init__(self, scale):
        (self.scale,) = _params(scale=(scale, "positive"))

    @property
    def event_shape(self):
        return tuple(self.scale.shape)

    @property
    def bijector(self):
        return bij.Exp()

    def center(self):
        return self.scale  # the median

    def log_prob(self, theta):
        return _positive_only(theta, lambda t: math.log(2 / math.pi) - jnp.log(self.scale)
                              - jnp.log1p((t / self.scale) ** 2))

    def sample(self, key, shape=()):
        return self.scale * jnp.abs(jax.random.cauchy(key, (*shape, *self.event_shape), self.scale.dtype))


class StudentT(AbstractPrior):
    """Student-t prior with ``df`` degrees of freedom, location ``loc`` and scale ``scale``."""

    df: Float[Array, "*event"]
    loc: Float[Array, "*event"]
    scale: Float[Array, "*event"]

    def __init__(self, df, loc, scale):
        self.df, self.loc, self.scale = _params(df=(df, "positive"), loc=(loc, "finite"), scale=(scale, "positive"))

    @property
    def event_shape(self):
        return tuple(self.loc.shape)

    def center(self):
        return self.loc

    def log_prob(self, theta):
        nu, z = self.df, (theta - self.loc) / self.scale
        return jnp.sum(gammaln((nu + 1) / 2) - gammaln(nu / 2) - 0.5 * jnp.log(nu * math.pi) - jnp.log(self.scale)
                       - (nu + 1) / 2 * jnp.log1p(z**2 / nu))

    def sample(self, key, shape=()):
        t = jax.random.t(key, self.df, (*shape, *self.event_shape), self.loc.dtype)
        return self.loc + self.scale * t


class Exponential(AbstractPrior):
    """Positive θ with density ``rate · exp(-rate θ)``."""

    rate: Float[Array, "*event"]

    def __init__(self, rate):
        (self.rate,) = _params(rate=(rate, "positive"))

    @property
    def event_shape(self):
        return tuple(self.rate.shape)

    @property
    def bijector(self):
        return bij.Exp()

    def center(self):
        return 1 / self.rate  # the mean

    def log_prob(self, theta):
        return _positive_only(theta, lambda t: jnp.log(self.rate) - self.rate * t)

    def sample(self, key, shape=()):
        return jax.random.exponential(key, (*shape, *self.event_shape), self.rate.dtype) / self.rate


class InverseGamma(AbstractPrior):
    """Positive θ with ``1/θ ~ Gamma(concentration, rate=scale)``:
    ``p(θ) ∝ θ^(-concentration-1) exp(-scale/θ)`` (e.g. a noise variance)."""

    concentration: Float[Array, "*event"]
    scale: Float[Array, "*event"]

    def __init__(self, concentration, scale):
        self.concentration, self.scale = _params(concentration=(concentration, "positive"),
                                                 scale=(scale, "positive"))

    @property
    def event_shape(self):
        return tuple(self.scale.shape)

    @property
    def bijector(self):
        return bij.Exp()

    def center(self):
        return self.scale / (self.concentration + 1)  # the mode (the mean is infinite for a <= 1)

    def log_prob(self, theta):
        a, b = self.concentration, self.scale
        return _positive_only(theta, lambda t: a * jnp.log(b) - gammaln(a) - (a + 1) * jnp.log(t) - b / t)

    def sample(self, key, shape=()):
        return self.scale / jax.random.gamma(key, self.concentration, (*shape, *self.event_shape), self.scale.dtype)


class Beta(AbstractPrior):
    """θ in (0, 1) with density ``∝ θ^(a-1) (1-θ)^(b-1)``; sampled and optimised through a sigmoid."""

    a: Float[Array, "*event"]
    b: Float[Array, "*event"]

    def __init__(self, a, b):
        self.a, self.b = _params(a=(a, "positive"), b=(b, "positive"))

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


class TruncatedNormal(AbstractPrior):
    """``Normal(loc, scale)`` restricted to ``(low, high)`` (either bound may be infinite) and
    renormalised; sampled and optimised through the `Interval` bijector, so the bounds hold.

    Example: ``TruncatedNormal(1.0, 2.0, low=0.0)`` is a normal with mean parameter 1 on θ > 0.
    """

    loc: Float[Array, "*event"]
    scale: Float[Array, "*event"]
    low: Float[Array, "*event"]
    high: Float[Array, "*event"]

    def __init__(self, loc, scale, *, low=None, high=None):
        loc, scale = _loc_scale(loc, scale)
        low, high = _bounds(low, high, loc.shape)
        shape = low.shape
        self.loc, self.scale = jnp.broadcast_to(loc, shape), jnp.broadcast_to(scale, shape)
        self.low, self.high = low, high

    @property
    def event_shape(self):
        return tuple(self.loc.shape)

    @property
    def bijector(self):
        return Interval(self.low, self.high)

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
        lp = jnp.sum(-0.5 * z**2 - jnp.log(self.scale) - 0.5 * _LOG_2PI - self._log_mass())
        return jnp.where(inside, lp, -jnp.inf)

    def sample(self, key, shape=()):
        return self._quantile(jax.random.uniform(key, (*shape, *self.event_shape), self.loc.dtype))


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
from .regularizers import GMRF, Gamma, SparseL1, TotalVariation  # noqa: E402, F401
