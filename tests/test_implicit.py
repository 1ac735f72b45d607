"""ji.solve_map and ji.laplace under jit/vmap/grad, and the implicit derivative of the MAP.

Derivatives of θ* are checked against the linear-Gaussian closed form (its own autodiff) and
against central finite differences of eager solves. The finite differences use Newton solves
converged to the rounding floor (tol=1e-12) and a step h where the truncation error
(~h² θ'''/6, here < 1e-8 relative) and the rounding error (~1e-15/h) are both far below the
1e-5 relative agreement asked for.
"""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinverse as ji
from jinverse import implicit
from jinverse.map import MAPWarning, Status

N, M, S, T = 4, 6, 0.3, 2.0


@pytest.fixture(scope="module")
def linear():
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.normal(size=(M, N)))
    mean = jnp.asarray(rng.normal(size=N))
    problem = ji.InverseProblem(a, ji.priors.Gaussian(mean, T), ji.likelihoods.Gaussian(S))
    ys = jnp.asarray(rng.normal(size=(3, M)))
    return problem, ys


def closed_form(a, mean, y, t, s):
    """The linear-Gaussian MAP m + Γ Aᵀ (A Γ Aᵀ + Σ)⁻¹ (y - A m), Γ = t² I, Σ = s² I."""
    g = t**2 * jnp.eye(a.shape[1])
    return mean + g @ a.T @ jnp.linalg.solve(a @ g @ a.T + s**2 * jnp.eye(a.shape[0]), y - a @ mean)


class Bent(eqx.Module):
    w: jax.Array

    def __call__(self, theta):
        z = self.w @ theta
        return jnp.sin(z) + 0.1 * z**2


@pytest.fixture(scope="module")
def nonlinear():
    rng = np.random.default_rng(1)
    fwd = Bent(jnp.asarray(rng.normal(size=(5, 3))))
    problem = ji.InverseProblem(fwd, ji.priors.Gaussian(jnp.zeros(3), 0.8), ji.likelihoods.Gaussian(0.2))
    y = fwd(jnp.asarray([0.3, -0.5, 0.4])) + 0.2 * jnp.asarray(rng.normal(size=5))
    return problem, y


def rel(a, b):
    return float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))) / jnp.max(jnp.abs(jnp.asarray(b))))


def reference_theta(problem, y):
    r = ji.solve_map(problem, y, optimizer="newton", tol=1e-12, warn=False)
    assert bool(jnp.all(r.converged))
    return r.theta


def fd(fn, x, h):
    """Central differences of ``fn`` (array -> array) along every entry of ``x``; columns last."""
    x = jnp.asarray(x, float)
    cols = []
    for i in range(x.size):
        e = jnp.zeros(x.size).at[i].set(h).reshape(x.shape)
        cols.append((fn(x + e) - fn(x - e)) / (2 * h))
    return jnp.stack(cols, axis=-1).reshape(*jnp.shape(fn(x)), *x.shape)


def with_scales(problem, prior_std, noise_std):
    scales = (jnp.asarray(prior_std, float), jnp.asarray(noise_std, float))
    return eqx.tree_at(lambda p: (p.prior.std, p.likelihood.std), problem, scales)


# -- traced inputs give the host API's answers ----------------------------------------------


def test_jit_bit_identical_to_eager(linear):
    problem, ys = linear
    eager = ji.solve_map(problem, ys)
    # the problem as an argument: the same program as the eager call's, bit for bit
    jitted = eqx.filter_jit(lambda p, y: ji.solve_map(p, y))(problem, ys)
    assert isinstance(jitted, ji.MAPResult)
    for field in ("theta", "log_posterior", "grad_norm", "num_steps", "status", "converged"):
        np.testing.assert_array_equal(getattr(jitted, field), getattr(eager, field), err_msg=field)
    # closed over, the problem's arrays become constants XLA may fold: equal to rounding
    closed = jax.jit(lambda y: ji.solve_map(problem, y).theta)(ys)
    np.testing.assert_allclose(closed, eager.theta, rtol=1e-12, atol=1e-14)


