"""Classical ill-posed test problems from Hansen's Regularization Tools.

Each ``_name(n, ...)`` follows the published MATLAB definition (P. C. Hansen, "Regularization
Tools version 4.0 for Matlab 7.3", Numer. Algorithms 46 (2007) 189-194): the same discretisation
(Galerkin with orthonormal box functions, midpoint or Simpson quadrature, Gauss-Laguerre), and it
returns ``(A, b, x)`` exactly as the original does, in float64 NumPy. `hansen(name, n, ...)` gives
that triple; the registered builders wrap it as a `Benchmark`:

- ``problem``: forward ``θ ↦ A θ`` (a `MatrixOperator`), a Gaussian likelihood and, by default,
  the prior ``θ ~ N(0, s² I)`` with ``s = ||x|| / sqrt(n)`` (the RMS of the exact solution).
- ``y = b + e`` with Hansen's right-hand side ``b`` (``rhs="published"``, the default; it includes
  the discretisation error where ``b`` is the discretised analytic ``g``) or ``y = A x + e``
  (``rhs="exact"``), ``e ~ N(0, std² I)`` with ``std = noise * ||A x|| / sqrt(n)``.
- ``batch=B``: ``B`` independent noise draws for the same ``x`` (``theta_true`` tiled to (B, n)).
- ``reference={"solution": x}``, ``info={"A": A, "b": b, "noise_std": std}``, metric
  ``"rel_error"`` (``||θ - x|| / ||x||``).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from .._checks import check_positive_int
from ._noise import check_choice, gaussian_benchmark
from ._registry import Benchmark, register

_FAMILY = "classical"


def _toeplitz(col, row):
    """Dense Toeplitz matrix with first column ``col`` and first row ``row`` (row[0] ignored)."""
    n = len(col)
    i, j = np.indices((n, len(row)))
    vals = np.concatenate([np.asarray(row)[:0:-1], np.asarray(col)])  # row reversed, then col
    return vals[i - j + len(row) - 1]


def _even(n, mult=2, name="n"):
    n = check_positive_int(name, n)
    if n % mult:
        raise ValueError(f"{name}: got {n}, expected a multiple of {mult} (as in Regularization Tools)")
    return n


def _example(example, allowed):
    if isinstance(example, bool) or example not in allowed:
        raise ValueError(f"example: got {example!r}, expected one of {', '.join(map(str, allowed))}")
    return int(example)


# -- the problems ---------------------------------------------------------------------------


def _deriv2(n, example=1):
    """Second derivative: K(s,t) = s(t-1) for s < t, t(s-1) for s >= t on [0,1]²; Galerkin."""
    example = _example(example, (1, 2, 3))
    n = _even(n) if example == 3 else check_positive_int("n", n)
    h = 1.0 / n
    i = np.arange(1, n + 1, dtype=float)
    ii, jj = np.meshgrid(i, i, indexing="ij")
    lo = h**2 * (jj - 0.5) * ((ii - 0.5) * h - 1)  # entries j < i
    A = np.where(jj < ii, lo, lo.T)
    A[np.diag_indices(n)] = h**2 * ((i**2 - i + 0.25) * h - (i - 2.0 / 3.0))
    s1, s2 = i * h, (i - 1) * h
    if example == 1:
        b = h**1.5 * (i - 0.5) * ((i**2 + (i - 1) ** 2) * h**2 / 2 - 1) / 6
        x = h**1.5 * (i - 0.5)
    elif example == 2:
        b = (np.exp(s1) - np.exp(s2) + (1 - math.e) * (i - 0.5) * h**2 - h) / math.sqrt(h)
        x = (np.exp(s1) - np.exp(s2)) / math.sqrt(h)
    else:
        d2 = s1**2 - s2**2
        first = (s1**2 + s2**2 - 1.5) * d2 / 24
        second = (-(s1**2 + s2**2) * d2 + 4 * (s1**3 - s2**3) - 4.5 * d2 + h) / 24
        b = np.where(i <= n // 2, first, second) / math.sqrt(h)
        x = np.where(i <= n // 2, d2 / 2, h - d2 / 2) / math.sqrt(h)
    return A, b, x


def _shaw(n):
    """1-D image restoration: K(s,t) = (cos s + cos t)² (sin u / u)², u = π(sin s + sin t)."""
    n = _even(n)
    h = math.pi / n
    t = -math.pi / 2 + (np.arange(n) + 0.5) * h
    co, si = np.cos(t), np.sin(t)
    # np.sinc(z) = sin(πz)/(πz), so sinc(sin s + sin t) = sin(u)/u with the limit 1 at u = 0.
    A = h * ((co[:, None] + co[None, :]) * np.sinc(si[:, None] + si[None, :])) ** 2
    x = 2 * np.exp(-6 * (t - 0.8) ** 2) + np.exp(-2 * (t + 0.5) ** 2)
    return A, A @ x, x


def _phillips(n):
    """Phillips: K(s,t) = φ(s-t), f = φ, φ(z) = 1 + cos(πz/3) for |z| < 3; [-6,6]²; Galerkin."""
    n = _even(n, 4)
    h, n4 = 12.0 / n, n // 4
    c = np.cos(np.arange(-1, n4 + 1) * 4 * math.pi / n)
    r1 = np.zeros(n)
    r1[:n4] = h + 9 / (h * math.pi**2) * (2 * c[1:n4 + 1] - c[:n4] - c[2:n4 + 2])
    r1[n4] = h / 2 + 9 / (h * math.pi**2) * (math.cos(4 * math.pi / n) - 1)
    A = _toeplitz(r1, r1)
    cc = math.pi / 3

    def prim(t):  # an antiderivative of g(s) for s >= 0
        return t * (6 - abs(t) / 2) + ((3 - abs(t) / 2) * np.sin(cc * t) - 2 / cc * (np.cos(cc * t) - 1)) / cc

    i = np.arange(n // 2 + 1, n + 1)
    t1 = -6 + i * h
    upper = prim(t1) - prim(t1 - h)
    b = np.concatenate([upper[::-1], upper]) / math.sqrt(h)
    x = np.zeros(n)
    right = (h + np.diff(np.sin(np.arange(n4 + 1) * h * cc)) / cc) / math.sqrt(h)
    x[2 * n4:3 * n4] = right
    x[n4:2 * n4] = right[::-1]
    return A, b, x


def _gravity(n, example=1, a=0.0, b=1.0, d=0.25):
    """Gravity surveying: K(s,t) = d (d² + (s-t)²)^(-3/2), t in [0,1], s in [a,b]; midpoint."""
    n = check_positive_int("n", n)
    example = _example(example, (1, 2, 3))
    if not (np.isfinite(a) and np.isfinite(b) and a < b):
        raise ValueError(f"a, b: got a={a!r}, b={b!r}, expected finite numbers with a < b")
    if not (np.isfinite(d) and d > 0):
        raise ValueError(f"d: got {d!r}, expected a depth > 0")
    t = (np.arange(1, n + 1) - 0.5) / n
    s = a + (b - a) / n * (np.arange(1, n + 1) - 0.5)
    A = (1.0 / n) * d / (d**2 + (s[:, None] - t[None, :]) ** 2) ** 1.5
    nt, nn = math.floor(n / 3 + 0.5), math.floor(n * 7 / 8 + 0.5)  # MATLAB's round
    k = np.arange(1, n + 1, dtype=float)
    if example == 1:
        x = np.sin(math.pi * t) + 0.5 * np.sin(2 * math.pi * t)
    elif example == 2:
        x = np.where(k <= nt, (2 / nt) * k,
                     np.where(k <= nn, ((2 * nn - nt) - k) / (nn - nt), (n - k) / max(n - nn, 1)))
    else:
        x = np.where(k <= nt, 2.0, 1.0)
    return A, A @ x, x


def _heat(n, kappa=1.0):
    """Inverse heat equation: Volterra kernel k(s-t), k(t) = t^(-3/2)/(2κ√π) exp(-1/(4κ²t))."""
    n = _even(n)
    if not (np.isfinite(kappa) and kappa > 0):
        raise ValueError(f"kappa: got {kappa!r}, expected a number > 0 (1: ill-, 5: well-conditioned)")
    h = 1.0 / n
    t = (np.arange(n) + 0.5) * h
    k = h / (2 * kappa * math.sqrt(math.pi)) * t**-1.5 * np.exp(-1 / (4 * kappa**2) / t)
    A = _toeplitz(k, np.r_[k[0], np.zeros(n - 1)])
    ti = np.arange(1, n // 2 + 1) * 20.0 / n
    half = np.where(ti < 2, 0.75 * ti**2 / 4,
                    np.where(ti < 3, 0.75 + (ti - 2) * (3 - ti), 0.75 * np.exp(-(ti - 3) * 2)))
    x = np.concatenate([half, np.zeros(n // 2)])
    return A, A @ x, x


def _baart(n):
    """Baart: K(s,t) = exp(s cos t), g(s) = 2 sinh(s)/s, s in [0,π/2], t in [0,π], f = sin t."""
    n = _even(n)
    hs, ht = math.pi / (2 * n), math.pi / n
    ihs = np.arange(n + 1) * hs
    co = np.cos(np.arange(2 * n + 1) * ht / 2)  # t at box edges (even k) and midpoints (odd k)
    co[n] = 1.0  # placeholder: cos(π/2) is exactly 0 there, handled below
    F = (np.exp(np.outer(ihs[1:], co)) - np.exp(np.outer(ihs[:-1], co))) / co  # ∫ exp(s co) ds
    F[:, n] = hs  # the co -> 0 limit
    A = (F[:, 0:-1:2] + 4 * F[:, 1::2] + F[:, 2::2]) / (3 * math.sqrt(2))
    si = np.arange(1, 2 * n + 1) * hs / 2
    si = np.sinh(si) / si
    b = np.empty(n)
    b[0] = 1 + 4 * si[0] + si[1]
    b[1:] = si[1:2 * n - 2:2] + 4 * si[2:2 * n - 1:2] + si[3::2]
    b *= math.sqrt(hs) / 3
    x = -np.diff(np.cos(np.arange(n + 1) * ht)) / math.sqrt(ht)
    return A, b, x


def _foxgood(n):
    """Fox & Goodwin: K(s,t) = sqrt(s² + t²) on [0,1]², f = t; midpoint rule."""
    n = check_positive_int("n", n)
    h = 1.0 / n
    t = h * (np.arange(1, n + 1) - 0.5)
    A = h * np.sqrt(t[:, None] ** 2 + t[None, :] ** 2)
    return A, ((1 + t**2) ** 1.5 - t**3) / 3, t.copy()


def _wing(n, t1=1 / 3, t2=2 / 3):
    """Wing: K(s,t) = t exp(-s t²) on [0,1]², f = 1 on (t1, t2); Galerkin, midpoint rule."""
    n = check_positive_int("n", n)
    if not (0 <= t1 < t2 <= 1):
        raise ValueError(f"t1, t2: got t1={t1!r}, t2={t2!r}, expected 0 <= t1 < t2 <= 1")
    h = 1.0 / n
    st = (np.arange(1, n + 1) - 0.5) * h
    A = h * st[None, :] * np.exp(-np.outer(st, st**2))
    b = math.sqrt(h) * 0.5 * (np.exp(-st * t1**2) - np.exp(-st * t2**2)) / st
    x = np.where((t1 < st) & (st < t2), math.sqrt(h), 0.0)
    return A, b, x


def laguerre_nodes(n):
    """Gauss-Laguerre nodes ``t`` (ascending) and the logarithms of the weights.

    The nodes are the eigenvalues of Hansen's tridiagonal Jacobi matrix. The weights are
    ``w_j = t_j / ((n+1)² L_{n+1}(t_j)²)`` with ``L_{n+1}`` from its three-term recurrence,
    rescaled as it goes: the squared first eigenvector components that Hansen uses are the same
    numbers, but an eigensolver returns the tiny ones only to absolute precision (~1e-17), which
    would blow up ``exp((1 - s) t_j) w_j`` for the large nodes. (Hansen notes that his ``A`` has
    zero columns for n > 195 from the same loss of precision; here the weights stay accurate, so
    those columns hold their small true values.)
    """
    k = np.arange(1, n)
    T = np.diag(2.0 * np.arange(1, n + 1) - 1) - np.diag(k, 1) - np.diag(k, -1)
    t = np.linalg.eigvalsh(T)
    p0, p1, logscale = np.ones(n), 1 - t, np.zeros(n)
    for j in range(1, n + 1):  # p1 <- L_{j+1}(t), p0 <- L_j(t), both times exp(-logscale)
        p0, p1 = p1, ((2 * j + 1 - t) * p1 - j * p0) / (j + 1)
        big = np.maximum(np.abs(p0), np.abs(p1))
        big = np.where(big > 1e100, big, 1.0)
        p0, p1, logscale = p0 / big, p1 / big, logscale + np.log(big)
    logw = np.log(t) - 2 * math.log(n + 1) - 2 * (np.log(np.abs(p1)) + logscale)
    return t, logw


def _i_laplace(n, example=1):
    """Inverse Laplace transform: K(s,t) = exp(-st) on [0,∞)²; Gauss-Laguerre, s = 10k/n."""
    n = check_positive_int("n", n)
    example = _example(example, (1, 2, 3, 4))
    s = (10.0 / n) * np.arange(1, n + 1)
    t, logw = laguerre_nodes(n)
    A = np.exp(np.outer(1 - s, t) + logw[None, :])
    if example == 1:
        b, x = 1 / (s + 0.5), np.exp(-t / 2)
    elif example == 2:
        b, x = 1 / s - 1 / (s + 0.5), 1 - np.exp(-t / 2)
    elif example == 3:
        b, x = 2 / (s + 0.5) ** 3, t**2 * np.exp(-t / 2)
    else:
        b, x = np.exp(-2 * s) / s, np.where(t <= 2, 0.0, 1.0)
    return A, b, x


_GENERATORS = {"deriv2": _deriv2, "shaw": _shaw, "phillips": _phillips, "gravity": _gravity,
               "heat": _heat, "baart": _baart, "foxgood": _foxgood, "wing": _wing,
               "i_laplace": _i_laplace}


def hansen(name: str, n: int, **params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A, b, x)`` of a Regularization Tools problem, as its MATLAB function returns them.

    Example: ``A, b, x = hansen("deriv2", 32, example=2)``.
    """
    if name not in _GENERATORS:
        raise KeyError(f"name: got {name!r}, expected one of {', '.join(_GENERATORS)}")
    return _GENERATORS[name](n, **params)


