"""`evaluate(benchmark, result)`: score a MAP result or a posterior with the problem's metric."""

from __future__ import annotations

import math

import jax
import numpy as np

from ..problem import flat_leaves_np
from ._registry import Benchmark

__all__ = ["evaluate"]

_POINT_METRICS = ("rel_error", "rmse")
_SAMPLE_METRICS = ("c2st", "mmd")
METRICS = (*_POINT_METRICS, "repredict", *_SAMPLE_METRICS)


def _event_ndims(benchmark: Benchmark):
    return jax.tree.map(lambda s: len(s.shape), benchmark.problem.theta_shape_dtype())


def _flatten(theta, event_ndims, lead: int, name: str) -> np.ndarray:
    """A θ pytree with ``lead`` leading axes -> ``(*lead_shape, D)`` (leaves raveled, joined)."""
    arrays = [np.asarray(a) for a in jax.tree.leaves(theta)]
    ndims = jax.tree.leaves(event_ndims)
    if len(arrays) != len(ndims):
        raise ValueError(f"{name}: got a pytree with {len(arrays)} leaves, expected {len(ndims)}")
    shapes = {a.shape[: a.ndim - k] for a, k in zip(arrays, ndims)}
    if len(shapes) != 1 or len(next(iter(shapes))) != lead:
        raise ValueError(f"{name}: got leading shapes {sorted(shapes)}, expected {lead} leading "
                         "axes shared by every leaf")
    return flat_leaves_np(arrays, lead)


def _split(benchmark: Benchmark, result, num_draws: int):
    """``(kind, values)``: ``("point", (*batch, D))`` or ``("draws", (*batch, n, D))``."""
    event = _event_ndims(benchmark)
    truth = jax.tree.leaves(benchmark.theta_true)[0]
    nbatch = np.ndim(truth) - jax.tree.leaves(event)[0]
    samples = getattr(result, "samples", None)
    if samples is not None:
        draws = _flatten(samples, event, nbatch + 2, "result.samples (*batch, chains, draws, *theta)")
        return "draws", draws.reshape(*draws.shape[:nbatch], -1, draws.shape[-1])
    if not hasattr(result, "theta") and callable(getattr(result, "sample", None)):
        # an approximation that draws (e.g. ji.laplace's GaussianApproximation)
        drawn = result.sample(jax.random.key(0), num_draws)
        return "draws", _flatten(drawn, event, nbatch + 1, "result.sample(key, n) (*batch, n, *theta)")
    theta = getattr(result, "theta", result)
    try:
        return "point", _flatten(theta, event, nbatch, "result.theta (*batch, *theta)")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"result: got {type(result).__name__}, expected a MAP result (with .theta), "
                        "a posterior (with .samples shaped (*batch, chains, draws, *theta)) or an "
                        f"array of θ ({exc})") from exc


def _point_scores(est: np.ndarray, truth: np.ndarray) -> dict:
    err = est - truth
    norm = np.linalg.norm(truth, axis=-1)
    rel = np.linalg.norm(err, axis=-1) / np.where(norm > 0, norm, 1.0)
    return {"rel_error": rel, "rmse": np.sqrt(np.mean(err**2, axis=-1))}


def _sample_scores(metric, draws, reference, event_ndim, options) -> np.ndarray:
    from . import metrics as m

    fn = m.c2st if metric == "c2st" else m.mmd
    if reference is None or "draws" not in reference:
        raise ValueError(f"benchmark: has no reference draws, which metric {metric!r} needs; "
                         "load it with reference=True")
    ref = np.asarray(reference["draws"])
    ref = ref.reshape(*ref.shape[: ref.ndim - event_ndim], -1)
    if ref.shape[:-2] != draws.shape[:-2]:
        raise ValueError(f"result: got draws for batch shape {draws.shape[:-2]}, but the reference "
                         f"draws have batch shape {ref.shape[:-2]}")
    flat_d = draws.reshape(-1, *draws.shape[-2:])
    flat_r = ref.reshape(-1, *ref.shape[-2:])
    vals = [fn(d, r, **options) for d, r in zip(flat_d, flat_r)]
    return np.array(vals).reshape(draws.shape[:-2])


def _unwrap(d: dict) -> dict:
    return {k: (float(v) if isinstance(v, (np.ndarray, np.generic)) and np.ndim(v) == 0 else v)
            for k, v in d.items()}


def evaluate(benchmark: Benchmark, result, *, metric: str | None = None, num_draws: int = 4000,
             **options) -> dict:
    """Score ``result`` on ``benchmark`` with its metric (or ``metric``).

    Args:
        benchmark: a `jinverse.Benchmark` (``ji.problems.load(...)``).
        result: a MAP result or anything with ``.theta`` shaped ``(*batch, *theta)`` (a bare
            array is taken as θ), or a posterior with ``.samples`` shaped
            ``(*batch, chains, draws, *theta)``, or an approximation with ``sample(key, n)``
            (such as `jinverse.laplace`'s), scored on ``num_draws`` of its draws.
        metric: one of ``"rel_error"``, ``"rmse"``, ``"repredict"``, ``"c2st"``, ``"mmd"``;
            default ``benchmark.metric``.
        options: passed to the metric (e.g. ``seed`` for ``c2st``).

    Returns:
        A dict with ``"metric"`` (the name), ``"value"`` (its value: a float, or an array over
        the batch) and the metric's other scores. A posterior is scored on its mean for
        ``rel_error``/``rmse``; a point estimate cannot be scored by ``c2st``/``mmd``, so for
        those benchmarks it gets ``rmse`` against ``theta_true`` (and ``"metric"`` says so).
        Not every score is an error: ``metrics.metric_info(name)`` says which way each one is
        better and its ideal value (``rel_error``/``rmse``: lower, 0; ``repredict``: a success
        fraction, higher, 1; ``c2st``: 0.5 is ideal).
    """
    metric = benchmark.metric if metric is None else metric
    if metric not in METRICS:
        raise ValueError(f"metric: got {metric!r}, expected one of {', '.join(METRICS)}")
    kind, values = _split(benchmark, result, num_draws)
    truth = _flatten(benchmark.theta_true, _event_ndims(benchmark),
                     np.ndim(jax.tree.leaves(benchmark.theta_true)[0])
                     - jax.tree.leaves(_event_ndims(benchmark))[0], "benchmark.theta_true")
    if kind == "point" and metric in _SAMPLE_METRICS:
        metric = "rmse"
    if metric in _POINT_METRICS:
        est = values if kind == "point" else values.mean(axis=-2)
        out = _point_scores(est, truth)
        return _unwrap({"metric": metric, "value": out[metric], **out})
    if metric == "repredict":
        if benchmark.info.get("kind") not in ("regressor", "classifier"):
            raise ValueError(f"metric: 'repredict' needs a trained-model benchmark, got {benchmark.name!r}")
        from .trained import score_repredict

        pts = values[..., None, :] if kind == "point" else values
        out = score_repredict(benchmark, pts, **options)
        return _unwrap({"metric": metric, "value": out["repredict"], **out})
    event_ndim = sum(jax.tree.leaves(_event_ndims(benchmark)))
    value = _sample_scores(metric, values, benchmark.reference, event_ndim, options)
    out = {"metric": metric, "value": value, metric: value}
    if math.prod(value.shape) and metric == "c2st":
        out.update(_point_scores(values.mean(axis=-2), truth))
    return _unwrap(out)
