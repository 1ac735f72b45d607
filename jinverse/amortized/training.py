"""Training on simulated pairs: θ ~ prior, y ~ p(y | θ) drawn by the problem itself, fresh at
every optimiser step (so the networks never see the same pair twice and cannot overfit a finite
training set), with an optax Adam optimiser on a cosine-decayed learning rate.

One loop (`fit`): each step draws a batch of pairs, takes the gradient of the loss and applies the
Adam update. It runs compiled (``lax.fori_loop``), in ten chunks with a progress report after each
when ``progress`` is on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PRNGKeyArray, PyTree

from .._batching import announce, reporter
from .._checks import check_key, check_positive_int
from ..problem import InverseProblem
from .estimators import (
    MixtureDensity,
    MixtureNet,
    Normaliser,
    PointEstimator,
    Regressor,
    fingerprint,
    flatten_u,
    unconstrained_ravel,
)

PILOT_SIZE = 4096  # simulations that set the standardisation of y and u
PROGRESS_CHUNKS = 10  # with progress on, training runs in this many compiled chunks


def simulate_pairs(problem: InverseProblem, key: PRNGKeyArray, num: int) -> tuple[PyTree, Array]:
    """``num`` pairs: θ ~ the prior, y ~ p(y | θ) by ``problem.simulate``; θ ``(num, *theta_shape)``,
    y ``(num, *event)``. Pure: usable under ``jit``."""
    k1, k2 = jax.random.split(key)
    theta = problem.sample_prior(k1, (num,))
    y = jax.vmap(problem.simulate)(jax.random.split(k2, num), theta)
    return theta, y


def _flat_pairs(problem, key, num, dtype):
    """Simulated pairs as flat arrays: θ (num, ·), unconstrained u (num, d), y (num, m), and a
    mask of the rows where all three are finite (a draw on a bound of the support has no u)."""
    theta, y = simulate_pairs(problem, key, num)
    t = jax.vmap(lambda a: ravel_pytree(a)[0])(theta).astype(dtype)
    u = jax.vmap(lambda a: flatten_u(problem, a))(theta).astype(dtype)
    yf = y.reshape(num, -1).astype(dtype)
    ok = jnp.all(jnp.isfinite(u), -1) & jnp.all(jnp.isfinite(yf), -1) & jnp.all(jnp.isfinite(t), -1)
    return t, u, yf, ok


def _masked_mean(x, ok):
    return jnp.sum(jnp.where(ok, x, 0.0)) / jnp.maximum(jnp.sum(ok), 1)


@eqx.filter_jit
def _pilot(problem, key, dtype):
    t, u, y, ok = _flat_pairs(problem, key, PILOT_SIZE, dtype)

    def loc_scale(a):
        mean = jnp.sum(jnp.where(ok[:, None], a, 0), 0) / jnp.sum(ok)
        var = jnp.sum(jnp.where(ok[:, None], (a - mean) ** 2, 0), 0) / jnp.sum(ok)
        std = jnp.sqrt(var)
        return mean, jnp.where(std > 0, std, 1.0)  # a constant coordinate keeps scale 1

    (y_loc, y_scale), (u_loc, u_scale), (_, t_scale) = loc_scale(y), loc_scale(u), loc_scale(t)
    return Normaliser(y_loc, y_scale, u_loc, u_scale), t_scale, jnp.sum(ok)


def fit(loss_fn: Callable, net, key, *, num_steps: int, learning_rate: float, progress, label: str):
    """Adam on ``loss_fn(net, key)`` for ``num_steps`` steps (a fresh key each step); returns
    ``(net, losses)``. The one training loop of this package."""
    params, static = eqx.partition(net, eqx.is_inexact_array)
    schedule = optax.cosine_decay_schedule(learning_rate, num_steps, alpha=0.05)
    opt = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(schedule))

    @eqx.filter_jit
    def run(params, state, losses, start, stop):
        def step(i, carry):  # draw a batch of pairs, take the loss's gradient, one Adam update
            params, state, losses = carry
            loss, grad = jax.value_and_grad(lambda p: loss_fn(eqx.combine(p, static), jax.random.fold_in(key, i)))(
                params)
            updates, state = opt.update(grad, state, params)
            return eqx.apply_updates(params, updates), state, losses.at[i].set(loss)

        return jax.lax.fori_loop(start, stop, step, (params, state, losses))

    state = opt.init(params)
    losses = jnp.full((num_steps,), jnp.nan, jnp.result_type(*jax.tree.leaves(params)))
    chunks = PROGRESS_CHUNKS if progress else 1
    bounds = [round(num_steps * c / chunks) for c in range(chunks + 1)]
    report = reporter(progress, num_steps, label)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        params, state, losses = run(params, state, losses, jnp.int32(start), jnp.int32(stop))
        jax.block_until_ready(losses)
        report(stop)
    return eqx.combine(params, static), losses


def _check_common(problem, key, num_steps, batch_size, learning_rate, width, depth):
    if not isinstance(problem, InverseProblem):
        raise TypeError(f"problem: got {type(problem).__name__}, expected a jinverse.InverseProblem")
    check_key("key", key)
    num_steps = check_positive_int("num_steps", num_steps)
    batch_size = check_positive_int("batch_size", batch_size)
    width = check_positive_int("width", width)
    depth = check_positive_int("depth", depth)
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not (
            math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate: got {learning_rate!r}, expected a number > 0")
    y0 = jax.eval_shape(problem.simulate, jax.random.key(0), problem.theta_shape_dtype())
    m, (d, _) = math.prod(y0.shape), unconstrained_ravel(problem)
    dtype = jnp.result_type(*[r.dtype for r in jax.tree.leaves(problem.theta_shape_dtype())])
    return num_steps, batch_size, width, depth, float(learning_rate), m, d, dtype


def _setup(problem, key, dtype, progress, what):
    k_pilot, k_init, k_train = jax.random.split(key, 3)
    announce(progress, f"amortized: {what}, standardising on {PILOT_SIZE} simulations")
    norm, t_scale, n_ok = _pilot(problem, k_pilot, dtype)
    if int(n_ok) < PILOT_SIZE // 2:
        raise ValueError(f"problem: only {int(n_ok)} of {PILOT_SIZE} simulated pairs are finite, expected "
                         "most of them (check the simulator and the prior's support)")
    return norm, t_scale, k_init, k_train


def train_point_estimator(problem: InverseProblem, key: PRNGKeyArray, *, num_steps: int = 2000,
                          batch_size: int = 256, learning_rate: float = 3e-3, width: int = 128, depth: int = 2,
                          progress: bool | Callable[[int, int], None] | None = None) -> PointEstimator:
    """Train a network y -> θ on ``num_steps * batch_size`` fresh simulated pairs, by mean squared
    error in θ (each coordinate divided by its prior spread), so it estimates the posterior mean.

    Args:
        problem: the `InverseProblem` whose prior and simulator make the pairs.
        key: a JAX PRNG key (standardisation, initial weights, simulations).
        num_steps, batch_size, learning_rate: Adam steps, pairs per step, initial step size
            (cosine-decayed to 5% of it).
        width, depth: the MLP's hidden width and number of hidden layers (plus a linear shortcut).
        progress: True for a progress line on stderr, or ``callback(done, total)`` in steps.

    Returns:
        A `PointEstimator`; ``estimator(y)`` gives θ for observations ``(*batch, *event)``.

    Example::

        net = ji.amortized.train_point_estimator(problem, jax.random.key(0))
        result = ji.solve_map(problem, y, init=net)   # the MAP search starts at net(y)
    """
    num_steps, batch_size, width, depth, lr, m, d, dtype = _check_common(
        problem, key, num_steps, batch_size, learning_rate, width, depth)
    t0 = time.perf_counter()
    norm, t_scale, k_init, k_train = _setup(problem, key, dtype, progress, "point estimator")
    net = Regressor(m, d, width, depth, dtype, key=k_init)
    unravel = unconstrained_ravel(problem)[1]

    def loss(net, k):
        t, _, yf, ok = _flat_pairs(problem, k, batch_size, dtype)
        u_hat = norm.u_loc + norm.u_scale * jax.vmap(net)((yf - norm.y_loc) / norm.y_scale)
        t_hat = jax.vmap(lambda u: ravel_pytree(problem.from_unconstrained(unravel(u)))[0])(u_hat)
        return _masked_mean(jnp.sum(((t_hat - t) / t_scale) ** 2, -1), ok)

    net, losses = fit(loss, net, k_train, num_steps=num_steps, learning_rate=lr, progress=progress,
                      label="training point estimator")
    config = (("kind", "point"), ("width", width), ("depth", depth), ("num_steps", num_steps),
              ("batch_size", batch_size), ("num_simulations", num_steps * batch_size + PILOT_SIZE),
              ("train_seconds", round(time.perf_counter() - t0, 3)), ("dtype", str(jnp.dtype(dtype))))
    return PointEstimator(problem, net, norm, losses, fingerprint(problem), config)


def train_mixture_density(problem: InverseProblem, key: PRNGKeyArray, *, num_components: int = 4,
                          covariance: str = "auto", num_steps: int = 2000, batch_size: int = 256,
                          learning_rate: float = 3e-3, width: int = 128, depth: int = 2,
                          progress: bool | Callable[[int, int], None] | None = None) -> MixtureDensity:
    """Train a mixture density network q(θ | y) by maximum likelihood on ``num_steps * batch_size``
    fresh simulated pairs: minimising E[-log q(θ | y)] over the joint p(θ) p(y | θ) is minimising the
    expected KL divergence from the posterior to q.

    Args:
        num_components: Gaussians in the mixture (in the prior's unconstrained space).
        covariance: ``"full"`` (a Cholesky factor per component), ``"diag"``, or ``"auto"``
            (full up to 32 unknowns, else diagonal).
        Others as in `train_point_estimator`.

    Returns:
        A `MixtureDensity`: ``log_prob``, ``sample``, and the start of ``ji.solve_map(init=q)``.
        `importance_sample` checks and corrects it with the exact log-posterior.
    """
    num_steps, batch_size, width, depth, lr, m, d, dtype = _check_common(
        problem, key, num_steps, batch_size, learning_rate, width, depth)
    num_components = check_positive_int("num_components", num_components)
    if not isinstance(covariance, str) or covariance not in ("auto", "full", "diag"):
        raise ValueError(f"covariance: got {covariance!r}, expected 'full', 'diag' or 'auto'")
    if covariance == "auto":
        covariance = "full" if d <= 32 else "diag"
    t0 = time.perf_counter()
    norm, _, k_init, k_train = _setup(problem, key, dtype, progress, "mixture density")
    net = MixtureNet(m, d, num_components, covariance, width, depth, dtype, key=k_init)
    config: tuple[tuple[str, Any], ...] = (("kind", "mixture"), ("num_components", num_components), ("covariance", covariance),
              ("width", width), ("depth", depth), ("num_steps", num_steps), ("batch_size", batch_size))
    fp = fingerprint(problem)

    def loss(net, k):
        _, u, yf, ok = _flat_pairs(problem, k, batch_size, dtype)
        q = MixtureDensity(problem, net, norm, jnp.zeros(0, dtype), fp, config)
        return _masked_mean(-jax.vmap(q.log_prob_u)(jnp.where(ok[:, None], u, 0.0),
                                                     jnp.where(ok[:, None], yf, 0.0)), ok)

    net, losses = fit(loss, net, k_train, num_steps=num_steps, learning_rate=lr, progress=progress,
                      label="training mixture density")
    config = config + (("num_simulations", num_steps * batch_size + PILOT_SIZE),
                       ("train_seconds", round(time.perf_counter() - t0, 3)), ("dtype", str(jnp.dtype(dtype))))
    return MixtureDensity(problem, net, norm, losses, fp, config)
