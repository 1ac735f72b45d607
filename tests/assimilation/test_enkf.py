import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinverse as ji
from jinverse import assimilation as da
from jinverse.assimilation import ETKF, LETKF, EnKF, ParticleFilter, cycled_filter, gaspari_cohn


def _linear_system(seed=0, n=4, m=3):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    M = 0.95 * Q + 0.1 * rng.standard_normal((n, n))
    H = rng.standard_normal((m, n))
    r_std = rng.uniform(0.3, 0.8, m)
    return M, H, r_std


def _kalman(M, H, r_std, mean, P, ys):
    """The exact Kalman filter: forecast with M, analyse with each row of ys."""
    R = np.diag(r_std**2)
    means, covs = [], []
    for y in ys:
        mean, P = M @ mean, M @ P @ M.T
        K = P @ H.T @ np.linalg.inv(H @ P @ H.T + R)
        mean, P = mean + K @ (y - H @ mean), (np.eye(len(mean)) - K @ H) @ P
        means.append(mean)
        covs.append(P)
    return np.array(means), np.array(covs)


def test_etkf_one_analysis_is_the_kalman_analysis():
    # N > n: the forecast sample covariance is full rank and the ETKF analysis ensemble has
    # exactly the Kalman analysis mean and covariance of the inflated sample covariance.
    n, N, infl = 4, 9, 1.1
    _, H, r_std = _linear_system(1, n)
    rng = np.random.default_rng(2)
    E0 = rng.standard_normal((N, n)) @ np.diag([1.0, 2.0, 0.5, 1.5]) + 3.0
    y = rng.standard_normal((1, H.shape[0]))
    res = cycled_filter(lambda x: x, E0, y, key=jax.random.key(0), method=ETKF(inflation=infl),
                        obs_operator=H, obs_std=r_std)
    P = infl**2 * np.cov(E0.T)
    mean, cov = _kalman(np.eye(n), H, r_std, E0.mean(0), P, y)
    Ea = np.asarray(res.ensemble)
    np.testing.assert_allclose(Ea.mean(0), mean[0], atol=1e-10)
    np.testing.assert_allclose(np.cov(Ea.T), cov[0], atol=1e-10)
    np.testing.assert_allclose(res.analysis[0], mean[0], atol=1e-10)
    np.testing.assert_allclose(res.spread_analysis[0], np.sqrt(np.mean(np.diag(cov[0]))), atol=1e-10)


def test_etkf_cycles_follow_the_kalman_filter_on_a_linear_model():
    # A linear model maps sample moments exactly, so with N > n every cycle of ETKF equals the
    # Kalman filter started from the first ensemble's sample mean and covariance.
    M, H, r_std = _linear_system(3)
    n, N, k = M.shape[0], 7, 6
    rng = np.random.default_rng(4)
    E0 = rng.standard_normal((N, n))
    ys = rng.standard_normal((k, H.shape[0]))
    res = cycled_filter(lambda x: jnp.asarray(M) @ x, E0, ys, key=jax.random.key(0), method="etkf",
                        obs_operator=H, obs_std=r_std)
    means, covs = _kalman(M, H, r_std, E0.mean(0), np.cov(E0.T), ys)
    np.testing.assert_allclose(res.analysis, means, atol=1e-9)
    np.testing.assert_allclose(res.spread_analysis, np.sqrt(np.mean(np.diagonal(covs, axis1=1, axis2=2), -1)),
                               atol=1e-9)
    np.testing.assert_allclose(np.cov(np.asarray(res.ensemble).T), covs[-1], atol=1e-9)


def test_stochastic_enkf_large_ensemble_matches_the_kalman_filter():
    # Perturbed observations: with N = 4000 the mean and covariance agree with the Kalman
    # filter's to Monte-Carlo error (std error of a mean ~ sqrt(P_ii / N), of a covariance
    # entry ~ sqrt(2 / N) relative).
    M, H, r_std = _linear_system(5, n=3, m=2)
    N, k = 4000, 3
    rng = np.random.default_rng(6)
    P0 = np.diag([1.0, 0.5, 2.0])
    ys = rng.standard_normal((k, 2))
    E0 = rng.multivariate_normal(np.zeros(3), P0, size=N)
    res = cycled_filter(lambda x: jnp.asarray(M) @ x, E0, ys, key=jax.random.key(1), method=EnKF(),
                        obs_operator=H, obs_std=r_std)
    # reference from the same first ensemble's moments: only the analysis noise is random
    means, covs = _kalman(M, H, r_std, E0.mean(0), np.cov(E0.T), ys)
    se = np.sqrt(np.diagonal(covs, axis1=1, axis2=2) / N)
    assert np.all(np.abs(np.asarray(res.analysis) - means) < 5 * se)
    rel = np.linalg.norm(np.cov(np.asarray(res.ensemble).T) - covs[-1]) / np.linalg.norm(covs[-1])
    assert rel < 5 * np.sqrt(2.0 / N) * np.sqrt(3)


