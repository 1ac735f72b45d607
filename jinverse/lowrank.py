"""Low-rank Laplace approximation for large θ: the prior plus a low-rank data update.

With a Gaussian prior ``N(m, Γ_pr)`` in ``u`` and ``Γ_pr = S Sᵀ``, the (Gauss-Newton) Laplace
covariance at a point is ``Γ_post = (H_misfit + Γ_pr⁻¹)⁻¹ = S (I + H̃)⁻¹ Sᵀ`` with the
*prior-preconditioned* misfit Hessian ``H̃ = Sᵀ H_misfit S``. The data inform only a few
directions, so ``H̃ ≈ V Λ Vᵀ`` with ``r`` dominant eigenpairs (found matrix-free by a randomized
eigensolver, Halko, Martinsson & Tropp 2011, Alg. 4.4 + 5.3) and, by Sherman-Morrison-Woodbury,

    Γ_post ≈ S (I - V D Vᵀ) Sᵀ,   D = diag(λ / (1 + λ))        (Bui-Thanh et al. 2013; hIPPYlib)

whose action, diagonal, square root ``S (I + V (diag(1/√(1+λ)) - I) Vᵀ)`` and log-determinant
``log det Γ_pr - Σ log(1 + λ)`` all cost ``O(d r)`` memory. Truncating at ``r`` only ever
overstates the variance: in the prior-whitened norm the error is ``λ_{r+1}/(1+λ_{r+1})``, and
each pointwise variance exceeds the exact one by at most that fraction of its prior variance.

Layers: `randomized_eigh` and `factor` are the pure per-lane core (one observation, safe under
``jit``/``vmap``); `laplace_lowrank` is the driver behind ``ji.laplace(..., rank=r)``.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from . import curvature
from ._batching import default_block_size, stream, tree_bytes
from ._checks import check_key, check_positive_int
from ._gaussian import AbstractGaussianApproximation, default_status
from .priors import AbstractPrior, Gaussian, Joint
from .problem import InverseProblem
from .regularizers import GMRF

#: ``rank="auto"`` grows the rank until every lane's smallest kept eigenvalue is below this:
#: a direction with ``λ < 0.1`` reduces the prior variance by less than 10% (``λ/(1+λ)``).
AUTO_TOL = 0.1
_AUTO_START = 16
_MAX_DENSE_BYTES = 2**30


# -- the prior's square root on flat vectors ---------------------------------------------------


def gaussian_leaves(prior: AbstractPrior) -> list:
    """The prior's Gaussian leaves in the order of the flat ``u``; a ValueError if it is not
    Gaussian in ``u`` (a `priors.Gaussian`, a proper `GMRF`, or a `Joint` of them)."""
    leaves = jax.tree.leaves(prior.priors, is_leaf=lambda p: isinstance(p, AbstractPrior)) \
        if isinstance(prior, Joint) else [prior]
    for p in leaves:
        if isinstance(p, GMRF) and p.num_free != math.prod(p.shape):
            raise ValueError(f"prior: got a GMRF with boundary={p.boundary!r} (improper: no prior covariance); "
                             "the low-rank Laplace approximation needs a proper Gaussian prior "
                             "(GMRF boundary='zero'); use the dense ji.laplace(..., rank=None)")
        if not isinstance(p, (Gaussian, GMRF)):
            raise ValueError(f"prior: got {type(p).__name__}, expected a Gaussian prior in u "
                             "(ji.priors.Gaussian, a proper GMRF, or a Joint of them) for the low-rank "
                             "Laplace approximation; use the dense ji.laplace(..., rank=None)")
    return leaves


def _per_leaf(prior, x, fn):
    """``fn(leaf, x_leaf)`` on each leaf's slice of the flat ``x``, raveled and concatenated."""
    out, start = [], 0
    for p in gaussian_leaves(prior):
        size = math.prod(p.event_shape)
        out.append(jnp.ravel(fn(p, x[start:start + size].reshape(p.event_shape))))
        start += size
    return jnp.concatenate(out)


