"""`jinverse solve`, `jinverse sample` and `jinverse bench`."""

from __future__ import annotations

import json
import pathlib
import platform

import click

from ._common import (
    ChunkProgress,
    checkpoint_file,
    choice_error,
    config_option,
    echo,
    handle_errors,
    load_benchmark,
    out_dir,
    parse_options,
    phase,
    settings,
)
from ._main import main
from ._names import POINT_METHODS, SAMPLE_METHODS, SUITE_NAMES

EXIT_NOT_CONVERGED = 3  # `jinverse solve`: results written, but some observations did not converge

_problem_arg = click.argument("name", required=False, metavar="NAME")
_option_opt = click.option("--option", "-o", multiple=True, metavar="KEY=VALUE",
                           help="A problem option (repeatable), e.g. -o n=64 -o noise=0.05. "
                                "`jinverse problems` lists them.")
_seed_opt = click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
                         help="Seed of the problem's data and of the solver's randomness.")
_batch_opt = click.option("--batch", type=click.IntRange(min=1), default=None,
                          help="Solve B independent observations of the problem in one program.")
_chunk_opt = click.option("--chunk", type=click.IntRange(min=1), default=4096, show_default=True,
                          help="Observations per compiled call (progress is shown between chunks).")
_score_opt = click.option("--score/--no-score", default=True, show_default=True,
                          help="Score the result against the truth or the reference posterior "
                               "(C2ST trains a classifier per observation: often the longest phase).")
_out_opt = click.option("--out", type=click.Path(file_okay=False), default=None,
                        help="Folder for the result file, summary.json and plots.")


def _need_name(name):
    if name is None:
        from .. import problems

        raise click.UsageError("missing the problem NAME; one of: " + ", ".join(problems.names()))
    return name


def _run_one(name, method, option, seed, batch, chunk, out, fmt, **kwargs):
    from ..bench import NotApplicable, applicable, run_chunked
    from ._outputs import failure_report, summary_lines, timing, write_outputs

    name = _need_name(name)
    folder = out_dir(out)  # checked before the run: a bad --out must not cost the results
    with phase(f"loading {name}"):
        bench = load_benchmark(name, parse_options(option), seed=seed, batch=batch)
    reason = applicable(bench, method)
    if reason:
        raise click.UsageError(f"method {method!r} does not apply to {name!r}: {reason}")
    try:
        if batch is None or batch <= chunk:
            # the solver's own progress (phases, draws, blocks) unless --quiet: long work is never silent
            shown = not settings().quiet
            solver = {**kwargs, "options": {**kwargs.get("options", {}), **({"progress": True} if shown else {})}}
            with phase(f"running {method} on {batch or 1} observation{'s' if batch else ''} (compiling first)",
                       lines=shown):
                run = run_chunked(bench, method, chunk=chunk, seed=seed, **solver)
        else:
            progress = ChunkProgress(f"{method}: chunks of {chunk}", batch)
            try:
                run = run_chunked(bench, method, chunk=chunk, on_chunk=progress, seed=seed, **kwargs)
            finally:
                progress.close()
    except NotApplicable as exc:
        raise click.UsageError(str(exc)) from None
    failed = failure_report(run)
    if failed:  # in the summary printed below and in summary.json
        run.diagnostics.setdefault("warnings", []).append(failed)
    for line in summary_lines(bench, run, batch):
        click.echo(line)  # the result: printed even with --quiet
    if folder is not None:
        ctx = click.get_current_context()
        meta = {"method": method, "seed": seed, "batch": batch, "settings": kwargs, "timing": timing(run),
                "precision": settings().precision, "command": ctx.info_name, "flags": ctx.params}
        with phase(f"writing {folder}"):
            paths = write_outputs(folder, bench, run, batched=batch is not None, meta=meta, fmt=fmt)
        echo("  wrote      " + ", ".join(str(p) for p in paths))
    return run


@main.command(short_help="Point estimate (MAP, Laplace, Tikhonov) of one problem.")
@_problem_arg
@click.option("--method", "-m", type=click.Choice(list(POINT_METHODS)), default="map", show_default=True,
              help="; ".join(f"{k}: {v}" for k, v in POINT_METHODS.items()))
@_batch_opt
@_seed_opt
@click.option("--starts", type=click.IntRange(min=1), default=1, show_default=True,
              help="MAP starts per observation (drawn from the prior); the best is kept.")
@click.option("--max-steps", type=click.IntRange(min=1), default=500, show_default=True,
              help="MAP optimiser steps per start.")
