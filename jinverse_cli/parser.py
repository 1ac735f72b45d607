"""The ``jinverse`` command group: every command, option and help text, in click alone. A
command's work is done by the function of the same name in `jinverse.cli`, imported only when the
command runs (it imports JAX), so that ``--help``, ``--version`` and usage errors answer at once."""

from __future__ import annotations

import functools

import click

from .common import Settings, config_option, group_config, handle_errors
from .names import POINT_METHODS, SAMPLE_METHODS, SERVED_COMMANDS, SUITE_NAMES


def _runs_in_jinverse(fn):
    """The command's body: ``jinverse.cli.<name>(**params)``."""

    @functools.wraps(fn)
    def run(**params):
        import jinverse.cli

        return getattr(jinverse.cli, fn.__name__)(**params)

    return run


class _Group(click.Group):
    """The command group; run from a shell (``jinverse ...``), a command goes to the resident
    server when one is running (`jinverse_cli.server`), else runs here."""

    def __call__(self, *args, **kwargs):
        import sys

        if not args and "args" not in kwargs and set(sys.argv[1:]) & set(SERVED_COMMANDS):
            from .server import forward

            code = forward(sys.argv[1:])
            if code is not None:
                sys.exit(code)
        return super().__call__(*args, **kwargs)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
              callback=group_config,
              help="TOML file of settings (before or after the command): top-level keys for these options, "
                   "a table per command, keys named as the flags ([sample] chains = 8, format = \"npz\"; "
                   "[sample.options] n = 32 for problem options).")
@click.option("--precision", type=click.Choice(["32", "64"]), default="64", show_default=True,
              help="Floating-point precision of the computation (bits).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the results (no progress, no summaries).")
@click.option("--debug", is_flag=True, help="Show the Python traceback of a failure.")
@click.option("--no-cache", is_flag=True, envvar="JINVERSE_NO_CACHE",
              help="Do not use JAX's persistent compilation cache ($JINVERSE_CACHE/xla or "
                   "~/.cache/jinverse/xla), which lets a repeated command skip compilation "
                   "[env: JINVERSE_NO_CACHE=1].")
@click.option("--no-server", is_flag=True, envvar="JINVERSE_NO_SERVER",
              help="Run the command in this process even when a `jinverse server` is running "
                   "[env: JINVERSE_NO_SERVER=1].")
@click.version_option(package_name="jinverse")
@click.pass_context
def main(ctx, precision, quiet, debug, no_cache, no_server):
    """jinverse: batched MAP inversion and posterior sampling for inverse problems, in JAX.

    \b
    Try:
      jinverse problems                      list the built-in problems
      jinverse solve shaw --method tikhonov-gcv --out out/shaw
      jinverse sample gaussian_linear --method nuts --out out/gl
      jinverse bench --suite quick --out out/bench

    \b
    Exit status: 0 success, 1 a failure, 2 a usage error, 3 `solve` finished
    and wrote its results but some observations did not converge, 130 interrupted
    (Ctrl-C).
    """
    ctx.obj = Settings(int(precision), quiet, debug, cache=not no_cache)  # JAX set up by each command


@main.command()
@click.option("--seed", default=0, show_default=True, help="PRNG seed for the starts.")
@config_option
@handle_errors
@_runs_in_jinverse
def demo(**params):
    """Invert a trained classifier and a trained regressor for a batch of targets."""


@main.command()
@click.option("--family", default=None, help="Only the problems of this family.")
@click.option("--names-only", is_flag=True, help="One name per line (for scripts).")
@config_option
@handle_errors
@_runs_in_jinverse
def problems(**params):
    """List the built-in problems with their descriptions and the options -o KEY=VALUE can set."""


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
@_runs_in_jinverse
def solve(**params):
    """Point estimate for problem NAME: MAP, Laplace or Tikhonov; prints its score (the problem's
    metric: which way is better, the ideal value) and the time of every phase, writes
    result.npz (+ .json), summary.json and plots to --out.

    Exits with status 3 when the results were written but some observations did not converge
    (MAP status other than converged, or no Laplace approximation): the summary says which.
    """


