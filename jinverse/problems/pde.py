"""PDE benchmark: the 1-D heat equation, recovering the initial temperature or the conductivity.

``u_t = (κ(x) u_x)_x`` on ``(0, 1)`` with ``u(0, t) = u(1, t) = 0``, discretised by conservative
second-order finite differences on ``n`` interior nodes ``x_j = (j + 1) h``, ``h = 1/(n + 1)``
(conductivity at the faces ``(j + 1/2) h``), and integrated by explicit Euler, backward Euler
(``"implicit"``) or Crank-Nicolson; the implicit steps solve a tridiagonal system
(`jax.lax.linalg.tridiagonal_solve`, differentiable).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .._checks import check_positive_int
from ..priors import Gaussian as GaussianPrior
from ._noise import apply, check_choice, gaussian_benchmark, jacobian, rms
from ._registry import Benchmark, register

_METHODS = ("explicit", "implicit", "crank_nicolson")


def heat_operator(u: Float[Array, " n"], kappa: Float[Array, " n+1"], h: float) -> Float[Array, " n"]:
    """``(κ u_x)_x`` at the interior nodes, with zero Dirichlet values at both ends."""
    up = jnp.pad(u, 1)
    flux = kappa * jnp.diff(up) / h
    return jnp.diff(flux) / h


def heat_step(u, kappa, h: float, dt: float, method: str):
    """One time step of size ``dt``."""
    if method == "explicit":
        return u + dt * heat_operator(u, kappa, h)
    a = 1.0 if method == "implicit" else 0.5
    c = a * dt / h**2
    dl = jnp.concatenate([jnp.zeros(1, u.dtype), -c * kappa[1:-1]])
    du = jnp.concatenate([-c * kappa[1:-1], jnp.zeros(1, u.dtype)])
    d = 1 + c * (kappa[:-1] + kappa[1:])
    rhs = u if method == "implicit" else u + 0.5 * dt * heat_operator(u, kappa, h)
    return jax.lax.linalg.tridiagonal_solve(dl, d, du, rhs[:, None])[:, 0]


class HeatEquation1D(eqx.Module):
    """Heat-equation forward model: θ ↦ temperatures at the sensors at the recorded steps.

    ``unknown="initial"``: θ is the initial temperature at the ``n`` nodes (a linear problem);
    ``unknown="conductivity"``: θ is ``log κ`` at the ``n + 1`` faces and ``u0`` is fixed.
    Returns ``(len(record), len(sensors))``.
    """

    kappa: Float[Array, " n+1"]
    u0: Float[Array, " n"]
    sensors: Int[Array, " s"]
    record: tuple[int, ...] = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    method: str = eqx.field(static=True)
    unknown: str = eqx.field(static=True)

    @property
    def h(self) -> float:
        return 1.0 / (self.u0.shape[0] + 1)

    def solve(self, u0, kappa):
        """States after steps ``1..max(record)``, shaped ``(max(record), n)``."""
        def step(u, _):
            u = heat_step(u, kappa, self.h, self.dt, self.method)
            return u, u

        return jax.lax.scan(step, u0, None, length=max(self.record))[1]

    def __call__(self, theta: Float[Array, " p"]) -> Float[Array, "t s"]:
        if self.unknown == "initial":
            states = self.solve(theta, self.kappa)
        else:
            states = self.solve(self.u0, jnp.exp(theta))
        return states[jnp.asarray(self.record) - 1][:, self.sensors]


def _initial_profile(x):
    """A bump and a box: smooth and discontinuous features."""
    return 0.8 * np.exp(-(((x - 0.3) / 0.07) ** 2)) + 0.6 * ((x > 0.55) & (x < 0.75))


def _log_conductivity(x):
    return 0.5 * np.sin(2 * np.pi * x)


@register("heat1d", "1-D heat equation: initial temperature (or log-conductivity) from later noisy "
          "temperatures", "dynamics")
def heat1d(*, n=63, t_final=0.01, steps=None, method="implicit", obs_times=None, sensors="all",
           unknown="initial", conductivity=None, noise=0.01, seed=0, batch=None,
           prior=None) -> Benchmark:
    """Heat-equation inversion with a finite-difference solver (see the module docstring).

    Args:
        n: interior nodes (``h = 1/(n + 1)``).
        t_final, steps: the solver runs ``steps`` steps of ``dt = t_final / steps`` (default:
            100 for the implicit methods; for ``"explicit"`` the fewest steps with
            ``dt <= 0.4 h² / max κ``, and an explicit ``steps`` that breaks ``dt <= h²/(2 max κ)``
            is refused).
        method: ``"explicit"``, ``"implicit"`` (backward Euler) or ``"crank_nicolson"``. With
            ``unknown="conductivity"`` the explicit step size is set from the true κ, so a θ
            with a much larger κ can make the explicit solver unstable: prefer the implicit ones.
        obs_times: measurement times (multiples of ``dt``); default ``(t_final,)`` for
            ``unknown="initial"``, ``(t_final/5, t_final/2, t_final)`` for the conductivity.
        sensors: ``"all"`` nodes, a stride ``k`` (every k-th node) or node indices.
        unknown: ``"initial"`` (θ = u(x, 0) at the nodes; linear, ``info["A"]`` holds its
            matrix) or ``"conductivity"`` (θ = log κ at the faces; ``u0`` is known,
            ``sin(πx) + sin(3πx)/2 + sin(6πx)/4``).
        conductivity: for ``unknown="initial"``, κ at the ``n + 1`` faces (array) or a function
            of ``x``; default 1.
        noise: relative level, ``std = noise * ||f(θ)|| / sqrt(m)``; ``batch``: B noise draws.
        prior: default ``N(0, rms(u0_true)² I)`` (initial) or ``N(0, 0.5² I)`` on log κ.

    ``theta_true``: the bump-and-box initial temperature, or ``log κ = 0.5 sin(2πx)``. Metric
    ``"rmse"``; ``info`` holds ``x`` (nodes), ``faces``, ``dt``, ``obs_steps``, ``operator``.
    """
    n = check_positive_int("n", n, minimum=3)
    check_choice("method", method, _METHODS)
    check_choice("unknown", unknown, ("initial", "conductivity"))
    if not (np.isfinite(t_final) and t_final > 0):
        raise ValueError(f"t_final: got {t_final!r}, expected a time > 0")
    h = 1.0 / (n + 1)
    x = h * np.arange(1, n + 1)
    faces = h * (np.arange(n + 1) + 0.5)
    if unknown == "conductivity":
        if conductivity is not None:
            raise ValueError("conductivity: got a field, but unknown='conductivity' estimates it")
        kappa = np.exp(_log_conductivity(faces))
    elif conductivity is None:
        kappa = np.ones(n + 1)
    else:
        kappa = np.asarray(conductivity(faces) if callable(conductivity) else conductivity, float)
        if kappa.shape != (n + 1,) or not np.all(np.isfinite(kappa)) or np.any(kappa <= 0):
            raise ValueError(f"conductivity: got shape {kappa.shape}, expected {n + 1} positive "
                             "values at the cell faces (or a function of x)")
    kmax, limit = float(kappa.max()), h**2 / (2 * float(kappa.max()))
    if steps is None:
        steps = math.ceil(t_final / (0.4 * h**2 / kmax)) if method == "explicit" else 100
    steps = check_positive_int("steps", steps)
    dt = t_final / steps
    if method == "explicit" and dt > limit * (1 + 1e-12):
        raise ValueError(f"steps: got {steps} (dt = {dt:.3g}), but explicit Euler needs "
                         f"dt <= h²/(2 max κ) = {limit:.3g}; use more steps or method='implicit'")
    if obs_times is None:
        obs_times = (t_final,) if unknown == "initial" else (t_final / 5, t_final / 2, t_final)
    obs_steps = np.rint(np.asarray(obs_times, float) / dt).astype(int)
    if (obs_steps.ndim != 1 or np.any(obs_steps < 1) or np.any(obs_steps > steps)
            or not np.allclose(obs_steps * dt, obs_times, rtol=1e-9, atol=1e-12 * t_final)):
        raise ValueError(f"obs_times: got {obs_times!r}, expected times in (0, t_final] that are "
                         f"multiples of dt = {dt:.6g}")
    if isinstance(sensors, str) and sensors == "all":
        idx = np.arange(n)
    elif isinstance(sensors, (int, np.integer)) and not isinstance(sensors, bool):
        idx = np.arange(0, n, check_positive_int("sensors", sensors))
    else:
        idx = np.asarray(sensors)
        if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= n:
            raise ValueError(f"sensors: got {sensors!r}, expected 'all', a stride or node indices "
                             f"in [0, {n})")
    u0 = np.sin(np.pi * x) + 0.5 * np.sin(3 * np.pi * x) + 0.25 * np.sin(6 * np.pi * x)
    op = HeatEquation1D(jnp.asarray(kappa), jnp.asarray(u0), jnp.asarray(idx),
                        tuple(int(s) for s in obs_steps), dt, method, unknown)
    truth = _initial_profile(x) if unknown == "initial" else _log_conductivity(faces)
    info = {"x": jnp.asarray(x), "faces": jnp.asarray(faces), "dt": dt, "operator": op,
            "obs_steps": obs_steps, "sensors": jnp.asarray(idx)}
    if unknown == "initial":  # linear: its matrix, and the clean data from it (one compile)
        A = jacobian(op, jnp.asarray(truth))
        clean = (A @ truth).reshape(len(obs_steps), len(idx))
        info.update(A=A, kappa=jnp.asarray(kappa))
    else:
        clean = apply(op, jnp.asarray(truth))
    if prior is None:
        scale = rms(truth) if unknown == "initial" else 0.5
        prior = GaussianPrior(jnp.zeros(truth.shape), scale)
    return gaussian_benchmark(
        "heat1d", op, truth, clean, noise=noise, seed=seed, batch=batch, prior=prior,
        metric="rmse", info=info,
        options={"n": n, "t_final": t_final, "steps": steps, "method": method,
                 "obs_times": tuple(float(t) for t in obs_times), "sensors": sensors,
                 "unknown": unknown})
