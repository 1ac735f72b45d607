"""Result files a user can reload: `save_result` and `load_result` (``ji.load_result``).

Two formats, each carrying what makes a run repeatable and checkable: the metadata (problem,
options, method, seed, settings, package versions, counts per status) and the data it was
run on (the observations ``y`` and, when known, the true ``theta_true``):

- ``.npz`` + ``.json``: the arrays in a NumPy archive, the metadata in a JSON file of the same
  stem beside it. Works for every result: `MAPResult`, `Posterior`, `GaussianApproximation`
  and `LowRankGaussianApproximation` (Laplace), `TikhonovResult`, or a dict of arrays.
- ``.nc`` (NetCDF through ArviZ/xarray, needs the ``arviz`` extra): posteriors only; draws in
  the ``posterior`` group with dims ``(chain, draw, obs_0.., theta_dim_0..)``, sampler statistics
  in ``sample_stats``, ``y`` in ``observed_data``, per-observation diagnostics and
  ``theta_true`` in a ``jinverse`` group, the metadata as JSON in the ``posterior`` attributes.
  ArviZ reads it directly (``az.from_netcdf``).

θ may be a pytree: its leaves are stored under their key paths and rebuilt as nested dicts
and lists on loading.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
import platform
from typing import Any

import jax
import numpy as np

FORMAT_VERSION = 1
KINDS = ("map", "posterior", "laplace", "tikhonov", "arrays")


@dataclasses.dataclass
class LoadedResult:
    """What `load_result` returns: the ``result`` object, its ``metadata`` dict, and the data
    the run was given: ``y`` (the observations) and ``theta_true`` (None when not stored).

    Attribute access falls through to ``result``: ``ji.load_result(p).theta`` works for a MAP
    result, ``ji.load_result(p).mean()`` for a posterior.
    """

    result: Any
    metadata: dict
    y: Any = None
    theta_true: Any = None

    @property
    def kind(self) -> str:
        return self.metadata["kind"]

    def __getattr__(self, name):
        if name in ("result", "metadata", "y", "theta_true"):
            raise AttributeError(name)
        return getattr(self.result, name)


def versions() -> dict[str, str]:
    """Versions of python and the packages a result depends on."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("jinverse", "jax", "jaxlib", "numpy", "optax", "blackjax", "equinox"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.ndarray, jax.Array)):
        return np.asarray(x).tolist()
    if isinstance(x, (np.generic,)):
        return x.item()
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return repr(x)


def _kind(result) -> str:
    from .laplace import GaussianApproximation
    from .linear import TikhonovResult
    from .lowrank import LowRankGaussianApproximation
    from .map import MAPResult
    from .posterior import Posterior

    for cls, name in ((MAPResult, "map"), (Posterior, "posterior"), (GaussianApproximation, "laplace"),
                      (LowRankGaussianApproximation, "laplace"), (TikhonovResult, "tikhonov")):
        if isinstance(result, cls):
            return name
    if isinstance(result, dict):
        return "arrays"
    raise TypeError(f"result: got {type(result).__name__}, expected a MAPResult, Posterior, "
                    "GaussianApproximation, LowRankGaussianApproximation, TikhonovResult or a dict of arrays")


def status_counts(result) -> dict[str, int]:
    """How many batch elements have each status: for results coded by `jinverse.status.MAPStatus`
    (MAP, Laplace, Tikhonov/TSVD) the count of each code, by its lower-case name (``converged``,
    ``max_steps``, ``not_positive_definite``, ...); for a posterior the number of observations
    with each flag of `jinverse.status.SamplingStatus` (``ok``: none). ``{}`` for other kinds."""
    from .status import MAPStatus, SamplingStatus

    kind = _kind(result)
    if kind in ("map", "laplace", "tikhonov"):
        codes = np.asarray(result.status).ravel()
        return {MAPStatus(int(c)).name.lower(): int(np.count_nonzero(codes == c)) for c in np.unique(codes)}
    if kind == "posterior":
        codes = np.asarray(result.status).ravel()
        out = {"ok": int(np.count_nonzero(codes == 0))}
        for flag in SamplingStatus:
            if flag and flag.name and np.any(codes & flag):  # (members are named; mypy reads str | None)
                out[flag.name.lower()] = int(np.count_nonzero(codes & flag))
        return out
    return {}


