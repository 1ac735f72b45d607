"""Run one method on one benchmark problem, and the problem x method matrix of `jinverse bench`.

`run_method(benchmark, method, ...)` is what `jinverse solve`, `jinverse sample` and
`jinverse bench` share: it calls the public solver (`ji.solve_map`, `ji.laplace`,
`ji.linear.tikhonov`, `ji.sample`), scores it with `ji.problems.evaluate` (optional: C2ST
trains a classifier per observation) and collects the diagnostics a person checks first
(convergence; R-hat, ESS, ESS/s, calibration). Every phase is timed (`PHASES`), so that the
reported times add up to the wall time of the call.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# The method names and their one-line descriptions live beside the CLI's parser, which shows
# them in --help without importing JAX; the benchmark runs exactly those.
from jinverse_cli.names import POINT_METHODS, SAMPLE_METHODS

METHODS = {**POINT_METHODS, **SAMPLE_METHODS}

SUITES: dict[str, dict[str, Any]] = {
    # A few minutes on 2 CPU cores, compilation included: small sizes, short chains.
    "quick": {
        "problems": {"phillips": {"n": 32}, "deconvolution1d": {"n": 64, "noise": 0.02},
                     "gaussian_linear": {"dim": 5, "num_reference": 2000},
                     "two_moons": {"num_reference": 2000}},
        # mclmc (in the full suite) is left out: its three tuning stages compile for ~20 CPU
        # seconds per problem, a third of the suite's time (`make run` target: 2 minutes on 2 cores)
        "methods": ["map", "laplace", "tikhonov-gcv", "nuts", "smc"],
        # ji.sample's own defaults: the suite shows what a first call gives (300 draws left
        # R-hat of well-mixed chains above 1.01 by chance in 64 coordinates)
        "chains": 4, "warmup": 500, "samples": 1000,
    },
    "full": {
        "problems": {"shaw": {}, "phillips": {}, "deconvolution1d": {}, "deconvolution2d": {},
                     "heat1d": {}, "lorenz96": {}, "gaussian_linear": {}, "gaussian_linear_uniform": {},
                     "two_moons": {}, "slcp": {}, "bernoulli_glm": {}, "inverse_kinematics": {},
                     "trained_regressor": {}},
        "methods": ["map", "newton", "laplace", "tikhonov-gcv", "nuts", "hmc", "mala", "mclmc"],
        "chains": 4, "warmup": 1000, "samples": 1000,
    },
}


PHASES = {
    "compile": "JAX tracing and compilation of the solver or sampler (diagnostics and scoring "
               "compile inside their own phases)",
    "solve": "the solver's run, compilation excluded",
    "sampling": "the sampler's run, compilation excluded: the mode search of its metric (when "
                "it has one), warmup and draws run in one program and are not timed apart",
    "repeat": "the second, timed call made to measure compilation (repeat=True)",
    "chunking": "a batch run in chunks (run_chunked): slicing the chunks out and joining their results",
    "diagnostics": "convergence, R-hat and bulk ESS, posterior mean, credible intervals, coverage",
    "scoring": "ji.problems.evaluate against the truth or the reference draws (C2ST trains a "
               "classifier per observation); None when skipped",
}


class NotApplicable(ValueError):
    """The method does not apply to the problem (e.g. Tikhonov on a nonlinear model)."""


@dataclasses.dataclass
class Run:
    """One method on one benchmark.

    Attributes:
        method: the method name.
        kind: ``"point"`` or ``"posterior"``.
        estimate: the point estimate (posterior mean for samplers), ``(*batch, *theta)``.
        result: the solver's own result (`MAPResult`, `Posterior`, `GaussianApproximation`,
            `TikhonovResult`).
        band: ``(lower, upper)`` of the central 90% interval where the method gives one.
        seconds: run time of the solver or sampler, compilation excluded (``phases["solve"]``
            or ``phases["sampling"]``); ``compile_seconds``: its compilation
            (``phases["compile"]``).
        scores: `ji.problems.evaluate`'s dict (``metric``, ``value``, ...), ``{}`` when scoring
            was skipped; `jinverse.problems.metrics.metric_info` says how to read it.
        diagnostics: flat figures: ``converged`` (fraction), ``max_rhat``, ``min_ess``,
            ``ess_per_s`` (per second of ``seconds``), ``ess_per_s_total`` (per second of
            ``wall_seconds``), ``coverage90``, ``divergences``, ``lam``.
        phases: seconds per phase, in order (keys of `PHASES`: ``compile``, ``solve`` or
            ``sampling``, ``repeat`` with ``repeat=True``, ``diagnostics``, ``scoring``, which
            is None when skipped); they add up to ``wall_seconds`` but for argument checks.
        wall_seconds: wall time of the whole call.
    """

    method: str
    kind: str
    estimate: Any
    result: Any
    band: tuple | None
    seconds: float
    compile_seconds: float | None
    scores: dict
    diagnostics: dict
    phases: dict = dataclasses.field(default_factory=dict)
    wall_seconds: float | None = None


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method: got {method!r}, expected one of {', '.join(METHODS)}")
    return method


def linear_matrix(benchmark):
    """The matrix of a linear benchmark (``info["A"]`` or a `MatrixOperator` forward), else None."""
    from .problem import MatrixOperator

    A = benchmark.info.get("A")
    if A is None and isinstance(benchmark.problem.forward, MatrixOperator):
        A = benchmark.problem.forward.matrix
    return None if A is None else jnp.asarray(A)


def applicable(benchmark, method: str) -> str | None:
    """None when ``method`` can run on ``benchmark``, else the reason it cannot."""
    check_method(method)
    if method.startswith("tikhonov"):
        if linear_matrix(benchmark) is None:
            return ("Tikhonov needs the forward model as a matrix (info['A'] or a ji.MatrixOperator); this "
                    "problem's forward model is a function")
        if method == "tikhonov-discrepancy" and "noise_std" not in benchmark.info:
            return "the discrepancy principle needs the noise level"
    if method == "laplace" and benchmark.info.get("multimodal"):
        return (f"one Gaussian at one mode cannot represent this posterior ({benchmark.info['multimodal']}); "
                "use a sampler")
    if method == "mclmc":
        size = sum(math.prod(s.shape) for s in jax.tree.leaves(benchmark.problem.theta_shape_dtype()))
        if size < 2:
            return "MCLMC needs at least 2 unknowns"
    return None


_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
_COMPILE_SECONDS = [0.0]
_LISTENING = [False]


def _on_event(event: str, duration_secs: float, **kwargs: str | int) -> None:  # jax.monitoring's listener
    if event in _COMPILE_EVENTS:
        _COMPILE_SECONDS[0] += duration_secs


def compile_seconds() -> float:
    """Seconds JAX has spent tracing, lowering and compiling since the first call (a counter)."""
    if not _LISTENING[0]:
        jax.monitoring.register_event_duration_secs_listener(_on_event)
        _LISTENING[0] = True
    return _COMPILE_SECONDS[0]


def _timed(fn: Callable, repeat: bool):
    """``(out, seconds, compile_seconds, repeat_seconds)`` of ``fn(0)``: the run time without
    compilation (JAX's own compile-time events are subtracted), and the compilation time. With
    ``repeat`` the call runs again (same shapes, so warm): that second run is the one returned,
    its time is ``seconds``, compilation is the first call's excess over it, and
    ``repeat_seconds`` (0 without ``repeat``) is the time the extra call cost."""
    c0, t0 = compile_seconds(), time.perf_counter()
    out = jax.block_until_ready(fn(0))
    wall, comp = time.perf_counter() - t0, compile_seconds() - c0
    if not repeat:
        return out, max(wall - comp, 0.0), min(comp, wall), 0.0
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(1))
    warm = time.perf_counter() - t0
    return out, min(warm, wall), max(wall - warm, 0.0), warm


def coverage(lower, upper, truth) -> float:
    """Fraction of the components of ``truth`` inside ``[lower, upper]`` (all leaves pooled)."""
    inside = [np.asarray((t >= lo) & (t <= hi)) for lo, hi, t in
              zip(jax.tree.leaves(lower), jax.tree.leaves(upper), jax.tree.leaves(truth))]
    return float(np.mean(np.concatenate([x.ravel() for x in inside])))


def run_method(benchmark, method: str, *, seed: int = 0, chains: int = 4, warmup: int = 500,
               samples: int = 500, repeat: bool = False, init: str | None = None,
               score: bool = True, options: dict | None = None) -> Run:
    """Run ``method`` on ``benchmark``; see `Run`.

    Args:
        benchmark: a `ji.Benchmark` (``ji.problems.load(...)``), possibly batched.
        method: a key of `METHODS`.
        seed: the PRNG seed (sampler key, multi-start key).
        chains, warmup, samples: sampler settings.
        repeat: run twice and time the second call, reporting compilation separately.
        init: the sampler's ``init`` (``"prior"``, ``"map"``); default ``"prior"``.
        score: score with `ji.problems.evaluate` (c2st trains a small classifier per observation:
            seconds each, often more than the sampling); False skips it: ``scores`` is ``{}`` and
            ``phases["scoring"]`` None.
        options: extra keyword arguments for the solver.

    Raises:
        NotApplicable: the method does not apply to this problem.
    """
    from .laplace import laplace
    from .linear import tikhonov
    from .map import solve_map

    t_start = time.perf_counter()
    reason = applicable(benchmark, method)
    if reason:
        raise NotApplicable(f"method: {method!r} does not apply to {benchmark.name!r}: {reason}")
    problem, y = benchmark.problem, benchmark.y
    options = dict(options or {})
    nbatch = len(problem.check_y(y)[1])
    diag: dict[str, Any] = {}
    band = None
    if method in SAMPLE_METHODS:
        from .sampling import sample  # (here: a point method need not import the samplers, blackjax)

        kind = "posterior"

        def fn(i):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the diagnostics are reported below instead
                # R-hat and ESS are computed below, in the diagnostics phase (same values)
                return sample(problem, y, key=jax.random.key(seed + 7919 * i), method=method,
                              num_chains=chains, num_warmup=warmup, num_samples=samples, init=init,
                              diagnose=False, **options)

        post, secs, comp, again = _timed(fn, repeat)
        t_diag = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = post.diagnose()
        estimate = post.mean()
        q = post.quantile(jnp.array([0.05, 0.95]))
        band = (jax.tree.map(lambda a: a[0], q), jax.tree.map(lambda a: a[1], q))
        ess = np.asarray(post.min_ess)
        diag.update(max_rhat=float(np.max(post.max_rhat)), min_ess=float(np.min(ess)),
                    ess_per_s=float(np.min(ess) / secs), divergences=int(np.sum(post.num_divergent)),
                    coverage90=coverage(*band, benchmark.theta_true), warnings=list(post.warnings))
        result = post
    else:
        kind = "point"
        if method in ("map", "newton"):
            opt = "newton" if method == "newton" else None
            # warn=False: the share converged is recorded and reported (flagged) instead
            result, secs, comp, again = _timed(
                lambda i: solve_map(problem, y, optimizer=opt, warn=False, **options), repeat)
            t_diag = time.perf_counter()
            estimate = result.theta
            diag["converged"] = float(np.mean(np.asarray(result.converged)))
        elif method == "laplace":
            result, secs, comp, again = _timed(lambda i: laplace(problem, y, warn=False, **options), repeat)
            t_diag = time.perf_counter()
            estimate = result.mode
            sd = jnp.sqrt(jnp.diagonal(result.covariance, axis1=-2, axis2=-1))
            if _identity_bijector(problem):  # the band is in θ's space only when u is θ
                ref = problem.theta_shape_dtype()
                if hasattr(ref, "shape"):
                    sd = sd.reshape(*sd.shape[:-1], *ref.shape)
                    band = (estimate - 1.6448536269514722 * sd, estimate + 1.6448536269514722 * sd)
                    diag["coverage90"] = coverage(*band, benchmark.theta_true)
            diag["converged"] = float(np.mean(np.asarray(result.ok)))
        else:
            A = linear_matrix(benchmark)
            rule = method.split("-", 1)[1]
            shape = jax.tree.leaves(problem.theta_shape_dtype())[0].shape
            yb = y.reshape(*y.shape[:nbatch], -1)
            noise = benchmark.info.get("noise_std") if rule == "discrepancy" else None
            result, secs, comp, again = _timed(
                lambda i: tikhonov(A, yb, lam=rule, noise_std=noise, **options), repeat)
            t_diag = time.perf_counter()
            estimate = result.x.reshape(*result.x.shape[:-1], *shape)
            diag["lam"] = float(np.median(np.asarray(result.lam)))
    diag["seconds"] = secs
    jax.block_until_ready((estimate, band))
    phases = {"compile": comp, "sampling" if kind == "posterior" else "solve": secs}
    if repeat:
        phases["repeat"] = again
    phases["diagnostics"] = time.perf_counter() - t_diag
    scores, phases["scoring"] = _timed_score(benchmark, result if kind == "posterior" else estimate, score)
    return _finish(Run(method, kind, estimate, result, band, secs, comp, scores, diag, phases), t_start)


def _timed_score(benchmark, result, score: bool) -> tuple[dict, float | None]:
    if not score:
        return {}, None
    t0 = time.perf_counter()
    scores = _score(benchmark, result)
    return scores, time.perf_counter() - t0


def _finish(run: Run, t_start: float) -> Run:
    """Set the wall time, and ESS per second of it."""
    run.wall_seconds = time.perf_counter() - t_start
    if "min_ess" in run.diagnostics:
        run.diagnostics["ess_per_s_total"] = run.diagnostics["min_ess"] / run.wall_seconds
    return run


def phase_total(phases: dict) -> float:
    """The sum of the timed phases (skipped ones, None, count 0)."""
    return float(sum(v for v in phases.values() if v is not None))


def _identity_bijector(problem) -> bool:
    from .bijectors import Identity

    return isinstance(getattr(problem.prior, "bijector", None), Identity)


def _score(benchmark, result) -> dict:
    from .problems import evaluate

    out = evaluate(benchmark, result)
    return {k: (float(np.mean(v)) if np.ndim(v) else v) for k, v in out.items()}


# -- the matrix -------------------------------------------------------------------------------

def resolve_suite(suite: str, problems=None, methods=None) -> tuple[dict, list[str], dict]:
    """``(problems -> options, methods, sampler settings)`` of a suite, narrowed by the lists."""
    if suite not in SUITES:
        raise ValueError(f"suite: got {suite!r}, expected one of {', '.join(SUITES)}")
    spec = SUITES[suite]
    probs = dict(spec["problems"])
    if problems:
        probs = {p: probs.get(p, {}) for p in problems}
    meths = list(methods) if methods else list(spec["methods"])
    for m in meths:
        check_method(m)
    return probs, meths, {k: spec[k] for k in ("chains", "warmup", "samples")}


def run_matrix(problems: dict[str, dict], methods: list[str], *, seed: int = 0, chains: int = 4,
               warmup: int = 300, samples: int = 300, on_step: Callable | None = None) -> list[dict]:
    """Every applicable (problem, method) pair; one flat record per pair.

    ``on_step(problem, method)`` is called before each pair (progress reporting). A pair that
    does not apply is recorded with ``status="n/a"`` and the reason; one that fails with
    ``status="failed"`` and the error, without stopping the others; one that ran but whose
    result should not be trusted as it is (solves that did not converge, sampler warnings such
    as a high R-hat) with ``status="flagged"`` and the reasons in ``note``.
    """
    from .problems import load
    from .problems.metrics import metric_info

    records = []
    for pname, popts in problems.items():
        bench = load(pname, **{"seed": seed, **popts})
        for m in methods:
            if on_step is not None:
                on_step(pname, m)
            rec: dict[str, Any] = {"problem": pname, "method": m, "kind": "posterior" if m in SAMPLE_METHODS
                                   else "point"}
            reason = applicable(bench, m)
            if reason:
                records.append({**rec, "status": "n/a", "note": reason})
                continue
            try:
                run = run_method(bench, m, seed=seed, chains=chains, warmup=warmup, samples=samples)
            except Exception as exc:  # one failed pair must not stop the matrix
                records.append({**rec, "status": "failed", "note": f"{type(exc).__name__}: {exc}"})
                continue
            diag = {k: v for k, v in run.diagnostics.items() if k != "warnings"}
            problems_found = list(run.diagnostics.get("warnings", []))
            if diag.get("converged", 1.0) < 1.0:
                problems_found.insert(0, f"{1 - diag['converged']:.0%} of the solves did not converge")
            metric = run.scores.get("metric")
            records.append({**rec, "status": "flagged" if problems_found else "ok",
                            "metric": metric, "value": run.scores.get("value"),
                            "better": None if metric is None else metric_info(metric).short,
                            "compile_s": run.compile_seconds, **diag,
                            "diagnostics_s": run.phases["diagnostics"], "scoring_s": run.phases["scoring"],
                            "total_s": run.wall_seconds, "note": "; ".join(problems_found)})
    return records


# -- a large batch in chunks (progress between chunks) -----------------------------------------

def _concat(results: list):
    return jax.tree.map(lambda *a: jnp.concatenate(a), *results)


def _gaussian_fields(approx) -> list[str]:
    """The batched fields of a Laplace result (all but the problem), by name: the dataclass
    order is not the order they are declared in (the abstract base's fields come first)."""
    return [f.name for f in dataclasses.fields(approx) if f.name != "problem"]


def _merge(kind_result: str, results: list):
    from .laplace import GaussianApproximation
    from .lowrank import LowRankGaussianApproximation
    from .posterior import Posterior, concatenate

    first = results[0]
    if isinstance(first, Posterior):
        return concatenate(results)
    if isinstance(first, (GaussianApproximation, LowRankGaussianApproximation)):
        joined = {f: _concat([getattr(r, f) for r in results]) for f in _gaussian_fields(first)}
        return dataclasses.replace(first, **joined)
    return _concat(results)


def _take(obj, keep: int):
    """The first ``keep`` batch elements of a result (the problem inside Laplace left whole)."""
    from .laplace import GaussianApproximation
    from .lowrank import LowRankGaussianApproximation

    if obj is None:
        return None
    if isinstance(obj, (GaussianApproximation, LowRankGaussianApproximation)):
        return dataclasses.replace(obj, **{f: getattr(obj, f)[:keep] for f in _gaussian_fields(obj)})
    if getattr(obj, "starts", None) is not None:
        obj = eqx_drop_starts(obj)
    return jax.tree.map(lambda a: a[:keep], obj)


def eqx_drop_starts(result):
    import equinox as eqx

    return eqx.tree_at(lambda r: r.starts, result, None, is_leaf=lambda x: x is None)


def run_chunked(benchmark, method: str, *, chunk: int, on_chunk: Callable | None = None, **kwargs) -> Run:
    """`run_method` on a batched benchmark, ``chunk`` observations at a time.

    The chunks share one compiled program (the last one is padded to the chunk size), so the
    cost is one compilation plus the work; ``on_chunk(done, total)`` reports progress between
    chunks. Scores and diagnostics are those of the whole batch.
    """
    t_start = time.perf_counter()
    _, batch = benchmark.problem.check_y(benchmark.y)
    if len(batch) != 1 or batch[0] <= chunk:
        run = run_method(benchmark, method, **kwargs)
        if on_chunk is not None:
            on_chunk(batch[0] if batch else 1, batch[0] if batch else 1)
        return run
    total = batch[0]
    score = kwargs.pop("score", True)
    runs = []
    t_chunk = time.perf_counter()
    for start in range(0, total, chunk):
        idx = np.minimum(np.arange(start, start + chunk), total - 1)  # pad with the last observation
        part = dataclasses.replace(benchmark, y=benchmark.y[idx],
                                   theta_true=jax.tree.map(lambda a: a[idx], benchmark.theta_true))
        run = run_method(part, method, score=False, **kwargs)
        keep = min(chunk, total - start)
        runs.append((_take(run.estimate, keep), _take(run.result, keep), _take(run.band, keep), run))
        if on_chunk is not None:
            on_chunk(start + keep, total)
    estimate = _concat([r[0] for r in runs])
    result = _merge(method, [r[1] for r in runs])
    band = None if runs[0][2] is None else _concat([r[2] for r in runs])
    jax.block_until_ready((estimate, band))
    phases = {k: sum(r[3].phases[k] for r in runs) for k in runs[0][3].phases if k != "scoring"}
    # what the chunks' own phases leave out: slicing, padding, joining, their argument checks
    phases["chunking"] = time.perf_counter() - t_chunk - sum(phase_total(r[3].phases) for r in runs)
    t_diag = time.perf_counter()
    seconds = sum(r[3].seconds for r in runs)
    comp = sum((r[3].compile_seconds or 0.0) for r in runs)
    diag = _whole_batch_diagnostics(benchmark, result, band, seconds, runs[0][3].diagnostics)
    phases["diagnostics"] += time.perf_counter() - t_diag
    phases = {k: phases[k] for k in PHASES if k in phases}  # in the order of PHASES
    scored = result if method in SAMPLE_METHODS else estimate
    scores, phases["scoring"] = _timed_score(benchmark, scored, score)
    return _finish(Run(method, runs[0][3].kind, estimate, result, band, seconds, comp, scores, diag, phases),
                   t_start)


def _whole_batch_diagnostics(benchmark, result, band: tuple[Any, Any] | None, seconds, first: dict) -> dict:
    diag: dict[str, Any] = {"seconds": seconds}
    if hasattr(result, "min_ess"):
        ess = np.asarray(result.min_ess)
        diag.update(max_rhat=float(np.max(result.max_rhat)), min_ess=float(np.min(ess)),
                    ess_per_s=float(np.min(ess) / seconds), divergences=int(np.sum(result.num_divergent)),
                    warnings=list(result.warnings))
    if band is not None:
        diag["coverage90"] = coverage(*band, benchmark.theta_true)
    if hasattr(result, "converged"):
        diag["converged"] = float(np.mean(np.asarray(result.converged)))
    if hasattr(result, "ok") and not hasattr(result, "min_ess"):
        diag["converged"] = float(np.mean(np.asarray(result.ok)))
    if hasattr(result, "lam"):
        diag["lam"] = float(np.median(np.asarray(result.lam)))
    return diag
