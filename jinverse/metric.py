"""Sampler metrics as a change of coordinates: whitening by a Gaussian approximation.

A sampler with metric ``M = Σ⁻¹`` is the same sampler with the identity metric in the
coordinates ``u = m + L z`` with ``L Lᵀ = Σ``. Rather than give each blackjax kernel a metric,
`ji.sample(..., metric="laplace" | "prior")` hands every method the *whitened* log-density

    log p_z(z) = log p(u = m + L z | y) + log|det L|

(the Jacobian of an affine map is the constant ``log|det L|``), starts the chains at
``z = L⁻¹ (u - m)`` and maps each draw back exactly with ``u = m + L z``. Where the Gaussian is
the posterior (a linear forward model, Gaussian likelihood and prior) the whitened target is
N(0, I): NUTS then needs a handful of leapfrog steps per draw whatever the conditioning of the
original posterior, and pCN's reference measure is the standard normal it assumes.

- ``"laplace"``: ``m`` the mode of the unconstrained density (log-Jacobian included, found by
  `ji.solve_map` in the driver), ``Σ`` the inverse of the curvature of the one log-density at
  ``m`` from `jinverse.curvature` (generalised Gauss-Newton where the likelihood is convex in the
  prediction, else the exact Hessian).
- ``"prior"``: ``m`` and ``Σ`` of a Gaussian prior (its precision is the curvature of
  ``-log_prior``): the reference measure of pCN.

Up to `DENSE_MAX` unknowns ``L`` is a dense triangular factor (`Whitening`). Above, with a
Gaussian prior ``Γ_pr = S Sᵀ``, it is the prior's square root with a low-rank data update
(`LowRankWhitening`, `jinverse.lowrank`): ``L = S (I + V (diag(1/√(1+λ)) - I) Vᵀ)`` from the
dominant eigenpairs of the prior-preconditioned misfit curvature (none for ``"prior"``),
``O(d r)`` memory and work per evaluation. `ji.sample` keeps pairs until the smallest kept
``λ`` is below `LOWRANK_TOL` (`lowrank.laplace_lowrank` with ``rank="auto"``), so in ``z`` the
directions left out have variances between ``1/(1 + LOWRANK_TOL)`` and 1: a condition number
of at most 2 that the sampler's own (diagonal) adaptation handles. (A fixed rank is not enough:
on deconvolution2d at 64² the 256th eigenvalue is 638, and NUTS in such ``z`` needs hundreds of
leapfrog steps per draw.)

Everything here but `resolve` (the driver's validation of ``metric=``) is per lane (one
observation): pure, safe under ``jit``/``vmap``. A `Whitening`
whose mode search went non-finite or whose curvature is not positive definite is replaced by the identity
(``m = 0``, ``L = I``) with ``ok = False``: that lane samples in the original coordinates with
the method's own adaptation, and `ji.sample` flags it (`Status.METRIC_FALLBACK`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.scipy.linalg import solve_triangular
from jaxtyping import Array, Bool, Float

from . import _samplers, curvature, lowrank
from .likelihoods import Gaussian as GaussianLikelihood
from .priors import Gaussian as GaussianPrior
from .priors import Joint
from .problem import InverseProblem
from .regularizers import GMRF

#: The largest number of unknowns for which ``"laplace"``/``"prior"`` build a dense ``d x d``
#: factor (``d`` curvature-vector products, a Cholesky, a ``d²`` product per evaluation).
DENSE_MAX = 2048

#: Above `DENSE_MAX` unknowns, `ji.sample`'s Laplace whitening keeps eigenpairs down to this λ.
LOWRANK_TOL = 1.0
#: The number of eigenpairs of `laplace` when called without them (a pure per-lane use).
LOWRANK_RANK = 256

#: Metric names accepted by `ji.sample` (``"auto"`` is resolved by `choose`).
NAMES = ("auto", "diagonal", "dense", "laplace", "prior")
WHITENING = ("laplace", "prior")


class Whitening(eqx.Module):
    """The affine map ``u = shift + scale @ z`` of one lane (``scale`` upper triangular).

    Attributes:
        shift: ``m``, shaped ``(d,)``.
        scale: ``L`` with ``L Lᵀ = Σ``, shaped ``(d, d)``.
        log_det: ``log|det L|``.
        ok: whether ``(m, L)`` is the Gaussian asked for (False: the identity fallback).
    """

    shift: Float[Array, " d"]
    scale: Float[Array, "d d"]
    log_det: Float[Array, ""]
    ok: Bool[Array, ""]

    def to_u(self, z: Float[Array, " d"]) -> Float[Array, " d"]:
        """Sampler coordinates to the unconstrained ``u``."""
        return self.shift + self.scale @ z

    def to_z(self, u: Float[Array, " d"]) -> Float[Array, " d"]:
        """The unconstrained ``u`` to sampler coordinates (a triangular solve)."""
        return solve_triangular(self.scale, u - self.shift, lower=False)

    def logdensity(self, logdensity_fn):
        """The density of ``z`` when ``logdensity_fn`` is that of ``u``."""
        return lambda z: logdensity_fn(self.to_u(z)) + self.log_det


def identity(d: int, dtype) -> Whitening:
    """``u = z``: no change of coordinates."""
    return Whitening(jnp.zeros(d, dtype), jnp.eye(d, dtype=dtype), jnp.zeros((), dtype),
                     jnp.ones((), bool))


class LowRankWhitening(eqx.Module):
    """The affine map ``u = m + L z`` with ``L`` the square root of a low-rank Laplace (or prior)
    covariance (`lowrank.LowRankFactor`), for more than `DENSE_MAX` unknowns.

    Attributes:
        factor: ``m`` (``factor.mean``), ``λ``, ``V`` and the Gaussian prior that supplies ``S``.
        log_det: ``log|det L|`` = half the log-determinant of the covariance.
        ok: whether the factor is the one asked for (False: the prior's whitening, ``λ = 0``,
            centred at the prior mean).
    """

    factor: lowrank.LowRankFactor
    log_det: Float[Array, ""]
    ok: Bool[Array, ""]

    @property
    def shift(self) -> Float[Array, " d"]:
        return self.factor.mean

    def to_u(self, z: Float[Array, " d"]) -> Float[Array, " d"]:
        return self.factor.mean + self.factor.cov_sqrt_matvec(z)

    def to_z(self, u: Float[Array, " d"]) -> Float[Array, " d"]:
        return self.factor.whiten(u)

    def logdensity(self, logdensity_fn):
        return lambda z: logdensity_fn(self.to_u(z)) + self.log_det


def from_factor(f: lowrank.LowRankFactor, ok=True) -> LowRankWhitening:
    """The whitening of a low-rank factor; a non-finite or indefinite one (``λ <= -1``) falls
    back to the prior's whitening with ``ok=False``."""
    good = (jnp.asarray(ok, bool) & jnp.all(jnp.isfinite(f.eigvals)) & jnp.all(f.eigvals > -1)
            & jnp.all(jnp.isfinite(f.eigvecs)) & jnp.all(jnp.isfinite(f.mean)))
    centre = _prior_centre(f.prior, f.mean)
    f = lowrank.LowRankFactor(mean=jnp.where(good, f.mean, centre),
                              eigvals=jnp.where(good, f.eigvals, 0.0),
                              eigvecs=jnp.where(good, f.eigvecs, 0.0), prior=f.prior)
    return LowRankWhitening(f, 0.5 * f.logdet(), good)


