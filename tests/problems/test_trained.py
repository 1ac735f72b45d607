"""Inverting trained models: the networks learn their known functions, the preimages are known,
and the "repredict" metric tells a full posterior from a collapsed one."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinverse as ji
from jinverse.problems import trained


@pytest.fixture(scope="module")
def regressor():
    return ji.problems.load("trained_regressor", batch=2)


@pytest.fixture(scope="module")
def classifier():
    return ji.problems.load("trained_classifier", batch=2)


def test_training_error_is_small(regressor, classifier):
    # ||x||² ranges over [0, 8] on the box: an RMSE of 0.05 is 0.6% of the range
    assert regressor.info["train_rmse"] < 0.05 and regressor.info["test_rmse"] < 0.05
    assert classifier.info["test_accuracy"] > 0.98
    # against the true function directly, on fresh points
    x = jax.random.uniform(jax.random.key(7), (500, 2), minval=-2, maxval=2)
    pred = jax.vmap(regressor.info["model"])(x)
    assert float(jnp.sqrt(jnp.mean((pred - jnp.sum(x**2, 1)) ** 2))) < 0.05
    labels = jnp.argmax(jax.vmap(classifier.info["model"])(x), -1)
    angle = np.arctan2(np.asarray(x[:, 1]), np.asarray(x[:, 0])) + np.pi
    assert np.mean(np.asarray(labels) == np.floor(angle / (np.pi / 2)).astype(int)) > 0.98


def test_shapes_seed_and_finite_log_posterior(regressor, classifier):
    for b, y_event in ((regressor, ()), (classifier, ())):
        assert b.y.shape == (2, *y_event) and b.theta_true.shape == (2, 2)
        assert b.metric == "repredict"
        assert b.problem.check_y(b.y)[1] == (2,)
        for i in range(2):
            assert np.isfinite(float(b.problem.log_posterior(b.theta_true[i], b.y[i])))
    one = ji.problems.load("trained_regressor")
    again = ji.problems.load("trained_regressor")
    np.testing.assert_array_equal(one.y, again.y)
    np.testing.assert_allclose(one.y, regressor.y[0], rtol=1e-12)
    assert not np.array_equal(ji.problems.load("trained_regressor", seed=3).y, one.y)


def test_many_to_one_preimage_is_the_circle(regressor):
    # exact rejection draws from the posterior lie on the circle ||θ||² = y (up to noise and the
    # network's error) and spread all around it
    draws = np.asarray(regressor.reference["draws"])
    y = np.asarray(regressor.y)
    noise = regressor.options["noise"]
    for i in range(2):
        r2 = np.sum(draws[i] ** 2, 1)
        assert np.mean(np.abs(r2 - y[i]) < 3 * noise + 3 * regressor.info["test_rmse"]) > 0.97
        angle = np.arctan2(draws[i, :, 1], draws[i, :, 0])
        assert len(np.unique(np.floor((angle + np.pi) / (np.pi / 8)))) == 16  # every 1/16 of it
        pts = trained.preimage_points(regressor, y[i])
        np.testing.assert_allclose(np.sum(pts**2, 1), y[i], rtol=1e-12)


def test_map_repredicts_the_target(regressor):
    res = ji.solve_map(regressor.problem, regressor.y)
    out = ji.problems.evaluate(regressor, res)
    assert out["metric"] == "repredict"
    np.testing.assert_array_equal(out["value"], [1.0, 1.0])
    np.testing.assert_array_equal(out["in_preimage"], [1.0, 1.0])
    # independent: the found θ's squared norm is the target
    r2 = np.sum(np.asarray(res.theta) ** 2, -1)
    assert np.all(np.abs(r2 - np.asarray(regressor.y)) < 3 * regressor.info["test_rmse"] + 0.01)


def test_posterior_coverage_tells_full_from_collapsed(regressor, classifier):
    for b in (regressor, classifier):
        full = np.asarray(b.reference["draws"])[:, None]  # (batch, chains=1, draws, 2)
        good = ji.problems.evaluate(b, types.SimpleNamespace(samples=full))
        assert np.all(good["coverage"] > 0.95) and np.all(good["in_preimage"] > 0.95)
        assert np.all(good["value"] > 0.95)
        # a posterior collapsed onto the truth re-predicts, but covers little of the preimage
        collapsed = np.broadcast_to(np.asarray(b.theta_true)[:, None, None], full.shape)
        bad = ji.problems.evaluate(b, types.SimpleNamespace(samples=collapsed))
        assert np.all(bad["coverage"] < 0.3)


def test_classifier_preimage_is_the_sector(classifier):
    draws = np.asarray(classifier.reference["draws"])
    for i, k in enumerate(np.asarray(classifier.y).astype(int)):
        angle = np.arctan2(draws[i, :, 1], draws[i, :, 0]) + np.pi
        assert np.mean(np.floor(angle / (np.pi / 2)) == k) > 0.97
        # the posterior is uniform on the sector: its mean angle is the sector's middle
        mid = (k + 0.5) * np.pi / 2
        assert abs(np.angle(np.mean(np.exp(1j * (angle - mid))))) < 0.05


def test_bad_options():
    with pytest.raises(ValueError, match="noise"):
        ji.problems.load("trained_regressor", noise=-1.0)
    with pytest.raises(ValueError, match="num_classes"):
        ji.problems.load("trained_classifier", num_classes=1)
