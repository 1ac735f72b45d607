import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinverse as ji
from jinverse.assimilation import eki, eks, uki


def _linear_problem(seed=0, d=3, m=5):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, d))
    L = rng.standard_normal((d, d))
    P0 = L @ L.T + 0.5 * np.eye(d)
    m0 = rng.standard_normal(d)
    s = rng.uniform(0.2, 0.6, m)
    problem = ji.InverseProblem(lambda t: jnp.asarray(A) @ t, ji.priors.Gaussian(m0, cov=P0),
                                ji.likelihoods.Gaussian(s))
    y = A @ rng.multivariate_normal(m0, P0) + s * rng.standard_normal(m)
    prec = np.linalg.inv(P0) + A.T @ np.diag(s**-2) @ A
    cov = np.linalg.inv(prec)
    mean = cov @ (np.linalg.solve(P0, m0) + A.T @ (y / s**2))
    return problem, y, mean, cov


def test_uki_converges_to_the_exact_linear_gaussian_posterior():
    problem, y, mean, cov = _linear_problem()
    res = uki(problem, y, n_iter=40)
    # errors halve every iteration: 2^-40 of the prior's scale
    np.testing.assert_allclose(res.theta, mean, atol=1e-9)
    np.testing.assert_allclose(res.covariance, cov, atol=1e-9)
    assert res.num_forward == 40 * 7 + 1
    # the objective decreases to the MAP's value
    obj = np.asarray(res.objective)
    assert np.all(np.diff(obj) <= 1e-9) and obj[-1] <= obj[0]


@pytest.mark.parametrize("method, atol", [("deterministic", 1e-6), ("stochastic", 2e-3)])
def test_eki_collapses_onto_the_map(method, atol):
    # The data weight after 30 doubling steps is ~1e9: the regularised problem at that weight
    # has its minimiser within ~1e-9 of the MAP; the stochastic version's mean also carries
    # noise ~ sqrt(C_t / J) with C_t the ensemble covariance left.
    problem, y, mean, cov = _linear_problem(1)
    res = eki(problem, y, key=jax.random.key(0), n_iter=30, method=method)
    np.testing.assert_allclose(res.theta, mean, atol=atol * np.sqrt(np.diag(cov)).max())
    assert np.max(np.abs(res.covariance)) < 1e-3 * np.max(np.abs(cov))  # collapsed
    assert res.ensemble.shape == (20, 3) and res.num_forward == 30 * 21


def test_deterministic_eki_is_the_kalman_posterior_of_the_first_ensemble():
    # Square-root updates with data weights 1, 2, 4 from a given ensemble: on a linear model,
    # exactly the Kalman posterior of the ensemble's sample mean and covariance given the data
    # and the prior mean (Tikhonov EKI treats the prior as data), both with their precisions
    # multiplied by 1 + 2 + 4 = 7 (members J = 6 > d = 3: full rank).
    problem, y, _, _ = _linear_problem(2)
    rng = np.random.default_rng(5)
    E0 = rng.standard_normal((6, 3)) * 2.0 + 1.0
    res = eki(problem, y, key=jax.random.key(1), n_iter=3, method="deterministic", init=E0)
    A = np.asarray(problem.forward(jnp.eye(3)))  # A @ I
    s = np.asarray(problem.likelihood.std)
    P, P0, m0 = np.cov(E0.T), np.asarray(problem.prior.covariance()), np.asarray(problem.prior.mean)
    prec = np.linalg.inv(P) + 7 * (A.T @ np.diag(s**-2) @ A + np.linalg.inv(P0))
    cov = np.linalg.inv(prec)
    mean = cov @ (np.linalg.solve(P, E0.mean(0)) + 7 * (A.T @ (y / s**2) + np.linalg.solve(P0, m0)))
    np.testing.assert_allclose(res.theta, mean, atol=1e-9)
    np.testing.assert_allclose(res.covariance, cov, atol=1e-9)
    assert res.num_forward == 3 * 7


def test_eks_draws_the_linear_gaussian_posterior():
    # ALDI's invariant law is the posterior for a linear model and J > d + 1: the ensemble
    # mean is within Monte-Carlo error (sd / sqrt(J)) of the posterior mean, its sds within MC
    # error (~1/sqrt(2J)) plus the time step's bias (a few % at step 0.2, measured 2-4%).
    problem, y, mean, cov = _linear_problem()
    J = 400
    res = eks(problem, y, key=jax.random.key(3), n_members=J, n_iter=300, step=0.2)
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(np.asarray(res.theta) - mean) < 5 * sd / np.sqrt(J))
    np.testing.assert_allclose(np.sqrt(np.diag(res.covariance)), sd, rtol=0.12)
    assert res.ensemble.shape == (J, 3) and res.num_forward == 300 * (J + 1)


