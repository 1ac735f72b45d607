"""Weak-constraint 4D-Var, hybrid ensemble-variational B and sliding windows (cycled_4dvar with
model_std/Q, hybrid, shift), each against a closed form: the Kalman filter and RTS smoother,
the Kalman update with the ensemble's sample covariance, linear 4D-Var."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax import random

from jinverse.assimilation import ETKF, LETKF, Hybrid, cycled_4dvar, twin_experiment
from jinverse.problems.dynamics import lorenz96_tendency, rk4_step


def _linear_system(seed, n=3, m=2):
    rng = np.random.default_rng(seed)
    Qr, _ = np.linalg.qr(rng.standard_normal((n, n)))
    M = 0.97 * Qr
    H = rng.standard_normal((m, n))
    L = rng.standard_normal((n, n))
    B = L @ L.T + 0.3 * np.eye(n)
    Lq = 0.3 * rng.standard_normal((n, n))
    return rng, M, H, B, Lq @ Lq.T + 0.01 * np.eye(n)


def _kalman_smoother(M, H, Q, R, xb, B, ys, obs_every):
    """RTS smoother over one window: means at steps 0..W (observation i at step (i+1) obs_every),
    and the filter means."""
    W = len(ys) * obs_every
    xf, Pf, xa, Pa = [None], [None], [xb], [B]
    for t in range(1, W + 1):
        x, P = M @ xa[-1], M @ Pa[-1] @ M.T + Q
        xf.append(x)
        Pf.append(P)
        if t % obs_every == 0:
            K = P @ H.T @ np.linalg.inv(H @ P @ H.T + R)
            x, P = x + K @ (ys[t // obs_every - 1] - H @ x), P - K @ H @ P
        xa.append(x)
        Pa.append(P)
    xs = [xa[-1]]
    for t in range(W - 1, -1, -1):
        G = Pa[t] @ M.T @ np.linalg.inv(Pf[t + 1])
        xs.insert(0, xa[t] + G @ (xs[0] - xf[t + 1]))
    return np.array(xs), np.array(xa)


@pytest.mark.parametrize(
    "full_Q, optimizer", [(False, "gauss-newton"), (True, "gauss-newton"), (True, "newton-cg")]
)
def test_weak_constraint_equals_the_kalman_smoother(full_Q, optimizer):
    # Linear model, Gaussian everything: the weak-constraint 4D-Var analysis of a window (all its
    # states) is the RTS smoother's mean, its window end the Kalman filter's; the second window
    # starts from that with the same static B.
    rng, M, H, B, Q = _linear_system(0)
    r_std = np.array([0.4, 0.7])
    if not full_Q:
        Q = np.diag(rng.uniform(0.05, 0.3, 3) ** 2)
    window, obs_every, per = 4, 2, 2
    ys = rng.standard_normal((2 * per, 2))
    xb = rng.standard_normal(3)
    Mj = jnp.asarray(M)
    kw = dict(Q=lambda v: jnp.asarray(Q) @ v) if full_Q else dict(model_std=np.sqrt(np.diag(Q)))
    res = cycled_4dvar(
        lambda x: Mj @ x,
        xb,
        ys,
        window=window,
        obs_every=obs_every,
        obs_operator=H,
        obs_std=r_std,
        B=B,
        optimizer=optimizer,
        **kw,
    )
    R = np.diag(r_std**2)
    for c in range(2):
        xs, xa = _kalman_smoother(M, H, Q, R, xb, B, ys[c * per : (c + 1) * per], obs_every)
        # Gauss-Newton's first step is exact on a linear model (with CG inner loops, to CG's
        # tolerance); tol 1e-9 on the gradient
        np.testing.assert_allclose(res.analysis[c], xs[0], atol=1e-8)
        np.testing.assert_allclose(res.trajectory[c], xs[1:], atol=1e-8)
        np.testing.assert_allclose(res.forecast[c], xa[-1], atol=1e-8)
        xb = xa[-1]
    assert bool(np.all(res.ok)) and np.all(np.isnan(res.spread))


def test_weak_constraint_tends_to_the_strong_constraint():
    rng, M, H, B, _ = _linear_system(1)
    ys = rng.standard_normal((6, 2))
    xb = rng.standard_normal(3)
    Mj = jnp.asarray(M)
    kw = dict(window=3, obs_operator=H, obs_std=0.5, B=B)

    def step(x):
        return Mj @ x

    strong = cycled_4dvar(step, xb, ys, **kw)
    exact = cycled_4dvar(step, xb, ys, model_std=0.0, **kw)
    np.testing.assert_allclose(exact.analysis, strong.analysis, atol=1e-8)
    np.testing.assert_allclose(exact.forecast, strong.forecast, atol=1e-8)
    gaps = [
        np.max(np.abs(cycled_4dvar(step, xb, ys, Q=q * np.eye(3), **kw).analysis - strong.analysis))
        for q in (1e-2, 1e-4, 1e-6)
    ]
    # the analysis moves by O(q): each factor 100 in Q a factor of about 100 closer
    assert gaps[0] > 1e-4 and gaps[1] < gaps[0] / 30 and gaps[2] < gaps[1] / 30


def _l96_step(n=8):
    return lambda x: rk4_step(lambda z: lorenz96_tendency(z, 8.0), x, 0.05)


@pytest.mark.slow
def test_weak_constraint_on_lorenz96_matches_strong_at_zero_and_gains_with_model_error():
    step = _l96_step()
    x0 = 8.0 + jnp.sin(jnp.arange(8.0))
    truth, ys = twin_experiment(step, x0, n_steps=40, key=random.key(0), model_std=0.3, obs_std=0.5)
    kw = dict(window=5, obs_std=0.5, background_std=0.5, truth=truth)
    strong = cycled_4dvar(step, truth[0] + 0.3, ys, **kw)
    zero = cycled_4dvar(step, truth[0] + 0.3, ys, model_std=0.0, **kw)
    # both minimised to a gradient of 1e-9, in their own variables
    np.testing.assert_allclose(zero.analysis, strong.analysis, atol=1e-6)
    weak = cycled_4dvar(step, truth[0] + 0.3, ys, model_std=0.3, **kw)
    assert bool(np.all(weak.ok))
    assert weak.trajectory.shape == (8, 5, 8)
    # the window-end state of weak 4D-Var follows the truth the strong one cannot reach
    assert weak.mean_rmse < strong.mean_rmse


@pytest.mark.parametrize("model", ["linear", pytest.param("lorenz96", marks=pytest.mark.slow)])
def test_hybrid_beta_zero_is_the_static_B_4dvar(model):
    rng = np.random.default_rng(3)
    n = 8 if model == "lorenz96" else 3
    if model == "lorenz96":
        step = _l96_step()
        x0 = 8.0 + rng.standard_normal(n)
        _, ys = twin_experiment(step, x0, n_steps=30, key=random.key(1), obs_std=1.0)
    else:
        _, M, _, _, _ = _linear_system(3)
        Mj = jnp.asarray(M)

        def step(x):
            return Mj @ x

        x0, ys = rng.standard_normal(n), rng.standard_normal((30, n))
    L = rng.standard_normal((n, n))
    B = 0.1 * (L @ L.T) + 0.2 * np.eye(n)
    xb = x0 + rng.standard_normal(n) * 0.5
    static = cycled_4dvar(step, xb, ys, window=5, B=B)
    E0 = x0 + rng.standard_normal((10, n))
    hyb = cycled_4dvar(step, xb, ys, window=5, B=B, hybrid=Hybrid(E0, beta=0.0, method=ETKF(inflation=1.02)))
    # both minimised to a gradient of 1e-9 (exactly in one step for the linear model)
    np.testing.assert_allclose(hyb.analysis, static.analysis, atol=1e-6)
    assert np.all(np.isfinite(hyb.spread)) and np.all(hyb.spread > 0)


@pytest.mark.parametrize("window", [1, 3])
def test_hybrid_beta_one_on_a_linear_model_is_the_kalman_filter(window):
    # β = 1, N - 1 >= n members, no inflation: B at each window start is the ETKF ensemble's sample
    # covariance, which for a linear model is the Kalman filter's covariance; the first window's
    # analysis is the Kalman update with the first ensemble's sample covariance, and every window
    # end the Kalman filter's mean.
    rng, M, H, _, _ = _linear_system(4)
    E0 = rng.standard_normal((6, 3)) * 0.8
    P0 = np.cov(E0.T)
    xb = rng.standard_normal(3)
    ys = rng.standard_normal((3 * window, 2))
    Mj = jnp.asarray(M)
    res = cycled_4dvar(
        lambda x: Mj @ x,
        xb,
        ys,
        window=window,
        obs_operator=H,
        obs_std=0.5,
        hybrid=Hybrid(E0, beta=1.0, method=ETKF()),
    )
    R = 0.25 * np.eye(2)
    if window == 1:  # the 3D-Var-like window: Kalman update of x_b at step 1, pulled back to step 0
        Pf = M @ P0 @ M.T
        K = Pf @ H.T @ np.linalg.inv(H @ Pf @ H.T + R)
        xa1 = M @ xb + K @ (ys[0] - H @ M @ xb)
        np.testing.assert_allclose(res.forecast[0], xa1, atol=1e-8)
        np.testing.assert_allclose(Mj @ res.analysis[0], xa1, atol=1e-8)
    _, means = _kalman_smoother(M, H, np.zeros((3, 3)), R, xb, P0, ys, 1)
    np.testing.assert_allclose(res.forecast, means[window::window], atol=1e-7)
    assert bool(np.all(res.ok))


def _gaspari_cohn(d, c):
    """Gaspari and Cohn (1999), eq. (4.10), half-width c."""
    r = np.abs(d) / c
    inner = -(r**5) / 4 + r**4 / 2 + 5 * r**3 / 8 - 5 * r**2 / 3 + 1
    with np.errstate(divide="ignore"):
        outer = r**5 / 12 - r**4 / 2 + 5 * r**3 / 8 + 5 * r**2 / 3 - 5 * r + 4 - 2 / (3 * r)
    return np.where(r <= 1, inner, np.where(r < 2, outer, 0.0))


@pytest.mark.parametrize("localization", ["radius", "ones"])
def test_localised_hybrid_first_analysis_is_the_kalman_update_with_the_tapered_covariance(localization):
    # β = 1, one-step window: the first analysis is the Kalman update with ρ ∘ P_e, ρ the
    # Gaspari-Cohn taper of the periodic grid distance (LETKF's radius: c = sqrt(10/3) radius),
    # or a matrix of ones (no localisation).
    rng, M, H, _, _ = _linear_system(6, n=6, m=3)
    E0 = rng.standard_normal((4, 6))
    xb, ys = rng.standard_normal(6), rng.standard_normal((2, 3))
    gap = np.abs(np.arange(6)[:, None] - np.arange(6)[None, :])
    rho = _gaspari_cohn(np.minimum(gap, 6 - gap), 1.5 * np.sqrt(10 / 3)) if localization == "radius" else None
    Mj = jnp.asarray(M)
    res = cycled_4dvar(
        lambda x: Mj @ x,
        xb,
        ys,
        window=1,
        obs_operator=H,
        obs_std=0.5,
        hybrid=Hybrid(E0, beta=1.0, localization=1.5 if localization == "radius" else np.ones((6, 6))),
    )
    P0 = np.cov(E0.T) * (1.0 if rho is None else rho)
    Pf = M @ P0 @ M.T
    K = Pf @ H.T @ np.linalg.inv(H @ Pf @ H.T + 0.25 * np.eye(3))
    np.testing.assert_allclose(res.forecast[0], M @ xb + K @ (ys[0] - H @ M @ xb), atol=1e-8)


def _linear_4dvar_masked(M, H, B, r_std, xb, ys, use):
    Rinv = np.diag(1.0 / np.broadcast_to(r_std, (H.shape[0],)) ** 2)
    A, b, G = np.linalg.inv(B), np.zeros(len(xb)), np.eye(len(xb))
    for y, u in zip(ys, use):
        G = M @ G
        if u:
            A = A + G.T @ H.T @ Rinv @ H @ G
            b = b + G.T @ H.T @ Rinv @ (y - H @ G @ xb)
    return xb + np.linalg.solve(A, b)


def test_sliding_windows_assimilate_each_observation_once():
    rng, M, H, B, _ = _linear_system(5)
    window, shift, k = 4, 2, 10
    ys = rng.standard_normal((k, 2))
    xb = rng.standard_normal(3)
    Mj = jnp.asarray(M)
    res = cycled_4dvar(lambda x: Mj @ x, xb, ys, window=window, shift=shift, obs_operator=H, obs_std=0.6, B=B)
    n_cycles = (k - window) // shift + 1
    assert res.analysis.shape == (n_cycles, 3)
    steps = np.asarray(res.obs_steps)
    used = steps[steps >= 0]
    np.testing.assert_array_equal(np.sort(used), np.arange(1, k + 1))  # each observation once
    for c in range(n_cycles):
        use = np.ones(window, bool) if c == 0 else np.arange(window) >= window - shift
        ref = _linear_4dvar_masked(M, H, B, 0.6, xb, ys[c * shift : c * shift + window], use)
        np.testing.assert_allclose(res.analysis[c], ref, atol=1e-8)
        np.testing.assert_allclose(res.forecast[c], np.linalg.matrix_power(M, window) @ ref, atol=1e-8)
        xb = np.linalg.matrix_power(M, shift) @ ref


def test_bad_input_names_the_argument():
    step = _l96_step()
    x0, ys = jnp.zeros(8), jnp.zeros((10, 8))
    E = np.random.default_rng(0).standard_normal((5, 8))
    cases = [
        (dict(model_std=0.1, Q=np.eye(8)), "model_std, Q"),
        (dict(Q=-np.eye(8)), "Q"),
        (dict(Q=np.eye(3)), "Q"),
        (dict(model_std=-1.0), "model_std"),
        (dict(shift=3), "shift"),
        (dict(shift=6), "shift"),
        (dict(hybrid=Hybrid(E, beta=1.5)), "Hybrid.beta"),
        (dict(hybrid=Hybrid(E[:, :3])), "Hybrid.ensemble"),
        (dict(hybrid=Hybrid(E, method="pf")), "Hybrid.method"),
        (dict(hybrid=Hybrid(E, localization=-1.0)), "Hybrid.localization"),
        (dict(hybrid=Hybrid(E), shift=1), "shift"),
        (dict(hybrid=Hybrid(E, method=LETKF(radius=2.0)), obs_operator=lambda x: x[:8] * 2), "LETKF"),
    ]
    for kw, match in cases:
        with pytest.raises(ValueError, match=match):
            cycled_4dvar(step, x0, ys, window=2, **kw)
    with pytest.raises(ValueError, match="observations"):
        cycled_4dvar(step, x0, ys[:9], window=4, shift=2)
