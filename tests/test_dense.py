"""The dense linear-algebra guard (jinverse/dense.py, issue 19).

Fast tests lower ``LAPACK_LIMIT_BYTES`` so that small matrices take the blocked and refusing
paths; the ``slow`` tests run the real size (16384 float64, 2**31 bytes) in subprocesses.
"""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinverse as ji
from jinverse import dense


@pytest.fixture
def small_limit(monkeypatch):
    """Matrices of 24 x 24 float64 and up (4608 bytes) count as 'too large for LAPACK'."""
    monkeypatch.setattr(dense, "LAPACK_LIMIT_BYTES", 24 * 24 * 8)
    return 24


def _spd(key, d, batch=()):
    g = jax.random.normal(key, (*batch, d, d))
    return g @ jnp.swapaxes(g, -1, -2) / d + jnp.eye(d)


def test_cholesky_blocked_equals_lapack(key, small_limit):
    a = _spd(key, 50)  # 50 x 50 -> blocks of 11 rows: 5 blocks, the last one short
    assert not dense.fits_lapack(50, 50, a.dtype)
    lo = dense.cholesky(a)
    np.testing.assert_allclose(lo, np.linalg.cholesky(np.asarray(a)), rtol=1e-10, atol=1e-12)
    assert np.all(np.triu(np.asarray(lo), 1) == 0)


def test_cholesky_blocked_not_pd_gives_nan(small_limit):
    a = jnp.eye(40).at[30, 30].set(-1.0)  # the failure is in a late block
    assert not bool(jnp.all(jnp.isfinite(dense.cholesky(a))))
    assert not bool(jnp.all(jnp.isfinite(jnp.linalg.cholesky(a))))


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("rhs", [(), (7,), (60,)])
def test_solve_triangular_blocked(key, small_limit, lower, transpose_a, rhs):
    k1, k2 = jax.random.split(key)
    lo = jnp.linalg.cholesky(_spd(k1, 50))
    a = lo if lower else lo.T
    b = jax.random.normal(k2, (50, *rhs))
    x = dense.solve_triangular(a, b, lower=lower, transpose_a=transpose_a)
    op = a.T if transpose_a else a
    np.testing.assert_allclose(op @ x, b, rtol=1e-9, atol=1e-10)
    assert x.shape == b.shape


