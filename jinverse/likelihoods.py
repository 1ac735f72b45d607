"""Observation models p(y | prediction) (``ji.likelihoods``).

A likelihood is an `equinox.Module` with ``log_prob(y, prediction)``, ``sample(key,
prediction)``, ``event_shape(prediction)`` (the shape of one observation given the shape of one
prediction) and ``check_data(y, prediction)``, a host-side check run before compiling.

Unknown likelihood parameters (a noise scale, a dispersion) are given as functions of θ, e.g.
``Gaussian(std=lambda theta: theta["sigma"])``, and joined to the forward model by `bind`::

    forward, likelihood = ji.likelihoods.bind(forward, ji.likelihoods.Gaussian(std=lambda t: t["sigma"]))
    problem = ji.InverseProblem(forward, ji.priors.Joint({"x": ..., "sigma": ji.priors.HalfNormal(1.0)}),
                                likelihood)
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, xlogy
from jaxtyping import Array, Float, PRNGKeyArray

from . import dense
from ._checks import as_float_array, check_finite, check_positive, check_positive_definite

_LOG_2PI = math.log(2 * math.pi)


class AbstractLikelihood(eqx.Module):
    """log p(y | prediction) for one observation."""

    @abc.abstractmethod
    def log_prob(self, y, prediction) -> Float[Array, ""]:
        """The log-likelihood of one observation, summed over its entries."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, prediction):
        """One simulated observation."""

    def event_shape(self, prediction: jax.ShapeDtypeStruct) -> tuple[int, ...]:
        """Shape of one observation for a prediction of this shape."""
        _check_bound(self)
        return tuple(prediction.shape)

    def check_data(self, y: np.ndarray, prediction: jax.ShapeDtypeStruct, name: str = "y") -> None:
        """Raise a ValueError naming ``name`` if ``y`` is not valid data (host side)."""
        if not np.all(np.isfinite(y)):
            bad = int(y.size - np.count_nonzero(np.isfinite(y)))
            raise ValueError(f"{name}: got {bad} non-finite value(s) (NaN or inf), expected finite observations")

    def residual_scale(self):
        """For least-squares likelihoods: ``(whiten)`` such that -log p = 0.5||whiten(y - f)||^2 + c.

        None for likelihoods that are not Gaussian.
        """
        return None


def _is_theta_param(value) -> bool:
    """A likelihood parameter given as a function of θ (not an array)."""
    return callable(value) and not isinstance(value, (jax.Array, np.ndarray))


def _theta_params(likelihood) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(likelihood) if _is_theta_param(getattr(likelihood, f.name)))


def _check_bound(likelihood) -> None:
    names = _theta_params(likelihood)
    if names:
        raise TypeError(f"likelihood: {type(likelihood).__name__}'s {', '.join(names)} "
                        f"{'is a function' if len(names) == 1 else 'are functions'} of θ, which the likelihood "
                        "alone cannot evaluate; expected the problem built from "
                        "`forward, likelihood = ji.likelihoods.bind(forward, likelihood)`")


def _param(name: str, value, *, positive: bool = True):
    """A checked array parameter, or a function of θ (checked when evaluated, by `bind`)."""
    if _is_theta_param(value):
        return value
    value = as_float_array(name, value)
    (check_positive if positive else check_finite)(name, value)
    return value


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]):
    """The broadcast shape of ``a`` and ``b``, or None if they do not broadcast."""
    try:
        return tuple(jnp.broadcast_shapes(a, b))
    except ValueError:
        return None


