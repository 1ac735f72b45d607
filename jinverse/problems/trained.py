"""Inverting trained models (family ``"trained"``).

Two small `equinox` MLPs trained in-process with optax on synthetic data whose true input-output
relation is known, so that the set of inputs producing an output (the preimage) is known:

- ``trained_regressor``: learns ``f(x) = ||x||²`` on the box ``[-2, 2]^dim``; the preimage of a
  value ``y`` is the sphere of radius ``√y`` (a circle for ``dim=2``) — a many-to-one model.
- ``trained_classifier``: learns the class of a point of ``[-2, 2]²`` by its angle (``K`` equal
  sectors); the preimage of label ``k`` is the k-th sector.

Training takes a few seconds (one jitted `lax.scan` of full-batch Adam, fixed seed); the trained
parameters are stored under ``$JINVERSE_CACHE/trained`` (or ``~/.cache/jinverse/trained``), keyed
by every option that affects training, the precision and the jinverse and JAX versions, and loaded
from there by later processes. Their metric, ``"repredict"`` (`score_repredict`), checks that a found θ makes the
model predict the target, that it lies on the true preimage, and for a posterior how much of the
preimage its draws cover.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import likelihoods as lik
from .. import priors
from .._checks import check_positive_int
from ..problem import InverseProblem
from . import reference as ref
from ._registry import Benchmark, register
from .sbi import observe

_BOX = 2.0


def _train(model, loss_fn, x, t, steps: int, lr: float):
    """Full-batch Adam with a cosine-decayed step size, one jitted scan."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.01))

    def loss(p):
        return loss_fn(jax.vmap(eqx.combine(p, static))(x), t)

    @jax.jit
    def run(p):
        def step(carry, _):
            p, s = carry
            val, g = jax.value_and_grad(loss)(p)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), val

        (p, _), hist = jax.lax.scan(step, (p, opt.init(p)), None, length=steps)
        return p, hist

    params, _ = run(params)
    return eqx.combine(params, static)


def _trained(name: str, options: dict, model, train):
    """``train(model)`` -> ``(model, errors)``, or what an earlier call with the same ``options``
    stored (the parameters loaded into ``model``, the untrained network of the same structure)."""
    from importlib.metadata import version

    key = {"name": name, **options, "dtype": str(jnp.result_type(float)),
           "jinverse": version("jinverse"), "jax": jax.__version__}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = ref.cache_dir() / "trained" / f"{name}-{digest}.eqx"
    errors_path = path.with_suffix(".json")
    if path.exists() and errors_path.exists():
        try:
            return eqx.tree_deserialise_leaves(path, model), json.loads(errors_path.read_text())["errors"]
        except Exception:  # a truncated or foreign file: train again and overwrite it
            pass
    trained, errors = train(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # each file written whole, then moved in
    eqx.tree_serialise_leaves(tmp, trained)
    os.replace(tmp, path)
    tmp.write_text(json.dumps({"key": key, "errors": errors}))
    os.replace(tmp, errors_path)
    # Returned as a later process will load it (the same bits, placed on the device the same way),
    # so that the programs compiled with it here are the ones the persistent cache gives back there.
    return eqx.tree_deserialise_leaves(path, model), errors


def squared_norm(x):
    """The regressor's true function ``||x||²``."""
    return jnp.sum(x**2, axis=-1)


def sector(x, num_classes: int):
    """The classifier's true function: the index of the angular sector of ``x`` (``K`` equal
    sectors starting at angle -π)."""
    angle = jnp.arctan2(x[..., 1], x[..., 0]) + jnp.pi
    return jnp.minimum((angle / (2 * jnp.pi / num_classes)).astype(jnp.int32), num_classes - 1)


@functools.lru_cache(maxsize=8)
def trained_regressor_model(dim: int = 2, width: int = 32, depth: int = 2, steps: int = 2000,
                            seed: int = 0):
    """``(model, errors)``: an MLP ``R^dim -> R`` fit to ``||x||²`` on ``[-2, 2]^dim``;
    ``errors`` holds its RMSE on the training set and on a fresh test set."""
    k_init, k_x, k_test = jax.random.split(jax.random.key(seed), 3)
    model = eqx.nn.MLP(dim, "scalar", width, depth, activation=jax.nn.tanh, key=k_init)

    def train(model):
        x = jax.random.uniform(k_x, (4096, dim), minval=-_BOX, maxval=_BOX)
        model = _train(model, lambda p, t: jnp.mean((p - t) ** 2), x, squared_norm(x), steps, 1e-2)
        xt = jax.random.uniform(k_test, (4096, dim), minval=-_BOX, maxval=_BOX)
        rmse = {n: float(jnp.sqrt(jnp.mean((jax.vmap(model)(a) - squared_norm(a)) ** 2)))
                for n, a in (("train_rmse", x), ("test_rmse", xt))}
        return model, rmse

    options = dict(dim=dim, width=width, depth=depth, steps=steps, seed=seed, lr=1e-2, n_train=4096)
    return _trained("regressor", options, model, train)


@functools.lru_cache(maxsize=8)
def trained_classifier_model(num_classes: int = 4, width: int = 32, depth: int = 2,
                             steps: int = 2000, seed: int = 0):
    """``(model, errors)``: an MLP ``R² -> R^K`` (logits) fit to `sector` on ``[-2, 2]²``;
    ``errors`` holds its accuracy on the training set and on a fresh test set."""
    k_init, k_x, k_test = jax.random.split(jax.random.key(seed), 3)
    model = eqx.nn.MLP(2, num_classes, width, depth, activation=jax.nn.tanh, key=k_init)

    def loss(logits, label):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, label))

    def train(model):
        x = jax.random.uniform(k_x, (4096, 2), minval=-_BOX, maxval=_BOX)
        model = _train(model, loss, x, sector(x, num_classes), steps, 1e-2)
        xt = jax.random.uniform(k_test, (4096, 2), minval=-_BOX, maxval=_BOX)
        acc = {n: float(jnp.mean(jnp.argmax(jax.vmap(model)(a), -1) == sector(a, num_classes)))
               for n, a in (("train_accuracy", x), ("test_accuracy", xt))}
        return model, acc

    options = dict(num_classes=num_classes, width=width, depth=depth, steps=steps, seed=seed, lr=1e-2,
                   n_train=4096)
    return _trained("classifier", options, model, train)