def test_cho_solve_blocked_equals_jax(key, small_limit):
    a = _spd(key, 45)
    c = dense.cholesky(a)
    for b in (jnp.eye(45), jnp.arange(45.0)):
        want = jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(a), True), b)
        np.testing.assert_allclose(dense.cho_solve((c, True), b), want, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(dense.cho_solve((c.T, False), b), want, rtol=1e-9, atol=1e-12)


def test_blocked_under_vmap_and_jit_equals_unbatched(key, small_limit):
    a = _spd(key, 30, (3,))
    one = lambda m: dense.cho_solve((dense.cholesky(m), True), jnp.eye(30))  # noqa: E731
    batched = jax.jit(jax.vmap(one))(a)
    for i in range(3):
        np.testing.assert_allclose(batched[i], np.linalg.inv(np.asarray(a[i])), rtol=1e-9, atol=1e-12)
    mapped = jax.lax.map(one, a)
    np.testing.assert_allclose(batched, mapped, rtol=1e-12, atol=1e-14)


def test_below_limit_is_plain_jax(key):
    a = _spd(key, 12)
    assert dense.fits_lapack(12, 12, a.dtype)
    np.testing.assert_array_equal(dense.cholesky(a), jnp.linalg.cholesky(a))
    # no blocked code in the program: one cholesky primitive
    assert str(jax.make_jaxpr(dense.cholesky)(a)).count("cholesky") >= 1
    assert "triangular_solve" not in str(jax.make_jaxpr(dense.cholesky)(a))


@pytest.mark.parametrize("fn", ["solve", "eigh", "svd"])
def test_refused_above_limit_names_size_memory_and_alternative(small_limit, fn):
    a = jnp.eye(30) * 2.0
    call = {"solve": lambda: dense.solve(a, jnp.ones(30), what="optimizer='newton'",
                                         alternative="optimizer='lbfgs'"),
            "eigh": lambda: dense.eigh(a, what="eigh", alternative="optimizer='lbfgs'"),
            "svd": lambda: dense.svd(a, what="svd", alternative="optimizer='lbfgs'")}[fn]
    with pytest.raises(ValueError, match=r"30 x 30 float64 matrix \(0\.00 GiB\).*optimizer='lbfgs'"):
        jax.jit(call)()
    # under the limit the same calls run
    small = jnp.eye(20) * 2.0
    np.testing.assert_allclose(dense.solve(small, jnp.ones(20)), 0.5 * np.ones(20))
    np.testing.assert_allclose(dense.eigh(small)[0], 2 * np.ones(20))


def test_check_dense_refuses_with_numbers():
    with pytest.raises(ValueError, match=r"ji.laplace: 4 lane\(s\) x 5 dense 16384 x 16384 float64 matrices "
                                         r"need 40.0 GiB.*16.0 GiB.*rank=r"):
        dense.check_dense(16384, jnp.float64, lanes=4, copies=5, what="ji.laplace",
                          alternative="ji.laplace(..., rank=r)", available=16 * 2**30)
    assert dense.check_dense(100, jnp.float32, lanes=2, copies=3, what="x", available=2**30) == 2 * 3 * 100**2 * 4
    assert dense.available_bytes() is None or dense.available_bytes() > 0


def _linear_gaussian(n, key):
    k1, k2 = jax.random.split(key)
    A = jax.random.normal(k1, (n + 5, n)) / np.sqrt(n)
    problem = ji.InverseProblem(lambda t: A @ t, ji.priors.Gaussian(jnp.zeros(n), 1.0),
                                ji.likelihoods.Gaussian(0.1))
    y = jax.random.normal(k2, (3, n + 5))
    H = A.T @ A / 0.01 + jnp.eye(n)
    return problem, y, H


def test_laplace_blocked_equals_exact_posterior(key, small_limit):
    problem, y, H = _linear_gaussian(40, key)  # 40 x 40 float64 is above the lowered limit
    approx = ji.laplace(problem, y, at=jnp.zeros((3, 40)), warn=False)
    assert bool(jnp.all(approx.ok))
    cov = np.linalg.inv(np.asarray(H))
    np.testing.assert_allclose(approx.covariance, np.broadcast_to(cov, (3, 40, 40)), rtol=1e-8, atol=1e-12)
    draws = approx.sample(jax.random.key(1), 4)  # the blocked Cholesky of the covariance
    assert draws.shape == (3, 4, 40) and bool(jnp.all(jnp.isfinite(draws)))


def test_laplace_refuses_a_block_that_does_not_fit(key, monkeypatch):
    problem, y, _ = _linear_gaussian(40, key)
    monkeypatch.setattr(dense, "available_bytes", lambda device=None: 40 * 40 * 8 * 3)
    with pytest.raises(ValueError, match=r"ji.laplace: 3 lane\(s\) x \d+ dense 40 x 40 float64.*rank=r"):
        ji.laplace(problem, y, at=jnp.zeros((3, 40)), warn=False)


def test_linear_gaussian_dense_blocked(key, small_limit):
    problem, y, H = _linear_gaussian(40, key)
    post = ji.linear.linear_gaussian(problem, y, method="dense")
    np.testing.assert_allclose(post.covariance(), np.linalg.inv(np.asarray(H)), rtol=1e-8, atol=1e-12)
    exact = ji.linear.linear_gaussian(problem, y, method="cg")
    np.testing.assert_allclose(post.mean, exact.mean, rtol=1e-6, atol=1e-8)
    assert post.sample(jax.random.key(2), (5,)).shape == (3, 5, 40)


def test_newton_refused_above_limit(key, small_limit):
    problem, y, _ = _linear_gaussian(40, key)
    with pytest.raises(ValueError, match=r"optimizer='newton'.*40 x 40 float64.*; use optimizer='[a-z-]+'"):
        ji.solve_map(problem, y, optimizer="newton")


def _run(code: str, timeout: float):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_guard_at_the_real_size():
    """16384 float64 (2**31 bytes, the crashing size of issue 19) through the guard, vmapped, in a
    subprocess: no crash, and the closed form of (2 I + 0.001 J)⁻¹ (J all ones)."""
    proc = _run("""
        import jax, jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        from jinverse import dense
        d = 16384
        A = (jnp.eye(d) * 2.0 + 0.001)[None]
        B = jnp.eye(d)[:, :4]  # a few columns: the full inverse takes ~10x longer on 2 cores
        one = lambda a: dense.cho_solve((dense.cholesky(a), True), B)
        X = jax.block_until_ready(jax.jit(jax.vmap(one))(A))[0]
        off = -0.001 / (2 * (2 + 0.001 * d))  # (2 I + c J)⁻¹ = I / 2 - c J / (2 (2 + c d))
        want = B / 2 + off
        err = float(jnp.max(jnp.abs(X - want)))
        print("max error", err)
        assert err < 1e-12, err
    """, timeout=3600)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-2000:]}"