class Gaussian(AbstractLikelihood):
    """Additive Gaussian noise: ``Gaussian(std)`` (scalar or per-entry) or ``Gaussian(cov=C)``.

    ``std`` may be a function of θ (an unknown noise scale: one, one per group, or any function
    of θ), e.g. ``Gaussian(std=lambda t: t["sigma"])``; then build the problem through `bind`.
    """

    std: Float[Array, "*event"] | Callable | None
    chol: Float[Array, "m m"] | None

    def __init__(self, std=None, *, cov=None):
        if (std is None) == (cov is None):
            raise ValueError("Gaussian likelihood: expected exactly one of std or cov")
        if std is not None:
            self.std, self.chol = _param("std", std), None
        else:
            cov = as_float_array("cov", cov)
            check_positive_definite("cov", cov)
            self.std, self.chol = None, dense.cholesky(cov)  # blocked above the LAPACK limit (issue 19)

    def whiten(self, r):
        """Map a residual to one with unit-variance independent entries."""
        if self.std is not None:
            return r / self.std
        return dense.solve_triangular(self.chol, r, lower=True)

    def _log_norm(self, n):
        if self.std is not None:
            return -jnp.sum(jnp.broadcast_to(jnp.log(self.std), (n,) if self.std.ndim == 0 else self.std.shape)) \
                - 0.5 * n * _LOG_2PI
        return -jnp.sum(jnp.log(jnp.diagonal(self.chol))) - 0.5 * n * _LOG_2PI

    def log_prob(self, y, prediction):
        _check_bound(self)
        r = self.whiten(y - prediction)
        return -0.5 * jnp.sum(r**2) + self._log_norm(r.size)

    def sample(self, key, prediction):
        _check_bound(self)
        z = jax.random.normal(key, jnp.shape(prediction), jnp.result_type(prediction))
        if self.std is not None:
            return prediction + self.std * z
        return prediction + self.chol @ z

    def event_shape(self, prediction):
        _check_bound(self)
        shape = tuple(prediction.shape)
        if self.chol is not None and shape != (self.chol.shape[0],):
            raise ValueError(f"forward: returns shape {shape}, expected ({self.chol.shape[0]},) "
                             f"to match the likelihood's cov of shape {self.chol.shape}")
        if self.std is not None and self.std.ndim and _broadcast(self.std.shape, shape) != shape:
            raise ValueError(f"forward: returns shape {shape}, which the likelihood's std of shape "
                             f"{self.std.shape} does not broadcast to")
        return shape

    def residual_scale(self):
        return None if _theta_params(self) else self.whiten


class StudentT(AbstractLikelihood):
    """Heavy-tailed noise: Student-t with ``df`` degrees of freedom and ``scale``; either may be
    a function of θ (then build the problem through `bind`)."""

    df: Float[Array, "*event"] | Callable
    scale: Float[Array, "*event"] | Callable

    def __init__(self, df, scale):
        self.df, self.scale = _param("df", df), _param("scale", scale)

    def log_prob(self, y, prediction):
        _check_bound(self)
        z = (y - prediction) / self.scale
        nu = self.df
        lp = (gammaln((nu + 1) / 2) - gammaln(nu / 2) - 0.5 * jnp.log(nu * jnp.pi) - jnp.log(self.scale)
              - (nu + 1) / 2 * jnp.log1p(z**2 / nu))
        return jnp.sum(jnp.broadcast_to(lp, jnp.shape(z)))

    def sample(self, key, prediction):
        _check_bound(self)
        t = jax.random.t(key, self.df, jnp.shape(prediction), jnp.result_type(prediction))
        return prediction + self.scale * t


def _check_counts(y, name, upper=None):
    if np.any(y < 0) or np.any(y != np.round(y)) or (upper is not None and np.any(y > upper)):
        bound = "" if upper is None else f" <= num_trials (max {np.max(upper)!r})"
        raise ValueError(f"{name}: got values that are negative or not whole numbers{' or too large' if bound else ''} "
                         f"(min {y.min()!r}, max {y.max()!r}), expected non-negative integer counts{bound}")


