"""The `jinverse` command line, through click's CliRunner (tiny problems)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner

import jinverse as ji
from jinverse.cli import main

N = 32  # shaw size used throughout (as in the quick bench suite), so compiled programs are shared


@pytest.fixture(scope="module")
def runner():
    # In-process runs leave JAX's persistent cache off (it is process-wide; a test must not write
    # to ~/.cache): tests/test_cli_startup.py checks the cache in fresh processes.
    return CliRunner(env={"JINVERSE_NO_CACHE": "1"})


@pytest.fixture(autouse=True)
def _keep_float64():
    yield
    jax.config.update("jax_enable_x64", True)  # a --precision 32 run must not leak into other tests


def invoke(runner, args, code=0):
    res = runner.invoke(main, args, catch_exceptions=False)
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    return res


def closed_form_mean(bench, y):
    """Posterior mean of the linear-Gaussian shaw problem, N(0, tau² I) prior, noise std sigma."""
    A = np.asarray(bench.info["A"])
    sigma, tau = float(bench.info["noise_std"]), float(np.asarray(bench.problem.prior.std).ravel()[0])
    H = A.T @ A / sigma**2 + np.eye(A.shape[1]) / tau**2
    return np.linalg.solve(H, A.T @ np.asarray(y).T / sigma**2).T


@pytest.mark.parametrize("cmd", [[], ["problems"], ["solve"], ["sample"], ["bench"], ["demo"]])
def test_help_everywhere(runner, cmd):
    res = invoke(runner, [*cmd, "--help"])
    assert "Usage:" in res.output and "--help" in res.output


def test_problems_table(runner):
    out = invoke(runner, ["problems"]).output
    for name, desc in ji.problems.names().items():
        assert name in out and desc in out
    assert "n=64" in out and "noise=0.01" in out  # options with defaults
    assert invoke(runner, ["problems", "--names-only"]).output.split() == list(ji.problems.names())
    bad = invoke(runner, ["problems", "--family", "nope"], code=2)
    assert "classical" in bad.output


@pytest.mark.parametrize("args, needle", [
    (["solve", "shawx"], "Did you mean shaw"),
    (["solve", "nope"], "Valid: baart"),
    (["solve"], "missing the problem NAME"),
    (["solve", "shaw", "-m", "lbfgs"], "'map'"),
    (["solve", "shaw", "-o", "n=-3"], "problem 'shaw': n"),
    (["solve", "shaw", "-o", "bogus=1"], "its options: n, noise"),
    (["solve", "shaw", "-o", "n"], "expected KEY=VALUE"),
    (["solve", "gaussian_linear", "-m", "tikhonov-gcv"], "does not apply"),
    (["solve", "shaw", "-m", "laplace", "--starts", "3"], "apply to map and newton"),
    (["sample", "shaw", "--chains", "0"], "0 is not in the range x>=1"),
    (["sample", "shaw", "-m", "gibbs"], "'nuts'"),
    (["bench", "--methods", "map,nutz"], "Did you mean nuts"),
    (["bench", "--suite", "huge"], "'quick'"),
    (["--precision", "16", "problems"], "'32'"),
])
def test_usage_errors_exit_2(runner, args, needle):
    res = invoke(runner, args, code=2)
    assert needle in res.output


def test_failure_exits_1_without_traceback(runner, monkeypatch):
    import jinverse.bench as B

    def boom(*a, **k):
        raise RuntimeError("the solver exploded")

    monkeypatch.setattr(B, "run_method", boom)
    res = invoke(runner, ["solve", "shaw", "-o", f"n={N}"], code=1)
    assert "the solver exploded" in res.output and "--debug" in res.output
    with pytest.raises(RuntimeError, match="exploded"):
        runner.invoke(main, ["--debug", "solve", "shaw", "-o", f"n={N}"], catch_exceptions=False)


def test_solve_tikhonov_result_and_plots(runner, tmp_path):
    res = invoke(runner, ["solve", "shaw", "-o", f"n={N}", "-m", "tikhonov-gcv", "--out", str(tmp_path)])
    bench = ji.problems.load("shaw", n=N)
    loaded = ji.load_result(tmp_path / "result.npz")
    assert loaded.metadata["problem"] == "shaw" and loaded.metadata["method"] == "tikhonov-gcv"
    # the saved x is the Tikhonov solution for the λ it reports (normal equations, NumPy)
    A, y, lam = np.asarray(bench.info["A"]), np.asarray(bench.y), float(loaded.lam)
    u, s, vt = np.linalg.svd(A)
    x = vt.T @ (s / (s**2 + lam**2) * (u.T @ y))
    np.testing.assert_allclose(loaded.x, x, rtol=1e-8, atol=1e-10)
    err = np.linalg.norm(x - np.asarray(bench.theta_true)) / np.linalg.norm(bench.theta_true)
    assert f"rel_error = {err:.4g}" in res.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["scores"]["value"] == pytest.approx(err, rel=1e-8)
    for png in ("reconstruction.png", "lcurve.png"):
        assert (tmp_path / png).stat().st_size > 5000


def test_solve_map_batch_in_chunks(runner, tmp_path):
    res = invoke(runner, ["solve", "shaw", "-o", f"n={N}", "-m", "newton", "--batch", "3", "--chunk", "2",
                          "--seed", "1", "--out", str(tmp_path)])
    assert "observations=3" in res.output and "converged  100% of 3" in res.output
    bench = ji.problems.load("shaw", n=N, batch=3, seed=1)
    theta = np.asarray(ji.load_result(tmp_path / "result.npz").theta)
    assert theta.shape == (3, N)
    # chunked (2 + padded 1) equals the closed-form posterior mean of each observation
    np.testing.assert_allclose(theta, closed_form_mean(bench, bench.y), rtol=1e-5, atol=1e-6)


def test_sample_summary_and_reload(runner, tmp_path):
    res = invoke(runner, ["sample", "shaw", "-o", "n=6", "--chains", "2", "--warmup", "200", "--samples", "200",
                          "--out", str(tmp_path)])
    for needle in ("R-hat", "coverage", "score      rel_error", "lower is better, ideal 0",
                   "ESS/s per second of sampling (compilation excluded)", "per second of the whole run"):
        assert needle in res.output
    # every phase on its own line, and the phases add up to the wall time printed
    lines = res.output.splitlines()
    wall = float(next(ln for ln in lines if ln.startswith("  time ")).split()[1])
    phases = {ln.split()[0]: float(ln.split()[1]) for ln in lines if ln.startswith("    ")}
    assert list(phases) == ["compile", "sampling", "diagnostics", "scoring"]
    assert sum(phases.values()) == pytest.approx(wall, rel=0.02, abs=0.25)  # argument checks outside the phases: ms, more under load
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["phases"] == pytest.approx(phases, rel=1e-3, abs=1e-3)
    assert summary["wall_seconds"] == pytest.approx(wall, abs=1e-3)
    loaded = ji.load_result(tmp_path / "result.nc")
    post = loaded.result
    assert isinstance(post, ji.Posterior) and post.samples.shape == (2, 200, 6)
    assert loaded.metadata["settings"]["chains"] == 2
    bench = ji.problems.load("shaw", n=6)
    np.testing.assert_array_equal(loaded.y, bench.y)  # the data, in the NetCDF file's observed_data
    np.testing.assert_array_equal(loaded.theta_true, bench.theta_true)
    exact = closed_form_mean(bench, bench.y)
    mc_se = np.asarray(post.std()) / np.sqrt(np.asarray(post.ess()))
    assert np.all(np.abs(np.asarray(post.mean()) - exact) < 5 * mc_se)
    for png in ("reconstruction.png", "trace.png", "rank.png", "pairs.png"):
        assert (tmp_path / png).exists()


def test_no_score_skips_scoring_and_says_so(runner, tmp_path):
    """--no-score: no score computed, the summary and summary.json say it was skipped (no
    made-up value), every other phase is still timed."""
    res = invoke(runner, ["solve", "shaw", "-o", f"n={N}", "-m", "tikhonov-gcv", "--no-score",
                          "--out", str(tmp_path)])
    assert "score      not computed (--no-score)" in res.output
    assert "    scoring     skipped (--no-score)" in res.output
    assert "rel_error" not in res.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["scores"] == {} and summary["score"] == {"skipped": True}
    assert list(summary["phases"]) == ["compile", "solve", "diagnostics", "scoring"]
    assert summary["phases"]["scoring"] is None
    assert ji.load_result(tmp_path / "result.npz").metadata["timing"]["phases"]["scoring"] is None
    assert "--no-score" in invoke(runner, ["sample", "--help"]).output


def test_config_file_and_quiet(runner, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'quiet = true\n[solve]\nmethod = "tikhonov-gcv"\n[solve.options]\nn = {N}\n')
    res = invoke(runner, ["--config", str(cfg), "solve", "shaw"])
    assert "method=tikhonov-gcv" in res.output and f"n={N}" in res.output
    assert "loading" not in res.output  # --quiet: no progress
    cfg.write_text("[solve]\nchain = 3\n")
    assert "no setting 'chain'" in invoke(runner, ["--config", str(cfg), "solve", "shaw"], code=2).output
    cfg.write_text("[solve\n")
    assert "not valid TOML" in invoke(runner, ["--config", str(cfg), "problems"], code=2).output


def test_precision_32(runner, tmp_path):
    invoke(runner, ["--precision", "32", "solve", "shaw", "-o", f"n={N}", "-m", "tikhonov-gcv",
                    "--out", str(tmp_path)])
    assert np.load(tmp_path / "result.npz")["x"].dtype == np.float32


def test_bench_matrix_report(runner, tmp_path):
    res = invoke(runner, ["bench", "--problems", "phillips", "--methods", "tikhonov-gcv,newton", "--out", str(tmp_path)])
    assert f"Report: {tmp_path / 'report.md'}" in res.output
    records = json.loads((tmp_path / "records.json").read_text())
    assert [(r["problem"], r["method"], r["status"]) for r in records] == [
        ("phillips", "tikhonov-gcv", "ok"), ("phillips", "newton", "ok")]
    # the bench's figure for tikhonov-gcv is the same as solving it directly
    bench = ji.problems.load("phillips", n=N)  # the quick suite's size
    direct = ji.linear.tikhonov(bench.info["A"], bench.y, lam="gcv").x
    err = float(jnp.linalg.norm(direct - bench.theta_true) / jnp.linalg.norm(bench.theta_true))
    assert records[0]["value"] == pytest.approx(err, rel=1e-8)
    report = (tmp_path / "report.md").read_text()
    assert "| phillips | tikhonov-gcv | rel_error | lower, 0 |" in report and "![summary](bench.png)" in report
    assert "`rel_error`: relative error" in report and "lower is better, ideal 0" in report
    for rec in records:  # every phase is in the record, and they add up to the pair's wall time
        phases = [rec["compile_s"], rec["seconds"], rec["diagnostics_s"], rec["scoring_s"]]
        assert sum(phases) == pytest.approx(rec["total_s"], rel=0.02, abs=0.25)
    assert (tmp_path / "bench.png").stat().st_size > 5000


def test_suites_name_real_problems_and_methods():
    from jinverse import bench as B

    for suite in B.SUITES:
        problems, methods, sampler = B.resolve_suite(suite)
        assert set(problems) <= set(ji.problems.names())
        assert set(methods) <= set(B.METHODS) and sampler["chains"] >= 2
    # every bench sampler is a ji.sample method: the blackjax table, or tempered SMC (its own driver)
    assert set(B.SAMPLE_METHODS) <= set(ji.sampling._samplers.METHODS) | {"smc"}


def test_bench_flags_a_pair_whose_solves_did_not_converge(monkeypatch):
    """A pair that ran but whose result is not to be trusted is 'flagged', with the reason,
    never 'ok' (here every MAP solve is cut to one step); a method that cannot represent the
    posterior (Laplace on two_moons' two crescent halves) is 'n/a', with the reason."""
    import jinverse.map
    from jinverse.bench import run_matrix

    solve_map = jinverse.map.solve_map
    monkeypatch.setattr(jinverse.map, "solve_map", lambda *a, **k: solve_map(*a, **{**k, "max_steps": 1}))
    (rec,) = run_matrix({"shaw": {"n": N}}, ["map"])
    assert rec["converged"] < 1.0
    assert rec["status"] == "flagged" and "of the solves did not converge" in rec["note"]
    monkeypatch.undo()
    (rec,) = run_matrix({"two_moons": {"num_reference": 100}}, ["laplace"])
    assert rec["status"] == "n/a" and "one Gaussian at one mode cannot represent" in rec["note"]


def test_solve_that_did_not_converge_says_so_and_exits_3(runner, tmp_path):
    """The summary names the failures (count per status, rows, what to try), summary.json keeps
    them, and the exit status is 3, documented in --help; a converged run exits 0 (above)."""
    res = invoke(runner, ["solve", "shaw", "-o", f"n={N}", "--batch", "3", "--max-steps", "1",
                          "--out", str(tmp_path)], code=3)
    assert "converged  0% of 3" in res.output
    assert ("warning    3 of 3 observations did not converge: 3 stopped at max_steps without converging "
            "(rows 0, 1, 2)") in res.output
    assert "--max-steps N, or -m newton" in res.output and "exit status 3" in res.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "did not converge" in summary["diagnostics"]["warnings"][0]
    assert ji.load_result(tmp_path / "result.npz").theta.shape == (3, N)  # results written first
    # one observation, --quiet: still said (the result lines are printed even with --quiet)
    res = invoke(runner, ["--quiet", "solve", "shaw", "-o", f"n={N}", "--max-steps", "1"], code=3)
    assert "warning    the observation did not converge: stopped at max_steps" in res.output
    assert "3 " in invoke(runner, ["--help"]).output.split("Exit status:")[1]


# -- issue 15 item 7: a resumable `sample`, --out checked before the run ------------------------

SAMPLE_ARGS = ["sample", "shaw", "-o", "n=4", "-m", "rwmh", "--chains", "2", "--warmup", "30",
               "--samples", "20", "--no-score", "--format", "npz"]


def test_sample_checkpoint_resumes_after_ctrl_c(runner, tmp_path, monkeypatch):
    """Ctrl-C during the draws keeps the checkpoint and says how to resume; the same command then
    finishes from it, with the draws of an uninterrupted run bit for bit."""
    import jinverse.checkpoint as C

    invoke(runner, [*SAMPLE_ARGS, "--out", str(tmp_path / "whole")])
    whole = ji.load_result(tmp_path / "whole" / "result.npz")
    ckpt = tmp_path / "ck" / "run.npz"
    saved = []
    original = C._save

    def save_then_interrupt(path, meta, done, states, draws):
        original(path, meta, done, states, draws)
        saved.append(done)
        if len(saved) == 3:  # after the warm-up and two chunks of 5 draws
            raise KeyboardInterrupt

    monkeypatch.setattr(C, "_save", save_then_interrupt)
    args = [*SAMPLE_ARGS, "--checkpoint", str(ckpt), "--checkpoint-every", "5", "--out", str(tmp_path / "r")]
    res = runner.invoke(main, args)
    assert res.exit_code == 130 and saved == [0, 5, 10]
    assert f"saved in {ckpt}; run the same command again" in res.output
    assert not (tmp_path / "r" / "result.npz").exists()
    monkeypatch.setattr(C, "_save", lambda *a: (saved.append(a[2]), original(*a)))
    out = invoke(runner, args).output
    assert saved[3:] == [15, 20]  # carried on from the third chunk
    assert "sampling: resuming from" in out and "10 of 20 draws per chain were saved" in out
    assert f"resumed from {ckpt}: 10 of 20 draws per chain were drawn by an earlier run" in out  # ESS/s caveat
    resumed = ji.load_result(tmp_path / "r" / "result.npz")
    assert resumed.metadata["settings"]["options"]["checkpoint"] == str(ckpt)
    np.testing.assert_array_equal(resumed.samples, whole.samples)
    np.testing.assert_array_equal(resumed.stats.acceptance_rate, whole.stats.acceptance_rate)


def test_sample_interrupted_without_checkpoint_says_how_to_resume(runner, monkeypatch):
    import jinverse.bench as B

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(B, "run_method", interrupted)
    res = runner.invoke(main, SAMPLE_ARGS)
    assert res.exit_code == 130 and "Add --checkpoint FILE to make the run resumable" in res.output


@pytest.mark.parametrize("cmd", [["solve", "shaw", "-o", f"n={N}", "-m", "tikhonov-gcv"], SAMPLE_ARGS])
def test_unwritable_out_fails_before_the_run(runner, tmp_path, monkeypatch, cmd):
    import jinverse.bench as B

    def never(*a, **k):
        raise AssertionError("the run started before --out was checked")

    monkeypatch.setattr(B, "run_method", never)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    res = invoke(runner, [*cmd, "--out", str(blocker / "sub")], code=2)
    assert "--out" in res.output and "cannot be written" in res.output
    assert "is a file" in invoke(runner, [*cmd, "--out", str(blocker)], code=2).output  # click's check


@pytest.mark.parametrize("extra, needle", [
    (["--checkpoint-every", "5"], "--checkpoint-every needs --checkpoint FILE"),
    (["--checkpoint", "{tmp}/c.npz", "--batch", "3", "--chunk", "2"], "expected --chunk >= --batch"),
    (["--checkpoint", "{tmp}"], "is a directory"),  # click's check
    (["--checkpoint", "{tmp}/a_file/c.npz"], "cannot be written"),
])
def test_checkpoint_usage_errors(runner, tmp_path, extra, needle):
    (tmp_path / "a_file").write_text("")
    res = invoke(runner, [*SAMPLE_ARGS, *[e.format(tmp=tmp_path) for e in extra]], code=2)
    assert needle in res.output


# -- issue 15 item 8: results re-checked from their files ---------------------------------------

def test_out_folder_reloads_with_data_settings_and_a_typed_laplace(runner, tmp_path):
    """`ji.load_result(OUT)` gives a typed Laplace result over the rebuilt problem, the data it
    was run on, the settings and versions; the score recomputed from the files is the one
    printed."""
    res = invoke(runner, ["solve", "shaw", "-o", f"n={N}", "-m", "laplace", "--batch", "2", "--seed", "4",
                          "--out", str(tmp_path)])
    loaded = ji.load_result(tmp_path)
    assert isinstance(loaded.result, ji.GaussianApproximation) and loaded.mean.shape == (2, N)
    bench = ji.problems.load("shaw", n=N, batch=2, seed=4)
    np.testing.assert_array_equal(loaded.y, bench.y)
    np.testing.assert_array_equal(loaded.theta_true, bench.theta_true)
    meta = loaded.metadata
    assert meta["flags"]["method"] == "laplace" and meta["flags"]["batch"] == 2 and meta["precision"] == 64
    assert meta["command"] == "solve" and meta["versions"]["jax"] == jax.__version__
    assert meta["status_counts"] == {"converged": 2}
    assert json.loads((tmp_path / "summary.json").read_text())["status_counts"] == {"converged": 2}
    # re-checked from the files alone: the score printed, from the stored mode and truth
    rebuilt = ji.problems.load(meta["problem"], **meta["options"])
    score = ji.problems.evaluate(rebuilt, np.asarray(loaded.mode))
    assert f"rel_error = {float(np.mean(score['value'])):.4g}" in res.output
    # the mode is the closed-form posterior mean of the linear-Gaussian problem
    np.testing.assert_allclose(loaded.mode, closed_form_mean(bench, loaded.y), rtol=1e-5, atol=1e-6)


# -- issue 15 item 10: configuration keys are the flag names, --config anywhere ------------------

def test_config_keys_are_the_flag_names(runner, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('[sample]\nformat = "npz"\nchecks = 1\n')
    res = invoke(runner, ["--config", str(cfg), "sample", "shaw"], code=2)
    assert "[sample] has no setting 'checks'" in res.output
    listed = res.output.split("expected one of")[1]
    assert "format" in listed and "checkpoint-every" in listed and "fmt" not in listed
    cfg.write_text(f'[sample]\nformat = "npz"\nmax-steps = 3\n[sample.options]\nn = {N}\n')
    assert "has no setting 'max-steps'" in invoke(runner, ["--config", str(cfg), "sample", "shaw"], code=2).output
    cfg.write_text(f'[solve]\nmax-steps = 1\n[solve.options]\nn = {N}\n')  # --max-steps, as written
    assert "stopped at max_steps" in invoke(runner, ["--config", str(cfg), "solve", "shaw"], code=3).output


def test_sample_format_from_config(runner, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('[sample]\nformat = "npz"\nmethod = "rwmh"\nchains = 2\nwarmup = 30\nsamples = 20\nscore = false\n'
                   "[sample.options]\nn = 4\n")
    invoke(runner, ["sample", "shaw", "--out", str(tmp_path / "o"), "--config", str(cfg)])
    assert (tmp_path / "o" / "result.npz").exists() and not (tmp_path / "o" / "result.nc").exists()
    assert ji.load_result(tmp_path / "o").metadata["flags"]["chains"] == 2


def test_config_after_the_command(runner, tmp_path):
    """`jinverse solve shaw --config run.toml` was refused ('No such option'); the command's table
    and the top-level keys apply, and flags on the command line still win."""
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'quiet = true\n[solve]\nmethod = "tikhonov-gcv"\n[solve.options]\nn = {N}\n')
    res = invoke(runner, ["solve", "shaw", "--config", str(cfg)])
    assert "method=tikhonov-gcv" in res.output and f"n={N}" in res.output
    assert "loading" not in res.output  # quiet = true, from the file
    res = invoke(runner, ["solve", "shaw", "--config", str(cfg), "-m", "tikhonov-lcurve"])
    assert "method=tikhonov-lcurve" in res.output
    cfg.write_text('precision = 32\n[solve]\nmethod = "tikhonov-gcv"\n[solve.options]\nn = 8\n')
    invoke(runner, ["solve", "shaw", "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert np.load(tmp_path / "o" / "result.npz")["x"].dtype == np.float32
    for cmd in (["problems"], ["bench"], ["demo"], ["sample"]):
        assert "--config" in invoke(runner, [*cmd, "--help"]).output


def test_problems_lists_only_options_the_cli_can_set(runner):
    out = invoke(runner, ["problems"]).output
    assert "prior=None" not in out and "Python only (ji.problems.load): prior" in out
    res = invoke(runner, ["solve", "shaw", "-o", "prior=1"], code=2)
    assert "option 'prior' takes a ji.priors prior object" in res.output and "ji.problems.load('shaw'" in res.output
    assert "set 'seed' with --seed" in invoke(runner, ["solve", "shaw", "-o", "seed=1"], code=2).output
    assert "its options: n, noise, rhs" in invoke(runner, ["solve", "shaw", "-o", "m=1"], code=2).output


def test_a_long_compilation_gets_a_tip_about_the_server(monkeypatch):
    import jinverse.cli._run as run_module
    from jinverse_cli.common import Settings

    monkeypatch.setattr(run_module, "TIP_COMPILE_SECONDS", 0.0)  # every compilation counts as long here
    # the caches stay off in this process (they are process-wide), but the command thinks them on
    monkeypatch.setattr(Settings, "start", lambda self: jax.config.update("jax_enable_x64", True))
    runner = CliRunner()
    monkeypatch.delenv("JINVERSE_NO_CACHE", raising=False)
    args = ["solve", "deconvolution1d", "-o", "n=32"]
    assert "jinverse server start" in invoke(runner, args).output
    assert "server start" not in invoke(runner, ["-q", *args]).output  # --quiet: results only
    assert "server start" not in invoke(runner, ["--no-cache", *args]).output  # nothing is kept
    monkeypatch.setenv("JINVERSE_SERVED", "1")
    assert "server start" not in invoke(runner, args).output  # already in the server


def test_sample_with_smc_runs_from_the_prior(runner):
    """--init is not passed unless given: SMC, which always starts from the prior, refused any."""
    out = invoke(runner, ["sample", "gaussian_linear", "--method", "smc", "--no-score", "--samples", "200"]).output
    assert "not applicable (SMC's draws are weighted particles" in out
    bad = runner.invoke(main, ["sample", "gaussian_linear", "--method", "smc", "--init", "map", "--no-score"])
    assert bad.exit_code == 1 and "init" in bad.output
