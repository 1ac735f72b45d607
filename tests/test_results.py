"""Result files: save_result / load_result round trips (npz + JSON, NetCDF), metadata, errors."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

import jinverse as ji
from jinverse._samplers import Stats
from jinverse.results import save_result


def _map_result(theta):
    batch = np.shape(np.asarray(jnp.asarray(theta["a"] if isinstance(theta, dict) else theta)))[:1]
    return ji.MAPResult(theta=theta, log_posterior=jnp.arange(batch[0], dtype=float),
                        grad_norm=jnp.full(batch, 1e-10), num_steps=jnp.array([3, 4, 5])[: batch[0]],
                        converged=jnp.array([True, False, True])[: batch[0]],
                        status=jnp.array([0, 1, 0])[: batch[0]])


def _posterior(rng, batch=(), chains=2, draws=6, dim=3):
    shape = (*batch, chains, draws)
    stats = Stats(acceptance_rate=jnp.asarray(rng.uniform(size=shape)),
                  is_divergent=jnp.asarray(rng.uniform(size=shape) < 0.1),
                  num_integration_steps=jnp.asarray(rng.integers(1, 9, size=shape)),
                  step_size=jnp.asarray(rng.uniform(size=shape)),
                  energy=jnp.asarray(rng.normal(size=shape)))
    return ji.Posterior(samples=jnp.asarray(rng.normal(size=(*shape, dim))), stats=stats,
                        max_rhat=jnp.full(batch, 1.003), min_ess=jnp.full(batch, 321.0),
                        num_divergent=jnp.zeros(batch, int), status=jnp.zeros(batch, int),
                        warnings=("a warning",), method="nuts", num_warmup=7)


def _same(a, b):
    assert type(a) is type(b) or isinstance(b, type(a))
    for x, y in zip(jnp.asarray(a).ravel(), jnp.asarray(b).ravel()):
        assert x == y


def test_map_result_npz_roundtrip_with_metadata(tmp_path):
    res = _map_result(jnp.arange(6.0).reshape(3, 2))
    path = save_result(res, tmp_path / "m", metadata={"method": "map", "seed": 3})
    assert path.name == "m.npz" and (tmp_path / "m.json").exists()
    back = ji.load_result(path)
    assert back.kind == "map" and isinstance(back.result, ji.MAPResult)
    np.testing.assert_array_equal(back.theta, res.theta)
    for f in ("log_posterior", "grad_norm", "num_steps", "converged", "status"):
        np.testing.assert_array_equal(getattr(back, f), getattr(res, f))
    assert list(back.messages()) == list(res.messages())
    meta = back.metadata
    assert meta["method"] == "map" and meta["seed"] == 3
    assert meta["versions"]["jax"] and meta["versions"]["python"]
    # the JSON file is plain JSON a person can read
    assert json.loads((tmp_path / "m.json").read_text())["kind"] == "map"


def test_pytree_theta_roundtrip(tmp_path):
    theta = {"a": jnp.ones((3, 2)), "b": [jnp.zeros(3), jnp.full((3, 4), 2.0)]}
    back = ji.load_result(save_result(_map_result(theta), tmp_path / "tree.npz")).theta
    assert set(back) == {"a", "b"} and isinstance(back["b"], list) and len(back["b"]) == 2
    np.testing.assert_array_equal(back["a"], theta["a"])
    np.testing.assert_array_equal(back["b"][1], theta["b"][1])


def test_benchmark_metadata(tmp_path):
    bench = ji.problems.load("shaw", n=8)
    res = _map_result(jnp.zeros((1, 8)))
    meta = ji.load_result(save_result(res, tmp_path / "r.npz", benchmark=bench)).metadata
    assert meta["problem"] == "shaw" and meta["options"]["n"] == 8 and meta["options"]["seed"] == 0


@pytest.mark.parametrize("suffix", [".npz", ".nc"])
@pytest.mark.parametrize("batch", [(), (2,)])
def test_posterior_roundtrip(tmp_path, suffix, batch):
    post = _posterior(np.random.default_rng(0), batch=batch)
    back = ji.load_result(save_result(post, tmp_path / f"p{suffix}", metadata={"seed": 1}))
    assert back.kind == "posterior" and isinstance(back.result, ji.Posterior)
    np.testing.assert_array_equal(back.samples, post.samples)
    for f in Stats._fields:
        np.testing.assert_array_equal(getattr(back.stats, f), getattr(post.stats, f))
    np.testing.assert_array_equal(back.max_rhat, post.max_rhat)
    assert back.warnings == post.warnings and back.method == "nuts" and back.num_warmup == 7
    np.testing.assert_allclose(back.mean(), post.mean())
    assert back.metadata["seed"] == 1


def test_netcdf_is_readable_by_arviz(tmp_path):
    az = pytest.importorskip("arviz")
    post = _posterior(np.random.default_rng(1), batch=(2,))
    save_result(post, tmp_path / "p.nc")
    idata = az.from_netcdf(str(tmp_path / "p.nc"))
    da = idata.posterior["theta"]
    assert da.dims == ("chain", "draw", "obs_0", "theta_dim_0") and da.shape == (2, 6, 2, 3)
    # chain c, draw d of observation 1 is samples[1, c, d]
    np.testing.assert_array_equal(da.values[1, 4, 1], np.asarray(post.samples[1, 1, 4]))
    # ArviZ's mean over chains and draws equals the posterior's own
    np.testing.assert_allclose(da.mean(("chain", "draw")).values, np.asarray(post.mean()))


def test_tikhonov_laplace_and_dict_roundtrip(tmp_path, key):
    A = jnp.asarray(np.random.default_rng(0).normal(size=(6, 4)))
    y = A @ jnp.ones(4)
    tik = ji.linear.tikhonov(A, y, lam=0.1)
    back = ji.load_result(save_result(tik, tmp_path / "t.npz")).result
    assert isinstance(back, ji.linear.TikhonovResult)
    np.testing.assert_array_equal(back.x, tik.x)
    assert ji.load_result(tmp_path / "t.npz").metadata["status_counts"] == {"converged": 1}
    problem = ji.InverseProblem(A, ji.priors.Gaussian(jnp.zeros(4), 1.0), ji.likelihoods.Gaussian(0.1))
    lap = ji.laplace(problem, y, at=jnp.zeros(4))  # (no MAP solve: the round trip is what is tested)
    path = save_result(lap, tmp_path / "l.npz")
    # a Laplace result comes back as a typed object over its problem (not a built-in one: given)
    got = ji.load_result(path, problem=problem).result
    assert isinstance(got, ji.GaussianApproximation)
    np.testing.assert_array_equal(got.covariance, lap.covariance)
    np.testing.assert_array_equal(got.mode, lap.mode)
    np.testing.assert_array_equal(got.sample(key, 3), lap.sample(key, 3))
    with pytest.raises(ValueError, match="problem: got None for a Laplace result"):
        ji.load_result(path)
    d = ji.load_result(save_result({"x": np.arange(3)}, tmp_path / "d.npz"))
    assert d.kind == "arrays"
    np.testing.assert_array_equal(d.result["x"], np.arange(3))


def test_errors(tmp_path):
    with pytest.raises(TypeError, match="result: got str"):
        save_result("nope", tmp_path / "x.npz")
    with pytest.raises(ValueError, match="NetCDF"):
        save_result(_map_result(jnp.zeros((1, 2))), tmp_path / "x.nc")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ji.load_result(tmp_path / "missing.npz")
    np.savez(tmp_path / "bare.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="no metadata file"):
        ji.load_result(tmp_path / "bare.npz")


# -- issue 15 item 8: results that can be re-checked from their files ---------------------------

def test_map_metadata_holds_status_counts_not_a_sentence_per_element(tmp_path):
    n = 1000
    status = jnp.asarray(np.r_[np.zeros(n - 3, int), [1, 1, 2]])
    res = ji.MAPResult(theta=jnp.zeros((n, 2)), log_posterior=jnp.zeros(n), grad_norm=jnp.zeros(n),
                       num_steps=jnp.ones(n, int), converged=status == 0, status=status)
    save_result(res, tmp_path / "m.npz")
    text = (tmp_path / "m.json").read_text()
    meta = json.loads(text)
    assert meta["status_counts"] == {"converged": n - 3, "max_steps": 2, "nonfinite": 1}
    assert "messages" not in meta and len(text) < 2000
    back = ji.load_result(tmp_path / "m.npz")  # the per-element reasons still come from status
    assert back.messages()[-1] == ji.Status.NONFINITE.describe()


@pytest.mark.parametrize("suffix", [".npz", ".nc"])
def test_data_and_truth_stored_with_the_result(tmp_path, suffix):
    """y and theta_true (from the benchmark, or given) come back with the result."""
    if suffix == ".nc":
        pytest.importorskip("arviz")
    post = _posterior(np.random.default_rng(2), batch=(2,))
    y = np.arange(10.0).reshape(2, 5)
    truth = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    back = ji.load_result(save_result(post, tmp_path / f"p{suffix}", y=y, theta_true=truth))
    np.testing.assert_array_equal(back.y, y)
    np.testing.assert_array_equal(back.theta_true, truth)
    assert back.metadata["status_counts"] == {"ok": 2}
    np.testing.assert_array_equal(back.samples, post.samples)
    bare = ji.load_result(save_result(post, tmp_path / f"q{suffix}"))
    assert bare.y is None and bare.theta_true is None


def test_pytree_truth_and_benchmark_data(tmp_path):
    bench = ji.problems.load("shaw", n=8, batch=3)
    back = ji.load_result(save_result(_map_result(jnp.zeros((3, 8))), tmp_path / "r.npz", benchmark=bench))
    np.testing.assert_array_equal(back.y, bench.y)
    np.testing.assert_array_equal(back.theta_true, bench.theta_true)
    truth = {"a": np.ones((3, 2)), "b": [np.zeros(3)]}
    back = ji.load_result(save_result(_map_result(jnp.zeros((3, 2))), tmp_path / "t.npz", theta_true=truth))
    assert set(back.theta_true) == {"a", "b"}
    np.testing.assert_array_equal(back.theta_true["b"][0], truth["b"][0])


def test_load_result_of_a_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds neither result.nc nor result.npz"):
        ji.load_result(tmp_path / "empty")
    save_result(_map_result(jnp.zeros((3, 2))), tmp_path / "run" / "result.npz", metadata={"seed": 5})
    assert ji.load_result(tmp_path / "run").metadata["seed"] == 5


def test_lowrank_laplace_roundtrip(tmp_path, key):
    rng = np.random.default_rng(3)
    A = jnp.asarray(rng.normal(size=(6, 5)))
    problem = ji.InverseProblem(A, ji.priors.Gaussian(jnp.zeros(5), 1.0), ji.likelihoods.Gaussian(0.1))
    lap = ji.laplace(problem, A @ jnp.ones(5), at=jnp.zeros(5), rank=2, key=key)
    assert isinstance(lap, ji.LowRankGaussianApproximation)
    got = ji.load_result(save_result(lap, tmp_path / "lr.npz"), problem=problem).result
    assert isinstance(got, ji.LowRankGaussianApproximation)
    np.testing.assert_array_equal(got.std(), lap.std())
    assert ji.load_result(tmp_path / "lr.npz", problem=problem).metadata["status_counts"] == {"converged": 1}
