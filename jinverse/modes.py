"""`ji.find_modes`: the modes of a posterior, weighted by their Laplace evidence.

A many-to-one forward model gives a posterior with several modes. Multi-start MAP
(`ji.solve_map` with ``num_starts``, in the unconstrained space where `ji.laplace` expands)
finds them, `ji.MAPResult.distinct` keeps one of each, and each mode ``k`` gets its Laplace
evidence (`jinverse.evidence.log_evidence_at`)

    log Z_k = log p(y, u_k) + d/2 log 2π - 1/2 log det H_k,

the mass of the Gaussian `ji.laplace` fits there. Normalised, ``w_k = Z_k / Σ_j Z_j`` are the
mode weights, and ``Σ_k w_k N(u_k, H_k⁻¹)`` a mixture-of-Laplace approximation of the
posterior. The weights are exact where every mode is Gaussian in ``u`` and the modes do not
overlap; they are as complete as the starts: a mode that no start reached is missing.
"""

from __future__ import annotations

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, PyTree

from . import dense
from ._checks import check_key, check_positive_int
from ._gaussian import to_theta
from .evidence import log_evidence_at
from .laplace import laplace
from .map import MAPWarning, solve_map
from .problem import InverseProblem, flat_leaves_np
from .status import MAPStatus


class ModeMixture(eqx.Module):
    """The modes of p(θ | y) per observation and their mixture-of-Laplace approximation.

    The mode axis ``K`` is the largest number of modes found for any observation of the batch;
    observations with fewer are padded (``ok`` False, weight 0).

    Attributes:
        theta: the modes in θ's own space, each leaf ``(*batch, K, *theta_shape)``, heaviest
            first (the modes of the density of the unconstrained ``u``, as `ji.laplace`'s).
        mean: the modes in the unconstrained space, flattened, ``(*batch, K, d)``.
        covariance: the inverse negative Hessian at each mode, ``(*batch, K, d, d)``.
        log_evidence: each mode's Laplace evidence ``log Z_k``, ``(*batch, K)``; -inf where
            not ``ok``.
        weights: ``Z_k / Σ_j Z_j``, ``(*batch, K)``, summing to 1 over the found modes.
        ok: ``(*batch, K)``: a converged mode with a positive-definite Hessian.
        problem: the problem, to map draws back to θ.
        status: (a property) ``(*batch, K)`` `jinverse.status.MAPStatus` codes: ``OK`` exactly
            where ``ok``, ``NOT_FOUND`` in the other slots (padding, or a mode without a
            positive-definite Hessian).
    """

    theta: PyTree
    mean: Float[Array, "*batch K d"]
    covariance: Float[Array, "*batch K d d"]
    log_evidence: Float[Array, "*batch K"]
    weights: Float[Array, "*batch K"]
    ok: Bool[Array, "*batch K"]
    problem: InverseProblem

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.weights.shape[:-1])

    @property
    def status(self) -> Int[Array, "*batch K"]:
        return jnp.where(self.ok, int(MAPStatus.OK), int(MAPStatus.NOT_FOUND)).astype(jnp.int32)

    @property
    def num_modes(self) -> np.ndarray:
        """Modes found per observation, ``(*batch,)``."""
        return np.count_nonzero(np.asarray(self.ok), axis=-1)

    @property
    def total_log_evidence(self) -> Float[Array, "*batch"]:
        """``log Σ_k Z_k``: the Laplace evidence summed over the modes (``log p(y)`` where the
        modes are Gaussian and separated)."""
        return jax.nn.logsumexp(self.log_evidence, axis=-1)

    def _to_theta(self, u):
        return to_theta(self.problem, u)

    def sample(self, key: PRNGKeyArray, n: int) -> PyTree:
        """``n`` draws of θ from the mixture per observation, each leaf ``(*batch, n, *theta)``:
        a mode drawn with probability ``weights``, then a draw of its Gaussian (NaN for an
        observation where no mode was found)."""
        check_key("key", key)
        n = check_positive_int("n", n)
        return self._to_theta(_mixture_draws(self.mean, self.covariance, self.weights, self.ok, key, n))

    def chain_starts(self, num_chains: int) -> np.ndarray:
        """Which mode each of ``num_chains`` chains starts at, ``(*batch, num_chains)`` (indices
        into the mode axis): shared in proportion to the weights (largest remainders), then
        every found mode without a chain gets one, heaviest first, from the mode with the most
        (while one has two or more)."""
        num_chains = check_positive_int("num_chains", num_chains)
        w, ok = np.asarray(self.weights), np.asarray(self.ok)
        out = np.zeros((*self.batch_shape, num_chains), np.int32)
        for idx in np.ndindex(self.batch_shape):
            out[idx] = _allocate(np.where(ok[idx], w[idx], 0.0), num_chains)
        return out

    def summary(self) -> str:
        """One line per mode of each observation: its weight, log evidence and θ."""
        lines = []
        flat = flat_leaves_np(self.theta, len(self.weights.shape))
        for idx in np.ndindex(self.batch_shape):
            head = f"observation {idx}: " if self.batch_shape else ""
            lines.append(f"{head}{int(np.count_nonzero(self.ok[idx]))} modes, "
                         f"total log evidence {float(self.total_log_evidence[idx]):.4g}")
            for k in np.flatnonzero(np.asarray(self.ok[idx])):
                loc = np.array2string(flat[idx][k], precision=4, threshold=6)
                lines.append(f"  mode {k}: weight {float(self.weights[idx][k]):.4f}, "
                             f"log Z {float(self.log_evidence[idx][k]):.4g}, theta {loc}")
        return "\n".join(lines)


