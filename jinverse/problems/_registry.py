"""The registry of built-in benchmark problems and the `Benchmark` record.

Each family module registers its builders with `register`; `load(name, **options)` builds one.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable
from typing import Any

import jax

from ..problem import InverseProblem


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One benchmark instance.

    Attributes:
        name: the registered name.
        problem: the `InverseProblem`.
        y: observations, ``(*event)`` or ``(batch, *event)`` when loaded with ``batch=B``.
        theta_true: the θ that generated ``y`` (same leading batch axis as ``y``).
        reference: the reference answer where one exists: a dict that may hold
            ``"posterior_mean"``, ``"posterior_cov"``, ``"draws"``, ``"solution"``, ...; else None.
        metric: the name of the metric `jinverse.problems.evaluate` uses (``"rel_error"``,
            ``"rmse"``, ``"c2st"``, ``"mmd"``, ``"repredict"``, ...).
        options: the options it was built with (seed, n, noise, ...).
        info: free-form extras (e.g. the matrix of a linear problem, grid coordinates).
    """

    name: str
    problem: InverseProblem
    y: jax.Array
    theta_true: Any
    reference: dict | None = None
    metric: str = "rel_error"
    options: dict = dataclasses.field(default_factory=dict)
    info: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class _Entry:
    name: str
    description: str
    builder: Callable[..., Benchmark]
    family: str


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, description: str, family: str):
    """Decorator: register ``builder(**options) -> Benchmark`` under ``name``."""

    def deco(builder):
        if name in _REGISTRY:
            raise RuntimeError(f"problem {name!r} registered twice")
        _REGISTRY[name] = _Entry(name, description, builder, family)
        return builder

    return deco


def names() -> dict[str, str]:
    """Every built-in problem name with its one-line description."""
    return {k: e.description for k, e in sorted(_REGISTRY.items())}


def entry(name: str) -> _Entry:
    if not isinstance(name, str) or name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise KeyError(f"name: got unknown problem {name!r}{hint}; expected one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def load(name: str, **options) -> Benchmark:
    """Build the benchmark ``name``; deterministic for a given ``seed`` option."""
    builder = entry(name).builder
    params = inspect.signature(builder).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(options) - set(params))
        if unknown:
            raise TypeError(f"options: got unknown option(s) {', '.join(unknown)} for problem {name!r}; "
                            f"expected some of {', '.join(params) or '(none)'}")
    return builder(**options)
