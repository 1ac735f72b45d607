"""Regularising priors (re-exported by ``ji.priors``): a prior is a regulariser, its MAP the
regularised solution.

- `GMRF`: smoothness / Gaussian Markov random field ``p(θ) ∝ exp(-precision/2 ‖D θ‖²)`` with
  first or second differences, 1-D or 2-D, boundaries ``zero``/``periodic``/``neumann``.
- `TotalVariation`: ``exp(-weight Σ sqrt(|∇θ|² + smoothing²))``, 1-D or 2-D isotropic; with
  ``smoothing=0`` it is exact TV, solved by `jinverse.proximal` through its ``prox``.
- `SparseL1`: Laplace/L1 sparsity of θ itself, of its Haar wavelet coefficients or of its
  first differences.
- `Gamma`: a positive hyperprior (a precision), conjugate to the two Gaussian precisions.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln
from jaxtyping import Array, Float

from ._checks import as_float_array, check_finite, check_positive, check_positive_int
from .linear.operators import difference_matrix
from .priors.base import AbstractPositive, AbstractPrior
from .proximal import prox_analysis_l1

_LOG_2PI = math.log(2 * math.pi)


def _check_shape(shape) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if len(shape) not in (1, 2):
        raise ValueError(f"shape: got {shape}, expected (n,) or (n1, n2)")
    return tuple(check_positive_int("shape", s, minimum=3) for s in shape)


def _along(M, x, axis):
    """Apply the matrix ``M`` along ``axis`` of ``x``."""
    return jnp.moveaxis(jnp.tensordot(M, x, axes=([1], [axis])), 0, axis)


class GMRF(AbstractPrior):
    """Smoothness prior ``p(θ) ∝ exp(-precision/2 ‖D θ‖²)`` (a Gaussian Markov random field).

    ``order=1``: ``D`` stacks first differences along every axis. ``order=2``: second differences
    in 1-D, the discrete Laplacian in 2-D. ``boundary``: ``"zero"`` (θ is 0 outside; proper),
    ``"periodic"`` or ``"neumann"`` (reflecting; both improper: the constants are free, and
    `log_prob` uses the pseudo-determinant). The normalising constant is exact, so
    ``precision`` may itself be an unknown (see `jinverse.hierarchical`).

    Example: ``GMRF((64,), order=2, boundary="zero", precision=100.0)``.
    """

    mean: Float[Array, "*event"]
    precision: Float[Array, ""]
    mats: tuple  # the 1-D difference matrix of each axis
    eigvecs: tuple  # eigenvectors of each axis' generator
    eigvals: Float[Array, "*event"]  # eigenvalues of DᵀD (precision 1), on the grid of θ
    log_pdet: Float[Array, ""]  # log pseudo-determinant of DᵀD
    num_free: int = eqx.field(static=True)  # rank of DᵀD
    shape: tuple[int, ...] = eqx.field(static=True)
    order: int = eqx.field(static=True)
    boundary: str = eqx.field(static=True)

    def __init__(self, shape, order: int = 1, boundary: str = "zero", precision=1.0, mean=0.0):
        shape = _check_shape(shape)
        if order not in (1, 2):
            raise ValueError(f"order: got {order!r}, expected 1 or 2")
        if boundary not in ("zero", "periodic", "neumann"):
            raise ValueError(f"boundary: got {boundary!r}, expected 'zero', 'periodic' or 'neumann'")
        precision = as_float_array("precision", precision)
        check_positive("precision", precision)
        mean = as_float_array("mean", mean)
        check_finite("mean", mean)
        self.shape, self.order, self.boundary = shape, order, boundary
        self.mean, self.precision = jnp.broadcast_to(mean, shape), precision
        mats, vecs, vals = [], [], []
        for n in shape:
            D = np.asarray(difference_matrix(n, order, boundary))
            # 1-D or order 1: the generator is DᵀD; 2-D order 2: D itself (symmetric), squared below.
            S = D if (order == 2 and len(shape) == 2) else D.T @ D
            ev, V = np.linalg.eigh(S)
            mats.append(jnp.asarray(D))
            vecs.append(jnp.asarray(V))
            vals.append(ev)
        grid = vals[0] if len(shape) == 1 else vals[0][:, None] + vals[1][None, :]
        if order == 2 and len(shape) == 2:
            grid = grid**2
        grid = np.where(np.abs(grid) <= 1e-10 * np.abs(grid).max(), 0.0, grid)
        self.mats, self.eigvecs, self.eigvals = tuple(mats), tuple(vecs), jnp.asarray(grid)
        self.num_free = int(np.count_nonzero(grid))
        self.log_pdet = jnp.asarray(np.sum(np.log(grid[grid > 0])))

    @property
    def event_shape(self):
        return self.shape

    def center(self):
        return self.mean

    def difference(self, theta) -> Array:
        """``D θ``: the differences whose squared norm the prior penalises."""
        if len(self.shape) == 1:
            return self.mats[0] @ theta
        if self.order == 2:
            return _along(self.mats[0], theta, 0) + _along(self.mats[1], theta, 1)
        return jnp.concatenate([_along(self.mats[0], theta, 0).ravel(), _along(self.mats[1], theta, 1).ravel()])

    def log_prob(self, theta):
        r = theta - self.mean
        quad = jnp.sum(self.difference(r) ** 2)
        k = self.num_free
        logdet = self.log_pdet + k * jnp.log(self.precision)
        return -0.5 * self.precision * quad + 0.5 * logdet - 0.5 * k * _LOG_2PI

    def _from_eigen(self, c):
        if len(self.shape) == 1:
            return self.eigvecs[0] @ c
        return self.eigvecs[0] @ c @ self.eigvecs[1].T

    def sample(self, key, shape=()):
        """Draws; for an improper prior (periodic/neumann) the free constant is set to the mean's."""
        z = jax.random.normal(key, (*shape, *self.shape), self.mean.dtype)
        nz = self.eigvals > 0
        scale = jnp.where(nz, 1.0 / jnp.sqrt(self.precision * jnp.where(nz, self.eigvals, 1.0)), 0.0)
        c = z * scale
        fn = self._from_eigen
        for _ in shape:
            fn = jax.vmap(fn)
        return self.mean + fn(c)

    def _inv_sqrt_eigvals(self):
        nz = self.eigvals > 0
        return jnp.where(nz, 1.0 / jnp.sqrt(self.precision * jnp.where(nz, self.eigvals, 1.0)), 0.0)

    def _to_eigen(self, x):
        if len(self.shape) == 1:
            return self.eigvecs[0].T @ x
        return self.eigvecs[0].T @ x @ self.eigvecs[1]

    def cov_sqrt(self, z, *, transpose: bool = False):
        """``S z`` (or ``Sᵀ z``) for ``S = V Λ^{-1/2}`` with ``V Λ Vᵀ`` the precision's
        eigendecomposition (Kronecker over the axes): ``S Sᵀ`` is the covariance of a proper
        (``boundary="zero"``) GMRF; the free constants of an improper one get no variance.
        ``z`` has the event shape; ``O(n·N)`` for ``N`` pixels of side ``n``."""
        if transpose:
            return self._inv_sqrt_eigvals() * self._to_eigen(z)
        return self._from_eigen(self._inv_sqrt_eigvals() * z)

    def whiten(self, theta):
        """``z = S⁻¹(θ - mean)`` with ``-log p(θ) = 0.5 ||z||² + const`` (see `cov_sqrt`)."""
        return jnp.sqrt(self.precision * self.eigvals) * self._to_eigen(theta - self.mean)

    def variance(self) -> Float[Array, "*event"]:
        """The prior variances (the covariance's diagonal; proper GMRF), from the eigenbasis."""
        w = self._inv_sqrt_eigvals() ** 2
        if len(self.shape) == 1:
            return self.eigvecs[0] ** 2 @ w
        return self.eigvecs[0] ** 2 @ w @ (self.eigvecs[1] ** 2).T

    def log_det_cov(self) -> Float[Array, ""]:
        """``log det Γ = -(log det DᵀD + N log precision)`` (a pseudo-determinant if improper)."""
        return -(self.log_pdet + self.num_free * jnp.log(self.precision))

    def precision_matvec(self, v):
        """``Q v`` with ``Q = precision · DᵀD`` (the gradient of the quadratic form)."""
        return jax.grad(lambda u: 0.5 * self.precision * jnp.sum(self.difference(u) ** 2))(v)

    def precision_matrix(self) -> Float[Array, "N N"]:
        """The dense precision of the flattened θ."""
        N = int(np.prod(self.shape))
        eye = jnp.eye(N, dtype=self.mean.dtype).reshape(N, *self.shape)
        return jax.vmap(self.precision_matvec)(eye).reshape(N, N)