def test_particle_filter_weights_give_the_posterior_mean():
    # One analysis of a linear-Gaussian model: the importance-weighted prior draws estimate the
    # Kalman analysis mean; the error is about sqrt(P_a / ESS).
    _, H, r_std = _linear_system(7, n=2, m=2)
    N = 20000
    rng = np.random.default_rng(8)
    E0 = rng.standard_normal((N, 2))
    y = np.array([[0.5, -0.3]])
    res = cycled_filter(lambda x: x, E0, y, key=jax.random.key(2), method=ParticleFilter(jitter=0.0),
                        obs_operator=H, obs_std=r_std)
    means, covs = _kalman(np.eye(2), H, r_std, np.zeros(2), np.eye(2), y)
    logw = -0.5 * np.sum(((y - E0 @ H.T) / r_std) ** 2, -1)
    w = np.exp(logw - logw.max())
    ess = w.sum() ** 2 / np.sum(w**2)
    assert ess > 500
    se = np.sqrt(np.diag(covs[0]) / ess)
    assert np.all(np.abs(np.asarray(res.analysis[0]) - means[0]) < 5 * se + 5 * np.sqrt(1.0 / N))
    # resampled (jitter 0): every analysis member is one of the forecast members
    Ea = np.asarray(res.ensemble)
    assert np.all(np.isin(Ea[:, 0], E0[:, 0]))


def test_gaspari_cohn_values():
    c = 2.0
    d = np.array([0.0, c, 2 * c, 3 * c, -c])
    np.testing.assert_allclose(gaspari_cohn(d, c), [1.0, 5.0 / 24.0, 0.0, 0.0, 5.0 / 24.0], atol=1e-14)
    eps = 1e-7  # continuous at the knots r = 1 and r = 2
    for r in (1.0, 2.0):
        lo, hi = gaspari_cohn(np.array([r - eps, r + eps]) * c, c)
        assert abs(lo - hi) < 1e-6
    r = np.linspace(0, 2.5, 101)
    g = np.asarray(gaspari_cohn(r, 1.0))
    assert np.all(np.diff(g) <= 1e-15) and np.all(g >= 0)


def _l96_data(n_steps=60, seed=0, members=12):
    from jinverse.problems.dynamics import Flow

    flow = Flow("lorenz96", jnp.array([8.0]), 0.05)
    x0 = flow(8.0 + 0.01 * jax.random.normal(jax.random.key(seed), (40,)), 500)
    truth, ys = da.twin_experiment(flow.step, x0, n_steps=n_steps, key=jax.random.key(seed + 1))
    E0 = x0 + jax.random.normal(jax.random.key(seed + 2), (members, 40))
    return flow.step, truth, ys, E0


def test_letkf_limits():
    step, truth, ys, E0 = _l96_data(3)
    key = jax.random.key(0)
    # a radius far beyond the domain: every taper ~1, the LETKF is the ETKF
    wide = cycled_filter(step, E0, ys, key=key, method=LETKF(radius=1e6, inflation=1.02), truth=truth)
    etkf = cycled_filter(step, E0, ys, key=key, method=ETKF(inflation=1.02), truth=truth)
    np.testing.assert_allclose(wide.ensemble, etkf.ensemble, atol=1e-7)
    # a radius under half a grid spacing (2c < 1): component i sees only observation i, so it
    # is the ETKF of that one component with that one observation
    E1 = np.asarray(E0)
    y1 = np.asarray(ys[:1])
    narrow = cycled_filter(lambda x: x, E1, y1, key=key, method=LETKF(radius=0.2))
    for i in (0, 17, 39):
        one = cycled_filter(lambda x: x, E1[:, i:i + 1], y1[:, i:i + 1], key=key, method=ETKF())
        np.testing.assert_allclose(narrow.ensemble[:, i], one.ensemble[:, 0], atol=1e-12)