def _allocate(weights: np.ndarray, num_chains: int) -> np.ndarray:
    """Mode index per chain for one observation (see `ModeMixture.chain_starts`)."""
    order = [int(k) for k in np.argsort(-weights, kind="stable") if weights[k] > 0]
    if not order:
        return np.zeros(num_chains, np.int32)
    share = num_chains * weights / weights.sum()
    counts = np.floor(share).astype(int)
    left = num_chains - counts.sum()
    counts[np.argsort(-(share - counts), kind="stable")[:left]] += 1  # largest remainders
    for k in order:  # then a chain for every mode, heaviest first, from the best-served mode
        if counts[k] == 0:
            donor = int(np.argmax(counts))
            if counts[donor] < 2:
                break
            counts[donor] -= 1
            counts[k] = 1
    return np.repeat(np.arange(weights.size), counts).astype(np.int32)


@eqx.filter_jit
def _mixture_draws(mean, cov, weights, ok, key, n: int):
    k_comp, k_z = jax.random.split(key)
    batch = weights.shape[:-1]
    logits = jnp.where(ok, jnp.log(weights), -jnp.inf)
    comp = jnp.moveaxis(jax.random.categorical(k_comp, logits, shape=(n, *batch)), 0, -1)  # (*batch, n)
    eye = jnp.eye(mean.shape[-1], dtype=mean.dtype)
    chol = dense.cholesky(jnp.where(ok[..., None, None], cov, eye))  # padded modes: never drawn
    m = jnp.take_along_axis(mean, comp[..., None], axis=-2)
    L = jnp.take_along_axis(chol, comp[..., None, None], axis=-3)
    z = jax.random.normal(k_z, m.shape, m.dtype)
    u = m + jnp.einsum("...ij,...j->...i", L, z)
    return jnp.where(jnp.any(ok, axis=-1)[..., None, None], u, jnp.nan)


@eqx.filter_jit
def _evidence_lanes(problem, y, theta):
    return jax.vmap(lambda yy, tt: log_evidence_at(problem, yy, tt))(y, theta)


