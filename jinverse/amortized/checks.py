"""How far the amortised answers are from the exact ones, per observation.

- `map_report`: the point estimator's θ against the MAP found from it (``ji.solve_map(init=net)``):
  the objective gap ``-log p(θ_net | y) + log p(θ_MAP | y)`` (>= 0 up to the solver's tolerance),
  the distance, and the steps the warm-started search took.
- `importance_sample`: draws of q(θ | y) weighted by the exact unnormalised posterior,
  ``w ∝ exp(problem.log_density(u, y)) / q(u | y)`` in the unconstrained space; the
  self-normalised weights give a corrected posterior (consistent as the draws grow), their
  effective sample size ``(Σw)² / Σw²`` says how good q is (about N when q is the posterior,
  a handful when it misses), and ``log mean w`` estimates the log evidence log p(y).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, PyTree

from .._checks import check_key, check_positive_int
from ..map import MAPResult, solve_map
from ..posterior import SMC_MIN_ESS
from ..status import SamplingStatus
from ..traced import check_y
from .estimators import MixtureDensity, PointEstimator, apply_batched, check_problem, unconstrained_ravel

MIN_ESS_FRACTION = 0.1  # importance weights worth fewer than this share of the draws are flagged


class ImportanceResult(eqx.Module):
    """Draws of q(θ | y) with self-normalised importance weights against the exact posterior.

    Fields (leading axes ``batch``, the observations'):
        theta: draws ``(*batch, num, *theta_shape)``.
        log_weights: normalised log weights ``(*batch, num)`` (logsumexp 0; -inf where the exact
            density is not finite).
        ess: effective sample size ``(Σw)² / Σw²`` of each observation, in [1, num].
        log_evidence: ``log mean w``, an estimate of log p(y) (the problem's log-density includes
            the normalising constants of its prior and likelihood).
        status: `jinverse.status.SamplingStatus` flags per observation: ``NONFINITE`` where no
            draw has a finite weight; ``LOW_ESS`` where the ESS is below `SMC_MIN_ESS` (100, as
            for SMC's final weights) or below `MIN_ESS_FRACTION` of the draws (q far from the
            posterior: the weights are heavy-tailed and the ESS estimate itself unreliable).
            ``ok`` is ``status == 0``.
    """

    theta: PyTree
    log_weights: Float[Array, "*batch num"]
    ess: Float[Array, "*batch"]
    log_evidence: Float[Array, "*batch"]
    status: Int[Array, "*batch"]

    @property
    def ok(self) -> Bool[Array, "*batch"]:
        """True where nothing is flagged (``status == 0``)."""
        return self.status == 0

    @property
    def ess_fraction(self) -> Float[Array, "*batch"]:
        """``ess / num``: near 1 where q matches the posterior, near 0 where it does not."""
        return self.ess / self.log_weights.shape[-1]

    def mean(self) -> PyTree:
        """The importance-weighted posterior mean of θ, ``(*batch, *theta_shape)``."""
        w = jnp.exp(self.log_weights)
        k = w.ndim
        return jax.tree.map(lambda a: jnp.sum(w.reshape(*w.shape, *([1] * (a.ndim - k))) * a, axis=k - 1),
                            self.theta)

    def resample(self, key: PRNGKeyArray, num: int) -> PyTree:
        """``num`` draws per observation, picked with probability w (multinomial resampling):
        ``(*batch, num, *theta_shape)``, an approximately exact posterior sample when the ESS is large."""
        check_key("key", key)
        num = check_positive_int("num", num)
        batch = self.log_weights.shape[:-1]
        lw = self.log_weights.reshape(-1, self.log_weights.shape[-1])
        keys = jax.random.split(key, lw.shape[0])
        idx = jax.vmap(lambda k, lw_: jax.random.categorical(k, lw_, shape=(num,)))(keys, lw)
        idx = idx.reshape(*batch, num)
        return jax.tree.map(lambda a: jnp.take_along_axis(
            a, idx.reshape(*idx.shape, *([1] * (a.ndim - idx.ndim))), axis=len(batch)), self.theta)


@eqx.filter_jit
def _importance(q: MixtureDensity, flat_y, keys, num: int):
    problem = q.problem
    unravel = unconstrained_ravel(problem)[1]
    event = problem.data_shape()

    def one(yf, key):
        u, log_q = q.sample_u(key, yf, num)
        y = yf.reshape(event)
        log_p = jax.vmap(lambda v: problem.log_density(unravel(v), y, jacobian=True))(u)
        lw = jnp.where(jnp.isfinite(log_p), log_p - log_q, -jnp.inf)
        total = jax.nn.logsumexp(lw)
        ess = jnp.exp(2 * total - jax.nn.logsumexp(2 * lw))
        theta = jax.vmap(lambda v: problem.from_unconstrained(unravel(v)))(u)
        return theta, lw - total, ess, total - math.log(num)

    return apply_batched(one, flat_y, keys, draws=num)


def importance_sample(q: MixtureDensity, y, key: PRNGKeyArray, *, num: int = 1000) -> ImportanceResult:
    """``num`` draws of q(θ | y) per observation, weighted by the exact posterior.

    Args:
        q: a trained `MixtureDensity` (it holds its problem).
        y: observations ``(*batch, *event)``.
        key: a JAX PRNG key.
        num: draws per observation.

    Returns:
        An `ImportanceResult` (``ess``, ``ess_fraction``, ``mean()``, ``resample(key, n)``,
        ``log_evidence``): a cheap corrected posterior, and per observation how far q is from the
        exact one (``ess_fraction`` near 1: q can be trusted alone; near 0: sample exactly).

    Example::

        q = ji.amortized.train_mixture_density(problem, jax.random.key(0))
        r = ji.amortized.importance_sample(q, y_batch, jax.random.key(1))
        trust = r.ess_fraction > 0.5
    """
    if not isinstance(q, MixtureDensity):
        raise TypeError(f"q: got {type(q).__name__}, expected a jinverse.amortized.MixtureDensity "
                        "(train one with train_mixture_density)")
    check_key("key", key)
    num = check_positive_int("num", num)
    y, batch = check_y(q.problem, y)
    flat = y.reshape(math.prod(batch), -1)
    theta, lw, ess, log_z = _importance(q, flat, jax.random.split(key, flat.shape[0]), num)
    unflat = lambda a: a.reshape(*batch, *a.shape[1:])  # noqa: E731
    ess, log_z = unflat(ess), unflat(log_z)
    low = (ess < SMC_MIN_ESS) | (ess < MIN_ESS_FRACTION * num)
    status = jnp.where(jnp.isfinite(log_z), jnp.where(low, int(SamplingStatus.LOW_ESS), 0),
                       int(SamplingStatus.NONFINITE) | int(SamplingStatus.LOW_ESS)).astype(jnp.int32)
    return ImportanceResult(jax.tree.map(unflat, theta), unflat(lw), ess, log_z, status)


class MAPReport(eqx.Module):
    """The point estimator's answer against the exact MAP, per observation (axes ``batch``).

    Fields:
        theta: the network's estimate ``(*batch, *theta_shape)``.
        gap: ``-log p(θ_net | y) + log p(θ_MAP | y)``, the objective the network leaves on the
            table (>= 0 up to the solver's tolerance; in nats).
        distance: ``||θ_net - θ_MAP|| / sqrt(n)``, the root-mean-square coordinate difference.
        map: the `MAPResult` of ``ji.solve_map(problem, y, init=estimator)`` (its ``num_steps``:
            the steps left after the warm start).

    ``status`` is the exact MAP's (`jinverse.status.MAPStatus` codes): the gap is measured
    against a converged MAP only where ``ok``.
    """

    theta: PyTree
    gap: Float[Array, "*batch"]
    distance: Float[Array, "*batch"]
    map: MAPResult

    @property
    def status(self) -> Int[Array, "*batch"]:
        """The exact MAP's status codes, per observation (0: converged)."""
        return jnp.asarray(self.map.status)

    @property
    def ok(self) -> Bool[Array, "*batch"]:
        """True where the exact MAP converged (``status == 0``)."""
        return self.status == 0


@eqx.filter_jit
def _objective(problem, theta, flat_y):
    event = problem.data_shape()
    return apply_batched(lambda yf, t: problem.log_posterior(t, yf.reshape(event)), flat_y, theta)


def map_report(estimator: PointEstimator | MixtureDensity, y, *, result: MAPResult | None = None,
               **solve_options) -> MAPReport:
    """Compare the amortised start with the exact MAP for every observation in ``y``.

    Args:
        estimator: a trained `PointEstimator` (or a `MixtureDensity`: its best component mean).
        y: observations ``(*batch, *event)``.
        result: the MAP already found for ``y``; default: ``ji.solve_map(problem, y,
            init=estimator, **solve_options)``.

    Returns:
        A `MAPReport` (``gap``, ``distance``, ``map``).
    """
    if not isinstance(estimator, (PointEstimator, MixtureDensity)):
        raise TypeError(f"estimator: got {type(estimator).__name__}, expected a jinverse.amortized "
                        "PointEstimator or MixtureDensity")
    problem = estimator.problem
    check_problem(estimator, problem, "estimator.problem")
    y, batch = check_y(problem, y)
    if result is None:
        result = solve_map(problem, y, init=estimator, **solve_options)
    elif not isinstance(result, MAPResult):
        raise TypeError(f"result: got {type(result).__name__}, expected a jinverse.MAPResult or None")
    theta = estimator.map_start(problem, y)
    n = math.prod(batch)
    flat = lambda t: jax.tree.map(lambda a: a.reshape(n, *a.shape[len(batch):]), t)  # noqa: E731
    try:
        exact = flat(result.theta)
    except (TypeError, ValueError):
        raise ValueError(f"result: its theta does not match y's batch shape {batch}") from None
    y_flat = y.reshape(n, -1)
    gap = _objective(problem, exact, y_flat) - _objective(problem, flat(theta), y_flat)
    sq = sum(jnp.sum((a - b).reshape(n, -1) ** 2, -1) for a, b in zip(jax.tree.leaves(flat(theta)),
                                                                          jax.tree.leaves(exact)))
    size = sum(math.prod(r.shape) for r in jax.tree.leaves(problem.theta_shape_dtype()))
    return MAPReport(theta, gap.reshape(batch), jnp.sqrt(sq / size).reshape(batch), result)