def test_lorenz96_etkf_and_letkf_track_the_truth():
    # global ETKF needs N > ~14 (the unstable dimension of Lorenz-96); localised, 10 do
    step, truth, ys, E0 = _l96_data(400, members=20)
    for method in (ETKF(inflation=1.03), LETKF(radius=4.0, inflation=1.04)):
        res = cycled_filter(step, E0[:10] if isinstance(method, LETKF) else E0, ys, key=jax.random.key(0),
                            method=method, truth=truth, burn_in=100)
        # climatological spread of Lorenz-96 is ~3.6 and σ_o = 1: a working filter is far below both
        assert res.mean_rmse < 0.4, (method, res.mean_rmse)
        assert 0.5 < res.mean_spread / res.mean_rmse < 2.0
        assert res.rank_histogram.sum() == 300 * 40


def test_batched_experiments_equal_sequential_runs():
    step, truth, ys, E0 = _l96_data(30)
    E = jnp.stack([E0, E0 + 0.1, E0 - 0.1])
    key = jax.random.key(5)
    batch = cycled_filter(step, E, ys, key=key, method=EnKF(inflation=1.02), truth=truth, burn_in=5)
    assert batch.analysis.shape == (3, 30, 40) and batch.mean_rmse.shape == (3,)
    keys = jax.random.split(key, 3)
    for b in range(3):
        one = cycled_filter(step, E[b], ys, key=keys[b], method=EnKF(inflation=1.02), truth=truth, burn_in=5)
        np.testing.assert_allclose(batch.analysis[b], one.analysis, atol=1e-9)
        np.testing.assert_allclose(batch.mean_rmse[b], one.mean_rmse, atol=1e-9)


def test_a_sweep_of_settings_is_one_batched_run():
    step, truth, ys, E0 = _l96_data(20)
    key = jax.random.key(2)
    sweep = cycled_filter(step, E0, ys, key=key, method=LETKF(radius=[2.0, 5.0], inflation=1.03), truth=truth)
    assert sweep.analysis.shape == (2, 20, 40) and sweep.mean_rmse.shape == (2,)
    keys = jax.random.split(key, 2)
    for b, radius in enumerate((2.0, 5.0)):
        one = cycled_filter(step, E0, ys, key=keys[b], method=LETKF(radius=radius, inflation=1.03), truth=truth)
        np.testing.assert_allclose(sweep.analysis[b], one.analysis, atol=1e-9)
    with pytest.raises(ValueError, match="batch sizes: got ensemble 2, inflation 3"):
        cycled_filter(step, jnp.stack([E0, E0]), ys, key=key, method=ETKF(inflation=[1.0, 1.1, 1.2]))


def test_a_diverged_run_is_flagged():
    # an exploding model: the analyses overflow to inf/NaN; the caller is told, with when
    with pytest.warns(da.FilterWarning, match="the run diverged .* from observation time"):
        res = cycled_filter(lambda x: 1e200 * x, np.random.default_rng(0).standard_normal((5, 2)),
                            np.zeros((4, 2)), key=jax.random.key(0), truth=np.zeros((5, 2)))
    assert np.isnan(res.mean_rmse)
    assert res.status == ji.status.FilterStatus.NONFINITE and not res.ok


def test_new_data_same_shapes_does_not_retrace():
    traces = []

    def step(x):
        traces.append(1)
        return 0.9 * x

    rng = np.random.default_rng(0)
    for _ in range(2):
        cycled_filter(step, rng.standard_normal((5, 3)), rng.standard_normal((4, 3)), key=jax.random.key(0))
    assert len(traces) == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(ensemble=np.zeros((1, 3))), "ensemble: got shape"),
    (dict(observations=np.zeros((4, 2))), "observations: got 2 per time"),
    (dict(truth=np.zeros((4, 3))), "truth: got shape"),
    (dict(method="letkf"), "method: got 'letkf'"),
    (dict(method="kalman"), "method: got 'kalman'"),
    (dict(method=ETKF(inflation=-1.0)), "ETKF.inflation: got -1.0"),
    (dict(method=ParticleFilter(jitter=float("nan"))), "ParticleFilter.jitter"),
    (dict(burn_in=4), "burn_in: got 4"),
    (dict(obs_std=-1.0), "obs_std: got -1.0"),
    (dict(obs_operator=lambda x: x[:2], observations=np.zeros((4, 2)), method=LETKF(radius=1.0)),
     "obs_locations: got None"),
    (dict(obs_locations=np.zeros(2)), "obs_locations: got shape"),
    (dict(ensemble=np.zeros((2, 5, 3)), observations=np.zeros((3, 4, 3))), "batch sizes: got ensemble 2, "
                                                                            "observations 3"),
    (dict(method=ETKF(inflation=np.ones((2, 2)))), "ETKF.inflation: got"),
    (dict(obs_every=0), "obs_every"),
])
def test_bad_input(kwargs, match):
    args = dict(ensemble=np.ones((5, 3)), observations=np.zeros((4, 3)), key=jax.random.key(0))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        cycled_filter(lambda x: x, args.pop("ensemble"), args.pop("observations"), **args)


