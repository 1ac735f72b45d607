"""Process-level options: persistent compilation cache, precision, batch mesh."""

import os
import subprocess
import sys
import textwrap

import pytest

import jinverse as ji

SCRIPT = textwrap.dedent("""
    import sys, time
    import jax, jax.numpy as jnp
    import jinverse as ji
    ji.set_precision(64)
    ji.enable_compilation_cache(sys.argv[1], min_compile_time_secs=0.0)
    A = jnp.arange(12.0).reshape(4, 3) / 10
    p = ji.InverseProblem(A, ji.priors.Gaussian(jnp.zeros(3), 1.0), ji.likelihoods.Gaussian(0.1))
    t0 = time.perf_counter()
    r = ji.solve_map(p, jnp.ones((5, 4)))
    r.theta.block_until_ready()
    print(f"{time.perf_counter() - t0:.3f}", bool(r.converged.all()))
""")


def test_persistent_compilation_cache(tmp_path):
    cache = tmp_path / "xla"
    run = lambda: subprocess.run([sys.executable, "-c", SCRIPT, str(cache)], capture_output=True,
                                 text=True, timeout=300)
    first = run()
    assert first.returncode == 0, first.stderr
    assert first.stdout.split()[1] == "True"
    entries = os.listdir(cache)
    assert entries, "the first process wrote nothing to the cache"
    second = run()
    assert second.returncode == 0, second.stderr
    assert sorted(os.listdir(cache)) == sorted(entries)  # the second process reused, added nothing


def test_set_precision_rejects_other_values():
    with pytest.raises(ValueError, match="bits"):
        ji.set_precision(16)


def test_batch_mesh_and_bad_mesh():
    mesh = ji.batch_mesh()
    assert mesh.axis_names == ("batch",)
    import jax.numpy as jnp

    p = ji.InverseProblem(jnp.eye(2), ji.priors.Gaussian(jnp.zeros(2), 1.0), ji.likelihoods.Gaussian(0.1))
    with pytest.raises(TypeError, match="mesh"):
        ji.solve_map(p, jnp.ones((3, 2)), mesh="cpu")
    with pytest.raises(ValueError, match="batch_axis"):
        ji.solve_map(p, jnp.ones((3, 2)), mesh=mesh, batch_axis="x")