@_chunk_opt
@_score_opt
@_option_opt
@_out_opt
@config_option
@handle_errors
def solve(name, method, batch, seed, starts, max_steps, chunk, score, option, out):
    """Point estimate for problem NAME: MAP, Laplace or Tikhonov; prints its score (the problem's
    metric: which way is better, the ideal value) and the time of every phase, writes
    result.npz (+ .json), summary.json and plots to --out.

    Exits with status 3 when the results were written but some observations did not converge
    (MAP status other than converged, or no Laplace approximation): the summary says which.
    """
    opts = {}
    if method in ("map", "newton"):
        import jax

        opts = {"max_steps": max_steps}
        if starts > 1:
            opts.update(num_starts=starts, key=jax.random.key(seed))
    elif starts > 1 or max_steps != 500:
        raise click.UsageError(f"--starts and --max-steps apply to map and newton, not {method!r}")
    run = _run_one(name, method, option, seed, batch, chunk, out, "npz", score=score, options=opts)
    from ._outputs import failure_report

    failed = failure_report(run)
    if failed:
        click.echo(f"Error: {failed.split(':', 1)[0]} (exit status {EXIT_NOT_CONVERGED}; see the warning "
                   "above)", err=True)
        raise click.exceptions.Exit(EXIT_NOT_CONVERGED)


def _default_format() -> str:
    try:
        import arviz  # noqa: F401
    except ImportError:
        return "npz"
    return "nc"


@main.command(short_help="Posterior draws (NUTS, HMC, MALA, RWMH, MCLMC) for one problem.")
@_problem_arg
@click.option("--method", "-m", type=click.Choice(list(SAMPLE_METHODS)), default="nuts", show_default=True,
              help="; ".join(f"{k}: {v}" for k, v in SAMPLE_METHODS.items()))
@click.option("--chains", type=click.IntRange(min=1), default=4, show_default=True, help="Chains per observation.")
@click.option("--warmup", type=click.IntRange(min=1), default=500, show_default=True,
              help="Warm-up (adaptation) steps per chain.")
@click.option("--samples", type=click.IntRange(min=4), default=500, show_default=True, help="Kept draws per chain.")
@click.option("--init", type=click.Choice(["prior", "map"]), default="prior", show_default=True,
              help="Where chains start: prior draws, or the MAP (jittered).")
@_batch_opt
@_seed_opt
@_chunk_opt
@click.option("--format", "fmt", type=click.Choice(["nc", "npz"]), default=None,
              help="Result file: NetCDF via ArviZ (default when arviz is installed) or .npz + .json.")
@_score_opt
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Save the sampler's state and the draws so far to FILE after the warm-up and every "
                   "--checkpoint-every draws; after an interruption (Ctrl-C, a killed job) the same "
                   "command carries on from there, with the same draws as an uninterrupted run.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=None, metavar="N",
              help="Draws per chain between checkpoints [default: --samples / 10].")
@_option_opt
@_out_opt
@config_option
@handle_errors
def sample(name, method, chains, warmup, samples, init, batch, seed, chunk, fmt, score, checkpoint,
           checkpoint_every, option, out):
    """Posterior draws for problem NAME with a blackjax sampler; prints the score (the problem's
    metric, e.g. C2ST against reference draws, with which way is better), the time of every
    phase, R-hat, ESS, ESS/s and calibration, writes the draws and plots to --out.

    With --checkpoint FILE the run can be resumed: run the same command again after Ctrl-C.
    """
    fmt = fmt or _default_format()
    options = _checkpoint_options(checkpoint, checkpoint_every, batch, chunk)
    try:
        _run_one(name, method, option, seed, batch, chunk, out, fmt, chains=chains, warmup=warmup,
                 samples=samples, init=init, score=score, options=options)
    except KeyboardInterrupt:
        if checkpoint is None:
            click.echo("Interrupted: nothing was kept. Add --checkpoint FILE to make the run resumable.",
                       err=True)
        else:
            click.echo(f"Interrupted: the warm-up and the draws so far are saved in {checkpoint}; run the "
                       "same command again to carry on from there.", err=True)
        raise click.Abort() from None


def _checkpoint_options(checkpoint, every, batch, chunk) -> dict:
    """``ji.sample``'s ``checkpoint=``/``checkpoint_every=`` from the flags, checked before the run."""
    if checkpoint is None:
        if every is not None:
            raise click.UsageError("--checkpoint-every needs --checkpoint FILE")
        return {}
    if batch is not None and batch > chunk:
        raise click.UsageError(f"--checkpoint with --batch {batch} > --chunk {chunk}: the batch would run in "
                               "several chunks, each needing its own file; expected --chunk >= --batch "
                               f"(e.g. --chunk {batch})")
    path = checkpoint_file(checkpoint)
    return {"checkpoint": str(path)} | ({} if every is None else {"checkpoint_every": every})


def _split_list(values) -> list[str]:
    return [v.strip() for item in values or () for v in item.split(",") if v.strip()]


@main.command(short_help="The problem x method benchmark matrix; writes report.md.")
@click.option("--suite", type=click.Choice(list(SUITE_NAMES)), default="quick", show_default=True,
              help="quick: small problems, short chains (minutes on a laptop); full: default sizes, "
                   "more problems and methods.")
@click.option("--problems", "problem_list", multiple=True, metavar="NAMES",
              help="Only these problems (comma-separated or repeated); default the suite's.")
@click.option("--methods", "method_list", multiple=True, metavar="NAMES",
              help="Only these methods (comma-separated or repeated); default the suite's.")