@main.command(short_help="Posterior draws (NUTS, HMC, MALA, RWMH, MCLMC, ChEES, SMC) for one problem.")
@_problem_arg
@click.option("--method", "-m", type=click.Choice(list(SAMPLE_METHODS)), default="nuts", show_default=True,
              help="; ".join(f"{k}: {v}" for k, v in SAMPLE_METHODS.items()))
@click.option("--chains", type=click.IntRange(min=1), default=4, show_default=True, help="Chains per observation.")
@click.option("--warmup", type=click.IntRange(min=1), default=500, show_default=True,
              help="Warm-up (adaptation) steps per chain.")
@click.option("--samples", type=click.IntRange(min=4), default=1000, show_default=True,
              help="Kept draws per chain (ji.sample's default too).")
@click.option("--init", type=click.Choice(["prior", "map"]), default=None,
              help="Where chains start: prior draws (the default), or the MAP (jittered). Not for smc, "
                   "which always starts from the prior.")
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
@_runs_in_jinverse
def sample(**params):
    """Posterior draws for problem NAME with a blackjax sampler; prints the score (the problem's
    metric, e.g. C2ST against reference draws, with which way is better), the time of every
    phase, R-hat, ESS, ESS/s and calibration, writes the draws and plots to --out.

    With --checkpoint FILE the run can be resumed: run the same command again after Ctrl-C.
    """


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
@_runs_in_jinverse
def bench(**params):
    """The problem x method matrix: for each pair the problem's metric (against the truth or the
    reference posterior, with which way is better and its ideal value), the time of every phase
    (run, compilation, diagnostics, scoring, total), and for samplers R-hat, ESS/s and the
    coverage of 90% credible intervals. Prints a table, writes report.md and a chart."""


@main.group()
def server():
    """A resident jinverse process that keeps JAX and every compiled program in memory.

    \b
    While it runs, `solve`, `sample`, `bench` and `demo` run in it (same working directory,
    environment, output and exit status), so a repeated command costs its work alone.
    One per user, cache folder and Python; it stops after --idle-timeout minutes without a
    command, on `jinverse server stop`, or when jinverse's source changes.
    """


@server.command("start")
@click.option("--idle-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              metavar="MINUTES", help="Stop after this many minutes without a command.")
def server_start(idle_timeout):
    """Start the server in the background (returns once it answers)."""
    from . import server as srv

    try:
        info = srv.start(idle_timeout)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    state = "already running" if info.get("already") else "started"
    click.echo(f"jinverse server {state}: pid {info['pid']}, stops after {info['idle_minutes']:g} idle "
               f"minutes; log {info['log']}")


@server.command("stop")
def server_stop():
    """Stop the server (after the command it is running, if any)."""
    from . import server as srv

    info = srv.request("stop", timeout=None)
    click.echo(_none_running() if info is None else
               f"jinverse server stopped: pid {info['pid']}, {info['served']} commands served")


def _none_running() -> str:
    import os
    import sys

    cache = os.environ.get("JINVERSE_CACHE", "~/.cache/jinverse")
    return (f"no jinverse server is running for this Python ({sys.executable}) and cache folder ({cache}); "
            "a server started with another JINVERSE_CACHE or JAX_*/XLA_* environment is another server")


@server.command("status")
def server_status():
    """Whether a server is running, and how many commands it has served."""
    from . import server as srv

    info = srv.request("status")
    if info is None:
        click.echo(_none_running())
        raise click.exceptions.Exit(1)
    idle = info["idle_minutes"]
    click.echo(f"jinverse server running: pid {info['pid']}, {info['served']} commands served, stops after "
               f"{idle:g} idle minutes; socket {info['socket']}; log {info['log']}")
