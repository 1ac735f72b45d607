"""Resumable sampling: the chunked draw loop behind ``ji.sample(..., checkpoint=PATH)``.

Warmup runs once; then draws are made ``checkpoint_every`` at a time. After the warmup and after
each chunk, one file is written atomically (a temporary file, then ``os.replace``): a NumPy
``.npz`` holding the sampler states, tuned parameters and draw keys of every observation, the
draws so far, and a JSON fingerprint of the settings. A later call with the same arguments finds
the file, checks the fingerprint and carries on from the last complete chunk. Draw ``i`` of a
chain always uses the ``i``-th of its pre-split keys, so the result does not depend on where the
run was interrupted. State pytrees are stored as their leaves; their structure is rebuilt from a
warmup-shaped template (`jax.eval_shape`), never unpickled. With replica exchange the states
are `jinverse.tempering.Replicas`: every replica's state, the (possibly adapted) ladder and the
running swap sums are saved with them, so a resumed run's swap acceptance is the whole run's.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _samplers
from ._batching import announce, reporter, stream
from .lanes import draw_lanes, lane_report, metric_ok, warmup_lanes

FORMAT = 1


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def fingerprint(problem, s, lanes) -> dict[str, str]:
    """What a checkpoint must agree on to be resumed (``s`` is `jinverse.lanes.Settings`)."""
    y, kd, init_u = lanes[:3]  # (then the "laplace" metric's modes: found again from y)
    structure = str(jax.tree.structure(problem)) + type(problem.forward).__qualname__
    method = s.method if isinstance(s.method, str) else getattr(s.method, "__qualname__", "custom")
    meta = {
        "format": str(FORMAT),
        "problem": hashlib.sha256(structure.encode()).hexdigest()[:16] + " "
        + _digest(*jax.tree.leaves(eqx.filter(problem, eqx.is_array))),
        "y": f"shape {tuple(y.shape)}, sha256 {_digest(y)}",
        "key": _digest(kd),
        "init": s.init + ("" if init_u is None else " " + _digest(init_u)),
        "method": method,
        "num_chains": str(s.num_chains),
        "num_warmup": str(s.num_warmup),
        "num_samples": str(s.num_samples),
        "checkpoint_every": str(s.draws_per_call),
        "options": repr(s.options),
        "jitter": repr(s.jitter),
        "metric": s.metric,
    }
    if s.betas is not None:  # (absent without tempering: files written before it still resume)
        meta["tempering"] = f"betas {list(s.betas)}, swap_every {s.swap_every}, ladder_rounds {s.ladder_rounds}"
    return meta


def _save(path: pathlib.Path, meta: dict, done: int, states, draws) -> None:
    arrays = {"meta": np.asarray(json.dumps(meta)), "done": np.asarray(done)}
    arrays.update({f"state_{i:04d}": a for i, a in enumerate(jax.tree.leaves(states))})
    if draws is not None:
        arrays.update({f"draws_{i:04d}": a for i, a in enumerate(jax.tree.leaves(draws))})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub: a **dict might hold allow_pickle
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # atomic: a reader sees the old complete file or the new one


def saved_draws(path) -> int:
    """Draws per chain already saved in the checkpoint ``path`` (0 if there is none or it cannot
    be read; `run_checkpointed` checks its settings when it resumes)."""
    try:
        with np.load(path) as npz:
            return int(npz["done"])
    except Exception:  # noqa: BLE001 - no file, or not a checkpoint: nothing to resume
        return 0


def _read(path: pathlib.Path, meta: dict) -> dict:
    """The file's arrays, once its fingerprint is found equal to ``meta``."""
    try:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        saved = json.loads(str(arrays["meta"]))
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ValueError(f"checkpoint: could not read {str(path)!r} as a jinverse sampling "
                         f"checkpoint ({exc}); delete it or pass another path") from exc
    differ = [k for k in sorted(set(meta) | set(saved)) if meta.get(k) != saved.get(k)]
    if differ:
        raise ValueError(f"checkpoint: {str(path)!r} was written with different settings "
                         f"({', '.join(differ)} differ: got {[meta.get(k) for k in differ]}, the file "
                         f"has {[saved.get(k) for k in differ]}); delete it or pass another path")
    return arrays


