"""Shared pieces of the commands' work: problem options, progress output and the checked output
paths (the parser's own pieces, settings, errors and the TOML configuration, are in
`jinverse_cli.common`)."""

from __future__ import annotations

import ast
import contextlib
import pathlib
import sys
import time
from typing import Any

import click

from jinverse_cli.common import choice_error, settings


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


# Problem options that take Python objects, so `-o` cannot set them: what each expects.
PYTHON_ONLY_OPTIONS = {"prior": "a ji.priors prior object"}
HIDDEN_OPTIONS = ("seed", "batch")  # set with --seed and --batch


def settable_options(builder) -> dict[str, Any]:
    """The options of a problem builder that ``-o KEY=VALUE`` can set, with their defaults."""
    import inspect

    return {k: p.default for k, p in inspect.signature(builder).parameters.items()
            if k not in HIDDEN_OPTIONS and k not in PYTHON_ONLY_OPTIONS and p.default is not inspect.Parameter.empty}


def load_benchmark(name: str, options: dict, *, seed: int, batch: int | None = None):
    """``ji.problems.load`` with the CLI's errors: unknown names and bad options are usage errors."""
    import inspect

    from .. import problems
    from ..problems._registry import entry

    valid = list(problems.names())
    if name not in valid:
        raise choice_error("problem", name, valid)
    params = inspect.signature(entry(name).builder).parameters
    settable = settable_options(entry(name).builder)
    for key in options:
        if key in params and key in PYTHON_ONLY_OPTIONS:
            raise click.UsageError(f"problem {name!r}: option {key!r} takes {PYTHON_ONLY_OPTIONS[key]}, which -o "
                                   f"cannot give; set it in Python: ji.problems.load({name!r}, {key}=...)")
        if key in HIDDEN_OPTIONS:
            raise click.UsageError(f"problem {name!r}: set {key!r} with --{key}, not -o")
        if key not in params:
            raise click.UsageError(f"problem {name!r} has no option {key!r}; its options: {', '.join(settable)}")
    kwargs = {**options, "seed": seed}
    if batch is not None:
        kwargs["batch"] = batch
    try:
        return problems.load(name, **kwargs)
    except (ValueError, TypeError) as exc:
        raise click.UsageError(f"problem {name!r}: {exc}") from None


# -- progress ----------------------------------------------------------------------------------

@contextlib.contextmanager
def phase(label: str, lines: bool = False):
    """``label ... done (1.2 s)`` on stderr around a block (silent with --quiet); ``lines``: the
    block prints progress lines of its own, so ``label ...`` and ``label: done (1.2 s)`` get one each."""
    quiet = settings().quiet
    if not quiet:
        click.echo(f"{label} ...", err=True, nl=lines)
    t0 = time.perf_counter()
    try:
        yield
    except BaseException:
        if not quiet and not lines:  # end the line: the error message starts on its own
            click.echo(" failed", err=True)
        raise
    if not quiet:
        click.echo(f"{label + ':' if lines else ''} done ({time.perf_counter() - t0:.1f} s)", err=True)


class ChunkProgress:
    """Progress across the chunks of a batch (`jinverse.bench.run_chunked`'s ``on_chunk``): a bar
    on a terminal, else a line at the start, at the end and every few seconds between (a log)."""

    def __init__(self, label: str, total: int):
        from .._batching import reporter

        self.bar = self.lines = None
        if not settings().quiet:
            isatty = getattr(sys.stderr, "isatty", None)
            if isatty is not None and isatty():
                self.bar = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True,
                                             show_eta=True)
                self.bar.__enter__()
                self.bar.render_progress()
            else:
                self.lines = reporter(True, total, label)
        self.done = 0

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.done)
        elif self.lines is not None:
            self.lines(done)
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
