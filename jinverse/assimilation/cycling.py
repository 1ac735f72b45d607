"""Cycled ensemble filtering on any JAX model step: forecast every member (vmapped), analyse
at each observation time, statistics there; the whole cycle one compiled ``lax.scan``, and a
batch of experiments (first ensembles, of one size or several padded to the largest with a
member mask, observations, truths, or a method's settings) one ``vmap`` of it. The methods
(`jinverse.assimilation.enkf`: ETKF, EnKF, LETKF, particle filter; `jinverse.assimilation.ienks`:
the iEnKS) each own one cycle.

Time runs in model steps as in `cycled_4dvar`: observation ``i`` observes the state at model
step ``(i + 1) obs_every``; the first ensemble is at step 0 (not observed).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_positive_int
from ..status import FilterStatus
from .enkf import (
    FILTERS,
    LETKF,
    AbstractFilter,
    NoisyStep,
    ObsModel,
    TimeVarying,
    checked_model_std,
    member_weights,
)
from .enks import EnKS
from .fourdvar import observation_operator
from .ienks import IEnKS
from .inflation import AdaptiveInflation

METHODS = {**FILTERS, "ienks": IEnKS, "enks": EnKS}


DIVERGENCE_RATIO = 3.0
"""With a truth, a run whose time-mean analysis RMSE exceeds this many times its mean ensemble
spread is reported as diverged: the ensemble no longer covers its own error (a tuned filter has a
ratio near 1; a lost one, e.g. Lorenz-96 ETKF with 20 members and inflation 1.02, has 10 or more)."""


class FilterWarning(UserWarning):
    """A cycled ensemble run diverged: non-finite analyses, or (with a truth) an analysis error
    far larger than the ensemble spread."""


class FilterResult(NamedTuple):
    """Per observation time (axis after any batch axes) output of `cycled_filter`.

    ``forecast`` / ``analysis``: ensemble means ``(k, n)`` before and after each analysis
    (weighted for the particle filter); ``spread_forecast`` / ``spread_analysis``: the ensemble
    spread ``sqrt(mean_i var_i)`` (unbiased variance, DAPPER's definition); ``rmse_forecast`` /
    ``rmse_analysis``: RMSE of the means against the truth (NaN without a truth);
    ``mean_rmse`` / ``mean_spread``: time means of the analysis RMSE and spread over the times
    after ``burn_in`` (floats, or arrays over the batch); ``rank_histogram``: ``(N + 1,)``
    counts of the truth's rank among the analysis members, over components and times after
    ``burn_in`` (flat for a reliable ensemble; for a batch of ensemble sizes padded to the
    largest N, experiment b's are its first ``N_b + 1``, as are the rows of its ``ensemble``);
    ``ensemble``: the last analysis ensemble;
    ``obs_steps``: ``(k,)`` model steps of the observation times; ``truth``: the true states
    there (NaN without one); ``inflation``: ``(k,)`` the anomaly inflation factor each analysis
    used (varies with `AdaptiveInflation`; NaN for the particle filter); ``smoothed`` /
    ``spread_smoothed`` / ``rmse_smoothed``: the smoother's means, spreads and RMSEs ``(k,
    n)``, ``(k,)`` at the observation times (`EnKS`; NaN for a filter) and
    ``mean_rmse_smoothed`` their time mean after ``burn_in``; ``rank_histograms``: ``(k, N +
    1)``: the truth's rank counts at each observation time (over components).
    """

    forecast: Array
    analysis: Array
    spread_forecast: Array
    spread_analysis: Array
    rmse_forecast: Array
    rmse_analysis: Array
    mean_rmse: Array | float
    mean_spread: Array | float
    rank_histogram: Array
    ensemble: Array
    obs_steps: np.ndarray
    truth: Array
    inflation: Array
    smoothed: Array
    spread_smoothed: Array
    rmse_smoothed: Array
    mean_rmse_smoothed: Array | float
    rank_histograms: Array

    @property
    def status(self) -> np.ndarray:
        """`jinverse.status.FilterStatus` flags per experiment: ``NONFINITE`` where an analysis
        went NaN/inf; ``OVERCONFIDENT`` where (with a truth) the time-mean analysis RMSE is over
        `DIVERGENCE_RATIO` times the spread (what `FilterWarning` reports)."""
        finite = np.all(np.isfinite(np.asarray(self.analysis)), axis=(-2, -1))
        lost = _overconfident(np.asarray(self.mean_rmse), np.asarray(self.mean_spread))
        return (np.where(finite, 0, int(FilterStatus.NONFINITE))
                | np.where(finite & lost, int(FilterStatus.OVERCONFIDENT), 0)).astype(np.int32)

    @property
    def ok(self) -> np.ndarray:
        return FilterStatus.ok(self.status)


def _as_module(fn):
    """A function as a pytree without leaves (so it passes through jit), a Module as it is."""
    return fn if isinstance(fn, eqx.Module) else jax.tree_util.Partial(fn)


def _stats(E, w):
    mean = w @ E
    var = (w @ (E - mean) ** 2) / (1.0 - jnp.sum(w**2))  # unbiased; (N-1) for equal weights
    return mean, jnp.sqrt(jnp.mean(var))


def _one_run(step, flt, obs, obs_every, E0, ys, xt, key):
    """The cycle loop of one experiment: the method's cycle per observation time (for a filter:
    forecast all members ``obs_every`` model steps, then the analysis with that observation)."""
    k = ys.shape[0]
    keys = jax.random.split(key, k)

    def cycle(carry, inputs):
        state, _ = carry
        y, x_true, i, key = inputs
        y, obs_i = obs.at(i).mask(y)
        state, (Ef, wf), (Ea, wa), E, info = flt.cycle(step, obs_every, state, y, obs_i, key)
        (mf, sf), (ma, sa) = _stats(Ef, wf), _stats(Ea, wa)
        below = E < x_true if flt.members is None else (E < x_true) & flt.members[:, None]
        rank = jnp.sum(below, axis=0)  # (n,) the truth's rank among the members
        counts = jnp.sum(jax.nn.one_hot(rank, E.shape[0] + 1, dtype=E.dtype), axis=0)
        done = info.get("smoothed")  # a smoother's final ensemble of an earlier time
        ms, ss = _stats(done, wa) if done is not None else (jnp.full_like(ma, jnp.nan), jnp.nan * sa)
        return (state, E), (mf, ma, sf, sa, counts, info["inflation"], ms, ss)

    (state, E), out = jax.lax.scan(cycle, (flt.init(E0, ys.shape[-1]), E0), (ys, xt, jnp.arange(k), keys))
    tail = flt.smoothed_tail(state)
    if tail is not None:  # the last `lag` times, smoothed with every observation there is
        lag = tail.shape[0]
        w = member_weights(flt.members, E.shape[0], E.dtype)
        mt, st = jax.vmap(_stats, in_axes=(0, None))(tail, w)
        out = (*out[:6], jnp.concatenate([out[6][lag:], mt])[-k:], jnp.concatenate([out[7][lag:], st])[-k:])
    return E, out


@eqx.filter_jit
def _run(step, flt, obs, obs_every, batched, E0, ys, xt, key):
    """One experiment, or a batch of them (``batched``: which of the filter's settings, the
    first ensemble, the observations and the truth carry a leading batch axis), vmapped."""
    flt_axes, *data_batched = batched
    if flt_axes is None and not any(data_batched):
        return _one_run(step, flt, obs, obs_every, E0, ys, xt, key)
    sizes = [a.shape[0] for a, b in zip((E0, ys, xt), data_batched) if b]
    sizes += jax.tree.leaves(jax.tree.map(lambda a, x: None if a is None else x.shape[0], flt_axes, flt,
                                          is_leaf=lambda x: x is None))
    axes = (flt_axes, *(0 if b else None for b in data_batched), 0)
    keys = jax.random.split(key, sizes[0])
    return jax.vmap(lambda f, e, y, x, k: _one_run(step, f, obs, obs_every, e, y, x, k), in_axes=axes)(
        flt, E0, ys, xt, keys)


def _filter(method) -> AbstractFilter:
    if isinstance(method, AbstractFilter):
        return method
    if isinstance(method, str) and method.lower() in METHODS and method.lower() != "letkf":
        return METHODS[method.lower()]()
    raise ValueError(f"method: got {method!r}, expected one of 'etkf', 'enkf', 'pf', 'enks', 'ienks' or a "
                     "method such as ETKF(inflation=1.02), EnKF(), LETKF(radius=4.0), ParticleFilter(reg=0.9), "
                     "EnKS(lag=10), IEnKS(lag=5) (LETKF needs its radius)")


SETTINGS = ("inflation", "radius", "jitter", "reg", "threshold", "tol")


def _check_filter(flt):
    """Checked settings; a 1-D array of settings (e.g. ``ETKF(inflation=[1.01, 1.02])``) runs
    one experiment per entry. Returns the filter (such settings as arrays) and its vmap axes
    (None when no setting is batched)."""
    infl = getattr(flt, "inflation", None)
    if isinstance(infl, AdaptiveInflation):
        if isinstance(flt, IEnKS):
            raise ValueError("IEnKS.inflation: got AdaptiveInflation, expected a number (adaptive inflation is for "
                             "ETKF, EnKF, LETKF and EnKS)")
        _check_adaptive(type(flt).__name__, infl)
    for name in ("lag", "n_iter"):
        v = getattr(flt, name, None)
        if v is not None and not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1):
            raise ValueError(f"{type(flt).__name__}.{name}: got {v!r}, expected an integer >= 1")
    batched = []
    for name in SETTINGS:
        v = getattr(flt, name, None)
        if v is None or isinstance(v, AdaptiveInflation):
            continue
        zero_ok = name in ("jitter", "reg", "threshold", "tol")
        a = np.asarray(v, dtype=float) if np.ndim(v) <= 1 else None
        ok = a is not None and a.size > 0 and np.all(np.isfinite(a)) and np.all(a >= 0 if zero_ok else a > 0)
        if not ok or (a.ndim == 1 and name == "tol"):
            raise ValueError(f"{type(flt).__name__}.{name}: got {v!r}, expected a finite number "
                             + (">= 0" if zero_ok else "> 0")
                             + ("" if name == "tol" else ", or a 1-D array of them (one experiment each)"))
        if a.ndim == 1:
            flt = eqx.tree_at(lambda f, n=name: getattr(f, n), flt, jnp.asarray(a))
            batched.append(name)
    axes = None
    for name in batched:
        axes = _batch_axis(flt, axes, name)
    return flt, axes


def _batch_axis(flt, axes, name: str):
    """The filter's vmap axes ``axes`` (None: none yet) with its field ``name`` batched."""
    axes = jax.tree.map(lambda _: None, flt) if axes is None else axes
    return eqx.tree_at(lambda f: getattr(f, name), axes, 0, is_leaf=lambda x: x is None)


