"""Reference posterior draws, from methods independent of jinverse's solvers, cached on disk.

Three kinds of reference, by the strength of the guarantee:

- exact draws from a closed form (a Gaussian, a product of truncated normals) or from an exact
  inverse of the simulator (``two_moons``);
- `rejection`: exact rejection sampling from a proposal (often the prior) whose density ratio to
  the posterior is bounded;
- `nuts_reference`: a long blackjax NUTS run over several chains started from
  sampling-importance-resampling (SIR) draws, accepted only when its split R-hat and effective
  sample size pass (`ReferenceNotConverged` otherwise).

Draws are cached under `cache_dir()` (``$JINVERSE_CACHE`` or ``~/.cache/jinverse``), keyed by the
task, its observation and the options, so that only the first build costs time.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["cache_dir", "cached", "rejection", "rejection_from_prior", "sir", "nuts_reference", "split_rhat", "ess",
           "ReferenceNotConverged"]

# Bump when a reference method changes, so that stale cached draws are not reused.
_VERSION = 1


class ReferenceNotConverged(RuntimeError):
    """A reference MCMC run failed its convergence checks."""


def cache_dir() -> pathlib.Path:
    """Where reference draws are stored: ``$JINVERSE_CACHE`` or ``~/.cache/jinverse``."""
    root = os.environ.get("JINVERSE_CACHE")
    return pathlib.Path(root).expanduser() if root else pathlib.Path.home() / ".cache" / "jinverse"


def cached(task: str, parts: dict, build: Callable[[], np.ndarray]) -> np.ndarray:
    """Load the array stored for ``(task, parts)``, or ``build()`` it and store it.

    ``parts`` holds everything the draws depend on (the observation, sizes, seed); arrays in it are
    hashed by value.
    """
    h = hashlib.sha256(f"{task}|v{_VERSION}".encode())
    for k in sorted(parts):
        v = parts[k]
        h.update(k.encode())
        if isinstance(v, (np.ndarray, jax.Array)):
            a = np.ascontiguousarray(np.asarray(v, dtype=np.float64))
            h.update(str(a.shape).encode() + a.tobytes())
        else:
            h.update(repr(v).encode())
    path = cache_dir() / "reference" / f"{task}-{h.hexdigest()[:20]}.npy"
    if path.exists():
        try:
            return np.load(path)
        except (OSError, ValueError):
            pass  # a truncated file from an interrupted write: rebuild it
    draws = np.asarray(build())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, draws)
    os.replace(tmp, path)
    return draws


# --------------------------------------------------------------------------------------
# rejection sampling
# --------------------------------------------------------------------------------------
def rejection(key, propose: Callable, log_accept: Callable, num: int, *, chunk: int = 2**18,
              max_proposals: int = 10**9) -> np.ndarray:
    """Exact rejection sampling.

    Args:
        key: a JAX PRNG key.
        propose: ``propose(key, n) -> (n, d)`` draws from the proposal q.
        log_accept: ``log_accept(theta) -> log a(θ)`` with ``a = p(θ | y) / (M q(θ)) <= 1``
            (for the prior as proposal: the log-likelihood minus its maximum).
        num: number of accepted draws wanted.

    Returns:
        ``(num, d)`` independent draws from the posterior.
    """

    @jax.jit
    def step(k):
        k1, k2 = jax.random.split(k)
        theta = propose(k1, chunk)
        la = jax.vmap(log_accept)(theta)
        accept = jnp.log(jax.random.uniform(k2, (chunk,), dtype=theta.dtype)) < la
        return theta, accept

    out, have, tried = [], 0, 0
    while have < num:
        key, sub = jax.random.split(key)
        theta, accept = step(sub)
        kept = np.asarray(theta)[np.asarray(accept)]
        out.append(kept)
        have += len(kept)
        tried += chunk
        if tried >= max_proposals and have < num:
            raise RuntimeError(f"rejection: only {have} of {num} draws accepted after {tried} "
                               "proposals; the observation is too unlikely under the proposal")
    return np.concatenate(out)[:num]


@eqx.filter_jit
def _prior_chunk(problem, y, key, log_bound, chunk: int):
    k1, k2 = jax.random.split(key)
    theta = problem.sample_prior(k1, (chunk,))
    la = jax.vmap(lambda t: problem.log_likelihood(t, y))(theta) - log_bound
    return theta, jnp.log(jax.random.uniform(k2, (chunk,), dtype=theta.dtype)) < la


def rejection_from_prior(key, problem, y, num: int, *, log_bound, chunk: int = 2**14,
                         max_proposals: int = 10**9) -> np.ndarray:
    """Exact posterior draws of an `InverseProblem` by rejection from its prior.

    ``log_bound`` must bound the log-likelihood of ``y`` from above. Compiled once per problem
    structure (not per call), so that repeated loads stay fast.
    """
    out, have, tried = [], 0, 0
    while have < num:
        key, sub = jax.random.split(key)
        theta, accept = _prior_chunk(problem, jnp.asarray(y), sub, jnp.asarray(log_bound), chunk)
        out.append(np.asarray(theta)[np.asarray(accept)])
        have += len(out[-1])
        tried += chunk
        if tried >= max_proposals and have < num:
            raise RuntimeError(f"rejection: only {have} of {num} draws accepted after {tried} "
                               "proposals; the observation is too unlikely under the prior")
    return np.concatenate(out)[:num]


def sir(key, propose: Callable, log_weight: Callable, num: int, *, proposals: int = 2**18):
    """Sampling-importance-resampling: ``num`` draws of ``propose`` resampled by ``log_weight``."""
    k1, k2 = jax.random.split(key)
    theta = propose(k1, proposals)
    lw = jax.vmap(log_weight)(theta)
    idx = jax.random.categorical(k2, jnp.where(jnp.isfinite(lw), lw, -jnp.inf), shape=(num,))
    return theta[idx]


# --------------------------------------------------------------------------------------
# convergence diagnostics (numpy; Vehtari et al. 2021 split-R-hat without rank normalisation)
# --------------------------------------------------------------------------------------
def split_rhat(draws: np.ndarray) -> np.ndarray:
    """Split R-hat per coordinate of ``draws`` shaped ``(chains, n, d)``."""
    c, n, _ = draws.shape
    half = n // 2
    x = np.concatenate([draws[:, :half], draws[:, half:2 * half]], axis=0)
    m = x.shape[1]
    w = x.var(axis=1, ddof=1).mean(0)
    b = m * x.mean(axis=1).var(axis=0, ddof=1)
    return np.sqrt(((m - 1) / m * w + b / m) / w)


def ess(draws: np.ndarray) -> np.ndarray:
    """Effective sample size per coordinate of ``(chains, n, d)`` draws (Geyer's initial sequence)."""
    c, n, d = draws.shape
    x = draws - draws.mean(axis=1, keepdims=True)
    f = np.fft.rfft(x, n=2 * n, axis=1)
    acov = np.fft.irfft(f * np.conj(f), axis=1)[:, :n] / n  # (c, n, d)
    var_w = acov[:, 0].mean(0) * n / (n - 1)
    var_plus = var_w * (n - 1) / n + draws.mean(axis=1).var(axis=0, ddof=1) if c > 1 else var_w
    rho = 1 - (var_w - acov.mean(0)) / var_plus  # (n, d)
    out = np.empty(d)
    for j in range(d):
        s, t = 0.0, 0
        while t + 1 < n:
            pair = rho[t, j] + rho[t + 1, j]
            if pair < 0:
                break
            s += pair
            t += 2
        out[j] = c * n / max(2 * s - 1, 1e-12)
    return out


# --------------------------------------------------------------------------------------
# long NUTS runs
# --------------------------------------------------------------------------------------
def nuts_reference(key, logdensity: Callable, init: jax.Array, num: int, *, num_warmup: int = 1000,
                   thin: int = 5, max_rhat: float = 1.01, min_ess_fraction: float = 0.2,
                   min_per_chain: int = 1000) -> np.ndarray:
    """``num`` posterior draws from a long blackjax NUTS run, checked for convergence.

    Args:
        key: a JAX PRNG key.
        logdensity: the target's log-density on an unconstrained vector ``u``.
        init: ``(chains, d)`` starting points (e.g. from `sir`), one per chain.
        num: draws returned, ``num // chains`` per chain after thinning by ``thin`` (at least
            ``min_per_chain`` per chain are run and checked, whatever ``num``).

    Raises:
        ReferenceNotConverged: when a coordinate's split R-hat exceeds ``max_rhat`` or its ESS is
            below ``min_ess_fraction * num``.

    Returns:
        ``(num, d)`` draws in the space of ``u``, chains concatenated.
    """
    import blackjax  # (here: only a reference run needs it, and importing it is not free)

    chains = init.shape[0]
    per_chain = max(-(-num // chains), min_per_chain)
    steps = per_chain * thin

    def run_chain(k, x0):
        k1, k2 = jax.random.split(k)
        warm = blackjax.window_adaptation(blackjax.nuts, logdensity)
        (state, params), _ = warm.run(k1, x0, num_steps=num_warmup)
        kernel = blackjax.nuts(logdensity, **params).step

        def one(s, k):
            s, _ = kernel(k, s)
            return s, s.position

        _, xs = jax.lax.scan(one, state, jax.random.split(k2, steps))
        return xs[thin - 1::thin]

    draws = np.asarray(jax.jit(jax.vmap(run_chain))(jax.random.split(key, chains), init))
    rhat, n_eff = split_rhat(draws), ess(draws)
    if not (np.all(rhat < max_rhat) and np.all(n_eff > min_ess_fraction * draws.shape[0] * draws.shape[1])):
        raise ReferenceNotConverged(f"reference NUTS run: split R-hat {np.round(rhat, 4).tolist()} "
                                    f"(need < {max_rhat}), ESS {np.round(n_eff).tolist()} "
                                    f"(need > {min_ess_fraction} x {draws.shape[0] * draws.shape[1]})")
    return draws.reshape(-1, draws.shape[-1])[:num]
