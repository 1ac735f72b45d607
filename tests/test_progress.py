"""progress=True: long work is never silent. ji.sample reports its phases and, on one block of
observations, its draws chunk by chunk (the same draws, bit for bit); off a terminal as log lines
at most every LOG_EVERY seconds, on one as a bar; a progress callback is called as before."""

import io
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner

import jinverse as ji
from jinverse import _batching

pytestmark = pytest.mark.filterwarnings("ignore::jinverse.posterior.SamplingWarning")

rng = np.random.default_rng(0)
A = jnp.asarray(rng.normal(size=(8, 3)))
PROBLEM = ji.InverseProblem(A, ji.priors.Gaussian(jnp.zeros(3), 1.0), ji.likelihoods.Gaussian(1.0))
Y = jnp.asarray(rng.normal(size=(3, 8)))
# metric "laplace" (auto for a Gaussian likelihood and prior): a mode search, then warmup and draws
ARGS = dict(key=jax.random.key(1), method="rwmh", num_warmup=100, num_samples=50)


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_draws_in_chunks_equal_draws_at_once_and_lines_name_phase_and_counts(capsys, monkeypatch):
    quiet = ji.sample(PROBLEM, Y[0], **ARGS)
    assert capsys.readouterr().err == ""  # off by default
    monkeypatch.setattr(_batching, "LOG_EVERY", 0.0)  # a line after every chunk
    shown = ji.sample(PROBLEM, Y[0], progress=True, **ARGS)
    # the chunked draws (warmup, then 10 calls of 5 draws) are the one-program draws, bit for bit
    assert np.array_equal(quiet.samples, shown.samples)
    for a, b in zip(jax.tree.leaves(quiet.stats), jax.tree.leaves(shown.stats), strict=True):
        np.testing.assert_array_equal(a, b)  # NaN where a sampler has no such statistic (energy)
    assert np.array_equal(quiet.status, shown.status) and np.array_equal(quiet.max_rhat, shown.max_rhat)
    err = capsys.readouterr().err
    phases = [line.split(",")[0] for line in err.splitlines() if not line.startswith(("MAP", "sampling: draws"))]
    assert phases[0] == "sampling: mode search for the Laplace metric (1 observation)"
    assert phases[1].startswith("sampling: warmup") and phases[2] == "sampling: warmup done"
    assert phases[3] == "sampling: diagnostics (R-hat" and len(phases) == 4
    draws = re.findall(r"^sampling: draws (\d+)/50 \((\d+)%\), \d+ s", err, flags=re.M)
    assert [int(d) for d, _ in draws] == list(range(0, 55, 5))
    assert draws[4] == ("20", "40")
    assert re.search(r"^MAP 1/1 \(100%\)", err, flags=re.M)  # the mode search's own progress

    # at most one line per LOG_EVERY seconds: a fast run shows only its start and its end
    monkeypatch.setattr(_batching, "LOG_EVERY", 1e9)
    ji.sample(PROBLEM, Y[0], progress=True, **ARGS)
    draws = re.findall(r"^sampling: draws (\d+)/50", capsys.readouterr().err, flags=re.M)
    assert draws == ["0", "50"]


def test_several_blocks_are_counted_and_a_callback_is_called_as_before(capsys, monkeypatch):
    monkeypatch.setattr(_batching, "LOG_EVERY", 0.0)
    args = ARGS  # blocks of one observation: the first test's compiled program
    ji.sample(PROBLEM, Y, block_size=1, progress=True, **args)
    err = capsys.readouterr().err
    assert "sampling: 3 observations in blocks of 1" in err
    assert re.findall(r"^posteriors (\d)/3", err, flags=re.M) == ["0", "1", "2", "3"]
    # a callback: after each block only (no start, no chunks of draws), nothing printed
    seen = []
    ji.sample(PROBLEM, Y, block_size=1, progress=lambda d, t: seen.append((d, t)), **args)
    assert seen == [(1, 3), (2, 3), (3, 3)]
    seen.clear()
    ji.sample(PROBLEM, Y[0], progress=lambda d, t: seen.append((d, t)), **args)
    assert seen == [(1, 1)]
    assert capsys.readouterr().err == ""


def test_one_block_of_map_and_laplace_is_shown(capsys, monkeypatch):
    ji.solve_map(PROBLEM, Y[0], progress=True)
    ji.laplace(PROBLEM, Y[0], progress=True)
    err = capsys.readouterr().err
    assert re.findall(r"^(MAP|Laplace) (\d)/1", err, flags=re.M) == [("MAP", "0"), ("MAP", "1")] * 2 + [
        ("Laplace", "0"), ("Laplace", "1")]
    # on a terminal: one bar, redrawn in place, ended by a newline
    tty = FakeTTY()
    monkeypatch.setattr("sys.stderr", tty)
    ji.solve_map(PROBLEM, Y, progress=True)
    out = tty.getvalue()
    assert out.startswith("\r  MAP [") and "] 3/3 " in out and out.endswith("\n") and out.count("\n") == 1


def test_cli_prints_progress_unless_quiet():
    from jinverse.cli import main

    runner = CliRunner(env={"JINVERSE_NO_CACHE": "1"})
    args = ["sample", "shaw", "-o", "n=6", "-m", "rwmh", "--chains", "2", "--warmup", "50", "--samples", "40",
            "--no-score"]
    res = runner.invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "sampling: warmup" in res.output and re.search(r"^sampling: draws 40/40 \(100%\)", res.output, re.M)
    assert re.search(r"^running rwmh on 1 observation \(compiling first\) \.\.\.$", res.output, re.M)
    assert re.search(r"^running rwmh on 1 observation \(compiling first\): done \(", res.output, re.M)
    # (a cheap solver for --quiet, which only leaves progress off)
    args = ["solve", "shaw", "-o", "n=6", "-m", "tikhonov-gcv", "--no-score"]
    assert re.search(r"^Tikhonov 1/1 \(100%\)", runner.invoke(main, args, catch_exceptions=False).output, re.M)
    res = runner.invoke(main, ["--quiet", *args], catch_exceptions=False)
    assert res.exit_code == 0 and "Tikhonov" not in res.output and "running" not in res.output


def test_cli_chunks_and_failed_phases_print_whole_lines_in_a_log():
    """Not on a terminal (a log): the chunks of a batch are counted in lines, and a phase that
    fails ends its line before the error."""
    from jinverse.cli import main

    runner = CliRunner(env={"JINVERSE_NO_CACHE": "1"})
    args = ["solve", "shaw", "-o", "n=6", "-m", "tikhonov-gcv", "--no-score", "--batch", "6", "--chunk", "2"]
    res = runner.invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert re.search(r"^tikhonov-gcv: chunks of 2 0/6 \(0%\)", res.output, re.M)
    assert re.search(r"^tikhonov-gcv: chunks of 2 6/6 \(100%\)", res.output, re.M)
    bad = runner.invoke(main, ["solve", "shawx"])
    assert bad.exit_code == 2 and re.search(r"^loading shawx \.\.\. failed$", bad.output, re.M), bad.output