def _prior_centre(prior, like):
    leaves = lowrank.gaussian_leaves(prior)
    return jnp.concatenate([jnp.ravel(jnp.broadcast_to(p.mean, p.event_shape)) for p in leaves]).astype(like.dtype)


def from_precision(mean: Float[Array, " d"], precision: Float[Array, "d d"], ok=True) -> Whitening:
    """The whitening of N(mean, precision⁻¹): ``precision = C Cᵀ`` (Cholesky), ``L = C⁻ᵀ``.

    Falls back to `identity` (``ok=False``) when ``ok`` is False or the Cholesky factor is not
    finite (a precision that is not positive definite)."""
    d = mean.shape[0]
    chol = jnp.linalg.cholesky(precision)
    eye = jnp.eye(d, dtype=mean.dtype)
    scale = solve_triangular(chol, eye, lower=True).T  # C⁻ᵀ: upper triangular
    log_det = -jnp.sum(jnp.log(jnp.diagonal(chol)))
    good = jnp.asarray(ok, bool) & jnp.all(jnp.isfinite(scale)) & jnp.isfinite(log_det) \
        & jnp.all(jnp.isfinite(mean))
    fallback = identity(d, mean.dtype)
    pick = lambda a, b: jnp.where(good, a, b)  # noqa: E731
    return Whitening(pick(mean, fallback.shift), pick(scale, fallback.scale),
                     pick(log_det, fallback.log_det), good)


