"""Shared helpers for the problem builders: option checks and relative-level Gaussian noise.

The noise convention of every problem built with `noisy_data`: ``noise`` is a *relative* level,
the noise standard deviation is ``std = noise * ||f(θ_true)|| / sqrt(m)`` (``m`` the number of
observed values), i.e. ``noise=0.01`` is noise whose RMS is 1% of the RMS of the clean data.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_positive_int
from ..likelihoods import Gaussian as GaussianLikelihood
from ..priors import AbstractPrior
from ..priors import Gaussian as GaussianPrior
from ..problem import InverseProblem
from ._registry import Benchmark


@eqx.filter_jit
def apply(fn, *args):
    """``fn(*args)`` compiled, and cached across builders (``fn`` a function or Module)."""
    return fn(*args)


@eqx.filter_jit
def jacobian(fn, x):
    """The dense Jacobian of ``fn(x).ravel()`` (the matrix of a linear forward model)."""
    return jax.jacfwd(lambda t: fn(t).reshape(-1))(x)


def check_noise(noise, name: str = "noise") -> float:
    """``noise`` must be a finite number > 0 (a relative level, or an absolute std)."""
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name}: got {noise!r} ({type(noise).__name__}), expected a number > 0 "
                        "(e.g. 0.01)")
    if not np.isfinite(noise) or noise <= 0:
        raise ValueError(f"{name}: got {noise!r}, expected a finite number > 0 (e.g. 0.01)")
    return float(noise)


def check_batch(batch) -> int | None:
    return None if batch is None else check_positive_int("batch", batch)


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}: got {value!r}, expected one of {', '.join(map(repr, choices))}")


def relative_std(clean, noise: float) -> float:
    """``noise * ||clean|| / sqrt(m)``: the noise std for a relative level ``noise``."""
    clean = np.asarray(clean, dtype=np.float64)
    std = noise * float(np.linalg.norm(clean)) / np.sqrt(clean.size)
    if not std > 0:
        raise ValueError("noise: the clean data is identically zero, so a relative noise level "
                         "is undefined; choose another example")
    return std


def noisy_data(seed: int, clean, std, batch: int | None):
    """``clean + std * z`` with one standard-normal draw ``z`` per observation.

    Draw ``i`` uses ``jax.random.split(key(seed), B)[i]``, so the unbatched data (``batch=None``)
    equals the first row of any batch with the same seed. Returns ``(B, *clean.shape)`` when
    ``batch`` is set, else ``clean.shape``.
    """
    clean = jnp.asarray(clean)
    b = 1 if batch is None else batch
    keys = jax.random.split(jax.random.key(seed), b)
    z = jax.vmap(lambda k: jax.random.normal(k, clean.shape, clean.dtype))(keys)
    y = clean + jnp.asarray(std, clean.dtype) * z
    return y[0] if batch is None else y


def tile(theta, batch: int | None):
    """θ_true for the batch: the same θ repeated ``batch`` times (or θ itself)."""
    theta = jnp.asarray(theta)
    return theta if batch is None else jnp.broadcast_to(theta, (batch, *theta.shape))


def rms(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.linalg.norm(x) / np.sqrt(x.size))


def gaussian_benchmark(name, forward, x, clean, *, noise, seed, batch, prior, options, info=None,
                       metric="rel_error", data=None, reference=None, std=None) -> Benchmark:
    """A `Benchmark` with Gaussian noise of relative level ``noise`` on ``clean = forward(x)``.

    ``data`` (default ``clean``) is what the noise is added to (e.g. Hansen's published ``b``);
    ``std``, when given, is an absolute noise std used instead of the relative ``noise``; the
    default prior is ``N(0, rms(x)² I)``. ``info`` gains ``"noise_std"``.
    """
    batch = check_batch(batch)
    seed = check_positive_int("seed", seed, minimum=0)
    if std is None:
        noise = check_noise(noise)
        std = relative_std(clean, noise)
    else:
        std = check_noise(std, "obs_std")
    y = noisy_data(seed, jnp.asarray(clean if data is None else data), std, batch)
    if prior is None:
        prior = GaussianPrior(jnp.zeros(np.shape(x)), rms(x))
    elif not isinstance(prior, AbstractPrior):
        raise TypeError(f"prior: got {type(prior).__name__}, expected a jinverse.priors prior or None")
    problem = InverseProblem(forward, prior, GaussianLikelihood(std))
    return Benchmark(name=name, problem=problem, y=y, theta_true=tile(x, batch),
                     reference={"solution": jnp.asarray(x), **(reference or {})}, metric=metric,
                     options={**options, "noise": noise, "seed": seed, "batch": batch},
                     info={**(info or {}), "noise_std": std})
