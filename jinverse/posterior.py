"""`ji.Posterior`: the draws of `ji.sample`, their sampler statistics and diagnostics.

R-hat and ESS are blackjax's rank-normalised estimators (`blackjax.diagnostics.rhat`,
`ess_bulk`, `ess_tail`; the same definitions as ArviZ's defaults), computed per parameter with
the batch axes kept.
"""

from __future__ import annotations

import enum
import functools

import blackjax.diagnostics as bd
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PyTree

from ._samplers import Stats

RHAT_LIMIT = 1.01
ESS_PER_CHAIN = 100  # bulk ESS below 100 per chain is flagged (Vehtari et al. 2021)


@functools.partial(jax.jit, static_argnames=("fn", "chain_axis", "sample_axis"))
def _per_param(x, fn, chain_axis, sample_axis):
    out = fn(x, chain_axis=chain_axis, sample_axis=sample_axis)
    # blackjax squeezes axes of size 1; give back (*batch, *theta_shape)
    return out.reshape(x.shape[:chain_axis] + x.shape[sample_axis + 1:])


class SamplingWarning(UserWarning):
    """A posterior whose draws should not be trusted as they are (see `Posterior.warnings`)."""


class Status(enum.IntFlag):
    """Bit flags of `Posterior.status`, one value per observation; 0 is a clean run."""

    OK = 0
    HIGH_RHAT = 1
    LOW_ESS = 2
    DIVERGENCES = 4
    NONFINITE = 8


def status_and_warnings(diag: dict, num_chains: int) -> tuple[np.ndarray, list[str]]:
    """Per-observation status flags and one message per kind of problem (host side)."""
    rhat, ess = np.asarray(diag["max_rhat"]), np.asarray(diag["min_ess"])
    div, finite = np.asarray(diag["num_divergent"]), np.asarray(diag["finite"])
    status = np.zeros(rhat.shape, np.int32)
    status |= np.where(~finite, int(Status.NONFINITE), 0).astype(np.int32)
    status |= np.where(finite & ~(rhat <= RHAT_LIMIT), int(Status.HIGH_RHAT), 0).astype(np.int32)
    status |= np.where(finite & (ess < ESS_PER_CHAIN * num_chains), int(Status.LOW_ESS), 0).astype(np.int32)
    status |= np.where(div > 0, int(Status.DIVERGENCES), 0).astype(np.int32)
    n = status.size
    of = "" if n == 1 else f" in {{}} of {n} posteriors"
    msgs = []

    def count(flag):
        return int(np.count_nonzero(status & int(flag)))

    if count(Status.NONFINITE):
        msgs.append("non-finite draws" + of.format(count(Status.NONFINITE))
                    + ": the sampler diverged to NaN/inf; check the model or start closer (init='map')")
    if count(Status.HIGH_RHAT):
        msgs.append(f"R-hat above {RHAT_LIMIT}" + of.format(count(Status.HIGH_RHAT))
                    + f" (worst {np.nanmax(np.where(finite, rhat, np.nan)):.3f}): chains disagree; "
                    "run longer or check for several modes")
    if count(Status.LOW_ESS):
        msgs.append(f"bulk ESS below {ESS_PER_CHAIN} per chain" + of.format(count(Status.LOW_ESS))
                    + f" (smallest {np.nanmin(np.where(finite, ess, np.nan)):.0f} over {num_chains} "
                    f"chains, {ESS_PER_CHAIN * num_chains} needed): estimates are noisy; draw more samples")
    if count(Status.DIVERGENCES):
        msgs.append(f"{int(div.sum())} divergent transitions" + of.format(count(Status.DIVERGENCES))
                    + ": the sampler missed regions of high curvature, or the model gave a NaN/inf "
                    "log-density; results may be biased")
    return status, msgs