# -- pytrees of θ <-> flat named arrays ------------------------------------------------------

def _path_entry(k):
    if isinstance(k, jax.tree_util.DictKey):
        return ["dict", k.key if isinstance(k.key, (str, int)) else str(k.key)]
    if isinstance(k, jax.tree_util.SequenceKey):
        return ["seq", k.idx]
    return ["attr", str(getattr(k, "name", k))]


def _flatten_tree(prefix: str, tree) -> tuple[dict[str, np.ndarray], list]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    arrays, paths = {}, []
    for i, (path, leaf) in enumerate(leaves):
        name = prefix if len(leaves) == 1 and not path else f"{prefix}.{i}"
        arrays[name] = np.asarray(leaf)
        paths.append([_path_entry(k) for k in path])
    return arrays, paths


def _unflatten_tree(prefix: str, arrays: dict, paths: list):
    if len(paths) == 1 and not paths[0]:
        return np.asarray(arrays[prefix])
    root: dict = {}
    for i, path in enumerate(paths):
        node = root
        for j, (kind, key) in enumerate(path):
            if j == len(path) - 1:
                node[(kind, key)] = np.asarray(arrays[f"{prefix}.{i}"])
            else:
                node = node.setdefault((kind, key), {})

    def build(node):
        if not isinstance(node, dict):
            return node
        items = {k: build(v) for k, v in node.items()}
        if items and all(kind == "seq" for kind, _ in items):
            return [items[k] for k in sorted(items, key=lambda k: k[1])]
        return {key: v for (_, key), v in items.items()}

    return build(root)


# -- saving ------------------------------------------------------------------------------------

def _payload(result, kind: str) -> tuple[dict[str, np.ndarray], dict]:
    """The named arrays of a result and the extra metadata needed to rebuild it."""
    extra: dict[str, Any] = {}
    if kind == "map":
        arrays, extra["theta_paths"] = _flatten_tree("theta", result.theta)
        for f in ("log_posterior", "grad_norm", "num_steps", "converged", "status"):
            arrays[f] = np.asarray(getattr(result, f))
    elif kind == "posterior":
        arrays, extra["theta_paths"] = _flatten_tree("samples", result.samples)
        for f, v in result.stats._asdict().items():
            arrays[f"stats.{f}"] = np.asarray(v)
        for f in ("max_rhat", "min_ess", "num_divergent", "status"):
            arrays[f] = np.asarray(getattr(result, f))
        extra.update(method=result.method, num_warmup=result.num_warmup, warnings=list(result.warnings),
                     batch_shape=list(result.batch_shape))
        if result.tempering is not None:  # replica exchange: the ladder and swap acceptance per pair
            arrays.update({f"tempering.{f}": np.asarray(v) for f, v in result.tempering._asdict().items()})
    elif kind == "laplace":
        arrays, extra["theta_paths"] = _flatten_tree("mode", result.mode)
        arrays.update(mean=np.asarray(result.mean), ok=np.asarray(result.ok), status=np.asarray(result.status))
        if hasattr(result, "eigvecs"):  # prior plus a low-rank update: O(d r), never the dense matrix
            extra["form"] = "lowrank"
            arrays.update(eigvals=np.asarray(result.eigvals), eigvecs=np.asarray(result.eigvecs))
        else:
            extra["form"] = "dense"
            arrays["covariance"] = np.asarray(result.covariance)
    elif kind == "tikhonov":
        arrays = {f: np.asarray(v) for f, v in result._asdict().items()}
    else:
        arrays = {str(k): np.asarray(v) for k, v in result.items()}
    extra["status_counts"] = status_counts(result)
    return arrays, extra


def _data_arrays(y, theta_true) -> tuple[dict[str, np.ndarray], dict]:
    """The observations and the truth, stored beside the result as ``data.y`` and
    ``data.theta_true[.i]`` (θ's key paths in the metadata)."""
    arrays: dict[str, np.ndarray] = {}
    extra: dict[str, Any] = {}
    if y is not None:
        arrays["data.y"] = np.asarray(y)
    if theta_true is not None:
        truth, extra["theta_true_paths"] = _flatten_tree("data.theta_true", theta_true)
        arrays.update(truth)
    return arrays, extra


