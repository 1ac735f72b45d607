"""Batched MAP against the closed form, one-at-a-time solves, and its promises on bad input."""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jinverse as ji
from jinverse.map import Status

N, M, S, T = 6, 10, 0.1, 1.5


@pytest.fixture(scope="module")
def linear():
    A = jax.random.normal(jax.random.key(1), (M, N))
    mean = jnp.linspace(-0.5, 0.5, N)
    problem = ji.InverseProblem(A, ji.priors.Gaussian(mean, T), ji.likelihoods.Gaussian(S))
    Y = jax.random.normal(jax.random.key(2), (7, M))
    # closed form: (A^T A / s^2 + I / t^2) x = A^T y / s^2 + mean / t^2
    P = A.T @ A / S**2 + jnp.eye(N) / T**2
    exact = jnp.linalg.solve(P, (A.T @ Y.T / S**2 + mean[:, None] / T**2)).T
    return problem, Y, exact


def rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def within_own_tolerance(result, exact, problem):
    """For the linear fixture (quadratic objective, Hessian P) θ - θ* = P⁻¹ g exactly, so each
    answer is within its own gradient norm / λ_min(P) of the closed form: what the optimiser's
    tol promises on any machine, plus the closed form's own rounding."""
    A = problem.forward.matrix
    lam_min = jnp.linalg.eigvalsh(A.T @ A / S**2 + jnp.eye(N) / T**2)[0]
    err = jnp.linalg.norm(result.theta - exact, axis=-1)
    return bool(jnp.all(err <= result.grad_norm / lam_min + 1e-12 * jnp.max(jnp.abs(exact))))


@pytest.mark.parametrize("optimizer", [None, "lbfgs", "newton", "gauss-newton", optax.lbfgs()],
                         ids=["default-bfgs", "lbfgs", "newton", "gauss-newton", "optax-lbfgs"])
def test_linear_gaussian_closed_form(linear, optimizer):
    problem, Y, exact = linear
    batch = ji.solve_map(problem, Y, optimizer=optimizer)
    assert batch.theta.shape == (7, N) and batch.status.shape == (7,)
    assert bool(jnp.all(batch.converged))
    assert within_own_tolerance(batch, exact, problem)
    single = ji.solve_map(problem, Y[3], optimizer=optimizer)
    assert single.theta.shape == (N,) and single.status.shape == ()
    assert within_own_tolerance(single, exact[3], problem)
    # batch == one at a time: two programs, each within its own bound of the same θ*, so within
    # the sum of the bounds of each other (implied by the two checks above; not bit for bit)
    # the same θ evaluated twice (in the loop and here): rounding only
    lp = jax.vmap(problem.log_posterior)(batch.theta, Y)
    assert np.allclose(batch.log_posterior, lp, rtol=1e-12)


def test_batch_axes_and_streaming_blocks(linear):
    problem, Y, exact = linear
    Y2 = jnp.concatenate([Y, Y[:5]]).reshape(3, 4, M)
    r = ji.solve_map(problem, Y2, block_size=5)  # 12 problems streamed in padded blocks of 5
    assert r.theta.shape == (3, 4, N)
    ref = jnp.concatenate([exact, exact[:5]]).reshape(3, 4, N)
    assert within_own_tolerance(r, ref, problem)


def test_any_optax_optimizer(linear):
    problem, Y, exact = linear
    r = ji.solve_map(problem, Y[:2], optimizer=optax.adam(0.02), max_steps=5000, tol=1e-7)
    assert bool(jnp.all(r.converged))
    assert within_own_tolerance(r, exact[:2], problem)


def test_no_retrace_on_new_data(linear):
    problem, Y, _ = linear
    A = problem.forward.matrix
    traces = []

    def forward(theta):
        traces.append(1)  # Python side effect runs once per trace
        return A @ theta

    counted = ji.InverseProblem(forward, problem.prior, problem.likelihood)
    ji.solve_map(counted, Y)
    n = len(traces)
    ji.solve_map(counted, Y + 1.0)
    ji.solve_map(counted, 2.0 * Y)
    assert len(traces) == n