# -- the benchmarks -------------------------------------------------------------------------


def linear_benchmark(name, A, b, x, *, noise, seed, batch, rhs, prior, options) -> Benchmark:
    """A `Benchmark` for ``y = A θ + e`` from a dense ``A`` and Hansen's ``(b, x)``."""
    check_choice("rhs", rhs, ("published", "exact"))
    Ax = A @ x
    return gaussian_benchmark(name, jnp.asarray(A), x, Ax, noise=noise, seed=seed, batch=batch,
                              prior=prior, options={**options, "rhs": rhs},
                              info={"A": jnp.asarray(A), "b": jnp.asarray(b)},
                              data=b if rhs == "published" else Ax)


def _bench(name, n, noise, seed, batch, rhs, prior, **params):
    A, b, x = hansen(name, n, **params)
    return linear_benchmark(name, A, b, x, noise=noise, seed=seed, batch=batch, rhs=rhs,
                            prior=prior, options={"n": n, **params})


_DOC = ("Options: n, noise (relative level: std = noise·||A x||/sqrt(n)), seed, batch (B noise "
        "draws of the same x), rhs ('published' Hansen b or 'exact' A x), prior (default "
        "N(0, rms(x)² I)). See the module docstring.")


@register("deriv2", "Hansen deriv2: second derivative, Green's function kernel (mildly ill-posed)",
          _FAMILY)
