"""Imaging problems: blur against SciPy's Gaussian filter, tomography against exact projections."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

import jinverse as ji
from jinverse.problems.imaging import (
    ParallelBeamProjector,
    gaussian_kernel,
    shepp_logan,
    shepp_logan_sinogram,
)

SCIPY_MODE = {"zero": "constant", "periodic": "wrap", "reflect": "reflect"}


# one compile per operator configuration, instead of op-by-op dispatch
@eqx.filter_jit
def fwd(op, x):
    return op(x)


@eqx.filter_jit
def adj(op, y):
    return op.adjoint(y)


@pytest.mark.parametrize("bc", ["zero", "periodic", "reflect"])
@pytest.mark.parametrize("phantom", ["piecewise_smooth", "piecewise_constant"])
def test_deconvolution1d_matches_scipy(bc, phantom):
    bm = ji.problems.load("deconvolution1d", n=100, sigma=0.03, bc=bc, phantom=phantom, seed=2)
    x = np.asarray(bm.theta_true)
    want = ndimage.gaussian_filter1d(x, 3.0, mode=SCIPY_MODE[bc], truncate=4.0)
    np.testing.assert_allclose(bm.problem.forward(bm.theta_true), want, atol=1e-14)
    A = np.asarray(bm.info["A"])
    np.testing.assert_allclose(A @ x, want, atol=1e-14)
    # a symmetric kernel gives a symmetric matrix for all three boundary conditions
    # (Toeplitz; circulant; Toeplitz-plus-Hankel)
    np.testing.assert_allclose(A, A.T, atol=1e-15)
    if bc != "zero":  # periodic and reflexive blurs preserve the total intensity
        assert float(jnp.sum(bm.problem.forward(bm.theta_true))) == pytest.approx(x.sum(), rel=1e-12)
    assert bm.y.shape == (100,) and bm.metric == "rel_error"
    if phantom == "piecewise_constant":
        assert len(np.unique(x)) == 5  # four plateaus and the background


@pytest.mark.parametrize("bc", ["zero", "periodic", "reflect"])
def test_deconvolution2d_matches_scipy(bc):
    bm = ji.problems.load("deconvolution2d", n=24, sigma=0.05, bc=bc, noise=0.02)
    x = np.asarray(bm.theta_true)
    want = ndimage.gaussian_filter(x, 0.05 * 24, mode=SCIPY_MODE[bc], truncate=4.0)
    np.testing.assert_allclose(bm.problem.forward(bm.theta_true), want, atol=1e-14)
    np.testing.assert_allclose(np.asarray(bm.info["A"]) @ x.ravel(), want.ravel(), atol=1e-14)
    assert bm.y.shape == (24, 24)
    assert np.isfinite(float(bm.problem.log_posterior(bm.theta_true, bm.y)))


def test_gaussian_kernel_is_scipys():
    k = gaussian_kernel(2.5)
    impulse = np.zeros(41)
    impulse[20] = 1
    r = (len(k) - 1) // 2
    np.testing.assert_allclose(ndimage.gaussian_filter1d(impulse, 2.5, truncate=4.0)[20 - r:21 + r], k)


def test_blur_batch_and_seed():
    bm = ji.problems.load("deconvolution2d", n=16, sigma=0.05, batch=3, seed=5)
    one = ji.problems.load("deconvolution2d", n=16, sigma=0.05, seed=5)
    assert bm.y.shape == (3, 16, 16) and bm.theta_true.shape == (3, 16, 16)
    np.testing.assert_array_equal(bm.y[0], one.y)  # exact on purpose: elementwise noise (noisy_data)
    assert not np.array_equal(bm.y[1], bm.y[0])
    lp = jax.vmap(bm.problem.log_posterior)(bm.theta_true, bm.y)
    assert lp.shape == (3,) and bool(jnp.all(jnp.isfinite(lp)))
    with pytest.raises(ValueError, match="bc"):
        ji.problems.load("deconvolution1d", bc="mirror")
    with pytest.raises(ValueError, match="phantom"):
        ji.problems.load("deconvolution1d", phantom="cameraman")


# -- tomography ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ct():
    return ji.problems.load("tomography", n=48, n_angles=24, noise=0.01, seed=1)


def test_tomography_dot_test(ct):
    op = ct.info["operator"]
    x = jax.random.normal(jax.random.key(1), (48, 48))
    y = jax.random.normal(jax.random.key(2), ct.y.shape)
    lhs, rhs = float(jnp.vdot(fwd(op, x), y)), float(jnp.vdot(x, adj(op, y)))
    assert lhs == pytest.approx(rhs, rel=1e-12)
    # the adjoint is the transpose of the Jacobian, computed independently by forward-mode AD
    e = jnp.zeros((48, 48)).at[10, 30].set(1.0)
    col = jax.jit(lambda v: jax.jvp(op, (x,), (v,))[1])(e)
    assert float(jnp.vdot(col, y)) == pytest.approx(float(adj(op, y)[10, 30]), rel=1e-12)


def test_tomography_chunked_views_agree():
    angles, dets = jnp.linspace(0, 3, 7), jnp.linspace(-1.4, 1.4, 23)
    full = ParallelBeamProjector(angles, dets, 16, 2)
    chunked = ParallelBeamProjector(angles, dets, 16, 2, angle_chunk=3)
    x = jax.random.normal(jax.random.key(3), (16, 16))
    y = jax.random.normal(jax.random.key(4), (7, 23))
    np.testing.assert_allclose(fwd(chunked, x), fwd(full, x), rtol=1e-12, atol=1e-14)
    lhs, rhs = float(jnp.vdot(fwd(chunked, x), y)), float(jnp.vdot(x, adj(chunked, y)))
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_tomography_single_point():
    # One pixel at (x0, y0): every projection is a bump centred at s = x0 cos θ + y0 sin θ whose
    # mass is the pixel's integral (the bilinear tent has integral pix²).
    n = 32
    pix = 2 / n
    angles = jnp.linspace(0, math.pi, 13, endpoint=False)
    dets = jnp.arange(-1.5, 1.5, pix / 8) + pix / 16
    op = ParallelBeamProjector(angles, dets, n, 8)
    iy, ix = 21, 7
    img = jnp.zeros((n, n)).at[iy, ix].set(1.0)
    p = np.asarray(fwd(op, img))
    x0, y0 = -1 + (ix + 0.5) * pix, -1 + (iy + 0.5) * pix
    mass = p.sum(1) * pix / 8
    np.testing.assert_allclose(mass, pix**2, rtol=2e-3)
    centre = (p * np.asarray(dets)).sum(1) / p.sum(1)
    np.testing.assert_allclose(centre, x0 * np.cos(angles) + y0 * np.sin(angles), atol=0.01 * pix)
    # at θ = 0 the bump is the tent's marginal: a triangle of half-width one pixel around x0
    s = np.asarray(dets)
    np.testing.assert_allclose(p[0], pix * np.maximum(0, 1 - np.abs(s - x0) / pix), atol=0.02 * pix)


def test_shepp_logan_values_and_exact_sinogram():
    img = shepp_logan(256)
    c = -1 + (np.arange(256) + 0.5) / 128
    at = lambda x, y: img[np.argmin(abs(c - y)), np.argmin(abs(c - x))]  # noqa: E731
    assert at(0.0, 0.0) == pytest.approx(0.2)  # brain matter
    assert at(0.0, 0.89) == pytest.approx(1.0)  # skull
    assert at(0.0, 0.97) == 0.0  # outside
    assert at(0.22, 0.0) == pytest.approx(0.0)  # right ventricle: 1 - 0.8 - 0.2
    assert at(0.0, 0.35) == pytest.approx(0.3)  # the ellipse above the ventricles
    # the exact transform of a centred disk of radius r: 2 sqrt(r² - s²)
    s = np.linspace(-1, 1, 41)
    disk = np.array([[1.0, 0.5, 0.5, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(shepp_logan_sinogram([0.3], s, disk)[0],
                               2 * np.sqrt(np.maximum(0.25 - s**2, 0)), atol=1e-14)
    # mass: every projection of the phantom integrates to Σ ρ π a b
    ss = np.linspace(-1.5, 1.5, 30001)
    sino = shepp_logan_sinogram([0.0, 0.7, 2.0], ss)
    total = sum(r * math.pi * a * b for r, a, b, *_ in ji.problems.imaging.SHEPP_LOGAN)
    np.testing.assert_allclose(sino.sum(1) * (ss[1] - ss[0]), total, rtol=1e-5)


def test_tomography_converges_to_exact_sinogram():
    # Discretising a discontinuous phantom costs O(h^(1/2)) in L2: halving h must cut the
    # error by at least 1/sqrt(2).
    errs = []
    for n in (32, 64):
        bm = ji.problems.load("tomography", n=n, n_angles=16)
        pred = np.asarray(fwd(bm.problem.forward, bm.theta_true))
        ex = np.asarray(bm.reference["sinogram"])
        errs.append(np.linalg.norm(pred - ex) / np.linalg.norm(ex))
    assert errs[1] < 0.1 and errs[1] < errs[0] / math.sqrt(2)


def test_tomography_benchmark(ct):
    assert ct.y.shape == (24, math.ceil(math.sqrt(2) * 48)) and ct.theta_true.shape == (48, 48)
    clean = fwd(ct.problem.forward, ct.theta_true)
    std = 0.01 * float(jnp.linalg.norm(clean)) / math.sqrt(clean.size)
    assert ct.info["noise_std"] == pytest.approx(std)
    again = ji.problems.load("tomography", n=48, n_angles=24, noise=0.01, seed=1)
    np.testing.assert_array_equal(again.y, ct.y)
    limited = ji.problems.load("tomography", n=16, n_angles=10, n_detectors=30, angle_range=90.0,
                               batch=2)
    assert limited.y.shape == (2, 10, 30)
    np.testing.assert_allclose(limited.info["angles"][-1], np.deg2rad(81.0))
    # vmap over images equals one at a time
    imgs = jnp.stack([ct.theta_true, 2 * ct.theta_true[::-1]])
    op = ct.info["operator"]
    batched = jax.jit(lambda v: jax.vmap(op)(v))(imgs)
    np.testing.assert_allclose(batched[1], fwd(op, imgs[1]), rtol=1e-12, atol=1e-13)
    # gradients flow through the projector (for MAP and HMC)
    lp, g = jax.jit(lambda t, y: jax.value_and_grad(ct.problem.log_posterior)(t, y))(
        ct.theta_true, ct.y)
    assert np.isfinite(float(lp)) and g.shape == (48, 48) and bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize("how", ["dense", "sparse"])
def test_tomography_assembled_matrix_equals_projector(how):
    # The assembled matrix applies the projector's own weights: equal to rounding, and so is
    # its transpose (against the matrix-free back-projection by linear_transpose).
    bm = ji.problems.load("tomography", n=24, n_angles=9, assemble=how)
    op, proj = bm.problem.forward, bm.info["projector"]
    assert isinstance(op, ji.problems._matrix.AssembledOperator) and op.sparse == (how == "sparse")
    x = jax.random.normal(jax.random.key(5), (24, 24))
    y = jax.random.normal(jax.random.key(6), bm.y.shape)
    np.testing.assert_allclose(fwd(op, x), fwd(proj, x), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(adj(op, y), adj(proj, y), rtol=1e-12, atol=1e-13)
    # same data as the matrix-free benchmark
    free = ji.problems.load("tomography", n=24, n_angles=9, assemble="none")
    np.testing.assert_allclose(bm.y, free.y, rtol=1e-12, atol=1e-13)
    # float32 in, float32 out
    assert op(x.astype(jnp.float32)).dtype == jnp.float32
    with pytest.raises(ValueError, match="assemble"):
        ji.problems.load("tomography", n=24, assemble="csr")
