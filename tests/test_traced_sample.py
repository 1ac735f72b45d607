"""`ji.sample` under `jax.jit` and `jax.vmap` (issue 17): the host call's draws, status per lane,
the options that need the host refused by name."""

import contextlib
import pathlib
import re
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinverse as ji
from jinverse.posterior import Status

KW = dict(num_chains=2, num_warmup=40, num_samples=20, metric="diagonal")


@pytest.fixture(scope="module")
def problem():
    a = jax.random.normal(jax.random.key(1), (5, 2))
    return ji.InverseProblem(a, ji.priors.Gaussian(jnp.zeros(2), 1.0), ji.likelihoods.Gaussian(0.3))


@pytest.fixture(scope="module")
def ys():
    return jax.random.normal(jax.random.key(2), (3, 5))


def host(problem, y, key, **kw):
    """The host call; its SamplingWarning (short runs: low ESS expected) silenced."""
    with _quiet():
        return ji.sample(problem, y, key=key, **kw)


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ji.posterior.SamplingWarning)
        yield


def same_posterior(a, b):
    """The same draws and statistics (bit for bit), status and diagnostics."""
    np.testing.assert_array_equal(a.samples, b.samples)
    for x, y in zip(jax.tree.leaves(a.stats), jax.tree.leaves(b.stats)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.status, b.status)
    np.testing.assert_array_equal(a.num_divergent, b.num_divergent)
    np.testing.assert_allclose(a.max_rhat, b.max_rhat, rtol=1e-9)
    np.testing.assert_allclose(a.min_ess, b.min_ess, rtol=1e-9)


# each method compiles its sampler twice (host and jit): the default suite keeps NUTS
@pytest.mark.parametrize("method", ["nuts", *(pytest.param(m, marks=pytest.mark.slow) for m in ("hmc", "mala", "rwmh"))])
def test_jit_equals_the_host_call(problem, ys, method):
    """jit of a function of the problem, the batch and the key: one program, the host's lanes,
    bit for bit. (Closing over them instead makes them constants that XLA folds, which moves the
    rounding, and the adaptation amplifies it.)"""
    key = jax.random.key(0)
    ref = host(problem, ys, key, method=method, **KW)
    post = jax.jit(lambda p, y, k: ji.sample(p, y, key=k, method=method, **KW))(problem, ys, key)
    assert isinstance(post, ji.Posterior) and post.samples.shape == (3, 2, 20, 2)
    assert post.warnings == () and post.method == method
    same_posterior(post, ref)


def test_vmap_over_observations_and_keys_equals_the_host_call(problem, ys):
    key = jax.random.key(0)
    ref = host(problem, ys, key, **KW)  # lane i uses jax.random.split(key, 3)[i]
    post = jax.vmap(lambda y, k: ji.sample(problem, y, key=k, **KW))(ys, jax.random.split(key, 3))
    same_posterior(post, ref)
    # one observation alone: its host call runs the lane unbatched, which XLA rounds differently
    one = host(problem, ys[1], jax.random.split(key, 3)[1], **KW)
    np.testing.assert_allclose(post.samples[1], one.samples, rtol=1e-9, atol=1e-9)


@pytest.mark.slow  # the Laplace metric's traced mode search and the sampler, compiled twice
def test_jit_of_default_metric_and_map_start(problem, ys):
    """The default metric here is the Laplace whitening (a mode search by ji.solve_map, traced
    too), and init='map' starts from ji.solve_map under the transformation."""
    key = jax.random.key(3)
    kw = dict(num_chains=2, num_warmup=30, num_samples=20, init="map")
    ref = host(problem, ys[:2], key, **kw)
    post = jax.jit(lambda p, y, k: ji.sample(p, y, key=k, **kw))(problem, ys[:2], key)
    same_posterior(post, ref)


def test_nonfinite_observation_flags_only_its_lane(problem, ys):
    keys = jax.random.split(jax.random.key(4), 3)
    run = jax.jit(jax.vmap(lambda y, k: ji.sample(problem, y, key=k, **KW)))
    clean = run(ys, keys)
    bad = run(ys.at[1, 2].set(jnp.nan), keys)
    status = np.asarray(bad.status)
    assert status[1] & int(Status.NONFINITE)
    assert np.isinf(bad.max_rhat[1]) and bad.min_ess[1] == 0
    for i in (0, 2):  # the neighbours: untouched, bit for bit
        assert status[i] == int(clean.status[i])
        np.testing.assert_array_equal(bad.samples[i], clean.samples[i])
    with pytest.raises(ValueError, match="y"):  # the host refuses the same batch
        ji.sample(problem, ys.at[1, 2].set(jnp.nan), key=keys[0], **KW)


