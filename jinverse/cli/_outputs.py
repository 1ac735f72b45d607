"""What `jinverse solve` and `jinverse sample` print and write: the summary, the result file and
the plots."""

from __future__ import annotations

import json
import math
import pathlib

import jax
import numpy as np

from jinverse_cli.common import echo

from ..problem import flat_leaves_np


def describe(bench) -> str:
    opts = ", ".join(f"{k}={v}" for k, v in bench.options.items() if k not in ("batch",))
    return f"{bench.name}({opts})" if opts else bench.name


_PHASE_WHAT = {"compile": "tracing and compiling the {solver}",
               "solve": "the solver's run",
               "sampling": "the sampler's run: metric's mode search (if any), warmup and draws in one "
                           "program, not timed apart",
               "repeat": "the extra call made to time compilation",
               "chunking": "slicing the batch into chunks and joining their results",
               "diagnostics": "{diagnostics} (compilation included)",
               "scoring": "{metric} (compilation included)"}


def score_line(run, batch: int | None) -> str:
    """The score with how to read it (`metric_info`), or that scoring was skipped."""
    from ..problems.metrics import metric_info

    if not run.scores:
        return "  score      not computed (--no-score)"
    metric, value = run.scores["metric"], run.scores["value"]
    info = metric_info(metric)
    what = "mean over the batch; " if batch else ""
    return (f"  score      {metric} = {value:.4g}  ({what}{info.label}, against {info.against}; "
            f"{info.better})")


def time_lines(run) -> list[str]:
    """The wall time of the run and every phase of it (`jinverse.bench.PHASES`)."""
    from ..bench import phase_total

    phases = run.phases
    wall = run.wall_seconds if run.wall_seconds is not None else phase_total(phases)
    lines = [f"  time       {wall:.3f} s in all (from the solver's first call to the score; reading "
             "the problem and writing files not counted)"]
    posterior = run.kind == "posterior"
    fill = {"solver": "sampler" if posterior else "solver", "metric": run.scores.get("metric"),
            "diagnostics": "R-hat, ESS, intervals, coverage" if posterior else "convergence, intervals"}
    for name, secs in phases.items():
        if secs is None:
            lines.append(f"    {name:<12}skipped (--no-score)")
        else:
            lines.append(f"    {name:<12}{secs:9.3f} s  {_PHASE_WHAT.get(name, '').format(**fill)}")
    return lines


def summary_lines(bench, run, batch: int | None) -> list[str]:
    """A short human summary: the score and how to read it, the time of every phase,
    convergence / ESS / R-hat."""
    d = run.diagnostics
    n_obs = batch or 1
    lines = [f"{describe(bench)}  method={run.method}  observations={n_obs}", score_line(run, batch)]
    lines += time_lines(run)
    if "converged" in d:
        lines.append(f"  converged  {d['converged']:.0%} of {n_obs}")
    if "lam" in d:
        lines.append(f"  lambda     {d['lam']:.4g}" + (" (median over the batch)" if batch else ""))
    if "max_rhat" in d:
        if math.isnan(d["max_rhat"]) and run.method == "smc":
            lines.append("  R-hat      not applicable (SMC's draws are weighted particles, not chains)")
        else:
            lines.append(f"  R-hat      {d['max_rhat']:.3f} (worst parameter{', worst observation' if batch else ''})")
        total = f", {d['ess_per_s_total']:.4g} per second of the whole run" if "ess_per_s_total" in d else ""
        lines.append(f"  ESS        {d['min_ess']:.0f} (smallest bulk ESS); {d['ess_per_s']:.4g} ESS/s "
                     f"per second of sampling (compilation excluded){total}")
        lines.append(f"  divergent  {d['divergences']}")
    if "coverage90" in d:
        lines.append(f"  coverage   {d['coverage90']:.0%} of true values inside the 90% credible intervals")
    for w in d.get("warnings", []):
        lines.append(f"  warning    {w}")
    return lines


def failure_report(run) -> str:
    """The sentence on the observations a point method failed on (``""`` when none): the MAP's
    `ji.map.status_report` (counts per status, rows, what to try), or Laplace's ``ok`` mask."""
    from ..laplace import GaussianApproximation
    from ..map import MAPResult, status_report

    res = run.result
    if isinstance(res, MAPResult):
        text = status_report(res.status)
        if "max_steps" in text:
            text += " On the command line: --max-steps N, or -m newton."
        return text
    if isinstance(res, GaussianApproximation):
        bad = ~np.asarray(res.ok)
        n = int(np.count_nonzero(bad))
        if not n:
            return ""
        rows = np.flatnonzero(bad)
        where = "the observation has" if bad.ndim == 0 else (
            f"{n} of {bad.size} observations have" + f" (rows {', '.join(map(str, rows[:5]))}"
            + (", ...)" if n > 5 else ")"))
        return (f"{where} no Laplace approximation: the mode search did not converge or the negative "
                "Hessian is not positive definite there. To try: -m map with --max-steps, or -m newton")
    return ""


def _first(tree, batched: bool):
    return jax.tree.map(lambda a: np.asarray(a[0] if batched else a), tree)


def _single_array(tree):
    leaves = jax.tree.leaves(tree)
    return leaves[0] if len(leaves) == 1 else None


