"""Process-level set-up a user opts into: precision, the persistent compilation cache, meshes.

Nothing here runs at import time; each function changes JAX's configuration only when called.
"""

from __future__ import annotations

import os

import jax
from jax.sharding import AxisType, Mesh


def enable_compilation_cache(path: str | os.PathLike | None = None, *, min_compile_time_secs: float = 0.5) -> str:
    """Turn on JAX's persistent compilation cache, so a new process reuses compiled programs.

    Args:
        path: cache directory; default ``$JINVERSE_CACHE/xla`` or ``~/.cache/jinverse/xla``.
        min_compile_time_secs: only programs that took at least this long to compile are stored.

    Returns:
        The cache directory used.
    """
    if path is None:
        root = os.environ.get("JINVERSE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "jinverse"))
        path = os.path.join(root, "xla")
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return path


def set_precision(bits: int) -> None:
    """64: float64 (the default jinverse recommends on CPU for ill-conditioned problems); 32: float32
    (faster on accelerators; see benchmarks/RESULTS.md for its accuracy on the benchmark problems)."""
    if bits not in (32, 64):
        raise ValueError(f"bits: got {bits!r}, expected 32 or 64")
    jax.config.update("jax_enable_x64", bits == 64)


def batch_mesh(devices=None, axis: str = "batch") -> Mesh:
    """A 1-D mesh over ``devices`` (default: every device of every process) for sharding a batch.

    Uses ``AxisType.Auto`` (the default explicit-axis mesh does not work with optax's L-BFGS).
    Pass it as ``mesh=`` to `jinverse.solve_map` and the other batched solvers.
    """
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), (axis,), axis_types=(AxisType.Auto,), devices=devices)
