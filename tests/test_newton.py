"""Newton-CG and the structural default of solve_map: against the closed form, SciPy and autodiff."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import jinverse as ji
from jinverse import curvature, newton
from jinverse.map import Status
from jinverse.steps import Point, Target

D, M, S = 80, 60, 0.05
DENSE_LIMIT = 64  # newton.DENSE_NEWTON_MAX lowered below D where a test needs "auto" to pick Newton-CG


@pytest.fixture
def cg_for_d(monkeypatch):
    monkeypatch.setattr(newton, "DENSE_NEWTON_MAX", DENSE_LIMIT)
    return monkeypatch


def _matrix(key, m, d):
    return jax.random.normal(jax.random.key(key), (m, d)) / np.sqrt(d)


@pytest.fixture(scope="module")
def gmrf_linear():
    """A linear forward model, a GMRF (smoothness) prior and Gaussian noise: the prior
    preconditioner is the GMRF's covariance, applied through its own square root."""
    A = _matrix(1, M, D)
    prior = ji.priors.GMRF((D,), order=1, precision=4.0)
    problem = ji.InverseProblem(A, prior, ji.likelihoods.Gaussian(S))
    Y = jax.random.normal(jax.random.key(2), (5, M))
    P = np.asarray(A.T @ A / S**2 + prior.precision_matrix())
    exact = np.linalg.solve(P, np.asarray(A.T @ Y.T / S**2)).T  # prior mean 0
    return problem, Y, exact, np.linalg.eigvalsh(P)[0]


def test_auto_picks_by_structure(cg_for_d):
    small_ls = ji.InverseProblem(_matrix(0, 6, 4), ji.priors.Gaussian(jnp.zeros(4), 1.0), ji.likelihoods.Gaussian(0.1))
    small_t = ji.InverseProblem(_matrix(0, 6, 4), ji.priors.Gaussian(jnp.zeros(4), 1.0), ji.likelihoods.StudentT(3.0, 0.1))
    big = ji.InverseProblem(_matrix(0, 6, D), ji.priors.Gaussian(jnp.zeros(D), 1.0), ji.likelihoods.Gaussian(0.1))
    assert newton.choose(small_ls) == ("bfgs" if 4 <= newton.BFGS_MAX else "gauss-newton")
    assert newton.choose(small_t) == "newton"
    assert newton.choose(big) == "newton-cg"
    assert newton.choose(ji.problems.load("slcp").problem) == "newton"  # Uniform prior, SLCP likelihood
    assert newton.choose(ji.problems.load("deconvolution1d").problem) == "newton-cg"  # 128 > 64
    cg_for_d.undo()
    assert newton.choose(ji.problems.load("deconvolution1d").problem) == "gauss-newton"  # 128 <= 256
    # the default is "auto": the same program as naming its choice
    Y = jax.random.normal(jax.random.key(3), (3, 6))
    for problem in (small_ls, small_t):
        a = ji.solve_map(problem, Y)
        b = ji.solve_map(problem, Y, optimizer=newton.choose(problem))
        np.testing.assert_array_equal(np.asarray(a.theta), np.asarray(b.theta))
        np.testing.assert_array_equal(np.asarray(a.num_steps), np.asarray(b.num_steps))


