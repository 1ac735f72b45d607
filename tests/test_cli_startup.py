"""Start-up of the command line: ``--help`` needs only click (issue 15 item 5)."""

import os
import subprocess
import sys
import textwrap

import pytest

# Imports jinverse.cli in a fresh process with the `jinverse` package's own __init__ left out (it
# re-exports the library, so it imports JAX): what is checked is that the CLI's modules and
# `--help` import nothing heavy themselves.
HELP = textwrap.dedent("""
    import importlib.util, sys, types
    spec = importlib.util.find_spec("jinverse")
    pkg = types.ModuleType("jinverse")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["jinverse"] = pkg
    from jinverse.cli import main
    try:
        main(sys.argv[1:])
    except SystemExit as exc:
        assert exc.code == 0, exc.code
    heavy = ("jax", "jaxlib", "numpy", "equinox", "matplotlib", "arviz", "jinverse.bench", "jinverse.problems")
    print("HEAVY", [m for m in heavy if m in sys.modules], file=sys.stderr)
""")


@pytest.mark.parametrize("args", [["--help"], ["solve", "--help"], ["sample", "--help"], ["bench", "--help"],
                                  ["problems", "--help"], ["demo", "--help"]])
def test_help_imports_no_jax(args):
    out = subprocess.run([sys.executable, "-c", HELP, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Usage: " in out.stdout
    assert "HEAVY []" in out.stderr, out.stderr


def test_help_names_match_bench():
    from jinverse import bench as B
    from jinverse.cli import _names

    assert _names.POINT_METHODS == B.POINT_METHODS
    assert _names.SAMPLE_METHODS == B.SAMPLE_METHODS
    assert _names.SUITE_NAMES == tuple(B.SUITES)


def test_cli_uses_persistent_compilation_cache(tmp_path):
    """A repeated command reuses the compiled programs of the first (in a new process)."""
    cli = [sys.executable, "-c", "from jinverse.cli import main; main()", "-q"]
    args = ["solve", "shaw", "-o", "n=16", "-m", "map", "--batch", "2"]
    env = {**os.environ, "JINVERSE_CACHE": str(tmp_path)}
    env.pop("JINVERSE_NO_CACHE", None)
    run = lambda *extra: subprocess.run([*cli, *extra, *args], capture_output=True, text=True,
                                        timeout=300, env=env)
    first = run()
    assert first.returncode == 0, first.stderr
    entries = sorted(os.listdir(tmp_path / "xla"))
    assert entries, "the first command wrote nothing to the cache"
    second = run()
    assert second.returncode == 0, second.stderr
    assert sorted(os.listdir(tmp_path / "xla")) == entries  # reused, nothing added
    env["JINVERSE_CACHE"] = str(tmp_path / "off")
    assert run("--no-cache").returncode == 0
    assert not (tmp_path / "off").exists()