def _ensembles(ensemble, flt):
    """``(E0, members)``: the first ensemble(s) as one array, and for a list of ensembles of
    different sizes ``(N_b, n)``, each padded to the largest with its members' mean, and
    ``members`` ``(B, N)`` marking the real rows (None otherwise)."""
    if flt.members is not None:
        raise ValueError(f"{type(flt).__name__}.members: got {flt.members!r}, expected None (cycled_filter sets it "
                         "from a list of ensembles of different sizes)")
    if not isinstance(ensemble, (list, tuple)):
        return jnp.asarray(ensemble, dtype=float), None
    Es = [jnp.asarray(E, dtype=float) for E in ensemble]
    shapes = [tuple(E.shape) for E in Es]
    if not Es or any(len(s) != 2 or s[0] < 2 or s[1] != shapes[0][1] for s in shapes):
        raise ValueError(f"ensemble: got a list of shapes {shapes}, expected one ensemble (N_b, n) per experiment, "
                         "N_b >= 2 members, the same n")
    sizes = [s[0] for s in shapes]
    N = max(sizes)
    if min(sizes) == N:
        return jnp.stack(Es), None
    if not flt.pads_members:
        raise ValueError(f"ensemble: got ensembles of {', '.join(map(str, sizes))} members with "
                         f"{type(flt).__name__}, expected one size (different sizes in one batch are for ETKF, "
                         "EnKF, LETKF and EnKS)")
    E0 = jnp.stack([jnp.concatenate([E, jnp.broadcast_to(E.mean(0), (N - len(E), E.shape[1]))]) for E in Es])
    return E0, jnp.arange(N) < jnp.asarray(sizes)[:, None]