class Poisson(AbstractLikelihood):
    """Counts: ``y ~ Poisson(rate)`` where the forward model returns the (positive) rates, or
    with ``log_rate=True`` the log-rates ``η`` (``log p = y η - exp(η) - log y!``: no log of a
    rate, so large or very negative η stay exact; a rate above float64's range, η > 709.78,
    gives -inf, never NaN)."""

    log_rate: bool = eqx.field(static=True, default=False)

    def log_prob(self, y, prediction):
        if self.log_rate:
            return jnp.sum(y * prediction - jnp.exp(prediction) - gammaln(y + 1))
        rate = prediction
        return jnp.sum(xlogy(y, rate) - rate - gammaln(y + 1))

    def sample(self, key, prediction):
        rate = jnp.exp(prediction) if self.log_rate else prediction
        return jax.random.poisson(key, rate, jnp.shape(prediction)).astype(jnp.result_type(prediction))

    def check_data(self, y, prediction, name="y"):
        super().check_data(y, prediction, name)
        _check_counts(y, name)


class NegativeBinomial(AbstractLikelihood):
    """Over-dispersed counts: mean ``μ`` from the forward model (its log with ``log_mean=True``)
    and variance ``μ + μ²/dispersion`` (a gamma-Poisson mixture; scipy's ``nbinom(n=dispersion,
    p=dispersion/(dispersion+μ))``). ``dispersion`` may be a function of θ (see `bind`)."""

    dispersion: Float[Array, "*event"] | Callable
    log_mean: bool = eqx.field(static=True, default=False)

    def __init__(self, dispersion, *, log_mean: bool = False):
        self.dispersion, self.log_mean = _param("dispersion", dispersion), bool(log_mean)

    def log_prob(self, y, prediction):
        _check_bound(self)
        phi = self.dispersion
        # log μ/(φ+μ) and log φ/(φ+μ) from log μ: exact for tiny and huge means alike
        log_mu = prediction if self.log_mean else jnp.log(prediction)
        log_phi = jnp.log(phi)
        log_total = jnp.logaddexp(log_phi, log_mu)
        lp = (gammaln(y + phi) - gammaln(phi) - gammaln(y + 1) + phi * (log_phi - log_total)
              + xlogy(y, jnp.exp(log_mu - log_total)))
        return jnp.sum(jnp.broadcast_to(lp, jnp.shape(y)))

    def sample(self, key, prediction):
        _check_bound(self)
        mu = jnp.exp(prediction) if self.log_mean else prediction
        k1, k2 = jax.random.split(key)
        dtype = jnp.result_type(prediction)
        rate = jax.random.gamma(k1, jnp.broadcast_to(self.dispersion, jnp.shape(mu)), dtype=dtype) * mu / self.dispersion
        return jax.random.poisson(k2, rate, jnp.shape(mu)).astype(dtype)

    def check_data(self, y, prediction, name="y"):
        super().check_data(y, prediction, name)
        _check_counts(y, name)


class Binomial(AbstractLikelihood):
    """Successes out of ``num_trials``: ``y ~ Binomial(num_trials, sigmoid(logit))`` with the
    forward model returning logits (as `Bernoulli`, which is ``num_trials=1``)."""

    num_trials: Float[Array, "*event"]

    def __init__(self, num_trials):
        n = as_float_array("num_trials", num_trials)
        check_finite("num_trials", n)
        if np.any(np.asarray(n) < 0) or np.any(np.asarray(n) != np.round(np.asarray(n))):
            raise ValueError(f"num_trials: got {np.asarray(n).tolist() if n.size < 7 else '...'}, expected "
                             "non-negative integers")
        self.num_trials = n

    def log_prob(self, y, prediction):
        n = self.num_trials
        lp = (gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1) + y * jax.nn.log_sigmoid(prediction)
              + (n - y) * jax.nn.log_sigmoid(-prediction))
        return jnp.sum(jnp.broadcast_to(lp, jnp.shape(y)))

    def sample(self, key, prediction):
        dtype = jnp.result_type(prediction)
        n = jnp.broadcast_to(self.num_trials, jnp.shape(prediction)).astype(dtype)
        return jax.random.binomial(key, n, jax.nn.sigmoid(prediction), dtype=dtype)

    def event_shape(self, prediction):
        shape = tuple(prediction.shape)
        if self.num_trials.ndim and _broadcast(self.num_trials.shape, shape) != shape:
            raise ValueError(f"forward: returns shape {shape}, which the likelihood's num_trials of shape "
                             f"{self.num_trials.shape} does not broadcast to")
        return shape

    def check_data(self, y, prediction, name="y"):
        super().check_data(y, prediction, name)
        _check_counts(y, name, upper=np.broadcast_to(np.asarray(self.num_trials), y.shape[y.ndim - len(prediction.shape):]))


