"""Determinism: the same key gives bit-for-bit the same result, run to run.

Checked for `ji.sample` (batched NUTS) and multi-start `ji.solve_map`: twice in one process, and
in a separate Python process (a fresh compilation); another key gives other draws and starts.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent("""
    import sys, warnings
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    import jinverse as ji

    def run(seed=3):
        a = np.random.default_rng(0).normal(size=(4, 2))
        problem = ji.InverseProblem(jnp.asarray(a), ji.priors.LogNormal(jnp.zeros(2), 1.0),
                                    ji.likelihoods.Gaussian(0.5))
        ys = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = ji.sample(problem, ys, key=jax.random.key(seed), num_chains=2, num_warmup=40,
                             num_samples=8)
        fit = ji.solve_map(problem, ys, num_starts=3, key=jax.random.key(seed + 1), max_steps=50)
        return {"samples": np.asarray(post.samples), "step_size": np.asarray(post.stats.step_size),
                "map_theta": np.asarray(fit.theta), "map_logp": np.asarray(fit.log_posterior),
                "map_steps": np.asarray(fit.num_steps)}

    if __name__ == "__main__":
        np.savez(sys.argv[1], **run())
""")


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("det") / "det.py"
    path.write_text(SCRIPT)
    namespace = {"__name__": "det"}
    exec(compile(SCRIPT, str(path), "exec"), namespace)
    return path, namespace["run"]


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs"


@pytest.fixture(scope="module")
def first(script):
    return script[1]()


def test_same_key_same_result_in_process(script, first):
    _, run = script
    assert first["samples"].shape == (2, 2, 8, 2) and first["map_theta"].shape == (2, 2)
    _same(first, run())
    other = run(seed=10)
    assert not np.array_equal(other["samples"], first["samples"])
    assert not np.array_equal(other["map_steps"], first["map_steps"]) or \
        not np.array_equal(other["map_theta"], first["map_theta"])


def test_same_key_same_result_in_a_new_process(script, first, tmp_path):
    path, _ = script
    out = tmp_path / "out.npz"
    subprocess.run([sys.executable, str(path), str(out)], check=True, timeout=300)
    with np.load(out) as f:
        other = {k: f[k] for k in f.files}
    _same(first, other)