def _load(path: pathlib.Path, arrays: dict, state_template, draws_treedef, num_lanes: int):
    leaves, treedef = jax.tree.flatten(state_template)
    states = [arrays[f"state_{i:04d}"] for i in range(len(leaves))]
    for a, t in zip(states, leaves, strict=True):
        if a.shape != (num_lanes, *t.shape[1:]) or a.dtype != t.dtype:
            raise ValueError(f"checkpoint: {str(path)!r} holds a state of shape {a.shape} {a.dtype}, "
                             f"expected {(num_lanes, *t.shape[1:])} {t.dtype}")
    done = int(arrays["done"])
    draws = None
    if done:
        draws = jax.tree.unflatten(draws_treedef, [arrays[f"draws_{i:04d}"]
                                                   for i in range(draws_treedef.num_leaves)])
    return done, jax.tree.unflatten(treedef, states), draws


def run_checkpointed(problem, s, lanes, path, run: dict, progress):
    """Warmup once, then chunks of ``s.draws_per_call`` draws, saved after each; resumes from
    ``path`` when it holds a checkpoint of the same settings. Returns ``((draws, stats), ok)``
    with a leading lane axis, like the uninterrupted program (``ok``: per lane, whether its
    whitening metric is the one asked for, read off the saved parameters; with replica exchange
    ``(ok, TemperingStats)``, as `jinverse.lanes.lane_report` gives it)."""
    path = pathlib.Path(path)
    operand = (problem, s)
    meta = fingerprint(problem, s, lanes)
    num_lanes = run["num_lanes"]
    leaf = jnp.zeros(())  # any leaf: only the structure is taken
    draws_treedef = jax.tree.structure((problem.theta_shape_dtype(), _samplers.Stats(leaf, leaf, leaf, leaf, leaf)))
    draws = None
    if path.exists():
        arrays = _read(path, meta)  # refused here, before anything is traced, if settings differ
        one = jax.tree.map(lambda a: a[:1], lanes)
        template = jax.eval_shape(lambda: warmup_lanes(operand, one))
        done, states, draws = _load(path, arrays, template, draws_treedef, num_lanes)
        announce(progress, f"sampling: resuming from {path}: its warm-up and {done} of {s.num_samples} draws "
                           "per chain were saved")
    else:
        announce(progress, f"sampling: warmup, {s.num_warmup} steps of {s.num_chains} chains x {num_lanes} "
                           f"observation{'s' * (num_lanes > 1)} (compiling first), then saved to {path}")
        states = jax.tree.map(np.asarray, stream(warmup_lanes, operand, lanes, **run))
        done = 0
        _save(path, meta, done, states, None)
    report = reporter(progress, s.num_samples, "draws")
    if done and not callable(progress):  # the log shows where the run carries on from
        report(done)
    y = lanes[0]
    # The draw loop: each pass moves every chain of every observation `draws_per_call` draws on
    # from the saved states (the last pass may run past num_samples; the extra draws are dropped).
    while done < s.num_samples:
        chain_states, params, keys = states
        start = jnp.full((num_lanes,), done, jnp.int32)
        chain_states, new, stats = stream(draw_lanes, operand, (y, chain_states, params, keys, start), **run)
        n = min(s.draws_per_call, s.num_samples - done)
        chunk = jax.tree.map(lambda a: np.asarray(a[:, :, :n]), (new, stats))
        draws = chunk if draws is None else jax.tree.map(lambda a, b: np.concatenate([a, b], axis=2), draws, chunk)
        states = (jax.tree.map(np.asarray, chain_states), params, keys)
        done += n
        _save(path, meta, done, states, draws)
        report(done)
    chain_states, params, _ = jax.tree.map(jnp.asarray, states)
    if s.betas is not None:
        ok, swaps = jax.vmap(lambda p, st: lane_report(s, p, st))(params, chain_states)
        return jax.tree.map(jnp.asarray, draws), (jnp.broadcast_to(ok, (num_lanes,)), swaps)
    ok = jnp.broadcast_to(jnp.asarray(metric_ok(s, params)), (num_lanes,))
    return jax.tree.map(jnp.asarray, draws), ok