def find_modes(
    problem: InverseProblem,
    y: Float[Array, "*batch *event"],
    *,
    key: PRNGKeyArray,
    num_starts: int = 16,
    atol: float = 1e-3,
    warn: bool = True,
    **map_options,
) -> ModeMixture:
    """The modes of p(θ | y), their Laplace-evidence weights and the mixture of their Laplace
    approximations, for every observation of ``y``.

    Args:
        problem: the `ji.InverseProblem` (its prior and likelihood normalised, as for
            `ji.laplace_evidence`, so that the evidences of the modes compare).
        y: observations ``(*batch, *event)``.
        key: a JAX PRNG key for the starts (draws from the prior).
        num_starts: multi-start MAP starts per observation (`ji.solve_map`); a mode is found
            when a start falls in its basin.
        atol: starts that converged within ``atol`` (max-abs over θ) of a better one are the
            same mode (`ji.MAPResult.distinct`).
        warn: a `ji.MAPWarning` for observations where no mode was found.
        **map_options: passed to `ji.solve_map` (``optimizer``, ``max_steps``, ``tol``...).

    Returns:
        A `ModeMixture`: ``theta``, ``weights``, ``covariance``..., and ``sample(key, n)``.

    Example::

        modes = ji.find_modes(problem, y, key=jax.random.key(0))
        modes.weights                    # (K,), heaviest first
        draws = modes.sample(jax.random.key(1), 1000)
        post = ji.sample(problem, y, key=key, init=modes)   # chains on every mode
    """
    if not isinstance(problem, InverseProblem):
        raise TypeError(f"problem: got {type(problem).__name__}, expected a jinverse.InverseProblem")
    check_key("key", key)
    num_starts = check_positive_int("num_starts", num_starts)
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not atol >= 0:
        raise ValueError(f"atol: got {atol!r}, expected a number >= 0")
    for name in ("jacobian", "num_starts", "init", "warn"):
        if name in map_options:
            raise TypeError(f"{name}: not an option of find_modes (the mode search sets it), got {name}=...")
    res = solve_map(problem, y, num_starts=num_starts, key=key, jacobian=True, warn=False, **map_options)
    batch = tuple(res.status.shape)
    size = math.prod(batch)
    converged = np.asarray(res.converged)
    # (with one start, `distinct` returns it converged or not)
    found = [res.distinct(idx, atol=float(atol)) if res.starts is not None or converged[idx] else []
             for idx in np.ndindex(batch)]
    K = max(1, *(len(f) for f in found))
    # padded with the observation's best start, so every lane is a valid point (masked below)
    rows = [f + [jax.tree.map(lambda a, idx=idx: a[idx], res.theta)] * (K - len(f))
            for idx, f in zip(np.ndindex(batch), found)]
    theta = jax.tree.map(lambda *a: jnp.stack(a), *[jax.tree.map(lambda *m: jnp.stack(m), *r) for r in rows])
    real = jnp.asarray([[k < len(f) for k in range(K)] for f in found])  # (size, K)
    flat_theta = jax.tree.map(lambda a: a.reshape(size * K, *a.shape[2:]), theta)
    y = jnp.asarray(y)
    event = y.shape[len(batch):]
    y_lanes = jnp.repeat(y.reshape(size, *event), K, axis=0)
    approx = laplace(problem, y_lanes, at=flat_theta, warn=False)
    log_z, pd = _evidence_lanes(problem, y_lanes, flat_theta)
    ok = real & (approx.ok & pd & jnp.isfinite(log_z)).reshape(size, K)
    log_z = jnp.where(ok, log_z.reshape(size, K), -jnp.inf)
    # heaviest first
    order = jnp.argsort(-log_z, axis=-1, stable=True)
    take = lambda a: jnp.take_along_axis(a, order.reshape(size, K, *([1] * (a.ndim - 2))), axis=1)  # noqa: E731
    log_z, ok = take(log_z), take(ok)
    weights = jnp.where(ok, jnp.exp(log_z - jnp.max(log_z, axis=-1, keepdims=True)), 0.0)
    total = jnp.sum(weights, axis=-1, keepdims=True)
    weights = jnp.where(total > 0, weights / jnp.where(total > 0, total, 1.0), 0.0)
    d = approx.mean.shape[-1]
    unflat = lambda a: a.reshape(*batch, K, *a.shape[2:])  # noqa: E731
    out = ModeMixture(theta=jax.tree.map(lambda a: unflat(take(a)), theta),
                      mean=unflat(take(approx.mean.reshape(size, K, d))),
                      covariance=unflat(take(approx.covariance.reshape(size, K, d, d))),
                      log_evidence=unflat(log_z), weights=unflat(weights), ok=unflat(ok), problem=problem)
    missing = int(np.count_nonzero(out.num_modes == 0))
    if warn and missing:
        warnings.warn(f"find_modes: no mode found for {missing} of {size} observations (no start converged "
                      "to a point with a positive-definite Hessian); raise num_starts or max_steps",
                      MAPWarning, stacklevel=2)
    return out
