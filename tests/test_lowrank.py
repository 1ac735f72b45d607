"""Low-rank Laplace (`ji.laplace(..., rank=r)`, `jinverse.lowrank`) against the exact
linear-Gaussian posterior computed densely with NumPy, and against the dense `ji.laplace`.

Notation: ``Γ_pr = S Sᵀ``, ``H̃ = Sᵀ AᵀA S / σ²`` with eigenpairs ``(λ_i, v_i)``. The exact
posterior covariance is ``S (I + H̃)⁻¹ Sᵀ``; keeping ``r`` exact pairs gives
``Γ_r = Γ_post + S V_⊥ diag(λ/(1+λ))_⊥ V_⊥ᵀ Sᵀ``, so (i) in the prior-whitened norm the error is
exactly ``λ_{r+1}/(1+λ_{r+1})``, (ii) ``0 ≤ var_r - var ≤ λ_{r+1}/(1+λ_{r+1}) · var_pr``
pointwise (because ``Σ_i (S v_i)_j² = (Γ_pr)_jj``), (iii) ``logdet Γ_r - logdet Γ_post =
Σ_{i>r} log(1+λ_i)``. When ``r + oversampling`` reaches ``rank(H̃) = m`` the random probes span
``range(H̃)`` and the kept pairs are exact, so these hold to rounding.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinverse as ji
from jinverse import lowrank

D, M, SIGMA = 30, 12, 0.3
RTOL = 1e-9  # rounding in float64 of O(d³) dense algebra on condition numbers ~1e4


def _priors(rng):
    cov = np.cov(rng.normal(size=(D, 3 * D))) + 0.1 * np.eye(D)
    return {
        "std": ji.priors.Gaussian(jnp.asarray(rng.normal(size=D)), jnp.asarray(rng.uniform(0.5, 2.0, D))),
        "cov": ji.priors.Gaussian(jnp.zeros(D), cov=jnp.asarray(cov)),
        "precision": ji.priors.Gaussian(jnp.zeros(D), precision=jnp.asarray(cov)),
        "gmrf": ji.priors.GMRF((D,), order=2, boundary="zero", precision=3.0),
        "gmrf2d": ji.priors.GMRF((5, 6), order=1, boundary="zero", precision=2.0, mean=0.5),
    }


def _prior_cov(prior):
    if isinstance(prior, ji.priors.GMRF):
        return np.linalg.inv(np.asarray(prior.precision_matrix()))
    return np.asarray(prior.covariance())


def _setup(name, seed=0):
    rng = np.random.default_rng(seed)
    prior = _priors(rng)[name]
    a = rng.normal(size=(M, D))
    shape = prior.event_shape
    forward = (lambda t: jnp.asarray(a) @ t.ravel()) if len(shape) == 2 else jnp.asarray(a)
    problem = ji.InverseProblem(forward, prior, ji.likelihoods.Gaussian(SIGMA))
    ys = rng.normal(size=(3, M))
    g = _prior_cov(prior)
    post = np.linalg.inv(a.T @ a / SIGMA**2 + np.linalg.inv(g))
    m0 = np.asarray(prior.mean).ravel()
    means = (post @ (a.T @ ys.T / SIGMA**2 + np.linalg.solve(g, m0)[:, None])).T
    return problem, jnp.asarray(ys), means, post, g, a


@pytest.mark.parametrize("name", ["std", "cov", "precision", "gmrf", "gmrf2d"])
def test_prior_square_root(name):
    prior = _priors(np.random.default_rng(0))[name]
    g = _prior_cov(prior)
    eye = jnp.eye(D)
    s = np.asarray(jax.vmap(lambda z: lowrank.prior_sqrt(prior, z), out_axes=1)(eye))
    st = np.asarray(jax.vmap(lambda z: lowrank.prior_sqrt(prior, z, transpose=True), out_axes=1)(eye))
    sinv = np.asarray(jax.vmap(lambda z: lowrank.prior_sqrt_inverse(prior, z), out_axes=1)(eye))
    np.testing.assert_allclose(s @ s.T, g, rtol=0, atol=RTOL * np.abs(g).max())
    np.testing.assert_allclose(st, s.T, rtol=0, atol=RTOL * np.abs(s).max())
    np.testing.assert_allclose(sinv @ s, np.eye(D), rtol=0, atol=RTOL * np.linalg.cond(s))
    np.testing.assert_allclose(lowrank.prior_variance(prior, jnp.float64), np.diag(g), rtol=RTOL)
    np.testing.assert_allclose(lowrank.prior_logdet(prior), np.linalg.slogdet(g)[1], rtol=0, atol=1e-8)


@pytest.mark.parametrize("name", ["std", "cov", "precision", "gmrf", "gmrf2d"])
def test_exact_when_rank_covers_the_data(name):
    # rank(H̃) = M: M pairs (found with M + 10 probes) reproduce the exact posterior.
    problem, ys, means, post, g, _ = _setup(name)
    approx = ji.laplace(problem, ys[0], rank=M, key=jax.random.key(1))
    assert isinstance(approx, ji.LowRankGaussianApproximation) and bool(approx.ok)
    assert approx.eigvals.shape == (M,) and approx.eigvecs.shape == (D, M)
    # the mode from ji.solve_map, converged at ||grad|| <= tol (1 + |f|), tol = 1e-9: off by at
    # most ||Γ_post||₂ times that gradient
    f = -problem.log_density(problem.prior.center() * 0 + approx.mode, ys[0])
    bound = np.linalg.norm(post, 2) * 1e-9 * (1 + abs(float(f)))
    assert np.linalg.norm(np.asarray(approx.mean) - means[0]) <= bound
    np.testing.assert_allclose(approx.covariance, post, rtol=0, atol=RTOL * np.abs(post).max())
    np.testing.assert_allclose(approx.variance(), np.diag(post), rtol=RTOL)
    np.testing.assert_allclose(approx.std(), np.sqrt(np.diag(post)), rtol=RTOL)
    v = np.random.default_rng(2).normal(size=D)
    np.testing.assert_allclose(approx.covariance_matvec(jnp.asarray(v)), post @ v, rtol=0,
                               atol=RTOL * np.abs(post).max() * np.abs(v).sum())
    logdet_post, logdet_pr = np.linalg.slogdet(post)[1], np.linalg.slogdet(g)[1]
    np.testing.assert_allclose(approx.logdet(), logdet_post, rtol=0, atol=1e-8)
    np.testing.assert_allclose(approx.logdet(relative=True), logdet_post - logdet_pr, rtol=0, atol=1e-8)


def test_factor_square_root_whiten_and_precision():
    problem, ys, means, post, _, _ = _setup("precision")
    f = jax.jit(lambda y, u: lowrank.factor(problem, y, u, M, jax.random.key(0)))(ys[0], jnp.asarray(means[0]))
    eye = jnp.eye(D)
    L = np.asarray(jax.vmap(f.cov_sqrt_matvec, out_axes=1)(eye))
    P = np.asarray(jax.vmap(f.precision_matvec, out_axes=1)(eye))
    np.testing.assert_allclose(L @ L.T, post, rtol=0, atol=RTOL * np.abs(post).max())
    np.testing.assert_allclose(P, np.linalg.inv(post), rtol=0, atol=RTOL * np.abs(P).max() * np.linalg.cond(post))
    z = jnp.asarray(np.random.default_rng(3).normal(size=D))
    np.testing.assert_allclose(f.whiten(f.mean + f.cov_sqrt_matvec(z)), z, rtol=0, atol=RTOL * np.linalg.cond(L))


@pytest.mark.parametrize("r", [1, 4, 8])
def test_truncation_error_bounded_by_discarded_eigenvalues(r):
    problem, ys, _, post, g, a = _setup("std")
    s = np.diag(np.asarray(problem.prior.std))
    lam = np.sort(np.linalg.eigvalsh(s @ a.T @ a @ s / SIGMA**2))[::-1]
    approx = ji.laplace(problem, ys[0], rank=r, oversampling=M - r)  # r + p = M: exact pairs
    np.testing.assert_allclose(approx.eigvals, lam[:r], rtol=RTOL)
    tail = lam[r] / (1 + lam[r])
    # (i) whitened error norm is exactly the first discarded λ/(1+λ)
    err = np.linalg.inv(s) @ (np.asarray(approx.covariance) - post) @ np.linalg.inv(s)
    np.testing.assert_allclose(np.linalg.norm(err, 2), tail, rtol=1e-8)
    # (ii) pointwise variances: overstated, by at most tail · prior variance
    excess = np.asarray(approx.variance()) - np.diag(post)
    assert np.all(excess >= -RTOL * np.diag(g))
    assert np.all(excess <= tail * np.diag(g) * (1 + RTOL))
    assert excess.max() > 0.1 * tail * np.diag(g).min()  # the bound is not vacuous here
    # (iii) log-determinant: the discarded Σ log(1+λ)
    np.testing.assert_allclose(approx.logdet() - np.linalg.slogdet(post)[1], np.sum(np.log1p(lam[r:])),
                               rtol=1e-8, atol=1e-9)


def test_randomized_eigensolver_converges_on_a_decaying_spectrum():
    # k = 16 probes < d = 120, λ_i = 10⁴ 2^{-i}. Ritz values never exceed the eigenvalues
    # (Cauchy interlacing) and, after q power iterations, each kept λ_j is found to relative
    # accuracy ~ tan²θ₀ (λ_{k+1}/λ_j)^{2(q+1)} (Saad 2011, Thm 5.2); tan²θ₀ ≤ d for a Gaussian
    # start except with tiny probability: here ≤ 120 · 2^{-24} ≈ 7e-6 for j ≤ r = 10.
    d, r, p, q = 120, 10, 6, 1
    rng = np.random.default_rng(4)
    lam = 1e4 * 0.5 ** np.arange(d)
    v = np.linalg.qr(rng.normal(size=(d, d)))[0]
    h = jnp.asarray(v @ np.diag(lam) @ v.T)
    got, vecs = lowrank.randomized_eigh(lambda x: h @ x, d, r, jax.random.key(5), oversampling=p, power_iters=q)
    assert np.all(np.asarray(got) <= lam[:r] * (1 + 1e-12))
    bound = d * (lam[r + p] / lam[:r]) ** (2 * (q + 1))
    assert np.all(np.abs(np.asarray(got) - lam[:r]) <= lam[:r] * (bound + 1e-12))
    np.testing.assert_allclose(np.asarray(vecs).T @ np.asarray(vecs), np.eye(r), atol=1e-12)


def test_sample_covariance_matches():
    problem, ys, means, post, _, _ = _setup("cov")
    approx = ji.laplace(problem, ys[0], rank=M)
    n = 40000
    draws = np.asarray(approx.sample(jax.random.key(0), n))
    assert draws.shape == (n, D)
    sd = np.sqrt(np.diag(post))
    np.testing.assert_array_less(np.abs(draws.mean(0) - means[0]), 5 * sd / np.sqrt(n))
    emp = np.cov(draws.T)
    # a sample covariance entry has standard error sqrt((C_ii C_jj + C_ij²) / n); 5 se over
    # 465 distinct entries fails with probability < 3e-4
    se = np.sqrt((np.outer(np.diag(post), np.diag(post)) + post**2) / n)
    np.testing.assert_array_less(np.abs(emp - post), 5 * se)


def test_batch_equals_one_at_a_time():
    problem, ys, means, post, _, _ = _setup("gmrf")
    batched = ji.laplace(problem, ys.reshape(3, 1, M), rank=M)
    assert batched.mean.shape == (3, 1, D) and batched.eigvecs.shape == (3, 1, D, M)
    assert batched.ok.shape == (3, 1) and batched.logdet().shape == (3, 1)
    for i in range(3):
        one = ji.laplace(problem, ys[i], rank=M)
        np.testing.assert_allclose(batched.mean[i, 0], one.mean, rtol=0, atol=1e-10)
        np.testing.assert_allclose(batched.eigvals[i, 0], one.eigvals, rtol=RTOL)
        np.testing.assert_allclose(batched.variance()[i, 0], one.variance(), rtol=RTOL)
        np.testing.assert_allclose(batched.logdet()[i, 0], one.logdet(), rtol=0, atol=1e-9)
    draws = batched.sample(jax.random.key(0), 5)
    assert draws.shape == (3, 1, 5, D)


def test_matches_dense_laplace_on_deconvolution2d():
    # A 10x10 image (d = 100, 24 eigenvalues above 0.1): the low-rank path with every pair
    # equals the dense Hessian's inverse; rank="auto" stops at 32 pairs, the last below
    # AUTO_TOL, and the variance then obeys bound (ii) with λ_{r+1} < AUTO_TOL (the 42 probes
    # resolve this fast-decaying spectrum far below that margin).
    bench = ji.problems.load("deconvolution2d", n=10, sigma=0.2, noise=0.05)
    at = bench.theta_true
    dense = ji.laplace(bench.problem, bench.y, at=at)
    full = ji.laplace(bench.problem, bench.y, at=at, rank=100)
    var = np.diag(np.asarray(dense.covariance))
    np.testing.assert_allclose(full.variance(), var, rtol=RTOL)
    auto = ji.laplace(bench.problem, bench.y, at=at, rank="auto")
    assert auto.rank == 32 and auto.eigvals[-1] < lowrank.AUTO_TOL
    var_pr = np.asarray(bench.problem.prior.variance()).ravel()
    excess = np.asarray(auto.variance()) - var
    assert np.all(excess <= lowrank.AUTO_TOL / (1 + lowrank.AUTO_TOL) * var_pr + RTOL * var_pr)
    assert 1 <= int(auto.informed_rank(0.99)) <= auto.rank


def test_non_gaussian_prior_and_bad_arguments():
    a = jnp.ones((3, 4))
    problem = ji.InverseProblem(a, ji.priors.Laplace(jnp.zeros(4), 1.0), ji.likelihoods.Gaussian(1.0))
    with pytest.raises(ValueError, match=r"prior: got Laplace.*rank=None"):
        ji.laplace(problem, jnp.zeros(3), rank=2)
    improper = ji.InverseProblem(a, ji.priors.GMRF((4,), boundary="periodic"), ji.likelihoods.Gaussian(1.0))
    with pytest.raises(ValueError, match=r"boundary='periodic'.*rank=None"):
        ji.laplace(improper, jnp.zeros(3), rank=2)
    good = ji.InverseProblem(a, ji.priors.Gaussian(jnp.zeros(4), 1.0), ji.likelihoods.Gaussian(1.0))
    for bad in (0, 5, 2.0, "full"):
        with pytest.raises(ValueError, match=r"rank: got"):
            ji.laplace(good, jnp.zeros(3), rank=bad)
    with pytest.raises(ValueError, match=r"oversampling: got -1"):
        ji.laplace(good, jnp.zeros(3), rank=2, oversampling=-1)
    # by keyword: the dataclass order is (mean, ok, problem, eigvals, eigvecs), the base's fields first
    huge = lowrank.LowRankGaussianApproximation(mean=jnp.zeros((12000,)), eigvals=jnp.zeros(1),
                                                eigvecs=jnp.zeros((12000, 1)), ok=jnp.asarray(True), problem=good)
    with pytest.raises(ValueError, match=r"covariance: got d=12000.*covariance_matvec"):
        _ = huge.covariance
