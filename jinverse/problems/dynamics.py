"""Dynamics benchmarks: strong-constraint 4D-Var on Lorenz-96 and Lorenz-63, and cycled DA.

θ is the initial state of an assimilation window; the forward model integrates the system with
classical RK4 and returns the observed components at the observation times; the prior is the
background ``N(x_b, σ_b² I)``. Minimising the negative log-posterior is exactly strong-constraint
4D-Var with ``B = σ_b² I`` and ``R = σ_o² I``. Metric: ``"rmse"`` (RMS over state components of
the analysis minus the truth).

`cycled_4dvar` runs windows in sequence, each background the forecast of the previous analysis
(through `jinverse.assimilation.cycled_4dvar`), and reports the time-mean analysis RMSE at the
window end, the figure data-assimilation papers compare.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .._checks import check_positive_int
from ..priors import Gaussian as GaussianPrior
from ._noise import apply, check_noise, gaussian_benchmark
from ._registry import Benchmark, register

_FAMILY = "dynamics"


# -- the models -------------------------------------------------------------------------------


def lorenz96_tendency(x: Float[Array, "*b n"], forcing) -> Float[Array, "*b n"]:
    """``dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F`` (cyclic indices)."""
    return (jnp.roll(x, -1, -1) - jnp.roll(x, 2, -1)) * jnp.roll(x, 1, -1) - x + forcing


def lorenz63_tendency(x: Float[Array, "*b 3"], params) -> Float[Array, "*b 3"]:
    """``(σ(y - x), x(ρ - z) - y, xy - βz)`` with ``params = (σ, ρ, β)``."""
    sigma, rho, beta = params[0], params[1], params[2]
    a, b, c = x[..., 0], x[..., 1], x[..., 2]
    return jnp.stack([sigma * (b - a), a * (rho - c) - b, a * b - beta * c], axis=-1)


_TENDENCY = {"lorenz96": lorenz96_tendency, "lorenz63": lorenz63_tendency}


def rk4_step(f, x, dt):
    """One classical fourth-order Runge-Kutta step of ``dx/dt = f(x)``."""
    k1 = f(x)
    k2 = f(x + 0.5 * dt * k1)
    k3 = f(x + 0.5 * dt * k2)
    k4 = f(x + dt * k3)
    return x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


class Flow(eqx.Module):
    """``x ↦`` the state after ``steps`` RK4 steps of size ``dt`` (the model propagator)."""

    system: str = eqx.field(static=True)
    params: Float[Array, " p"]
    dt: float = eqx.field(static=True)

    def step(self, x):
        return rk4_step(lambda z: _TENDENCY[self.system](z, self.params), x, self.dt)

    def trajectory(self, x0, steps: int):
        """States after 1, ..., ``steps`` steps, shaped ``(steps, n)``."""
        return jax.lax.scan(lambda x, _: (self.step(x),) * 2, x0, None, length=steps)[1]

    def __call__(self, x0, steps: int):
        return jax.lax.fori_loop(0, steps, lambda _, x: self.step(x), x0)


class WindowObservation(eqx.Module):
    """Strong-constraint 4D-Var forward model: initial state ↦ observed trajectory.

    Observes components ``observed`` at steps ``0, obs_every, 2 obs_every, ..., window``;
    returns ``(n_times, n_observed)``.
    """

    flow: Flow
    observed: Int[Array, " k"]
    window: int = eqx.field(static=True)
    obs_every: int = eqx.field(static=True)

    def __call__(self, x0: Float[Array, " n"]) -> Float[Array, "t k"]:
        def block(x, _):
            x = jax.lax.fori_loop(0, self.obs_every, lambda _, z: self.flow.step(z), x)
            return x, x

        _, states = jax.lax.scan(block, x0, None, length=self.window // self.obs_every)
        states = jnp.concatenate([x0[None], states], axis=0)
        return states[:, self.observed]


def _observed_indices(observed, n):
    if isinstance(observed, str) and observed == "all":
        return np.arange(n)
    if isinstance(observed, (int, np.integer)) and not isinstance(observed, bool):
        stride = check_positive_int("observed", observed)
        return np.arange(0, n, stride)
    idx = np.asarray(observed)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer) \
            or idx.min() < 0 or idx.max() >= n or len(np.unique(idx)) != idx.size:
        raise ValueError(f"observed: got {observed!r}, expected 'all', a stride (int) or distinct "
                         f"component indices in [0, {n})")
    return idx


def _initial_guess(system, params, n, seed):
    """A small seeded perturbation of the rest state, to be spun up onto the attractor."""
    key = jax.random.fold_in(jax.random.key(seed), 2)
    if system == "lorenz96":
        return float(params[0]) + 0.01 * jax.random.normal(key, (n,))
    return jnp.array([1.0, 1.0, 1.0]) + 0.1 * jax.random.normal(key, (3,))


def _truth(flow, x, spinup, window):
    """The state after ``spinup`` steps and the ``window + 1`` states that follow (one compile)."""
    x0 = flow(x, spinup)
    return jnp.concatenate([x0[None], flow.trajectory(x0, window)])


def _window_setup(system, params, n, dt, window, obs_every, observed):
    window = check_positive_int("window", window)
    obs_every = check_positive_int("obs_every", obs_every)
    if window % obs_every:
        raise ValueError(f"obs_every: got {obs_every}, expected a divisor of window={window}")
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt: got {dt!r}, expected a time step > 0")
    idx = _observed_indices(observed, n)
    flow = Flow(system, jnp.asarray(params, dtype=float), float(dt))
    return WindowObservation(flow, jnp.asarray(idx), window, obs_every), idx


def _da_benchmark(name, system, params, n, *, dt, window, obs_every, observed, obs_std, noise,
                  background_std, spinup, seed, batch, options):
    op, idx = _window_setup(system, params, n, dt, window, obs_every, observed)
    background_std = check_noise(background_std, "background_std")
    seed = check_positive_int("seed", seed, minimum=0)
    spinup = check_positive_int("spinup", spinup, minimum=0)
    traj = apply(_truth, op.flow, _initial_guess(system, params, n, seed), spinup, window)
    x_true = traj[0]
    clean = traj[::obs_every][:, idx]  # what `op(x_true)` returns, without another compile
    key_b = jax.random.fold_in(jax.random.key(seed), 1)
    x_b = x_true + background_std * jax.random.normal(key_b, x_true.shape, x_true.dtype)
    if noise is not None and obs_std is not None:
        raise ValueError("noise, obs_std: got both, expected one (a relative level or an absolute std)")
    if noise is None and obs_std is None:
        obs_std = 1.0
    bm = gaussian_benchmark(
        name, op, np.asarray(x_true), clean, noise=noise, seed=seed, batch=batch,
        prior=GaussianPrior(x_b, background_std), metric="rmse", std=obs_std,
        options={**options, "dt": dt, "window": window, "obs_every": obs_every,
                 "observed": observed, "obs_std": obs_std, "background_std": background_std,
                 "spinup": spinup},
        info={"background": x_b, "observed": jnp.asarray(idx), "operator": op,
              "obs_steps": np.arange(0, window + 1, obs_every)},
        reference={"trajectory": traj})
    return bm


@register("lorenz96", "Lorenz-96 strong-constraint 4D-Var: initial state from noisy observations",
          _FAMILY)
def lorenz96(*, n=40, forcing=8.0, dt=0.05, window=10, obs_every=1, observed="all", obs_std=None,
             noise=None, background_std=1.0, spinup=2000, seed=0, batch=None) -> Benchmark:
    """Lorenz-96 4D-Var: θ = the ``n``-dim state at the start of a window of ``window`` RK4 steps.

    Observations: components ``observed`` (``"all"``, a stride ``k`` for every k-th, or a list
    of indices) at steps ``0, obs_every, ..., window`` with ``N(0, obs_std²)`` noise: an absolute
    std, 1.0 by default (the usual DA convention); or pass ``noise`` for a relative level.
    ``y`` is ``(window // obs_every + 1, n_observed)``. The truth is the state after ``spinup``
    steps from a seeded perturbation of ``x = F``; the prior is the background
    ``N(x_b, background_std² I)`` with ``x_b`` the truth plus a seeded background error.
    ``batch=B``: B observation-noise draws for the same truth and background.
    ``reference["trajectory"]``: the true states at steps ``0..window``.
    """
    n = check_positive_int("n", n, minimum=4)
    if not np.isfinite(forcing):
        raise ValueError(f"forcing: got {forcing!r}, expected a finite number")
    return _da_benchmark("lorenz96", "lorenz96", [forcing], n, dt=dt, window=window,
                         obs_every=obs_every, observed=observed, obs_std=obs_std, noise=noise,
                         background_std=background_std, spinup=spinup, seed=seed, batch=batch,
                         options={"n": n, "forcing": forcing})


@register("lorenz63", "Lorenz-63 (sigma=10, rho=28, beta=8/3) 4D-Var: initial state", _FAMILY)
def lorenz63(*, sigma=10.0, rho=28.0, beta=8.0 / 3.0, dt=0.01, window=100, obs_every=10,
             observed="all", obs_std=None, noise=None, background_std=1.0, spinup=2000, seed=0,
             batch=None) -> Benchmark:
    """Lorenz-63 4D-Var over a window of ``window`` RK4 steps of ``dt``; see `lorenz96`."""
    params = [sigma, rho, beta]
    if not np.all(np.isfinite(params)):
        raise ValueError(f"sigma, rho, beta: got {params}, expected finite numbers")
    return _da_benchmark("lorenz63", "lorenz63", params, 3, dt=dt, window=window,
                         obs_every=obs_every, observed=observed, obs_std=obs_std, noise=noise,
                         background_std=background_std, spinup=spinup, seed=seed, batch=batch,
                         options={"sigma": sigma, "rho": rho, "beta": beta})


# -- cycled data assimilation -----------------------------------------------------------------


def cycled_4dvar(system="lorenz96", *, n_cycles: int | None = None, burn_in: int = 20,
                 window: int | None = None, obs_every: int | None = None, observed="all",
                 obs_std=1.0, background_std=None, B=None, obs_operator=None, truth=None,
                 observations=None, background=None, seed: int = 0, max_steps: int = 200,
                 optimizer=None, tol: float | None = None, model_std=None, Q=None, hybrid=None,
                 shift: int | None = None, truth_model_std=None, **model):
    """Cycled 4D-Var (strong or weak constraint, static or hybrid B, sliding windows) on a
    built-in system or the user's own model and data.

    Cycle ``c`` analyses the state at step ``c W`` (W = ``window``) from its background and the
    observations at steps ``c W + obs_every, ..., (c+1) W`` — each observation time belongs to
    one window and is observed once, with one noise draw; the analysis integrated over the
    window is the filtering analysis at the window end and the next background. Runs
    `jinverse.assimilation.cycled_4dvar` (one compiled loop over the cycles).

    Args:
        system: ``"lorenz96"`` or ``"lorenz63"`` (RK4 `Flow`; ``model`` takes the builder's
            options ``n``, ``forcing``, ``dt``, ``sigma``, ...), or the user's model step
            ``x ↦ x'`` (a JAX function or equinox Module).
        n_cycles: windows to run (default 100; with ``observations`` or a ``truth``
            trajectory, as many as they cover).
        truth: the true states at every model step ``(T + 1, n)``, or one true initial state
            ``(n,)`` to integrate. Default for a built-in system: a spun-up seeded state.
        observations: ``(k, m)``, row ``i`` at step ``(i + 1) obs_every``. Default: drawn from
            the truth with ``N(0, obs_std²)`` noise (seeded), one draw per observation time.
        background: the first background (state at step 0). Default: the truth plus a seeded
            ``N(0, background_std²)`` error.
        observed / obs_operator: components observed (``"all"``, a stride or indices), or any
            operator `jinverse.assimilation.observation_operator` takes (indices, a matrix, a
            function); not both.
        obs_std: σ_o, a scalar or one per observed component.
        background_std / B: ``B = background_std² I`` (default 1.0) or a covariance matrix or a
            function ``v ↦ B v``.
        optimizer, max_steps, tol: per-window MAP solver (Gauss-Newton by default, Newton-CG
            for the weak constraint); a `MAPWarning` names the windows that stopped unconverged.
        model_std / Q, hybrid, shift: weak-constraint 4D-Var with model error ``N(0, Q)`` per
            model step, a hybrid ensemble-variational B (`jinverse.assimilation.Hybrid`), and
            sliding windows starting every ``shift`` model steps, as
            `jinverse.assimilation.cycled_4dvar` takes them (``n_cycles`` windows then span
            ``(n_cycles - 1) shift + window`` model steps).
        truth_model_std: a twin experiment of an imperfect model: the default truth of a
            built-in system (or the one integrated from a given initial state) adds seeded
            ``N(0, truth_model_std²)`` model error at every step. Default None: a perfect model.

    Returns a `jinverse.assimilation.CycledResult`: ``mean_rmse`` is the time-mean analysis
    RMSE at the window end (the figure DA papers report for 4D-Var filtering),
    ``mean_rmse_analysis`` the same at the window start.

    Example (Lorenz-96, N = 40, F = 8, every component observed every 0.05 with σ_o = 1, where a
    well-tuned EnKF reaches about 0.20): ``cycled_4dvar("lorenz96", n_cycles=100, burn_in=20,
    window=20, background_std=0.5).mean_rmse``; see benchmarks/RESULTS.md for measured values.
    """
    from .. import assimilation  # the assimilation drivers sit above the problem library

    defaults = {"lorenz96": (10, 1), "lorenz63": (100, 10)}
    if callable(system):
        step = system
        if model:
            raise TypeError(f"{sorted(model)}: model options apply to the built-in systems only, "
                            "not to a user's step function")
    elif system in defaults:
        step = None
    else:
        raise ValueError(f"system: got {system!r}, expected 'lorenz96', 'lorenz63' or a model step function")
    w0, oe0 = defaults[system] if step is None else (None, 1)
    if window is None and w0 is None:
        raise ValueError("window: got None, expected the model steps per window for a user's model")
    window = check_positive_int("window", w0 if window is None else window)
    obs_every = check_positive_int("obs_every", oe0 if obs_every is None else obs_every)
    if window % obs_every:
        raise ValueError(f"obs_every: got {obs_every}, expected a divisor of window={window}")
    seed = check_positive_int("seed", seed, minimum=0)
    if background_std is None and B is None:
        background_std = 1.0
    if observed != "all" and obs_operator is not None:
        raise ValueError("observed, obs_operator: got both, expected one")
    truth = None if truth is None else jnp.asarray(truth, dtype=float)
    shift = window if shift is None else check_positive_int("shift", shift)
    if n_cycles is None:
        if observations is not None:
            n_cycles = max(np.shape(observations)[0] * obs_every - window, 0) // shift + 1
        elif truth is not None and truth.ndim == 2:
            n_cycles = max(truth.shape[0] - 1 - window, 0) // shift + 1
        else:
            n_cycles = 100
    n_cycles = check_positive_int("n_cycles", n_cycles)
    n_steps = (n_cycles - 1) * shift + window
    if step is None:  # a built-in system: its RK4 flow, and a spun-up truth by default
        builder = {"lorenz96": lorenz96, "lorenz63": lorenz63}[system]
        first = builder(window=window, obs_every=obs_every, seed=seed, **model)
        step = first.info["operator"].flow.step
        if truth is None and observations is None:
            truth = first.theta_true
    if truth_model_std is not None and (truth is None or truth.ndim != 1):
        raise ValueError("truth_model_std: expected a truth to integrate (a built-in system's default truth, "
                         "or one initial state), not a given trajectory or observations alone")
    n = (truth.shape[-1] if truth is not None else np.shape(background)[-1] if background is not None
         else None)
    if n is None:
        raise ValueError("truth, background: got neither, expected a truth or a first background")
    if obs_operator is None and not (isinstance(observed, str) and observed == "all"):
        obs_operator = _observed_indices(observed, n)
    if truth is not None and truth.ndim == 1:  # one initial state: integrate the model
        if truth_model_std is None:
            truth = apply(_run, _as_step(step), truth, n_steps)
        else:  # with seeded model error at every step
            from ..assimilation.enkf import checked_model_std

            try:
                q = checked_model_std(truth_model_std, n)
            except ValueError as exc:
                raise ValueError(f"truth_{exc}") from None
            noise = q * jax.random.normal(jax.random.fold_in(jax.random.key(seed), 4), (n_steps, n), truth.dtype)
            truth = apply(_run_noisy, _as_step(step), truth, noise)
    if observations is None:  # one noise draw per observation time, at steps obs_every, ..., T
        if truth is None:
            raise ValueError("observations: got None and no truth to observe, expected either")
        if truth.shape[0] != n_steps + 1:
            raise ValueError(f"truth: got {truth.shape[0]} states, expected {n_steps + 1} (steps 0..{n_steps})")
        H = assimilation.observation_operator(obs_operator, n)
        clean = jax.vmap(H)(truth[obs_every::obs_every])
        key = jax.random.fold_in(jax.random.key(seed), 3)
        observations = clean + jnp.asarray(obs_std, dtype=float) * jax.random.normal(key, clean.shape, clean.dtype)
    if background is None:
        if truth is None:
            raise ValueError("background: got None and no truth, expected the first background")
        key_b = jax.random.fold_in(jax.random.key(seed), 1)
        err = jax.random.normal(key_b, truth[0].shape, truth.dtype)
        if B is not None:
            err = assimilation.background_prior(truth[0], B=B).cov_sqrt(err)  # L err, B = L Lᵀ
        else:
            err = jnp.asarray(background_std, dtype=float) * err
        background = truth[0] + err
    return assimilation.cycled_4dvar(step, background, observations, window=window, obs_every=obs_every,
                                     obs_operator=obs_operator, obs_std=obs_std,
                                     background_std=None if B is not None else background_std, B=B,
                                     truth=truth, burn_in=burn_in, max_steps=max_steps,
                                     optimizer=optimizer, tol=tol, warn=True, model_std=model_std, Q=Q,
                                     hybrid=hybrid, shift=shift)


def _as_step(step):
    return step if isinstance(step, eqx.Module) else jax.tree_util.Partial(step)


@eqx.filter_jit
def _run(step, x0, n_steps: int):
    states = jax.lax.scan(lambda x, _: (step(x),) * 2, x0, None, length=n_steps)[1]
    return jnp.concatenate([x0[None], states])


@eqx.filter_jit
def _run_noisy(step, x0, noise):
    states = jax.lax.scan(lambda x, e: (step(x) + e,) * 2, x0, noise)[1]
    return jnp.concatenate([x0[None], states])