def deriv2(*, n=64, example=1, noise=0.01, seed=0, batch=None, rhs="published", prior=None):
    """Regularization Tools ``deriv2(n, example)``: f(t) = t (1), exp(t) (2), a tent (3)."""
    return _bench("deriv2", n, noise, seed, batch, rhs, prior, example=example)


@register("shaw", "Hansen shaw: 1-D image restoration (severely ill-posed)", _FAMILY)
def shaw(*, n=64, noise=0.01, seed=0, batch=None, rhs="published", prior=None):
    """Regularization Tools ``shaw(n)`` (n even); ``b = A x``."""
    return _bench("shaw", n, noise, seed, batch, rhs, prior)


@register("phillips", "Hansen phillips: Phillips' famous problem (mildly ill-posed)", _FAMILY)
def phillips(*, n=64, noise=0.01, seed=0, batch=None, rhs="published", prior=None):
    """Regularization Tools ``phillips(n)`` (n a multiple of 4)."""
    return _bench("phillips", n, noise, seed, batch, rhs, prior)


@register("gravity", "Hansen gravity: 1-D gravity surveying, mass at depth d", _FAMILY)
def gravity(*, n=64, example=1, a=0.0, b=1.0, d=0.25, noise=0.01, seed=0, batch=None,
            rhs="published", prior=None):
    """Regularization Tools ``gravity(n, example, a, b, d)``; ``b = A x``."""
    return _bench("gravity", n, noise, seed, batch, rhs, prior, example=example, a=a, b=b, d=d)