def laplace(problem: InverseProblem, y, mode: Float[Array, " d"], ok=True,
            pairs=None) -> Whitening | LowRankWhitening:
    """The Laplace whitening of one observation: N(mode, H⁻¹), ``H`` the curvature of
    ``-problem.log_density(·, y)`` (Jacobian included) at ``mode`` (a flat unconstrained point):
    `curvature.ggn_vp` for likelihoods convex in the prediction, `curvature.hvp` otherwise.
    Dense (`Whitening`) up to `DENSE_MAX` unknowns; above, the prior plus a low-rank update
    (`LowRankWhitening`; the prior must be Gaussian, see `resolve`) from ``pairs = (λ, V)``
    when given (what `ji.sample` computes, see `LOWRANK_TOL`), else from `LOWRANK_RANK` pairs."""
    d = mode.shape[0]
    if d > DENSE_MAX:
        if pairs is None:  # fixed probes: the whitening is a function of the data alone
            return from_factor(lowrank.factor(problem, y, mode, min(LOWRANK_RANK, d), jax.random.key(0)), ok)
        lam, vecs = pairs
        return from_factor(lowrank.LowRankFactor(mean=mode, eigvals=lam, eigvecs=vecs, prior=problem.prior), ok)
    vp = curvature.ggn_vp if curvature.has_ggn(problem) else curvature.hvp
    hess = curvature.dense(lambda v: vp(problem, y, mode, v, jacobian=True), d, mode.dtype)
    return from_precision(mode, hess, ok)


def prior(problem: InverseProblem) -> Whitening | LowRankWhitening:
    """The whitening by a Gaussian prior: N(mean, precision⁻¹), the precision being the
    (constant) Hessian of ``-problem.log_prior``. The prior must be Gaussian (`is_gaussian_prior`)."""
    d, unravel = curvature.flatten(problem)
    center = ravel_pytree(problem.to_unconstrained(problem.prior.center()))[0]
    if d > DENSE_MAX:  # S itself: no data update
        f = lowrank.LowRankFactor(mean=_prior_centre(problem.prior, center), eigvals=jnp.zeros(0, center.dtype),
                                  eigvecs=jnp.zeros((d, 0), center.dtype), prior=problem.prior)
        return from_factor(f)
    neg = lambda x: -problem.log_prior(problem.from_unconstrained(unravel(x)))  # noqa: E731
    hess = curvature.dense(lambda v: jax.jvp(jax.grad(neg), (center,), (v,))[1], d, center.dtype)
    return from_precision(center, hess)


def is_gaussian_prior(p) -> bool:
    """A Gaussian prior (``priors.Gaussian``, a ``GMRF``, or a `Joint` of them): unbounded, and
    its log-density quadratic, so ``"prior"`` whitening is exact."""
    if isinstance(p, Joint):
        leaves = jax.tree.leaves(p.priors, is_leaf=lambda x: isinstance(x, eqx.Module))
        return all(is_gaussian_prior(q) for q in leaves)
    return isinstance(p, (GaussianPrior, GMRF))


def choose(problem: InverseProblem, method, d: int) -> str:
    """What ``metric="auto"`` means for ``method`` on ``problem`` with ``d`` unknowns.

    ``"laplace"`` for a built-in method on a Gaussian likelihood with a Gaussian or GMRF prior
    (there the Laplace approximation is the posterior for a linear forward model and close to
    it for a mildly nonlinear one; low-rank above `DENSE_MAX` unknowns, where the GMRF must be
    proper). For pCN that is gpCN (Rudolf & Sprungk 2018: the Laplace approximation as
    reference measure instead of the prior). Else ``"diagonal"``: the coordinates as they are
    and the method's own adaptation, or for pCN ``"prior"`` (its proposal assumes a Gaussian
    reference measure). A user's own algorithm
    (callable ``method``) is never whitened unless asked.
    """
    if callable(method):
        return "diagonal"
    gaussian = isinstance(problem.likelihood, GaussianLikelihood) and is_gaussian_prior(problem.prior)
    if gaussian and d > DENSE_MAX:
        gaussian = _lowrank_ready(problem.prior)
    if gaussian:
        return "laplace"
    return "prior" if method == "pcn" else "diagonal"


