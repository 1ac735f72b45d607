import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_enkf import _kalman, _l96_data, _linear_system

from jinverse.assimilation import ETKF, IEnKS, cycled_filter, twin_experiment


@pytest.mark.parametrize("lag", [1, 3])
def test_ienks_filtering_analysis_is_the_kalman_filter_on_a_linear_model(lag):
    # No model noise and a linear model: the smoothed ensemble at the window start, forecast to
    # the newest observation, has the Kalman filter's moments (N > n: the sample covariance
    # spans the state); Gauss-Newton is exact in one step, the second finds Δw = 0.
    M, H, r_std = _linear_system(3)
    n, N, k = M.shape[0], 7, 8
    rng = np.random.default_rng(4)
    E0 = rng.standard_normal((N, n))
    ys = rng.standard_normal((k, H.shape[0]))
    res = cycled_filter(
        lambda x: jnp.asarray(M) @ x,
        E0,
        ys,
        key=jax.random.key(0),
        method=IEnKS(lag=lag),
        obs_operator=H,
        obs_std=r_std,
    )
    means, covs = _kalman(M, H, r_std, E0.mean(0), np.cov(E0.T), ys)
    np.testing.assert_allclose(res.analysis, means, atol=1e-8)
    np.testing.assert_allclose(
        res.spread_analysis, np.sqrt(np.mean(np.diagonal(covs, axis1=1, axis2=2), -1)), atol=1e-8
    )
    np.testing.assert_allclose(np.cov(np.asarray(res.ensemble).T), covs[-1], atol=1e-8)
    # the forecast is the Kalman forecast of the previous analysis
    np.testing.assert_allclose(res.forecast[1:], means[:-1] @ M.T, atol=1e-8)


def test_ienks_settings_sweep_in_one_call():
    M, H, r_std = _linear_system(3)
    rng = np.random.default_rng(4)
    E0, ys = rng.standard_normal((7, 4)), rng.standard_normal((5, 3))
    kw = dict(key=jax.random.key(0), obs_operator=H, obs_std=r_std)
    sweep = cycled_filter(
        lambda x: jnp.asarray(M) @ x, E0, ys, method=IEnKS(lag=2, inflation=[1.0, 1.1]), **kw
    )
    for b, infl in enumerate((1.0, 1.1)):
        one = cycled_filter(lambda x: jnp.asarray(M) @ x, E0, ys, method=IEnKS(lag=2, inflation=infl), **kw)
        np.testing.assert_allclose(sweep.analysis[b], one.analysis, atol=1e-9)


def test_ienks_lag_beats_the_filter_on_lorenz96():
    # Sakov 2008 setup, 300 observation times: the iEnKS's filtering analysis with a window of
    # 8 intervals is more accurate than the ETKF's on the same data (Bocquet and Sakov 2014).
    step, truth, ys, E0 = _l96_data(300, members=20)
    kw = dict(key=jax.random.key(0), truth=truth, burn_in=100)
    etkf = cycled_filter(step, E0, ys, method=ETKF(inflation=1.02), **kw)
    ienks = cycled_filter(step, E0, ys, method=IEnKS(lag=8, inflation=1.01), **kw)
    assert ienks.mean_rmse < 0.95 * etkf.mean_rmse < 0.3


@pytest.mark.parametrize(
    "flt, match",
    [(IEnKS(lag=0), "IEnKS.lag: got 0"), (IEnKS(n_iter=2.5), "IEnKS.n_iter"), (IEnKS(tol=-1.0), "IEnKS.tol")],
)
def test_bad_settings(flt, match):
    with pytest.raises(ValueError, match=match):
        cycled_filter(lambda x: x, np.ones((4, 2)), np.zeros((3, 2)), key=jax.random.key(0), method=flt)


@pytest.mark.parametrize("lag", [2, 4])
def test_ienks_mda_equals_the_single_assimilation_smoother_on_a_linear_model(lag):
    # MDA assimilates each observation in `lag` windows with R inflated by `lag`; the balancing
    # analysis completes every weight to 1, so for a linear model (N > n: exact moments) its
    # filtering analysis is the Kalman filter's and its smoothed states (`lag` times back) are the
    # SDA smoother's, which are the EnKS's with the same lag (the RTS smoother on the data up to
    # `lag` times later: tests/assimilation/test_enks.py)
    from jinverse.assimilation import EnKS

    M, H, r_std = _linear_system(3)
    n, N, k = M.shape[0], 7, 9
    rng = np.random.default_rng(6)
    E0, ys = rng.standard_normal((N, n)), rng.standard_normal((k, H.shape[0]))
    kw = dict(key=jax.random.key(0), obs_operator=H, obs_std=r_std)
    model = lambda x: jnp.asarray(M) @ x  # noqa: E731
    mda = cycled_filter(model, E0, ys, method=IEnKS(lag=lag, mda=True), **kw)
    sda = cycled_filter(model, E0, ys, method=IEnKS(lag=lag), **kw)
    enks = cycled_filter(model, E0, ys, method=EnKS(lag=lag), **kw)
    means, _ = _kalman(M, H, r_std, E0.mean(0), np.cov(E0.T), ys)
    np.testing.assert_allclose(mda.analysis, means, atol=1e-8)
    np.testing.assert_allclose(mda.smoothed, sda.smoothed, atol=1e-8)
    np.testing.assert_allclose(mda.spread_smoothed, sda.spread_smoothed, atol=1e-8)
    np.testing.assert_allclose(sda.smoothed, enks.smoothed, atol=1e-8)
    np.testing.assert_allclose(sda.spread_smoothed, enks.spread_smoothed, atol=1e-8)
    # smoothing changed the states (the smoothed-state comparisons are not trivially equal)
    assert np.max(np.abs(np.asarray(sda.smoothed[0]) - np.asarray(sda.analysis[0]))) > 1e-2


def test_ienks_mda_on_lorenz63_sakov2012():
    # Sakov 2012's Lorenz-63 configuration (dt 0.01, all observed every 25 steps, R = 2 I),
    # N = 10, 300 observation times: with a long window (lag 6) MDA's smoothed RMSE is well
    # under SDA's, whose long-window cost is strongly non-quadratic (Bocquet and Sakov 2014)
    from jinverse.problems.dynamics import Flow

    flow = Flow("lorenz63", jnp.array([10.0, 28.0, 8.0 / 3.0]), 0.01)
    x0 = flow(jnp.array([1.509, -1.531, 25.46]), 500)
    truth, ys = twin_experiment(
        flow.step, x0, n_steps=300 * 25, obs_every=25, obs_std=np.sqrt(2.0), key=jax.random.key(1)
    )
    E0 = x0 + np.sqrt(2.0) * jax.random.normal(jax.random.key(2), (10, 3))
    kw = dict(key=jax.random.key(0), obs_every=25, obs_std=np.sqrt(2.0), truth=truth, burn_in=64)
    mda = cycled_filter(flow.step, E0, ys, method=IEnKS(lag=6, mda=True, inflation=1.01), **kw)
    sda = cycled_filter(flow.step, E0, ys, method=IEnKS(lag=6, inflation=1.01), **kw)
    # measured: MDA 0.262 filtering, 0.148 smoothed; SDA 0.317, 0.214
    assert mda.mean_rmse < 0.3 and mda.mean_rmse_smoothed < 0.8 * sda.mean_rmse_smoothed
