"""`jinverse demo`: the shortest tour — invert a trained classifier and a trained regressor.

Both networks are small equinox MLPs trained in-process with optax (`jinverse.problems.trained`):
a classifier of points of [-2, 2]^2 into angular sectors and a regressor of ||x||^2. For a batch
of targets (class labels; output values) one `solve_map` call per model finds inputs θ the model
maps to each target, with several starts per target (the regressor is many-to-one).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from . import likelihoods, priors
from .map import solve_map
from .problem import InverseProblem
from .problems.trained import sector, trained_classifier_model, trained_regressor_model


def run(echo=print, seed: int = 0) -> dict:
    """Run the demo, printing through ``echo``; returns the figures it printed."""
    key = jax.random.key(seed)
    out: dict[str, float] = {}  # counts (int) and errors (float)

    t0 = time.perf_counter()
    clf, acc = trained_classifier_model(num_classes=4)
    echo(f"Trained a 4-class MLP classifier on [-2, 2]^2 (test accuracy {acc['test_accuracy']:.3f}, "
         f"{time.perf_counter() - t0:.1f} s).")
    # Prior: uniform on the box the network was trained on (its domain of validity).
    problem = InverseProblem(clf, priors.Uniform(-2.0 * jnp.ones(2), 2.0 * jnp.ones(2)), likelihoods.Categorical())
    targets = jnp.array([0, 1, 2, 3, 0, 2])
    t0 = time.perf_counter()
    res = solve_map(problem, targets, num_starts=4, key=key)
    dt = time.perf_counter() - t0
    predicted = np.asarray(jnp.argmax(jax.vmap(clf)(res.theta), -1))
    probs = np.asarray(jax.nn.softmax(jax.vmap(clf)(res.theta), -1))
    echo(f"\nWhich inputs does the classifier put in class k?  ({len(targets)} targets, one call, {dt:.2f} s)")
    truth = np.asarray(sector(res.theta, 4))
    echo(f"  {'target':>6}  {'input theta found':>22}  {'predicted':>9}  {'p(target)':>9}  {'true class':>10}  status")
    for k, th, pr, p, tc, msg in zip(np.asarray(targets), np.asarray(res.theta), predicted, probs, truth,
                                     res.messages()):
        echo(f"  {k:>6}  [{th[0]:+9.4f}, {th[1]:+9.4f}]  {pr:>9}  {p[k]:>9.3f}  {tc:>10}  {msg}")
    out["classifier_hits"] = int(np.sum(predicted == np.asarray(targets)))

    t0 = time.perf_counter()
    reg, err = trained_regressor_model(dim=2)
    echo(f"\nTrained an MLP regressor of ||x||^2 on [-2, 2]^2 (test RMSE {err['test_rmse']:.3f}, "
         f"{time.perf_counter() - t0:.1f} s).")
    problem = InverseProblem(lambda t: reg(t)[None], priors.Gaussian(jnp.zeros(2), 1.5),
                             likelihoods.Gaussian(0.05))
    values = jnp.array([0.5, 1.0, 2.0, 3.0])
    t0 = time.perf_counter()
    res = solve_map(problem, values[:, None], num_starts=8, key=key, optimizer="newton")
    dt = time.perf_counter() - t0
    echo(f"\nWhich inputs make the regressor output v?  ({len(values)} targets x 8 starts, one call, {dt:.2f} s)")
    echo("  The true preimage of v is the circle ||x|| = sqrt(v): many inputs fit.")
    echo(f"  {'target':>6}  {'input theta found':>22}  {'||theta||^2':>11}  {'model(theta)':>12}  distinct")
    for i, v in enumerate(np.asarray(values)):
        th = np.asarray(res.theta[i])
        n_distinct = len(res.distinct((i,), atol=1e-2))
        echo(f"  {v:>6.2f}  [{th[0]:+9.4f}, {th[1]:+9.4f}]  {np.sum(th**2):>11.4f}  "
             f"{float(reg(jnp.asarray(th))):>12.4f}  {n_distinct}")
    out["regressor_max_error"] = float(np.max(np.abs(np.asarray(jax.vmap(reg)(res.theta)) - np.asarray(values))))
    return out
