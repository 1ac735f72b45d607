"""A trained classifier whose class is a disconnected region: the posterior mass of each part,
by tempered SMC, replica exchange and NUTS, against quadrature on a fine grid (issue 13).

An MLP ``R² -> R²`` (logits; the architecture and training of the built-in
``trained_classifier``) learns on ``[-2, 2]²`` whether a point lies in one of three disks of
different radii, apart from each other; the built-in problem's classes are sectors, each
connected, so this is the case it does not cover. The question ``which inputs does it put in
class 1?`` has a posterior ``p(θ | y = 1) ∝ softmax(model(θ))₁`` on the box (uniform prior) with
three separate regions. Reference: the unnormalised posterior summed over a ``--grid`` x
``--grid`` midpoint grid of the box (2-D: quadrature is exact up to the grid's resolution),
each point given to the nearest disk (distance to the rim), so every method's draws and the
grid split the box alike. Each method: the share of its draws in each part, with a Monte-Carlo
standard error (SMC: from the final weights' ESS; MCMC: from the indicator's bulk ESS over the
chains), and the chains that visited each part.

    .venv/bin/python benchmarks/smc_regions.py [--grid 1000] [--methods smc pt pta nuts]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import blackjax.diagnostics as bd  # noqa: E402
import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import jinverse as ji  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import machine_info  # noqa: E402

BOX = 2.0
#: (centre x, centre y, radius): class 1 is their union, class 0 the rest of the box
DISKS = np.array([[-1.1, -1.0, 0.55], [1.0, -0.9, 0.7], [0.0, 1.05, 0.85]])


def region(x):
    """Index of the nearest disk (by distance to its rim) of points ``(..., 2)``."""
    d = np.linalg.norm(np.asarray(x)[..., None, :] - DISKS[:, :2], axis=-1) - DISKS[:, 2]
    return np.argmin(d, axis=-1)


def label(x):
    d = jnp.linalg.norm(x[..., None, :] - jnp.asarray(DISKS[:, :2]), axis=-1) - jnp.asarray(DISKS[:, 2])
    return jnp.any(d < 0, axis=-1).astype(jnp.int32)


def train(steps: int, seed: int = 0):
    """An MLP classifier (2 -> 32 -> 32 -> 2, tanh) fit by full-batch Adam to `label`."""
    k_init, k_x, k_test = jax.random.split(jax.random.key(seed), 3)
    model = eqx.nn.MLP(2, 2, 32, 2, activation=jax.nn.tanh, key=k_init)
    x = jax.random.uniform(k_x, (8192, 2), minval=-BOX, maxval=BOX)
    t = label(x)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt = optax.adam(optax.cosine_decay_schedule(1e-2, steps, alpha=0.01))

    def loss(p):
        logits = jax.vmap(eqx.combine(p, static))(x)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, t))

    @jax.jit
    def run(p):
        def step(carry, _):
            p, s = carry
            g = jax.grad(loss)(p)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        return jax.lax.scan(step, (p, opt.init(p)), None, length=steps)[0][0]

    model = eqx.combine(run(params), static)
    xt = jax.random.uniform(k_test, (8192, 2), minval=-BOX, maxval=BOX)
    accuracy = float(jnp.mean(jnp.argmax(jax.vmap(model)(xt), -1) == label(xt)))
    return model, accuracy


def grid_masses(model, n: int):
    """Each part's share of the posterior mass by the midpoint rule on an ``n x n`` grid, and
    the share lying outside every disk."""
    c = -BOX + (np.arange(n) + 0.5) * (2 * BOX / n)
    pts = np.stack(np.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2)
    prob = np.concatenate([np.asarray(jax.nn.softmax(jax.vmap(model)(jnp.asarray(p)))[:, 1])
                           for p in np.array_split(pts, 16)])
    parts = region(pts)
    masses = np.array([prob[parts == r].sum() for r in range(len(DISKS))]) / prob.sum()
    outside = prob[np.asarray(label(jnp.asarray(pts))) == 0].sum() / prob.sum()
    return masses, outside


def shares(post, method):
    """Share of the draws in each part, its Monte-Carlo standard error, and the chains (of
    MCMC) that visited each part."""
    x = np.asarray(post.samples)  # (chains, draws, 2)
    parts = region(x)
    out, se, visits = [], [], []
    for r in range(len(DISKS)):
        ind = (parts == r).astype(float)
        p = ind.mean()
        if method == "smc":  # equally weighted draws after resampling; the ESS of the final weights
            ess = float(post.smc.final_ess)
        else:
            ess = float(bd.effective_sample_size(jnp.asarray(ind), chain_axis=0, sample_axis=1)) if 0 < p < 1 \
                else float("nan")
        out.append(p)
        se.append(np.sqrt(p * (1 - p) / ess) if ess == ess else float("nan"))
        visits.append(int(np.sum(ind.max(axis=1) > 0)))
    return np.array(out), np.array(se), visits


def run(problem, y, method, key, args):
    kw = dict(num_chains=args.chains, num_samples=args.draws)
    if method != "smc":
        kw.update(num_warmup=args.warmup)
    if method in ("pt", "pta"):
        kw.update(tempering=args.temperatures, adapt_ladder=method == "pta")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = time.perf_counter()
        post = ji.sample(problem, y, key=key, method="smc" if method == "smc" else "nuts", **kw)
        jax.block_until_ready(post.samples)
        wall = time.perf_counter() - t
    return post, wall, [str(w.message).split(":")[0] for w in caught]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", type=int, default=1000)
    ap.add_argument("--methods", nargs="+", default=["smc", "pt", "pta", "nuts"],
                    choices=["smc", "pt", "pta", "nuts"])
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--temperatures", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3000, help="training steps of the classifier")
    args = ap.parse_args()
    model, accuracy = train(args.steps)
    problem = ji.InverseProblem(model, ji.priors.Uniform(-BOX * jnp.ones(2), BOX * jnp.ones(2)),
                                ji.likelihoods.Categorical())
    y = jnp.asarray(1.0)
    exact, outside = grid_masses(model, args.grid)
    fmt = lambda v: " / ".join(f"{a:.3f}" for a in v)  # noqa: E731
    rows = ["| method | mass per part (disk r = 0.55 / 0.7 / 0.85) | ± MC s.e. | max \\|error\\| / s.e. | "
            "chains in each part | wall s (warm) | notes |", "|---|---|---|---|---|---|---|",
            f"| grid {args.grid}² (reference) | {fmt(exact)} | | | | | {outside:.3f} of the mass outside every disk |"]
    for method in args.methods:
        run(problem, y, method, jax.random.key(1), args)  # compiles
        post, wall, caught = run(problem, y, method, jax.random.key(2), args)
        got, se, visits = shares(post, method)
        z = np.max(np.abs(got - exact) / se)
        note = {"smc": lambda: f"{int(post.smc.num_stages)} stages, final ESS {float(post.smc.final_ess):.0f}",
                "nuts": lambda: f"max R-hat {float(post.max_rhat):.2f}"}.get(
            method, lambda: "β " + " ".join(f"{float(b):.3g}" for b in post.tempering.betas) + ", swap acceptance "
            + " ".join(f"{float(r):.2f}" for r in post.tempering.swap_acceptance))()
        note += ("; warned: " + ", ".join(caught)) if caught else "; no warning"
        chains = "(particles)" if method == "smc" else " / ".join(map(str, visits))
        rows.append(f"| {method} | {fmt(got)} | {fmt(se)} | {z:.1f} | {chains} | {wall:.1f} | {note} |")
        print(rows[-1], flush=True)
    print(f"Command: `.venv/bin/python benchmarks/smc_regions.py {' '.join(sys.argv[1:])}`\n")
    print(f"Machine: {machine_info()}\n")
    print(f"Classifier test accuracy {accuracy:.4f}; {args.chains} chains x {args.draws} draws "
          f"(MCMC after {args.warmup} warmup steps; SMC: that many particles).\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
