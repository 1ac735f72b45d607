"""The package's import graph (issue 17): no cycles, no private names taken from another module,
no upward imports (the core and the drivers never import the applications: CLI, bench, plots,
demo). Read from the source with `ast` (function-local imports included: they are how a cycle
hides). Known violations are listed below and may only shrink: the test fails on a new one, and
also on a listed one that no longer exists, so that the list is kept honest."""

import ast
import pathlib

import jinverse

ROOT = pathlib.Path(jinverse.__file__).parent
APPLICATIONS = ("jinverse.cli", "jinverse.bench", "jinverse.bench_table", "jinverse.plots", "jinverse.demo")

KNOWN_CYCLES: set = set()
KNOWN_PRIVATE: set[tuple[str, str]] = set()


def _modules():
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = ("jinverse",) + path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _imports(mods):
    """``(module, target module, imported name or None)`` for every relative import."""
    out = []
    for mod, path in mods.items():
        base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                pkg = base[:len(base) - (node.level - 1)]
                target = ".".join(pkg + ([node.module] if node.module else []))
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    out.append((mod, full, None) if full in mods else (mod, target, alias.name))
            elif isinstance(node, ast.Import):
                out += [(mod, a.name, None) for a in node.names if a.name.startswith("jinverse")]
    return out


def _cycles(mods, edges):
    """Strongly connected components of more than one module (Tarjan)."""
    graph = {m: sorted({t for s, t, _ in edges if s == m and t in mods and t != m}) for m in mods}
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(frozenset(comp))

    for v in mods:
        if v not in index:
            visit(v)
    return set(comps)


def test_no_new_import_cycles():
    mods = _modules()
    cycles = _cycles(mods, _imports(mods))
    assert cycles - KNOWN_CYCLES == set(), "new import cycle(s)"
    assert KNOWN_CYCLES - cycles == set(), "a known cycle is gone: remove it from KNOWN_CYCLES"


def test_no_private_names_across_modules():
    mods = _modules()
    private = {(m, f"{t}.{name}") for m, t, name in _imports(mods)
               if name is not None and name.startswith("_") and t != m}
    assert private - KNOWN_PRIVATE == set(), "private name(s) imported from another module"
    assert KNOWN_PRIVATE - private == set(), "a known private import is gone: remove it from KNOWN_PRIVATE"


def test_core_and_drivers_never_import_the_applications():
    mods = _modules()
    upward = {(m, t) for m, t, _ in _imports(mods)
              if t.startswith(APPLICATIONS) and not m.startswith(APPLICATIONS) and m != "jinverse"}
    assert upward == set()


def test_the_checker_sees_a_cycle_and_a_private_import(tmp_path):
    """The graph code itself: a two-module cycle and a private name are found."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from .b import _helper\n")
    b.write_text("def f():\n    from . import a\n")
    mods = {"pkg.a": a, "pkg.b": b}
    edges = _imports(mods)
    assert _cycles(mods, edges) == {frozenset({"pkg.a", "pkg.b"})}
    assert ("pkg.a", "pkg.b", "_helper") in edges