def test_fused_value_gradient_curvature_match_autodiff():
    A = _matrix(4, 7, 5)
    problem = ji.InverseProblem(lambda t: jnp.sin(A @ t), ji.priors.Gaussian(jnp.zeros(5), 0.7),
                                ji.likelihoods.Gaussian(0.3))
    y = jax.random.normal(jax.random.key(5), (7,))
    u, v = jnp.linspace(-1, 1, 5), jnp.arange(5.0) - 2
    f = curvature.objective(problem, y, jacobian=False)
    for ggn, ref in ((False, curvature.hvp), (True, curvature.ggn_vp)):
        val, grad, cv = curvature.value_grad_vp(problem, y, u, v, ggn=ggn, jacobian=False)
        np.testing.assert_allclose(val, f(u), rtol=1e-14)
        np.testing.assert_allclose(grad, jax.grad(f)(u), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(cv, ref(problem, y, u, v, jacobian=False), rtol=1e-12, atol=1e-12)
    G = curvature.ggn_dense(problem, y, u, jacobian=False)
    G_ref = curvature.dense(lambda w: curvature.ggn_vp(problem, y, u, w, jacobian=False), 5, u.dtype)
    np.testing.assert_allclose(G, G_ref, rtol=1e-12, atol=1e-12)


def test_newton_cg_equals_the_exact_posterior_mean(gmrf_linear):
    problem, Y, exact, lam_min = gmrf_linear
    r = ji.solve_map(problem, Y, optimizer="newton-cg")  # GMRF preconditioner
    assert bool(np.all(np.asarray(r.converged)))
    # quadratic objective with Hessian P: θ - θ* = P⁻¹ g, so |θ - θ*| <= |g| / λ_min(P) (what the
    # tolerance promises), plus the rounding of the dense solve (cond(P) eps |θ*|)
    err = np.linalg.norm(np.asarray(r.theta) - exact, axis=-1)
    slack = 1e-10 * np.max(np.abs(exact))
    assert np.all(err <= np.asarray(r.grad_norm) / lam_min + slack)
    # Eisenstat-Walker forcing starts loose (CG to half the gradient) and tightens
    # quadratically: a handful of Newton steps even on a quadratic
    assert np.all(np.asarray(r.num_steps) <= 8)


def test_newton_cg_batch_equals_one_at_a_time(gmrf_linear):
    problem, Y, exact, lam_min = gmrf_linear
    batch = ji.solve_map(problem, Y, optimizer="newton-cg")
    for i in (0, 3):
        one = ji.solve_map(problem, Y[i], optimizer="newton-cg")
        assert bool(one.converged)
        # the last step is decided at the tolerance, where the two programs' rounding may differ
        assert abs(int(one.num_steps) - int(batch.num_steps[i])) <= 1
        # two programs (vmapped and not) may round differently: within both answers' bounds
        gap = float(jnp.linalg.norm(one.theta - batch.theta[i]))
        assert gap <= float(one.grad_norm + batch.grad_norm[i]) / lam_min + 1e-10 * np.max(np.abs(exact))


def _scipy_reference(problem, y, d):
    f = jax.jit(curvature.objective(problem, y, jacobian=False))
    g = jax.jit(jax.grad(f))
    hp = jax.jit(lambda x, v: curvature.hvp(problem, y, x, v, jacobian=False))
    res = scipy.optimize.minimize(lambda x: float(f(x)), np.zeros(d), jac=lambda x: np.asarray(g(x)),
                                  hessp=lambda x, v: np.asarray(hp(x, v)), method="trust-ncg",
                                  options={"gtol": 1e-10, "maxiter": 500})
    g_sp = np.linalg.norm(np.asarray(g(res.x)))
    # trust-ncg may end at the rounding floor ("failure to predict improvement") with a small
    # gradient: the comparison below uses the gradient norm it reached, whatever its message
    assert g_sp <= 1e-7 * (1 + abs(res.fun)), res.message
    return res.x, g_sp


@pytest.mark.parametrize("likelihood", ["gaussian", "student-t"])
def test_newton_cg_matches_scipy_trust_ncg_on_a_nonlinear_problem(likelihood, cg_for_d):
    """Gaussian noise: generalised Gauss-Newton products; Student-t (no GGN): exact Hessian
    products, with negative curvature possible away from the mode."""
    A = _matrix(6, M, D)
    lik = ji.likelihoods.Gaussian(0.1) if likelihood == "gaussian" else ji.likelihoods.StudentT(2.0, 0.1)
    problem = ji.InverseProblem(lambda t: jnp.tanh(2.0 * A @ t), ji.priors.Gaussian(jnp.zeros(D), 1.0), lik)
    assert newton.choose(problem) == "newton-cg"
    theta0 = 0.8 * jax.random.normal(jax.random.key(7), (D,))
    y = jnp.tanh(2.0 * A @ theta0) + 0.1 * jax.random.normal(jax.random.key(8), (M,))
    r = ji.solve_map(problem, y)
    assert int(r.status) == Status.CONVERGED
    x_sp, g_sp = _scipy_reference(problem, y, D)
    H = jax.hessian(curvature.objective(problem, y, jacobian=False))(r.theta)
    lam_min = float(np.linalg.eigvalsh(np.asarray(H))[0])
    assert lam_min > 0  # a strict local minimum, so both answers lie within |H⁻¹ g| of it
    # within first order |θ - θ*| <= |g| / λ_min; x2 for the quadratic model's error
    assert float(jnp.linalg.norm(r.theta - x_sp)) <= 2 * (float(r.grad_norm) + g_sp) / lam_min
    f = curvature.objective(problem, y, jacobian=False)
    assert abs(float(f(r.theta)) - float(f(x_sp))) <= (float(r.grad_norm) ** 2 + g_sp**2) / lam_min + 1e-13 * abs(float(f(x_sp)))


def test_newton_cg_counts_and_budget():
    """CG iterations stop at the budget and the Newton direction still descends; a step of the
    state machine is one CG iteration or one line-search trial."""
    A = _matrix(9, M, D)
    problem = ji.InverseProblem(A, ji.priors.Gaussian(jnp.zeros(D), 1.0), ji.likelihoods.Gaussian(0.3))
    y = jax.random.normal(jax.random.key(10), (M,))
    tol = 1e-9
    target = Target(problem, y, jacobian=False, tol=tol)
    for max_cg in (3, D):
        cg = newton.NewtonCG(max_cg=max_cg)
        u = jnp.zeros(D)
        v, g = jax.value_and_grad(target.objective)(u)
        s = cg.init(target, Point(u, v, g))
        cg_run = newton_steps = 0
        step = jax.jit(lambda p, s: cg.step(target, p, s))
        for _ in range(2000):
            if np.linalg.norm(g) <= tol * (1 + abs(float(v))):
                break
            was_cg = not bool(s.searching)
            (u, v_new, g), s, stalled, advanced = step(Point(u, v, g), s)
            assert not bool(stalled)
            # never increases (but for the rounding floor, where a smaller gradient decides)
            assert float(v_new) <= float(v) + 8 * np.finfo(float).eps * (1 + abs(float(v)))
            v = v_new
            cg_run = cg_run + 1 if was_cg else 0
            assert cg_run <= max_cg
            newton_steps += int(advanced)
        assert np.linalg.norm(g) <= tol * (1 + abs(float(v)))
        assert newton_steps <= (8 if max_cg == D else 200)


def test_deconvolution1d_converges_with_defaults():
    b = ji.problems.load("deconvolution1d", batch=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no MAPWarning: every element converged
        r = ji.solve_map(b.problem, b.y)
    assert bool(np.all(np.asarray(r.converged)))
    assert np.all(np.asarray(r.num_steps) <= 10)
    # the exact posterior mean of this linear-Gaussian problem, by a dense solve
    A, s = np.asarray(b.info["A"]), float(b.info["noise_std"])
    t = float(b.problem.prior.std.reshape(-1)[0])
    P = A.T @ A / s**2 + np.eye(A.shape[1]) / t**2
    exact = np.linalg.solve(P, A.T @ np.asarray(b.y).T / s**2).T
    lam_min = np.linalg.eigvalsh(P)[0]
    err = np.linalg.norm(np.asarray(r.theta) - exact, axis=-1)
    assert np.all(err <= np.asarray(r.grad_norm) / lam_min + 1e-9 * np.max(np.abs(exact)))