@pytest.mark.parametrize("prior", [ji.priors.Uniform(0.5, 2.0), ji.priors.LogNormal(0.0, 0.3),
                                   ji.priors.HalfNormal(1.0)])
def test_bounded_priors_keep_map_in_support(prior):
    problem = ji.InverseProblem(lambda t: jnp.stack([t, t**2]), prior, ji.likelihoods.Gaussian(0.1))
    y = jnp.array([[-3.0, 9.0], [1.0, 1.0], [4.0, 16.0]])  # targets below, inside, above the support
    r = ji.solve_map(problem, y, max_steps=1000)
    assert bool(jnp.all(jnp.isfinite(r.theta))) and bool(jnp.all(r.theta > 0))
    if isinstance(prior, ji.priors.Uniform):
        assert bool(jnp.all((r.theta >= 0.5) & (r.theta <= 2.0)))
        assert np.isclose(r.theta[1], 1.0, atol=0.05)


def test_nonfinite_element_is_flagged_and_isolated(linear):
    problem, Y, _ = linear
    A = problem.forward.matrix

    def fragile(theta):  # fails (NaN) wherever the first entry of A @ theta is large
        z = A @ theta
        return jnp.where(z[0] > 5.0, jnp.nan, z)

    p2 = ji.InverseProblem(fragile, problem.prior, problem.likelihood)
    Yb = Y.at[2, 0].set(50.0)  # pulls element 2 towards the NaN region
    init = jnp.zeros((7, N)).at[4].set(10.0 * A[0] / jnp.sum(A[0] ** 2))  # element 4 starts in it: z[0] = 10
    with pytest.warns(ji.MAPWarning, match=r"2 of 7 observations did not converge: .*non-finite"):
        bad = ji.solve_map(p2, Yb, init=init)  # the failures are intended: warned about, counted
    assert int(bad.status[4]) == Status.NONFINITE and "non-finite" in bad.messages()[4]
    assert int(bad.status[2]) in (Status.NONFINITE, Status.STALLED) and not bool(bad.converged[2])
    ok = np.array([0, 1, 3, 5, 6])
    assert bool(jnp.all(bad.converged[ok]))
    good = ji.solve_map(p2, Y, init=jnp.zeros((7, N)))
    # neighbours are bit-for-bit what they are without the failing elements
    assert np.array_equal(np.asarray(bad.theta[ok]), np.asarray(good.theta[ok]))
    assert np.array_equal(np.asarray(bad.num_steps[ok]), np.asarray(good.num_steps[ok]))


def test_multistart_finds_both_preimages(key):
    problem = ji.InverseProblem(lambda t: t**2, ji.priors.Gaussian(jnp.zeros(1), 3.0),
                                ji.likelihoods.Gaussian(0.05))
    r = ji.solve_map(problem, jnp.array([[4.0], [9.0]]), num_starts=8, key=key)
    assert r.starts.theta.shape == (2, 8, 1)
    roots = sorted(float(s[0]) for s in r.distinct((0,)))
    assert len(roots) == 2 and np.allclose(roots, [-2.0, 2.0], atol=1e-3)
    assert np.isclose(abs(float(r.theta[1, 0])), 3.0, atol=1e-3)
    with pytest.raises(TypeError, match="key"):
        ji.solve_map(problem, jnp.array([4.0]), num_starts=3)


@pytest.fixture(scope="module")
def classifier():
    """A small equinox MLP trained with optax to label 2-D points by quadrant-like sectors."""
    k1, k2 = jax.random.split(jax.random.key(7))
    x = jax.random.uniform(k1, (2000, 2), minval=-2, maxval=2)
    angle = jnp.arctan2(x[:, 1], x[:, 0])
    labels = ((angle + jnp.pi) / (2 * jnp.pi / 3)).astype(int) % 3
    model = eqx.nn.MLP(2, 3, 32, 2, activation=jax.nn.tanh, key=k2)
    opt = optax.adam(1e-2)
    state = opt.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit
    def step(model, state):
        def loss(m):
            logits = jax.vmap(m)(x)
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))
        g = eqx.filter_grad(loss)(model)
        updates, state = opt.update(g, state)
        return eqx.apply_updates(model, updates), state

    for _ in range(400):
        model, state = step(model, state)
    acc = jnp.mean(jnp.argmax(jax.vmap(model)(x), -1) == labels)
    assert acc > 0.95
    return model


