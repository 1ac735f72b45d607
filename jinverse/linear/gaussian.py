"""The exact posterior of a linear-Gaussian problem: mean, covariance and exact samples.

For ``y = A θ + c + e``, ``e ~ N(0, Γ)`` and a Gaussian prior ``θ ~ N(m₀, P₀⁻¹)`` the posterior
is Gaussian with precision ``H = Aᵀ Γ⁻¹ A + P₀`` and mean ``H⁻¹ (Aᵀ Γ⁻¹ (y - c) + P₀ m₀)``.
Dense path: a Cholesky factor of ``H``. Large ``n``: perturbation-optimisation (Orieux et al.
2012, "randomise-then-optimise" for linear problems): perturb the data by ``η ~ N(0, Γ)`` and the
prior mean by ``ζ ~ N(0, P₀⁻¹)`` and solve the normal equations by conjugate gradients; the
solution is an exact posterior draw (up to the CG tolerance).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .. import dense
from .._checks import check_key
from ..likelihoods import Gaussian as GaussianLikelihood
from ..priors import Gaussian as GaussianPrior
from ..status import MAPStatus, finite_status
from .operators import LinearOperator, as_operator


def _prior_parts(prior):
    """``(mean, precision_matvec)`` of a Gaussian-type prior."""
    if isinstance(prior, GaussianPrior):
        if prior.std is not None:
            inv_var = 1.0 / prior.std.reshape(-1) ** 2
            return prior.mean.reshape(-1), lambda v: inv_var * v
        C = prior.chol
        if prior.is_precision:
            return prior.mean, lambda v: C @ (C.T @ v)
        return prior.mean, lambda v: dense.cho_solve((C, True), v)
    if hasattr(prior, "precision_matvec") and hasattr(prior, "mean"):
        mean = jnp.broadcast_to(prior.mean, prior.event_shape).reshape(-1)
        return mean, lambda v: prior.precision_matvec(v.reshape(prior.event_shape)).reshape(-1)
    raise TypeError(f"prior: got {type(prior).__name__}, expected a Gaussian prior (ji.priors.Gaussian "
                    "or a GMRF smoothness prior)")


def _noise_parts(likelihood):
    """``whiten`` with ``Γ⁻¹ = whitenᵀ whiten``."""
    if not isinstance(likelihood, GaussianLikelihood):
        raise TypeError(f"likelihood: got {type(likelihood).__name__}, expected ji.likelihoods.Gaussian")
    return likelihood.whiten


class LinearGaussianPosterior(eqx.Module):
    """The Gaussian posterior of a linear-Gaussian problem for a batch of observations.

    Attributes: ``mean`` (``(*batch, n)``); ``status`` (``(*batch,)``, `jinverse.status.MAPStatus`
    codes: ``OK``, ``NONFINITE`` where the mean is not finite, ``MAX_STEPS`` where CG stopped at
    ``maxiter`` above its tolerance) and ``ok`` (``status == OK``); the rest are what `sample` needs.
    """

    mean: Float[Array, "*batch n"]
    chol: Float[Array, "n n"] | None  # lower Cholesky factor of the posterior precision (dense)
    A: LinearOperator
    offset: Float[Array, " m"]
    prior: eqx.Module
    likelihood: GaussianLikelihood
    y: Float[Array, "*batch m"]
    tol: float = eqx.field(static=True)
    maxiter: int = eqx.field(static=True)
    status: Int[Array, "*batch"] | None = None  # (set by `linear_gaussian`)

    @property
    def ok(self) -> Bool[Array, "*batch"]:
        return MAPStatus.ok(self.status)

    def covariance(self) -> Float[Array, "n n"]:
        """The dense posterior covariance (the same for every observation)."""
        chol = self.chol if self.chol is not None else dense.cholesky(_dense_precision(self))
        eye = jnp.eye(chol.shape[0], dtype=chol.dtype)
        return dense.cho_solve((chol, True), eye)

    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...] = ()) -> Float[Array, "*batch *shape n"]:
        """Exact posterior draws with shape ``(*batch, *shape, n)``.

        Dense: ``mean + C⁻ᵀ z`` with ``H = C Cᵀ``. Matrix-free: perturbation-optimisation.
        """
        check_key("key", key)
        shape = tuple(shape)
        batch = self.mean.shape[:-1]
        n = self.mean.shape[-1]
        if self.chol is not None:
            return _dense_draws(self.mean, self.chol, key, shape)
        num = int(np.prod(batch + shape, dtype=int))
        keys = jax.random.split(key, num)
        ys = jnp.broadcast_to(self.y.reshape(*batch, *(1,) * len(shape), -1), (*batch, *shape, self.y.shape[-1]))
        return _po_draws(self, keys, ys.reshape(num, -1)).reshape(*batch, *shape, n)


def _dense_precision(post) -> Float[Array, "n n"]:
    n = post.mean.shape[-1]
    _, prec = _prior_parts(post.prior)
    WA = jax.vmap(post.likelihood.whiten, in_axes=1, out_axes=1)(post.A.to_dense())
    return WA.T @ WA + jax.vmap(prec, in_axes=1, out_axes=1)(jnp.eye(n, dtype=WA.dtype))


def _precision_matvec(post):
    """``v ↦ (Aᵀ Γ⁻¹ A + P₀) v``, the posterior precision applied matrix-free."""
    _, prec = _prior_parts(post.prior)
    w = post.likelihood.whiten

    def H(v):
        # Aᵀ Γ⁻¹ A v: apply whiten twice through its transpose (linear in the residual).
        wt = jax.linear_transpose(w, jax.ShapeDtypeStruct((post.A.shape[0],), v.dtype))
        return post.A.rmatvec(wt(w(post.A.matvec(v)))[0]) + prec(v)

    return H


def _solve_cg(post, rhs):
    x, _ = jax.scipy.sparse.linalg.cg(_precision_matvec(post), rhs, tol=post.tol, maxiter=post.maxiter)
    return x


def _rhs(post, y, mean0):
    _, prec = _prior_parts(post.prior)
    w = post.likelihood.whiten
    wt = jax.linear_transpose(w, jax.ShapeDtypeStruct((post.A.shape[0],), y.dtype))
    return post.A.rmatvec(wt(w(y - post.offset))[0]) + prec(mean0)


@eqx.filter_jit
def _po_draws(post, keys, ys):
    m0, _ = _prior_parts(post.prior)

    def one(key, y):
        k1, k2 = jax.random.split(key)
        eta = post.likelihood.sample(k1, jnp.zeros_like(y))  # N(0, Γ)
        zeta = post.prior.sample(k2).reshape(-1) - m0  # N(0, P₀⁻¹)
        return _solve_cg(post, _rhs(post, y + eta, m0 + zeta))

    return jax.vmap(one)(keys, ys)


@eqx.filter_jit
def _dense_means(post, Y):
    m0, _ = _prior_parts(post.prior)
    chol = dense.cholesky(_dense_precision(post))  # blocked above 1 GiB (issue 19)
    rhs = jax.vmap(lambda y: _rhs(post, y, m0))(Y)
    return dense.cho_solve((chol, True), rhs.T).T, chol


@eqx.filter_jit
def _dense_draws(mean, chol, key, shape):
    n = mean.shape[-1]
    batch = mean.shape[:-1]
    z = jax.random.normal(key, (*batch, *shape, n), mean.dtype)
    x = dense.solve_triangular(chol, z.reshape(-1, n).T, lower=True, transpose_a=True).T  # C⁻ᵀ z
    return mean.reshape(*batch, *(1,) * len(shape), n) + x.reshape(z.shape)


@eqx.filter_jit
def _cg_means(post, Y):
    """The means and their status: CG's true residual checked against its tolerance, since
    `jax.scipy.sparse.linalg.cg` does not say whether it converged. CG stops on its recursively
    updated residual, which drifts from the true one by about eps x cond(H) on an ill-conditioned
    precision, so the check allows √eps (1.5e-8 in float64): it flags a run cut off by
    ``maxiter``, not rounding."""
    m0, _ = _prior_parts(post.prior)
    H = _precision_matvec(post)
    room = max(10.0 * post.tol, float(np.sqrt(np.finfo(Y.dtype).eps)))

    def one(y):
        b = _rhs(post, y, m0)
        x = _solve_cg(post, b)
        converged = jnp.linalg.norm(H(x) - b) <= room * jnp.linalg.norm(b)
        code = jnp.where(converged, int(MAPStatus.OK), int(MAPStatus.MAX_STEPS))
        return x, jnp.where(jnp.all(jnp.isfinite(x)), code, int(MAPStatus.NONFINITE)).astype(jnp.int32)

    return jax.vmap(one)(Y)


def linear_gaussian(problem, y, *, method: str = "auto", tol: float = 1e-10,
                    maxiter: int | None = None) -> LinearGaussianPosterior:
    """The exact posterior of ``problem`` (affine forward, Gaussian prior and likelihood) given ``y``.

    Args:
        problem: a `ji.InverseProblem` whose forward is affine in a vector θ, with a Gaussian
            prior (`ji.priors.Gaussian` or a GMRF) and a `ji.likelihoods.Gaussian` likelihood.
        y: observations ``(*batch, m)``. A θ with more than one axis (an image) is flattened
            row-major: ``mean`` is ``(*batch, n)`` with ``n`` its size, the covariance ``n × n``.
        method: ``"dense"`` (Cholesky of the ``n × n`` precision), ``"cg"``
            (matrix-free: CG for the mean, perturbation-optimisation for draws) or ``"auto"``
            (dense for ``n ≤ 2048``).

    Example::

        post = ji.linear.linear_gaussian(problem, y)
        post.mean, post.covariance(), post.sample(jax.random.key(0), (1000,))
    """
    if method not in ("auto", "dense", "cg"):
        raise ValueError(f"method: got {method!r}, expected 'auto', 'dense' or 'cg'")
    m0, prec = _prior_parts(problem.prior)
    _noise_parts(problem.likelihood)
    Y, batch = problem.check_y(y)
    n = m0.shape[-1]
    event = tuple(problem.prior.event_shape)

    def fwd(v):  # on the flattened θ, giving the flattened prediction
        return jnp.ravel(problem.forward(v.reshape(event)))

    offset = fwd(jnp.zeros((n,), Y.dtype))
    A = as_operator(lambda v: fwd(v) - fwd(jnp.zeros_like(v)), n, name="forward")
    probe = jax.random.normal(jax.random.key(1), (n,), Y.dtype)
    lhs, rhs = A.matvec(2.0 * probe), 2.0 * A.matvec(probe)
    if not bool(jnp.allclose(lhs, rhs, rtol=1e-6, atol=1e-8 * (1.0 + float(jnp.abs(rhs).max())))):
        raise ValueError("problem: the forward model is not affine in θ, expected θ ↦ A θ + c")
    if method == "auto":
        method = "dense" if n <= 2048 else "cg"
    Yf = Y.reshape(-1, Y.shape[-1])
    if method == "dense":
        # the n x n precision, its factor and a covariance: refused up front when they cannot fit
        dense.check_dense(n, Y.dtype, copies=3, what="ji.linear.linear_gaussian(method='dense')",
                          alternative="method='cg' (matrix-free conjugate gradients and perturbation-optimisation)")
        A = as_operator(A.to_dense())
    post = LinearGaussianPosterior(jnp.zeros((*batch, n), Y.dtype), None, A, offset, problem.prior,
                                   problem.likelihood, Y, tol, maxiter or 10 * n)
    if method == "dense":
        means, chol = _dense_means(post, Yf)
        means = means.reshape(*batch, n)
        return eqx.tree_at(lambda p: (p.mean, p.chol, p.status), post,
                           (means, chol, finite_status(means, len(batch))), is_leaf=lambda x: x is None)
    means, status = _cg_means(post, Yf)
    return eqx.tree_at(lambda p: (p.mean, p.status), post, (means.reshape(*batch, n), status.reshape(batch)),
                       is_leaf=lambda x: x is None)
