"""Streaming a batch of independent lanes through one compiled program.

A *lane* is one independent solve (one observation, one start, one chain...). `stream` cuts the
lanes into blocks of a fixed size, pads the last block by repeating its last lane (so no new size
ever recompiles), optionally shards each block across the devices of a mesh (``shard_map`` over
the mesh's batch axis: each device runs the same program on its own lanes), shows progress across
blocks, and returns the per-lane outputs in order. Nothing here knows what a lane computes.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from . import programs
from ._checks import check_positive_int

_MEMORY_BUDGET = 512 * 2**20  # bytes of lane inputs/outputs per compiled call


def default_block_size(bytes_per_lane: int, multiple: int) -> int:
    """Lanes per compiled call so that one block's inputs and outputs stay within ~512 MiB."""
    lanes = max(multiple, min(2**16, _MEMORY_BUDGET // max(1, bytes_per_lane)))
    return lanes // multiple * multiple


def tree_bytes(tree) -> int:
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def check_mesh(mesh, axis: str | None) -> str | None:
    """Validate ``mesh``; return the name of the axis the batch is sharded over."""
    if mesh is None:
        return None
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh: got {type(mesh).__name__}, expected a jax.sharding.Mesh")
    axis = mesh.axis_names[0] if axis is None else axis
    if axis not in mesh.axis_names:
        raise ValueError(f"batch_axis: got {axis!r}, expected one of the mesh's axes {mesh.axis_names}")
    return axis


def stream(
    fn: Callable,
    operand,
    lanes,
    *,
    num_lanes: int,
    block_size: int,
    multiple: int = 1,
    mesh: Mesh | None = None,
    axis: str | None = None,
    progress: bool | Callable[[int, int], None] | None = None,
    label: str = "lanes",
):
    """``fn(operand, block)`` over all lanes, ``block_size`` lanes per call.

    Args:
        fn: maps ``(operand, block)`` to a pytree of per-lane outputs (leading axis = lanes).
            It must be jit-compatible and a stable object (a module-level function), so that
            it is compiled once per block shape and operand structure.
        operand: shared by every lane (e.g. the problem); replicated across devices.
        lanes: pytree of arrays with leading axis ``num_lanes``.
        multiple: blocks are padded to a multiple of this (e.g. the vmap chunk size).
        mesh, axis: shard each block's lanes over ``mesh.shape[axis]`` devices. With a mesh that
            spans several processes (``jax.distributed``), ``lanes`` are this process's own
            lanes, every process must call with the same ``num_lanes``, and the outputs are
            this process's lanes (gather them with ``multihost_utils.process_allgather``).
        progress: True for progress on stderr from the first block on (`reporter`: a bar on a
            terminal, else log lines; one block is shown too), or a callback ``(done, total)``
            after each block.
    """
    block_size = check_positive_int("block_size", block_size)
    multiprocess = mesh is not None and any(d.process_index != jax.process_index() for d in mesh.devices.flat)
    # devices along the batch axis that this process feeds (all of them on one host)
    n_dev = 1 if mesh is None else mesh.shape[axis] // (jax.process_count() if multiprocess else 1)
    unit = multiple * n_dev
    size = min(block_size, num_lanes)
    size = -(-size // unit) * unit  # round up: whole chunks on every device
    run = _compiled(fn, mesh, axis)
    if mesh is None:  # kept on disk when the caller turned that on (the CLI: `jinverse.programs`)
        run = programs.wrap(fn, run)
    if multiprocess:  # every process runs this same loop on its own lanes (SPMD)
        operand = _replicate_global(operand, mesh)
    report = reporter(progress, num_lanes, label)
    pieces = []
    for start in range(0, num_lanes, size):
        stop = min(start + size, num_lanes)
        if start == 0 and size == num_lanes:  # one exact block: no copy
            block = lanes
        else:
            idx = np.minimum(np.arange(start, start + size), num_lanes - 1)
            block = jax.tree.map(lambda a: a[idx], lanes)
        if mesh is not None and multiprocess:  # (multiprocess implies a mesh)
            sharding = NamedSharding(mesh, P(axis))
            block = jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), block)
            out = multihost_utils.global_array_to_host_local_array(run(operand, block), mesh, P(axis))
        else:
            if mesh is not None:
                block = jax.device_put(block, NamedSharding(mesh, P(axis)))
            out = run(operand, block)
        pieces.append(out if stop - start == size else jax.tree.map(lambda a: a[: stop - start], out))
        report(stop)
    if len(pieces) == 1:
        return pieces[0]
    return jax.tree.map(lambda *a: jnp.concatenate(a), *pieces)


def _replicate_global(operand, mesh):
    """The operand's arrays as global arrays replicated over a multi-process mesh."""
    dynamic, static = eqx.partition(operand, eqx.is_array)
    replicated = NamedSharding(mesh, P())
    dynamic = jax.tree.map(lambda a: jax.make_array_from_process_local_data(replicated, np.asarray(a)), dynamic)
    return eqx.combine(dynamic, static)


@functools.lru_cache(maxsize=64)
def _compiled(fn, mesh, axis):
    """One jitted wrapper per (fn, mesh, axis), so repeated calls hit JAX's compilation cache."""
    if mesh is None:
        return eqx.filter_jit(fn)
    return _sharded(fn, mesh, axis)


def _sharded(fn, mesh, axis):
    """``fn`` under shard_map: the operand's arrays replicated, the lanes split over ``axis``."""

    @eqx.filter_jit
    def run(operand, block):
        dynamic, static = eqx.partition(operand, eqx.is_array)

        def local(dynamic, block):
            return fn(eqx.combine(dynamic, static), block)

        # check_vma=False: optax's line search mixes replicated and per-device values in lax.cond
        return jax.shard_map(local, mesh=mesh, in_specs=(P(), P(axis)), out_specs=P(axis),
                             check_vma=False)(dynamic, block)

    return run


LOG_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal (a log file)


def announce(progress, text: str) -> None:
    """``text`` as one line on stderr when ``progress`` is True: the start of a phase (a
    ``callback(done, total)`` gets counts only)."""
    if progress and not callable(progress):
        print(text, file=sys.stderr, flush=True)


def reporter(progress, total: int, label: str) -> Callable[[int], None]:
    """``report(done)`` for ``done`` of ``total`` units: calls ``progress(done, total)``, or, for
    ``progress=True``, shows it on stderr from the start (``done = 0``): a bar on a terminal, else
    a line (``label 400/1000 (40%), 12 s, eta 18 s``) at the start, at the end and at most every
    `LOG_EVERY` seconds between, so that a log shows long work advancing."""
    if callable(progress):
        return lambda done: progress(done, total)
    if not progress:
        return lambda done: None
    t0 = time.perf_counter()
    isatty = getattr(sys.stderr, "isatty", None)
    tty = bool(isatty and isatty())
    last = [-math.inf]  # when the last line was written

    def report(done):
        frac = done / total if total else 1.0
        elapsed = time.perf_counter() - t0
        eta = elapsed / frac - elapsed if frac > 0 else math.nan
        if tty:
            bar = "#" * int(30 * frac)
            eta_txt = f"{eta:6.1f}s" if frac > 0 else "     ?"
            sys.stderr.write(f"\r  {label} [{bar:<30}] {done}/{total}  {elapsed:6.1f}s  eta {eta_txt}")
            if done >= total:
                sys.stderr.write("\n")
        elif done >= total or elapsed - last[0] >= LOG_EVERY:
            last[0] = elapsed
            eta_txt = f", eta {eta:.0f} s" if 0 < frac < 1 else ""
            sys.stderr.write(f"{label} {done}/{total} ({100 * frac:.0f}%), {elapsed:.0f} s{eta_txt}\n")
        sys.stderr.flush()

    report(0)
    return report
