"""Saving and loading trained estimators, keyed by the problem's fingerprint.

A file holds one line ``jinverse-amortized 1``, one line of JSON (the estimator's kind, the
settings that rebuild its network, its training cost and the fingerprint of the problem it was
trained for), then the network's weights, standardisation and loss history written by
`equinox.tree_serialise_leaves`. Loading rebuilds the network from the settings (no pickle) and
refuses a problem whose fingerprint differs.
"""

from __future__ import annotations

import json
import os
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp

from ..problem import InverseProblem
from .estimators import (
    MixtureDensity,
    MixtureNet,
    Normaliser,
    PointEstimator,
    Regressor,
    fingerprint,
    unconstrained_ravel,
)

MAGIC = b"jinverse-amortized 1\n"


def _payload(est):
    return (est.net, est.norm, est.losses)


def save(estimator: PointEstimator | MixtureDensity, path) -> pathlib.Path:
    """Write ``estimator`` to ``path`` (written to a temporary file, then moved into place)."""
    if not isinstance(estimator, (PointEstimator, MixtureDensity)):
        raise TypeError(f"estimator: got {type(estimator).__name__}, expected a jinverse.amortized "
                        "PointEstimator or MixtureDensity")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: got {type(path).__name__}, expected a file path")
    path = pathlib.Path(path)
    header = {"fingerprint": estimator.fingerprint, "config": dict(estimator.config),
              "m": int(estimator.norm.y_loc.size), "d": int(estimator.norm.u_loc.size),
              "num_losses": int(estimator.losses.size)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(MAGIC)
        f.write(json.dumps(header).encode() + b"\n")
        eqx.tree_serialise_leaves(f, _payload(estimator))
    os.replace(tmp, path)
    return path


def load(path, problem: InverseProblem) -> PointEstimator | MixtureDensity:
    """Read an estimator saved by `save`, for ``problem``.

    Raises:
        ValueError: the file is not an estimator file, or ``problem``'s fingerprint is not the one
            the estimator was trained for.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: got {type(path).__name__}, expected a file path")
    if not isinstance(problem, InverseProblem):
        raise TypeError(f"problem: got {type(problem).__name__}, expected a jinverse.InverseProblem")
    path = pathlib.Path(path)
    with open(path, "rb") as f:
        if f.readline() != MAGIC:
            raise ValueError(f"path: {path} is not a jinverse.amortized estimator file (no '{MAGIC.decode().strip()}' "
                             "header)")
        header = json.loads(f.readline())
        got = fingerprint(problem)
        if got != header["fingerprint"]:
            raise ValueError(f"problem: has fingerprint {got}, but the estimator in {path} was trained for a "
                             f"problem with fingerprint {header['fingerprint']}; load it with the problem it was "
                             "trained for, or train one for this problem")
        cfg = header["config"]
        m, d = header["m"], header["d"]
        if unconstrained_ravel(problem)[0] != d:  # pragma: no cover - the fingerprint covers the shapes
            raise ValueError(f"problem: has {unconstrained_ravel(problem)[0]} unknowns, the file {d}")
        dtype = jnp.dtype(cfg["dtype"])
        key = jax.random.key(0)  # any key: every weight is overwritten from the file
        net: Regressor | MixtureNet
        if cfg["kind"] == "point":
            net = Regressor(m, d, cfg["width"], cfg["depth"], dtype, key=key)
        else:
            net = MixtureNet(m, d, cfg["num_components"], cfg["covariance"], cfg["width"], cfg["depth"], dtype,
                             key=key)
        vec = lambda n: jnp.zeros(n, dtype)  # noqa: E731
        like = (net, Normaliser(vec(m), vec(m), vec(d), vec(d)), vec(header["num_losses"]))
        net, norm, losses = eqx.tree_deserialise_leaves(f, like)
    config = tuple(cfg.items())
    if isinstance(net, Regressor):
        return PointEstimator(problem, net, norm, losses, header["fingerprint"], config)
    return MixtureDensity(problem, net, norm, losses, header["fingerprint"], config)
