"""Learned priors: θ = g(z) with z ~ N(0, I), for a trained decoder (generator) g.

`latent_problem` rewrites an `InverseProblem` in the decoder's latent space: the unknown is z,
its prior the standard normal, the forward model ``forward ∘ g``, the likelihood unchanged; so
``ji.solve_map``, ``ji.sample`` and ``ji.laplace`` run on z as on any problem, and ``g`` maps their
answers back to θ (`decode`). The original prior is replaced by the one the decoder learned.

`train_decoder` learns such a g from example θs with a variational autoencoder (an equinox
encoder and decoder, the evidence lower bound maximised by Adam in `training.fit`): its training
pushes the codes of the examples towards N(0, I), the prior `latent_problem` puts on z.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .. import priors
from .._checks import check_key, check_positive_int
from ..problem import InverseProblem
from .training import fit


class DecodedForward(eqx.Module):
    """``z -> forward(decoder(z))``: a forward model on the latent code."""

    forward: Callable
    decoder: Callable

    def __call__(self, z):
        return self.forward(self.decoder(z))


class Decoder(eqx.Module):
    """``z -> loc + scale * mlp(z)``, reshaped to θ's shape: the generator a `train_decoder` learns."""

    mlp: eqx.nn.MLP
    loc: Array
    scale: Array
    latent_dim: int = eqx.field(static=True)

    def __call__(self, z):
        return self.loc + self.scale * self.mlp(z).reshape(self.loc.shape)


class _VAE(eqx.Module):
    encoder: eqx.nn.MLP  # x -> (mean, log variance) of the code
    decoder: Decoder


def latent_problem(problem: InverseProblem, decoder: Callable, latent_dim: int) -> InverseProblem:
    """The problem in the latent space of ``decoder``: p(z | y) ∝ p(y | forward(g(z))) N(z; 0, I).

    Args:
        problem: the `InverseProblem` (its forward model and likelihood are kept, its prior is not).
        decoder: a JAX function or `equinox.Module` g mapping one code ``(latent_dim,)`` to one θ
            shaped like ``problem``'s.
        latent_dim: the length of z.

    Returns:
        An `InverseProblem` over z; map its solutions back with ``decode(decoder, z)``.

    Example::

        g = ji.amortized.train_decoder(examples, 8, jax.random.key(0))
        latent = ji.amortized.latent_problem(problem, g, 8)
        z = ji.solve_map(latent, y, num_starts=4, key=jax.random.key(1)).theta
        theta = ji.amortized.decode(g, z)
    """
    if not isinstance(problem, InverseProblem):
        raise TypeError(f"problem: got {type(problem).__name__}, expected a jinverse.InverseProblem")
    if not callable(decoder):
        raise TypeError(f"decoder: got {type(decoder).__name__}, expected a function of z")
    latent_dim = check_positive_int("latent_dim", latent_dim)
    ref = problem.theta_shape_dtype()
    dtype = jnp.result_type(*[r.dtype for r in jax.tree.leaves(ref)])
    z = jax.ShapeDtypeStruct((latent_dim,), dtype)
    try:
        out = jax.eval_shape(decoder, z)
    except Exception as exc:
        raise ValueError(f"decoder: failed on a code of shape ({latent_dim},): {exc}") from exc
    same = jax.tree.structure(out) == jax.tree.structure(ref) and all(
        a.shape == b.shape for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(ref)))
    if not same:
        raise ValueError(f"decoder: returns {jax.tree.map(lambda a: a.shape, out)} for a code of shape "
                         f"({latent_dim},), expected θ's shape {jax.tree.map(lambda a: a.shape, ref)}")
    return InverseProblem(DecodedForward(problem.forward, decoder), priors.Gaussian(jnp.zeros(latent_dim, dtype), 1.0),
                          problem.likelihood)


def decode(decoder: Callable, z: Float[Array, "*batch k"]):
    """``decoder`` applied to codes ``(*batch, k)``: θ with the same leading axes."""
    z = jnp.asarray(z)
    flat = z.reshape(-1, z.shape[-1])
    out = jax.vmap(decoder)(flat)
    return jax.tree.map(lambda a: a.reshape(*z.shape[:-1], *a.shape[1:]), out)


def train_decoder(examples: Float[Array, " num *theta"], latent_dim: int, key: PRNGKeyArray, *,
                  num_steps: int = 3000, batch_size: int = 256, learning_rate: float = 3e-3,
                  width: int = 128, depth: int = 2, noise: float = 0.05,
                  progress: bool | Callable[[int, int], None] | None = None) -> Decoder:
    """Train a variational autoencoder on ``examples`` and return its decoder g.

    Args:
        examples: example θs, shaped ``(num, *theta_shape)`` (an array θ).
        latent_dim: the length of the code z.
        key: a JAX PRNG key.
        noise: the decoder's output noise std relative to the examples' spread (per coordinate):
            smaller fits the examples more closely and spreads the codes less like N(0, I).
        num_steps, batch_size, learning_rate, width, depth, progress: as in
            `train_point_estimator`.

    Returns:
        A `Decoder` (``decoder(z)`` for one code; ``decoder.latent_dim``), for `latent_problem`.
    """
    check_key("key", key)
    latent_dim = check_positive_int("latent_dim", latent_dim)
    num_steps = check_positive_int("num_steps", num_steps)
    batch_size = check_positive_int("batch_size", batch_size)
    x = np.asarray(examples)
    if x.dtype == object or not np.issubdtype(x.dtype, np.floating) or x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"examples: got {'dtype ' + str(x.dtype) if x.ndim >= 2 else 'shape ' + str(x.shape)}, "
                         "expected a float array of at least 2 example θs, shaped (num, *theta_shape)")
    if not np.all(np.isfinite(x)):
        raise ValueError("examples: got non-finite values, expected finite example θs")
    if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise > 0):
        raise ValueError(f"noise: got {noise!r}, expected a number > 0")
    xj = jnp.asarray(x)
    loc, scale = xj.mean(0), xj.std(0)
    scale = jnp.where(scale > 0, scale, 1.0)
    xs = ((xj - loc) / scale).reshape(xj.shape[0], -1)
    n = xs.shape[1]
    k_enc, k_dec, k_train = jax.random.split(key, 3)
    enc = eqx.nn.MLP(n, 2 * latent_dim, width, depth, activation=jax.nn.silu, dtype=xj.dtype, key=k_enc)
    dec = Decoder(eqx.nn.MLP(latent_dim, n, width, depth, activation=jax.nn.silu, dtype=xj.dtype, key=k_dec),
                  jnp.zeros(n, xj.dtype), jnp.ones(n, xj.dtype), latent_dim)

    def loss(vae, k):  # the negative evidence lower bound per example (standardised units)
        k1, k2 = jax.random.split(k)
        batch = xs[jax.random.randint(k1, (batch_size,), 0, xs.shape[0])]
        stats = jax.vmap(vae.encoder)(batch)
        mean, log_var = stats[:, :latent_dim], jnp.clip(stats[:, latent_dim:], -12.0, 6.0)
        z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(k2, mean.shape, mean.dtype)
        recon = jnp.sum((jax.vmap(vae.decoder)(z) - batch) ** 2, -1) / (2 * noise**2)
        kl = 0.5 * jnp.sum(jnp.exp(log_var) + mean**2 - 1 - log_var, -1)
        return jnp.mean(recon + kl)

    vae, _ = fit(loss, _VAE(enc, dec), k_train, num_steps=num_steps, learning_rate=float(learning_rate),
                 progress=progress, label="training decoder")
    return Decoder(vae.decoder.mlp, loc, scale, latent_dim)