def test_an_overconfident_filter_is_warned_about():
    # Lorenz-96, 20 members without inflation: the ensemble collapses onto a wrong state (RMSE of
    # the climatology, spread ~0.2); a tuned filter (1.04) stays near spread ~ RMSE, and is silent
    step, truth, ys, E0 = _l96_data(300, members=20)
    with pytest.warns(da.FilterWarning, match="overconfident ensemble"):
        lost = cycled_filter(step, E0, ys, key=jax.random.key(0), method=ETKF(inflation=1.0), truth=truth,
                             burn_in=100)
    assert lost.mean_rmse > da.cycling.DIVERGENCE_RATIO * lost.mean_spread
    assert lost.status == ji.status.FilterStatus.OVERCONFIDENT and not lost.ok
    with warnings.catch_warnings():
        warnings.simplefilter("error", da.FilterWarning)
        good = cycled_filter(step, E0, ys, key=jax.random.key(0), method=ETKF(inflation=1.04), truth=truth,
                             burn_in=100)
    assert good.mean_rmse < 0.4 and good.status == 0 and good.ok
    # a batch names how many experiments were lost, and flags which
    with pytest.warns(da.FilterWarning, match="1 of 2 experiments"):
        both = cycled_filter(step, E0, ys, key=jax.random.key(0), method=ETKF(inflation=jnp.array([1.0, 1.04])),
                      truth=truth, burn_in=100)
    np.testing.assert_array_equal(both.ok, [False, True])


def test_model_error_forecast_follows_the_kalman_filter_with_q():
    # a random walk x' = x + η, η ~ N(0, q), observed with noise r: the exact Kalman filter has
    # P_f = P_a + q; an ensemble forecast with model_std = sqrt(q) must keep that spread (without
    # it the ensemble collapses: P_a -> 0); N = 500 members (ensemble-space transforms cost N^3),
    # sampling error of a variance ~ sqrt(2/N) = 6%
    q, r, N, k = 0.25, 1.0, 500, 15
    rng = np.random.default_rng(3)
    ys = rng.standard_normal((k, 1)) * 2.0
    E0 = rng.standard_normal((N, 1))
    m, P, means, variances = 0.0, 1.0, [], []
    for y in ys[:, 0]:
        P = P + q
        K = P / (P + r)
        m, P = m + K * (y - m), (1 - K) * P
        means.append(m)
        variances.append(P)
    for method in (ETKF(), EnKF()):
        res = cycled_filter(lambda x: x, E0, ys, key=jax.random.key(1), method=method, obs_std=np.sqrt(r),
                            model_std=np.sqrt(q))
        np.testing.assert_allclose(np.asarray(res.spread_analysis) ** 2, variances, rtol=0.25)
        np.testing.assert_allclose(np.asarray(res.analysis)[:, 0], means, atol=6 * np.sqrt(variances[-1] / N) + 0.03)
    perfect = cycled_filter(lambda x: x, E0, ys, key=jax.random.key(1), method=ETKF(), obs_std=np.sqrt(r))
    assert perfect.spread_analysis[-1] ** 2 < 0.5 * variances[-1]  # the test can tell the difference


def test_twin_experiment_with_model_error_and_its_refusals():
    step = lambda x: 0.9 * x
    truth, ys = da.twin_experiment(step, jnp.zeros(3), n_steps=4000, key=jax.random.key(0), model_std=[0.1, 0.2, 0.3])
    increments = np.asarray(truth[1:] - 0.9 * truth[:-1])
    np.testing.assert_allclose(increments.std(0), [0.1, 0.2, 0.3], rtol=0.06)  # 4000 draws: ~1.1% sd
    with pytest.raises(ValueError, match="model_std: got -1"):
        cycled_filter(step, jnp.zeros((4, 3)), ys[:5], key=jax.random.key(0), model_std=-1.0)
    with pytest.raises(ValueError, match=r"model_std: got \[1.0, 2.0\].*\(3\)"):
        cycled_filter(step, jnp.zeros((4, 3)), ys[:5], key=jax.random.key(0), model_std=[1.0, 2.0])
    with pytest.raises(ValueError, match="model_std.*IEnKS"):
        cycled_filter(step, jnp.ones((4, 3)), ys[:5], key=jax.random.key(0), method=da.IEnKS(lag=2), model_std=0.1)