def test_vmap_equals_batch(linear):
    problem, ys = linear
    eager = ji.solve_map(problem, ys)
    out = jax.vmap(lambda y: ji.solve_map(problem, y))(ys)
    np.testing.assert_allclose(out.theta, eager.theta, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(out.status, eager.status)
    # vmap over a batch axis of a batched call: results keep both axes
    nested = jax.vmap(lambda y: ji.solve_map(problem, y).theta)(jnp.stack([ys, ys + 1]))
    assert nested.shape == (2, 3, N)
    np.testing.assert_allclose(nested[1], ji.solve_map(problem, ys + 1).theta, rtol=1e-12, atol=1e-14)


def test_traced_checks_shapes_not_values(linear):
    problem, ys = linear
    with pytest.raises(ValueError) as eager:
        ji.solve_map(problem, np.zeros(M + 1))
    with pytest.raises(ValueError) as jitted:
        jax.jit(lambda y: ji.solve_map(problem, y))(jnp.zeros(M + 1))
    assert str(jitted.value) == str(eager.value)
    # a non-finite observation is flagged, not refused, and spoils no neighbour
    bad = ys.at[1, 2].set(jnp.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no MAPWarning from a traced call
        out = jax.jit(lambda y: ji.solve_map(problem, y))(bad)
    assert out.status.tolist() == [Status.CONVERGED, Status.NONFINITE, Status.CONVERGED]
    np.testing.assert_allclose(out.theta[::2], ji.solve_map(problem, ys[::2]).theta, rtol=1e-12, atol=1e-14)


def test_traced_init_and_no_warning(linear):
    problem, ys = linear
    init = jnp.ones(N)
    eager = ji.solve_map(problem, ys, init=init, max_steps=2, warn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MAPWarning)
        out = jax.jit(lambda y, i: ji.solve_map(problem, y, init=i, max_steps=2))(ys, init)
    assert (np.asarray(out.status) == Status.MAX_STEPS).all()
    np.testing.assert_allclose(out.theta, eager.theta, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="init: got shape"):
        jax.jit(lambda i: ji.solve_map(problem, ys, init=i))(jnp.ones(N + 1))


def test_laplace_jit_bit_identical(linear):
    problem, ys = linear
    eager = ji.laplace(problem, ys)
    jitted = eqx.filter_jit(lambda p, y: ji.laplace(p, y))(problem, ys)
    np.testing.assert_array_equal(jitted.mean, eager.mean)
    np.testing.assert_array_equal(jitted.covariance, eager.covariance)
    np.testing.assert_array_equal(jitted.ok, eager.ok)


def test_laplace_vmap_at_and_grad(linear):
    problem, ys = linear
    eager = ji.laplace(problem, ys)
    v = jax.vmap(lambda y: ji.laplace(problem, y))(ys)
    np.testing.assert_allclose(v.mean, eager.mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(v.covariance, eager.covariance, rtol=1e-12, atol=1e-14)
    at = jax.jit(lambda t: ji.laplace(problem, ys[0], at=t).mean)(jnp.ones(N))
    np.testing.assert_array_equal(at, np.ones(N))
    # the mean is the MAP: its derivative in y is the closed form's
    jac = jax.jacrev(lambda y: ji.laplace(problem, y).mean)(ys[0])
    ref = jax.jacfwd(lambda y: closed_form(problem.forward.matrix, problem.prior.mean, y, T, S))(ys[0])
    np.testing.assert_allclose(jac, ref, rtol=0, atol=1e-10)


def test_laplace_lowrank_traced(linear):
    problem, ys = linear
    low = ji.laplace(problem, ys, rank=2, key=jax.random.key(1))
    low_jit = eqx.filter_jit(lambda p, y: ji.laplace(p, y, rank=2, key=jax.random.key(1)))(problem, ys)
    np.testing.assert_allclose(low_jit.eigvals, low.eigvals, rtol=1e-12)


def test_laplace_traced_at_outside_support():
    problem = ji.InverseProblem(lambda t: t, ji.priors.HalfNormal(jnp.ones(2)), ji.likelihoods.Gaussian(0.5))
    with pytest.raises(Exception, match="outside the prior's support"):
        jax.jit(lambda t: ji.laplace(problem, jnp.ones(2), at=t).mean)(-jnp.ones(2)).block_until_ready()


# -- implicit derivatives ---------------------------------------------------------------------


def test_linear_gaussian_closed_form(linear):
    problem, ys = linear
    a, mean = problem.forward.matrix, problem.prior.mean
    y = ys[0]
    rev = jax.jacrev(lambda yy: ji.solve_map(problem, yy).theta)(y)
    fwd = jax.jacfwd(lambda yy: ji.solve_map(problem, yy).theta)(y)
    ref = jax.jacfwd(lambda yy: closed_form(a, mean, yy, T, S))(y)
    assert rel(rev, ref) < 1e-8 and rel(fwd, ref) < 1e-8  # θ* is found to tol 1e-9
    got = jax.jacrev(lambda t, s: ji.solve_map(with_scales(problem, t, s), y).theta, argnums=(0, 1))(T, S)
    want = jax.jacfwd(lambda t, s: closed_form(a, mean, y, t, s), argnums=(0, 1))(T, S)
    assert rel(got[0], want[0]) < 1e-8 and rel(got[1], want[1]) < 1e-8
    # and central finite differences of eager solves
    h = 1e-4
    assert rel(rev, fd(lambda yy: reference_theta(problem, yy), y, h)) < 1e-5
    fd_t = (reference_theta(with_scales(problem, T + h, S), y) - reference_theta(with_scales(problem, T - h, S), y))
    fd_s = (reference_theta(with_scales(problem, T, S + h), y) - reference_theta(with_scales(problem, T, S - h), y))
    assert rel(got[0], fd_t / (2 * h)) < 1e-5 and rel(got[1], fd_s / (2 * h)) < 1e-5


def test_nonlinear_against_finite_differences(nonlinear):
    problem, y = nonlinear
    jac = jax.jacrev(lambda yy: ji.solve_map(problem, yy).theta)(y)
    assert rel(jac, fd(lambda yy: reference_theta(problem, yy), y, 1e-4)) < 1e-5
    s0, n0 = 0.8, 0.2  # the fixture's scales (its prior stores the std per entry)
    d_prior, d_noise = jax.jacrev(lambda s, n: ji.solve_map(with_scales(problem, s, n), y).theta,
                                  argnums=(0, 1))(s0, n0)
    h = 1e-5
    fd_prior = (reference_theta(with_scales(problem, s0 + h, n0), y)
                - reference_theta(with_scales(problem, s0 - h, n0), y)) / (2 * h)
    fd_noise = (reference_theta(with_scales(problem, s0, n0 + h), y)
                - reference_theta(with_scales(problem, s0, n0 - h), y)) / (2 * h)
    assert rel(d_prior, fd_prior) < 1e-5 and rel(d_noise, fd_noise) < 1e-5


def test_log_posterior_derivative_by_envelope(nonlinear):
    # d/dσ of the optimal value: ∂ log p/∂σ at fixed θ*, the optimum moves at second order
    problem, y = nonlinear
    n0 = 0.2
    got = jax.grad(lambda n: ji.solve_map(with_scales(problem, 0.8, n), y).log_posterior)(n0)
    h = 1e-5
    lp = lambda n: ji.solve_map(with_scales(problem, 0.8, n), y, optimizer="newton",  # noqa: E731
                                tol=1e-12, warn=False).log_posterior
    assert rel(got, (lp(n0 + h) - lp(n0 - h)) / (2 * h)) < 1e-5


def test_bounded_prior_through_bijector():
    # θ > 0 through the prior's log bijector: the derivative includes dθ/du at the optimum
    rng = np.random.default_rng(2)
    w = jnp.asarray(np.abs(rng.normal(size=(4, 2))))
    problem = ji.InverseProblem(lambda t: w @ jnp.log1p(t), ji.priors.LogNormal(jnp.zeros(2), 1.0),
                                ji.likelihoods.Gaussian(0.1))
    y = w @ jnp.log1p(jnp.asarray([0.7, 1.6])) + 0.1 * jnp.asarray(rng.normal(size=4))
    jac = jax.jacrev(lambda yy: ji.solve_map(problem, yy).theta)(y)
    assert rel(jac, fd(lambda yy: reference_theta(problem, yy), y, 1e-4)) < 1e-5


def test_batch_jacobian_is_block_diagonal(linear):
    problem, ys = linear
    jac = jax.jacrev(lambda y: ji.solve_map(problem, y).theta)(ys)  # (3, N, 3, M)
    one = jax.jacrev(lambda y: ji.solve_map(problem, y).theta)(ys[1])
    np.testing.assert_allclose(jac[1, :, 1], one, rtol=1e-10, atol=1e-12)
    assert float(jnp.max(jnp.abs(jac[0, :, 1]))) == 0.0


def test_gradient_is_a_linear_solve_not_the_loop(linear):
    problem, ys = linear
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda y: ji.solve_map(problem, y).theta.sum()))(ys[0]))
    assert "custom_linear_solve" in jaxpr


