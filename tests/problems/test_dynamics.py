"""PDE and dynamics problems: heat equation against Fourier modes and SciPy, Lorenz models
against solve_ivp, 4D-Var benchmarks and cycled assimilation."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import jinverse as ji
from jinverse.problems.dynamics import Flow, cycled_4dvar, lorenz63_tendency, lorenz96_tendency
from jinverse.problems.pde import HeatEquation1D

# -- heat equation -----------------------------------------------------------------------------


def _heat(n, steps, t, method, kappa=None, record=None):
    kappa = jnp.ones(n + 1) if kappa is None else jnp.asarray(kappa)
    return HeatEquation1D(kappa, jnp.zeros(n), jnp.arange(n), record or (steps,), t / steps,
                          method, "initial")


@pytest.mark.parametrize("method", ["explicit", "implicit", "crank_nicolson"])
def test_heat_fourier_mode(method):
    # sin(kπx) is an eigenvector of the discrete Laplacian, eigenvalue λ = -(4/h²) sin²(kπh/2):
    # each scheme multiplies it by its amplification factor per step (exact to rounding), and
    # the result approaches the PDE's exp(-k²π² t) to O(h² + dt) (O(h² + dt²) for CN).
    n, k, t = 31, 2, 0.01
    steps = 400 if method == "explicit" else 100
    h, dt = 1 / (n + 1), t / steps
    x = h * np.arange(1, n + 1)
    u0 = np.sin(k * np.pi * x)
    lam = -4 / h**2 * np.sin(k * np.pi * h / 2) ** 2
    g = {"explicit": 1 + dt * lam, "implicit": 1 / (1 - dt * lam),
         "crank_nicolson": (1 + dt * lam / 2) / (1 - dt * lam / 2)}[method]
    u = np.asarray(_heat(n, steps, t, method).solve(jnp.asarray(u0), jnp.ones(n + 1))[-1])
    np.testing.assert_allclose(u, g**steps * u0, rtol=1e-12, atol=1e-14)
    exact = math.exp(-(k * np.pi) ** 2 * t)
    # spatial error (kπh)²/12 · k²π²t ≈ 1.3e-3; backward Euler adds λ²dt·t/2 ≈ 8e-4
    assert abs(u[7] / u0[7] - exact) / exact < 3e-3  # x = 1/4, where sin(2πx) = 1


def _laplacian(kappa, n):
    """The finite-difference matrix of (κ u_x)_x, written out entry by entry."""
    h = 1 / (n + 1)
    L = np.zeros((n, n))
    for j in range(n):
        L[j, j] = -(kappa[j] + kappa[j + 1]) / h**2
        if j > 0:
            L[j, j - 1] = kappa[j] / h**2
        if j < n - 1:
            L[j, j + 1] = kappa[j + 1] / h**2
    return L


def test_heat_variable_conductivity_against_scipy():
    n, t = 31, 0.01
    faces = (np.arange(n + 1) + 0.5) / (n + 1)
    kappa = np.exp(0.5 * np.sin(2 * np.pi * faces))
    x = np.arange(1, n + 1) / (n + 1)
    u0 = np.exp(-(((x - 0.4) / 0.1) ** 2))
    L = _laplacian(kappa, n)
    ref = solve_ivp(lambda _, u: L @ u, (0, t), u0, method="Radau", rtol=1e-12, atol=1e-14,
                    jac=L).y[:, -1]
    errs = {}
    for method in ("implicit", "crank_nicolson"):
        for steps in (50, 100):
            u = _heat(n, steps, t, method, kappa).solve(jnp.asarray(u0), jnp.asarray(kappa))[-1]
            errs[method, steps] = np.linalg.norm(np.asarray(u) - ref) / np.linalg.norm(ref)
    # first-order and second-order convergence in time
    assert 1.8 < errs["implicit", 50] / errs["implicit", 100] < 2.2
    assert 3.6 < errs["crank_nicolson", 50] / errs["crank_nicolson", 100] < 4.4
    assert errs["crank_nicolson", 100] < 1e-4


def test_heat1d_benchmark_linear_map():
    bm = ji.problems.load("heat1d", n=31, t_final=0.01, steps=50, noise=0.02, seed=4)
    A = np.asarray(bm.info["A"])
    n, h, dt = 31, 1 / 32, 0.01 / 50
    # A = (I - dt L)^(-steps): symmetric, singular values from the Laplacian's eigenvalues
    lam = -4 / h**2 * np.sin(np.arange(1, n + 1) * np.pi * h / 2) ** 2
    np.testing.assert_allclose(A, A.T, atol=1e-15)
    np.testing.assert_allclose(np.linalg.svd(A, compute_uv=False),
                               np.sort((1 - dt * lam) ** -50.0)[::-1], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(bm.problem.forward(bm.theta_true).ravel(), A @ np.asarray(bm.theta_true))
    assert bm.y.shape == (1, n) and bm.metric == "rmse"
    assert np.isfinite(float(eqx.filter_jit(bm.problem.log_posterior)(bm.theta_true, bm.y)))
    again = ji.problems.load("heat1d", n=31, t_final=0.01, steps=50, noise=0.02, seed=4)
    np.testing.assert_array_equal(again.y, bm.y)
    batch = ji.problems.load("heat1d", n=31, steps=50, sensors=2, batch=3)
    assert batch.y.shape == (3, 1, 16) and batch.theta_true.shape == (3, 31)
    with pytest.raises(ValueError, match="explicit Euler"):
        ji.problems.load("heat1d", n=31, method="explicit", steps=10)
    with pytest.raises(ValueError, match="obs_times"):
        ji.problems.load("heat1d", n=31, steps=50, obs_times=(0.0001,))


def test_heat1d_conductivity():
    bm = ji.problems.load("heat1d", n=15, unknown="conductivity", steps=40, seed=1)
    assert bm.theta_true.shape == (16,) and bm.y.shape == (3, 15)
    lp, g = jax.jit(lambda t, y: jax.value_and_grad(bm.problem.log_posterior)(t, y))(bm.theta_true, bm.y)
    assert np.isfinite(float(lp)) and bool(jnp.all(jnp.isfinite(g)))
    # the gradient of the solver in log κ against a central finite difference (step 1e-4:
    # truncation ~1e-8 relative, rounding ~1e-7 relative)
    f = jax.jit(lambda th: jnp.sum(bm.problem.forward(th) ** 2))
    d = jnp.zeros(16).at[5].set(1e-4)
    fd = (f(bm.theta_true + d) - f(bm.theta_true - d)) / 2e-4
    assert float(jax.grad(f)(bm.theta_true)[5]) == pytest.approx(float(fd), rel=1e-6)


# -- Lorenz models -------------------------------------------------------------------------------


def _l96_numpy(x, F):
    n = len(x)
    return np.array([(x[(i + 1) % n] - x[i - 2]) * x[i - 1] - x[i] + F for i in range(n)])


def _rk4_numpy(f, x, dt, steps):
    for _ in range(steps):
        k1 = f(x)
        k2 = f(x + dt / 2 * k1)
        k3 = f(x + dt / 2 * k2)
        k4 = f(x + dt * k3)
        x = x + dt * (k1 + 2 * k2 + 2 * k3 + k4) / 6
    return x


def test_lorenz96_rk4_against_solve_ivp():
    x0 = 8.0 + np.sin(np.arange(40.0))
    f = lambda x: _l96_numpy(x, 8.0)  # noqa: E731
    np.testing.assert_allclose(lorenz96_tendency(jnp.asarray(x0), 8.0), f(x0), rtol=1e-13)
    x = Flow("lorenz96", jnp.array([8.0]), 0.05)(jnp.asarray(x0), 10)
    np.testing.assert_allclose(np.asarray(x), _rk4_numpy(f, x0, 0.05, 10), rtol=1e-12)
    # against an independent high-order integrator: the error falls 16-fold per halving of dt
    ref = solve_ivp(lambda _, x: f(x), (0, 0.2), x0, method="DOP853", rtol=1e-13, atol=1e-13).y[:, -1]
    err = [np.max(np.abs(np.asarray(Flow("lorenz96", jnp.array([8.0]), dt)(jnp.asarray(x0), k)) - ref))
           for dt, k in ((0.025, 8), (0.0125, 16))]
    assert err[1] < 1e-3
    assert 14 < err[0] / err[1] < 18


def test_lorenz63_rk4_against_solve_ivp():
    p = (10.0, 28.0, 8.0 / 3.0)

    def f(_, v):
        return [p[0] * (v[1] - v[0]), v[0] * (p[1] - v[2]) - v[1], v[0] * v[1] - p[2] * v[2]]

    x0 = np.array([1.5, -2.0, 20.0])
    np.testing.assert_allclose(lorenz63_tendency(jnp.asarray(x0), jnp.asarray(p)), f(0, x0))
    ref = solve_ivp(f, (0, 0.5), x0, method="DOP853", rtol=1e-12, atol=1e-12).y[:, -1]
    x = np.asarray(Flow("lorenz63", jnp.asarray(p), 0.01)(jnp.asarray(x0), 50))
    np.testing.assert_allclose(x, _rk4_numpy(lambda v: np.array(f(0, v)), x0, 0.01, 50), rtol=1e-12)
    # RK4's global error at dt = 0.01 over 0.5 time units: about 1e-6 relative
    np.testing.assert_allclose(x, ref, rtol=1e-5)


@pytest.fixture(scope="module")
def l96():
    return ji.problems.load("lorenz96", window=4, obs_every=2, observed=2, seed=7)


def test_lorenz96_benchmark(l96):
    assert l96.y.shape == (3, 20) and l96.theta_true.shape == (40,) and l96.metric == "rmse"
    assert l96.info["noise_std"] == 1.0
    traj = np.asarray(l96.reference["trajectory"])
    np.testing.assert_allclose(l96.problem.forward(l96.theta_true), traj[::2, ::2], rtol=1e-12)
    # the truth is on the attractor: mean ≈ 2.3 and std ≈ 3.6 for F = 8 (Lorenz & Emanuel 1998)
    assert 0.5 < float(jnp.mean(l96.theta_true)) < 4.5 and 2 < float(jnp.std(l96.theta_true)) < 5.5
    resid = np.asarray(l96.y) - np.asarray(l96.problem.forward(l96.theta_true))
    assert np.std(resid) == pytest.approx(1.0, rel=4 / math.sqrt(2 * resid.size))
    assert np.isfinite(float(eqx.filter_jit(l96.problem.log_posterior)(l96.theta_true, l96.y)))
    again = ji.problems.load("lorenz96", window=4, obs_every=2, observed=2, seed=7)
    np.testing.assert_array_equal(again.y, l96.y)
    np.testing.assert_array_equal(again.info["background"], l96.info["background"])
    batch = ji.problems.load("lorenz96", window=4, obs_every=2, batch=4, noise=0.1)
    assert batch.y.shape == (4, 3, 40) and batch.theta_true.shape == (4, 40)
    clean = batch.problem.forward(batch.theta_true[0])
    assert batch.info["noise_std"] == pytest.approx(0.1 * float(jnp.linalg.norm(clean)) / math.sqrt(120))
    lp = jax.jit(lambda t, y: jax.vmap(batch.problem.log_posterior)(t, y))(batch.theta_true, batch.y)
    one = eqx.filter_jit(batch.problem.log_posterior)(batch.theta_true[2], batch.y[2])
    assert float(lp[2]) == pytest.approx(float(one), rel=1e-12)
    with pytest.raises(ValueError, match="obs_every"):
        ji.problems.load("lorenz96", window=5, obs_every=2)


def test_lorenz63_benchmark():
    bm = ji.problems.load("lorenz63", window=20, obs_every=10, observed=[0], spinup=500)
    assert bm.y.shape == (3, 1) and bm.theta_true.shape == (3,)
    assert np.isfinite(float(bm.problem.log_posterior(bm.theta_true, bm.y)))


def test_cycled_4dvar_improves_on_background():
    # Lorenz-63, all components observed every 0.05 with σ_o = 1 and windows of 0.25: the
    # analysis must beat both the observation error and the first background.
    res = cycled_4dvar("lorenz63", n_cycles=6, burn_in=2, window=25, obs_every=5, seed=1,
                       max_steps=100)
    assert res.analysis.shape == (6, 3) and bool(jnp.all(res.converged))
    assert res.mean_rmse < 0.5 and res.mean_rmse_analysis < 0.5
    # each background is the previous analysis integrated over the window
    np.testing.assert_allclose(res.rmse_background[1:], res.rmse_filter[:-1], rtol=1e-12)
    np.testing.assert_allclose(res.truth[1], Flow("lorenz63", jnp.array([10.0, 28.0, 8 / 3]),
                                                  0.01)(res.truth[0], 25), rtol=1e-10)


def test_cycled_4dvar_passes_the_weak_constraint_and_sliding_windows_through():
    """`ji.problems.cycled_4dvar` takes `jinverse.assimilation.cycled_4dvar`'s weak-constraint
    and sliding-window options, and can draw an imperfect-model truth."""
    from jinverse import assimilation

    opts = dict(n_cycles=3, burn_in=1, window=20, obs_every=5, seed=1, max_steps=50)
    perfect = cycled_4dvar("lorenz63", **opts)
    b0 = perfect.truth[0] + jnp.array([0.5, -0.5, 0.3])
    res = cycled_4dvar("lorenz63", background=b0, shift=10, model_std=0.1, truth_model_std=0.1, **opts)
    assert res.analysis.shape == (3, 3) and res.trajectory.shape == (3, 20, 3)
    np.testing.assert_array_equal(res.obs_steps[:, -1], [20, 30, 40])  # windows every 10 steps
    assert int(res.obs_steps[1:, :2].max()) == -1  # their first two times were assimilated before
    assert bool(jnp.all(res.converged))
    # the same analysis by the assimilation driver, on the problem's observations
    step = ji.problems.load("lorenz63", window=20, obs_every=5).info["operator"].flow.step
    by_hand = assimilation.cycled_4dvar(step, b0, res.observations, window=20, obs_every=5, shift=10,
                                        model_std=0.1, max_steps=50)
    np.testing.assert_array_equal(by_hand.analysis, res.analysis)
    np.testing.assert_array_equal(by_hand.trajectory, res.trajectory)
    # model error in the truth: none at truth_model_std=0, a different trajectory above
    zero = cycled_4dvar("lorenz63", truth_model_std=0.0, **opts)
    np.testing.assert_array_equal(zero.truth, perfect.truth)
    noisy = cycled_4dvar("lorenz63", truth_model_std=0.1, **opts)
    assert not np.allclose(noisy.truth[1:], perfect.truth[1:])
    np.testing.assert_array_equal(noisy.truth[0], perfect.truth[0])
    with pytest.raises(ValueError, match="truth_model_std"):
        cycled_4dvar("lorenz63", truth_model_std=-1.0, **opts)


@pytest.mark.slow
def test_cycled_4dvar_lorenz96_matches_published_level():
    # The standard configuration (N = 40, F = 8, every component observed every 0.05 with
    # σ_o = 1): a very large ensemble Kalman filter reaches an "optimal" analysis RMSE of about
    # 0.20 (Kalnay et al.; Whitaker & Hamill 2002), and 4D-Var with a long enough window comes
    # close to it (Fertig, Harlim & Hunt 2007). No filter can do much better than the optimum;
    # 4D-Var with a static B = 0.5² I over 0.5 time units should stay within 50% of it.
    res = cycled_4dvar("lorenz96", n_cycles=60, burn_in=20, window=10, background_std=0.5, seed=2)
    assert float(jnp.mean(res.converged)) > 0.9
    assert 0.17 < res.mean_rmse < 0.30