def _gradient(theta):
    """Forward differences with a zero difference past the last entry: ``(*shape, ndim)``."""
    parts = []
    for ax in range(theta.ndim):
        d = jnp.diff(theta, axis=ax)
        pad = [(0, 0)] * theta.ndim
        pad[ax] = (0, 1)
        parts.append(jnp.pad(d, pad))
    return jnp.stack(parts, axis=-1)


class TotalVariation(AbstractPrior):
    """Total-variation prior ``p(θ) ∝ exp(-weight · Σ_pixels sqrt(|∇θ|² + smoothing²))``.

    Isotropic in 2-D (the gradient norm per pixel). Improper: `sample` raises. ``smoothing > 0``
    makes it differentiable for gradient-based MAP and samplers; `prox` is the proximal operator
    of exact TV (``smoothing = 0``) for `jinverse.proximal.fista`.
    """

    weight: Float[Array, ""]
    smoothing: float = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    prox_iters: int = eqx.field(static=True)

    def __init__(self, shape, weight=1.0, smoothing: float = 1e-3, prox_iters: int = 100):
        self.shape = _check_shape(shape)
        weight = as_float_array("weight", weight)
        check_positive("weight", weight)
        if not (isinstance(smoothing, (int, float)) and smoothing >= 0):
            raise ValueError(f"smoothing: got {smoothing!r}, expected a number >= 0")
        self.weight, self.smoothing = weight, float(smoothing)
        self.prox_iters = check_positive_int("prox_iters", prox_iters)

    @property
    def event_shape(self):
        return self.shape

    def center(self):
        return jnp.zeros(self.shape, jnp.result_type(float))

    def tv(self, theta) -> Float[Array, ""]:
        """Exact (unsmoothed) total variation."""
        return jnp.sum(jnp.sqrt(jnp.sum(_gradient(theta) ** 2, axis=-1)))

    def log_prob(self, theta):
        g2 = jnp.sum(_gradient(theta) ** 2, axis=-1)
        return -self.weight * jnp.sum(jnp.sqrt(g2 + self.smoothing**2))

    def sample(self, key, shape=()):
        raise ValueError("TotalVariation: the prior is improper and has no draws; pass init= to "
                         "samplers or use it for MAP")

    def prox(self, v, step):
        """``argmin_x ½‖x - v‖² + step · weight · TV(x)`` (dual projected gradient, Beck & Teboulle 2009)."""
        return prox_analysis_l1(v, step * self.weight, _gradient, bound=4.0 * v.ndim,
                                isotropic=True, num_iter=self.prox_iters)


