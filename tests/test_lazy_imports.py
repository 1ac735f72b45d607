"""``import jinverse`` imports each public name on first use (issue 15, start-up): a MAP solve pays
for neither blackjax nor jax.experimental.sparse, and every public name still resolves, as an
attribute and through ``from jinverse import``."""

import subprocess
import sys
import textwrap

import jinverse as ji

HEAVY = ("blackjax", "jax.experimental.sparse", "scipy.sparse", "matplotlib", "arviz")


def _loaded_after(code: str) -> set[str]:
    """The HEAVY modules loaded in a fresh interpreter after running ``code``."""
    probe = code + f"\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_and_map_solve_leave_heavy_modules_out():
    assert _loaded_after("import jinverse") == set()
    solve = textwrap.dedent("""
        import jinverse as ji
        b = ji.problems.load("deconvolution1d", n=32)
        ji.solve_map(b.problem, b.y, max_steps=5, warn=False)
    """)
    assert _loaded_after(solve) == set()


def test_sampling_and_sparse_problems_load_what_they_need():
    assert "blackjax" in _loaded_after("import jinverse as ji\nji.sample")
    sparse = 'import jinverse as ji\nb = ji.problems.load("tomography", n=8, n_angles=4, assemble="sparse")\n'
    sparse += "assert b.problem.forward.sparse"
    assert "jax.experimental.sparse" in _loaded_after(sparse)


def test_every_public_name_resolves():
    for name in ji.__all__:
        value = getattr(ji, name)
        assert value is not None, name
        assert name in dir(ji)
    ns: dict = {}
    exec("from jinverse import sample, Posterior, problems, laplace, MAPStatus", ns)
    assert ns["sample"] is ji.sample and ns["problems"] is ji.problems
    assert callable(ns["laplace"]) and ns["laplace"].__module__ == "jinverse.laplace"


def test_unknown_name_is_an_attribute_error():
    try:
        ji.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