def _box_prior(dim):
    return priors.Uniform(-_BOX * jnp.ones(dim), _BOX * jnp.ones(dim))


def _reference_draws(name, model, problem, y, seed, num, log_bound):
    """Exact posterior draws for each observation in ``y`` (``(*batch,)``): rejection from the
    uniform prior with ``log_bound`` the likelihood's maximum; stored on disk (`reference.cached`),
    keyed by the network's parameters, the likelihood, ``y`` and the sizes."""
    ys = np.atleast_1d(np.asarray(y))

    def build():
        return np.stack([ref.rejection_from_prior(jax.random.key(seed + i), problem, yi, num,
                                                  log_bound=log_bound) for i, yi in enumerate(ys)])

    params = np.concatenate([np.ravel(a) for a in jax.tree.leaves(eqx.filter(model, eqx.is_array))])
    parts = {"y": ys, "seed": seed, "num": num, "log_bound": log_bound, "params": params,
             "likelihood": repr(problem.likelihood), "dtype": str(jnp.result_type(float))}
    draws = ref.cached(name, parts, build)
    return jnp.asarray(draws if np.ndim(y) else draws[0])


@register("trained_regressor", "invert an MLP trained to learn ||x||^2 on [-2, 2]^dim: many-to-one, "
          "the preimage is a circle (sphere)", "trained")
def trained_regressor(*, seed=0, batch=None, dim=2, noise=0.05, num_reference=2000, width=32,
                      steps=2000):
    """θ ~ U(-2, 2)^dim, y = model(θ) + N(0, noise²) with the trained regressor ``model``.

    ``noise`` is the absolute noise std (the outputs range over [0, 4 dim]). ``reference`` holds
    exact rejection draws for each observation (in 2-D and 3-D; none above).
    """
    dim = check_positive_int("dim", dim)
    if not (isinstance(noise, (int, float)) and not isinstance(noise, bool) and noise > 0):
        raise ValueError(f"noise: got {noise!r}, expected a number > 0 (the output noise std)")
    model, errors = trained_regressor_model(dim, width, 2, steps)
    problem = InverseProblem(model, _box_prior(dim), lik.Gaussian(float(noise)))
    theta, y = observe(problem, seed, batch)
    reference = None
    if dim <= 3:  # the Gaussian log-likelihood is at most -log(noise √(2π))
        bound = -math.log(noise * math.sqrt(2 * math.pi))
        reference = {"draws": _reference_draws("trained_regressor", model, problem, y, seed, num_reference,
                                                bound)}
    info = {"kind": "regressor", "model": model, "true_function": squared_norm, **errors}
    opts = dict(seed=seed, batch=batch, dim=dim, noise=noise, num_reference=num_reference,
                width=width, steps=steps)
    return Benchmark("trained_regressor", problem, y, theta, reference, "repredict", opts, info)


@register("trained_classifier", "invert an MLP classifier of points of [-2, 2]^2 into K angular "
          "sectors: which inputs does it put in class k?", "trained")
