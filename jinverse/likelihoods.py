"""Observation models p(y | prediction) (``ji.likelihoods``).

A likelihood is an `equinox.Module` with ``log_prob(y, prediction)``, ``sample(key,
prediction)``, ``event_shape(prediction)`` (the shape of one observation given the shape of one
prediction) and ``check_data(y, prediction)``, a host-side check run before compiling.
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln
from jaxtyping import Array, Float, PRNGKeyArray

from ._checks import as_float_array, check_positive, check_positive_definite

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


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]):
    """The broadcast shape of ``a`` and ``b``, or None if they do not broadcast."""
    try:
        return tuple(jnp.broadcast_shapes(a, b))
    except ValueError:
        return None


class Gaussian(AbstractLikelihood):
    """Additive Gaussian noise: ``Gaussian(std)`` (scalar or per-entry) or ``Gaussian(cov=C)``."""

    std: Float[Array, "*event"] | None
    chol: Float[Array, "m m"] | None

    def __init__(self, std=None, *, cov=None):
        if (std is None) == (cov is None):
            raise ValueError("Gaussian likelihood: expected exactly one of std or cov")
        if std is not None:
            std = as_float_array("std", std)
            check_positive("std", std)
            self.std, self.chol = std, None
        else:
            cov = as_float_array("cov", cov)
            check_positive_definite("cov", cov)
            self.std, self.chol = None, jnp.linalg.cholesky(cov)

    def whiten(self, r):
        """Map a residual to one with unit-variance independent entries."""
        if self.std is not None:
            return r / self.std
        return jax.scipy.linalg.solve_triangular(self.chol, r, lower=True)

    def _log_norm(self, n):
        if self.std is not None:
            return -jnp.sum(jnp.broadcast_to(jnp.log(self.std), (n,) if self.std.ndim == 0 else self.std.shape)) \
                - 0.5 * n * _LOG_2PI
        return -jnp.sum(jnp.log(jnp.diagonal(self.chol))) - 0.5 * n * _LOG_2PI

    def log_prob(self, y, prediction):
        r = self.whiten(y - prediction)
        return -0.5 * jnp.sum(r**2) + self._log_norm(r.size)

    def sample(self, key, prediction):
        z = jax.random.normal(key, jnp.shape(prediction), jnp.result_type(prediction))
        if self.std is not None:
            return prediction + self.std * z
        return prediction + self.chol @ z

    def event_shape(self, prediction):
        shape = tuple(prediction.shape)
        if self.chol is not None and shape != (self.chol.shape[0],):
            raise ValueError(f"forward: returns shape {shape}, expected ({self.chol.shape[0]},) "
                             f"to match the likelihood's cov of shape {self.chol.shape}")
        if self.std is not None and self.std.ndim and _broadcast(self.std.shape, shape) != shape:
            raise ValueError(f"forward: returns shape {shape}, which the likelihood's std of shape "
                             f"{self.std.shape} does not broadcast to")
        return shape

    def residual_scale(self):
        return self.whiten


class StudentT(AbstractLikelihood):
    """Heavy-tailed noise: Student-t with ``df`` degrees of freedom and ``scale``."""

    df: Float[Array, ""]
    scale: Float[Array, "*event"]

    def __init__(self, df, scale):
        df, scale = as_float_array("df", df), as_float_array("scale", scale)
        check_positive("df", df)
        check_positive("scale", scale)
        self.df, self.scale = df, scale

    def log_prob(self, y, prediction):
        z = (y - prediction) / self.scale
        nu = self.df
        lp = (gammaln((nu + 1) / 2) - gammaln(nu / 2) - 0.5 * jnp.log(nu * jnp.pi) - jnp.log(self.scale)
              - (nu + 1) / 2 * jnp.log1p(z**2 / nu))
        return jnp.sum(jnp.broadcast_to(lp, jnp.shape(z)))

    def sample(self, key, prediction):
        t = jax.random.t(key, self.df, jnp.shape(prediction), jnp.result_type(prediction))
        return prediction + self.scale * t


class Poisson(AbstractLikelihood):
    """Counts: ``y ~ Poisson(rate)`` where the forward model returns the (positive) rates."""

    def log_prob(self, y, prediction):
        rate = prediction
        return jnp.sum(jax.scipy.special.xlogy(y, rate) - rate - gammaln(y + 1))

    def sample(self, key, prediction):
        return jax.random.poisson(key, prediction, jnp.shape(prediction)).astype(jnp.result_type(prediction))

    def check_data(self, y, prediction, name="y"):
        super().check_data(y, prediction, name)
        if np.any(y < 0) or np.any(y != np.round(y)):
            raise ValueError(f"{name}: got values that are negative or not whole numbers "
                             f"(min {y.min()!r}), expected non-negative integer counts")


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
