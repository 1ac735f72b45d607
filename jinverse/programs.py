"""Compiled lane programs kept on disk, so that a repeated command skips tracing as well as compiling.

JAX's persistent compilation cache (`jinverse.runtime.enable_compilation_cache`) skips XLA's
compilation of a program it has seen, but not the tracing and lowering that produce the program
and its cache key: on the CLI that was most of a repeated call's time after the imports (about
1 s of a 2 s ``jinverse solve``, 3-4 s of a ``jinverse sample``). Here each lane program that
`jinverse._batching.stream` runs (the MAP, sampling, Laplace and SMC loops) is kept as a
serialised executable (`jax.experimental.serialize_executable`) under a key computed *without*
tracing, from:

- the scope the caller declares (`scope`: the CLI's command, problem, options, seed, method and
  settings);
- the lane function, and a fingerprint of every part of the operand and the lanes: arrays by
  shape and dtype, and by content too where they are not arguments of the program (closed over
  by a function, a static field) and so are compiled into it; functions by their code, the
  values they close over and, for functions outside the trusted packages, the globals they name;
  anything that cannot be fingerprinted this way turns the cache off for that call;
- the source of jinverse, the versions of Python, JAX and the libraries that trace into the
  program, JAX's configuration, the ``JAX_*``/``XLA_*`` environment and the backend.

Only `stream` calls made on one device, outside any transformation, inside `scope`, after
`enable` use it; nothing in the library turns it on (the CLI does, unless ``--no-cache``).
A program runs as before, but is not stored, when it cannot be serialised (host callbacks,
constants JAX keeps outside the executable, an output structure that does not survive
pickling) or when JAX loaded it from its persistent cache: XLA:CPU serialises such an
executable without some of its kernels, and a later process running it fails
(``NOT_FOUND: Function ... fusion not found``).
"""

from __future__ import annotations

import contextlib
import copyreg
import dataclasses
import functools
import hashlib
import importlib.metadata
import io
import os
import pathlib
import pickle
import sys
import types
from typing import Any, NamedTuple

import equinox as eqx
import jax
import numpy as np

# packages whose functions are fingerprinted by name and version, not by what they refer to
_TRUSTED = frozenset({"jax", "jaxlib", "equinox", "optax", "blackjax", "numpy", "scipy", "lineax", "optimistix",
                      "jaxtyping", "jinverse", "builtins", "functools", "operator", "math", "typing", "abc",
                      "collections", "enum", "dataclasses"})
_VERSIONED = ("jax", "jaxlib", "equinox", "optax", "blackjax", "numpy", "scipy", "lineax", "optimistix")
_CONFIG = ("jax_enable_x64", "jax_default_matmul_precision", "jax_default_prng_impl", "jax_numpy_rank_promotion",
           "jax_numpy_dtype_promotion", "jax_threefry_partitionable", "jax_enable_custom_prng")
_MAX_DEPTH = 64
MAX_BYTES = 2 << 30  # the store keeps its most recently used programs within this size

_state: dict = {"dir": None, "scope": None, "memo": {}, "environment": None, "first_seen": {},
                "stats": {"hit": 0, "miss": 0, "off": 0}}


def enable(path: str | os.PathLike) -> pathlib.Path:
    """Keep programs under ``path`` (created if needed); they are used inside `scope` only."""
    folder = pathlib.Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    _state["dir"] = folder
    return folder


def disable() -> None:
    _state["dir"] = None
    forget()


def forget() -> None:
    """Drop this process's loaded programs (the files stay)."""
    _state["memo"].clear()


def stats() -> dict:
    """Counts of this process's lookups: ``hit`` (loaded, or reused in this process), ``miss``
    (traced and compiled, and stored unless also counted ``off``), ``off`` (a call that could not
    be keyed, or a program that could not be stored)."""
    return dict(_state["stats"])


@contextlib.contextmanager
def scope(*parts):
    """Programs run inside are keyed on ``parts`` (their ``repr``) as well: what built the problem
    and chose the settings, e.g. ``("solve", name, options, seed, method, settings)``."""
    before = _state["scope"]
    _state["scope"] = repr((before, parts))
    try:
        yield
    finally:
        _state["scope"] = before