@register("heat", "Hansen heat: inverse heat equation, Volterra kernel (kappa=1 ill-, 5 well-posed)",
          _FAMILY)
def heat(*, n=64, kappa=1.0, noise=0.01, seed=0, batch=None, rhs="published", prior=None):
    """Regularization Tools ``heat(n, kappa)`` (n even); ``b = A x``."""
    return _bench("heat", n, noise, seed, batch, rhs, prior, kappa=kappa)


@register("baart", "Hansen baart: Fredholm first kind, exp(s cos t) kernel (severely ill-posed)",
          _FAMILY)
def baart(*, n=64, noise=0.01, seed=0, batch=None, rhs="published", prior=None):
    """Regularization Tools ``baart(n)`` (n even)."""
    return _bench("baart", n, noise, seed, batch, rhs, prior)


@register("foxgood", "Hansen foxgood: Fox-Goodwin, violates the discrete Picard condition",
          _FAMILY)
def foxgood(*, n=64, noise=0.01, seed=0, batch=None, rhs="published", prior=None):
    """Regularization Tools ``foxgood(n)``."""
    return _bench("foxgood", n, noise, seed, batch, rhs, prior)


@register("wing", "Hansen wing: discontinuous (box) solution, t exp(-s t^2) kernel", _FAMILY)
def wing(*, n=64, t1=1 / 3, t2=2 / 3, noise=0.01, seed=0, batch=None, rhs="published",
         prior=None):
    """Regularization Tools ``wing(n, t1, t2)``."""
    return _bench("wing", n, noise, seed, batch, rhs, prior, t1=t1, t2=t2)


@register("i_laplace", "Hansen i_laplace: inverse Laplace transform, Gauss-Laguerre", _FAMILY)
def i_laplace(*, n=64, example=1, noise=0.01, seed=0, batch=None, rhs="published", prior=None):
    """Regularization Tools ``i_laplace(n, example)``, examples 1-4."""
    return _bench("i_laplace", n, noise, seed, batch, rhs, prior, example=example)


for _f in (deriv2, shaw, phillips, gravity, heat, baart, foxgood, wing, i_laplace):
    _f.__doc__ += "\n\n" + _DOC
