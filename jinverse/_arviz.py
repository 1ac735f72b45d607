"""`Posterior.to_arviz`: the draws, their sampler statistics and (given the problem and the data)
the observed data, pointwise log-likelihood, log-density and predictive draws as an
`arviz.InferenceData`, one per observation of a batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import predictive as pred


def to_arviz(post, problem=None, y=None, *, key=None, prior=None, index=None):
    """The `arviz.InferenceData` of the `ji.Posterior` ``post`` (see `Posterior.to_arviz`); a list
    of them, one per observation, for ``index="all"``."""
    batch = post.batch_shape
    if (y is not None or key is not None or prior is not None) and problem is None:
        raise TypeError("problem: got None, expected the ji.InverseProblem that was sampled "
                        "(needed for y, key and prior)")
    if batch and index is None:
        raise ValueError(f"to_arviz: this posterior has batch shape {batch}; pass index= for one observation "
                         f"(post.to_arviz(problem, y, index=0) is post[0].to_arviz(problem, y[0])) or "
                         "index='all' for a list of one InferenceData per observation")
    if not batch and index is not None:
        raise ValueError(f"index: got {index!r}, but this posterior has no batch axes; leave index out")
    try:
        import arviz as az
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("to_arviz needs arviz: pip install 'jinverse[arviz]'") from exc
    y_all = None
    if y is not None:
        y_all, y_batch = problem.check_y(y)
        if tuple(y_batch) != batch:
            raise ValueError(f"y: got batch shape {tuple(y_batch)} (y of shape {tuple(np.shape(y))}), expected "
                             f"{batch}, the posterior's: the observations that were sampled")
    keys = None if key is None else pred.draw_keys(key, (*batch, post.num_chains, post.num_draws))
    if not batch:
        return _one(az, post, problem, y_all, keys, prior, {"sampler": post.method})
    if isinstance(index, str):
        if index != "all":
            raise ValueError(f"index: got {index!r}, expected an index into the batch shape {batch} or 'all'")
        indices = list(np.ndindex(batch))
    else:
        indices = [_one_observation(index, batch)]
    out = []
    for i in indices:
        attrs = {"sampler": post.method, "observation": str(i[0] if len(i) == 1 else i)}
        out.append(_one(az, post[i], problem, None if y_all is None else y_all[i],
                        None if keys is None else keys[i], prior, attrs))
    return out if isinstance(index, str) else out[0]


def _one_observation(index, batch) -> tuple[int, ...]:
    """``index`` as a tuple of integers that picks exactly one observation of ``batch``."""
    idx = index if isinstance(index, tuple) else (index,)
    if len(idx) != len(batch) or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool)
                                         for i in idx):
        raise ValueError(f"index: got {index!r}, expected {len(batch)} integer(s) picking one observation of "
                         f"the batch shape {batch} (or 'all')")
    for i, n in zip(idx, batch):
        if not -n <= i < n:
            raise IndexError(f"index: got {index!r}, out of range for batch shape {batch}")
    return tuple(int(i) % n for i, n in zip(idx, batch))


def _one(az, post, problem, y, keys, prior, attrs):
    """The InferenceData of one observation's posterior (no batch axes)."""
    groups = {"posterior": named(post.samples)}
    st = post.stats
    stats = {"diverging": np.asarray(st.is_divergent), "acceptance_rate": np.asarray(st.acceptance_rate),
             "n_steps": np.asarray(st.num_integration_steps), "step_size": np.asarray(st.step_size)}
    if getattr(st, "energy", None) is not None:
        stats["energy"] = np.asarray(st.energy)
    if y is not None:
        lp = pred.map_draws(lambda t: problem.log_density(problem.to_unconstrained(t), y), post.samples, 2)
        stats["lp"] = np.asarray(lp)
        groups["observed_data"] = {"y": np.asarray(y)}
        groups["log_likelihood"] = {"y": np.asarray(pointwise(problem, post.samples, y))}
    groups["sample_stats"] = stats
    if keys is not None:
        groups["posterior_predictive"] = {"y": np.asarray(pred.simulate_with_keys(problem, keys, post.samples, 2))}
    if prior is not None:
        groups["prior"] = {k: v[None] for k, v in named(prior.theta).items()}
        groups["prior_predictive"] = {"y": np.asarray(prior.y)[None]}
    return az.from_dict(**groups, attrs=attrs)


def named(draws) -> dict[str, np.ndarray]:
    """ArviZ variables from a θ pytree: a `Joint`'s leaves under their keys (``a``, ``b_0``),
    one array as ``theta``."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(draws)[0]:
        parts = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
        name = "_".join(parts) if parts else "theta"
        out["theta_" + name if name[:1].isdigit() else name] = np.asarray(leaf)
    return out


def pointwise(problem, samples, y) -> Float[Array, "chains draws *y"]:
    """The pointwise log-likelihood of every draw, checked against the whole log-likelihood on
    the first draw (a likelihood whose entries are not independent fails here, not in LOO)."""
    ll = pred.map_draws(lambda t: pred.pointwise_log_likelihood(problem, t, y), samples, 2)
    first = jax.tree.map(lambda a: a[0, 0], samples)
    total = float(problem.log_likelihood(first, y))
    parts = float(jnp.sum(ll[0, 0]))
    if not np.isclose(parts, total, rtol=1e-6, atol=1e-6 * max(1.0, y.size)):
        raise ValueError(f"log_likelihood: the entries' log-likelihoods sum to {parts:.6g}, not to the "
                         f"likelihood's {total:.6g}; pointwise log-likelihood needs a likelihood with "
                         "independent entries")
    return ll