def test_unchecked_under_jit_then_diagnose(problem, ys):
    key = jax.random.key(5)
    post = jax.jit(lambda p, y, k: ji.sample(p, y, key=k, diagnose=False, **KW))(problem, ys, key)
    assert np.all(np.asarray(post.status) & int(Status.UNCHECKED)) and np.all(np.isnan(post.max_rhat))
    with _quiet():
        checked = post.diagnose()
    ref = host(problem, ys, key, **KW)
    np.testing.assert_array_equal(checked.status, ref.status)
    np.testing.assert_allclose(checked.max_rhat, ref.max_rhat, rtol=1e-9)
    assert checked.warnings == ref.warnings


@pytest.mark.parametrize("option, value, name", [
    ("checkpoint", "run.npz", "checkpoint"),
    ("checkpoint_every", 5, "checkpoint_every"),
    ("progress", True, "progress"),
    ("progress", print, "progress"),
    ("init", "modes", "init"),
    ("method", "smc", "method"),
])
def test_host_only_options_refused_under_jit(problem, ys, option, value, name):
    kw = {**KW, option: value}
    with pytest.raises(ValueError, match=rf"^{name}: got .* under a JAX transformation"):
        jax.jit(lambda y: ji.sample(problem, y, key=jax.random.key(0), **kw).samples)(ys)


def test_traced_shape_errors_match_the_host(problem):
    y = jnp.zeros((3, 4))  # event (5,) expected
    with pytest.raises(ValueError) as eager:
        ji.sample(problem, y, key=jax.random.key(0), **KW)
    with pytest.raises(ValueError) as traced:
        jax.jit(lambda y: ji.sample(problem, y, key=jax.random.key(0), **KW).samples)(y)
    assert str(traced.value) == str(eager.value)


@pytest.mark.slow  # compiles the README's sampler (its default metric) under jit
def test_readme_example_runs():
    """The README's ji.sample-under-jit block runs as printed, and gives the host call's answer."""
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"Tested in `tests/test_traced_sample.py`:\n\s*```python\n(.*?)```", readme, re.S)
    code = textwrap.dedent(block.group(1))
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    post, ys = scope["post"], scope["ys"]
    assert post.samples.shape == (8, 4, 200, 2) and post.mean().shape == (8, 2)
    # the host call on the batch with the key the README split: statistically the same posterior
    # (the README's jit closes over the problem, whose constants XLA folds: other rounding)
    with _quiet():
        ref = ji.sample(scope["problem"], ys, key=jax.random.key(0), num_warmup=200, num_samples=200)
    se = np.sqrt(ref.std() ** 2 / np.asarray(ref.min_ess)[:, None] + post.std() ** 2 / np.asarray(post.min_ess)[:, None])
    assert np.all(np.abs(post.mean() - ref.mean()) < 5 * se)


# replica exchange, MCLMC and ChEES run under jit too (each compiles its sampler twice: slow but
# tempering, the one with its own driver path, stays in the default suite)
@pytest.mark.parametrize("method, extra", [
    ("nuts", dict(tempering=3)),
    pytest.param("mclmc", {}, marks=pytest.mark.slow),
    pytest.param("chees", {}, marks=pytest.mark.slow),
])
def test_jit_equals_the_host_call_tempering_mclmc_chees(problem, ys, method, extra):
    key = jax.random.key(6)
    kw = {**KW, "method": method, **extra}
    ref = host(problem, ys[:2], key, **kw)
    post = jax.jit(lambda p, y, k: ji.sample(p, y, key=k, **kw))(problem, ys[:2], key)
    assert post.warnings == () and post.method == ref.method
    same_posterior(post, ref)
    if "tempering" in extra:  # the ladder and each pair's swap acceptance come back too
        np.testing.assert_array_equal(post.tempering.betas, ref.tempering.betas)
        np.testing.assert_array_equal(post.tempering.swap_acceptance, ref.tempering.swap_acceptance)
