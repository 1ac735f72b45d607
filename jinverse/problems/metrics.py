"""Sample-based distances between a posterior approximation and reference draws.

- `c2st`: the classifier two-sample test of Lopez-Paz & Oquab (2017) as used by the
  simulation-based-inference benchmark (Lueckmann et al. 2021, sbibm): an MLP with two hidden
  layers of ``10 * dim`` ReLU units, inputs z-scored with the first sample's mean and std,
  k-fold cross-validated accuracy. 0.5 means indistinguishable, 1.0 means disjoint.
- `mmd`: the unbiased squared maximum mean discrepancy with a Gaussian kernel whose bandwidth is
  the median pairwise distance of the pooled sample (the median heuristic).

Both take two arrays shaped ``(n, d)`` (or ``(n,)``) and return a Python float.

`metric_info(name)` says how to read every score `jinverse.problems.evaluate` returns (and the
bench's interval coverage): what it measures, against what, which way is better and its ideal
value, so that reports never call a success fraction an "error".
"""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import ArrayLike, Float

__all__ = ["MetricInfo", "c2st", "metric_info", "mmd"]


# --------------------------------------------------------------------------------------
# how to read a score
# --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MetricInfo:
    """How to read one metric.

    Attributes:
        name: the key in `jinverse.problems.evaluate`'s dict.
        label: what it measures, in words.
        against: what it compares the result with.
        direction: ``"lower"`` or ``"higher"`` (that way is better, ``ideal`` at the end), or
            ``"target"`` (best at ``ideal``, worse either side).
        ideal: the value of a perfect result.
        note: how to read the other end of the scale, where it helps.
    """

    name: str
    label: str
    against: str
    direction: str
    ideal: float
    note: str = ""

    @property
    def better(self) -> str:
        """``"lower is better, ideal 0"``, ``"higher is better, ideal 1"``, ``"0.5 is ideal"``."""
        if self.direction == "target":
            return f"{self.ideal:g} is ideal, farther either way is worse"
        return f"{self.direction} is better, ideal {self.ideal:g}"

    @property
    def short(self) -> str:
        """The direction in a table cell: ``"lower, 0"``, ``"higher, 1"``, ``"= 0.5"``."""
        return f"= {self.ideal:g}" if self.direction == "target" else f"{self.direction}, {self.ideal:g}"

    def shortfall(self, value) -> np.ndarray:
        """How far ``value`` is from ``ideal`` the bad way (0 for a perfect result)."""
        v = np.asarray(value, dtype=float)
        if self.direction == "lower":
            return np.maximum(v - self.ideal, 0.0)
        if self.direction == "higher":
            return np.maximum(self.ideal - v, 0.0)
        return np.abs(v - self.ideal)


_INFO = {m.name: m for m in [
    MetricInfo("rel_error", "relative error ||θ̂ - θ|| / ||θ||", "the true θ", "lower", 0.0),
    MetricInfo("rmse", "root-mean-square error of θ", "the true θ", "lower", 0.0),
    MetricInfo("repredict", "share of the estimates the trained model maps back to the target",
               "the observed target", "higher", 1.0),
    MetricInfo("repredict_error", "mean |model(θ) - y| of the estimates", "the observed target",
               "lower", 0.0),
    MetricInfo("in_preimage", "share of the estimates on the true preimage of the target",
               "the true function", "higher", 1.0),
    MetricInfo("coverage", "share of the true preimage within reach of a draw", "the true preimage",
               "higher", 1.0),
    MetricInfo("c2st", "C2ST: held-out accuracy of a classifier telling the draws from reference draws",
               "the reference posterior", "target", 0.5,
               "0.5: indistinguishable; 1.0: told apart every time"),
    MetricInfo("mmd", "squared maximum mean discrepancy (unbiased)", "the reference posterior", "target",
               0.0, "0: equal distributions (the estimate can dip slightly below 0 by chance)"),
    MetricInfo("coverage90", "share of the true values inside the 90% credible intervals", "the true θ",
               "target", 0.9, "below 0.9: intervals too narrow (overconfident); above: too wide"),
]}


def metric_info(name: str) -> MetricInfo:
    """How to read the metric ``name`` (see `MetricInfo`).

    Example::

        >>> metric_info("c2st").better
        '0.5 is ideal, farther either way is worse'
    """
    if name not in _INFO:
        raise ValueError(f"name: got {name!r}, expected one of {', '.join(_INFO)}")
    return _INFO[name]


def _as_2d(name: str, x) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"{name}: got shape {a.shape}, expected (n, d) with n >= 2 draws")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: got non-finite values, expected finite draws")
    return a


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_2d("x", x), _as_2d("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x, y: got dimensions {x.shape[1]} and {y.shape[1]}, expected equal")
    return x, y


# --------------------------------------------------------------------------------------
# C2ST
# --------------------------------------------------------------------------------------
def _init_mlp(key, sizes):
    params = []
    for k, (a, b) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:])):
        w = jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a)  # He initialisation for ReLU
        params.append((w, jnp.zeros(b)))
    return params


def _logit(params, x):
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return (x @ w + b)[..., 0]


