"""The `jinverse` command group and its light commands (`demo`, `problems`); `solve`, `sample`
and `bench` are registered on it by `jinverse.cli._run`."""

from __future__ import annotations

import click

from ._common import Settings, config_option, echo, handle_errors, read_config


def _config_callback(ctx: click.Context, param, value):
    if value is not None:
        ctx.default_map = read_config(value, ctx.command)
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
              callback=_config_callback,
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
@click.version_option(package_name="jinverse")
@click.pass_context
def main(ctx, precision, quiet, debug, no_cache):
    """jinverse: batched MAP inversion and posterior sampling for inverse problems, in JAX.

    \b
    Try:
      jinverse problems                      list the built-in problems
      jinverse solve shaw --method tikhonov-gcv --out out/shaw
      jinverse sample gaussian_linear --method nuts --out out/gl
      jinverse bench --suite quick --out out/bench

    \b
    Exit status: 0 success, 1 a failure, 2 a usage error, 3 `solve` finished
    and wrote its results but some observations did not converge.
    """
    ctx.obj = Settings(int(precision), quiet, debug, cache=not no_cache)  # JAX set up by each command


@main.command()
@click.option("--seed", default=0, show_default=True, help="PRNG seed for the starts.")
@config_option
@handle_errors
def demo(seed):
    """Invert a trained classifier and a trained regressor for a batch of targets."""
    from ..demo import run

    run(echo=echo, seed=seed)


@main.command()
@click.option("--family", default=None, help="Only the problems of this family.")
@click.option("--names-only", is_flag=True, help="One name per line (for scripts).")
@config_option
@handle_errors
def problems(family, names_only):
    """List the built-in problems with their descriptions and the options -o KEY=VALUE can set."""
    from ..problems import names
    from ..problems._registry import entry
    from ._common import PYTHON_ONLY_OPTIONS, settable_options

    items = [(n, d, entry(n)) for n, d in names().items()]
    families = sorted({e.family for _, _, e in items})
    if family is not None and family not in families:
        from ._common import choice_error

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
