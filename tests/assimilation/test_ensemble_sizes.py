"""A batch of experiments with different ensemble sizes in one `cycled_filter` call (a list of
ensembles, padded to the largest with rows that have no say): each experiment gives what it
gives run alone with its own N."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_enkf import _kalman, _l96_data, _linear_system

from jinverse.assimilation import (
    ETKF,
    LETKF,
    AdaptiveInflation,
    EnKF,
    EnKS,
    FilterWarning,
    IEnKS,
    ParticleFilter,
    cycled_filter,
)

SIZES = (8, 14)


@pytest.fixture(scope="module")
def l96():
    """Lorenz-96 (n = 40), 20 observation times (compiled once for the module)."""
    return _l96_data(20, members=max(SIZES))


def _alone_and_batched(method, sizes, data):
    """The batch of first ensembles ``E0[:N]`` (N in ``sizes``) in one call, and each alone with
    the key the batch gives it (EnKF: member i's perturbations are row i of one draw, the same
    rows whatever the ensemble size, with JAX's default partitionable threefry)."""
    step, truth, ys, E0 = data
    key = jax.random.key(7)
    Es = [E0[:N] for N in sizes]
    batch = cycled_filter(step, Es, ys, key=key, method=method, truth=truth, burn_in=5)
    alone = [cycled_filter(step, E, ys, key=k, method=method, truth=truth, burn_in=5)
             for E, k in zip(Es, jax.random.split(key, len(sizes)))]
    return batch, alone


@pytest.mark.parametrize("method", [ETKF(inflation=1.03), EnKF(inflation=1.1), LETKF(radius=4.0, inflation=1.02),
                                    EnKS(lag=3, inflation=AdaptiveInflation())],
                         ids=["etkf", "enkf", "letkf", "enks-adaptive"])
@pytest.mark.filterwarnings(f"ignore::{FilterWarning.__module__}.FilterWarning")  # EnKF, 8 members: overconfident
def test_mixed_sizes_equal_each_run_alone(method, l96):
    # Lorenz-96, 20 cycles: the padded experiment (8 of 14 rows members) and the full one give
    # their single runs' means, spreads, RMSEs, members, rank histograms and inflation factors;
    # 1e-9 leaves the rounding of a 14 x 14 against an 8 x 8 eigendecomposition room to grow
    # through 20 chaotic forecasts (it is ~1e-13 here)
    sizes = SIZES
    batch, alone = _alone_and_batched(method, sizes, l96)
    for b, (N, one) in enumerate(zip(sizes, alone)):
        np.testing.assert_allclose(batch.analysis[b], one.analysis, atol=1e-9)
        np.testing.assert_allclose(batch.forecast[b], one.forecast, atol=1e-9)
        np.testing.assert_allclose(batch.spread_analysis[b], one.spread_analysis, atol=1e-9)
        np.testing.assert_allclose(batch.spread_forecast[b], one.spread_forecast, atol=1e-9)
        np.testing.assert_allclose(batch.mean_rmse[b], one.mean_rmse, atol=1e-9)
        np.testing.assert_allclose(batch.ensemble[b, :N], one.ensemble, atol=1e-9)
        np.testing.assert_allclose(batch.inflation[b], one.inflation, atol=1e-9)
        np.testing.assert_array_equal(batch.rank_histogram[b, :N + 1], one.rank_histogram)
        assert float(jnp.sum(batch.rank_histogram[b, N + 1:])) == 0.0  # ranks only among the members
        if isinstance(method, EnKS):
            np.testing.assert_allclose(batch.smoothed[b], one.smoothed, atol=1e-9)
            np.testing.assert_allclose(batch.spread_smoothed[b], one.spread_smoothed, atol=1e-9)
    # the padding sits on the analysis mean, so it cannot blow up in the model
    np.testing.assert_allclose(batch.ensemble[0, sizes[0]:], jnp.broadcast_to(batch.analysis[0, -1], (6, 40)),
                               atol=1e-9)
    if isinstance(method, EnKS):
        assert np.ptp(np.asarray(batch.inflation[0])) > 0  # the adaptive factor did move


def test_mixed_sizes_follow_the_kalman_filter_on_a_linear_model():
    # independent of the code: a linear model maps sample moments exactly, so with N_b > n each
    # padded ETKF experiment is the Kalman filter from its own ensemble's sample mean and
    # covariance, whatever the other experiments' sizes
    M, H, r_std = _linear_system(3)
    n, k = M.shape[0], 6
    rng = np.random.default_rng(4)
    Es = [rng.standard_normal((N, n)) + 1.0 for N in (6, 11, 8)]
    ys = rng.standard_normal((k, H.shape[0]))
    res = cycled_filter(lambda x: jnp.asarray(M) @ x, Es, ys, key=jax.random.key(0), method=ETKF(),
                        obs_operator=H, obs_std=r_std)
    for b, E0 in enumerate(Es):
        means, covs = _kalman(M, H, r_std, E0.mean(0), np.cov(E0.T), ys)
        np.testing.assert_allclose(res.analysis[b], means, atol=1e-10)
        np.testing.assert_allclose(res.spread_analysis[b], np.sqrt(np.mean(np.diagonal(covs, axis1=1, axis2=2), -1)),
                                   atol=1e-10)
        np.testing.assert_allclose(np.cov(np.asarray(res.ensemble[b, :len(E0)]).T), covs[-1], atol=1e-10)


def test_mixed_sizes_with_model_error_equal_each_run_alone():
    # a stochastic forecast (model_std) and perturbed observations: member i's model noise and
    # perturbation come from row i of draws whose rows do not depend on the ensemble size, so
    # the padded experiment draws what it draws alone
    M, H, r_std = _linear_system(5)
    rng = np.random.default_rng(1)
    Es = [rng.standard_normal((N, 4)) for N in (5, 9)]
    ys = rng.standard_normal((6, H.shape[0]))
    key = jax.random.key(3)
    kw = dict(method=EnKF(), obs_operator=H, obs_std=r_std, model_std=0.2)
    batch = cycled_filter(lambda x: jnp.asarray(M) @ x, Es, ys, key=key, **kw)
    for b, (E, k) in enumerate(zip(Es, jax.random.split(key, 2))):
        one = cycled_filter(lambda x: jnp.asarray(M) @ x, E, ys, key=k, **kw)
        np.testing.assert_allclose(batch.analysis[b], one.analysis, atol=1e-10)
        np.testing.assert_allclose(batch.ensemble[b, :len(E)], one.ensemble, atol=1e-10)


def test_equal_sizes_in_a_list_are_the_stacked_batch():
    # no padding, no mask: the same program as a (B, N, n) array
    rng = np.random.default_rng(0)
    Es = [rng.standard_normal((5, 3)) for _ in range(2)]
    ys = rng.standard_normal((4, 3))
    kw = dict(key=jax.random.key(1), method="etkf")
    a, b = cycled_filter(jnp.sin, Es, ys, **kw), cycled_filter(jnp.sin, jnp.stack(Es), ys, **kw)
    np.testing.assert_array_equal(a.analysis, b.analysis)


@pytest.mark.parametrize("method, kwargs, match", [
    (ParticleFilter(), {}, r"ensemble: got ensembles of 3, 5 members with ParticleFilter, expected one size"),
    (IEnKS(lag=2), {}, r"ensemble: got ensembles of 3, 5 members with IEnKS, expected one size"),
    ("etkf", {"ensemble": [np.ones((3, 4)), np.ones((5, 3))]}, r"ensemble: got a list of shapes \[\(3, 4\), \(5, 3\)\]"),
    ("etkf", {"ensemble": [np.ones((1, 3)), np.ones((5, 3))]}, r"N_b >= 2 members"),
    ("etkf", {"ensemble": []}, r"ensemble: got a list of shapes \[\]"),
    (ETKF(members=jnp.ones(3, bool)), {}, r"ETKF.members: got .*, expected None"),
    ("etkf", {"observations": np.zeros((3, 4, 3))}, r"batch sizes: got ensemble 2, observations 3"),
])
def test_mixed_sizes_refusals(method, kwargs, match):
    args = dict(ensemble=[np.ones((3, 3)), np.ones((5, 3))], observations=np.zeros((4, 3)))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        cycled_filter(lambda x: x, args.pop("ensemble"), args.pop("observations"), key=jax.random.key(0),
                      method=method)