def prior_sqrt(prior, z, *, transpose: bool = False) -> Float[Array, " d"]:
    """``S z`` (or ``Sᵀ z``) on flat vectors, ``S Sᵀ = Γ_pr`` (block-diagonal over leaves)."""
    return _per_leaf(prior, z, lambda p, v: p.cov_sqrt(v, transpose=transpose))


def prior_sqrt_inverse(prior, x) -> Float[Array, " d"]:
    """``S⁻¹ x`` on flat vectors (the prior's `whiten` without the mean)."""
    return _per_leaf(prior, x, lambda p, v: p.whiten(p.mean + v))


def prior_variance(prior, dtype) -> Float[Array, " d"]:
    return _per_leaf(prior, jnp.zeros(sum(math.prod(p.event_shape) for p in gaussian_leaves(prior)), dtype),
                     lambda p, v: jnp.broadcast_to(p.variance(), v.shape).astype(v.dtype))


def prior_logdet(prior) -> Float[Array, ""]:
    return sum(p.log_det_cov() for p in gaussian_leaves(prior))


# -- per-lane core ---------------------------------------------------------------------------


def randomized_eigh(matvec, d: int, rank: int, key: PRNGKeyArray, *, oversampling: int = 10,
                    power_iters: int = 1, dtype=jnp.float64):
    """The ``rank`` largest eigenpairs ``(λ, V)`` (descending, ``V`` of shape ``(d, rank)``) of
    the symmetric operator ``matvec``, by a randomized range finder with subspace iteration and
    Rayleigh-Ritz (Halko, Martinsson & Tropp 2011, Alg. 4.4 and 5.3).

    ``k = min(rank + oversampling, d)`` Gaussian probes, ``(power_iters + 2) k`` actions in
    all. When ``k`` reaches the operator's rank the probed range is its whole range and the
    pairs are exact; otherwise each power iteration sharpens the captured subspace by the
    ratio ``(λ_{k+1} / λ_j)²``."""
    k = min(rank + oversampling, d)
    act = jax.vmap(matvec, in_axes=1, out_axes=1)
    y = act(jax.random.normal(key, (d, k), dtype))
    for _ in range(power_iters):  # subspace iteration, re-orthonormalised each pass
        y = act(jnp.linalg.qr(y)[0])
    q = jnp.linalg.qr(y)[0]
    t = q.T @ act(q)
    lam, w = jnp.linalg.eigh(0.5 * (t + t.T))
    lam, w = lam[::-1][:rank], w[:, ::-1][:, :rank]
    return lam, q @ w