def metadata_for(kind: str, benchmark=None, metadata: dict | None = None) -> dict:
    meta: dict[str, Any] = {"jinverse_result": FORMAT_VERSION, "kind": kind,
                            "created": datetime.datetime.now(datetime.UTC).isoformat(),
                            "versions": versions()}
    if benchmark is not None:
        meta["problem"] = benchmark.name
        meta["options"] = _jsonable(benchmark.options)
    meta.update(_jsonable(metadata or {}))
    return meta


def save_result(result, path, *, benchmark=None, metadata: dict | None = None, y=None,
                theta_true=None) -> pathlib.Path:
    """Write ``result`` to ``path`` (``.npz`` with a ``.json`` beside it, or ``.nc`` NetCDF).

    Args:
        result: a `MAPResult`, `Posterior`, `GaussianApproximation`,
            `LowRankGaussianApproximation`, `TikhonovResult` or a dict of arrays.
        path: the file; its suffix picks the format (``.nc`` for posteriors only). Without a
            suffix, ``.npz``.
        benchmark: the `ji.Benchmark` it solved; its name and options go into the metadata,
            its ``y`` and ``theta_true`` into the file (unless given below).
        metadata: more metadata (method, seed, settings...), anything JSON can hold.
        y: the observations the result was computed from (default ``benchmark.y``).
        theta_true: the true θ where known (default ``benchmark.theta_true``).

    Returns:
        The path of the main file written. Its metadata also holds the package versions and
        ``status_counts`` (how many observations have each status).
    """
    path = pathlib.Path(path)
    kind = _kind(result)
    if path.suffix not in (".npz", ".nc"):
        path = path.with_name(path.name + ".npz")
    if benchmark is not None:
        y = benchmark.y if y is None else y
        theta_true = benchmark.theta_true if theta_true is None else theta_true
    arrays, extra = _payload(result, kind)
    data, data_extra = _data_arrays(y, theta_true)
    meta = {**metadata_for(kind, benchmark, metadata), **extra, **data_extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".nc":
        if kind != "posterior":
            raise ValueError(f"path: got {str(path)!r} for a {kind} result; NetCDF (.nc) holds posteriors, "
                             "use .npz")
        _save_netcdf(result, path, meta, data)
        return path
    np.savez(path, **arrays, **data)  # type: ignore[arg-type]  # numpy's stub: a **dict might hold allow_pickle
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return path


def _save_netcdf(post, path: pathlib.Path, meta: dict, data: dict) -> None:
    try:
        import arviz as az
        import xarray as xr
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("NetCDF output needs arviz: pip install 'jinverse[arviz]' (or save to .npz)") from exc
    nb = len(post.batch_shape)
    obs = [f"obs_{i}" for i in range(nb)]
    leaves, _ = _flatten_tree("theta", post.samples)
    posterior, dims = {}, {}
    for name, a in leaves.items():
        key = name.replace(".", "_")
        posterior[key] = np.moveaxis(np.moveaxis(a, nb, 0), nb + 1, 1)  # (chain, draw, *batch, *theta)
        dims[key] = obs + [f"{key}_dim_{i}" for i in range(a.ndim - nb - 2)]
    stats = {f: np.moveaxis(np.moveaxis(np.asarray(v), nb, 0), nb + 1, 1)
             for f, v in post.stats._asdict().items()}
    dims.update({f: obs for f in stats})
    observed = {}
    if "data.y" in data:
        observed["y"] = data["data.y"]
        dims["y"] = obs[: observed["y"].ndim] + [f"y_dim_{i}" for i in range(observed["y"].ndim - nb)]
    idata = az.from_dict(posterior=posterior, sample_stats=stats, observed_data=observed or None, dims=dims)
    diag = {f: (obs, np.asarray(getattr(post, f))) for f in ("max_rhat", "min_ess", "num_divergent", "status")}
    if post.tempering is not None:  # the ladder per temperature, the swap acceptance per pair
        diag["tempering_betas"] = (obs + ["temperature"], np.asarray(post.tempering.betas))
        diag["tempering_swap_acceptance"] = (obs + ["temperature_pair"], np.asarray(post.tempering.swap_acceptance))
    for name, a in data.items():
        if name.startswith("data.theta_true"):
            key = name[len("data."):].replace(".", "_")
            diag[key] = (obs[: a.ndim] + [f"{key}_dim_{i}" for i in range(a.ndim - nb)], a)
    idata.add_groups(jinverse=xr.Dataset(diag))
    idata.posterior.attrs["jinverse"] = json.dumps({**meta, "variables": list(posterior)})
    idata.to_netcdf(str(path))


# -- loading -----------------------------------------------------------------------------------

RESULT_FILES = ("result.nc", "result.npz")  # what `jinverse solve/sample --out` writes


def load_result(path, *, problem=None) -> LoadedResult:
    """Read a file written by `save_result`, or the ``--out`` folder of `jinverse solve/sample`.

    Args:
        path: a ``.npz`` (or its ``.json``) or ``.nc`` file, or a folder holding ``result.npz``
            or ``result.nc`` (the newer one when both are there).
        problem: the `ji.InverseProblem` a Laplace result approximates (its bijector maps the
            Gaussian back to θ). Not needed for a built-in problem (the file names it and its
            options: it is rebuilt) nor for other kinds of result.

    Returns:
        A `LoadedResult` with ``result`` (a `MAPResult`, `Posterior`, `GaussianApproximation` or
        `LowRankGaussianApproximation`, `TikhonovResult`, or a dict), ``metadata`` (problem,
        options, method, seed, settings, versions, ``status_counts``), and the data of the run:
        ``y`` and ``theta_true`` (None when the file has none). Arrays come back as NumPy
        arrays with their stored dtype (no silent float64 -> float32 cast when JAX runs in
        float32).

    Example::

        res = ji.load_result("out/shaw")          # the folder of `jinverse solve shaw --out out/shaw`
        res.metadata["problem"], res.theta, res.theta_true
    """
    path = _result_file(pathlib.Path(path))
    if path.suffix == ".nc":
        return _load_netcdf(path, problem)
    if path.suffix == ".json":
        path = path.with_suffix(".npz")
    meta_path = path.with_suffix(".json")
    if not meta_path.exists():
        raise ValueError(f"path: {str(path)!r} has no metadata file {meta_path.name} beside it; expected a "
                         "file written by jinverse.save_result")
    meta = json.loads(meta_path.read_text())
    if "jinverse_result" not in meta:
        raise ValueError(f"path: {meta_path.name} is not jinverse result metadata")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return _loaded(meta["kind"], arrays, meta, problem)


def _result_file(path: pathlib.Path) -> pathlib.Path:
    if not path.exists():
        raise FileNotFoundError(f"path: {str(path)!r} does not exist")
    if not path.is_dir():
        return path
    found = [path / f for f in RESULT_FILES if (path / f).exists()]
    if not found:
        raise FileNotFoundError(f"path: the folder {str(path)!r} holds neither {' nor '.join(RESULT_FILES)}; "
                                "expected a result file or the --out folder of jinverse solve/sample")
    return max(found, key=lambda f: f.stat().st_mtime)


def _loaded(kind: str, arrays: dict, meta: dict, problem) -> LoadedResult:
    data = {k: v for k, v in arrays.items() if k.startswith("data.")}
    rest = {k: v for k, v in arrays.items() if not k.startswith("data.")}
    y = data.get("data.y")
    truth = None
    if "theta_true_paths" in meta:
        truth = _unflatten_tree("data.theta_true", data, meta["theta_true_paths"])
    return LoadedResult(_rebuild(kind, rest, meta, problem), meta, y, truth)


def _stored(a) -> Any:
    """A loaded array as the NumPy array it is: a float64 file stays float64 without
    ``jax_enable_x64``. It stands in for the ``jax.Array`` a result's fields are annotated with
    (the same operations work on it), hence ``Any``."""
    return np.asarray(a)


def _rebuild(kind: str, arrays: dict, meta: dict, problem=None):
    from ._samplers import Stats
    from .linear import TikhonovResult
    from .map import MAPResult
    from .posterior import Posterior

    if kind == "map":
        theta = _unflatten_tree("theta", arrays, meta["theta_paths"])
        f = {k: _stored(arrays[k]) for k in ("log_posterior", "grad_norm", "num_steps", "converged", "status")}
        return MAPResult(theta=theta, **f)
    if kind == "posterior":
        samples = _unflatten_tree("samples", arrays, meta["theta_paths"])
        found = {f: _stored(arrays[f"stats.{f}"]) for f in Stats._fields if f"stats.{f}" in arrays}
        # files written before a field existed (energy) read it as NaN
        stats = Stats(**{f: found.get(f, np.full_like(found["step_size"], np.nan)) for f in Stats._fields})
        tempering = None  # replica exchange's ladder and swap rates, where the file has them
        if "tempering.betas" in arrays:
            from .tempering import TemperingStats

            tempering = TemperingStats(*(_stored(arrays[f"tempering.{f}"]) for f in TemperingStats._fields))
        return Posterior(samples=samples, stats=stats, max_rhat=_stored(arrays["max_rhat"]),
                         min_ess=_stored(arrays["min_ess"]),
                         num_divergent=_stored(arrays["num_divergent"]),
                         status=_stored(arrays["status"]), warnings=tuple(meta["warnings"]),
                         method=meta["method"], num_warmup=int(meta["num_warmup"]), tempering=tempering)
    if kind == "laplace":
        return _rebuild_laplace(arrays, meta, problem)
    if kind == "tikhonov":
        return TikhonovResult(**{f: _stored(arrays[f]) for f in TikhonovResult._fields})
    return {k: _stored(v) for k, v in arrays.items()}


def _rebuild_laplace(arrays: dict, meta: dict, problem):
    """A `GaussianApproximation` (or the low-rank one) over ``problem``: the one given, else the
    built-in problem the metadata names, rebuilt from its options."""
    from .laplace import GaussianApproximation
    from .lowrank import LowRankGaussianApproximation
    from .problem import InverseProblem

    if problem is None and meta.get("problem") is not None:
        from . import problems

        if meta["problem"] in problems.names():
            problem = problems.load(meta["problem"], **meta.get("options", {})).problem
    if problem is None:
        raise ValueError("problem: got None for a Laplace result of a problem that is not built in; expected "
                         "the ji.InverseProblem it approximates (load_result(path, problem=...)): it maps "
                         "the Gaussian back to θ")
    if not isinstance(problem, InverseProblem):
        raise TypeError(f"problem: got {type(problem).__name__}, expected a ji.InverseProblem")
    mean, ok = _stored(arrays["mean"]), _stored(arrays["ok"])
    # files written before the status was stored: None, rebuilt from ok (`_gaussian.default_status`)
    status: Any = _stored(arrays["status"]) if "status" in arrays else None
    if meta.get("form") == "lowrank":
        return LowRankGaussianApproximation(mean=mean, eigvals=_stored(arrays["eigvals"]),
                                            eigvecs=_stored(arrays["eigvecs"]), ok=ok, problem=problem,
                                            status=status)
    return GaussianApproximation(mean=mean, covariance=_stored(arrays["covariance"]), ok=ok, problem=problem,
                                 status=status)


def _load_netcdf(path: pathlib.Path, problem=None) -> LoadedResult:
    import arviz as az

    idata = az.from_netcdf(str(path))
    if "jinverse" not in idata.posterior.attrs:
        raise ValueError(f"path: {str(path)!r} is a NetCDF file without jinverse metadata")
    meta = json.loads(idata.posterior.attrs["jinverse"])
    nb = len(meta["batch_shape"])
    back = lambda a: np.moveaxis(np.moveaxis(np.asarray(a), 1, nb + 1), 0, nb)  # noqa: E731
    arrays = {"samples" + key[len("theta"):].replace("_", ".", 1): back(idata.posterior[key].values)
              for key in meta["variables"]}
    for f in idata.sample_stats.data_vars:
        arrays[f"stats.{f}"] = back(idata.sample_stats[f].values)
    for f in idata.jinverse.data_vars:
        name = f
        if f == "theta_true" or f.startswith("theta_true_"):  # data.theta_true[.i] (see _save_netcdf)
            name = "data.theta_true" + ("." + f[len("theta_true_"):] if f != "theta_true" else "")
        elif f.startswith("tempering_"):
            name = "tempering." + f[len("tempering_"):]
        arrays[name] = np.asarray(idata.jinverse[f].values)
    if "observed_data" in idata.groups() and "y" in idata.observed_data:
        arrays["data.y"] = np.asarray(idata.observed_data["y"].values)
    return _loaded("posterior", arrays, meta, problem)
