"""Cycled strong-constraint 4D-Var on any JAX model step, with the user's own data.

Time runs in model steps ``t = 0, 1, ..., T`` with ``T = n_cycles * window``. Observations are
taken every ``obs_every`` steps at ``t = obs_every, 2 obs_every, ..., T`` (``t = 0``, the first
background's time, is not observed). Cycle ``c`` analyses the state at its window start
``t = c W`` from the background there and the observations in ``(c W, (c+1) W]``, so each
observation time belongs to exactly one window and is assimilated once. The analysis integrated
over the window is the filtering analysis at the window end ``t = (c+1) W`` — it has used every
observation up to and including that time, the analysis data-assimilation papers report — and
the next cycle's background.

The whole cycle loop is one compiled ``lax.scan``: the inputs are validated once on the host,
then each cycle calls `jinverse.solve_map` under the trace (shape checks only, no host work).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .._checks import check_positive_int
from ..likelihoods import Gaussian as GaussianLikelihood
from ..map import MAPWarning, Status, solve_map, status_report
from ..priors import Gaussian as GaussianPrior
from ..problem import InverseProblem
from .enkf import NoisyStep, checked_model_std
from .variational import ControlWindow, Hybrid, checked_psd, control_cycles, ensemble_setup, sqrt_psd


class CycledResult(NamedTuple):
    """Per-cycle output of `cycled_4dvar` (cycle axis first).

    ``analysis``: the 4D-Var analysis at each window start; ``forecast``: it integrated to the
    window end — the filtering analysis there, and the next background; ``truth``: the true
    states at the window starts (NaN where no truth was given); ``rmse_analysis`` /
    ``rmse_background``: RMSE at the window start; ``rmse_filter``: RMSE of ``forecast`` against
    the truth at the window end; ``converged`` / ``status`` / ``num_steps``: the MAP solver's
    flag, `jinverse.map.Status` code and steps per window; ``mean_rmse``: the time mean of
    ``rmse_filter`` after ``burn_in`` cycles (analysis RMSE at the window end, the figure DA
    papers report for 4D-Var filtering); ``mean_rmse_analysis``: the same at the window start
    (a smoother's figure); ``obs_steps``: ``(n_cycles, window // obs_every)``, the model steps
    whose observations each window assimilated (each once; -1 for a sliding window's
    observations an earlier window assimilated); ``observations``: those observations, one row
    per observation time. With ``model_std``/``Q``, ``hybrid`` or ``shift`` (the
    control-variable engine, `jinverse.assimilation.variational`): ``trajectory`` ``(n_cycles,
    window, n)``, the analysed states at each window's steps ``1..W`` (with model error, the
    weak-constraint smoother's states; ``forecast`` is its last); ``spread``: the hybrid
    ensemble's spread at the next window start (NaN without one); both None otherwise. With
    ``shift`` the window starts are ``c shift`` and the ends ``c shift + window``.
    """

    analysis: Array
    forecast: Array
    truth: Array
    rmse_analysis: Array
    rmse_background: Array
    rmse_filter: Array
    converged: Array
    mean_rmse: float
    mean_rmse_analysis: float
    status: Array
    num_steps: Array
    obs_steps: np.ndarray
    observations: Array
    trajectory: Array | None = None
    spread: Array | None = None

    @property
    def ok(self) -> Array:
        """``converged`` under the name every result uses (``status == OK``)."""
        return self.converged

    def status_counts(self) -> dict[str, int]:
        """Windows per MAP status, e.g. ``{"CONVERGED": 98, "MAX_STEPS": 2}``."""
        codes, counts = np.unique(np.asarray(self.status), return_counts=True)
        return {Status(int(c)).name: int(k) for c, k in zip(codes, counts)}


class WindowForward(eqx.Module):
    """Strong-constraint 4D-Var forward model: window-start state ↦ the observations of the
    states after ``obs_every``, ``2 obs_every``, ..., ``window`` model steps, ``(t, m)``."""

    step: Callable  # one model step x -> x (a function or an equinox Module)
    observe: Callable  # x -> the observed quantities (m,)
    window: int = eqx.field(static=True)
    obs_every: int = eqx.field(static=True)

    def propagate(self, x, steps: int):
        return jax.lax.fori_loop(0, steps, lambda _, z: self.step(z), x)

    def __call__(self, x0: Float[Array, " n"]) -> Float[Array, "t m"]:
        def block(x, _):
            x = self.propagate(x, self.obs_every)
            return x, self.observe(x)

        return jax.lax.scan(block, x0, None, length=self.window // self.obs_every)[1]


class _Matrix(eqx.Module):
    H: Float[Array, "m n"]

    def __call__(self, x):
        return self.H @ x


class _Select(eqx.Module):
    idx: Int[Array, " m"]

    def __call__(self, x):
        return x[self.idx]


def _as_module(fn):
    """A function as a pytree without leaves (so it passes through jit), a Module as it is."""
    return fn if isinstance(fn, eqx.Module) else jax.tree_util.Partial(fn)


def observation_operator(obs_operator, n: int) -> Callable:
    """``x ↦ H(x)`` from ``None`` (every component), component indices (1-D integers), a
    matrix ``(m, n)`` or any function of the state."""
    if obs_operator is None:
        return _Select(jnp.arange(n))
    if callable(obs_operator):
        return _as_module(obs_operator)
    a = np.asarray(obs_operator)
    if a.ndim == 1 and np.issubdtype(a.dtype, np.integer) and a.size:
        if a.min() < 0 or a.max() >= n or len(np.unique(a)) != a.size:
            raise ValueError(f"obs_operator: got indices {a.tolist()}, expected distinct indices in [0, {n})")
        return _Select(jnp.asarray(a))
    if a.ndim == 2 and a.shape[1] == n and np.issubdtype(a.dtype, np.number):
        return _Matrix(jnp.asarray(a, dtype=float))
    raise ValueError(f"obs_operator: got {type(obs_operator).__name__} of shape {a.shape}, expected None, "
                     f"component indices, a matrix (m, {n}) or a function of the state")


def background_prior(background, background_std=None, B=None) -> GaussianPrior:
    """``N(background, B)`` with ``B = background_std² I`` (a scalar or per-component std),
    a covariance matrix ``(n, n)``, or a function ``v ↦ B v`` (materialised once)."""
    if (background_std is None) == (B is None):
        raise ValueError("background_std, B: expected exactly one (a std, or a covariance matrix or function)")
    if B is None:
        return GaussianPrior(background, background_std)
    n = np.shape(background)[-1]
    if callable(B):
        B = jax.vmap(B, out_axes=1)(jnp.eye(n))  # column j = B e_j
    B = np.asarray(B, dtype=float)
    if B.shape != (n, n):
        raise ValueError(f"B: got shape {B.shape}, expected ({n}, {n}) for a state of size {n}")
    return GaussianPrior(background, cov=B)


@eqx.filter_jit
def _cycles(forward, prior0, lik, ys, xb0, settings):
    """The cycle loop: per window, 4D-Var by `solve_map` from the background, then the
    forecast over the window (the filtering analysis at its end, the next background)."""
    optimizer, max_steps, tol = settings

    def cycle(xb, y):
        problem = InverseProblem(forward, eqx.tree_at(lambda p: p.mean, prior0, xb), lik)
        res = solve_map(problem, y, optimizer=optimizer, max_steps=max_steps, tol=tol, warn=False)
        xf = forward.propagate(res.theta, forward.window)
        return xf, (res.theta, xf, xb, res.status, res.num_steps)

    return jax.lax.scan(cycle, xb0, ys)[1]


def cycled_4dvar(step: Callable, background: Float[Array, " n"], observations: Float[Array, "k m"], *,
                 window: int, obs_every: int = 1, obs_operator=None, obs_std=1.0,
                 background_std=None, B=None, truth: Float[Array, "T n"] | None = None,
                 burn_in: int = 0, max_steps: int = 200, optimizer=None,
                 tol: float | None = None, warn: bool = True, model_std=None, Q=None,
                 hybrid: Hybrid | None = None, shift: int | None = None) -> CycledResult:
    """Cycled strong-constraint 4D-Var of ``observations`` with the model ``step``.

    Args:
        step: one model time step ``x ↦ x'`` on a state ``(n,)`` (a JAX function or an equinox
            Module).
        background: the first background, the state at model step 0.
        observations: ``(k, m)``: row ``i`` observes the state at model step
            ``(i + 1) obs_every``; ``k`` must be a multiple of ``window // obs_every`` (the
            number of cycles is ``k // (window // obs_every)``).
        window: model steps per assimilation window (a multiple of ``obs_every``).
        obs_operator: ``None`` (every component), component indices, a matrix ``(m, n)`` or a
            function of the state.
        obs_std: observation-error std ``σ_o`` (R = diag(σ_o²)): a scalar or one per component.
        background_std, B: the background-error covariance: ``background_std² I`` (default 1.0)
            or ``B`` a covariance matrix ``(n, n)`` or a function ``v ↦ B v``. Static: the same B
            every cycle.
        truth: optionally the true states at every model step ``0..T``, ``(T + 1, n)``; the RMSE
            fields are NaN without it.
        burn_in: cycles left out of the time means.
        optimizer, max_steps, tol: passed to `jinverse.solve_map` for each window;
            Gauss-Newton by default (on 20-step Lorenz-96 windows it converged in every window
            where L-BFGS stopped at 200 steps in 40% of them: benchmarks/RESULTS.md), and
            ``"newton-cg"`` by default for the weak constraint (``model_std``/``Q``).
        warn: a `MAPWarning` naming the windows whose MAP did not converge.
        model_std, Q: weak-constraint 4D-Var with the model error ``x_t = M(x_{t-1}) + η_t``,
            ``η_t ~ N(0, Q)`` per model step: ``Q = diag(model_std²)`` (a scalar or one per
            component, as `cycled_filter` takes it) or ``Q`` a covariance matrix ``(n, n)`` or a
            function ``v ↦ Q v``. The controls are the window-start state and the model error of
            every step (the forcing formulation); ``Q = 0`` is the strong constraint. That is
            ``n (window + 1)`` unknowns, so the default optimizer is then ``"newton-cg"``
            (Gauss-Newton with CG inner loops, incremental 4D-Var), which avoids the dense solve
            (4x faster than dense Gauss-Newton on 5-step Lorenz-96 windows, 240 controls, on a
            2-core CPU; ``optimizer="gauss-newton"`` for the dense one).
        hybrid: a `Hybrid`: the background covariance ``(1 - β) B + β ρ ∘ P_e`` with ``P_e`` the
            sample covariance of an ensemble cycled alongside (ETKF/EnKF/LETKF), recentred on
            each analysis.
        shift: sliding windows: model steps between window starts (a multiple of ``obs_every``,
            at most ``window``; default ``window``, no overlap). Each window covers ``(c shift,
            c shift + window]`` and assimilates the observations that no earlier window has
            (each once); ``observations`` then needs ``k obs_every - window`` a multiple of
            ``shift``.

    Returns:
        A `CycledResult`.
    """
    background = jnp.asarray(background, dtype=float)
    if background.ndim != 1:
        raise ValueError(f"background: got shape {background.shape}, expected a state (n,)")
    n = background.shape[0]
    window = check_positive_int("window", window)
    obs_every = check_positive_int("obs_every", obs_every)
    if window % obs_every:
        raise ValueError(f"obs_every: got {obs_every}, expected a divisor of window={window}")
    per = window // obs_every
    shift = window if shift is None else check_positive_int("shift", shift)
    if shift % obs_every or shift > window:
        raise ValueError(f"shift: got {shift}, expected a multiple of obs_every={obs_every} no larger than "
                         f"window={window}")
    ys = jnp.asarray(observations, dtype=float)
    if ys.ndim == 1:
        ys = ys[:, None]
    T = ys.shape[0] * obs_every
    if ys.ndim != 2 or T < window or (T - window) % shift:
        raise ValueError(f"observations: got shape {tuple(ys.shape)}, expected (k, m) with k obs_every - window "
                         f"a multiple of shift={shift}, k >= {per} (one row per observation time)")
    n_cycles = (T - window) // shift + 1
    burn_in = check_positive_int("burn_in", burn_in, minimum=0)
    if burn_in >= n_cycles:
        raise ValueError(f"burn_in: got {burn_in}, expected fewer than the {n_cycles} cycles")
    if background_std is None and B is None:
        background_std = 1.0
    if optimizer is None:  # the weak constraint has n (window + 1) controls: no dense solve
        optimizer = "gauss-newton" if model_std is None and Q is None else "newton-cg"
    prior0 = background_prior(background, background_std, B)
    H = observation_operator(obs_operator, n)
    forward = WindowForward(_as_module(step), H, window, obs_every)
    m_shape = jax.eval_shape(H, background).shape  # not the model: a new call traces nothing
    if m_shape != ys.shape[1:]:
        raise ValueError(f"observations: got {ys.shape[1]} per time, expected {m_shape} "
                         "(what obs_operator returns for one state)")
    lik = GaussianLikelihood(obs_std)
    if tol is None:
        tol = 1e-9 if background.dtype == jnp.float64 else 1e-4
    settings = (optimizer, check_positive_int("max_steps", max_steps), float(tol))

    traj = spread = None
    if model_std is None and Q is None and hybrid is None and shift == window:
        xa, xf, xb, status, steps = _cycles(forward, prior0, lik, ys.reshape(n_cycles, per, -1),
                                            background, settings)
    else:
        xa, traj, xb, status, steps, spread = _control_cycles(
            prior0, H, forward.step, ys, lik, (*settings, window, obs_every, shift), obs_operator, obs_std, model_std, Q, hybrid)
        xf = traj[:, -1]
    obs_steps = np.arange(n_cycles)[:, None] * shift + obs_every * np.arange(1, per + 1)[None]
    obs_steps[1:, :per - shift // obs_every] = -1  # a sliding window's older observations: assimilated before
    message = status_report(status, noun="window")
    if warn and message:
        warnings.warn(f"cycled_4dvar: {message}", MAPWarning, stacklevel=2)

    if truth is None:
        starts = jnp.full((n_cycles + 1, n), jnp.nan)
    else:
        truth = jnp.asarray(truth, dtype=float)
        if truth.shape != (T + 1, n):
            raise ValueError(f"truth: got shape {tuple(truth.shape)}, expected the states at every model step, "
                             f"({T + 1}, {n})")
        starts = truth[np.arange(n_cycles + 1) * shift]
    ends = starts[1:] if truth is None else truth[np.arange(n_cycles) * shift + window]

    def rmse(a, b):
        return jnp.sqrt(jnp.mean((a - b) ** 2, axis=-1))

    r_a, r_f = rmse(xa, starts[:-1]), rmse(xf, ends)
    return CycledResult(xa, xf, starts[:-1], r_a, rmse(xb, starts[:-1]), r_f, status == Status.CONVERGED,
                        float(jnp.mean(r_f[burn_in:])), float(jnp.mean(r_a[burn_in:])), status, steps,
                        obs_steps, ys, traj, spread)


def _control_cycles(prior0, H, step, ys, lik, settings, obs_operator, obs_std, model_std, Q, hybrid):
    """`cycled_4dvar` by the control-variable engine (`variational`): weak constraint, hybrid B,
    sliding windows. Returns ``(x₀, trajectories, backgrounds, status, steps, spread)``."""
    optimizer, max_steps, tol, window, obs_every, shift = settings
    n, per = prior0.mean.shape[0], window // obs_every
    b_clim = jnp.diag(prior0.std**2) if prior0.std is not None else prior0.chol @ prior0.chol.T
    if model_std is not None and Q is not None:
        raise ValueError("model_std, Q: expected at most one (a std per component, or a covariance matrix)")
    q_sqrt = None
    if model_std is not None:
        q_sqrt = jnp.diag(checked_model_std(model_std, n))
    elif Q is not None:
        q_sqrt = sqrt_psd(jnp.asarray(checked_psd("Q", Q, n)))
    n_cycles = (ys.shape[0] * obs_every - window) // shift + 1
    rows = np.arange(n_cycles)[:, None] * (shift // obs_every) + np.arange(per)[None]
    masks = None
    if shift < window:
        masks = np.ones((n_cycles, per, 1))
        masks[1:, :per - shift // obs_every] = 0.0
        masks = jnp.asarray(masks)
    ens = None
    if hybrid is not None:
        if shift != window:
            raise ValueError(f"shift: got {shift} with hybrid, expected the window ({window}): with overlapping "
                             "windows the hybrid's ensemble filter would lag behind the 4D-Var background")
        if Q is not None:
            raise ValueError("Q: got a matrix with hybrid, expected model_std (the ensemble draws diagonal "
                             "model error)")
        ens = ensemble_setup(hybrid, step, H, obs_std, obs_operator, model_std, b_clim, n, ys.shape[1])
    win = ControlWindow(step, H, prior0.mean, sqrt_psd(b_clim), q_sqrt,
                        None if masks is None else masks[0], window, obs_every)
    recenter = hybrid.recenter if hybrid is not None else True
    return control_cycles(win, lik, ys[rows], masks, (optimizer, max_steps, tol, shift, recenter), ens)


def twin_experiment(step: Callable, x0: Float[Array, " n"], *, n_steps: int, obs_every: int = 1,
                    obs_operator=None, obs_std=1.0, key: jax.Array, model_std=None) -> tuple[Array, Array]:
    """A truth run of ``step`` from ``x0`` and its noisy observations, for `cycled_4dvar` and
    `cycled_filter`.

    Returns ``(truth, observations)``: the states at model steps ``0..n_steps``, ``(n_steps + 1,
    n)``, and ``H(x_t) + σ_o ε`` at ``t = obs_every, 2 obs_every, ..., n_steps`` (one noise draw
    per observation time), ``(n_steps // obs_every, m)``. With ``model_std`` (a scalar or one per
    component) the truth has model error: ``x_{t+1} = step(x_t) + N(0, diag(model_std²))``.
    """
    x0 = jnp.asarray(x0, dtype=float)
    n_steps = check_positive_int("n_steps", n_steps)
    obs_every = check_positive_int("obs_every", obs_every)
    if n_steps % obs_every:
        raise ValueError(f"obs_every: got {obs_every}, expected a divisor of n_steps={n_steps}")
    H = observation_operator(obs_operator, x0.shape[-1])
    if model_std is None:
        truth = _trajectory(_as_module(step), x0, n_steps)
    else:
        key, k_model = jax.random.split(key)
        noisy = NoisyStep(_as_module(step), checked_model_std(model_std, x0.shape[-1]))
        truth = _noisy_trajectory(noisy, x0, n_steps, k_model)
    clean = jax.vmap(H)(truth[obs_every::obs_every])
    std = jnp.asarray(obs_std, dtype=float)
    return truth, clean + std * jax.random.normal(key, clean.shape, clean.dtype)


@eqx.filter_jit
def _noisy_trajectory(step, x0, n_steps: int, key):
    states = jax.lax.scan(lambda x, k: (step(x, k),) * 2, x0, jax.random.split(key, n_steps))[1]
    return jnp.concatenate([x0[None], states])


@eqx.filter_jit
def _trajectory(step, x0, n_steps: int):
    states = jax.lax.scan(lambda x, _: (step(x),) * 2, x0, None, length=n_steps)[1]
    return jnp.concatenate([x0[None], states])
