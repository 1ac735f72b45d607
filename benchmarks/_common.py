"""Shared helpers for benchmark scripts: machine description and RESULTS.md sections."""

from __future__ import annotations

import os
import platform
import re
from importlib import metadata


def machine_info() -> str:
    import jax

    versions = ", ".join(f"{p} {_version(p)}" for p in ("jax", "optax", "blackjax", "numpy", "scipy"))
    dev = jax.devices()[0]
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = f"{os.cpu_count()} cores" if usable == os.cpu_count() else f"{usable} of {os.cpu_count()} cores (pinned)"
    return (f"{platform.processor() or platform.machine()}, {cores}, "
            f"{dev.platform} ({dev.device_kind}); Python {platform.python_version()}; {versions}")


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "-"


def record(path: str, key: str, title: str, command: str, machine: str, body: str) -> None:
    """Replace (or append) the section ``key`` of the results file with fresh figures."""
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n\nEach section is rewritten by its script.\n"
    section = (f"<!-- {key}:start -->\n## {title}\n\nCommand: {command}\n\nMachine: {machine}\n\n{body}\n"
               f"<!-- {key}:end -->")
    pattern = re.compile(rf"<!-- {re.escape(key)}:start -->.*?<!-- {re.escape(key)}:end -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(text)
