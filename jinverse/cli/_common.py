"""Shared pieces of the command line: error handling, the TOML configuration, problem options,
progress output and result files."""

from __future__ import annotations

import ast
import contextlib
import functools
import pathlib
import sys
import time
import tomllib
from typing import Any

import click


class Settings:
    """Group-level settings carried in ``ctx.obj``."""

    def __init__(self, precision: int = 64, quiet: bool = False, debug: bool = False):
        self.precision, self.quiet, self.debug = precision, quiet, debug


def settings() -> Settings:
    ctx = click.get_current_context()
    return ctx.find_object(Settings) or Settings()


def echo(msg: str = "", err: bool = False) -> None:
    """Print unless ``--quiet`` (errors always print)."""
    if err or not settings().quiet:
        click.echo(msg, err=err)


def handle_errors(fn):
    """Turn a failure into a one-line message and exit code 1 (a traceback only with --debug).

    Usage errors raised as `click.UsageError` keep their exit code 2.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            raise click.Abort() from None
        except Exception as exc:
            if settings().debug:
                raise
            raise click.ClickException(f"{type(exc).__name__}: {exc}  (run with --debug for the traceback)") from None

    return wrapper


def choice_error(what: str, got: str, valid) -> click.UsageError:
    import difflib

    close = difflib.get_close_matches(got, list(valid), n=2)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return click.UsageError(f"unknown {what} {got!r}.{hint} Valid: {', '.join(valid)}.")


# -- configuration file ----------------------------------------------------------------------

def read_config(path: str, group: click.Group) -> dict:
    """A TOML file -> click's ``default_map``: top-level keys set the group's options, a table
    per command sets that command's (``[sample] chains = 8``; ``[sample.options] n = 32`` sets
    problem options)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise click.BadParameter(f"no such file {path!r}", param_hint="--config") from None
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{path!r} is not valid TOML: {exc}", param_hint="--config") from None
    out: dict[str, Any] = {}
    group_params = {p.name for p in group.params} - {"config"}
    for key, value in data.items():
        if isinstance(value, dict):
            cmd = group.commands.get(key)
            if cmd is None:
                raise click.BadParameter(f"{path!r}: unknown table [{key}]; expected one of "
                                         f"{', '.join(sorted(group.commands))}", param_hint="--config")
            names = {p.name for p in cmd.params}
            section = {}
            for k, v in value.items():
                k = k.replace("-", "_")
                if k == "options" and "option" in names and isinstance(v, dict):
                    section["option"] = tuple(f"{ok}={_toml_literal(ov)}" for ok, ov in v.items())
                elif k in names:
                    section[k] = tuple(v) if isinstance(v, list) else v
                else:
                    raise click.BadParameter(f"{path!r}: [{key}] has no setting {k!r}; expected one of "
                                             f"{', '.join(sorted(names))}", param_hint="--config")
            out[key] = section
        elif key.replace("-", "_") in group_params:
            out[key.replace("-", "_")] = value
        else:
            raise click.BadParameter(f"{path!r}: unknown key {key!r}; expected one of "
                                     f"{', '.join(sorted(group_params))} or a table per command",
                                     param_hint="--config")
    return out


def _toml_literal(v) -> str:
    return repr(v)


def parse_options(pairs) -> dict:
    """``("n=32", "bc=zero")`` -> ``{"n": 32, "bc": "zero"}`` (Python literals, else strings)."""
    out = {}
    for item in pairs or ():
        if "=" not in item:
            raise click.BadParameter(f"got {item!r}, expected KEY=VALUE (e.g. -o n=32)", param_hint="--option")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key.isidentifier():
            raise click.BadParameter(f"got key {key!r}, expected a name (e.g. -o n=32)", param_hint="--option")
        lowered = raw.strip().lower()
        if lowered in ("true", "false", "none", "null"):
            out[key] = {"true": True, "false": False}.get(lowered)
            continue
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out


def load_benchmark(name: str, options: dict, *, seed: int, batch: int | None = None):
    """``ji.problems.load`` with the CLI's errors: unknown names and bad options are usage errors."""
    import inspect

    from .. import problems
    from ..problems._registry import entry

    valid = list(problems.names())
    if name not in valid:
        raise choice_error("problem", name, valid)
    params = inspect.signature(entry(name).builder).parameters
    for key in options:
        if key not in params:
            raise click.UsageError(f"problem {name!r} has no option {key!r}; its options: "
                                   f"{', '.join(k for k in params if k not in ('seed', 'batch'))}")
    kwargs = {**options, "seed": seed}
    if batch is not None:
        kwargs["batch"] = batch
    try:
        return problems.load(name, **kwargs)
    except (ValueError, TypeError) as exc:
        raise click.UsageError(f"problem {name!r}: {exc}") from None


# -- progress ----------------------------------------------------------------------------------

@contextlib.contextmanager
def phase(label: str):
    """``label ... done (1.2 s)`` on stderr around a block (silent with --quiet)."""
    quiet = settings().quiet
    if not quiet:
        click.echo(f"{label} ...", err=True, nl=False)
    t0 = time.perf_counter()
    yield
    if not quiet:
        click.echo(f" done ({time.perf_counter() - t0:.1f} s)", err=True)


class ChunkProgress:
    """A progress bar across the chunks of a batch (`jinverse.bench.run_chunked`'s ``on_chunk``)."""

    def __init__(self, label: str, total: int):
        self.bar = None
        if not settings().quiet:
            self.bar = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True,
                                         show_eta=True)
            self.bar.__enter__()
            self.bar.render_progress()
        self.done = 0

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def out_dir(path: str | None) -> pathlib.Path | None:
    """The ``--out`` folder, created and checked writable *before* any work (a run must not end
    with its arrays lost to a bad path)."""
    if path is None:
        return None
    p = pathlib.Path(path)
    if p.exists() and not p.is_dir():
        raise click.BadParameter(f"got {path!r}, which exists and is not a folder; expected a folder "
                                 "(created if missing)", param_hint="--out")
    try:
        p.mkdir(parents=True, exist_ok=True)
        _probe_write(p)
    except OSError as exc:
        raise click.BadParameter(f"got {path!r}, which cannot be written ({exc.strerror or exc}); expected a "
                                 "folder this user can create and write to", param_hint="--out") from None
    return p


def checkpoint_file(path: str | None) -> pathlib.Path | None:
    """The ``--checkpoint`` file, its folder created and checked writable before any work."""
    if path is None:
        return None
    p = pathlib.Path(path)
    if p.is_dir():
        raise click.BadParameter(f"got {path!r}, which is a folder; expected a file path (e.g. run.ckpt.npz)",
                                 param_hint="--checkpoint")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        _probe_write(p.parent)
    except OSError as exc:
        raise click.BadParameter(f"got {path!r}, whose folder cannot be written ({exc.strerror or exc}); "
                                 "expected a file in a folder this user can write to",
                                 param_hint="--checkpoint") from None
    return p


def _probe_write(folder: pathlib.Path) -> None:
    import tempfile

    with tempfile.NamedTemporaryFile(dir=folder, prefix=".jinverse-write-test-"):
        pass