def wrap(fn, run):
    """``run(operand, block)`` through the program store when it is on (and, at the call, inside a
    `scope`), else ``run`` itself."""
    if _state["dir"] is None:
        return run
    return functools.partial(_call, fn, run)


def _call(fn, run, operand, block):
    if _state["dir"] is None or _state["scope"] is None:
        return run(operand, block)
    args = (operand, block)
    dynamic, static = eqx.partition(args, eqx.is_array)
    leaves, in_def = jax.tree.flatten(dynamic)
    if jax.config.jax_disable_jit or any(isinstance(x, jax.core.Tracer) for x in leaves):
        _state["stats"]["off"] += 1
        return run(operand, block)
    key = _key(fn, args, leaves)
    if key is None:
        _state["stats"]["off"] += 1
        return run(operand, block)
    entry = _state["memo"].get(key) or _load(key)
    if entry is None:
        entry = _build(fn, in_def, static, leaves)
        _state["stats"]["miss"] += 1
        _store(key, entry)
    else:
        _state["stats"]["hit"] += 1
    _state["memo"][key] = entry
    return eqx.combine(jax.tree.unflatten(entry.out_def, entry.compiled(*leaves)), entry.static_out)


class _Entry(NamedTuple):
    compiled: Any  # a jax.stages.Compiled, called with the dynamic leaves
    out_def: Any  # the tree of the output's arrays
    static_out: Any  # the output's other leaves
    storable: bool  # freshly compiled (one loaded from JAX's persistent cache does not serialise whole)


def _build(fn, in_def, static, leaves) -> _Entry:
    """Trace, lower and compile ``fn`` on the leaves."""
    box = []

    def program(*dyn):
        out = fn(*eqx.combine(jax.tree.unflatten(in_def, dyn), static))
        dyn_out, static_out = eqx.partition(out, eqx.is_array)
        out_leaves, out_def = jax.tree.flatten(dyn_out)
        box.append((out_def, static_out))
        return out_leaves

    _listen()
    hits = _cache_hits[0]
    compiled = jax.jit(program).lower(*leaves).compile()
    # XLA:CPU serialises an executable that JAX loaded from its persistent cache without some of
    # its kernels ("NOT_FOUND: Function ... fusion not found" when a later process runs it): such
    # a program is used here but not stored (the next command finds it in JAX's cache again)
    out_def, static_out = box[0]
    return _Entry(compiled, out_def, static_out, storable=_cache_hits[0] == hits)


_cache_hits = [0]


def _count_cache_hit(event: str, **kwargs) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _cache_hits[0] += 1


@functools.cache
def _listen() -> None:
    jax.monitoring.register_event_listener(_count_cache_hit)


def _store(key: str, entry: _Entry) -> None:
    from jax.experimental import serialize_executable

    if not entry.storable:
        _state["stats"]["off"] += 1
        return
    try:
        payload = _dumps((serialize_executable.serialize(entry.compiled), entry.out_def, entry.static_out))
        _, out_def, static_out = pickle.loads(payload)
        if out_def != entry.out_def or not _same(static_out, entry.static_out):
            raise ValueError("the output's structure does not survive pickling")
    except Exception:  # host callbacks, hoisted constants, an output structure that does not pickle
        _state["stats"]["off"] += 1
        return
    path = _state["dir"] / f"{key}.pkl"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        tmp.write_bytes(payload)
        os.replace(tmp, path)
        _evict(_state["dir"], MAX_BYTES)
    except OSError:  # a read-only or full cache: the run goes on without it
        tmp.unlink(missing_ok=True)


def _same(a, b) -> bool:
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    return ta == tb and all(type(x) is type(y) and x == y for x, y in zip(la, lb, strict=True))


