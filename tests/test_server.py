"""`jinverse server`: a resident process that runs the CLI's commands as the calling process would."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

CLI = [sys.executable, "-m", "jinverse_cli"]
SOLVE = ["solve", "deconvolution1d", "-o", "n=32"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A server of its own (its own cache folder), stopped at the end whatever happens."""
    cache = tmp_path_factory.mktemp("server-cache")
    env = {k: v for k, v in os.environ.items() if k not in ("JINVERSE_NO_CACHE", "JINVERSE_NO_SERVER")}
    env.update(JINVERSE_CACHE=str(cache), JAX_PLATFORMS="cpu")
    started = subprocess.run([*CLI, "server", "start", "--idle-timeout", "10"], capture_output=True, text=True,
                             env=env, timeout=180)
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.split("pid ")[1].split(",")[0])
    log = started.stdout.rsplit("log ", 1)[1].strip()
    yield env
    subprocess.run([*CLI, "server", "stop"], capture_output=True, env=env, timeout=60)
    try:
        os.kill(pid, signal.SIGKILL)  # only if stop did not work
    except ProcessLookupError:
        pass
    if os.path.exists(log):
        os.unlink(log)


def run(env, *args, cwd=None, timeout=300):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def served(env) -> int:
    out = run(env, "server", "status")
    assert out.returncode == 0, out.stdout + out.stderr
    return int(out.stdout.split(" commands served")[0].rsplit(" ", 1)[1])


def results(out_dir):
    with np.load(out_dir / "result.npz") as f:
        return {k: f[k] for k in f.files if f[k].dtype != object}


def score(stdout):
    return [line for line in stdout.splitlines() if line.lstrip().startswith(("score", "converged"))]


def test_commands_run_in_the_server_as_they_would_here(env, tmp_path):
    here = run(env, "--no-server", "-q", *SOLVE, "--out", str(tmp_path / "here"))
    assert here.returncode == 0, here.stderr
    before = served(env)
    work = tmp_path / "work"
    work.mkdir()
    first = run(env, "-q", *SOLVE, "--out", "first", cwd=work)  # relative to the client's directory
    second = run(env, "-q", *SOLVE, "--out", str(tmp_path / "second"))
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert served(env) == before + 2  # both ran in the server
    assert score(first.stdout) == score(second.stdout) == score(here.stdout) != []
    want = results(tmp_path / "here")
    for got in (results(work / "first"), results(tmp_path / "second")):
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)  # bit for bit


def test_exit_status_errors_and_warnings_come_back_every_time(env):
    before = served(env)
    for _ in range(2):  # warnings are shown again on the second call (a fresh filter state each time)
        slow = run(env, *SOLVE, "--max-steps", "1")
        assert slow.returncode == 3, slow.stderr
        assert "did not converge" in slow.stdout and "exit status 3" in slow.stderr
    bad = run(env, "solve", "no_such_problem")
    assert bad.returncode == 2 and "unknown problem 'no_such_problem'" in bad.stderr
    assert served(env) == before + 3


def test_ctrl_c_stops_the_command_and_the_server_carries_on(env, tmp_path):
    before = served(env)
    checkpoint = tmp_path / "run.npz"
    proc = subprocess.Popen([*CLI, "sample", "deconvolution1d", "-o", "n=4", "-o", "sigma=0.2", "--method", "rwmh",
                             "--no-score", "--chains", "1", "--warmup", "10", "--samples", "2000000",
                             "--checkpoint", str(checkpoint), "--checkpoint-every", "2000", "--format", "npz"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    line = ""
    while "draws" not in line and time.monotonic() < deadline:  # the draw chunks have started
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "the command ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Interrupted: the warm-up and the draws so far are saved" in err, err
    assert checkpoint.exists()
    assert served(env) == before + 1
    again = run(env, "-q", *SOLVE)
    assert again.returncode == 0 and served(env) == before + 2


def test_a_reader_that_goes_away_ends_the_client_quietly(env):
    before = served(env)
    cmd = " ".join([sys.executable, "-m", "jinverse_cli", "-q", *SOLVE]) + " | head -n 1"
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env, timeout=300)
    assert out.stdout.startswith("deconvolution1d(") and out.stdout.count("\n") == 1
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr
    assert run(env, "-q", *SOLVE).returncode == 0 and served(env) == before + 2  # the server carries on


def test_a_second_server_for_the_same_socket_steps_aside(env):
    before = served(env)
    second = subprocess.run([sys.executable, "-c", "from jinverse_cli.server import serve; serve(1.0)"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert second.returncode == 0 and "another server with this socket is running" in second.stdout
    assert served(env) == before  # the first one still answers
    start = run(env, "server", "start")
    assert start.returncode == 0 and "already running" in start.stdout


def test_a_changed_source_stops_the_server_and_the_command_runs_here(env, monkeypatch):
    from jinverse_cli import server

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(server, "source_stamp", lambda: "edited")
    assert server.forward(["-q", *SOLVE]) is None  # turned down: the caller runs it itself
    for _ in range(50):
        if server.request("status") is None:
            break
        time.sleep(0.1)
    assert server.request("status") is None
    assert run(env, "server", "status").returncode == 1


def test_group_options_and_help_stay_here():
    from jinverse_cli.server import command_of

    assert command_of(["--precision", "32", "-q", "solve", "x"]) == ("solve", ["--precision", "32", "-q"])
    assert command_of(["--config", "a.toml", "sample"]) == ("sample", ["--config", "a.toml"])
    assert command_of(["--help"]) == (None, ["--help"])
