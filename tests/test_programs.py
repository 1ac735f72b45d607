"""`jinverse.programs`: lane programs kept on disk and loaded by a later process without tracing."""

import json
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jinverse import programs

ROUND_TRIP = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import jinverse as ji
    from jinverse import programs

    bench = ji.problems.load("deconvolution1d", n=32, seed=3)
    if sys.argv[2] == "on":
        programs.enable(sys.argv[1])
    if len(sys.argv) > 3:  # JAX's persistent compilation cache too
        ji.enable_compilation_cache(sys.argv[3], min_compile_time_secs=0.0)
    with programs.scope("test", "deconvolution1d", 32, 3):
        result = ji.solve_map(bench.problem, bench.y)  # Gauss-Newton: LAPACK calls in the program
    print(json.dumps({"stats": programs.stats(), "theta": np.asarray(result.theta).tolist(),
                      "status": int(result.status)}))
""")


def _run(folder, on, *xla):
    out = subprocess.run([sys.executable, "-c", ROUND_TRIP, str(folder), on, *map(str, xla)], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr[-3000:]  # a segfault here: LAPACK not set up before loading
    return json.loads(out.stdout.splitlines()[-1])


def test_a_new_process_loads_the_stored_program_and_gets_the_same_bits(tmp_path):
    first = _run(tmp_path, "on")
    assert first["stats"] == {"hit": 0, "miss": 1, "off": 0}
    stored = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert len(stored) == 1 and next(iter(stored)).endswith(".pkl")
    second = _run(tmp_path, "on")
    assert second["stats"] == {"hit": 1, "miss": 0, "off": 0}  # loaded: nothing traced or compiled
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == stored
    plain = _run(tmp_path / "unused", "off")
    assert plain["stats"] == {"hit": 0, "miss": 0, "off": 0}
    assert first["theta"] == second["theta"]  # the same executable: bit for bit
    # without the store the same computation is compiled through another wrapper (eqx.filter_jit):
    # equal to well within the solver's tolerance (1e-9), not necessarily to the bit on every machine
    np.testing.assert_allclose(plain["theta"], first["theta"], rtol=1e-10, atol=1e-12)
    assert first["status"] == second["status"] == plain["status"] == 0


def test_a_program_from_jaxs_persistent_cache_is_used_but_not_stored(tmp_path):
    """XLA:CPU serialises an executable loaded from JAX's persistent cache without some of its
    kernels; a later process running it fails ("NOT_FOUND: Function ... fusion not found")."""
    store, xla = tmp_path / "programs", tmp_path / "xla"
    first = _run(store, "on", xla)  # compiled: stored, and written to JAX's cache
    assert first["stats"] == {"hit": 0, "miss": 1, "off": 0} and len(list(store.iterdir())) == 1
    for path in store.iterdir():
        path.unlink()  # as for a new scope (another seed) with the same program
    second = _run(store, "on", xla)  # JAX's cache hit: run, not stored
    assert second["stats"] == {"hit": 0, "miss": 1, "off": 1} and not list(store.iterdir())
    assert second["theta"] == first["theta"]


# -- the key -------------------------------------------------------------------------------------------

class Op(eqx.Module):
    matrix: jax.Array
    forward: object
    label: str = eqx.field(static=True)


def lane(op, block):
    return jax.vmap(lambda y: op.forward(op.matrix @ y))(block)


def _closure(scale):
    const = jnp.full(3, scale)
    return lambda x: jnp.tanh(x) * const  # ``const`` is compiled into the program


@pytest.fixture
def store(tmp_path):
    programs.enable(tmp_path)
    yield tmp_path
    programs.disable()


def _key(op, block, scope=("s",)):
    args = (op, block)
    leaves = jax.tree.leaves(eqx.filter(args, eqx.is_array))
    with programs.scope(*scope):
        return programs._key(lane, args, leaves)


def test_key_is_the_same_for_an_identical_rebuild_and_changes_with_what_the_program_depends_on(store):
    block = jnp.ones((4, 3))
    base = _key(Op(jnp.eye(3), _closure(2.0), "a"), block)
    assert base is not None
    assert _key(Op(jnp.eye(3), _closure(2.0), "a"), block) == base  # rebuilt from scratch: same key
    assert _key(Op(2 * jnp.eye(3), _closure(2.0), "a"), block) == base  # an argument's values: same program
    changed = {
        "closed-over value": _key(Op(jnp.eye(3), _closure(3.0), "a"), block),
        "static field": _key(Op(jnp.eye(3), _closure(2.0), "b"), block),
        "argument shape": _key(Op(jnp.eye(3), _closure(2.0), "a"), jnp.ones((5, 3))),
        "argument dtype": _key(Op(jnp.eye(3), _closure(2.0), "a"), jnp.ones((4, 3), jnp.float32)),
        "another function": _key(Op(jnp.eye(3), jnp.sin, "a"), block),
        "scope": _key(Op(jnp.eye(3), _closure(2.0), "a"), block, scope=("t",)),
    }
    assert len(set(changed.values()) | {base}) == len(changed) + 1, changed


GLOBAL_SCALE = np.array([1.0, 2.0, 3.0])


def _reads_a_global(x):
    return x * GLOBAL_SCALE


def test_key_follows_the_globals_a_user_function_reads(store, monkeypatch):
    block = jnp.ones((4, 3))
    base = _key(Op(jnp.eye(3), _reads_a_global, "a"), block)
    monkeypatch.setattr(sys.modules[__name__], "GLOBAL_SCALE", np.array([1.0, 2.0, 4.0]))
    assert _key(Op(jnp.eye(3), _reads_a_global, "a"), block) not in (None, base)


class Opaque:
    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, x):
        return self.fn(x)


def test_what_cannot_be_fingerprinted_runs_without_the_store(store):
    op, block = Op(jnp.eye(3), Opaque(jnp.sin), "a"), jnp.ones((4, 3))
    assert _key(op, block) is None
    with programs.scope("s"):
        out = programs.wrap(lane, eqx.filter_jit(lane))(op, block)
    np.testing.assert_array_equal(out, lane(op, block))
    assert programs.stats()["off"] >= 1 and not list(store.iterdir())


def test_a_damaged_file_is_rebuilt(store):
    op, block = Op(jnp.eye(3), _closure(2.0), "a"), jnp.ones((4, 3))
    run = programs.wrap(lane, eqx.filter_jit(lane))
    with programs.scope("s"):
        want = run(op, block)
        (path,) = store.iterdir()
        path.write_bytes(b"not a program")
        programs._state["memo"].clear()
        np.testing.assert_array_equal(run(op, block), want)
    assert path.read_bytes() != b"not a program"


def test_off_outside_a_scope_or_when_not_enabled(tmp_path):
    op, block = Op(jnp.eye(3), _closure(2.0), "a"), jnp.ones((4, 3))
    run = eqx.filter_jit(lane)
    assert programs.wrap(lane, run) is run  # not enabled
    programs.enable(tmp_path)
    try:
        before = programs.stats()
        np.testing.assert_array_equal(programs.wrap(lane, run)(op, block), run(op, block))  # no scope
        assert programs.stats() == before and not list(tmp_path.iterdir())
        with programs.scope("s"):
            programs.wrap(lane, run)(op, block)
        assert programs.stats()["miss"] == before["miss"] + 1 and len(list(tmp_path.iterdir())) == 1
    finally:
        programs.disable()
    assert programs.wrap(lane, run) is run


def test_the_store_keeps_its_most_recently_used_programs_within_its_size(store):
    for i, name in enumerate(["old", "used", "new"]):
        path = store / f"{name}.pkl"
        path.write_bytes(b"x" * 100)
        os.utime(path, ns=(i * 10**9, i * 10**9))
    os.utime(store / "used.pkl", ns=(5 * 10**9, 5 * 10**9))  # loaded since: the newest
    programs._evict(store, 250)
    assert sorted(p.name for p in store.iterdir()) == ["new.pkl", "used.pkl"]


def test_key_follows_jinverse_settings_changed_at_run_time(store, monkeypatch):
    import types

    import jinverse.dense

    block = jnp.ones((4, 3))
    base = _key(Op(jnp.eye(3), _closure(2.0), "a"), block)
    # a module imported later (another code path, another cache state) leaves the key alone
    later = types.ModuleType("jinverse._imported_later")
    later.SOME_SETTING = 3
    monkeypatch.setitem(sys.modules, later.__name__, later)
    assert _key(Op(jnp.eye(3), _closure(2.0), "a"), block) == base
    monkeypatch.setattr(jinverse.dense, "LAPACK_LIMIT_BYTES", 1024)  # read when programs are traced
    assert _key(Op(jnp.eye(3), _closure(2.0), "a"), block) not in (None, base)


class Out(eqx.Module):
    value: jax.Array
    count: jax.Array


def lane_module(op, block):
    return Out(lane(op, block), jnp.zeros(block.shape[0], int))


def test_an_output_with_equinox_modules_is_stored_and_loaded(store):
    op, block = Op(jnp.eye(3), _closure(2.0), "a"), jnp.ones((4, 3))
    run = programs.wrap(lane_module, eqx.filter_jit(lane_module))
    with programs.scope("s"):
        want = run(op, block)
        assert len(list(store.iterdir())) == 1  # stored: its structure survives pickling
        programs.forget()
        got = run(op, block)  # loaded from the file (a module's MISSING marker unpickled as itself)
    assert programs.stats()["hit"] >= 1
    assert isinstance(got, Out)
    np.testing.assert_array_equal(got.value, want.value)