def _dumps(obj) -> bytes:
    """Pickle ``obj``, with equinox's ``MISSING`` marker (in the tree structure of a module)
    coming back as that same marker (plain pickling makes a new object, which equinox rejects)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer)
    pickler.dispatch_table = {**copyreg.dispatch_table, **_reducers()}
    pickler.dump(obj)
    return buffer.getvalue()


@functools.cache
def _reducers() -> dict:
    try:
        from equinox._module._flatten import MISSING
    except ImportError:  # equinox moved it: such outputs are not stored (`_store` checks)
        return {}
    return {type(MISSING): lambda obj: (equinox_missing, ())}


def equinox_missing():
    """equinox's ``MISSING`` marker (what a stored program's output structure unpickles to)."""
    from equinox._module._flatten import MISSING

    return MISSING


def _evict(folder: pathlib.Path, max_bytes: int) -> None:
    """Delete the least recently used programs (by modification time: a load touches its file)
    until the store is within ``max_bytes``."""
    files = []
    for path in folder.glob("*.pkl"):
        with contextlib.suppress(OSError):
            st = path.stat()
            files.append((st.st_mtime_ns, st.st_size, path))
    total = sum(size for _, size, _ in files)
    for _, size, path in sorted(files, key=lambda f: f[0]):
        if total <= max_bytes:
            break
        with contextlib.suppress(OSError):
            path.unlink()
            total -= size


def _load(key: str):
    from jax.experimental import serialize_executable

    path = _state["dir"] / f"{key}.pkl"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # used now: evicted last
    try:
        (payload, in_tree, out_tree), out_def, static_out = pickle.loads(data)
        _runtime_ready()
        compiled = serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
    except Exception:  # a truncated or foreign file: rebuilt and overwritten
        return None
    return _Entry(compiled, out_def, static_out, storable=False)


@functools.cache
def _runtime_ready() -> None:
    """Set up what a loaded program calls into but only lowering sets up: on the CPU, JAX points
    its LAPACK kernels at SciPy's LAPACK when it first lowers a LAPACK call, and a loaded program
    that calls one before then crashes the process (a segmentation fault)."""
    try:
        from jax._src.lib import lapack

        lapack._lapack.initialize()
    except (ImportError, AttributeError):  # JAX moved it: lower a LAPACK call, which does the same
        jax.jit(jax.numpy.linalg.cholesky).lower(np.eye(1)).compile()


# -- the key ---------------------------------------------------------------------------------------

class _Opaque(Exception):
    """Something in the operand that cannot be fingerprinted by value."""


def _key(fn, args, leaves) -> str | None:
    h = hashlib.sha256()
    h.update(_environment().encode())
    h.update(_state["scope"].encode())
    try:
        _fingerprint(fn, h, 0, set())
        dynamic_ids = {id(x) for x in leaves}
        _fingerprint(args, h, 0, set(), dynamic_ids)
    except (_Opaque, RecursionError):
        return None
    return h.hexdigest()[:40]


def _environment() -> str:
    """What every program depends on besides its own inputs (computed once per process; the
    configuration and backend each time, as they can change)."""
    if _state["environment"] is None:
        versions = [sys.version]
        for name in _VERSIONED:
            try:
                versions.append(f"{name}={importlib.metadata.version(name)}")
            except importlib.metadata.PackageNotFoundError:
                versions.append(f"{name}=-")
        source = hashlib.sha256()
        root = pathlib.Path(__file__).parent
        for path in sorted(root.rglob("*.py")):
            source.update(str(path.relative_to(root)).encode())
            source.update(path.read_bytes())
        env = sorted((k, v) for k, v in os.environ.items() if k.startswith(("JAX_", "XLA_")))
        _state["environment"] = repr((versions, source.hexdigest(), env))
    device = jax.devices()[0]
    config = [(name, getattr(jax.config, name, None)) for name in _CONFIG]
    return repr((_state["environment"], config, _settings(), device.platform, device.device_kind,
                 jax.device_count()))


def _settings() -> list:
    """jinverse's module-level settings (``LAPACK_LIMIT_BYTES``, ``CG_RTOL``, ...: read when a
    program is traced) that changed since this process first saw them, as tests change them. The
    values in the source are covered by its hash; listing only changes keeps the key independent
    of which modules happen to be imported when it is computed."""
    first, out = _state["first_seen"], []
    for name in [n for n in list(sys.modules) if n.startswith("jinverse.") or n == "jinverse"]:
        module = sys.modules.get(name)
        for attr, value in vars(module).items() if module is not None else ():
            if attr.isupper() and isinstance(value, (bool, int, float, str)):
                if repr(first.setdefault((name, attr), value)) != repr(value):
                    out.append((name, attr, value))
    return sorted(out)


def _fingerprint(obj, h, depth: int, seen: set, dynamic: frozenset | set = frozenset()) -> None:
    """Feed ``obj`` to the hash ``h``: everything about it a traced program can depend on.

    Arrays whose ``id`` is in ``dynamic`` are program arguments (shape, dtype, weak type only);
    every other array is hashed by content. Raises `_Opaque` for what cannot be fingerprinted.
    """
    if depth > _MAX_DEPTH:
        raise _Opaque("too deep")
    rec = functools.partial(_fingerprint, h=h, depth=depth + 1, seen=seen, dynamic=dynamic)
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, type(Ellipsis))):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
        return
    if isinstance(obj, (jax.Array, np.ndarray, np.generic)):
        weak = getattr(obj, "weak_type", False)
        h.update(f"array:{obj.dtype}:{obj.shape}:{weak};".encode())
        if id(obj) not in dynamic:
            if isinstance(obj, jax.core.Tracer):
                raise _Opaque("a traced value")
            h.update(np.ascontiguousarray(np.asarray(obj)).tobytes())
        return
    if isinstance(obj, (type, types.ModuleType)):
        h.update(f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj.__name__)};".encode())
        return
    if id(obj) in seen:
        h.update(b"cycle;")
        return
    seen.add(id(obj))
    try:
        _fingerprint_object(obj, h, rec)
    finally:
        seen.discard(id(obj))


def _fingerprint_object(obj, h, rec) -> None:
    name = f"{type(obj).__module__}.{type(obj).__qualname__};"
    h.update(name.encode())
    if isinstance(obj, (tuple, list)):
        for x in obj:
            rec(x)
        if hasattr(obj, "_fields"):  # a NamedTuple
            rec(obj._fields)
    elif isinstance(obj, dict):
        for k in sorted(obj, key=repr):
            rec(k)
            rec(obj[k])
    elif isinstance(obj, (set, frozenset)):
        for x in sorted(obj, key=repr):
            rec(x)
    elif isinstance(obj, types.FunctionType):
        _fingerprint_function(obj, h, rec)
    elif isinstance(obj, types.MethodType):
        rec(obj.__func__)
        rec(obj.__self__)
    elif isinstance(obj, functools.partial):
        rec(obj.func)
        rec(obj.args)
        rec(obj.keywords)
    elif isinstance(obj, types.BuiltinFunctionType):
        h.update(f"{obj.__module__}.{obj.__qualname__};".encode())
    elif dataclasses.is_dataclass(obj):  # equinox modules among them, static fields included
        for field in dataclasses.fields(obj):
            h.update(field.name.encode())
            rec(getattr(obj, field.name, None))
    elif hasattr(obj, "__wrapped__"):  # jax.jit, custom_jvp/vjp and functools.wraps wrappers
        rec(obj.__wrapped__)
    elif hasattr(obj, "__dict__") and not hasattr(type(obj), "__slots__"):
        rec(vars(obj))
    elif _root(type(obj).__module__) in _TRUSTED and " at 0x" not in repr(obj):
        h.update(repr(obj).encode())
    else:
        raise _Opaque(type(obj).__qualname__)


def _fingerprint_function(fn, h, rec) -> None:
    h.update(f"{fn.__module__}.{fn.__qualname__};".encode())
    _fingerprint_code(fn.__code__, h)
    rec(fn.__defaults__)
    rec(fn.__kwdefaults__)
    rec(tuple(c.cell_contents if _filled(c) else "<empty>" for c in fn.__closure__ or ()))
    if _root(fn.__module__ or "") not in _TRUSTED:  # user code: the module-level values it reads too
        names = sorted(_global_names(fn.__code__))
        rec({n: fn.__globals__[n] for n in names if n in fn.__globals__
             and not isinstance(fn.__globals__[n], types.ModuleType)})


def _fingerprint_code(code: types.CodeType, h) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _fingerprint_code(c, h)
        else:
            h.update(repr(c).encode())


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _global_names(c)
    return names


def _filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def _root(module: str) -> str:
    return module.split(".", 1)[0]
