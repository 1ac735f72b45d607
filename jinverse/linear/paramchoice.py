"""Choice of the regularisation parameter: GCV, L-curve corner and the discrepancy principle.

All functions work on the *spectral quantities* of one observation in standard form:
singular values ``s`` of the (transformed) operator, the coefficients ``beta = Uᵀ y`` and
``perp2``, the squared norm of the part of ``y`` no regularised solution can fit (outside the
range of the operator), with ``m`` data and ``p`` unregularised directions (the null space of
``L``). A Tikhonov solution with parameter ``lam`` has filter factors
``f = s² / (s² + lam²)``; a truncated SVD keeps the first ``k`` components.

    residual²(lam)  = Σ ((1 - f) β)² + perp2
    ‖L x‖²(lam)     = Σ (f β / s)²
    GCV(lam)        = residual² / (m - p - Σ f)²

References: Hansen, *Rank-Deficient and Discrete Ill-Posed Problems* (SIAM 1998), ch. 7;
Golub, Heath & Wahba (1979) for GCV; Hansen & O'Leary (1993) for the L-curve corner.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

_GOLDEN = 0.3819660112501051  # 2 - golden ratio


def filter_factors(lam, s):
    """Tikhonov filter factors ``s² / (s² + lam²)``."""
    s2 = s * s
    return s2 / (s2 + lam * lam)


def residual_sq(lam, s, beta, perp2):
    """‖A x_lam - y‖² of the Tikhonov solution."""
    f = filter_factors(lam, s)
    return jnp.sum(((1.0 - f) * beta) ** 2) + perp2


def solution_sq(lam, s, beta):
    """‖L x_lam‖² of the Tikhonov solution (‖x_lam‖² in standard form)."""
    return jnp.sum((s * beta / (s * s + lam * lam)) ** 2)


def gcv(lam, s, beta, perp2, m: int, p: int = 0) -> Float[Array, ""]:
    """The GCV function ``‖A x_lam - y‖² / (m - p - Σ f)²`` (trace of I minus the influence matrix)."""
    f = filter_factors(lam, s)
    return residual_sq(lam, s, beta, perp2) / (m - p - jnp.sum(f)) ** 2


def lcurve_curvature(lam, s, beta, perp2) -> Float[Array, ""]:
    """Signed curvature of the L-curve ``(log ‖r‖, log ‖L x‖)`` at ``lam``.

    Computed by automatic differentiation of the curve in ``t = log lam``; the corner is the
    point of largest positive curvature.
    """

    def curve(t):
        lm = jnp.exp(t)
        return jnp.stack([0.5 * jnp.log(residual_sq(lm, s, beta, perp2)), 0.5 * jnp.log(solution_sq(lm, s, beta))])

    def d1(t):
        return jax.jvp(curve, (t,), (jnp.ones_like(t),))[1]

    t = jnp.log(lam)
    first, second = jax.jvp(d1, (t,), (jnp.ones_like(t),))
    (a1, b1), (a2, b2) = first, second
    return (a1 * b2 - a2 * b1) / (a1 * a1 + b1 * b1) ** 1.5


def lambda_range(s, dtype=None):
    """The search interval ``[lo, hi]`` for ``lam``: the useful span of singular values."""
    dtype = dtype or s.dtype
    smax = jnp.max(s)
    smin = jnp.min(jnp.where(s > 0, s, smax))
    lo = jnp.maximum(smin, smax * jnp.finfo(dtype).eps ** 0.75)
    return lo, smax


# How far past the largest singular value each rule searches (see the choose_* docstrings).
_UPPER = {"gcv": 100.0, "lcurve": 1.0, "discrepancy": 1e3}


def search_interval(method: str, s):
    """The interval ``[lo, hi]`` that ``method`` searches for ``lam``."""
    lo, hi = lambda_range(s)
    return lo, _UPPER[method] * hi


def at_bound(lam, method: str, s):
    """True where ``method`` ended on the edge of its search interval: it found no interior
    choice (a GCV/L-curve optimum on the edge, or a discrepancy target out of reach)."""
    lo, hi = search_interval(method, s)
    t = jnp.log(lam)
    return (t - jnp.log(lo) < 1e-6) | (jnp.log(hi) - t < 1e-6)


def _grid_then_golden(fun, lo, hi, num_grid: int, num_refine: int):
    """Minimise ``fun(lam)`` over ``[lo, hi]``: a log-spaced grid, then golden section around the best."""
    t = jnp.linspace(jnp.log(lo), jnp.log(hi), num_grid)
    vals = jax.vmap(lambda u: fun(jnp.exp(u)))(t)
    vals = jnp.where(jnp.isfinite(vals), vals, jnp.inf)
    i = jnp.argmin(vals)
    a, b = t[jnp.maximum(i - 1, 0)], t[jnp.minimum(i + 1, num_grid - 1)]
    g = lambda u: jnp.where(jnp.isfinite(v := fun(jnp.exp(u))), v, jnp.inf)  # noqa: E731

    # One golden-section step: keep the bracket [a, b] with interior points c < d.
    def step(_, state):
        a, b, c, d, fc, fd = state
        left = fc <= fd
        a2, b2 = jnp.where(left, a, c), jnp.where(left, d, b)
        c2 = jnp.where(left, a2 + _GOLDEN * (b2 - a2), d)
        d2 = jnp.where(left, c, b2 - _GOLDEN * (b2 - a2))
        fnew = g(jnp.where(left, c2, d2))
        fc2, fd2 = jnp.where(left, fnew, fd), jnp.where(left, fc, fnew)
        return a2, b2, c2, d2, fc2, fd2

    c, d = a + _GOLDEN * (b - a), b - _GOLDEN * (b - a)
    a, b, c, d, fc, fd = jax.lax.fori_loop(0, num_refine, step, (a, b, c, d, g(c), g(d)))
    best_t = jnp.where(fc <= fd, c, d)
    best_v = jnp.minimum(fc, fd)
    return jnp.exp(jnp.where(best_v <= vals[i], best_t, t[i]))


def argmin_tolerance(fun, lam, lo, hi, *, rel_noise: float, num_grid: int = 100, num_refine: int = 40):
    """How far apart in ``log lam`` two runs of the grid + golden-section search of ``fun`` can
    end when their evaluations of ``fun`` differ by rounding (e.g. a batched and a one-observation
    program, which XLA fuses differently): the search's own tolerance, for tests and reports.

    Two limits, added: the final golden bracket, ``2 Δ (1 - g)^num_refine`` with ``Δ`` the grid
    step; and the flatness of ``fun`` at its minimum ``t* = log lam``. A comparison of ``f(c)``
    and ``f(d)`` evaluated with noise ``η = rel_noise · |f|`` can go the wrong way only when
    ``½ f'' (d - c)² ≤ 2η``, i.e. ``d - c ≤ 2 sqrt(η / f'')``; the bracket is then
    ``(d - c) / (1 - 2 g)`` wide, contains ``t*``, and the search ends inside it. So each run
    ends within ``bracket + 2 sqrt(η / f'') / (1 - 2 g)`` of ``t*``, two runs within twice that.
    ``rel_noise`` is the relative rounding of one evaluation (``k · eps`` for a sum of ``k``
    terms). It scales as ``sqrt(eps)``, not ``eps``: no argmin is sharper than that.
    """
    t = jnp.log(lam)
    g = lambda u: fun(jnp.exp(u))  # noqa: E731
    f, f2 = g(t), jax.grad(jax.grad(g))(t)
    bracket = 2 * (jnp.log(hi) - jnp.log(lo)) / (num_grid - 1) * (1 - _GOLDEN) ** num_refine
    flat = 2 * jnp.sqrt(rel_noise * jnp.abs(f) / jnp.abs(f2)) / (1 - 2 * _GOLDEN)
    return 2 * (bracket + flat)


def choose_gcv(s, beta, perp2, m: int, p: int = 0, *, num_grid: int = 100, num_refine: int = 40):
    """The ``lam`` minimising GCV (global minimum on a log grid, refined by golden section).

    The search runs to ``100 · s_max``: when the data carry little signal GCV keeps falling
    past the largest singular value, towards the zero solution.
    """
    lo, hi = search_interval("gcv", s)
    return _grid_then_golden(lambda lm: gcv(lm, s, beta, perp2, m, p), lo, hi, num_grid, num_refine)


def choose_lcurve(s, beta, perp2, *, num_grid: int = 100, num_refine: int = 40):
    """The ``lam`` at the corner of the L-curve (largest curvature)."""
    lo, hi = search_interval("lcurve", s)
    return _grid_then_golden(lambda lm: -lcurve_curvature(lm, s, beta, perp2), lo, hi, num_grid, num_refine)


def choose_discrepancy(s, beta, perp2, noise_std, m: int, *, tau: float = 1.0, num_iter: int = 60):
    """The ``lam`` whose residual norm equals ``tau · sqrt(m) · noise_std`` (bisection in log lam).

    The residual grows with ``lam``; when even the smallest ``lam`` cannot reach the target the
    smallest is returned, when even a huge one stays below it the largest.
    """
    lo, hi = search_interval("discrepancy", s)
    target = (tau * noise_std) ** 2 * m

    def step(_, ab):
        a, b = ab
        c = 0.5 * (a + b)
        below = residual_sq(jnp.exp(c), s, beta, perp2) < target
        return jnp.where(below, c, a), jnp.where(below, b, c)

    a, b = jax.lax.fori_loop(0, num_iter, step, (jnp.log(lo), jnp.log(hi)))
    return jnp.exp(0.5 * (a + b))


# -- truncated SVD: the same three rules over the truncation index k -------------------------

def tsvd_residual_sq(s, beta, perp2):
    """``‖A x_k - y‖²`` for every ``k = 0..r`` (shape ``(r + 1,)``)."""
    tail = jnp.cumsum((beta**2)[::-1])[::-1]
    return jnp.concatenate([tail, jnp.zeros((1,), beta.dtype)]) + perp2


def tsvd_solution_sq(s, beta):
    """``‖L x_k‖²`` for every ``k = 0..r``."""
    safe = jnp.where(s > 0, s, 1.0)
    terms = jnp.where(s > 0, (beta / safe) ** 2, 0.0)
    return jnp.concatenate([jnp.zeros((1,), beta.dtype), jnp.cumsum(terms)])


def _valid_k(s):
    """Truncation levels allowed: only components with a non-negligible singular value."""
    r = s.shape[0]
    lo, _ = lambda_range(s)
    nonzero = jnp.sum(s >= lo)
    return jnp.arange(r + 1) <= nonzero


def choose_k_gcv(s, beta, perp2, m: int, p: int = 0):
    k = jnp.arange(s.shape[0] + 1)
    g = tsvd_residual_sq(s, beta, perp2) / (m - p - k) ** 2
    g = jnp.where(_valid_k(s) & (m - p - k > 0), g, jnp.inf)
    return jnp.argmin(g)


def choose_k_discrepancy(s, beta, perp2, noise_std, m: int, *, tau: float = 1.0):
    """The smallest ``k`` whose residual is at most ``tau · sqrt(m) · noise_std``."""
    ok = (tsvd_residual_sq(s, beta, perp2) <= (tau * noise_std) ** 2 * m) & _valid_k(s)
    last = jnp.sum(_valid_k(s)) - 1
    return jnp.where(jnp.any(ok), jnp.argmax(ok), last)


def choose_k_lcurve(s, beta, perp2):
    """The corner of the discrete L-curve, through its Tikhonov twin: the Tikhonov filter with
    ``lam`` keeps about the components with ``s_i > lam``, and the two L-curves share their
    corner (Hansen 1998, §7.5). Returns the number of singular values above the corner's ``lam``."""
    lam = choose_lcurve(s, beta, perp2)
    k = jnp.sum((s >= lam) & _valid_k(s)[1:])
    return jnp.maximum(k, 1)
