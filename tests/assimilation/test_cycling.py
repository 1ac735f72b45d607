"""Time-varying observations, burn-in in time units and per-time statistics of `cycled_filter`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_enkf import _l96_data, _linear_system

from jinverse.assimilation import ETKF, IEnKS, TimeVarying, cycled_filter


def _kalman_tv(M, Hs, stds, mean, P, ys):
    """The exact Kalman filter with a different H_t (rows) and std per time."""
    means, covs = [], []
    for H, std, y in zip(Hs, stds, ys):
        mean, P = M @ mean, M @ P @ M.T
        K = P @ H.T @ np.linalg.inv(H @ P @ H.T + np.diag(std**2))
        mean, P = mean + K @ (y - H @ mean), (np.eye(len(mean)) - K @ H) @ P
        means.append(mean)
        covs.append(P)
    return np.array(means), np.array(covs)


def test_time_varying_operator_is_the_kalman_filter_with_h_of_t():
    # a linear model observed through two alternating operators (even times: components 0, 1;
    # odd: 2, 3, mixed), R per time and component: ETKF with N > n equals the exact Kalman
    # filter with H_t and R_t, whether H_t is a function of (i, x), a stack of matrices, or
    # one operator with the unobserved entries NaN
    M, _, _ = _linear_system(3)
    n, N, k = 4, 7, 8
    rng = np.random.default_rng(5)
    H0 = np.eye(n)[[0, 1]]
    H1 = np.array([[0.0, 0.0, 1.0, 0.5], [0.0, 0.3, 0.0, 1.0]])
    Hs = np.stack([H0 if i % 2 == 0 else H1 for i in range(k)])
    stds = rng.uniform(0.3, 0.9, (k, 2))
    ys = rng.standard_normal((k, 2))
    E0 = rng.standard_normal((N, n))
    means, covs = _kalman_tv(M, Hs, stds, E0.mean(0), np.cov(E0.T), ys)
    spread = np.sqrt(np.mean(np.diagonal(covs, axis1=1, axis2=2), -1))
    model = lambda x: jnp.asarray(M) @ x  # noqa: E731
    kw = dict(key=jax.random.key(0), method=ETKF(), obs_std=stds)
    fn = TimeVarying(lambda i, x: jnp.where(i % 2 == 0, jnp.asarray(H0) @ x, jnp.asarray(H1) @ x))
    for op in (fn, Hs):
        res = cycled_filter(model, E0, ys, obs_operator=op, **kw)
        np.testing.assert_allclose(res.analysis, means, atol=1e-9)
        np.testing.assert_allclose(res.spread_analysis, spread, atol=1e-9)
    # the same through a mask: observe H0 and H1 at every time, NaN where a row is not observed
    full = np.concatenate([H0, H1])
    ys4 = np.full((k, 4), np.nan)
    std4 = np.ones((k, 4))
    for i in range(k):
        cols = slice(0, 2) if i % 2 == 0 else slice(2, 4)
        ys4[i, cols], std4[i, cols] = ys[i], stds[i]
    # the iEnKS's too: it observes its whole window through H_t, R_t and the mask
    ienks = cycled_filter(model, E0, ys, obs_operator=fn, **dict(kw, method=IEnKS(lag=3, mda=True)))
    np.testing.assert_allclose(ienks.analysis, means, atol=1e-8)
    for method in (ETKF(), IEnKS(lag=3)):
        res = cycled_filter(
            model, E0, ys4, key=jax.random.key(0), method=method, obs_std=std4, obs_operator=full
        )
        np.testing.assert_allclose(res.analysis, means, atol=1e-8)
    # and without the time variation the answer is different (the test can tell)
    fixed = cycled_filter(model, E0, ys, obs_operator=H0, **kw)
    assert np.max(np.abs(np.asarray(fixed.analysis) - means)) > 0.1


def test_missing_observations_change_nothing_but_their_own_weight():
    # all of one time's observations missing: the analysis is the forecast (for every method
    # that goes through the whitened innovations, the EnKF's perturbations included)
    M, H, r_std = _linear_system(3)
    rng = np.random.default_rng(2)
    E0, ys = rng.standard_normal((6, 4)), rng.standard_normal((3, 3))
    ys[1] = np.nan
    for method in ("etkf", "enkf", "pf"):
        res = cycled_filter(
            lambda x: jnp.asarray(M) @ x,
            E0,
            ys,
            key=jax.random.key(1),
            method=method,
            obs_operator=H,
            obs_std=r_std,
        )
        np.testing.assert_allclose(res.analysis[1], res.forecast[1], atol=1e-12)
        assert np.all(np.isfinite(np.asarray(res.analysis)))


def test_burn_in_in_time_units_and_per_time_statistics():
    step, truth, ys, E0 = _l96_data(40, members=16)
    kw = dict(key=jax.random.key(0), method=ETKF(inflation=1.04), truth=truth)
    by_count = cycled_filter(step, E0, ys, burn_in=20, **kw)
    # dt 0.05, one step between observations: t_i = 0.05 (i + 1) <= 1.0 for the first 20
    by_time = cycled_filter(step, E0, ys, burn_in_time=1.0, dt=0.05, **kw)
    assert by_time.mean_rmse == by_count.mean_rmse
    np.testing.assert_array_equal(by_time.rank_histogram, by_count.rank_histogram)
    just_under = cycled_filter(step, E0, ys, burn_in_time=0.9999, dt=0.05, **kw)
    np.testing.assert_allclose(just_under.mean_rmse, np.mean(np.asarray(by_count.rmse_analysis)[19:]))
    # per observation time: each histogram counts all 40 components; their sum after the burn-in
    # is the time-aggregated histogram
    per = np.asarray(by_count.rank_histograms)
    assert per.shape == (40, 17) and np.all(per.sum(-1) == 40)
    np.testing.assert_array_equal(per[20:].sum(0), by_count.rank_histogram)
    np.testing.assert_allclose(by_count.inflation, 1.04)
    assert np.all(np.isnan(np.asarray(by_count.smoothed)))  # a filter has no smoothed states


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(burn_in_time=1.0), "dt: got None"),
        (dict(burn_in_time=1.0, dt=0.05, burn_in=3), "burn_in, burn_in_time: got 3 and 1.0"),
        (dict(burn_in_time=-1.0, dt=0.05), "burn_in_time: got -1.0"),
        (dict(burn_in_time=0.2, dt=0.05), r"burn_in: got 4 observation times \(burn_in_time 0.2\)"),
        (dict(obs_std=np.ones((3, 3))), r"obs_std: got .* \(4, 3\)"),
        (dict(obs_operator=np.zeros((3, 3, 3))), r"obs_operator: got a stack of shape \(3, 3, 3\)"),
        (dict(observations=np.full((4, 3), np.inf)), "observations: got inf"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(ensemble=np.ones((5, 3)), observations=np.zeros((4, 3)), key=jax.random.key(0))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        cycled_filter(lambda x: x, args.pop("ensemble"), args.pop("observations"), **args)


def test_batched_smoother_with_adaptive_inflation_equals_sequential_runs():
    # the new state (adaptive λ, the smoother's past ensembles) is carried per experiment
    from jinverse.assimilation import AdaptiveInflation, EnKS

    step, truth, ys, E0 = _l96_data(30)
    E = jnp.stack([E0, E0 + 0.1])
    key = jax.random.key(5)
    method = EnKS(lag=3, inflation=AdaptiveInflation())
    batch = cycled_filter(step, E, ys, key=key, method=method, truth=truth, burn_in=5)
    for b, k in enumerate(jax.random.split(key, 2)):
        one = cycled_filter(step, E[b], ys, key=k, method=method, truth=truth, burn_in=5)
        np.testing.assert_allclose(batch.smoothed[b], one.smoothed, atol=1e-9)
        np.testing.assert_allclose(batch.inflation[b], one.inflation, atol=1e-12)
    assert np.ptp(np.asarray(batch.inflation[0])) > 0  # it did adapt