class Posterior(eqx.Module):
    """Draws from p(θ | y) for every observation of a batch.

    Attributes:
        samples: θ draws, each leaf shaped ``(*batch, chains, draws, *theta_shape)``.
        stats: per-draw `Stats` (``acceptance_rate``, ``is_divergent``,
            ``num_integration_steps``, ``step_size``), each ``(*batch, chains, draws)``;
            acceptance is NaN for MCLMC (no Metropolis step).
        max_rhat, min_ess, num_divergent: per observation ``(*batch,)``: the worst R-hat and
            smallest bulk ESS over all parameters, and the number of divergent transitions.
        status: per observation, `Status` bit flags (0 when nothing is wrong).
        warnings: one readable message per kind of problem found.
        method: the sampler's name.
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
        c, s = self._axes()
        return jax.tree.map(lambda a: _per_param(a, bd.rhat, c, s), self.samples)

    def ess(self, kind: str = "bulk") -> PyTree:
        """Effective sample size per parameter: ``"bulk"`` (default), ``"tail"`` or ``"basic"``."""
        fns = {"bulk": bd.ess_bulk, "tail": bd.ess_tail, "basic": bd.effective_sample_size}
        if kind not in fns:
            raise ValueError(f"kind: got {kind!r}, expected one of {sorted(fns)}")
        c, s = self._axes()
        return jax.tree.map(lambda a: _per_param(a, fns[kind], c, s), self.samples)

    # -- one observation of a batch -------------------------------------------------------
    def __getitem__(self, index) -> Posterior:
        """The posterior(s) of ``index`` into the batch axes, e.g. ``post[3]``."""
        if not self.batch_shape:
            raise IndexError("this posterior has no batch axes to index")
        try:  # checked on the host: JAX would clamp an out-of-range index silently
            np.empty(self.batch_shape)[index]
        except IndexError as exc:
            raise IndexError(f"index: got {index!r}, out of range for batch shape {self.batch_shape}") from exc
        pick = jax.tree.map(lambda a: a[index], (self.samples, self.stats, self.max_rhat,
                                                  self.min_ess, self.num_divergent))
        samples, stats, rhat, ess, div = pick
        diag = {"max_rhat": rhat, "min_ess": ess, "num_divergent": div,
                "finite": np.isfinite(np.asarray(rhat))}
        status, msgs = status_and_warnings(diag, self.num_chains)
        return Posterior(samples, stats, rhat, ess, div, jnp.asarray(status), tuple(msgs),
                         self.method, self.num_warmup)

    # -- reports --------------------------------------------------------------------------
    def summary(self, max_rows: int = 20) -> str:
        """A readable table: per parameter for one observation, per observation for a batch."""
        head = (f"Posterior: {self.method}, {self.num_chains} chains x {self.num_draws} draws "
                f"(+{self.num_warmup} warmup)")
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
            stats = [self.mean(), self.std(), self.quantile(jnp.array([0.05, 0.5, 0.95])),
                     self.rhat(), self.ess("bulk"), self.ess("tail")]
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
                    lines.append(f"{label:>12} {m[idx]:>10.4g} {sd[idx]:>10.4g} {q[(0, *idx)]:>10.4g} "
                                 f"{q[(1, *idx)]:>10.4g} {q[(2, *idx)]:>10.4g} {r[idx]:>7.3f} "
                                 f"{eb[idx]:>9.0f} {et[idx]:>9.0f}")
                    rows += 1
            total = sum(int(np.prod(np.shape(x))) for x in leaves[0])
            if total > rows:
                lines.append(f"... {total - rows} more parameters")
            lines.append(f"divergent transitions: {int(np.asarray(self.num_divergent))}, "
                         f"mean acceptance: {float(np.nanmean(np.asarray(self.stats.acceptance_rate))):.3f}")
        lines += ["warnings:"] + [f"  - {w}" for w in self.warnings] if self.warnings else ["no warnings"]
        return "\n".join(lines)

    def to_arviz(self):
        """An `arviz.InferenceData` (needs the ``arviz`` extra); one observation at a time."""
        if self.batch_shape:
            raise ValueError(f"to_arviz: this posterior has batch shape {self.batch_shape}; select "
                             "one observation first, e.g. post[0].to_arviz()")
        try:
            import arviz as az
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("to_arviz needs arviz: pip install 'jinverse[arviz]'") from exc
        paths = jax.tree_util.tree_flatten_with_path(self.samples)[0]
        post = {}
        for path, leaf in paths:
            name = "theta" + "".join(f"_{getattr(k, 'key', getattr(k, 'idx', k))}" for k in path)
            post[name] = np.asarray(leaf)
        st = self.stats
        stats = {"diverging": np.asarray(st.is_divergent), "acceptance_rate": np.asarray(st.acceptance_rate),
                 "n_steps": np.asarray(st.num_integration_steps), "step_size": np.asarray(st.step_size)}
        return az.from_dict(posterior=post, sample_stats=stats, attrs={"sampler": self.method})