class LowRankFactor(eqx.Module):
    """One lane's low-rank Laplace approximation ``N(mean, S (I - V D Vᵀ) Sᵀ)`` in ``u``.

    Attributes:
        mean: ``(d,)``, the expansion point.
        eigvals: ``(r,)``, the dominant eigenvalues ``λ`` of ``H̃ = Sᵀ H_misfit S``, descending.
        eigvecs: ``(d, r)``, orthonormal eigenvectors ``V``.
        prior: the Gaussian prior that supplies ``S`` (``Γ_pr = S Sᵀ``).
    """

    mean: Float[Array, " d"]
    eigvals: Float[Array, " r"]
    eigvecs: Float[Array, "d r"]
    prior: AbstractPrior

    def _inner(self, z, power):  # (I + V (diag((1+λ)^power) - 1) Vᵀ) z
        c = (1.0 + self.eigvals) ** power - 1.0
        return z + self.eigvecs @ (c * (self.eigvecs.T @ z))

    def cov_sqrt_matvec(self, z: Float[Array, " d"]) -> Float[Array, " d"]:
        """``L z`` with ``L Lᵀ = Γ_post``: ``S (I + V (diag(1/√(1+λ)) - I) Vᵀ) z``; with ``z``
        standard normal, ``mean + L z`` is a draw (whitened coordinates for samplers)."""
        return prior_sqrt(self.prior, self._inner(z, -0.5))

    def whiten(self, u: Float[Array, " d"]) -> Float[Array, " d"]:
        """``L⁻¹ (u - mean)``, the inverse of ``z -> mean + cov_sqrt_matvec(z)``."""
        return self._inner(prior_sqrt_inverse(self.prior, u - self.mean), 0.5)

    def cov_matvec(self, v: Float[Array, " d"]) -> Float[Array, " d"]:
        """``Γ_post v = S (I - V D Vᵀ) Sᵀ v``."""
        return prior_sqrt(self.prior, self._inner(prior_sqrt(self.prior, v, transpose=True), -1.0))

    def precision_matvec(self, v: Float[Array, " d"]) -> Float[Array, " d"]:
        """``Γ_post⁻¹ v = S⁻ᵀ (I + V Λ Vᵀ) S⁻¹ v`` (the approximate curvature itself)."""
        inv, transpose = jax.vjp(lambda x: prior_sqrt_inverse(self.prior, x), v)
        return transpose(self._inner(inv, 1.0))[0]

    def variance(self) -> Float[Array, " d"]:
        """Pointwise variances ``diag Γ_pr - Σ_i λ_i/(1+λ_i) (S v_i)²``, ``O(d r)``."""
        sv = jax.vmap(lambda v: prior_sqrt(self.prior, v), in_axes=1, out_axes=1)(self.eigvecs)
        return prior_variance(self.prior, self.mean.dtype) - sv**2 @ (self.eigvals / (1.0 + self.eigvals))

    def logdet(self, relative: bool = False) -> Float[Array, ""]:
        """``log det Γ_post``; with ``relative`` the log-ratio to the prior, ``-Σ log(1+λ)``."""
        rel = -jnp.sum(jnp.log1p(self.eigvals))
        return rel if relative else prior_logdet(self.prior) + rel


def factor(problem: InverseProblem, y, u_map: Float[Array, " d"], rank: int, key: PRNGKeyArray, *,
           oversampling: int = 10, power_iters: int = 1, curvature_kind: str = "auto") -> LowRankFactor:
    """The low-rank Laplace approximation of one lane at ``u_map`` (pure; jit/vmap safe).

    Args:
        problem: a problem whose prior is Gaussian in ``u`` (see `gaussian_leaves`).
        y: one observation; u_map: ``(d,)``, the flat unconstrained expansion point.
        rank: number of eigenpairs kept (static); key: the random probes.
        oversampling, power_iters: of `randomized_eigh`.
        curvature_kind: ``"ggn"`` (the Gauss-Newton misfit Hessian, `curvature.misfit_ggn_vp`),
            ``"exact"`` (`curvature.misfit_hvp`), or ``"auto"``: GGN where the likelihood is
            convex in the prediction (`curvature.has_ggn`), exact otherwise.

    Returns:
        A `LowRankFactor`; for samplers ``mean + factor.cov_sqrt_matvec(z)`` maps whitened
        ``z`` to ``u``.
    """
    prior = problem.prior
    gaussian_leaves(prior)
    d = u_map.shape[0]
    if curvature_kind == "auto":
        curvature_kind = "ggn" if curvature.has_ggn(problem) else "exact"
    if curvature_kind not in ("ggn", "exact"):
        raise ValueError(f"curvature_kind: got {curvature_kind!r}, expected 'auto', 'ggn' or 'exact'")
    misfit = curvature.misfit_ggn_vp if curvature_kind == "ggn" else curvature.misfit_hvp

    def h_tilde(z):  # Sᵀ H_misfit S z
        return prior_sqrt(prior, misfit(problem, y, u_map, prior_sqrt(prior, z)), transpose=True)

    lam, vecs = randomized_eigh(h_tilde, d, rank, key, oversampling=oversampling, power_iters=power_iters,
                                dtype=u_map.dtype)
    return LowRankFactor(mean=u_map, eigvals=lam, eigvecs=vecs, prior=prior)


