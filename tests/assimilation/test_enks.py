"""The ensemble Kalman smoother against the Rauch-Tung-Striebel smoother (closed form)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_enkf import _linear_system

from jinverse.assimilation import ETKF, EnKS, cycled_filter


def _rts(M, H, r_std, q, mean, P, ys):
    """Kalman filter then the RTS backward pass: smoothed means and covariances at the
    observation times (one model step between them, model noise Q = q I per step)."""
    R, n = np.diag(r_std**2), len(mean)
    mf, Pf, ma, Pa = [], [], [], []
    for y in ys:
        mean, P = M @ mean, M @ P @ M.T + q * np.eye(n)
        mf.append(mean)
        Pf.append(P)
        K = P @ H.T @ np.linalg.inv(H @ P @ H.T + R)
        mean, P = mean + K @ (y - H @ mean), (np.eye(n) - K @ H) @ P
        ma.append(mean)
        Pa.append(P)
    ms, Ps = [ma[-1]], [Pa[-1]]
    for j in range(len(ys) - 2, -1, -1):
        G = Pa[j] @ M.T @ np.linalg.inv(Pf[j + 1])
        ms.insert(0, ma[j] + G @ (ms[0] - mf[j + 1]))
        Ps.insert(0, Pa[j] + G @ (Ps[0] - Pf[j + 1]) @ G.T)
    return np.array(ms), np.array(Ps)


@pytest.mark.parametrize("lag", [None, 3])
def test_enks_is_the_rts_smoother_on_a_linear_model(lag):
    # perfect linear model, N > n: the ensemble carries the sample moments exactly, so the EnKS
    # (full or fixed-lag) equals the RTS smoother from the first ensemble's sample mean and
    # covariance; with lag L, time j is smoothed with the observations up to j + L
    M, H, r_std = _linear_system(3)
    n, N, k = 4, 9, 8
    rng = np.random.default_rng(4)
    E0, ys = rng.standard_normal((N, n)), rng.standard_normal((k, 3))
    res = cycled_filter(
        lambda x: jnp.asarray(M) @ x,
        E0,
        ys,
        key=jax.random.key(0),
        method=EnKS(lag=lag),
        obs_operator=H,
        obs_std=r_std,
    )
    for j in range(k):
        last = k if lag is None else min(k, j + lag + 1)
        ms, Ps = _rts(M, H, r_std, 0.0, E0.mean(0), np.cov(E0.T), ys[:last])
        np.testing.assert_allclose(res.smoothed[j], ms[j], atol=1e-9)
        np.testing.assert_allclose(res.spread_smoothed[j], np.sqrt(np.mean(np.diag(Ps[j]))), atol=1e-9)
    # the filtering statistics are the ETKF's: the last time's smoothed state is its analysis
    np.testing.assert_allclose(res.smoothed[-1], res.analysis[-1], atol=1e-12)
    assert np.max(np.abs(np.asarray(res.smoothed[0] - res.analysis[0]))) > 1e-2  # smoothing did something


def test_enks_with_model_error_matches_rts_within_monte_carlo_error():
    # model error Q per step (a stochastic forecast): the ensemble's moments are now Monte-Carlo
    # estimates; with N = 1000 the smoothed means agree with RTS to a few sqrt(P_s / N) (plus the
    # covariance error's effect on the gain) and the variances to a few sqrt(2 / N) relative
    M, H, r_std = _linear_system(5, n=3, m=2)
    q, N, k = 0.3, 1000, 6
    rng = np.random.default_rng(6)
    P0 = np.diag([1.0, 0.5, 2.0])
    E0 = rng.multivariate_normal(np.zeros(3), P0, size=N)
    ys = 2.0 * rng.standard_normal((k, 2))
    res = cycled_filter(
        lambda x: jnp.asarray(M) @ x,
        E0,
        ys,
        key=jax.random.key(3),
        method="enks",
        obs_operator=H,
        obs_std=r_std,
        model_std=np.sqrt(q),
    )
    ms, Ps = _rts(M, H, r_std, q, E0.mean(0), np.cov(E0.T), ys)
    var = np.diagonal(Ps, axis1=1, axis2=2)
    se = np.sqrt(var / N)
    assert np.all(np.abs(np.asarray(res.smoothed) - ms) < 6 * se + 0.05 * np.sqrt(var)), (res.smoothed, ms)
    np.testing.assert_allclose(np.asarray(res.spread_smoothed) ** 2, var.mean(-1), rtol=6 * np.sqrt(2.0 / N))
    # and the smoother is not the filter (the check can fail): the first time's means differ
    assert np.max(np.abs(np.asarray(res.analysis[0]) - ms[0])) > 10 * se[0].max()


def test_enks_smoothed_rmse_on_lorenz96():
    from test_enkf import _l96_data

    step, truth, ys, E0 = _l96_data(150, members=20)
    kw = dict(key=jax.random.key(0), truth=truth, burn_in=50)
    res = cycled_filter(step, E0, ys, method=EnKS(lag=4, inflation=1.03), **kw)
    # the smoother uses later observations: its RMSE is well under the filter's; the filter is the ETKF
    assert res.mean_rmse_smoothed < 0.8 * res.mean_rmse < 0.4
    etkf = cycled_filter(step, E0, ys, method=ETKF(inflation=1.03), **kw)
    np.testing.assert_allclose(res.analysis[:30], etkf.analysis[:30], atol=1e-8)
