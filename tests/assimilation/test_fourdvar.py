import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinverse as ji
from jinverse import assimilation
from jinverse.problems.dynamics import cycled_4dvar as problems_cycled_4dvar


def _linear_4dvar(M, H, B, r_std, xb, ys):
    """Closed-form strong-constraint 4D-Var analysis of one window of a linear model:
    ``xb + (B⁻¹ + Σ G_kᵀ R⁻¹ G_k)⁻¹ Σ G_kᵀ R⁻¹ (y_k - G_k xb)`` with ``G_k = H M^k``."""
    Rinv = np.diag(1.0 / np.broadcast_to(r_std, (H.shape[0],)) ** 2)
    A, b, G = np.linalg.inv(B), np.zeros(len(xb)), np.eye(len(xb))
    for y in ys:
        G = M @ G
        Gk = H @ G
        A = A + Gk.T @ Rinv @ Gk
        b = b + Gk.T @ Rinv @ (y - Gk @ xb)
    return xb + np.linalg.solve(A, b)


def _reference_cycles(M, H, B, r_std, xb, ys, per):
    """Cycles of `_linear_4dvar`, ``M`` the model over one observation interval."""
    xas = []
    for c in range(len(ys) // per):
        xa = _linear_4dvar(M, H, B, r_std, xb, ys[c * per:(c + 1) * per])
        xas.append(xa)
        xb = np.linalg.matrix_power(M, per) @ xa
    return np.array(xas)


def test_each_observation_time_is_assimilated_once():
    # The user's own model (identity), truth, observations and first background: each window
    # W = 4 must use exactly the 4 observations in (c W, (c+1) W], none twice (the old
    # cycled_4dvar observed every window boundary in two windows, with two noise draws).
    rng = np.random.default_rng(0)
    n_cycles, window, sb, so = 3, 4, 0.7, 0.5
    truth = np.zeros((n_cycles * window + 1, 2))
    ys = so * rng.standard_normal((n_cycles * window, 2))
    xb = np.array([0.3, -0.2])
    res = problems_cycled_4dvar(lambda x: x, truth=truth, observations=ys, background=xb, window=window,
                                background_std=sb, obs_std=so, burn_in=0)
    steps = np.asarray(res.obs_steps).ravel()
    assert len(steps) == len(np.unique(steps)) == n_cycles * window
    np.testing.assert_array_equal(np.sort(steps), np.arange(1, n_cycles * window + 1))
    I2 = np.eye(2)
    ref = _reference_cycles(I2, I2, sb**2 * I2, so, xb, ys, window)
    # Gauss-Newton's first step is exact on a linear model; tol 1e-9 on the gradient
    np.testing.assert_allclose(res.analysis, ref, atol=1e-8)
    np.testing.assert_allclose(res.forecast, res.analysis, atol=1e-12)  # identity model: no change
    assert res.status_counts() == {"CONVERGED": n_cycles}


def test_twin_experiment_draws_one_observation_per_time():
    res = problems_cycled_4dvar("lorenz63", n_cycles=4, burn_in=1, window=25, obs_every=5, seed=1,
                                max_steps=100)
    assert res.observations.shape == (4 * 5, 3)
    np.testing.assert_array_equal(np.asarray(res.obs_steps).ravel(), np.arange(5, 101, 5))
    # the last observation of window c is of the truth at the next window start, with σ_o = 1 noise
    err = np.asarray(res.observations[4::5][:-1] - res.truth[1:])
    assert np.all(np.abs(err) < 5.0) and np.std(err) > 0.2


@pytest.mark.parametrize("callables", [False, True])
def test_linear_model_matrix_operator_full_B(callables):
    # A linear model, an observation matrix (2 of 3 mixed), a full B and R per component: every
    # cycle's analysis is the closed-form linear 4D-Var analysis.
    rng = np.random.default_rng(1)
    n, m, window, obs_every, n_cycles = 3, 2, 4, 2, 3
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    M = 0.98 * Q
    H = rng.standard_normal((m, n))
    L = rng.standard_normal((n, n))
    B = L @ L.T + 0.5 * np.eye(n)
    r_std = np.array([0.3, 0.6])
    per = window // obs_every
    ys = rng.standard_normal((n_cycles * per, m))
    xb = rng.standard_normal(n)
    Mj = jnp.asarray(M)
    kw = dict(obs_operator=(lambda x: jnp.asarray(H) @ x) if callables else H,
              B=(lambda v: jnp.asarray(B) @ v) if callables else B)
    res = assimilation.cycled_4dvar(lambda x: Mj @ x, xb, ys, window=window, obs_every=obs_every,
                                    obs_std=r_std, **kw)
    ref = _reference_cycles(np.linalg.matrix_power(M, obs_every), H, B, r_std, xb, ys, per)
    np.testing.assert_allclose(res.analysis, ref, atol=1e-8)
    assert np.all(np.isnan(res.rmse_filter))  # no truth given


def test_second_call_with_new_data_does_not_retrace():
    traces = []

    def step(x):
        traces.append(1)
        return 0.9 * x

    rng = np.random.default_rng(2)
    for _ in range(2):
        assimilation.cycled_4dvar(step, np.zeros(2), rng.standard_normal((6, 2)), window=3)
    first = len(traces)
    assimilation.cycled_4dvar(step, np.ones(2), rng.standard_normal((6, 2)), window=3)
    assert len(traces) == first


def test_windows_stopped_at_max_steps_warn():
    with pytest.warns(ji.MAPWarning, match="window"):
        res = problems_cycled_4dvar("lorenz96", n=8, n_cycles=3, burn_in=0, window=10,
                                    optimizer="lbfgs", max_steps=2)
    assert res.status_counts().get("MAX_STEPS", 0) >= 1
    assert not bool(jnp.all(res.converged))


def test_user_truth_for_a_builtin_system_and_mismatch_errors():
    flow = ji.problems.load("lorenz63").info["operator"].flow
    x0 = jnp.array([1.0, 2.0, 20.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ji.MAPWarning)
        res = problems_cycled_4dvar(flow.step, truth=x0, n_cycles=3, window=20, obs_every=5, burn_in=0)
    np.testing.assert_allclose(res.truth[0], x0)
    np.testing.assert_allclose(res.truth[1], flow(x0, 20), rtol=1e-10)
    with pytest.raises(ValueError, match="observations"):
        assimilation.cycled_4dvar(flow.step, x0, np.zeros((7, 3)), window=20, obs_every=5)
    with pytest.raises(ValueError, match="truth"):
        assimilation.cycled_4dvar(flow.step, x0, np.zeros((8, 3)), window=20, obs_every=5,
                                  truth=np.zeros((10, 3)))
    with pytest.raises(ValueError, match="observations"):
        assimilation.cycled_4dvar(flow.step, x0, np.zeros((8, 2)), window=20, obs_every=5)
    with pytest.raises(ValueError, match="B"):
        assimilation.cycled_4dvar(flow.step, x0, np.zeros((8, 3)), window=20, obs_every=5, B=np.eye(2))
    with pytest.raises(TypeError, match="model options"):
        problems_cycled_4dvar(flow.step, truth=x0, n_cycles=3, window=20, forcing=8.0)
    assert jax.numpy.isfinite(res.mean_rmse)
