"""Derivative-free inversion (EKI, UKI, EKS) against the MAP by L-BFGS/Gauss-Newton with autodiff
gradients (`ji.solve_map`), on built-in problems (issue 16).

Per problem: the MAP and the Laplace covariance at it (the reference), then `eki` (stochastic
and square-root) and `uki` for a few iteration counts, and the sampler `eks`: the distance to the MAP in posterior
standard deviations (max over components of ``|θ - θ_MAP| / sd``), forward-model evaluations
per observation, warm wall time (a second call; compile excluded). ``solve_map`` reports its
optimiser steps (each a gradient or Jacobian by autodiff, plus line-search evaluations). Then
one batch of observations (``--batch`` simulated from the problem's θ_true) through each.
Wall times are the best of 3 warm calls.

    .venv/bin/python benchmarks/assimilation_eki.py [--out benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import jinverse as ji  # noqa: E402
from jinverse import assimilation as da  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import machine_info, record  # noqa: E402
from assimilation_enkf import insert_section  # noqa: E402


def warm(fn, repeats=3):
    """The result and the best of ``repeats`` warm wall times (the machine is shared)."""
    jax.block_until_ready(fn())
    walls = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        jax.block_until_ready(out)
        walls.append(time.perf_counter() - t)
    return out, min(walls)


def row(name, d, label, it, res, theta, sd, t):
    dist = np.max(np.abs(np.asarray(res.theta).ravel() - theta.ravel()) / sd)
    ratio = np.median(np.sqrt(np.diag(np.asarray(res.covariance))) / sd)
    spread = "–" if label.startswith("EKI") else f"{ratio:.2f}"
    return f"| {name} ({d}) | {label} | {it} | {res.num_forward} | {dist:.1e} | {spread} | {t * 1e3:.1f} |"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", nargs="+", default=["gaussian_linear", "lorenz63", "lorenz96"])
    ap.add_argument("--iters", type=int, nargs="+", default=[5, 10, 20, 30])
    ap.add_argument("--eks-iters", type=int, nargs="+", default=[200])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows, brows = [], []
    for name in args.problems:
        b = ji.problems.load(name)
        p, y = b.problem, b.y
        m, t_map = warm(lambda: ji.solve_map(p, y))
        theta = np.asarray(m.theta)
        sd = np.sqrt(np.diag(np.asarray(ji.laplace(p, y).covariance)))
        d = theta.size
        rows.append(f"| {name} ({d}) | solve_map (default) | – | {int(m.num_steps)} steps | 0 | – | {t_map * 1e3:.1f} |")
        print(rows[-1], flush=True)
        for it in args.iters:
            for label, fn in (("EKI stochastic", lambda: da.eki(p, y, key=jax.random.key(0), n_iter=it)),
                              ("EKI square root", lambda: da.eki(p, y, key=jax.random.key(0), n_iter=it,
                                                                 method="deterministic")),
                              ("UKI", lambda: da.uki(p, y, n_iter=it))):
                res, t = warm(lambda: fn())
                rows.append(row(name, d, label, it, res, theta, sd, t))
                print(rows[-1], flush=True)
        for it in args.eks_iters:
            res, t = warm(lambda: da.eks(p, y, key=jax.random.key(0), n_iter=it))
            rows.append(row(name, d, "EKS (sampler)", it, res, theta, sd, t))
            print(rows[-1], flush=True)
        # a batch of observations from θ_true
        keys = jax.random.split(jax.random.key(1), args.batch)
        ys = jax.vmap(lambda k: p.simulate(k, b.theta_true))(keys)
        mb, tb = warm(lambda: ji.solve_map(p, ys))
        ref = np.asarray(mb.theta).reshape(args.batch, -1)
        for label, fn in (("solve_map", None), ("EKI square root, 30 it",
                                                 lambda: da.eki(p, ys, key=jax.random.key(0), n_iter=30,
                                                                method="deterministic")),
                          ("UKI, 30 it", lambda: da.uki(p, ys, n_iter=30))):
            if fn is None:
                brows.append(f"| {name} | {label} | {tb:.2f} | – | {float(np.mean(mb.converged)):.2f} converged |")
            else:
                res, t = warm(lambda: fn())
                dist = np.max(np.abs(np.asarray(res.theta).reshape(args.batch, -1) - ref) / sd)
                brows.append(f"| {name} | {label} | {t:.2f} | {dist:.1e} | |")
            print(brows[-1], flush=True)
    body = ("Distance to the MAP in posterior sds (Laplace at the MAP): max over components of "
            "|θ − θ_MAP| / sd. EKI: Tikhonov-regularised, J = max(2d, 20) members, data weights doubling "
            "from 1; UKI: α = 1, 2d + 1 sigma points; EKS: J = max(4d, 50), adaptive step 0.5 (a sampler: its "
            "mean is a posterior-mean estimate with Monte-Carlo error ~ sd/√J, and it is judged by its sds). "
            "sd ratio: median over components of the method's sd / the Laplace sd. Forward evaluations per "
            f"observation; ms warm, best of 3 (load average {os.getloadavg()[0]:.1f} on 2 cores).\n\n"
            "| problem (unknowns) | method | iterations | forward evaluations | distance to MAP (sd) | sd ratio | ms |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows)
            + f"\n\nA batch of {args.batch} observations simulated from θ_true (one compiled call each; distance "
              "to each observation's MAP):\n\n| problem | method | s (warm) | max distance to MAP (sd) | |\n"
              "|---|---|---|---|---|\n" + "\n".join(brows))
    print(body)
    if args.out:
        insert_section(args.out, "assimilation-eki")
        record(args.out, "assimilation-eki", "Derivative-free inversion: EKI and UKI against the MAP (issue 16)",
               "`.venv/bin/python benchmarks/assimilation_eki.py --out benchmarks/RESULTS.md`", machine_info(), body)


if __name__ == "__main__":
    main()
