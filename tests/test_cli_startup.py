"""Start-up of the command line (issue 15 item 5): ``jinverse --help``, ``--version`` and usage
errors are answered by `jinverse_cli` with click alone (no JAX, no `jinverse`), and a repeated
command reuses the compiled programs and the trained networks of the first."""

import inspect
import os
import re
import subprocess
import sys
import textwrap

import pytest

# Runs the entry point as the `jinverse` script does, then reports the CPU seconds spent importing
# and running it (interpreter start-up excluded, and CPU rather than wall time, so that the figure
# depends neither on this machine's Python start nor on what else it runs) and which heavy modules
# got imported. (benchmarks/startup.py gives the wall time of the whole command.)
RUNNER = textwrap.dedent("""
    import sys, time
    t0 = time.process_time()
    import jinverse_cli
    try:
        jinverse_cli.main(sys.argv[1:], prog_name="jinverse")
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    seconds = time.process_time() - t0
    heavy = ("jax", "jaxlib", "numpy", "equinox", "blackjax", "scipy", "matplotlib", "arviz", "jinverse")
    print("REPORT", code, seconds, [m for m in heavy if m in sys.modules], file=sys.stderr)
""")


def _light(*args):
    out = subprocess.run([sys.executable, "-c", RUNNER, *args], capture_output=True, text=True, timeout=60)
    m = re.search(r"^REPORT (\S+) (\S+) (\[.*\])$", out.stderr, re.M)
    assert m, out.stderr
    return out, int(m[1]), float(m[2]), eval(m[3])


@pytest.mark.parametrize("args", [["--help"], ["solve", "--help"], ["sample", "--help"], ["bench", "--help"],
                                  ["problems", "--help"], ["demo", "--help"]])
def test_help_imports_no_jax_and_takes_under_half_a_second(args):
    out, code, seconds, heavy = _light(*args)
    assert code == 0, out.stderr
    assert out.stdout.startswith("Usage: jinverse")
    assert heavy == []
    assert seconds < 0.5, f"{args}: {seconds:.3f} CPU s to import the entry point and print the help"


def test_version_and_usage_errors_answered_without_jax():
    out, code, _, heavy = _light("--version")
    assert (code, heavy) == (0, [])
    assert out.stdout.strip() == "jinverse, version 0.1.0"
    for args in (["solve", "shaw", "--method", "nope"], ["sample", "--chains", "0"], ["nope"],
                 ["bench", "--suite", "huge"]):
        out, code, _, heavy = _light(*args)
        assert (code, heavy) == (2, []), (args, out.stderr)
        assert "Error:" in out.stderr


def test_one_parser_and_every_command_has_its_function():
    """jinverse.cli's ``main`` is the light module's group, and each of its commands is run by the
    function of the same name in jinverse.cli, whose parameters are the command's (``server``,
    which runs no JAX, is `jinverse_cli.server`'s)."""
    import jinverse.cli
    import jinverse_cli

    assert jinverse.cli.main is jinverse_cli.main
    for name, cmd in jinverse_cli.main.commands.items():
        if name == "server":
            continue
        params = {p.name for p in cmd.params if p.expose_value}
        assert set(inspect.signature(getattr(jinverse.cli, name)).parameters) == params, name


def test_help_names_match_bench():
    from jinverse import bench as B
    from jinverse_cli import names

    assert names.POINT_METHODS == B.POINT_METHODS
    assert names.SAMPLE_METHODS == B.SAMPLE_METHODS
    assert names.SUITE_NAMES == tuple(B.SUITES)


def test_python_dash_m_jinverse():
    out = subprocess.run([sys.executable, "-m", "jinverse", "--version"], capture_output=True, text=True,
                         timeout=120)
    assert (out.returncode, out.stdout.strip()) == (0, "jinverse, version 0.1.0"), out.stderr


def test_repeated_command_reuses_compiled_programs_and_trained_network(tmp_path):
    """A repeated command, in a new process, loads the compiled programs and the trained network
    of the first from $JINVERSE_CACHE: nothing is compiled into the cache, stored as a program
    (`jinverse.programs`) or trained again."""
    cli = [sys.executable, "-m", "jinverse_cli", "-q"]
    args = ["solve", "trained_regressor", "-o", "width=8", "-o", "steps=200", "-o", "num_reference=100"]
    env = {**os.environ, "JINVERSE_CACHE": str(tmp_path)}
    env.pop("JINVERSE_NO_CACHE", None)
    run = lambda *a: subprocess.run([*cli, *a], capture_output=True, text=True, timeout=300, env=env)

    def stored():  # a stored program's time is touched when it is loaded: compare its bytes
        return {p.relative_to(tmp_path): p.read_bytes() if p.parent.name == "programs" else p.stat().st_mtime_ns
                for p in tmp_path.rglob("*") if p.is_file()}

    first = run(*args)
    assert first.returncode == 0, first.stderr
    files = stored()
    assert any(p.parts[0] == "xla" for p in files), "the first command compiled nothing into the cache"
    assert any(p.parts[0] == "programs" for p in files), "the first command stored no program"
    assert [p.suffix for p in files if p.parts[0] == "trained"].count(".eqx") == 1
    second = run(*args)
    assert second.returncode == 0, second.stderr
    assert stored() == files  # every file read back, none added or rewritten (no retraining)
    score = lambda out: [line for line in out.stdout.splitlines() if line.lstrip().startswith("score")]
    assert score(second) == score(first) != []
    env["JINVERSE_CACHE"] = str(tmp_path / "off")
    assert run("--no-cache", "problems", "--names-only").returncode == 0  # a command that compiles nothing
    assert not (tmp_path / "off" / "xla").exists()  # the cache was not set up