# -- batched result and driver ---------------------------------------------------------------


class LowRankGaussianApproximation(AbstractGaussianApproximation):
    """``u ~ N(mean, S (I - V D Vᵀ) Sᵀ)`` per observation: the prior plus a rank-``r`` data
    update (`ji.laplace(..., rank=r)`); ``θ = problem.from_unconstrained(u)`` (θ itself for
    the Gaussian priors this needs).

    Attributes:
        mean: ``(*batch, d)``, the expansion point (the mode unless ``at`` was given).
        eigvals: ``(*batch, r)``, dominant eigenvalues ``λ`` of the prior-preconditioned misfit
            Hessian, descending; ``eigvecs``: ``(*batch, d, r)``.
        ok: ``(*batch,)``: the mode search converged and every ``λ > -1`` (positive definite).
        problem: the problem (its prior supplies ``S``).
        status: ``(*batch,)`` `jinverse.status.MAPStatus` codes, ``OK`` exactly where ``ok``
            (as `ji.GaussianApproximation`'s).

    Everything costs ``O(d r)`` memory per observation; `covariance` materialises the dense
    matrix only when asked (and refuses above 1 GiB).
    """

    mean: Float[Array, "*batch d"]
    eigvals: Float[Array, "*batch r"]
    eigvecs: Float[Array, "*batch d r"]
    ok: Bool[Array, "*batch"]
    problem: InverseProblem
    status: Int[Array, "*batch"] = None  # type: ignore[assignment]  # None: from ok (default_status)

    def __post_init__(self):
        if self.status is None:
            self.status = default_status(self.ok)

    @property
    def rank(self) -> int:
        return self.eigvals.shape[-1]

    def _lanes(self, fn, *args):
        """``fn(factor, *args)`` for every observation's `LowRankFactor`, batch axes restored."""
        def one(m, lam, v, *a):
            return fn(LowRankFactor(m, lam, v, self.problem.prior), *a)

        for _ in self.batch_shape:
            one = jax.vmap(one)
        return one(self.mean, self.eigvals, self.eigvecs, *args)

    def variance(self) -> Float[Array, "*batch d"]:
        """Pointwise posterior variances of ``u``."""
        return self._lanes(lambda f: f.variance())

    def std(self) -> Float[Array, "*batch d"]:
        return jnp.sqrt(self.variance())

    def covariance_matvec(self, v: Float[Array, "*batch d"]) -> Float[Array, "*batch d"]:
        """``Γ_post v`` per observation (``v`` carries the batch axes)."""
        return self._lanes(lambda f, x: f.cov_matvec(x), jnp.broadcast_to(v, self.mean.shape))

    def logdet(self, relative: bool = False) -> Float[Array, "*batch"]:
        """``log det Γ_post``; ``relative=True``: ``log det Γ_post - log det Γ_pr = -Σ log(1+λ)``."""
        return self._lanes(lambda f: f.logdet(relative))

    def informed_rank(self, fraction: float = 0.99) -> Int[Array, "*batch"]:
        """The fewest eigenpairs holding ``fraction`` of the data-informed variance reduction
        ``Σ log(1+λ)`` over the kept pairs (``-logdet(relative=True)``)."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction: got {fraction!r}, expected a number in (0, 1]")
        gain = jnp.cumsum(jnp.log1p(jnp.maximum(self.eigvals, 0.0)), axis=-1)
        return 1 + jnp.argmax(gain >= fraction * gain[..., -1:], axis=-1)

    @property
    def covariance(self) -> Float[Array, "*batch d d"]:
        """The dense ``(*batch, d, d)`` covariance (``d`` actions); a ValueError above 1 GiB."""
        d = self.mean.shape[-1]
        size = math.prod(self.batch_shape) * d * d * self.mean.dtype.itemsize
        if size > _MAX_DENSE_BYTES:
            raise ValueError(f"covariance: got d={d} unknowns x {math.prod(self.batch_shape)} observations, "
                             f"a dense covariance of {size / 2**30:.1f} GiB; expected at most 1 GiB: use "
                             "covariance_matvec, variance() or sample() instead")
        eye = jnp.eye(d, dtype=self.mean.dtype)
        return self._lanes(lambda f: jax.vmap(f.cov_matvec, out_axes=1)(eye))

    def _draw(self, z):
        return self._lanes(lambda f, zz: f.mean + jax.vmap(f.cov_sqrt_matvec)(zz), z)


def check_args(problem: InverseProblem, rank, key, oversampling: int, power_iters: int) -> None:
    """Validate ``ji.laplace``'s low-rank arguments before the mode search."""
    gaussian_leaves(problem.prior)
    d, _ = curvature.flatten(problem)
    if rank != "auto":
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= d:
            raise ValueError(f"rank: got {rank!r}, expected None (dense), 'auto' or an int in [1, {d}]")
    if key is not None:
        check_key("key", key)
    check_positive_int("oversampling", oversampling, minimum=0)
    check_positive_int("power_iters", power_iters, minimum=0)