def test_batched_observations_equal_one_at_a_time():
    problem, y, _, _ = _linear_problem(3)
    ys = np.stack([y, y + 0.3, y - 0.2])
    batch = uki(problem, ys, n_iter=10)
    assert batch.theta.shape == (3, 3) and batch.covariance.shape == (3, 3, 3)
    for i in range(3):
        np.testing.assert_allclose(batch.theta[i], uki(problem, ys[i], n_iter=10).theta, atol=1e-10)
    b = eki(problem, ys[None], key=jax.random.key(0), n_iter=5, method="deterministic")
    assert b.theta.shape == (1, 3, 3)


def test_nonlinear_kalman_inversion_matches_map_and_laplace():
    # lorenz63's 4D-Var window (3 unknowns, nonlinear): EKI collapses onto the MAP; UKI's fixed
    # point is a Gaussian fit over sigma points ~sd apart, so its mean sits a small nonlinear
    # bias (here 0.4% of an sd) from the MAP and its covariance near the Laplace one.
    b = ji.problems.load("lorenz63")
    p = b.problem
    m = np.asarray(ji.solve_map(p, b.y).theta)
    # Gauss-Newton (Laplace) covariance at the MAP: (Jᵀ J + Γ_prior⁻¹)⁻¹, J the whitened Jacobian
    Jw = np.asarray(jax.jacfwd(lambda t: p.likelihood.whiten(p.forward(t)).ravel())(jnp.asarray(m)))
    sd = np.sqrt(np.diag(np.linalg.inv(Jw.T @ Jw + np.linalg.inv(np.asarray(p.prior.covariance())))))
    u = uki(b.problem, b.y, n_iter=25)
    assert np.all(np.abs(np.asarray(u.theta) - m) < 0.02 * sd)
    np.testing.assert_allclose(np.sqrt(np.diag(u.covariance)), sd, rtol=0.05)
    e = eki(b.problem, b.y, key=jax.random.key(0), n_iter=30)
    assert np.all(np.abs(np.asarray(e.theta) - m) < 1e-3 * sd)


def test_bad_input():
    problem, y, _, _ = _linear_problem()
    key = jax.random.key(0)
    uniform = ji.InverseProblem(problem.forward, ji.priors.Uniform(-np.ones(3), np.ones(3)), problem.likelihood)
    with pytest.raises(TypeError, match="problem.prior: got Uniform"):
        uki(uniform, y)
    student = ji.InverseProblem(problem.forward, problem.prior, ji.likelihoods.StudentT(3.0, 1.0))
    with pytest.raises(TypeError, match="problem.likelihood: got StudentT"):
        eki(student, y, key=key)
    with pytest.raises(TypeError, match="problem: got"):
        uki("nope", y)
    with pytest.raises(ValueError, match="method: got 'sqrt'"):
        eki(problem, y, key=key, method="sqrt")
    with pytest.raises(ValueError, match="n_iter"):
        uki(problem, y, n_iter=0)
    with pytest.raises(ValueError, match="growth: got -2.0"):
        eki(problem, y, key=key, growth=-2.0)
    with pytest.raises(ValueError, match="n_members"):
        eks(problem, y, key=key, n_members=3)
    with pytest.raises(ValueError, match="init: got shape"):
        eki(problem, y, key=key, init=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="y: got shape"):
        uki(problem, y[:4])


def test_status_per_observation():
    """``status``/``ok`` per observation: an observation that drives the ensemble where the forward
    model fails (NaN beyond |θ| > 50) is NONFINITE; its neighbours are OK and unchanged."""
    problem, y, _, _ = _linear_problem(4)
    A = np.asarray(jax.vmap(problem.forward)(jnp.eye(3)).T)

    def fragile(t):
        return jnp.asarray(A) @ t + jnp.where(jnp.max(jnp.abs(t)) > 50.0, jnp.nan, 0.0)

    fp = ji.InverseProblem(fragile, problem.prior, problem.likelihood)
    ys = np.stack([y, 1e3 * y, y - 0.2])
    for res in (uki(fp, ys, n_iter=10), eki(fp, ys, key=jax.random.key(0), n_iter=10, method="deterministic")):
        np.testing.assert_array_equal(res.status, [ji.Status.OK, ji.Status.NONFINITE, ji.Status.OK])
        np.testing.assert_array_equal(res.ok, [True, False, True])
        one = uki(problem, ys[2], n_iter=10) if res.ensemble is None else None
        if one is not None:
            np.testing.assert_allclose(res.theta[2], one.theta, atol=1e-10)
            assert one.status.shape == () and bool(one.ok)