def test_cg_equals_dense_and_closed_form(linear):
    # the matrix-free backward solve (used above DENSE_MAX unknowns) on a small problem
    problem, ys = linear
    a = problem.forward.matrix

    def solve(p, y, u0):  # an exact per-lane solver: the closed form, whose own derivative is ignored
        theta = closed_form(a, p.prior.mean, y, T, S)
        return theta, p.log_density(theta, y, jacobian=False)

    ref = jax.jacfwd(lambda y: closed_form(a, problem.prior.mean, y, T, S))(ys[0])
    for solver in ("dense", "cg"):
        jac = jax.jacrev(lambda y: implicit.mode(solve, problem, y, jnp.zeros(N), linear_solver=solver)[0])(ys[0])
        assert rel(jac, ref) < 1e-8, solver
    with pytest.raises(ValueError, match="linear_solver"):
        implicit.mode(solve, problem, ys[0], jnp.zeros(N), linear_solver="lu")


def test_matrix_free_above_dense_max():
    # deconvolution1d with 300 unknowns: Newton-CG for the MAP, CG with Hessian-vector products
    # (prior-preconditioned) for the backward solve; against the closed form Kᵀ w
    b = ji.problems.load("deconvolution1d", n=300)
    assert b.problem.prior.std.size > implicit.DENSE_MAX
    w = jnp.linspace(0.0, 1.0, 300)
    got = jax.grad(lambda y: w @ ji.solve_map(b.problem, y).theta)(b.y)
    a, g = b.info["A"], jnp.diag(b.problem.prior.std**2)
    gain = g @ a.T @ jnp.linalg.inv(a @ g @ a.T + b.problem.likelihood.std**2 * jnp.eye(a.shape[0]))
    assert rel(got, gain.T @ w) < 1e-8  # CG to 1e-10 relative residual, θ* to tol 1e-9