def _lowrank_lanes(operand, lanes):
    """One block of observations: each lane is one observation, its point and its key."""
    problem, (rank, oversampling, power_iters) = operand
    y, u, keys = lanes

    def one(yy, uu, kk):
        f = factor(problem, yy, uu, rank, jax.random.wrap_key_data(kk), oversampling=oversampling,
                   power_iters=power_iters)
        pd = jnp.all(jnp.isfinite(f.eigvals) & (f.eigvals > -1)) & jnp.all(jnp.isfinite(f.eigvecs))
        return f.eigvals, f.eigvecs, pd

    return jax.vmap(one)(y, u, keys)


def laplace_lowrank(problem: InverseProblem, y, u0: Float[Array, "n d"], found: Bool[Array, " n"],
                    batch: tuple[int, ...], *, rank, key, oversampling: int, power_iters: int,
                    block_size, mesh, axis, progress,
                    tol: float = AUTO_TOL) -> tuple[LowRankGaussianApproximation, Array]:
    """The driver behind ``ji.laplace(..., rank=...)``: ``n`` flat lanes ``y``/``u0`` streamed
    in blocks; returns the approximation (batch axes restored) and the per-lane PD mask.

    ``rank="auto"`` starts at 16 eigenpairs and doubles while some lane's smallest kept ``λ``
    is at least ``tol`` (default `AUTO_TOL`; one compiled program per rank tried)."""
    check_args(problem, rank, key, oversampling, power_iters)
    size, d = u0.shape
    key = jax.random.key(0) if key is None else key
    keys = jax.random.key_data(jax.random.split(key, size))
    r = min(_AUTO_START, d) if rank == "auto" else rank
    while True:
        k = min(r + oversampling, d)
        if block_size is None:
            per_lane = (tree_bytes(y[:1]) + (d * (k * (power_iters + 3) + r) + 2 * d) * u0.dtype.itemsize) * 2
            n_dev = 1 if mesh is None else mesh.shape[axis]
            blocks = default_block_size(per_lane, n_dev)
        else:
            blocks = block_size
        lam, vecs, pd = stream(_lowrank_lanes, (problem, (r, oversampling, power_iters)), (y, u0, keys),
                               num_lanes=size, block_size=blocks, mesh=mesh, axis=axis, progress=progress,
                               label=f"Laplace rank {r}")
        if rank != "auto" or r == d or not bool(jnp.any(pd & (lam[:, -1] >= tol))):
            break
        r = min(2 * r, d)
    approx = LowRankGaussianApproximation(
        mean=u0.reshape(*batch, d), eigvals=lam.reshape(*batch, r), eigvecs=vecs.reshape(*batch, d, r),
        ok=(pd & found).reshape(batch), problem=problem)
    return approx, pd
