"""Imaging benchmarks: 1-D and 2-D Gaussian deblurring, and parallel-beam X-ray tomography.

Every forward model is a matrix-free, differentiable `equinox.Module` (pure JAX), vmap-able over
images. Common conventions (see also `jinverse.problems.classical`):

- ``noise`` is a relative level: ``std = noise * ||f(θ_true)|| / sqrt(m)``; ``batch=B`` gives B
  independent noise draws of the same phantom (``theta_true`` tiled to ``(B, *shape)``).
- default prior ``θ ~ N(0, s² I)`` with ``s`` the RMS of the phantom; metric ``"rel_error"``
  (Frobenius norm); ``reference={"solution": phantom}``.
- 2-D images are indexed ``image[iy, ix]`` on ``[-1, 1]²`` (deblurring: ``[0, 1]²``), pixel
  centres at ``-1 + (k + 1/2) * 2/N``; row index increases with ``y`` (show with
  ``origin="lower"``).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import check_positive_int
from . import _matrix
from ._noise import apply, check_choice, gaussian_benchmark
from ._registry import Benchmark, register

_FAMILY = "imaging"
_BCS = ("zero", "periodic", "reflect")
_MAX_POINTS = 2**23  # sample points per projector call before views are chunked


# -- Gaussian blur -------------------------------------------------------------------------


def gaussian_kernel(sigma_px: float, truncate: float = 4.0) -> np.ndarray:
    """Normalised samples of ``exp(-k²/(2σ²))`` for ``|k| <= round(truncate σ)`` (SciPy's rule)."""
    r = int(truncate * sigma_px + 0.5)
    k = np.arange(-r, r + 1)
    w = np.exp(-0.5 * (k / sigma_px) ** 2)
    return w / w.sum()


def blur_matrix(kernel, n: int, bc: str) -> np.ndarray:
    """The ``n x n`` matrix of a 1-D convolution with a symmetric ``kernel`` under ``bc``.

    ``bc``: ``"zero"`` (zero outside), ``"periodic"`` (wrap) or ``"reflect"`` (half-sample
    symmetric extension ``x[-1] = x[0]``, the "reflexive" condition of Hansen, Nagy & O'Leary).
    """
    check_choice("bc", bc, _BCS)
    r = (len(kernel) - 1) // 2
    M = np.zeros((n, n))
    rows = np.arange(n)
    for k, w in zip(range(-r, r + 1), kernel):
        j = rows + k
        if bc == "zero":
            keep = (j >= 0) & (j < n)
            np.add.at(M, (rows[keep], j[keep]), w)
            continue
        if bc == "periodic":
            j = j % n
        else:  # the symmetric extension has period 2n: fold [n, 2n) back onto [0, n)
            j = j % (2 * n)
            j = np.where(j >= n, 2 * n - 1 - j, j)
        np.add.at(M, (rows, j), w)
    return M


class GaussianBlur(eqx.Module):
    """Separable blur of a 1-D signal (``M x``) or 2-D image (``M X Mᵀ``) by the 1-D matrix ``M``.

    ``M`` (from `blur_matrix`) holds the kernel and the boundary condition; applying it as a
    dense product is exact, differentiable and fast on accelerators for the sizes used here.
    """

    matrix: Float[Array, "n n"]
    ndim: int = eqx.field(static=True)

    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        if self.ndim == 1:
            return self.matrix @ x
        return self.matrix @ x @ self.matrix.T


def _blur_phantom_1d(n, kind):
    t = (np.arange(n) + 0.5) / n
    if kind == "piecewise_constant":
        return (0.5 * ((t > 0.1) & (t <= 0.25)) + 1.0 * ((t > 0.3) & (t <= 0.45))
                + 0.25 * ((t > 0.5) & (t <= 0.6)) + 0.75 * ((t > 0.65) & (t <= 0.85)))
    # piecewise smooth: a smooth bump, a ramp with jumps at both ends, a raised-cosine hill
    bump = np.exp(-(((t - 0.2) / 0.06) ** 2))
    ramp = np.where((t > 0.4) & (t <= 0.6), 0.3 + 2.5 * (t - 0.4), 0.0)
    hill = np.where((t > 0.7) & (t < 0.9), 0.6 * np.sin(np.pi * (t - 0.7) / 0.2) ** 2, 0.0)
    return bump + ramp + hill


def _blur_phantom_2d(n, kind):
    c = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(c, c, indexing="xy")  # image[iy, ix]
    if kind == "piecewise_constant":
        img = 0.5 * ((np.abs(x - 0.3) < 0.15) & (np.abs(y - 0.7) < 0.1))
        img = img + 1.0 * ((x - 0.65) ** 2 + (y - 0.65) ** 2 < 0.15**2)
        img = img + 0.75 * ((np.abs(x - 0.5) < 0.3) & (np.abs(y - 0.25) < 0.08))
        return img
    smooth = np.exp(-((x - 0.3) ** 2 + (y - 0.35) ** 2) / (2 * 0.08**2))
    disk = (x - 0.65) ** 2 + (y - 0.6) ** 2 < 0.2**2
    return smooth + np.where(disk, 0.4 + 1.5 * (x - 0.45) * (y - 0.4), 0.0)


def _blur_benchmark(name, ndim, n, sigma, bc, phantom, noise, seed, batch, prior, max_dense):
    n = check_positive_int("n", n)
    check_choice("bc", bc, _BCS)
    check_choice("phantom", phantom, ("piecewise_smooth", "piecewise_constant"))
    if not (np.isfinite(sigma) and 0 < sigma < 0.5):
        raise ValueError(f"sigma: got {sigma!r}, expected a blur width in (0, 0.5) "
                         "(fraction of the domain)")
    sigma_px = sigma * n
    if sigma_px < 0.5:
        raise ValueError(f"sigma: got {sigma!r} with n={n}, i.e. {sigma_px:.2f} pixels; expected "
                         "at least half a pixel")
    kern = gaussian_kernel(sigma_px)
    M = blur_matrix(kern, n, bc)
    op = GaussianBlur(jnp.asarray(M), ndim)
    x = (_blur_phantom_1d if ndim == 1 else _blur_phantom_2d)(n, phantom)
    A = M if ndim == 1 else (np.kron(M, M) if x.size <= max_dense else None)
    return _image_benchmark(name, op, x, A, noise=noise, seed=seed, batch=batch, prior=prior,
                            options={"n": n, "sigma": sigma, "bc": bc, "phantom": phantom},
                            info={"psf": jnp.asarray(kern), "sigma_pixels": sigma_px})


def _image_benchmark(name, op, x, A, *, noise, seed, batch, prior, options, info):
    """A benchmark for a matrix-free linear operator (dense ``A`` in ``info`` only when small)."""
    x = np.asarray(x, dtype=np.float64)
    clean = np.asarray(apply(op, jnp.asarray(x)))
    info = {**info, "operator": op, **({} if A is None else {"A": jnp.asarray(A)})}
    return gaussian_benchmark(name, op, x, clean, noise=noise, seed=seed, batch=batch,
                              prior=prior, options=options, info=info)


@register("deconvolution1d", "1-D Gaussian deblurring, zero/periodic/reflect boundary, two phantoms",
          _FAMILY)
def deconvolution1d(*, n=128, sigma=0.02, bc="zero", phantom="piecewise_smooth", noise=0.01,
                    seed=0, batch=None, prior=None):
    """Blur ``y = k * θ + e`` of a signal on ``n`` cells of [0, 1].

    ``sigma``: Gaussian PSF std as a fraction of [0, 1] (``sigma * n`` pixels, truncated at 4
    std); ``bc``: ``"zero"``, ``"periodic"`` or ``"reflect"``; ``phantom``:
    ``"piecewise_smooth"`` or ``"piecewise_constant"``. ``info["A"]`` holds the dense matrix.
    """
    return _blur_benchmark("deconvolution1d", 1, n, sigma, bc, phantom, noise, seed, batch, prior,
                           max_dense=4096)


@register("deconvolution2d", "2-D Gaussian deblurring of an n x n image, choice of boundary",
          _FAMILY)
def deconvolution2d(*, n=32, sigma=0.03, bc="zero", phantom="piecewise_smooth", noise=0.01,
                    seed=0, batch=None, prior=None):
    """Separable Gaussian blur of an ``n x n`` image on [0, 1]² (see `deconvolution1d`).

    ``info["A"]`` (the dense ``n² x n²`` matrix on the flattened image) only when ``n² <= 4096``.
    """
    return _blur_benchmark("deconvolution2d", 2, n, sigma, bc, phantom, noise, seed, batch, prior,
                           max_dense=4096)


# -- tomography -----------------------------------------------------------------------------

# Modified Shepp-Logan (Toft 1996; MATLAB phantom('Modified Shepp-Logan')):
# intensity, semi-axis a (x), semi-axis b (y), centre x0, centre y0, rotation (degrees).
SHEPP_LOGAN = np.array([
    [1.0, 0.69, 0.92, 0.0, 0.0, 0.0],
    [-0.8, 0.6624, 0.8740, 0.0, -0.0184, 0.0],
    [-0.2, 0.1100, 0.3100, 0.22, 0.0, -18.0],
    [-0.2, 0.1600, 0.4100, -0.22, 0.0, 18.0],
    [0.1, 0.2100, 0.2500, 0.0, 0.35, 0.0],
    [0.1, 0.0460, 0.0460, 0.0, 0.1, 0.0],
    [0.1, 0.0460, 0.0460, 0.0, -0.1, 0.0],
    [0.1, 0.0460, 0.0230, -0.08, -0.605, 0.0],
    [0.1, 0.0230, 0.0230, 0.0, -0.605, 0.0],
    [0.1, 0.0230, 0.0460, 0.06, -0.605, 0.0],
])


def pixel_centres(n: int) -> np.ndarray:
    return -1 + (np.arange(n) + 0.5) * (2.0 / n)


def shepp_logan(n: int, ellipses=SHEPP_LOGAN) -> np.ndarray:
    """The modified Shepp-Logan phantom sampled at the pixel centres of an ``n x n`` grid."""
    c = pixel_centres(n)
    x, y = np.meshgrid(c, c, indexing="xy")
    img = np.zeros((n, n))
    for rho, a, b, x0, y0, phi in ellipses:
        p = math.radians(phi)
        u = (x - x0) * math.cos(p) + (y - y0) * math.sin(p)
        v = -(x - x0) * math.sin(p) + (y - y0) * math.cos(p)
        img += rho * ((u / a) ** 2 + (v / b) ** 2 <= 1)
    return img


def shepp_logan_sinogram(angles, s, ellipses=SHEPP_LOGAN) -> np.ndarray:
    """The exact X-ray transform of the (continuous) phantom at ``angles`` x offsets ``s``."""
    th, s = np.asarray(angles)[:, None], np.asarray(s)[None, :]
    out = np.zeros((th.shape[0], s.shape[1]))
    for rho, a, b, x0, y0, phi in ellipses:
        tp = th - math.radians(phi)
        a2 = (a * np.cos(tp)) ** 2 + (b * np.sin(tp)) ** 2
        sp = s - (x0 * np.cos(th) + y0 * np.sin(th))
        out += np.where(sp**2 < a2, 2 * rho * a * b * np.sqrt(np.maximum(a2 - sp**2, 0)) / a2, 0.0)
    return out


class ParallelBeamProjector(eqx.Module):
    """2-D parallel-beam X-ray transform of an ``n x n`` image on ``[-1, 1]²``.

    ``p(θ_k, s_j) = ∫ f(s cos θ - t sin θ, s sin θ + t cos θ) dt``, with ``f`` the bilinear
    interpolant of the pixels (zero outside), integrated by the midpoint rule with
    ``samples_per_pixel`` samples per pixel length along each ray. Matrix-free and linear in the
    image; `adjoint` (the back-projection) is its exact transpose via `jax.linear_transpose`.
    All views are computed at once (fastest), or ``angle_chunk`` at a time (``jax.lax.map``),
    which bounds memory at ``O(angle_chunk · detectors · samples)`` for large sinograms.
    """

    angles: Float[Array, " a"]
    detectors: Float[Array, " d"]
    n: int = eqx.field(static=True)
    samples_per_pixel: int = eqx.field(static=True)
    angle_chunk: int | None = eqx.field(static=True, default=None)

    def __call__(self, image: Float[Array, "n n"]) -> Float[Array, "a d"]:
        n = self.n
        pix = 2.0 / n
        half = math.sqrt(2.0)  # every ray through [-1, 1]² lies within |t| <= sqrt(2)
        m = math.ceil(2 * half / pix * self.samples_per_pixel)
        dt = 2 * half / m
        t = -half + (jnp.arange(m) + 0.5) * dt
        d = self.detectors[:, None]

        def project(angles):  # views × detectors × samples points, bilinear, summed
            c, s = jnp.cos(angles)[:, None, None], jnp.sin(angles)[:, None, None]
            ix = (d * c - t * s + 1) / pix - 0.5
            iy = (d * s + t * c + 1) / pix - 0.5
            vals = jax.scipy.ndimage.map_coordinates(image, [iy, ix], order=1, mode="constant",
                                                     cval=0.0)
            return vals.sum(-1) * dt

        if self.angle_chunk is None:
            return project(self.angles)
        # a few views at a time bounds memory at O(angle_chunk · detectors · samples)
        return jax.lax.map(lambda a: project(a[None])[0], self.angles, batch_size=self.angle_chunk)

    def adjoint(self, sinogram: Float[Array, "a d"]) -> Float[Array, "n n"]:
        """The transpose (back-projection) of the forward map."""
        spec = jax.ShapeDtypeStruct((self.n, self.n), sinogram.dtype)
        (img,) = jax.linear_transpose(self, spec)(sinogram)
        return img


@register("tomography", "2-D parallel-beam X-ray CT of the modified Shepp-Logan phantom", _FAMILY)
def tomography(*, n=64, n_angles=60, n_detectors=None, angle_range=180.0, detector_width=None,
               samples_per_pixel=2, noise=0.01, seed=0, batch=None, prior=None, assemble="auto"):
    """Sinogram ``y = R θ + e`` of an ``n x n`` image on ``[-1, 1]²`` (``R``: `ParallelBeamProjector`).

    ``n_angles`` equispaced angles in ``[0, angle_range)`` degrees (limited-angle CT with
    ``angle_range < 180``); ``n_detectors`` equispaced bins centred on ``[-w/2, w/2]``, ``w =
    detector_width`` (default: ``ceil(sqrt(2) n)`` bins one pixel wide, covering the diagonal).
    ``theta_true`` is the modified Shepp-Logan phantom; ``reference["sinogram"]`` its exact
    (continuous) X-ray transform, for checking discretisation error.

    ``assemble``: how the forward model is applied. ``"none"``: matrix-free (the projector
    itself, memory ``O(views · detectors · samples)``); ``"dense"`` / ``"sparse"``: its matrix,
    assembled once from the same interpolation weights (`_matrix.projector_matrix`, equal to
    rounding) and applied as a dense or BCOO product; ``"auto"`` (default): dense up to 256 MiB,
    else sparse. At the default 64² the dense matrix makes a vmapped gradient ~40x cheaper than
    matrix-free, which is what lets batched Newton-CG MAP and sampling run in seconds.
    ``info["projector"]`` is always the matrix-free `ParallelBeamProjector`.
    """
    check_choice("assemble", assemble, ("auto", "dense", "sparse", "none"))
    n = check_positive_int("n", n, minimum=4)
    n_angles = check_positive_int("n_angles", n_angles)
    samples_per_pixel = check_positive_int("samples_per_pixel", samples_per_pixel)
    if n_detectors is None:
        n_detectors = math.ceil(math.sqrt(2) * n)
    n_detectors = check_positive_int("n_detectors", n_detectors)
    if detector_width is None:
        detector_width = n_detectors * 2.0 / n
    if not (np.isfinite(detector_width) and detector_width > 0):
        raise ValueError(f"detector_width: got {detector_width!r}, expected a number > 0")
    if not (np.isfinite(angle_range) and 0 < angle_range <= 360):
        raise ValueError(f"angle_range: got {angle_range!r}, expected degrees in (0, 360]")
    angles = np.deg2rad(angle_range) * np.arange(n_angles) / n_angles
    ds = detector_width / n_detectors
    dets = -detector_width / 2 + (np.arange(n_detectors) + 0.5) * ds
    samples = math.ceil(2 * math.sqrt(2) * n / 2 * samples_per_pixel)
    per_view = n_detectors * samples
    chunk = None if n_angles * per_view <= _MAX_POINTS else max(1, _MAX_POINTS // per_view)
    projector = ParallelBeamProjector(jnp.asarray(angles), jnp.asarray(dets), n, samples_per_pixel,
                                      chunk)
    op = projector
    if assemble != "none":
        a = _matrix.projector_matrix(angles, dets, n, samples_per_pixel)
        op = _matrix.assemble(a, (n, n), (n_angles, n_detectors), assemble)
    x = shepp_logan(n)
    bm = _image_benchmark("tomography", op, x, None, noise=noise, seed=seed, batch=batch,
                          prior=prior,
                          options={"n": n, "n_angles": n_angles, "n_detectors": n_detectors,
                                   "angle_range": angle_range, "detector_width": detector_width,
                                   "samples_per_pixel": samples_per_pixel, "assemble": assemble},
                          info={"angles": jnp.asarray(angles), "detectors": jnp.asarray(dets),
                                "projector": projector})
    ref = {**bm.reference, "sinogram": jnp.asarray(shepp_logan_sinogram(angles, dets))}
    return Benchmark(bm.name, bm.problem, bm.y, bm.theta_true, ref, bm.metric, bm.options, bm.info)