@functools.partial(jax.jit, static_argnames=("hidden", "steps", "batch_size"))
def _fold_accuracy(key, x, label, train_mask, *, hidden: int, steps: int, batch_size: int,
                   lr: float):
    """Train on the rows where ``train_mask`` (minibatch Adam) and return the held-out accuracy."""
    # float32 halves the cost on CPUs and is ample for a classifier
    x, label = x.astype(jnp.float32), label.astype(jnp.float32)
    k_init, k_batch = jax.random.split(key)
    params = _init_mlp(k_init, (x.shape[1], hidden, hidden, 1))
    params = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.01))
    # minibatches drawn from the training rows only
    train_idx = jnp.argsort(~train_mask)  # training rows first
    n_train = jnp.sum(train_mask)

    def loss(p, idx):
        return jnp.mean(optax.sigmoid_binary_cross_entropy(_logit(p, x[idx]), label[idx]))

    def step(carry, k):
        p, s = carry
        pick = jax.random.randint(k, (batch_size,), 0, n_train)
        g = jax.grad(loss)(p, train_idx[pick])
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(k_batch, steps))
    correct = (_logit(params, x) > 0) == (label > 0.5)
    test = ~train_mask
    return jnp.sum(correct & test) / jnp.sum(test)


def c2st(x: Float[ArrayLike, "n d"], y: Float[ArrayLike, "m d"], *, seed: int = 0, folds: int = 5,
         steps: int = 2000, batch_size: int = 256, lr: float = 3e-3,
         max_draws: int | None = 10_000) -> float:
    """Classifier two-sample test accuracy between draws ``x`` and ``y``.

    Args:
        x, y: two samples shaped ``(n, d)`` and ``(m, d)``; both are subsampled to
            ``min(n, m, max_draws)`` draws so that the classes balance.
        seed: seeds the subsampling, fold split and network initialisation.
        folds: number of cross-validation folds (sbibm: 5).
        steps, batch_size, lr: Adam steps per fold on minibatches of ``batch_size`` training
            rows, with a cosine-decayed learning rate starting at ``lr``.

    Returns:
        The mean held-out accuracy: about 0.5 when ``x`` and ``y`` come from one distribution,
        near 1.0 when they do not overlap.
    """
    x, y = _pair(x, y)
    rng = np.random.default_rng(seed)
    n = min(len(x), len(y), len(x) if max_draws is None else max_draws)  # balanced: chance = 0.5
    x = x[rng.permutation(len(x))[:n]]
    y = y[rng.permutation(len(y))[:n]]
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 0, std, 1.0)
    data = (np.concatenate([x, y]) - mean) / std
    label = np.concatenate([np.zeros(len(x)), np.ones(len(y))])
    fold = rng.permutation(np.arange(len(data)) % folds)
    keys = jax.random.split(jax.random.key(seed), folds)
    masks = np.stack([fold != f for f in range(folds)])
    d = data.shape[1]
    acc = jax.vmap(lambda k, m: _fold_accuracy(k, data, label, m, hidden=10 * d, steps=steps,
                                             batch_size=batch_size, lr=lr))(
        keys, jnp.asarray(masks))
    return float(jnp.mean(acc))


# --------------------------------------------------------------------------------------
# MMD
# --------------------------------------------------------------------------------------
def median_bandwidth(z: np.ndarray, max_points: int = 1000, seed: int = 0) -> float:
    """Median pairwise Euclidean distance of (a subsample of) ``z`` shaped ``(n, d)``."""
    z = np.asarray(z, dtype=float)
    if len(z) > max_points:
        z = z[np.random.default_rng(seed).permutation(len(z))[:max_points]]
    d2 = np.sum((z[:, None, :] - z[None, :, :]) ** 2, -1)
    iu = np.triu_indices(len(z), 1)
    return float(np.median(np.sqrt(d2[iu])))


@eqx.filter_jit
def _kernel_sum(a, b, bandwidth, exclude_diagonal: bool):
    """sum_ij exp(-|a_i - b_j|^2 / (2 h^2)), blockwise so that memory stays O(block * m)."""
    block = 256
    n = a.shape[0]
    pad = (-n) % block
    ap = jnp.concatenate([a, jnp.zeros((pad, a.shape[1]), a.dtype)]).reshape(-1, block, a.shape[1])
    valid = (jnp.arange(n + pad) < n).reshape(-1, block)
    idx = jnp.arange(n + pad).reshape(-1, block)

    def one(args):
        rows, ok, i = args
        d2 = jnp.sum(rows**2, 1)[:, None] + jnp.sum(b**2, 1)[None, :] - 2 * rows @ b.T
        k = jnp.exp(-jnp.maximum(d2, 0.0) / (2 * bandwidth**2))
        k = jnp.where(ok[:, None], k, 0.0)
        if exclude_diagonal:
            k = jnp.where(i[:, None] == jnp.arange(b.shape[0])[None, :], 0.0, k)
        return jnp.sum(k)

    return jnp.sum(jax.lax.map(one, (ap, valid, idx)))


def mmd(x: Float[ArrayLike, "n d"], y: Float[ArrayLike, "m d"], *, bandwidth: float | None = None,
        seed: int = 0) -> float:
    """Unbiased squared MMD between draws ``x`` and ``y`` with a Gaussian kernel.

    ``k(a, b) = exp(-|a - b|^2 / (2 h^2))`` with ``h = bandwidth`` or, by default, the median
    pairwise distance of the pooled draws. About 0 (it can be slightly negative) when ``x`` and
    ``y`` come from one distribution; positive, up to 2, when they differ.
    """
    x, y = _pair(x, y)
    h = median_bandwidth(np.concatenate([x, y]), seed=seed) if bandwidth is None else float(bandwidth)
    if not h > 0:
        raise ValueError(f"bandwidth: got {h!r}, expected > 0 (are all draws identical?)")
    n, m = len(x), len(y)
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    hj = jnp.asarray(h)
    kxx = _kernel_sum(xj, xj, hj, True) / (n * (n - 1))
    kyy = _kernel_sum(yj, yj, hj, True) / (m * (m - 1))
    kxy = _kernel_sum(xj, yj, hj, False) / (n * m)
    return float(kxx + kyy - 2 * kxy)
