"""The trained networks: a point estimator y -> θ and a mixture density network q(θ | y).

Both work in the prior's unconstrained space ``u`` (flattened to one vector of ``d`` numbers) and
on the observation flattened to ``m`` numbers, each standardised by the mean and standard deviation
of a pilot batch of simulations, so one network shape serves bounded and unbounded priors alike.
An estimator holds its `InverseProblem` and the problem's fingerprint (`fingerprint`): it refuses
to be used with, or loaded for, a different problem.
"""

from __future__ import annotations

import hashlib
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from .._checks import check_positive_int
from ..problem import InverseProblem
from ..traced import check_y, is_traced

LOG_SCALE_BOUND = 8.0  # component log-std (standardised units) kept in (-8, 8) by a soft tanh bound
APPLY_BATCH = 8192  # observations per vmapped chunk when a network is applied to a large batch
DRAWS_BATCH = 65536  # draws per vmapped chunk when each observation makes many (sampling, importance weights)


def fingerprint(problem: InverseProblem) -> str:
    """A short hex digest of ``problem``: its pytree structure, the names of its non-array leaves
    (functions, by module and qualified name) and the bytes of its array leaves.

    Two problems built the same way (same forward model, prior and likelihood, same numbers) get
    the same fingerprint in any process; changing a noise level, a prior scale or a matrix entry
    changes it. A closure's captured arrays are not seen (write such a forward model as an
    `equinox.Module` holding its arrays).
    """
    if not isinstance(problem, InverseProblem):
        raise TypeError(f"problem: got {type(problem).__name__}, expected a jinverse.InverseProblem")
    h = hashlib.sha256(str(jax.tree.structure(problem)).encode())
    for leaf in jax.tree.leaves(problem):
        if eqx.is_array(leaf):
            a = np.ascontiguousarray(np.asarray(leaf))
            h.update(f"{a.shape}{a.dtype}".encode())
            h.update(a.tobytes())
        elif callable(leaf):
            h.update(f"{getattr(leaf, '__module__', '')}.{getattr(leaf, '__qualname__', type(leaf).__qualname__)}"
                     .encode())
        else:
            h.update(repr(leaf).encode())
    return h.hexdigest()[:16]


def unconstrained_ravel(problem: InverseProblem):
    """``(d, unravel)``: the length of the flattened unconstrained θ and the map back to its pytree."""
    ref = jax.eval_shape(problem.to_unconstrained, problem.theta_shape_dtype())
    flat, unravel = ravel_pytree(jax.tree.map(lambda r: jnp.zeros(r.shape, r.dtype), ref))
    return flat.size, unravel


def flatten_u(problem: InverseProblem, theta) -> Array:
    """One θ -> its unconstrained coordinates as one vector."""
    return ravel_pytree(problem.to_unconstrained(theta))[0]


def theta_of(problem: InverseProblem, u_flat) -> PyTree:
    """One flat unconstrained vector -> θ."""
    return problem.from_unconstrained(unconstrained_ravel(problem)[1](u_flat))


def check_problem(est, problem, name: str = "problem") -> None:
    """Refuse ``problem`` unless its fingerprint is the one ``est`` was trained for."""
    if not isinstance(problem, InverseProblem):
        raise TypeError(f"{name}: got {type(problem).__name__}, expected a jinverse.InverseProblem")
    if is_traced(problem):
        return
    got = fingerprint(problem)
    if got != est.fingerprint:
        raise ValueError(f"{name}: has fingerprint {got}, but this {type(est).__name__} was trained for a problem "
                         f"with fingerprint {est.fingerprint}; train one for this problem (a different forward "
                         "model, prior, likelihood or any of their numbers gives a different posterior)")