class LogNormal(AbstractLikelihood):
    """Positive data with multiplicative noise: ``log y ~ Normal(prediction, scale²)``, the
    forward model returning the location of ``log y``. ``scale`` may be a function of θ (see `bind`)."""

    scale: Float[Array, "*event"] | Callable

    def __init__(self, scale):
        self.scale = _param("scale", scale)

    def log_prob(self, y, prediction):
        _check_bound(self)
        logy = jnp.log(y)
        z = (logy - prediction) / self.scale
        lp = -0.5 * z**2 - jnp.log(self.scale) - logy - 0.5 * _LOG_2PI
        return jnp.sum(jnp.broadcast_to(lp, jnp.shape(z)))

    def sample(self, key, prediction):
        _check_bound(self)
        z = jax.random.normal(key, jnp.shape(prediction), jnp.result_type(prediction))
        return jnp.exp(prediction + self.scale * z)

    def check_data(self, y, prediction, name="y"):
        super().check_data(y, prediction, name)
        if np.any(y <= 0):
            raise ValueError(f"{name}: got values <= 0 (min {y.min()!r}), expected positive observations")


class MultivariateGaussian(AbstractLikelihood):
    """``y ~ N(μ, Σ)`` with a mean and a covariance that both come from the forward model, which
    returns ``jnp.vstack([μ, Σ])`` (shape ``(n + 1, n)``): a covariance that depends on θ, e.g.
    a Gaussian process's marginal likelihood, ``Σ = k(x, x; θ) + σ² I``. (A covariance fixed in
    advance is ``Gaussian(cov=...)``, factorised once.) A Σ that is not positive definite gives
    -inf. The entries of y are not independent, so there is no pointwise log-likelihood.

    Example (GP regression, unknown amplitude, length scale and noise)::

        def forward(t):
            k = t["alpha"] ** 2 * jnp.exp(-0.5 * (x[:, None] - x) ** 2 / t["rho"] ** 2)
            return jnp.vstack([jnp.zeros(len(x)), k + t["sigma"] ** 2 * jnp.eye(len(x))])
    """

    def _mean_chol(self, prediction):
        return prediction[0], dense.cholesky(prediction[1:])  # blocked above the LAPACK limit

    def log_prob(self, y, prediction):
        mean, chol = self._mean_chol(prediction)
        z = dense.solve_triangular(chol, y - mean, lower=True)
        lp = -0.5 * jnp.sum(z**2) - jnp.sum(jnp.log(jnp.diagonal(chol))) - 0.5 * z.size * _LOG_2PI
        return jnp.where(jnp.isnan(lp), -jnp.inf, lp)  # Cholesky of a non-positive-definite Σ is NaN

    def sample(self, key, prediction):
        mean, chol = self._mean_chol(prediction)
        return mean + chol @ jax.random.normal(key, mean.shape, mean.dtype)

    def event_shape(self, prediction):
        shape = tuple(prediction.shape)
        if len(shape) != 2 or shape[0] != shape[1] + 1:
            raise ValueError(f"forward: returns shape {shape}, expected (n + 1, n) for MultivariateGaussian: "
                             "jnp.vstack([mean, cov]), the mean of shape (n,) over the (n, n) covariance")
        return shape[1:]