def trained_classifier(*, seed=0, batch=None, num_classes=4, num_reference=2000, width=32,
                       steps=2000):
    """θ ~ U(-2, 2)², y ~ Categorical(softmax(model(θ))) with the trained classifier ``model``.

    The preimage of label k is the k-th angular sector of the box. ``reference`` holds exact
    rejection draws for each observation.
    """
    num_classes = check_positive_int("num_classes", num_classes)
    if num_classes < 2:
        raise ValueError(f"num_classes: got {num_classes}, expected at least 2")
    model, errors = trained_classifier_model(num_classes, width, 2, steps)
    problem = InverseProblem(model, _box_prior(2), lik.Categorical())
    theta, y = observe(problem, seed, batch)
    y = y.astype(jnp.result_type(float))
    # the Categorical log-likelihood is at most 0
    reference = {"draws": _reference_draws("trained_classifier", model, problem, y, seed, num_reference,
                                            0.0)}
    info = {"kind": "classifier", "model": model, "num_classes": num_classes,
            "true_function": functools.partial(sector, num_classes=num_classes), **errors}
    opts = dict(seed=seed, batch=batch, num_classes=num_classes, num_reference=num_reference,
                width=width, steps=steps)
    return Benchmark("trained_classifier", problem, y, theta, reference, "repredict", opts, info)


# --------------------------------------------------------------------------------------
# the "repredict" metric
# --------------------------------------------------------------------------------------
def preimage_points(benchmark: Benchmark, y, num: int = 512) -> np.ndarray:
    """Points spread over the true preimage of one observation ``y`` inside the prior box."""
    dim = benchmark.problem.prior.event_shape[0]
    rng = np.random.default_rng(0)
    if benchmark.info["kind"] == "regressor":
        z = rng.standard_normal((num * 4, dim))
        pts = math.sqrt(max(float(y), 0.0)) * z / np.linalg.norm(z, axis=1, keepdims=True)
    else:
        pts = rng.uniform(-_BOX, _BOX, (num * 4 * benchmark.info["num_classes"], dim))
        pts = pts[np.asarray(benchmark.info["true_function"](pts)) == int(y)]
    return pts[np.all(np.abs(pts) <= _BOX, axis=1)][:num]


def _score_one(benchmark, y, theta, radius):
    model, f = benchmark.info["model"], benchmark.info["true_function"]
    pred = jax.vmap(model)(jnp.asarray(theta))
    if benchmark.info["kind"] == "regressor":
        noise = float(benchmark.problem.likelihood.std)
        err = np.abs(np.asarray(pred) - float(y))
        out = {"repredict_error": float(err.mean()), "repredict": float(np.mean(err < 3 * noise)),
               "in_preimage": float(np.mean(np.abs(np.asarray(f(theta)) - float(y)) < 3 * noise
                                            + 3 * benchmark.info["test_rmse"]))}
    else:
        out = {"repredict": float(np.mean(np.asarray(jnp.argmax(pred, -1)) == int(y))),
               "in_preimage": float(np.mean(np.asarray(f(theta)) == int(y)))}
    if len(theta) > 1:
        pts = preimage_points(benchmark, y)
        d2 = np.sum((pts[:, None, :] - np.asarray(theta)[None, :, :]) ** 2, axis=-1)
        out["coverage"] = float(np.mean(np.sqrt(d2.min(axis=1)) < radius)) if len(pts) else float("nan")
    return out


def score_repredict(benchmark: Benchmark, theta, *, radius: float = 0.1, max_draws: int = 4000) -> dict:
    """Score points ``theta`` shaped ``(*batch, n, d)`` (n = 1 for a point estimate).

    Returns arrays over the batch (floats without one):
        ``repredict``: fraction of points whose prediction matches the target (within 3 noise
        std for the regressor; the arg-max class for the classifier); ``repredict_error``
        (regressor): mean ``|model(θ) - y|``; ``in_preimage``: fraction of points on the true
        preimage; ``coverage`` (n > 1 only): fraction of preimage points with a draw within
        ``radius``, about 1 when the draws spread over the whole preimage.
    """
    theta = np.asarray(theta)
    y = np.asarray(benchmark.y)
    flat_t = theta.reshape(-1, *theta.shape[-2:])
    flat_t = flat_t[:, np.linspace(0, flat_t.shape[1] - 1, min(flat_t.shape[1], max_draws)).astype(int)]
    rows = [_score_one(benchmark, yi, ti, radius) for yi, ti in zip(y.reshape(-1), flat_t)]
    return {k: (np.array([r[k] for r in rows]).reshape(y.shape) if y.ndim else rows[0][k])
            for k in rows[0]}
