"""Hansen's Regularization Tools problems against their published formulas (SciPy quadrature)."""

import itertools
import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import jinverse as ji
from jinverse.problems.classical import hansen, laguerre_nodes

NAMES = ["deriv2", "shaw", "phillips", "gravity", "heat", "baart", "foxgood", "wing", "i_laplace"]


def box_average(f, lo, hi, n, points=None):
    """(1/sqrt(h)) ∫ f over each of n boxes: the coefficient on an orthonormal box function."""
    e = np.linspace(lo, hi, n + 1)
    out = [integrate.quad(f, a, b, points=[p for p in (points or []) if a < p < b] or None,
                          epsabs=1e-14, epsrel=1e-13)[0] for a, b in itertools.pairwise(e)]
    return np.array(out) / math.sqrt(e[1] - e[0])


# -- Galerkin problems: every entry of A, b and x from the continuous definitions ------------


def _deriv2_entry(i, j, h):
    """(1/h) ∫_box_i ∫_box_j K(s,t) dt ds, split along s = t so each piece is smooth."""
    lo_s, hi_s, lo_t, hi_t = i * h, (i + 1) * h, j * h, (j + 1) * h
    below = integrate.dblquad(lambda t, s: t * (s - 1), lo_s, hi_s, lo_t, lambda s: min(max(s, lo_t), hi_t))[0]
    above = integrate.dblquad(lambda t, s: s * (t - 1), lo_s, hi_s, lambda s: min(max(s, lo_t), hi_t), hi_t)[0]
    return (below + above) / h