def write_outputs(out: pathlib.Path, bench, run, *, batched: bool, meta: dict, fmt: str = "npz") -> list[pathlib.Path]:
    """Write the result (``result.npz``/``.json`` or ``result.nc``), ``summary.json`` and plots."""
    from ..results import save_result, status_counts

    paths = [save_result(run.result, out / f"result.{fmt}", benchmark=bench, metadata=meta)]
    if fmt == "npz":
        paths.append(out / "result.json")
    summary = {"problem": bench.name, "options": {k: v for k, v in bench.options.items()},
               "method": run.method, **timing(run), "scores": run.scores, "score": score_meaning(run),
               "diagnostics": run.diagnostics, "status_counts": status_counts(run.result)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_plain))
    paths.append(out / "summary.json")
    try:
        paths += _plots(out, bench, run, batched)
    except ImportError as exc:
        echo(f"  (no plots: {exc})", err=True)
    return paths


def timing(run) -> dict:
    """The times of a run for JSON: wall, every phase (``None``: skipped) and the two figures of
    older files (``seconds``: the solver's or sampler's run, ``compile_seconds``)."""
    return {"wall_seconds": run.wall_seconds, "phases": dict(run.phases), "seconds": run.seconds,
            "compile_seconds": run.compile_seconds}


def score_meaning(run) -> dict:
    """How to read the score (`metric_info`), or ``{"skipped": True}``."""
    from ..problems.metrics import metric_info

    if not run.scores:
        return {"skipped": True}
    info = metric_info(run.scores["metric"])
    return {"metric": info.name, "label": info.label, "against": info.against, "direction": info.direction,
            "ideal": info.ideal, "better": info.better}


def _plain(x):
    if isinstance(x, (np.generic, np.ndarray)):
        return np.asarray(x).tolist()
    return str(x)


def _plots(out: pathlib.Path, bench, run, batched: bool) -> list[pathlib.Path]:
    from .. import plots

    made = []
    truth = _single_array(_first(bench.theta_true, batched))
    est = _single_array(_first(run.estimate, batched))
    which = " (first observation)" if batched else ""
    if truth is not None and est is not None and truth.ndim in (1, 2):
        band = None if run.band is None else tuple(_single_array(_first(b, batched)) for b in run.band)
        std = None
        if truth.ndim == 2 and band is not None:
            std = (band[1] - band[0]) / (2 * 1.6448536269514722)  # the 90% band in std units
        fig = plots.reconstruction(truth, est, band=band if truth.ndim == 1 else None, std=std,
                                   labels=("truth", "posterior mean" if run.kind == "posterior" else run.method),
                                   title=f"{bench.name}: {run.method}{which}", spatial=spatial(bench))
        made.append(plots.save(fig, out / "reconstruction.png"))
    if run.kind == "posterior":
        samples = _first(run.result.samples, batched)
        made.append(plots.save(plots.trace(samples, title=f"{bench.name}: {run.method} traces{which}"),
                               out / "trace.png"))
        made.append(plots.save(plots.rank(samples, title=f"{bench.name}: {run.method} rank plot{which}"),
                               out / "rank.png"))
        flat = flat_leaves_np(samples, 2)
        flat = flat.reshape(-1, flat.shape[-1])  # (chains x draws, d)
        if flat.shape[-1] <= 8:
            ref = None
            if bench.reference is not None and "draws" in bench.reference:
                r = np.asarray(bench.reference["draws"])
                ref = r[0] if batched and r.ndim == 3 else r
            t = flat_leaves_np(_first(bench.theta_true, batched), 0)
            made.append(plots.save(plots.pairs(flat, truth=t, reference=ref,
                                               title=f"{bench.name}: {run.method} posterior{which}"),
                                   out / "pairs.png"))
    if run.method.startswith("tikhonov"):
        made.append(_lcurve_plot(out, bench, run, batched))
    return made


SPATIAL_FAMILIES = ("classical", "imaging", "dynamics")  # θ is a signal over space or time


def spatial(bench) -> bool:
    """Whether θ is a signal over space or time (drawn as a curve or an image) rather than separate
    unknowns (classifier inputs, model parameters: drawn one marker each). Lorenz-63's three
    variables are not a signal."""
    from ..problems._registry import entry

    size = sum(math.prod(r.shape) for r in jax.tree.leaves(bench.problem.theta_shape_dtype()))
    try:
        family = entry(bench.name).family
    except KeyError:
        family = None
    return family in SPATIAL_FAMILIES and size > 8


def _lcurve_plot(out, bench, run, batched):
    """The L-curve of observation 0 from the SVD of A, with the solution the rule chose."""
    from .. import plots
    from ..bench import linear_matrix

    A = np.asarray(linear_matrix(bench), float)
    y = np.asarray(bench.y[0] if batched else bench.y, float).ravel()
    u, s, _ = np.linalg.svd(A, full_matrices=False)
    beta = u.T @ y
    perp2 = max(float(y @ y - beta @ beta), 0.0)

    def norms(lam):
        f = s**2 / (s**2 + lam**2)
        return math.sqrt(np.sum(((1 - f) * beta) ** 2) + perp2), math.sqrt(np.sum((f * beta / s) ** 2))

    lam = float(np.asarray(run.result.lam).ravel()[0])
    # From a little below the chosen λ (where the curve turns vertical) to past s_max.
    lo = max(float(s[s > 0][-1]), min(lam, float(s[0])) * 1e-3)
    lams = np.logspace(np.log10(lo), np.log10(s[0] * 10), 200)
    curve = np.array([norms(lm) for lm in lams])
    rule = run.method.split("-", 1)[1]
    fig = plots.lcurve(curve[:, 0], curve[:, 1], lams=lams, corner=norms(lam),
                       chosen_label=f"{rule}: λ = {lam:.3g}",
                       title=f"{bench.name}: L-curve{' (first observation)' if batched else ''}")
    return plots.save(fig, out / "lcurve.png")