def _lowrank_ready(prior) -> bool:
    try:
        lowrank.gaussian_leaves(prior)
    except ValueError:
        return False
    return True


# Method names that are another method in given coordinates: gpCN is pCN with the Laplace metric.
ALIASES = {"gpcn": ("pcn", "laplace")}


def resolve(problem: InverseProblem, method, metric, options: dict, d: int) -> tuple[str, dict]:
    """``(resolved metric, options)``: ``"auto"`` chosen by structure (`metric.choose`), the
    legacy ``dense_mass`` option read as ``metric="dense"`` and written back as the method's
    own switch; raises a ValueError naming the argument for a combination that cannot be."""
    if not isinstance(metric, str) or metric not in NAMES:
        raise ValueError(f"metric: got {metric!r}, expected one of {list(NAMES)}")
    name = method if isinstance(method, str) else None
    if name in ALIASES:
        forced = ALIASES[name][1]
        if metric not in ("auto", forced):
            raise ValueError(f"metric: got {metric!r} for method {name!r}, which is "
                             f"{ALIASES[name][0]!r} with metric={forced!r}; leave metric='auto'")
        metric = forced
    options = dict(options)
    base = ALIASES[name][0] if name in ALIASES else name  # None: the user's own algorithm
    known = set() if base is None else set(_samplers.METHODS[base].options or ())
    # the older spelling of metric="dense" (NUTS/HMC); elsewhere, or not a bool, it is left to
    # the options check (unknown name, unhashable value)
    if isinstance(options.get("dense_mass"), (bool, np.bool_)) and "dense_mass" in known:
        dense = options.pop("dense_mass")
        want = "dense" if dense else "diagonal"
        if metric not in ("auto", want):
            raise ValueError(f"dense_mass: got {bool(dense)} with metric={metric!r}, expected no "
                             f"dense_mass (it means metric={want!r})")
        metric = want
    explicit = metric
    if metric == "auto":
        metric = choose(problem, method, d)
    if metric == "dense":  # the method's own switch: NUTS/HMC's dense_mass, MALA/RWMH's preconditioner
        if "dense_mass" in known:
            options["dense_mass"] = True
        elif "preconditioner" in known and options.get("preconditioner", "dense") == "dense":
            options["preconditioner"] = "dense"
        else:
            raise ValueError(f"metric: got 'dense' for method {name!r}, which adapts no dense mass "
                             f"matrix{' with these options' if 'preconditioner' in known else ''}; "
                             "expected 'auto', 'diagonal', 'laplace' or 'prior'")
    if explicit == "diagonal" and "preconditioner" in known:
        if options.get("preconditioner", "diagonal") != "diagonal":
            raise ValueError(f"preconditioner: got {options['preconditioner']!r} with metric='diagonal', "
                             "expected no preconditioner (or 'diagonal')")
        options["preconditioner"] = "diagonal"
    if name in ("pcn", "gpcn") and metric not in WHITENING:
        raise ValueError(f"metric: got {metric!r} for method {name!r}, expected 'prior' or "
                         "'laplace' (pCN assumes a standard normal reference in its coordinates)")
    if metric in WHITENING and d > DENSE_MAX and not _lowrank_ready(problem.prior):
        raise ValueError(f"metric: got {metric!r} for {d} unknowns with a {type(problem.prior).__name__} "
                         f"prior, expected a proper Gaussian prior above {DENSE_MAX} unknowns (the "
                         "low-rank whitening builds on the prior's square root); use metric='diagonal'")
    if metric == "prior":
        if not is_gaussian_prior(problem.prior):
            raise ValueError(f"metric: got 'prior' with a {type(problem.prior).__name__} prior, "
                             "expected a Gaussian or GMRF prior (or metric='laplace')")
        if not bool(jax.jit(lambda: prior(problem).ok)()):
            raise ValueError("metric: got 'prior' with an improper prior (its precision is not "
                             "positive definite, e.g. a periodic or Neumann GMRF), expected a "
                             "proper Gaussian prior (or metric='laplace')")
    return metric, options