@pytest.mark.parametrize("example", [1, 2, 3])
def test_deriv2_matches_galerkin_definition(example):
    n = 8
    h = 1 / n
    A, b, x = hansen("deriv2", n, example=example)
    for i, j in [(0, 0), (3, 1), (5, 5), (2, 7), (7, 7)]:
        assert A[i, j] == pytest.approx(_deriv2_entry(i, j, h), rel=1e-12, abs=1e-15)
    g, f = {1: (lambda s: (s**3 - s) / 6, lambda t: t),
            2: (lambda s: math.exp(s) + (1 - math.e) * s - 1, math.exp),
            3: (lambda s: (4 * s**3 - 3 * s) / 24 if s < 0.5 else (-4 * s**3 + 12 * s**2 - 9 * s + 1) / 24,
                lambda t: t if t < 0.5 else 1 - t)}[example]
    np.testing.assert_allclose(b, box_average(g, 0, 1, n, [0.5]), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(x, box_average(f, 0, 1, n, [0.5]), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(A, A.T)


def test_deriv2_eigenvalues_are_those_of_the_green_operator():
    # K is the Green's function of u'' with u(0) = u(1) = 0: eigenvalues -1/(kπ)², the Galerkin
    # matrix reproduces the first ones to O(h²).
    A, _, _ = hansen("deriv2", 128)
    lam = np.sort(np.linalg.eigvalsh(A))[:5]
    exact = -1 / (np.arange(1, 6) * math.pi) ** 2
    np.testing.assert_allclose(lam, exact, rtol=5 * (1 / 128) ** 2 * 25)


def test_phillips_matches_galerkin_definition():
    n, h = 16, 12 / 16
    A, b, x = hansen("phillips", n)
    phi = lambda z: 1 + math.cos(z * math.pi / 3) if abs(z) < 3 else 0.0
    g = lambda s: (6 - abs(s)) * (1 + 0.5 * math.cos(s * math.pi / 3)) + 9 / (2 * math.pi) * math.sin(abs(s) * math.pi / 3)
    e = lambda i: -6 + i * h
    for i, j in [(0, 0), (3, 1), (5, 5), (2, 7), (0, 3), (0, 4)]:
        # phi has kinks at |s - t| = 3: give both quadratures the break points
        lo, hi = e(j), e(j + 1)

        def inner(s, lo=lo, hi=hi):
            kinks = [p for p in (s - 3, s + 3) if lo < p < hi] or None
            return integrate.quad(lambda t, s=s: phi(s - t), lo, hi, points=kinks, epsabs=1e-14)[0]

        kinks = [p for p in (lo - 3, lo + 3, hi - 3, hi + 3) if e(i) < p < e(i + 1)] or None
        v = integrate.quad(inner, e(i), e(i + 1), points=kinks, epsabs=1e-14)[0]
        assert A[i, j] == pytest.approx(v / h, rel=1e-10, abs=1e-13)
    # b is a difference of antiderivatives of size ~30: rounding ~30 eps in absolute terms
    np.testing.assert_allclose(b, box_average(g, -6, 6, n, [0.0]), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(x, box_average(phi, -6, 6, n, [-3.0, 3.0]), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(A, A.T)


def test_baart_matches_definition_to_simpson_accuracy():
    # One integration exact, the other Simpson's rule: relative entry error at most
    # h_t^4/2880 * max|f''''/f| with f = exp(s cos t), and |f''''/f| <= 30 for s <= pi/2.
    for n in (8, 16):
        hs, ht = math.pi / (2 * n), math.pi / n
        A, b, x = hansen("baart", n)
        exact = [integrate.dblquad(lambda t, s: math.exp(s * math.cos(t)), i * hs, (i + 1) * hs,
                                   j * ht, (j + 1) * ht, epsabs=1e-14)[0] / math.sqrt(hs * ht)
                 for i, j in [(0, 0), (3, 1), (5, 3), (7, 7), (2, 4)]]
        got = [A[i, j] for i, j in [(0, 0), (3, 1), (5, 3), (7, 7), (2, 4)]]
        assert np.max(np.abs(np.array(got) - exact) / np.abs(exact)) < ht**4 * 30 / 2880
        g = lambda s: 2 * math.sinh(s) / s if s else 2.0
        np.testing.assert_allclose(b, box_average(g, 0, math.pi / 2, n), rtol=1e-6)
        np.testing.assert_allclose(x, box_average(math.sin, 0, math.pi, n), rtol=1e-12)


# -- quadrature (collocation) problems: entries from the kernel, b from g --------------------


def test_midpoint_kernels():
    n = 16
    t = (np.arange(n) + 0.5) / n
    A, b, x = hansen("foxgood", n)
    np.testing.assert_allclose(A, np.sqrt(t[:, None] ** 2 + t[None, :] ** 2) / n, rtol=1e-14)
    np.testing.assert_allclose(x, t)
    np.testing.assert_allclose(b, ((1 + t**2) ** 1.5 - t**3) / 3)
    np.testing.assert_allclose(A @ x, b, rtol=1e-3)  # midpoint rule, O(h²)
    A, b, x = hansen("gravity", n)
    np.testing.assert_allclose(A, 0.25 / (0.25**2 + (t[:, None] - t[None, :]) ** 2) ** 1.5 / n, rtol=1e-14)
    np.testing.assert_allclose(x, np.sin(np.pi * t) + 0.5 * np.sin(2 * np.pi * t))
    np.testing.assert_allclose(b, A @ x)
    A, b, x = hansen("wing", n)
    np.testing.assert_allclose(A, t[None, :] * np.exp(-t[:, None] * t[None, :] ** 2) / n, rtol=1e-14)
    np.testing.assert_allclose(b * math.sqrt(n), (np.exp(-t / 9) - np.exp(-4 * t / 9)) / (2 * t))
    np.testing.assert_allclose(x * math.sqrt(n), (t > 1 / 3) & (t < 2 / 3))


def test_shaw_kernel_and_solution():
    n = 32
    h = math.pi / n
    t = -math.pi / 2 + (np.arange(n) + 0.5) * h
    A, b, x = hansen("shaw", n)
    for i, j in [(0, 0), (3, 9), (10, 21), (31, 0), (16, 15)]:
        u = math.pi * (math.sin(t[i]) + math.sin(t[j]))
        k = (math.cos(t[i]) + math.cos(t[j])) ** 2 * ((math.sin(u) / u) ** 2 if u else 1.0)
        assert A[i, j] == pytest.approx(h * k, rel=1e-12)
    np.testing.assert_allclose(x, 2 * np.exp(-6 * (t - 0.8) ** 2) + np.exp(-2 * (t + 0.5) ** 2))
    np.testing.assert_allclose(A, A.T, rtol=1e-14)
    np.testing.assert_allclose(b, A @ x)


@pytest.mark.parametrize("kappa", [1.0, 5.0])
def test_heat_volterra_kernel(kappa):
    n = 32
    h = 1 / n
    A, b, x = hansen("heat", n, kappa=kappa)
    k = lambda z: z**-1.5 / (2 * kappa * math.sqrt(math.pi)) * math.exp(-1 / (4 * kappa**2 * z))
    for i in range(n):
        for j in range(n):
            want = h * k((i - j + 0.5) * h) if i >= j else 0.0
            assert A[i, j] == pytest.approx(want, rel=1e-12, abs=1e-300)
    def f(tau):  # Hansen's exact solution as a function of tau = 20 i / n on the first half
        return 0.75 * tau**2 / 4 if tau < 2 else 0.75 + (tau - 2) * (3 - tau) if tau < 3 else 0.75 * math.exp(-2 * (tau - 3))

    np.testing.assert_allclose(x, [f(20 * i / n) if i <= n // 2 else 0.0 for i in range(1, n + 1)])
    np.testing.assert_allclose(b, A @ x)


def test_i_laplace_gauss_laguerre():
    for n in (20, 64):
        t, logw = laguerre_nodes(n)
        tt, ww = np.polynomial.laguerre.laggauss(n)
        np.testing.assert_allclose(t, tt, rtol=1e-12)
        np.testing.assert_allclose(logw, np.log(ww), rtol=1e-10)  # relative accuracy of tiny w
    # exact for polynomials of degree < 2n: ∫ t^k e^{-t} dt = k!, up to large n
    t, logw = laguerre_nodes(300)
    for k in (0, 1, 5, 12):
        assert np.sum(np.exp(logw + k * np.log(t))) == pytest.approx(math.factorial(k), rel=1e-9)
    assert np.isfinite(logw).all()
    # Laplace transforms of the exact solutions, by the quadrature: close to g(s) for smooth f.
    for example in (1, 2, 3):
        A, b, x = hansen("i_laplace", 32, example=example)
        assert np.linalg.norm(A @ x - b) < 1e-5 * np.linalg.norm(b)
    A, b, x = hansen("i_laplace", 32, example=4)  # a step: only slowly convergent
    assert np.linalg.norm(A @ x - b) / np.linalg.norm(b) < 0.1
    s = 10 / 32 * np.arange(1, 33)
    np.testing.assert_allclose(b, np.exp(-2 * s) / s)


def test_singular_value_decay():
    def rel_sv(name, n=64, **kw):
        s = np.linalg.svd(hansen(name, n, **kw)[0], compute_uv=False)
        return s / s[0]

    # severely ill-posed: geometric decay that reaches rounding level within the first 40%
    for name in ("shaw", "baart", "foxgood", "wing", "i_laplace"):
        assert rel_sv(name)[25] < 1e-13, name
    # mildly ill-posed: polynomial decay, the smallest well above rounding
    assert 1e-5 < rel_sv("deriv2")[-1] < 1e-3  # ~ (1/n)²
    assert 1e-7 < rel_sv("phillips")[-1] < 1e-4
    # heat: kappa = 5 well-conditioned, kappa = 1 not
    assert rel_sv("heat", kappa=5.0)[-1] > 0.1 and rel_sv("heat", kappa=1.0)[-1] < 1e-20
    # gravity: deeper sources decay faster
    assert rel_sv("gravity", d=0.5)[20] < 1e-3 * rel_sv("gravity", d=0.25)[20]


def test_registry_and_bad_input():
    assert set(NAMES) <= set(ji.problems.names())
    with pytest.raises(ValueError, match="multiple of 4"):
        ji.problems.load("phillips", n=30)
    with pytest.raises(ValueError, match="example"):
        ji.problems.load("deriv2", example=4)
    with pytest.raises(ValueError, match="noise"):
        ji.problems.load("shaw", noise=-1.0)
    with pytest.raises(ValueError, match="rhs"):
        ji.problems.load("shaw", rhs="nope")


@pytest.mark.parametrize("name", NAMES)
def test_benchmark_data(name):
    n = 32
    bm = ji.problems.load(name, n=n, noise=0.05, seed=3)
    A, _, x = hansen(name, n)
    assert bm.y.shape == (n,) and bm.theta_true.shape == (n,)
    np.testing.assert_array_equal(bm.info["A"], A)
    np.testing.assert_array_equal(bm.reference["solution"], x)
    assert bm.metric == "rel_error"
    assert np.isfinite(float(bm.problem.log_posterior(bm.theta_true, bm.y)))
    np.testing.assert_allclose(bm.problem.forward(jnp.asarray(x)), A @ x)
    std = 0.05 * np.linalg.norm(A @ x) / math.sqrt(n)
    assert bm.info["noise_std"] == pytest.approx(std)
    again = ji.problems.load(name, n=n, noise=0.05, seed=3)
    np.testing.assert_array_equal(again.y, bm.y)
    other = ji.problems.load(name, n=n, noise=0.05, seed=4)
    assert not np.array_equal(other.y, bm.y)


def test_batch_noise_statistics():
    n, B = 32, 400
    bm = ji.problems.load("deriv2", n=n, noise=0.1, batch=B, seed=1)
    single = ji.problems.load("deriv2", n=n, noise=0.1, seed=1)
    assert bm.y.shape == (B, n) and bm.theta_true.shape == (B, n)
    # exact on purpose: noisy_data is elementwise (no reduction the batch width could reorder)
    # and promises that the unbatched data is row 0 of any batch with the same seed
    np.testing.assert_array_equal(bm.y[0], single.y)
    np.testing.assert_array_equal(bm.theta_true[3], single.theta_true)
    e = np.asarray(bm.y) - np.asarray(bm.info["b"])
    # sample std of B*n independent normals: relative standard error 1/sqrt(2 B n) = 0.0056
    assert np.std(e) == pytest.approx(bm.info["noise_std"], rel=4 * 0.0056)
    exact = ji.problems.load("deriv2", n=n, example=2, rhs="exact", seed=1)
    e2 = np.asarray(exact.y) - np.asarray(exact.info["A"] @ exact.theta_true)
    e1 = np.asarray(ji.problems.load("deriv2", n=n, example=2, seed=1).y) - np.asarray(exact.info["b"])
    np.testing.assert_allclose(e1, e2, atol=1e-12)