class Bernoulli(AbstractLikelihood):
    """Binary outcomes: ``y ∈ {0, 1}`` with the forward model returning logits."""

    def log_prob(self, y, prediction):
        return jnp.sum(y * jax.nn.log_sigmoid(prediction) + (1 - y) * jax.nn.log_sigmoid(-prediction))

    def sample(self, key, prediction):
        return jax.random.bernoulli(key, jax.nn.sigmoid(prediction)).astype(jnp.result_type(prediction))

    def check_data(self, y, prediction, name="y"):
        super().check_data(y, prediction, name)
        if np.any((y != 0) & (y != 1)):
            raise ValueError(f"{name}: got values other than 0 and 1 ({np.unique(y)[:6].tolist()}), "
                             "expected binary outcomes 0 or 1")


class Categorical(AbstractLikelihood):
    """Class labels: ``y ∈ {0, ..., K-1}`` with the forward model returning K logits.

    This is how a trained classifier is inverted: "which θ make the model say class k?".
    """

    def log_prob(self, y, prediction):
        logp = jax.nn.log_softmax(prediction, axis=-1)
        label = jnp.asarray(y).astype(jnp.int32)
        return jnp.sum(jnp.take_along_axis(logp, label[..., None], axis=-1))

    def sample(self, key, prediction):
        return jax.random.categorical(key, prediction, axis=-1)

    def event_shape(self, prediction):
        if len(prediction.shape) < 1:
            raise ValueError("forward: returns a scalar, expected a vector of class logits for Categorical")
        return tuple(prediction.shape[:-1])

    def check_data(self, y, prediction, name="y"):
        super().check_data(y, prediction, name)
        k = prediction.shape[-1]
        _refuse_one_hot(y, prediction, name)
        if np.any(y != np.round(y)) or np.any(y < 0) or np.any(y >= k):
            raise ValueError(f"{name}: got labels {np.unique(y)[:6].tolist()}, expected integers in "
                             f"[0, {k - 1}] for a model with {k} classes")


def _refuse_one_hot(y: np.ndarray, prediction, name: str) -> None:
    """One-hot rows (a 1 among K-1 zeros) along the last batch axis would pass as K separate
    labels 0/1: refused when random labels would look like that less than once in a million
    times (``K**(1-K)`` per row), else warned about (a legitimate batch of K labels can be
    [0, 0, 1, 0, ...]). Two classes are let through: [0, 1] is most likely two labels."""
    import warnings

    k, event_ndim = prediction.shape[-1], len(prediction.shape) - 1
    axis = y.ndim - event_ndim - 1  # the last batch axis
    if axis < 0 or k < 3 or y.shape[axis] != k:
        return
    if not (np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=axis) == 1)):
        return
    rows = y.size // k
    labels = (*y.shape[:axis], *y.shape[axis + 1:])
    msg = (f"{name}: got shape {y.shape} holding {rows} one-hot row{'s' if rows > 1 else ''} of length {k} "
           f"(axis {axis}), expected integer class labels in [0, {k - 1}] shaped (*batch"
           f"{', *event' if event_ndim else ''}): pass {name}.argmax(axis={axis}) (shape {labels}). If these "
           f"are {k} separate labels, add a batch axis after them: shape {(*y.shape[:axis + 1], 1, *y.shape[axis + 1:])}")
    if rows * (k - 1) * math.log(k) > 6 * math.log(10):  # random labels: chance below 1e-6
        raise ValueError(msg)
    warnings.warn(msg, UserWarning, stacklevel=5)


