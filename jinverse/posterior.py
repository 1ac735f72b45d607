"""`ji.Posterior`: the draws of `ji.sample`, their sampler statistics and diagnostics.

The diagnostics (R-hat, ESS, divergences, separate modes) are computed in
`jinverse.convergence`, by the one `diagnose_draws` path of `ji.sample` and
`Posterior.diagnose`; the status flags, limits and messages are `jinverse.run_status`'s,
re-exported here.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PyTree

from . import _arviz as arviz_export
from . import predictive as pred
from ._samplers import Stats
from .convergence import diagnose_draws, per_parameter
from .problem import flat_leaves
from .run_status import (  # noqa: F401 (re-exported: the status of a run is read as jinverse.posterior.X)
    ESS_PER_CHAIN,
    MODE_SEPARATION,
    RHAT_LIMIT,
    SELF_RHAT_LIMIT,
    SMC_MIN_ESS,
    UNCHECKED_MESSAGE,
    SamplingWarning,
    Status,
    smc_status_and_warnings,
    status_and_warnings,
    warn,
)


@jax.jit
def _nearest_shares(flat, modes, ok):
    """Share of the draws ``(*batch, chains, draws, p)`` nearest each mode ``(*batch, K, p)``."""
    dist = jnp.sum((flat[..., :, :, None, :] - modes[..., None, None, :, :]) ** 2, axis=-1)
    near = jnp.argmin(jnp.where(ok[..., None, None, :], dist, jnp.inf), axis=-1)
    hits = near[..., None] == jnp.arange(modes.shape[-2])
    return jnp.mean(hits, axis=(-3, -2))


class ChainModes(NamedTuple):
    """Where the chains of ``ji.sample(..., init="modes")`` started (`ji.find_modes`).

    Attributes:
        weights: each mode's Laplace-evidence weight, ``(*batch, K)`` (0 for padding).
        ok: ``(*batch, K)``: a mode found (False: padding up to the batch's most modes).
        chain: the mode each chain started at, ``(*batch, chains)``.
        theta: the modes, θ flattened, ``(*batch, K, p)``.
    """

    weights: Float[Array, "*batch K"]
    ok: Bool[Array, "*batch K"]
    chain: Int[Array, "*batch chains"]
    theta: Float[Array, "*batch K p"]


def _regroup(like: Posterior, fields) -> Posterior:
    """A `Posterior` of ``like``'s method from rearranged per-observation ``fields`` (a slice of
    the batch, or chunks joined): the flags found per observation stay found (or unchecked)
    and the messages are rewritten for the new batch."""
    samples, stats, rhat, ess, div, st, smc, modes, tempering = fields
    st = np.asarray(st)
    if like.smc is not None:  # SMC: its own checks (no R-hat), found per observation
        status, msgs = smc_status_and_warnings(smc, (st & int(Status.NONFINITE)) == 0, div)
        return Posterior(samples, stats, rhat, ess, div, jnp.asarray(status), tuple(msgs), like.method,
                         like.num_warmup, smc.log_evidence, smc)
    diag = {"max_rhat": rhat, "min_ess": ess, "num_divergent": div,
            "finite": (st & int(Status.NONFINITE)) == 0, "checked": (st & int(Status.UNCHECKED)) == 0,
            "metric_fallback": (st & int(Status.METRIC_FALLBACK)) != 0,
            "separate_modes": (st & int(Status.MULTIMODAL)) != 0}
    status, msgs = status_and_warnings(diag, like.num_chains)
    return Posterior(samples, stats, rhat, ess, div, jnp.asarray(status), tuple(msgs), like.method,
                     like.num_warmup, modes=modes, tempering=tempering)


def concatenate(posteriors) -> Posterior:
    """One `Posterior` from several of the same method and draw shapes, joined along the first
    batch axis (e.g. chunks of a batch sampled one after the other): the flags found per
    observation stay found (or unchecked), the messages are rewritten for the joined batch."""
    posteriors = list(posteriors)
    if not posteriors or not all(isinstance(p, Posterior) for p in posteriors):
        raise TypeError(f"posteriors: got {[type(p).__name__ for p in posteriors]}, expected one or more "
                        "jinverse.Posterior")
    if any(not p.batch_shape for p in posteriors):
        raise ValueError("posteriors: got a posterior without batch axes, expected each with a leading batch axis")
    parts = [p._per_observation() for p in posteriors]
    joined = tuple(jax.tree.map(lambda *a: jnp.concatenate(a), *f) for f in zip(*parts))
    return _regroup(posteriors[0], joined)


class Posterior(eqx.Module):
    """Draws from p(θ | y) for every observation of a batch.

    Attributes:
        samples: θ draws, each leaf shaped ``(*batch, chains, draws, *theta_shape)``.
        stats: per-draw `Stats` (``acceptance_rate``, ``is_divergent``,
            ``num_integration_steps``, ``step_size``), each ``(*batch, chains, draws)``;
            acceptance is NaN for MCLMC (no Metropolis step).
        max_rhat, min_ess, num_divergent: per observation ``(*batch,)``: the worst R-hat and
            smallest bulk ESS over all parameters, and the number of divergent transitions.
        status: per observation, `Status` (`jinverse.status.SamplingStatus`) bit flags (0 when
            nothing is wrong); ``ok`` (a property) is ``status == 0``, as on every result.
        warnings: one readable message per kind of problem found.
        method: the sampler's name.
        log_evidence: ``method="smc"`` only: the estimate of ``log p(y)`` per observation,
            ``(*batch,)``; None for the MCMC methods.
        smc: ``method="smc"`` only: the run's `jinverse.smc.SMCStats` (stages, β reached, ESS
            of the final weights, acceptance). Its ``samples`` are equally weighted particles
            grouped as ``(chains, draws)``: ``max_rhat`` is NaN (R-hat across groups of
            particles is not a diagnostic) and ``min_ess`` is the final weights' ESS.
        modes: ``init="modes"`` only: the `ChainModes` the chains started on (modes found,
            their weights, the mode of each chain); None otherwise.
        tempering: ``tempering=...`` only: the `jinverse.tempering.TemperingStats` (the β
            ladder and the swap acceptance between neighbours); None otherwise.
    """

    samples: PyTree[Float[Array, "*batch chains draws ..."]]
    stats: Stats
    max_rhat: Float[Array, "*batch"]
    min_ess: Float[Array, "*batch"]
    num_divergent: Int[Array, "*batch"]
    status: Int[Array, "*batch"]
    warnings: tuple[str, ...] = eqx.field(static=True)
    method: str = eqx.field(static=True)
    num_warmup: int = eqx.field(static=True)
    log_evidence: Float[Array, "*batch"] | None = None
    smc: PyTree | None = None
    modes: ChainModes | None = None
    tempering: PyTree | None = None

    # -- shapes -------------------------------------------------------------------------
    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.status))

    @property
    def num_chains(self) -> int:
        return self.stats.is_divergent.shape[len(self.batch_shape)]

    @property
    def num_draws(self) -> int:
        return self.stats.is_divergent.shape[len(self.batch_shape) + 1]

    @property
    def divergences(self) -> Bool[Array, "*batch chains draws"]:
        return self.stats.is_divergent

    @property
    def ok(self) -> Bool[Array, "*batch"]:
        return jnp.asarray(self.status) == 0

    @property
    def chain_ok(self) -> Bool[Array, "*batch chains"]:
        """Per chain: every draw finite and no divergent transition (which includes a NaN/inf
        log-density from the model), so a fault can be traced to the chains it touched."""
        nb = len(self.batch_shape)
        finite = jnp.ones(self.stats.is_divergent.shape[: nb + 1], bool)
        for a in jax.tree.leaves(self.samples):
            finite &= jnp.all(jnp.isfinite(a.reshape(*a.shape[: nb + 2], -1)), axis=(-2, -1))
        return finite & ~jnp.any(jnp.asarray(self.stats.is_divergent), axis=-1)

    def _axes(self):
        nb = len(self.batch_shape)
        return nb, nb + 1

    # -- summaries of the draws ---------------------------------------------------------
    def mean(self) -> PyTree:
        """Posterior mean, ``(*batch, *theta_shape)``."""
        return jax.tree.map(lambda a: jnp.mean(a, axis=self._axes()), self.samples)

    def std(self) -> PyTree:
        """Posterior standard deviation, ``(*batch, *theta_shape)``."""
        return jax.tree.map(lambda a: jnp.std(a, axis=self._axes(), ddof=1), self.samples)

    def quantile(self, q) -> PyTree:
        """Posterior quantiles: ``q`` a number or array, result ``(*q.shape, *batch, *theta)``."""
        q = jnp.asarray(q)
        if bool(jnp.any((q < 0) | (q > 1))):
            raise ValueError(f"q: got {np.asarray(q).tolist()}, expected values in [0, 1]")
        return jax.tree.map(lambda a: jnp.quantile(a, q, axis=self._axes()), self.samples)

    def rhat(self) -> PyTree:
        """Rank-normalised split R-hat per parameter (`blackjax.diagnostics.rhat`)."""
        import blackjax.diagnostics as bd

        c, _ = self._axes()  # draws follow chains
        return jax.tree.map(lambda a: per_parameter(a, bd.rhat, c), self.samples)

    def ess(self, kind: str = "bulk") -> PyTree:
        """Effective sample size per parameter: ``"bulk"`` (default), ``"tail"`` or ``"basic"``."""
        import blackjax.diagnostics as bd

        fns = {"bulk": bd.ess_bulk, "tail": bd.ess_tail, "basic": bd.effective_sample_size}
        if kind not in fns:
            raise ValueError(f"kind: got {kind!r}, expected one of {sorted(fns)}")
        c, _ = self._axes()
        return jax.tree.map(lambda a: per_parameter(a, fns[kind], c), self.samples)

    # -- one observation of a batch -------------------------------------------------------
    def __getitem__(self, index) -> Posterior:
        """The posterior(s) of ``index`` into the batch axes, e.g. ``post[3]``."""
        if not self.batch_shape:
            raise IndexError("this posterior has no batch axes to index")
        try:  # checked on the host: JAX would clamp an out-of-range index silently
            np.empty(self.batch_shape)[index]
        except IndexError as exc:
            raise IndexError(f"index: got {index!r}, out of range for batch shape {self.batch_shape}") from exc
        return _regroup(self, jax.tree.map(lambda a: a[index], self._per_observation()))

    def _per_observation(self):
        """The fields that carry the batch axes (what slicing and merging rearrange)."""
        return (self.samples, self.stats, self.max_rhat, self.min_ess, self.num_divergent, self.status,
                self.smc, self.modes, self.tempering)

    def diagnose(self) -> Posterior:
        """This posterior with its R-hat and bulk ESS computed (after ``ji.sample(...,
        diagnose=False)``), exactly as ``ji.sample`` computes them by default.

        Returns a new `Posterior` whose ``max_rhat``, ``min_ess``, ``status`` and ``warnings`` equal
        those of a ``diagnose=True`` run with the same key (the draws are unchanged), and emits
        the same `SamplingWarning` when something is found. On an already diagnosed posterior it
        recomputes the same values. Costs a sort of the pooled draws of each observation.
        An SMC posterior has no R-hat to compute: it is returned as it is.
        """
        if self.smc is not None:
            return self
        fallback = (np.asarray(self.status) & int(Status.METRIC_FALLBACK)) != 0
        diag, status, messages = diagnose_draws(self.samples, self.stats.is_divergent, self.num_chains,
                                                metric_fallback=fallback)
        warn(messages, stacklevel=3)  # (equinox wraps the method in one more frame)
        return Posterior(samples=self.samples, stats=self.stats, max_rhat=diag["max_rhat"],
                         min_ess=diag["min_ess"], num_divergent=diag["num_divergent"], status=status,
                         warnings=tuple(messages), method=self.method, num_warmup=self.num_warmup,
                         modes=self.modes, tempering=self.tempering)

    @property
    def checked(self) -> bool:
        """Whether R-hat and ESS were computed (False after ``ji.sample(..., diagnose=False)``)."""
        return not np.any(np.asarray(self.status) & int(Status.UNCHECKED))

    # -- reports --------------------------------------------------------------------------
    def summary(self, max_rows: int = 20) -> str:
        """A readable table: per parameter for one observation, per observation for a batch.

        An unchecked posterior (``diagnose=False``) shows ``-`` for R-hat and ESS (not computed
        here either: call `diagnose` first) and says so under ``warnings``.
        """
        head = (f"Posterior: {self.method}, {self.num_chains} chains x {self.num_draws} draws "
                f"(+{self.num_warmup} warmup)")
        checked = self.checked and self.smc is None  # SMC: no R-hat/ESS per parameter
        if self.smc is not None:
            evidence = self.smc.log_evidence  # (= self.log_evidence, set with smc)
            head = (f"Posterior: smc, {self.num_chains * self.num_draws} equally weighted particles "
                    f"(as {self.num_chains} x {self.num_draws}); " + (
                        f"{int(self.smc.num_stages)} stages, log evidence {float(evidence):.4g}, "
                        f"final weights' ESS {float(self.smc.final_ess):.0f}" if not self.batch_shape else
                        "R-hat not computed (min ESS: the final weights')"))
        if self.batch_shape:
            lines = [head + f", batch {self.batch_shape}",
                     f"{'obs':>8} {'max R-hat':>10} {'min ESS':>9} {'diverg.':>8}  status"]
            rhat, ess = np.asarray(self.max_rhat).ravel(), np.asarray(self.min_ess).ravel()
            div, st = np.asarray(self.num_divergent).ravel(), np.asarray(self.status).ravel()
            for i in range(min(rhat.size, max_rows)):
                lines.append(f"{i:>8} {rhat[i]:>10.3f} {ess[i]:>9.0f} {div[i]:>8d}  "
                             f"{Status(int(st[i])).name or 'OK'}")
            if rhat.size > max_rows:
                lines.append(f"... {rhat.size - max_rows} more")
        else:
            lines = [head, f"{'param':>12} {'mean':>10} {'std':>10} {'5%':>10} {'50%':>10} "
                           f"{'95%':>10} {'R-hat':>7} {'ESS bulk':>9} {'ESS tail':>9}"]
            stats = [self.mean(), self.std(), self.quantile(jnp.array([0.05, 0.5, 0.95]))]
            if checked:
                stats += [self.rhat(), self.ess("bulk"), self.ess("tail")]
            else:  # not computed: the user skipped it (diagnose=False)
                stats += [jax.tree.map(lambda m: np.full(np.shape(m), np.nan), stats[0])] * 3
            paths = jax.tree_util.tree_flatten_with_path(self.samples)[0]
            leaves = [jax.tree.leaves(x) for x in stats]
            rows = 0
            for j, (path, _) in enumerate(paths):
                name = "theta" + jax.tree_util.keystr(path)
                m, sd, q, r, eb, et = (np.asarray(x[j]) for x in leaves)
                for idx in np.ndindex(m.shape):
                    if rows == max_rows:
                        break
                    label = name + (str(list(idx)) if idx else "")
                    diag = (f"{r[idx]:>7.3f} {eb[idx]:>9.0f} {et[idx]:>9.0f}" if checked
                            else f"{'-':>7} {'-':>9} {'-':>9}")
                    lines.append(f"{label:>12} {m[idx]:>10.4g} {sd[idx]:>10.4g} {q[(0, *idx)]:>10.4g} "
                                 f"{q[(1, *idx)]:>10.4g} {q[(2, *idx)]:>10.4g} {diag}")
                    rows += 1
            total = sum(int(np.prod(np.shape(x))) for x in leaves[0])
            if total > rows:
                lines.append(f"... {total - rows} more parameters")
            lines.append(f"divergent transitions: {int(np.asarray(self.num_divergent))}, "
                         f"mean acceptance: {float(np.nanmean(np.asarray(self.stats.acceptance_rate))):.3f}")
        lines += self._mode_lines(max_rows)
        if self.tempering is not None:  # replica exchange: the ladder and its swap rates
            rates = np.nanmean(np.asarray(self.tempering.swap_acceptance).reshape(-1, self.tempering.betas.shape[-1] - 1), 0)
            lines.append(f"replica exchange: {self.tempering.betas.shape[-1]} temperatures, β "
                         + " ".join(f"{b:.3g}" for b in np.asarray(self.tempering.betas).reshape(-1, rates.size + 1)[0])
                         + "; swap acceptance " + " ".join(f"{r:.2f}" for r in rates))
        lines += ["warnings:"] + [f"  - {w}" for w in self.warnings] if self.warnings else ["no warnings"]
        return "\n".join(lines)

    def mode_shares(self) -> Float[Array, "*batch K"]:
        """``init="modes"`` only: the share of draws nearest (Euclidean, θ flattened) to each
        mode the chains started on, ``(*batch, K)``, to set beside the modes' weights."""
        if self.modes is None:
            raise ValueError("mode_shares: this posterior was not started on modes (init='modes')")
        nb = len(self.batch_shape)
        flat = flat_leaves(self.samples, nb + 2)
        return _nearest_shares(flat, self.modes.theta, self.modes.ok)

    def _mode_lines(self, max_rows: int) -> list[str]:
        """The modes the chains started on (``init="modes"``), for `summary`."""
        if self.modes is None:
            return []
        ok, w = np.asarray(self.modes.ok), np.asarray(self.modes.weights)
        if self.batch_shape:
            found = np.count_nonzero(ok, axis=-1).ravel()
            more = ", ..." if found.size > max_rows else ""
            return [f"modes found per observation (init='modes'): "
                    f"{', '.join(str(int(k)) for k in found[:max_rows])}{more}"]
        chain, loc = np.asarray(self.modes.chain), np.asarray(self.modes.theta)
        share = np.asarray(self.mode_shares())
        lines = [f"modes (init='modes'): {int(np.count_nonzero(ok))} found, Laplace weights; chains started "
                 "on each, share of draws nearest each"]
        for k in np.flatnonzero(ok):
            lines.append(f"  mode {k}: weight {w[k]:.4f}, {int(np.count_nonzero(chain == k))} chains, "
                         f"draws {share[k]:.4f}, theta {np.array2string(loc[k], precision=4, threshold=6)}")
        return lines

    # -- after sampling: predictive draws, derived quantities, ArviZ ---------------------------
    def posterior_predictive(self, problem, key, n: int | None = None) -> Array:
        """Draws y ~ p(y | θ) for the posterior's draws of θ, ``(*batch, chains, draws, *y)``.

        Args:
            problem: the `ji.InverseProblem` that was sampled (its forward model and likelihood).
            key: a JAX key; every draw gets its own.
            n: draws per chain to use, evenly spaced over each chain (all draws when None).
        """
        theta = self.samples
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= self.num_draws:
                raise ValueError(f"n: got {n!r}, expected an integer in [1, {self.num_draws}] (draws per chain)")
            idx = np.round(np.linspace(0, self.num_draws - 1, int(n))).astype(int)
            theta = jax.tree.map(lambda a: jnp.take(a, idx, axis=len(self.batch_shape) + 1), theta)
        return pred.simulate_draws(problem, key, theta, len(self.batch_shape) + 2)

    def apply(self, fn) -> Posterior:
        """A `Posterior` of ``fn(θ)`` for every draw (a derived quantity, e.g. ``θ = μ + τ θ̃``
        from a non-centred parameterisation): ``fn`` maps one θ (a pytree, no batch axes) to a
        pytree of arrays. The chain and draw axes are kept, so `mean`, `quantile`, `rhat`, `ess`,
        `summary` and `to_arviz` describe the derived quantity; R-hat and ESS (and the status
        flags that follow from them) are recomputed when this posterior was diagnosed.

        Example: ``post.apply(lambda t: t["mu"] + t["tau"] * t["theta_tilde"]).summary()``.
        """
        if not callable(fn):
            raise TypeError(f"fn: got {type(fn).__name__}, expected a function of one draw of θ")
        out = pred.map_draws(fn, self.samples, len(self.batch_shape) + 2)
        derived = dataclasses.replace(self, samples=out, modes=None)  # modes live in θ's space
        if self.smc is None and self.checked:
            return derived.diagnose()
        return derived

    def to_arviz(self, problem=None, y=None, *, key=None, prior=None, index=None):
        """An `arviz.InferenceData` (needs the ``arviz`` extra).

        Groups: ``posterior`` (a `Joint` θ's leaves under their own names, ``theta`` for one
        array) and ``sample_stats`` (``diverging``, ``acceptance_rate``, ``n_steps``,
        ``step_size``, and ``energy`` where the sampler's statistics carry it). With ``problem``
        and the observation ``y`` also ``observed_data`` (``y``), ``log_likelihood`` (``y``: the
        log-likelihood of each entry of y per draw, for `arviz.loo` / `arviz.waic`; needs a
        likelihood with independent entries) and ``sample_stats.lp`` (the log-density the
        sampler targeted: the log-posterior in the prior's unconstrained space, with the
        log-Jacobian, as Stan's ``lp__``). With ``key`` also ``posterior_predictive`` (``y``,
        from `posterior_predictive`); with ``prior`` (from `ji.prior_predictive`) also
        ``prior`` and ``prior_predictive``.

        A batched posterior gives one InferenceData per observation (their data, log-likelihood
        and predictive draws differ): ``index=i`` (an integer, or a tuple for several batch
        axes) gives observation ``i``'s, with ``y`` the whole batch as given to ``ji.sample``;
        ``index="all"`` a list of all of them, in the batch's C order. Observation ``i``'s
        ``posterior_predictive`` equals ``posterior_predictive(problem, key)[i]``.

        Example: ``az.loo(post.to_arviz(problem, y, index=3))``.
        """
        return arviz_export.to_arviz(self, problem, y, key=key, prior=prior, index=index)
