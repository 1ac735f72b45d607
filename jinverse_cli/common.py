"""What the parser needs and the commands share, in click and the standard library only: the
group's settings (`Settings`, `settings`, `echo`), error handling (`handle_errors`,
`choice_error`) and the TOML configuration (`read_config`, `config_option`)."""

from __future__ import annotations

import functools
import os
import sys
import tomllib
from typing import Any, NoReturn

import click


class Settings:
    """Group-level settings carried in ``ctx.obj``."""

    def __init__(self, precision: int = 64, quiet: bool = False, debug: bool = False, cache: bool = True):
        self.precision, self.quiet, self.debug, self.cache = precision, quiet, debug, cache

    def start(self) -> None:
        """Set up JAX for a command (imported here, not at start-up, so ``--help`` needs only
        click): the precision, and the persistent compilation cache unless ``--no-cache``."""
        import jax

        jax.config.update("jax_enable_x64", self.precision == 64)
        if self.cache:
            from jinverse import programs
            from jinverse.runtime import enable_compilation_cache

            xla = enable_compilation_cache(min_compile_time_secs=0.0)
            programs.enable(os.path.join(os.path.dirname(xla), "programs"))
        elif "jinverse.programs" in sys.modules:  # an earlier command in this process turned it on
            sys.modules["jinverse.programs"].disable()


def settings() -> Settings:
    ctx = click.get_current_context()
    return ctx.find_object(Settings) or Settings()


def echo(msg: str = "", err: bool = False) -> None:
    """Print unless ``--quiet`` (errors always print)."""
    if err or not settings().quiet:
        click.echo(msg, err=err)


def handle_errors(fn):
    """Turn a failure into a one-line message and exit code 1 (a traceback only with --debug).

    Usage errors raised as `click.UsageError` keep their exit code 2. Sets up JAX first
    (`Settings.start`).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            settings().start()
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            interrupted()
        except Exception as exc:
            if settings().debug:
                raise
            raise click.ClickException(f"{type(exc).__name__}: {exc}  (run with --debug for the traceback)") from None

    return wrapper


EXIT_INTERRUPTED = 130  # Ctrl-C: the shells' 128 + SIGINT, so that a script tells it from a failure (1)


def interrupted(message: str = "Aborted!") -> NoReturn:
    """Say ``message`` and exit with `EXIT_INTERRUPTED`."""
    click.echo(message, err=True)
    raise click.exceptions.Exit(EXIT_INTERRUPTED)


def choice_error(what: str, got: str, valid) -> click.UsageError:
    import difflib

    close = difflib.get_close_matches(got, list(valid), n=2)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return click.UsageError(f"unknown {what} {got!r}.{hint} Valid: {', '.join(valid)}.")


# -- configuration file ----------------------------------------------------------------------

def setting_names(command: click.Command) -> dict[str, str]:
    """The keys a configuration file may use for ``command``'s options -> the option's name: its
    long flag without the dashes (``format`` for ``--format``, ``max-steps`` or ``max_steps``
    for ``--max-steps``), and the parameter name itself."""
    out: dict[str, str] = {}
    for p in command.params:
        if p.name == "config" or not isinstance(p, click.Option) or not p.expose_value:
            continue
        out[p.name] = p.name
        for flag in (*p.opts, *p.secondary_opts):
            if flag.startswith("--"):
                out[flag[2:].replace("-", "_")] = p.name
    if "option" in out:
        out["options"] = "option"  # the [command.options] table of problem options
    return out


def _flag_list(command: click.Command) -> str:
    names = {f[2:] for p in command.params if isinstance(p, click.Option) and p.name != "config"
             and p.expose_value for f in p.opts if f.startswith("--")}
    return ", ".join(sorted(names | ({"options"} if "option" in {p.name for p in command.params} else set())))


def read_config(path: str, group: click.Command) -> dict:
    """A TOML file -> click's ``default_map``: top-level keys set the group's options, a table
    per command sets that command's (``[sample] chains = 8``; ``[sample.options] n = 32`` sets
    problem options). Keys are the flag names (``format = "npz"`` for ``--format``,
    ``max-steps`` or ``max_steps`` for ``--max-steps``)."""
    if not isinstance(group, click.Group):  # a context's command is typed as any click.Command
        raise TypeError(f"group: got {type(group).__name__}, expected the click.Group whose commands the "
                        "file configures")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise click.BadParameter(f"no such file {path!r}", param_hint="--config") from None
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{path!r} is not valid TOML: {exc}", param_hint="--config") from None
    out: dict[str, Any] = {}
    group_names = setting_names(group)
    for key, value in data.items():
        if isinstance(value, dict):
            cmd = group.commands.get(key)
            if cmd is None:
                raise click.BadParameter(f"{path!r}: unknown table [{key}]; expected one of "
                                         f"{', '.join(sorted(group.commands))}", param_hint="--config")
            names = setting_names(cmd)
            section = {}
            for k, v in value.items():
                name = names.get(k.replace("-", "_"))
                if name == "option" and isinstance(v, dict):
                    section["option"] = tuple(f"{ok}={ov!r}" for ok, ov in v.items())
                elif name is not None:
                    section[name] = tuple(v) if isinstance(v, list) else v
                else:
                    raise click.BadParameter(f"{path!r}: [{key}] has no setting {k!r}; expected one of "
                                             f"{_flag_list(cmd)}", param_hint="--config")
            out[key] = section
        elif key.replace("-", "_") in group_names:
            out[group_names[key.replace("-", "_")]] = value
        else:
            raise click.BadParameter(f"{path!r}: unknown key {key!r}; expected one of {_flag_list(group)} "
                                     "or a table per command", param_hint="--config")
    return out


def group_config(ctx: click.Context, param, value):
    """``--config FILE`` given before the command: the whole file becomes click's defaults."""
    if value is not None:
        ctx.default_map = read_config(value, ctx.command)
    return value


def _apply_config(ctx: click.Context, param, value):
    """``--config FILE`` given after the command: that command's table becomes its defaults
    (flags on the command line still win), and the top-level keys set the group's options that
    the command line left at their defaults."""
    if value is None:
        return value
    from click.core import ParameterSource

    root = ctx.find_root()
    data = read_config(value, root.command)
    ctx.default_map = {**(ctx.default_map or {}), **data.get(ctx.info_name, {})}
    group = ctx.parent
    obj = ctx.find_object(Settings)
    for key in ("precision", "quiet", "debug"):
        if key not in data or group is None or obj is None:
            continue
        if group.get_parameter_source(key) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
            continue  # given on the command line: it wins
        v = data[key]
        if key == "precision":
            if str(v) not in ("32", "64"):
                raise click.BadParameter(f"{value!r}: precision = {v!r}; expected 32 or 64", param_hint="--config")
            obj.precision = int(v)  # applied when the command starts (Settings.start)
        elif not isinstance(v, bool):
            raise click.BadParameter(f"{value!r}: {key} = {v!r}; expected true or false", param_hint="--config")
        else:
            setattr(obj, key, v)
    return value


config_option = click.option(
    "--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False, callback=_apply_config,
    help="TOML file of settings (also accepted before the command): a table per command, keys named as "
         "the flags ([sample] chains = 8, format = \"npz\"; [sample.options] n = 32).")