def haar_matrix(n: int) -> Float[Array, "n n"]:
    """The orthonormal multilevel Haar wavelet matrix (``n`` a power of two); rows are wavelets."""
    n = check_positive_int("n", n, minimum=2)
    if n & (n - 1):
        raise ValueError(f"n: got {n}, expected a power of two for the Haar transform")
    H = np.array([[1.0]])
    while H.shape[0] < n:
        k = H.shape[0]
        H = np.vstack([np.kron(H, [1.0, 1.0]), np.kron(np.eye(k), [1.0, -1.0])]) / math.sqrt(2.0)
    return jnp.asarray(H, dtype=jnp.result_type(float))


class SparseL1(AbstractPrior):
    """Laplace (L1) sparsity ``p(θ) ∝ exp(-‖W (θ - loc)‖₁ / scale)`` in a basis ``W``.

    ``basis``: ``"identity"``, ``"haar"`` (orthonormal Haar wavelets, separable in 2-D) or
    ``"difference"`` (1-D first differences with a zero left boundary, i.e. anisotropic TV).
    Every ``W`` here has determinant ±1, so the density is normalised.
    """

    loc: Float[Array, "*event"]
    scale: Float[Array, ""]
    mats: tuple
    shape: tuple[int, ...] = eqx.field(static=True)
    basis: str = eqx.field(static=True)
    prox_iters: int = eqx.field(static=True)

    def __init__(self, shape, scale=1.0, basis: str = "identity", loc=0.0, prox_iters: int = 100):
        self.shape = _check_shape(shape)
        if basis not in ("identity", "haar", "difference"):
            raise ValueError(f"basis: got {basis!r}, expected 'identity', 'haar' or 'difference'")
        if basis == "difference" and len(self.shape) != 1:
            raise ValueError(f"basis: 'difference' is 1-D, got shape {self.shape}; use TotalVariation in 2-D")
        scale = as_float_array("scale", scale)
        check_positive("scale", scale)
        loc = as_float_array("loc", loc)
        check_finite("loc", loc)
        self.scale, self.loc, self.basis = scale, jnp.broadcast_to(loc, self.shape), basis
        self.prox_iters = check_positive_int("prox_iters", prox_iters)
        if basis == "haar":
            self.mats = tuple(haar_matrix(n) for n in self.shape)
        elif basis == "difference":
            self.mats = (difference_matrix(self.shape[0], 1, "zero"),)
        else:
            self.mats = ()

    @property
    def event_shape(self):
        return self.shape

    def center(self):
        return self.loc

    def coefficients(self, theta):
        """``W θ``."""
        for ax, M in enumerate(self.mats):
            theta = _along(M, theta, ax)
        return theta

    def log_prob(self, theta):
        c = self.coefficients(theta - self.loc)
        return -jnp.sum(jnp.abs(c)) / self.scale - c.size * jnp.log(2 * self.scale)

    def sample(self, key, shape=()):
        c = self.scale * jax.random.laplace(key, (*shape, *self.shape), self.loc.dtype)
        lead = len(shape)
        for ax, M in enumerate(self.mats):
            Minv = M.T if self.basis == "haar" else jnp.linalg.inv(M)
            c = _along(Minv, c, lead + ax)
        return self.loc + c

    def prox(self, v, step):
        """``argmin_x ½‖x - v‖² + step/scale · ‖W (x - loc)‖₁``: soft thresholding in the basis."""
        t = step / self.scale
        u = v - self.loc
        if self.basis == "difference":
            return self.loc + prox_analysis_l1(u, t, self.coefficients, bound=4.0, isotropic=False,
                                               num_iter=self.prox_iters)
        c = self.coefficients(u)
        c = jnp.sign(c) * jnp.maximum(jnp.abs(c) - t, 0.0)
        for ax, M in enumerate(self.mats):
            c = _along(M.T, c, ax)
        return self.loc + c


class Gamma(AbstractPositive):
    """Gamma prior ``p(τ) ∝ τ^(concentration-1) exp(-rate τ)`` on a positive τ (e.g. a precision)."""

    concentration: Float[Array, "*event"]
    rate: Float[Array, "*event"]

    def __init__(self, concentration, rate):
        a, b = as_float_array("concentration", concentration), as_float_array("rate", rate)
        check_positive("concentration", a)
        check_positive("rate", b)
        shape = jnp.broadcast_shapes(a.shape, b.shape)
        self.concentration, self.rate = jnp.broadcast_to(a, shape), jnp.broadcast_to(b, shape)

    def center(self):
        return self.concentration / self.rate  # the mean

    def log_prob_entries(self, theta):
        a, b = self.concentration, self.rate
        return a * jnp.log(b) - gammaln(a) + (a - 1) * jnp.log(theta) - b * theta

    def sample(self, key, shape=()):
        g = jax.random.gamma(key, self.concentration, (*shape, *self.event_shape), self.rate.dtype)
        return g / self.rate