def _check_adaptive(owner: str, infl: AdaptiveInflation) -> None:
    for name in ("initial", "var", "minimum", "maximum"):
        v = getattr(infl, name)
        if not (np.ndim(v) == 0 and np.isfinite(v) and v > 0):
            raise ValueError(f"{owner}.inflation.{name}: got {v!r}, expected a finite number > 0")
    if not infl.minimum <= infl.initial <= infl.maximum:
        raise ValueError(f"{owner}.inflation: got initial {infl.initial!r}, expected it within [minimum, maximum] = "
                         f"[{infl.minimum!r}, {infl.maximum!r}]")


class _Stacked(eqx.Module):
    H: Float[Array, "k m n"]

    def __call__(self, i, x):
        return self.H[i] @ x


def _operator(obs_operator, n: int, k: int):
    """The observation operator: a `TimeVarying` one as it is, a stack of matrices ``(k, m, n)``
    as one, anything else by `observation_operator`."""
    if isinstance(obs_operator, TimeVarying):
        return obs_operator
    if not callable(obs_operator) and obs_operator is not None and np.ndim(obs_operator) == 3:
        a = np.asarray(obs_operator, dtype=float)
        if a.shape[0] != k or a.shape[2] != n:
            raise ValueError(f"obs_operator: got a stack of shape {a.shape}, expected one matrix per observation "
                             f"time ({k}, m, {n})")
        return TimeVarying(_Stacked(jnp.asarray(a)))
    return observation_operator(obs_operator, n)