@pytest.mark.slow
def test_jax_still_needs_the_guard():
    """The plain-JAX reproduction of issue 19 must still crash; when it does not, say so."""
    proc = _run(dense.REPRODUCTION, timeout=3600)
    crashed = proc.returncode < 0 or proc.returncode in (134, 139)  # killed by a signal (SIGSEGV, SIGABRT)
    assert proc.returncode == 0 or crashed, (
        f"the reproduction failed without crashing (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    assert crashed, (f"JAX no longer crashes; the guard in jinverse/dense.py may be lifted (jax {jax.__version__}: "
                     f"the reproduction of issue 19 returned normally; rerun "
                     f"tests/scripts/probe_dense_linalg.py and raise or drop dense.LAPACK_LIMIT_BYTES)")


def test_dense_gaussian_prior_above_the_limit_is_blocked_and_equal(key, small_limit):
    # a Gaussian prior with a dense covariance or precision factorises at construction: above the
    # limit through the blocked Cholesky, with the same density, draws, whitening and variances
    from jinverse import priors

    d = 40  # 40 x 40 float64 is above the lowered 24 x 24 limit
    a = jax.random.normal(key, (d, d))
    cov = a @ a.T / d + jnp.eye(d)
    theta = jax.random.normal(jax.random.fold_in(key, 1), (d,))
    for kind in ("cov", "precision"):
        blocked = priors.Gaussian(0.5, **{kind: cov})
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(dense, "LAPACK_LIMIT_BYTES", 2**30)
            plain = priors.Gaussian(0.5, **{kind: cov})
        np.testing.assert_allclose(blocked.chol, plain.chol, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(blocked.log_prob(theta), plain.log_prob(theta), rtol=1e-10)
        np.testing.assert_allclose(blocked.whiten(theta), plain.whiten(theta), rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(blocked.variance(), plain.variance(), rtol=1e-9)
        np.testing.assert_allclose(blocked.sample(key, (3,)), plain.sample(key, (3,)), rtol=1e-9, atol=1e-10)
    # the positive-definiteness check takes the blocked path too, and still refuses
    bad = cov - 2 * jnp.eye(d) * float(jnp.linalg.eigvalsh(cov)[0] + 1.0)
    with pytest.raises(ValueError, match="cov: got a matrix that is not positive definite"):
        priors.Gaussian(0.0, cov=bad)
    with pytest.raises(ValueError, match=r"priors.Gaussian.covariance: got a dense 40 x 40 float64 matrix"):
        priors.Gaussian(0.0, precision=cov).covariance()


def test_dense_gaussian_likelihoods_above_the_limit_are_blocked_and_equal(key, small_limit):
    # a fixed covariance (factorised once) and a covariance from the forward model (factorised
    # per evaluation, inside the lanes): above the lowered limit both go through the blocked path
    from jinverse import likelihoods

    d = 40
    a = jax.random.normal(key, (d, d))
    cov = a @ a.T / d + jnp.eye(d)
    y = jax.random.normal(jax.random.fold_in(key, 1), (d,))
    pred = jnp.zeros(d)
    blocked = likelihoods.Gaussian(cov=cov)
    mvn = likelihoods.MultivariateGaussian()
    lp_mvn = jax.jit(mvn.log_prob)(y, jnp.vstack([pred, cov]))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dense, "LAPACK_LIMIT_BYTES", 2**30)
        plain = likelihoods.Gaussian(cov=cov)
        lp_plain = plain.log_prob(y, pred)
        lp_mvn_plain = jax.jit(mvn.log_prob)(y, jnp.vstack([pred, cov]))
    np.testing.assert_allclose(blocked.log_prob(y, pred), lp_plain, rtol=1e-10)
    np.testing.assert_allclose(lp_mvn, lp_mvn_plain, rtol=1e-10)
    np.testing.assert_allclose(lp_mvn, lp_plain, rtol=1e-10)  # the two likelihoods agree