def test_invert_trained_classifier(classifier):
    problem = ji.InverseProblem(classifier, ji.priors.Gaussian(jnp.zeros(2), 1.0), ji.likelihoods.Categorical())
    targets = jnp.array([0, 1, 2, 1])
    r = ji.solve_map(problem, targets, init=jnp.array([0.3, -0.2]))
    assert r.theta.shape == (4, 2) and bool(jnp.all(r.converged))
    predicted = jnp.argmax(jax.vmap(classifier)(r.theta), -1)
    assert np.array_equal(predicted, targets)


# -- bad input ---------------------------------------------------------------------------
def test_bad_input_messages(linear):
    problem, Y, _ = linear
    with pytest.raises(ValueError, match=r"y: got 1 non-finite"):
        ji.solve_map(problem, Y.at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match=r"y: got shape \(7, 9\), expected \(\*batch, 10,\)"):
        ji.solve_map(problem, Y[:, :9])
    with pytest.raises(ValueError, match=r"init: got shape \(5,\)"):
        ji.solve_map(problem, Y, init=jnp.zeros(5))
    with pytest.raises(ValueError, match="max_steps"):
        ji.solve_map(problem, Y, max_steps=0)
    with pytest.raises(ValueError, match="tol"):
        ji.solve_map(problem, Y, tol=-1.0)
    with pytest.raises(ValueError, match="optimizer"):
        ji.solve_map(problem, Y, optimizer="BFGS")
    laplace_prior = ji.InverseProblem(problem.forward, ji.priors.Laplace(jnp.zeros(N), 1.0), problem.likelihood)
    with pytest.raises(ValueError, match="'gauss-newton' needs a Gaussian likelihood and a Gaussian prior"):
        ji.solve_map(laplace_prior, Y, optimizer="gauss-newton")
    with pytest.raises(TypeError, match="problem"):
        ji.solve_map("not a problem", Y)
    with pytest.raises(TypeError, match="y: got dtype"):
        ji.solve_map(problem, np.array(["a"] * M))


def test_bad_data_for_count_and_label_likelihoods():
    pois = ji.InverseProblem(lambda t: jnp.exp(t), ji.priors.Gaussian(jnp.zeros(3), 1.0), ji.likelihoods.Poisson())
    with pytest.raises(ValueError, match="non-negative integer counts"):
        ji.solve_map(pois, jnp.array([1.0, -2.0, 3.0]))
    with pytest.raises(ValueError, match="non-negative integer counts"):
        ji.solve_map(pois, jnp.array([1.0, 2.5, 3.0]))
    cat = ji.InverseProblem(lambda t: jnp.stack([t[0], t[1], -t[0]]), ji.priors.Gaussian(jnp.zeros(2), 1.0),
                            ji.likelihoods.Categorical())
    with pytest.raises(ValueError, match=r"expected integers in \[0, 2\]"):
        ji.solve_map(cat, jnp.array([0, 3]))
    bern = ji.InverseProblem(lambda t: t, ji.priors.Gaussian(jnp.zeros(2), 1.0), ji.likelihoods.Bernoulli())
    with pytest.raises(ValueError, match="0 or 1"):
        ji.solve_map(bern, jnp.array([0.0, 2.0]))