class ForwardWithParameters(eqx.Module):
    """``θ ↦ stack([forward(θ), p₁(θ), ...])``: the prediction and the likelihood's parameters that
    are functions of θ, each broadcast to the prediction's shape (made by `bind`)."""

    forward: Callable
    params: tuple[Callable, ...]
    names: tuple[str, ...] = eqx.field(static=True)

    def __call__(self, theta):
        pred = jnp.asarray(self.forward(theta))
        rows = [pred]
        for name, fn in zip(self.names, self.params):
            value = jnp.asarray(fn(theta), pred.dtype)
            if _broadcast(value.shape, pred.shape) != pred.shape:
                raise ValueError(f"likelihood: {name}(θ) has shape {value.shape}, expected a shape that "
                                 f"broadcasts to forward's output {pred.shape}")
            rows.append(jnp.broadcast_to(value, pred.shape))
        return jnp.stack(rows)


class ParametersInPrediction(AbstractLikelihood):
    """``base`` with the parameters ``names`` read from rows 1, 2, ... of the prediction and the
    prediction itself from row 0 (the output of `ForwardWithParameters`; made by `bind`)."""

    base: AbstractLikelihood
    names: tuple[str, ...] = eqx.field(static=True)

    def _split(self, prediction):
        lik = eqx.tree_at(lambda b: tuple(getattr(b, n) for n in self.names), self.base,
                          tuple(prediction[1 + i] for i in range(len(self.names))))
        return lik, prediction[0]

    def _inner(self, prediction: jax.ShapeDtypeStruct):
        k = len(self.names)
        if len(prediction.shape) < 1 or prediction.shape[0] != 1 + k:
            raise ValueError(f"forward: returns shape {tuple(prediction.shape)}, expected ({1 + k}, *prediction) "
                             "from ji.likelihoods.bind (the prediction and the likelihood's θ-parameters)")
        inner = jax.ShapeDtypeStruct(tuple(prediction.shape[1:]), prediction.dtype)
        lik = eqx.tree_at(lambda b: tuple(getattr(b, n) for n in self.names), self.base,
                          tuple(jnp.ones(inner.shape, inner.dtype) for _ in self.names))
        return lik, inner

    def log_prob(self, y, prediction):
        lik, pred = self._split(prediction)
        return lik.log_prob(y, pred)

    def sample(self, key, prediction):
        lik, pred = self._split(prediction)
        return lik.sample(key, pred)

    def event_shape(self, prediction):
        lik, inner = self._inner(prediction)
        return lik.event_shape(inner)

    def check_data(self, y, prediction, name="y"):
        lik, inner = self._inner(prediction)
        lik.check_data(y, inner, name)


def bind(forward: Callable, likelihood: AbstractLikelihood) -> tuple[Callable, AbstractLikelihood]:
    """Join a likelihood whose parameters are functions of θ to the forward model.

    Returns ``(forward', likelihood')`` for `ji.InverseProblem`: ``forward'(θ)`` stacks the
    prediction and each such parameter evaluated at θ (broadcast to the prediction's shape) on a
    new leading axis; ``likelihood'`` unstacks them. A likelihood without such parameters comes
    back unchanged. The problem's density is then an ordinary function of θ, so MAP, every
    sampler and Laplace treat the parameters as the unknowns they are.

    Example (a linear model with an unknown noise scale)::

        forward, lik = ji.likelihoods.bind(lambda t: X @ t["beta"],
                                           ji.likelihoods.Gaussian(std=lambda t: t["sigma"]))
        prior = ji.priors.Joint({"beta": ji.priors.Gaussian(jnp.zeros(p), 10.0),
                                 "sigma": ji.priors.HalfCauchy(1.0)})
        problem = ji.InverseProblem(forward, prior, lik)
    """
    if not isinstance(likelihood, AbstractLikelihood):
        raise TypeError(f"likelihood: got {type(likelihood).__name__}, expected a jinverse.likelihoods likelihood")
    if not callable(forward):
        raise TypeError(f"forward: got {type(forward).__name__}, expected a callable on θ")
    names = _theta_params(likelihood)
    if not names:
        return forward, likelihood
    params = tuple(getattr(likelihood, n) for n in names)
    return ForwardWithParameters(forward, params, names), ParametersInPrediction(likelihood, names)
