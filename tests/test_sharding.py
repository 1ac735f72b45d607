"""Several devices: each check runs in a fresh process with 8 virtual CPU devices."""

import pathlib
import subprocess
import sys

SCRIPTS = pathlib.Path(__file__).parent / "scripts"


def run_script(name, timeout=600):
    proc = subprocess.run([sys.executable, str(SCRIPTS / name)], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_map_sharded_over_8_devices_equals_one_device():
    out = run_script("sharded_map.py")
    assert "OK" in out


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_each_half_a_batch_equal_single_process(tmp_path):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jinverse as ji

    port, out = str(_free_port()), tmp_path / "theta.npy"
    cmd = [sys.executable, str(SCRIPTS / "multihost_map.py")]
    procs = [subprocess.Popen([*cmd, str(i), "2", port, str(out)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    assert "global (96, 5) converged True" in logs[0]
    theta = np.load(out)
    # the same problem and data in this (single) process
    A = jax.random.normal(jax.random.key(0), (12, 5))
    problem = ji.InverseProblem(lambda t: jnp.tanh(A @ t), ji.priors.Gaussian(jnp.zeros(5), 1.0),
                                ji.likelihoods.Gaussian(0.1))
    Y = jax.random.normal(jax.random.key(1), (96, 12)) * 0.5
    single = ji.solve_map(problem, Y, chunk_size=4)
    assert theta.shape == (96, 5)
    assert float(np.max(np.abs(theta - np.asarray(single.theta)))) < 1e-7  # solver accuracy
    lp = jax.vmap(problem.log_posterior)(jnp.asarray(theta), Y)
    assert np.allclose(lp, single.log_posterior, rtol=1e-12)
