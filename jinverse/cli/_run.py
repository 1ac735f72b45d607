"""What the commands do: `demo`, `problems`, `solve`, `sample` and `bench` (their flags and help are
`jinverse_cli.parser`'s, which calls these with the parsed values)."""

from __future__ import annotations

import json
import os
import pathlib
import platform

import click

from jinverse_cli.common import choice_error, echo, interrupted, settings

from ._common import (
    PYTHON_ONLY_OPTIONS,
    ChunkProgress,
    checkpoint_file,
    load_benchmark,
    out_dir,
    parse_options,
    phase,
    settable_options,
)

TIP_COMPILE_SECONDS = 5.0  # compilation that long gets a one-line tip about the server (not with -q)
EXIT_NOT_CONVERGED = 3  # `jinverse solve`: results written, but some observations did not converge


def _need_name(name):
    if name is None:
        from .. import problems

        raise click.UsageError("missing the problem NAME; one of: " + ", ".join(problems.names()))
    return name


def demo(seed):
    """`jinverse demo`."""
    from ..demo import run

    run(echo=echo, seed=seed)


def problems(family, names_only):
    """`jinverse problems`."""
    from ..problems import names
    from ..problems._registry import entry

    items = [(n, d, entry(n)) for n, d in names().items()]
    families = sorted({e.family for _, _, e in items})
    if family is not None and family not in families:
        raise choice_error("family", family, families)
    items = [it for it in items if family is None or it[2].family == family]
    if names_only:
        for n, _, _ in items:
            click.echo(n)
        return
    width = max(len(n) for n, _, _ in items)
    for fam in families:
        group = [it for it in items if it[2].family == fam]
        if not group:
            continue
        click.echo(click.style(f"{fam}", bold=True))
        for n, d, e in group:
            click.echo(f"  {n.ljust(width)}  {d}")
            opts = [f"{k}={_fmt(v)}" for k, v in settable_options(e.builder).items()]
            if opts:
                click.echo(click.wrap_text(", ".join(opts), width=100, initial_indent=" " * (width + 4),
                                           subsequent_indent=" " * (width + 4)))
        click.echo()
    click.echo("Set options with -o KEY=VALUE, e.g.  jinverse solve shaw -o n=128 -o noise=0.05")
    python_only = ", ".join(f"{k} ({v})" for k, v in PYTHON_ONLY_OPTIONS.items())
    click.echo(f"Options that take Python objects are set in Python only (ji.problems.load): {python_only}.")


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else repr(v)


def _run_one(name, method, option, seed, batch, chunk, out, fmt, **kwargs):
    name = _need_name(name)
    folder = out_dir(out)  # checked before the run: a bad --out must not cost the results
    from .. import programs

    # the programs this command runs are kept on disk under everything that chose them
    with programs.scope(click.get_current_context().info_name, name, option, seed, batch, chunk, method, kwargs):
        return _run_scoped(name, method, option, seed, batch, chunk, fmt, folder, kwargs)


def _run_scoped(name, method, option, seed, batch, chunk, fmt, folder, kwargs):
    from ..bench import NotApplicable, applicable, run_chunked
    from ..checkpoint import saved_draws
    from ._outputs import failure_report, summary_lines, timing, write_outputs

    with phase(f"loading {name}"):
        bench = load_benchmark(name, parse_options(option), seed=seed, batch=batch)
    checkpoint = kwargs.get("options", {}).get("checkpoint")
    resumed = saved_draws(checkpoint) if checkpoint else 0
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
    if resumed:
        run.diagnostics.setdefault("warnings", []).append(
            f"resumed from {checkpoint}: {resumed} of {kwargs.get('samples')} draws per chain were drawn by an "
            "earlier run, whose time is not counted: ESS/s reads high")
    for line in summary_lines(bench, run, batch):
        click.echo(line)  # the result: printed even with --quiet
    if ((run.compile_seconds or 0.0) >= TIP_COMPILE_SECONDS and settings().cache
            and not os.environ.get("JINVERSE_SERVED")):
        echo(f"  tip        {run.compile_seconds:.0f} s of this run was compilation, kept for the next identical "
             "command; `jinverse server start` keeps it in memory, so that a repeated command costs its work alone")
    if folder is not None:
        ctx = click.get_current_context()
        meta = {"method": method, "seed": seed, "batch": batch, "settings": kwargs, "timing": timing(run),
                "precision": settings().precision, "command": ctx.info_name, "flags": ctx.params}
        with phase(f"writing {folder}"):
            paths = write_outputs(folder, bench, run, batched=batch is not None, meta=meta, fmt=fmt)
        echo("  wrote      " + ", ".join(str(p) for p in paths))
    return run


def solve(name, method, batch, seed, starts, max_steps, chunk, score, option, out):
    """`jinverse solve` (its flags and help: `jinverse_cli.parser`)."""
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
    """``"nc"`` when ArviZ is installed, else ``"npz"`` (looked up, not imported: importing ArviZ
    takes seconds, spent only when a NetCDF file is written)."""
    import importlib.util

    return "nc" if importlib.util.find_spec("arviz") is not None else "npz"


def sample(name, method, chains, warmup, samples, init, batch, seed, chunk, fmt, score, checkpoint,
           checkpoint_every, option, out):
    """`jinverse sample` (its flags and help: `jinverse_cli.parser`)."""
    fmt = fmt or _default_format()
    options = _checkpoint_options(checkpoint, checkpoint_every, batch, chunk)
    try:
        _run_one(name, method, option, seed, batch, chunk, out, fmt, chains=chains, warmup=warmup,
                 samples=samples, init=init, score=score, options=options)
    except KeyboardInterrupt:
        if checkpoint is None:
            interrupted("Interrupted: nothing was kept. Add --checkpoint FILE to make the run resumable.")
        interrupted(f"Interrupted: the warm-up and the draws so far are saved in {checkpoint}; run the same "
                    "command again to carry on from there.")


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


def bench(suite, problem_list, method_list, seed, chains, warmup, samples, out):
    """`jinverse bench` (its flags and help: `jinverse_cli.parser`)."""
    import time

    from .. import bench as B
    from .. import problems, programs
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
        with programs.scope("bench", table, methods, seed, sampler):
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