@_seed_opt
@click.option("--chains", type=click.IntRange(min=1), default=None, help="Override the suite's chains.")
@click.option("--warmup", type=click.IntRange(min=1), default=None, help="Override the suite's warm-up.")
@click.option("--samples", type=click.IntRange(min=4), default=None, help="Override the suite's draws.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for report.md, records.json and bench.png [default: jinverse_out/bench-SUITE].")
@config_option
@handle_errors
def bench(suite, problem_list, method_list, seed, chains, warmup, samples, out):
    """The problem x method matrix: for each pair the problem's metric (against the truth or the
    reference posterior, with which way is better and its ideal value), the time of every phase
    (run, compilation, diagnostics, scoring, total), and for samplers R-hat, ESS/s and the
    coverage of 90% credible intervals. Prints a table, writes report.md and a chart."""
    import time

    from .. import bench as B
    from .. import problems
    from ..bench_table import format_table

    probs, meths = _split_list(problem_list), _split_list(method_list)
    for p in probs:
        if p not in problems.names():
            raise choice_error("problem", p, list(problems.names()))
    for m in meths:
        if m not in B.METHODS:
            raise choice_error("method", m, list(B.METHODS))
    table, methods, sampler = B.resolve_suite(suite, probs or None, meths or None)
    sampler.update({k: v for k, v in (("chains", chains), ("warmup", warmup), ("samples", samples)) if v})
    folder = out_dir(out or f"jinverse_out/bench-{suite}")
    total = len(table) * len(methods)
    progress = ChunkProgress(f"bench {suite}", total)
    step = [0]

    def on_step(p, m):
        progress(step[0], total)
        step[0] += 1
        if progress.bar is not None:
            progress.bar.label = f"bench {suite}: {p} x {m}".ljust(44)

    t0 = time.perf_counter()
    try:
        records = B.run_matrix(table, methods, seed=seed, on_step=on_step, **sampler)
        progress(total, total)
    finally:
        progress.close()
    elapsed = time.perf_counter() - t0
    click.echo(format_table(records))
    _report(folder, suite, table, methods, sampler, seed, records, elapsed)
    failed = [r for r in records if r["status"] == "failed"]
    for r in failed:
        echo(f"failed: {r['problem']} x {r['method']}: {r['note']}", err=True)
    click.echo(f"Report: {folder / 'report.md'}")
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(records)} pairs failed (see the report)")


def _report(folder: pathlib.Path, suite, table, methods, sampler, seed, records, elapsed) -> None:
    from ..bench_table import format_table
    from ..results import versions

    lines = [f"# jinverse bench: {suite} suite", "",
             f"{len(table)} problems x {len(methods)} methods in {elapsed:.0f} s "
             f"({platform.machine()}, {platform.system()}, {_devices()}).", "",
             "- **metric**, **value**: the problem's metric, of the point estimate or of the posterior "
             "draws; **better**: which way it is better and its ideal value (`lower, 0`: an error; "
             "`higher, 1`: a success fraction; `= 0.5`: best at that value, worse either side). "
             "The metrics in this table:",
             *metric_lines(records),
             "- **run s**: run time of the solver or sampler without compilation (JAX's own tracing and "
             "compilation events are timed and subtracted; for samplers the mode search of the metric, "
             "warmup and draws together); **compile s**: that tracing and compilation; **diag s**: "
             "diagnostics (R-hat, ESS, intervals); **score s**: scoring (C2ST trains a classifier); "
             "**total s**: the wall time of the pair, all of these together.",
             "- **converged**: share of MAP runs that met the tolerance; **R-hat**: worst split R-hat "
             "(ideal 1); **ESS/s**: smallest bulk ESS per second of **run s** (higher is better); "
             "**cover90**: share of true values inside the 90% credible intervals (0.9 is ideal: "
             "below, overconfident; above, too wide).", "",
             format_table(records, markdown=True), "",
             f"Settings: seed {seed}, sampler {sampler}; problem options "
             + "; ".join(f"{p} {o or 'defaults'}" for p, o in table.items()) + ".", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()) + "."]
    notes = [r for r in records if r.get("note")]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {r['problem']} x {r['method']} ({r['status']}): {r['note']}"
                                         for r in notes]
    try:
        from .. import plots

        plots.save(plots.bench_summary(records, title=f"jinverse bench ({suite})"), folder / "bench.png")
        lines[2:2] = ["![summary](bench.png)", ""]
    except ImportError as exc:
        lines += ["", f"(no chart: {exc})"]
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    (folder / "records.json").write_text(json.dumps(records, indent=1, default=str))


def metric_lines(records) -> list[str]:
    """One markdown bullet per metric in ``records``: what it measures, against what, which way
    is better and its ideal value."""
    from ..problems.metrics import metric_info

    lines = []
    for name in dict.fromkeys(r["metric"] for r in records if r.get("metric")):
        info = metric_info(name)
        note = f" ({info.note})" if info.note else ""
        lines.append(f"  - `{name}`: {info.label}, against {info.against}; {info.better}{note}.")
    return lines + [""] if lines else []


def _devices() -> str:
    import jax

    devs = jax.devices()
    return f"{len(devs)} x {devs[0].device_kind}"
