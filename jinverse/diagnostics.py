"""Calibration checks of posterior samplers (``ji.diagnostics``).

`sbc` is simulation-based calibration (Talts, Betancourt, Simpson, Vehtari & Gelman 2018,
"Validating Bayesian inference algorithms with simulation-based calibration"): if
``θ* ~ p(θ)``, ``y ~ p(y | θ*)`` and ``θ_1..θ_L ~ p(θ | y)`` independently, the rank of ``θ*``
among the ``θ_l`` (per component) is uniform on ``{0, ..., L}``. A sampler that is too narrow
piles the ranks at both ends, one that is too wide in the middle, a biased one at one end.
SBC is necessary, not sufficient: a "sampler" that ignores ``y`` and returns prior draws also
gives uniform ranks, so pair it with checks against known posteriors.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._checks import check_key, check_positive_int
from .problem import InverseProblem, flat_leaves
from .status import SamplingStatus

_BARS = " ▁▂▃▄▅▆▇█"


@dataclasses.dataclass(frozen=True)
class SBCResult:
    """The outcome of `sbc`.

    Attributes:
        ranks: ``(num_simulations, d)`` integer ranks of each true component among the
            ``num_draws`` thinned posterior draws, in ``{0, ..., num_draws}``.
        num_draws: ``L``, the number of posterior draws each rank is taken among.
        names: the ``d`` component names (``"θ[0]"``, ``"x[1]"``, ...).
        counts: ``(d, num_bins)`` rank histogram.
        expected: ``(num_bins,)`` expected count per bin under uniform ranks.
        chi2, p_values: ``(d,)`` Pearson chi-square statistic of the histogram against the
            uniform and its p-value (``num_bins - 1`` degrees of freedom).
        level: the test level; ``passed`` is true when every p-value is at least
            ``level / d`` (Bonferroni over the components) and every simulation's draws are finite.
        num_nonfinite: simulations whose posterior draws held NaN/inf.
        status: ``(num_simulations,)`` `jinverse.status.SamplingStatus` flags: the sampler's
            (`ji.Posterior.status`), or for a custom sampler that returns plain draws
            ``NONFINITE`` where its draws held NaN/inf; ``ok``: ``status == 0`` (the per-simulation
            mask; ``passed`` is the calibration verdict).
        theta: the prior draws ``θ*`` (a θ pytree with a leading ``num_simulations`` axis).
        y: the simulated observations ``(num_simulations, *event)``.
    """

    ranks: Int[np.ndarray, "s d"]
    num_draws: int
    names: tuple[str, ...]
    counts: Int[np.ndarray, "d bins"]
    expected: Float[np.ndarray, " bins"]
    chi2: Float[np.ndarray, " d"]
    p_values: Float[np.ndarray, " d"]
    level: float
    passed: bool
    num_nonfinite: int
    status: np.ndarray
    theta: Any
    y: Any

    @property
    def ok(self) -> np.ndarray:
        return SamplingStatus.ok(self.status)

    @property
    def num_bins(self) -> int:
        return int(self.expected.shape[0])

    def histogram(self) -> str:
        """A text rank histogram, one row per component, bar heights relative to 2x expected."""
        width = max(len(n) for n in self.names)
        top = 2.0 * float(self.expected.max())
        lines = [f"SBC: {self.ranks.shape[0]} simulations, ranks among {self.num_draws} draws, "
                 f"{self.num_bins} bins (expected {self.expected.mean():.1f} per bin); "
                 f"{'passed' if self.passed else 'FAILED'} at level {self.level:g} "
                 f"(Bonferroni over {len(self.names)} components)"]
        if self.num_nonfinite:
            lines.append(f"  {self.num_nonfinite} simulation(s) gave non-finite draws")
        for name, row, p in zip(self.names, self.counts, self.p_values):
            level = np.clip(np.round(row / top * (len(_BARS) - 1)), 0, len(_BARS) - 1).astype(int)
            bars = "".join(_BARS[i] for i in level)
            flag = "" if p >= self.level / len(self.names) else "  <- not uniform"
            lines.append(f"  {name:<{width}} |{bars}| p = {p:.3g}{flag}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.histogram()


def chi2_sf(x, dof):
    """Upper tail P(X ≥ x) of a chi-square with ``dof`` degrees of freedom."""
    return jax.scipy.special.gammaincc(0.5 * dof, 0.5 * jnp.asarray(x, float))


def rank_statistics(ranks, num_draws: int, num_bins: int):
    """``(counts, expected, chi2, p_values)`` of integer ranks ``(s, d)`` in ``{0..num_draws}``.

    Bin ``b`` holds the ranks ``r`` with ``floor(r * num_bins / (num_draws + 1)) == b``; when
    ``num_draws + 1`` is not a multiple of ``num_bins`` the bins hold unequal numbers of rank
    values and the expected counts say so.
    """
    ranks = np.asarray(ranks)
    s = ranks.shape[0]
    values = num_draws + 1
    per_bin = np.bincount(np.arange(values) * num_bins // values, minlength=num_bins)
    expected = s * per_bin / values
    bins = ranks * num_bins // values
    counts = np.stack([np.bincount(bins[:, j], minlength=num_bins) for j in range(ranks.shape[1])])
    chi2 = np.sum((counts - expected) ** 2 / expected, axis=1)
    p = np.asarray(chi2_sf(chi2, num_bins - 1))
    return counts, expected, chi2, p


def _names(theta_struct) -> tuple[str, ...]:
    leaves = jax.tree_util.tree_flatten_with_path(theta_struct)[0]
    names = []
    for path, leaf in leaves:
        base = jax.tree_util.keystr(path, simple=True, separator=".") or "θ"
        shape = tuple(leaf.shape)
        if not shape:
            names.append(base)
        for idx in np.ndindex(*shape) if shape else ():
            names.append(f"{base}[{','.join(map(str, idx))}]")
    return tuple(names)


def _check_sampler(sampler):
    from ._samplers import METHODS

    if callable(sampler):
        return
    if not isinstance(sampler, str) or sampler not in METHODS:
        raise ValueError(f"sampler: got {sampler!r}, expected one of {sorted(METHODS)} or a callable "
                         "(problem, y, key) -> draws")


def sbc(
    problem: InverseProblem,
    *,
    key: PRNGKeyArray,
    sampler: str | Callable = "nuts",
    num_simulations: int = 100,
    thin: int = 1,
    num_bins: int | None = None,
    level: float = 0.01,
    num_chains: int = 2,
    num_warmup: int = 300,
    num_samples: int = 200,
    **options,
) -> SBCResult:
    """Simulation-based calibration of a posterior sampler on ``problem``.

    Draws ``num_simulations`` θ* from the prior, simulates one ``y`` for each, samples all the
    posteriors in one batched call, and tests the ranks of each θ* component among the
    (thinned) posterior draws for uniformity with a Pearson chi-square test.

    Args:
        problem: the `ji.InverseProblem` (its prior must be proper: it is sampled).
        key: a JAX PRNG key; the same key gives the same result.
        sampler: a `ji.sample` method name (``"nuts"``, ``"hmc"``, ``"mala"``, ``"rwmh"``,
            ``"mclmc"``, ``"chees"``), run as ``ji.sample(problem, ys, key=..., method=sampler,
            num_chains=..., num_warmup=..., num_samples=..., **options)`` with every simulated
            ``y`` in one batch; or a callable ``sampler(problem, ys, key)`` given ``ys`` shaped
            ``(num_simulations, *event)`` that returns a `ji.Posterior` or plain draws, a θ
            pytree whose leaves are ``(num_simulations, draws, *leaf_shape)``.
        num_simulations: how many (θ*, y) pairs.
        thin: keep every ``thin``-th draw of each chain (MCMC draws are autocorrelated; SBC
            assumes independent ones, so thin to about one draw per effective sample).
        num_bins: histogram bins for the chi-square test; default ``num_simulations // 10``
            clipped to ``[2, 20]`` and to the ``num_draws + 1`` rank values.
        level: the test level; components are Bonferroni-corrected (each at ``level / d``).
        num_chains, num_warmup, num_samples, **options: passed to `ji.sample` for a named
            sampler (ignored for a callable).

    Returns:
        An `SBCResult` with ranks, per-component p-values, ``passed`` and a text histogram
        (``print(result)``).

    Example::

        res = ji.diagnostics.sbc(problem, key=jax.random.key(0), sampler="nuts",
                                 num_simulations=200, thin=2)
        print(res)           # rank histograms and p-values
        assert res.passed
    """
    if not isinstance(problem, InverseProblem):
        raise TypeError(f"problem: got {type(problem).__name__}, expected a jinverse.InverseProblem")
    check_key("key", key)
    _check_sampler(sampler)
    num_simulations = check_positive_int("num_simulations", num_simulations, minimum=2)
    thin = check_positive_int("thin", thin)
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"level: got {level!r}, expected a number in (0, 1)")
    if num_bins is not None:
        num_bins = check_positive_int("num_bins", num_bins, minimum=2)
    if isinstance(sampler, str):
        num_chains = check_positive_int("num_chains", num_chains)
        num_warmup = check_positive_int("num_warmup", num_warmup)
        num_samples = check_positive_int("num_samples", num_samples, minimum=4)
        if num_samples // thin < 1:
            raise ValueError(f"thin: got {thin}, expected at most num_samples={num_samples}")

    k_theta, k_y, k_post, k_tie = jax.random.split(key, 4)
    theta = problem.sample_prior(k_theta, (num_simulations,))
    ys = jax.vmap(problem.simulate)(jax.random.split(k_y, num_simulations), theta)

    status = None  # (the sampler's, when it returns a Posterior)
    with warnings.catch_warnings():
        # Low-ESS / R-hat warnings are expected in a calibration sweep; the status is kept.
        from .posterior import Posterior, SamplingWarning

        warnings.simplefilter("ignore", SamplingWarning)
        if isinstance(sampler, str):
            from .sampling import sample

            out = sample(problem, ys, key=k_post, method=sampler, num_chains=num_chains,
                         num_warmup=num_warmup, num_samples=num_samples, **options)
        else:
            out = sampler(problem, ys, k_post)
    if isinstance(out, Posterior):
        status = np.asarray(out.status)
        # (S, chains, draws, ...) -> thin each chain -> (S, chains * kept, ...)
        draws = jax.tree.map(lambda a: a[:, :, ::thin].reshape(a.shape[0], -1, *a.shape[3:]), out.samples)
    else:
        draws = jax.tree.map(lambda a: jnp.asarray(a)[:, ::thin], out)

    ref = problem.theta_shape_dtype()
    if jax.tree.structure(draws) != jax.tree.structure(ref):
        raise ValueError(f"sampler: returned a pytree {jax.tree.structure(draws)}, expected draws "
                         f"shaped like θ {jax.tree.structure(ref)}")
    for a, r in zip(jax.tree.leaves(draws), jax.tree.leaves(ref)):
        if a.ndim != 2 + len(r.shape) or a.shape[0] != num_simulations or tuple(a.shape[2:]) != r.shape:
            raise ValueError(f"sampler: returned draws of shape {a.shape}, expected "
                             f"({num_simulations}, draws, {', '.join(map(str, r.shape))})")
    truth = flat_leaves(theta, 1)  # (S, d)
    flat = flat_leaves(draws, 2)  # (S, L, d)
    num_draws = int(flat.shape[1])
    ranks, finite = _ranks(truth, flat, k_tie)
    ranks = np.asarray(ranks)
    num_nonfinite = int(np.count_nonzero(~np.asarray(finite)))
    if status is None:
        status = np.where(np.asarray(finite), 0, int(SamplingStatus.NONFINITE)).astype(np.int32)

    if num_bins is None:
        num_bins = min(20, max(2, num_simulations // 10))
    num_bins = min(num_bins, num_draws + 1)
    counts, expected, chi2, p = rank_statistics(ranks, num_draws, num_bins)
    d = ranks.shape[1]
    passed = bool(np.all(p >= level / d)) and num_nonfinite == 0
    return SBCResult(ranks=ranks, num_draws=num_draws, names=_names(ref), counts=counts,
                     expected=expected, chi2=chi2, p_values=p, level=float(level), passed=passed,
                     num_nonfinite=num_nonfinite, status=status, theta=theta, y=ys)


@jax.jit
def _ranks(truth: Float[Array, "s d"], draws: Float[Array, "s l d"], key):
    """Rank of each true component among the draws; ties broken uniformly at random."""
    below = jnp.sum(draws < truth[:, None, :], axis=1)
    ties = jnp.sum(draws == truth[:, None, :], axis=1)
    extra = jnp.floor(jax.random.uniform(key, below.shape) * (ties + 1)).astype(below.dtype)
    finite = jnp.all(jnp.isfinite(draws), axis=(1, 2))
    return below + extra, finite