def _burn_in(burn_in: int, burn_in_time, dt, obs_every: int) -> int:
    """Observation times left out of the time means: ``burn_in``, or those at model time
    ``(i + 1) obs_every dt <= burn_in_time`` (DAPPER's ``BurnIn``)."""
    burn_in = check_positive_int("burn_in", burn_in, minimum=0)
    if burn_in_time is None:
        return burn_in
    if burn_in:
        raise ValueError(f"burn_in, burn_in_time: got {burn_in} and {burn_in_time!r}, expected one of them")
    if dt is None or not (np.ndim(dt) == 0 and np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt: got {dt!r}, expected the model time step > 0 (burn_in_time is in model time units)")
    if not (np.ndim(burn_in_time) == 0 and np.isfinite(burn_in_time) and burn_in_time >= 0):
        raise ValueError(f"burn_in_time: got {burn_in_time!r}, expected a time >= 0")
    # the tolerance: 0.25 = 25 x 0.01 and 20 = 400 x 0.05 must count as reached, whatever the rounding
    return int(np.floor(float(burn_in_time) / (obs_every * float(dt)) * (1 + 1e-12)))


def _locations(obs_operator, obs_locations, n, m, flt):
    if obs_locations is not None:
        loc = np.asarray(obs_locations, dtype=float)
        if loc.shape != (m,) or not np.all(np.isfinite(loc)):
            raise ValueError(f"obs_locations: got shape {loc.shape}, expected ({m},) finite positions on the "
                             f"state grid 0..{n - 1}")
        return loc
    if obs_operator is None:
        return np.arange(n, dtype=float)
    a = np.asarray(obs_operator) if not callable(obs_operator) else None
    if a is not None and a.ndim == 1 and np.issubdtype(a.dtype, np.integer):
        return a.astype(float)
    if isinstance(flt, LETKF):
        raise ValueError("obs_locations: got None, expected each observation's position on the state grid "
                         "(m,): LETKF localises, and the observation operator is not a set of components")
    return np.zeros(m)


def cycled_filter(step: Callable, ensemble: Float[Array, "*batch N n"] | list, observations: Float[Array, "*batch k m"],
                  *, key: PRNGKeyArray, method="etkf", obs_every: int = 1, obs_operator=None, obs_std=1.0,
                  obs_locations=None, period: float | None = None,
                  truth: Float[Array, "*batch T n"] | None = None, burn_in: int = 0,
                  burn_in_time: float | None = None, dt: float | None = None, model_std=None) -> FilterResult:
    """Cycled ensemble filtering of ``observations`` with the model ``step``.

    Args:
        step: one model time step ``x ↦ x'`` on a state ``(n,)`` (a JAX function or an equinox
            Module); vmapped over the members.
        ensemble: the first ensemble at model step 0, ``(N, n)``, ``N >= 2`` members in rows
            (e.g. ``x_b + σ_b ε``); a leading batch axis ``(B, N, n)`` runs B experiments (so
            does a 1-D array of a method's setting, e.g. ``ETKF(inflation=[1.01, 1.02, 1.04])``:
            one compiled program for a tuning sweep). A list of B ensembles ``(N_b, n)`` of
            different sizes runs them in one program too (ETKF, EnKF, LETKF, EnKS): each is
            padded to the largest N with rows that have no say (mean, anomalies, ``√(N_b - 1)``,
            transforms, perturbed observations, inflation and statistics are over its own
            members), so experiment b gives what it gives alone; ``ensemble[b, :N_b]`` and
            ``rank_histogram[b, :N_b + 1]`` of the result are its own (the padding tracks the
            analysis mean).
        observations: ``(k, m)``, row ``i`` observing the state at model step ``(i + 1)
            obs_every``; ``(B, k, m)`` for a batch of experiments. NaN marks an observation left
            out (e.g. a component observed only at some times).
        key: a PRNG key (perturbed observations, resampling; split over a batch).
        method: ``'etkf'``, ``'enkf'`` (perturbed observations), ``'pf'``, ``'enks'`` (the full
            smoother), ``'ienks'``, or a method with its settings: ``ETKF(inflation=...)``,
            ``EnKF(inflation=...)``, ``LETKF(radius=..., inflation=...)``,
            ``ParticleFilter(jitter=...)``, ``EnKS(lag=...)``, ``IEnKS(lag=..., mda=...)``; an
            inflation may be ``AdaptiveInflation()`` (estimated from the innovations).
        obs_every: model steps between observation times.
        obs_operator: ``None`` (every component), component indices, a matrix ``(m, n)``, a
            function of the state, or one that changes with time: a stack of matrices ``(k, m,
            n)`` (one per observation time) or ``TimeVarying(lambda i, x: ...)`` (``i`` the
            observation time's index).
        obs_std: observation-error std (R = diag(std²)): a scalar, one per component ``(m,)``,
            or one per time and component ``(k, m)``.
        obs_locations: each observation's position ``(m,)`` on the state grid (component ``i`` at
            ``i``), for LETKF's localisation; the indices themselves by default.
        period: the domain's period for localisation distances; the state size ``n`` by default
            (a periodic 1-D domain such as Lorenz-96); ``float('inf')`` for none.
        truth: optionally the true states at every model step ``0..T`` (``T = k obs_every``),
            ``(T + 1, n)`` or ``(B, T + 1, n)``; the RMSE fields are NaN without it.
        burn_in: observation times left out of the time means and the rank histogram.
        burn_in_time, dt: the burn-in in model time units instead (``dt`` the model time step):
            the observation times at ``t = (i + 1) obs_every dt <= burn_in_time`` are left out.
        model_std: model error: each member's forecast adds ``N(0, diag(model_std²))`` after
            every model step (a stochastic forecast with Q = diag(model_std²) per step; a scalar
            or one per state component); ``None`` (default) for a perfect model. Not for
            ``IEnKS`` (a strong-constraint smoother). Give `twin_experiment` the same
            ``model_std`` for a truth with that model error.

    Returns:
        A `FilterResult` (with the leading batch axis where any input had one).

    Example (ETKF on Lorenz-96, twin experiment)::

        truth, ys = ji.assimilation.twin_experiment(step, x0, n_steps=1000, key=k1)
        E0 = x0 + jax.random.normal(k2, (20, 40))
        res = ji.assimilation.cycled_filter(step, E0, ys, truth=truth, key=k3,
                                            method=ETKF(inflation=1.04), burn_in=100)
    """
    flt, flt_axes = _check_filter(_filter(method))
    E0, members = _ensembles(ensemble, flt)
    if E0.ndim not in (2, 3) or E0.shape[-2] < 2:
        raise ValueError(f"ensemble: got shape {tuple(E0.shape)}, expected (N, n) or (B, N, n) with N >= 2 members")
    N, n = E0.shape[-2:]
    ys = jnp.asarray(observations, dtype=float)
    if ys.ndim not in (2, 3) or ys.shape[-2] == 0:
        raise ValueError(f"observations: got shape {tuple(ys.shape)}, expected (k, m) or (B, k, m), one row per "
                         "observation time")
    k, m = ys.shape[-2:]
    obs_every = check_positive_int("obs_every", obs_every)
    burn_in = _burn_in(burn_in, burn_in_time, dt, obs_every)
    if model_std is not None:
        if isinstance(flt, IEnKS):
            raise ValueError("model_std: got a model error, expected None with IEnKS (a strong-constraint "
                             "smoother); use ETKF, EnKF, LETKF or ParticleFilter for an imperfect model")
        step = NoisyStep(_as_module(step), checked_model_std(model_std, n))
    if burn_in >= k:
        raise ValueError(f"burn_in: got {burn_in}"
                         + ("" if burn_in_time is None else f" observation times (burn_in_time {burn_in_time!r})")
                         + f", expected fewer than the {k} observation times")
    if np.any(np.isinf(np.asarray(ys))):
        raise ValueError("observations: got inf, expected finite values (NaN for an observation left out)")
    H = _operator(obs_operator, n, k)
    x = E0[(0,) * (E0.ndim - 1)]
    m_shape = (jax.eval_shape(H, jnp.zeros((), jnp.int32), x) if isinstance(H, TimeVarying) else jax.eval_shape(H, x)).shape
    if m_shape != (m,):
        raise ValueError(f"observations: got {m} per time, expected {m_shape} (what obs_operator returns "
                         "for one state)")
    std = np.asarray(obs_std, dtype=float) if np.ndim(obs_std) <= 2 else None
    if std is None or std.shape not in ((), (m,), (k, m)) or not np.all(np.isfinite(std) & (std > 0)):
        got = repr(obs_std) if np.size(obs_std) <= 6 else f"an array of shape {np.shape(obs_std)}"
        raise ValueError(f"obs_std: got {got}, expected a std > 0: a scalar, one per observed component "
                         f"({m},) or one per time and component ({k}, {m})")
    std = np.broadcast_to(std, (m,)) if std.ndim < 2 else std
    period = float(n) if period is None else float(period)
    if not period > 0:
        raise ValueError(f"period: got {period!r}, expected a domain period > 0 (or inf)")
    obs = ObsModel(H, jnp.asarray(std), jnp.asarray(_locations(obs_operator, obs_locations, n, m, flt)), period)

    if isinstance(flt, EnKS) and (flt.lag is None or flt.lag > k):  # the full smoother
        flt = EnKS(lag=k, inflation=flt.inflation)
    T = k * obs_every
    if truth is None:
        xt = jnp.full((k, n), jnp.nan)
    else:
        truth = jnp.asarray(truth, dtype=float)
        if truth.ndim not in (2, 3) or truth.shape[-2:] != (T + 1, n):
            raise ValueError(f"truth: got shape {tuple(truth.shape)}, expected the states at every model step, "
                             f"({T + 1}, {n}) or (B, {T + 1}, {n})")
        xt = truth[..., obs_every::obs_every, :]
    batched = (E0.ndim == 3, ys.ndim == 3, xt.ndim == 3)
    sizes = {f"{name} {a.shape[0]}" for name, a, b in zip(("ensemble", "observations", "truth"), (E0, ys, xt), batched)
             if b}
    if flt_axes is not None:
        sizes |= {f"{name} {np.size(getattr(flt, name))}" for name in SETTINGS if np.ndim(getattr(flt, name, 0)) == 1}
    if len({s.split()[-1] for s in sizes}) > 1:
        raise ValueError(f"batch sizes: got {', '.join(sorted(sizes))}, expected one batch size")
    if members is not None:  # a batch of ensemble sizes: the mask is batched with the ensembles
        flt_axes = _batch_axis(flt, flt_axes, "members")
        flt = eqx.tree_at(lambda f: f.members, flt, members, is_leaf=lambda x: x is None)
    out = _run(_as_module(step), flt, obs, obs_every, (flt_axes, *batched), E0, ys, xt, key)
    E, (mf, ma, sf, sa, counts, infl, ms, ss) = out
    bad = ~np.all(np.isfinite(np.asarray(ma)), axis=(-2, -1))
    if np.any(bad):
        first = np.argmax(~np.all(np.isfinite(np.asarray(ma)), axis=-1), axis=-1)
        where = f"{int(bad.sum())} of {bad.size} experiments" if bad.ndim else "the run"
        warnings.warn(f"cycled_filter: {where} diverged (non-finite analysis from observation time "
                      f"{int(np.min(np.where(bad, first, np.iinfo(int).max)))} on); their statistics are NaN. "
                      "More inflation, a shorter IEnKS lag or more members may help", FilterWarning, stacklevel=2)

    def rmse(a):
        return jnp.sqrt(jnp.mean((a - xt) ** 2, axis=-1))

    r_f, r_a, r_s = rmse(mf), rmse(ma), rmse(ms)
    mean_rmse: Array | float = jnp.mean(r_a[..., burn_in:], -1)
    mean_rmse_s: Array | float = jnp.mean(r_s[..., burn_in:], -1)
    mean_spread: Array | float = jnp.mean(sa[..., burn_in:], -1)
    if truth is not None:
        _warn_overconfident(np.asarray(mean_rmse), np.asarray(mean_spread))
    if flt_axes is None and not any(batched):
        mean_rmse, mean_spread, mean_rmse_s = float(mean_rmse), float(mean_spread), float(mean_rmse_s)
    if truth is None:
        counts = jnp.full_like(counts, jnp.nan)
    hist = jnp.sum(counts[..., burn_in:, :], axis=-2)
    return FilterResult(mf, ma, sf, sa, r_f, r_a, mean_rmse, mean_spread, hist, E,
                        obs_every * np.arange(1, k + 1), xt, infl, ms, ss, r_s, mean_rmse_s, counts)


def _overconfident(rmse: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Runs whose (finite) time-mean analysis RMSE is over `DIVERGENCE_RATIO` times their spread."""
    return np.isfinite(rmse) & (rmse > DIVERGENCE_RATIO * spread)


def _warn_overconfident(rmse: np.ndarray, spread: np.ndarray) -> None:
    """A `FilterWarning` for the finite runs whose analysis RMSE is over `DIVERGENCE_RATIO` times
    their spread (the non-finite ones are warned about already)."""
    lost = _overconfident(rmse, spread)
    if not np.any(lost):
        return
    where = f"{int(lost.sum())} of {lost.size} experiments" if lost.ndim else "the run"
    worst = int(np.argmax(np.where(lost, rmse / np.maximum(spread, 1e-300), -np.inf))) if lost.ndim else None
    r, s = (rmse, spread) if worst is None else (rmse.reshape(-1)[worst], spread.reshape(-1)[worst])
    warnings.warn(f"cycled_filter: {where} ended with an overconfident ensemble (filter divergence): analysis "
                  f"RMSE {float(r):.3g} against an ensemble spread of {float(s):.3g}, over {DIVERGENCE_RATIO:g}x"
                  + ("" if worst is None else f" (worst: experiment {worst})")
                  + "; the spread does not measure the error and the filter may lose the truth. More inflation, "
                  "more members or localisation (LETKF) may help", FilterWarning, stacklevel=3)