def apply_batched(fn, y_flat, *rest, draws: int = 1):
    """``vmap(fn)`` over the rows of ``y_flat`` (and ``rest``), in chunks of `APPLY_BATCH` rows, or
    of about `DRAWS_BATCH` draws in all when each row makes ``draws`` draws (bounded memory)."""
    size = APPLY_BATCH if draws == 1 else max(1, DRAWS_BATCH // draws)
    return jax.lax.map(lambda a: fn(*a), (y_flat, *rest), batch_size=size)


class Normaliser(eqx.Module):
    """Per-coordinate location and scale of the flat observation and of the flat unconstrained θ."""

    y_loc: Float[Array, " m"]
    y_scale: Float[Array, " m"]
    u_loc: Float[Array, " d"]
    u_scale: Float[Array, " d"]


class Regressor(eqx.Module):
    """``x -> mlp(x) + skip @ x``: an MLP with a linear shortcut (a linear-Gaussian posterior mean
    is linear in y, which the shortcut represents exactly)."""

    mlp: eqx.nn.MLP
    skip: eqx.nn.Linear

    def __init__(self, m: int, d: int, width: int, depth: int, dtype, *, key: PRNGKeyArray):
        k1, k2 = jax.random.split(key)
        self.mlp = eqx.nn.MLP(m, d, width, depth, activation=jax.nn.silu, dtype=dtype, key=k1)
        self.skip = eqx.nn.Linear(m, d, use_bias=False, dtype=dtype, key=k2)

    def __call__(self, x):
        return self.mlp(x) + self.skip(x)


class MixtureNet(eqx.Module):
    """x -> (logits (K,), means (K, d), scale parameters): a trunk MLP and three linear heads,
    with a linear shortcut added to every component mean."""

    trunk: eqx.nn.MLP
    logits: eqx.nn.Linear
    means: eqx.nn.Linear
    scales: eqx.nn.Linear
    skip: eqx.nn.Linear
    num_components: int = eqx.field(static=True)
    dim: int = eqx.field(static=True)

    def __init__(self, m, d, num_components, covariance, width, depth, dtype, *, key):
        ks = jax.random.split(key, 5)
        self.num_components, self.dim = num_components, d
        n_scale = d * (d + 1) // 2 if covariance == "full" else d
        self.trunk = eqx.nn.MLP(m, width, width, depth, activation=jax.nn.silu, final_activation=jax.nn.silu,
                                dtype=dtype, key=ks[0])
        self.logits = eqx.nn.Linear(width, num_components, dtype=dtype, key=ks[1])
        self.means = eqx.nn.Linear(width, num_components * d, dtype=dtype, key=ks[2])
        self.scales = eqx.nn.Linear(width, num_components * n_scale, dtype=dtype, key=ks[3])
        self.skip = eqx.nn.Linear(m, d, use_bias=False, dtype=dtype, key=ks[4])

    def __call__(self, x):
        h = self.trunk(x)
        K, d = self.num_components, self.dim
        means = self.means(h).reshape(K, d) + self.skip(x)
        return self.logits(h), means, self.scales(h).reshape(K, -1)


def _scale_matrices(raw, d: int, covariance: str):
    """Raw scale outputs (K, ·) -> lower Cholesky factors (K, d, d) of the component covariances
    (diagonal ones for ``"diag"``); diagonal entries exp(8 tanh(r / 8))."""
    bound = lambda r: jnp.exp(LOG_SCALE_BOUND * jnp.tanh(r / LOG_SCALE_BOUND))  # noqa: E731
    if covariance == "diag":
        return jax.vmap(jnp.diag)(bound(raw))
    rows, cols = np.tril_indices(d)
    L = jnp.zeros((raw.shape[0], d, d), raw.dtype).at[:, rows, cols].set(raw)
    eye = jnp.eye(d, dtype=bool)
    return jnp.where(eye, bound(jnp.diagonal(L, axis1=-2, axis2=-1))[:, :, None] * jnp.eye(d, dtype=raw.dtype), L)


def mixture_log_prob(logits, means, chols, z) -> Float[Array, ""]:
    """log of the Gaussian mixture ``sum_k softmax(logits)_k N(z; means_k, L_k L_kᵀ)``."""
    d = z.shape[-1]
    diff = z - means
    white = jax.vmap(lambda L, r: jax.scipy.linalg.solve_triangular(L, r, lower=True))(chols, diff)
    logdet = jnp.sum(jnp.log(jnp.diagonal(chols, axis1=-2, axis2=-1)), axis=-1)
    comp = -0.5 * jnp.sum(white**2, axis=-1) - logdet - 0.5 * d * math.log(2 * math.pi)
    return jax.nn.logsumexp(jax.nn.log_softmax(logits) + comp)


def mixture_density_fn(logits, means, chols):
    """The function ``z -> log sum_k softmax(logits)_k N(z; means_k, L_k L_kᵀ)`` of one mixture,
    each component's Cholesky factor inverted once (then one matrix product per point and
    component: no triangular solve per point, which is slow when vmapped on a CPU)."""
    d = means.shape[-1]
    eye = jnp.eye(d, dtype=chols.dtype)
    inv = jax.vmap(lambda L: jax.scipy.linalg.solve_triangular(L, eye, lower=True))(chols)
    logdet = jnp.sum(jnp.log(jnp.diagonal(chols, axis1=-2, axis2=-1)), axis=-1)
    const = jax.nn.log_softmax(logits) - logdet - 0.5 * d * math.log(2 * math.pi)

    def log_prob(z):
        white = jnp.einsum("kij,kj->ki", inv, z - means)
        return jax.nn.logsumexp(const - 0.5 * jnp.sum(white**2, axis=-1))

    return log_prob


def mixture_log_prob_many(logits, means, chols, z) -> Float[Array, " n"]:
    """`mixture_log_prob` at many points ``z`` (n, d) of one mixture (`mixture_density_fn`)."""
    return jax.vmap(mixture_density_fn(logits, means, chols))(z)


def mixture_sample(key, logw, means, chols, num: int) -> tuple[Float[Array, "num d"], Float[Array, " num"]]:
    """``num`` draws ``(num, d)`` of the Gaussian mixture ``(log weights, means, Cholesky factors)``
    and their log-density."""
    k1, k2 = jax.random.split(key)
    comp = jax.random.categorical(k1, logw, shape=(num,))
    eps = jax.random.normal(k2, (num, means.shape[-1]), means.dtype)
    u = means[comp] + jnp.einsum("nij,nj->ni", chols[comp], eps)
    return u, mixture_log_prob_many(logw, means, chols, u)


class PointEstimator(eqx.Module):
    """A trained network y -> θ, fitted by mean squared error to simulated pairs, so an estimate
    of the posterior mean E[θ | y]. Call it on observations ``(*batch, *event)``; pass it as
    ``ji.solve_map(problem, y, init=estimator)`` to start the MAP search from its answer.

    Build it with `train_point_estimator`; save and load it with `save` / `load`.
    """

    problem: InverseProblem
    net: Regressor
    norm: Normaliser
    losses: Float[Array, " steps"]  # the training loss at each step
    fingerprint: str = eqx.field(static=True)
    # (("width", 128), ("depth", 2), ...): the settings that rebuild the network on load, and the
    # training cost ("num_simulations", "train_seconds")
    config: tuple = eqx.field(static=True)

    def predict_u(self, y_flat) -> Float[Array, " d"]:
        """One flat observation -> flat unconstrained estimate."""
        n = self.norm
        return n.u_loc + n.u_scale * self.net((y_flat - n.y_loc) / n.y_scale)

    def __call__(self, y) -> PyTree:
        """θ estimates shaped ``(*batch, *theta_shape)`` for observations ``(*batch, *event)``."""
        y, batch = check_y(self.problem, y)
        theta = _point_theta(self, y.reshape(math.prod(batch), -1))
        return jax.tree.map(lambda a: a.reshape(*batch, *a.shape[1:]), theta)

    def map_start(self, problem: InverseProblem, y) -> PyTree:
        """The starting θ of ``ji.solve_map(problem, y, init=self)`` (checks ``problem``)."""
        check_problem(self, problem)
        return self(y)


class MixtureDensity(eqx.Module):
    """A trained conditional density q(θ | y): a Gaussian mixture in the prior's unconstrained
    space whose weights, means and (full or diagonal) covariances a network computes from y,
    fitted by maximum likelihood to simulated pairs (so it approaches p(θ | y) as it trains).

    ``log_prob_u(u, y)`` is the density of the flat unconstrained u, comparable with
    ``problem.log_density(u, y)`` (which includes the log-Jacobian); ``log_prob(θ, y)`` is the
    density of θ itself. ``sample(key, y, n)`` draws θ shaped ``(*batch, n, *theta_shape)``,
    usable as ``ji.sample(..., init=q.sample(key, y, num_chains))``. Build it with
    `train_mixture_density`; check it against the exact posterior with `importance_sample`.
    """

    problem: InverseProblem
    net: MixtureNet
    norm: Normaliser
    losses: Float[Array, " steps"]  # the training loss at each step
    fingerprint: str = eqx.field(static=True)
    config: tuple = eqx.field(static=True)

    @property
    def covariance(self) -> str:
        return dict(self.config)["covariance"]

    def components(self, y_flat) -> tuple[Array, Array, Array]:
        """One flat observation -> (log weights (K,), means (K, d), Cholesky factors (K, d, d))
        in the flat unconstrained space."""
        n = self.norm
        logits, means, raw = self.net((y_flat - n.y_loc) / n.y_scale)
        chols = _scale_matrices(raw, self.net.dim, self.covariance)
        return (jax.nn.log_softmax(logits), n.u_loc + n.u_scale * means, n.u_scale[:, None] * chols)

    def log_prob_u(self, u_flat, y_flat) -> Float[Array, ""]:
        """log q(u | y) for one flat unconstrained u and one flat observation."""
        return mixture_log_prob(*self.components(y_flat), u_flat)

    def log_prob(self, theta, y) -> Float[Array, ""]:
        """log q(θ | y), the density of θ in its own space, for one θ and one observation."""
        u = self.problem.to_unconstrained(theta)
        y_flat = jnp.ravel(jnp.asarray(y, self.norm.y_loc.dtype))
        return self.log_prob_u(ravel_pytree(u)[0], y_flat) - self.problem.prior.log_det_jacobian(u)

    def sample_u(self, key, y_flat, num: int):
        """``num`` draws of the flat u from q(· | y) and their log q, for one flat observation."""
        return mixture_sample(key, *self.components(y_flat), num)

    def smc_start(self, key, y, num: int):
        """``(u, log_q)``: ``num`` flat draws of q(· | y) for one observation ``y`` (event-shaped)
        and the function ``u -> log q(u | y)``, the normalised density they come from: the start
        and reference of `jinverse.smc.smc_one` (SMC from q instead of the prior)."""
        comps = self.components(jnp.ravel(jnp.asarray(y, self.norm.y_loc.dtype)))
        return mixture_sample(key, *comps, num)[0], mixture_density_fn(*comps)

    def sample(self, key: PRNGKeyArray, y, num: int) -> PyTree:
        """``num`` draws of θ from q(θ | y) per observation: ``(*batch, num, *theta_shape)``."""
        y, batch = check_y(self.problem, y)
        num = check_positive_int("num", num)
        flat = y.reshape(math.prod(batch), -1)
        theta = _sample_theta(self, flat, jax.random.split(key, flat.shape[0]), num)
        return jax.tree.map(lambda a: a.reshape(*batch, *a.shape[1:]), theta)

    def mode_start(self, y_flat):
        """The component mean with the highest exact log-posterior (no Jacobian), as flat u."""
        _, means, _ = self.components(y_flat)
        unravel = unconstrained_ravel(self.problem)[1]
        lp = jax.vmap(lambda u: self.problem.log_density(unravel(u), y_flat.reshape(self.problem.data_shape()),
                                                         jacobian=False))(means)
        return means[jnp.argmax(jnp.where(jnp.isfinite(lp), lp, -jnp.inf))]

    def map_start(self, problem: InverseProblem, y) -> PyTree:
        """The starting θ of ``ji.solve_map(problem, y, init=self)``: per observation, the mean of
        the mixture component where the exact log-posterior is highest (checks ``problem``)."""
        check_problem(self, problem)
        y, batch = check_y(self.problem, y)
        theta = _mode_theta(self, y.reshape(math.prod(batch), -1))
        return jax.tree.map(lambda a: a.reshape(*batch, *a.shape[1:]), theta)



@eqx.filter_jit
def _point_theta(est: PointEstimator, flat_y):
    return apply_batched(lambda yf: theta_of(est.problem, est.predict_u(yf)), flat_y)


@eqx.filter_jit
def _mode_theta(q: MixtureDensity, flat_y):
    return apply_batched(lambda yf: theta_of(q.problem, q.mode_start(yf)), flat_y)


@eqx.filter_jit
def _sample_theta(q: MixtureDensity, flat_y, keys, num: int):
    return apply_batched(lambda yf, k: jax.vmap(lambda u: theta_of(q.problem, u))(q.sample_u(k, yf, num)[0]),
                         flat_y, keys, draws=num)