def test_forward_with_wrong_shape():
    lik = ji.likelihoods.Gaussian(cov=jnp.eye(3))
    bad = ji.InverseProblem(lambda t: jnp.concatenate([t, t]), ji.priors.Gaussian(jnp.zeros(2), 1.0), lik)
    with pytest.raises(ValueError, match=r"forward: returns shape \(4,\), expected \(3,\)"):
        ji.solve_map(bad, jnp.zeros(3))
    broken = ji.InverseProblem(lambda t: t @ jnp.ones((5, 5)), ji.priors.Gaussian(jnp.zeros(2), 1.0),
                               ji.likelihoods.Gaussian(1.0))
    with pytest.raises(ValueError, match="forward: failed"):
        ji.solve_map(broken, jnp.zeros(5))


def test_three_optimizers_agree_on_a_nonlinear_least_squares_problem():
    A = jax.random.normal(jax.random.key(3), (12, 4))
    problem = ji.InverseProblem(lambda t: jnp.tanh(A @ t), ji.priors.Gaussian(jnp.zeros(4), 1.0),
                                ji.likelihoods.Gaussian(0.1))
    Y = 0.5 * jax.random.normal(jax.random.key(4), (16, 12))
    results = [ji.solve_map(problem, Y, optimizer=o) for o in (None, "newton", "gauss-newton")]
    for r in results:
        assert bool(jnp.all(r.converged))
    # Near a minimum f(θ) - f* ≈ ½ gᵀH⁻¹g and |θ - θ*| ≈ |H⁻¹g|: two converged answers agree to
    # what their own gradient norms allow (x2 for the quadratic model), not to a fixed 1e-10.
    def objective(t, y):
        return -problem.log_posterior(t, y)

    lam_min = jax.vmap(lambda t, y: jnp.linalg.eigvalsh(jax.hessian(objective)(t, y))[0])(results[0].theta, Y)
    assert bool(jnp.all(lam_min > 0))
    f0, g0 = -results[0].log_posterior, results[0].grad_norm
    for r in results[1:]:  # a second method as the independent check of the first
        g = r.grad_norm
        gap = jnp.abs(r.log_posterior - results[0].log_posterior)
        assert bool(jnp.all(gap <= (g**2 + g0**2) / lam_min + 64 * jnp.finfo(f0.dtype).eps * jnp.abs(f0)))
        assert bool(jnp.all(jnp.linalg.norm(r.theta - results[0].theta, axis=-1) <= 2 * (g + g0) / lam_min + 1e-12))


@pytest.mark.parametrize("optimizer", ["bfgs", "lbfgs"])
def test_flat_quasi_newton_matches_scipy_on_rosenbrock(optimizer):
    """The flat-loop BFGS and L-BFGS on a non-convex valley, from several starts at once,
    against SciPy's L-BFGS-B on the same objective; num_steps counts iterations, not trials."""
    scipy_optimize = pytest.importorskip("scipy.optimize")
    n = 4
    # residuals of the extended Rosenbrock function; the weak prior moves the minimum slightly
    problem = ji.InverseProblem(
        lambda t: jnp.concatenate([10 * (t[1:] - t[:-1] ** 2), 1 - t[:-1]]),
        ji.priors.Gaussian(jnp.zeros(n), 30.0), ji.likelihoods.Gaussian(1.0))
    starts = jnp.array([[-1.2, 1.0, -1.2, 1.0], [0.0, 0.0, 0.0, 0.0], [2.0, -1.0, 0.5, 3.0]])
    y = jnp.zeros((3, 2 * (n - 1)))
    r = ji.solve_map(problem, y, init=starts, optimizer=optimizer)
    assert bool(jnp.all(r.converged)), r.messages()

    def objective(t):
        return float(-problem.log_posterior(jnp.asarray(t), y[0]))

    def gradient(t):
        return np.asarray(jax.grad(lambda u: -problem.log_posterior(u, y[0]))(jnp.asarray(t)))

    for i in range(3):
        ref = scipy_optimize.minimize(objective, np.asarray(starts[i]), jac=gradient, method="L-BFGS-B",
                                      options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 2000})
        assert np.allclose(r.theta[i], ref.x, atol=1e-6)
        assert abs(float(r.log_posterior[i]) + ref.fun) < 1e-9 * (1 + abs(ref.fun))
    # iterations, not function evaluations: comparable to SciPy's count on this valley
    assert 10 <= int(jnp.max(r.num_steps)) < 200
    # float32 (every array of the problem in float32) lands on the same minimum
    f32 = jnp.float32
    problem32 = ji.InverseProblem(problem.forward, ji.priors.Gaussian(jnp.zeros(n, f32), f32(30.0)),
                                  ji.likelihoods.Gaussian(f32(1.0)))
    r32 = ji.solve_map(problem32, y.astype(f32), init=starts.astype(f32), optimizer=optimizer)
    assert r32.theta.dtype == jnp.float32 and bool(jnp.all(r32.converged)), r32.messages()
    assert float(jnp.max(jnp.abs(r32.theta - r.theta))) < 1e-3


# -- MAPWarning: solve_map says when elements did not converge ---------------------------------

def _map_warnings(record):
    return [w for w in record if issubclass(w.category, ji.MAPWarning)]


def test_nan_forward_warns_with_the_nonfinite_count(linear):
    """A forward model that returns NaN hands back the start flagged NONFINITE: never silently."""
    problem, Y, _ = linear
    nan_forward = ji.InverseProblem(lambda t: jnp.full(M, jnp.nan) * t[0], problem.prior, problem.likelihood)
    with pytest.warns(ji.MAPWarning) as record:
        r = ji.solve_map(nan_forward, Y)
    assert bool(jnp.all(r.status == Status.NONFINITE))
    (w,) = _map_warnings(record)
    text = str(w.message)
    assert "7 of 7 observations did not converge" in text and "7 non-finite" in text
    assert "rows 0, 1, 2, 3, 4, ..." in text and "init=" in text  # the first rows, and what to try
    assert w.filename == __file__  # points at the caller, not at jinverse
    assert issubclass(ji.MAPWarning, UserWarning)


def test_max_steps_on_an_ill_conditioned_problem_warns():
    bench = ji.problems.load("shaw", n=32, batch=3)
    with pytest.warns(ji.MAPWarning, match=r"3 of 3 observations did not converge: 3 stopped at max_steps"
                                           r".*raise max_steps.*optimizer='newton'"):
        r = ji.solve_map(bench.problem, bench.y, max_steps=1)
    assert bool(jnp.all(r.status == Status.MAX_STEPS))
    # warn=False: the caller reads status itself
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ji.solve_map(bench.problem, bench.y, max_steps=1, warn=False)
    assert not _map_warnings(record)


def test_converged_run_does_not_warn(linear):
    problem, Y, exact = linear
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        r = ji.solve_map(problem, Y)
    assert bool(jnp.all(r.converged)) and not _map_warnings(record)


def test_status_report_wording():
    from jinverse.map import status_report

    assert status_report(np.zeros((4,), int)) == ""
    one = status_report(np.asarray(Status.STALLED))
    assert one.startswith("the observation did not converge: stalled") and "optimizer='newton'" in one
    grid = status_report(np.array([[0, 1], [2, 0]]))
    assert grid.startswith("2 of 4 observations did not converge: 1 stopped at max_steps without converging "
                           "(element (0, 1)), 1 non-finite objective or gradient (element (1, 0))")


def test_laplace_warns_once_from_its_mode_search():
    """`ji.laplace` runs solve_map itself: one warning, worded for Laplace, at the caller."""
    nan_problem = ji.InverseProblem(lambda t: jnp.log(t - 10.0), ji.priors.Gaussian(jnp.zeros(2), 1.0),
                                    ji.likelihoods.Gaussian(0.1))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        approx = ji.laplace(nan_problem, jnp.zeros((3, 2)))
    (w,) = _map_warnings(record)
    assert str(w.message).startswith("Laplace: mode search: 3 of 3 observations did not converge: 3 non-finite")
    assert w.filename == __file__ and not bool(jnp.any(approx.ok))
