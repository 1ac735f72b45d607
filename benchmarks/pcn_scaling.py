"""pCN / gpCN against random-walk Metropolis as the dimension grows, and the three Metropolis
kernels on a 12-unknown posterior of condition number 100.

Part 1: `deconvolution1d` at n = 64 ... 1024 cells; for each n, ``ji.sample`` with ``pcn``
(``metric="prior"``: whitened by the Gaussian prior), ``gpcn`` (``metric="laplace"``: whitened
by the Laplace approximation at the MAP) and ``rwmh`` in the problem's own coordinates
(``metric="diagonal"``, its own adapted proposal); acceptance rate and min bulk ESS per draw.
Plot: benchmarks/pcn_scaling.png.

Part 2: y = A θ + ε with θ ~ N(0, I), ε ~ N(0, I) and cond(I + AᵀA) = 99 (12 unknowns); mala,
rwmh (own adaptation) and pcn: min bulk ESS as a share of the draws.

Prints a Markdown section for benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/pcn_scaling.py [--sizes 64,128,256,512,1024] [--warmup 1000] [--draws 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, os.path.dirname(__file__))

from _common import machine_info  # noqa: E402

import jinverse as ji  # noqa: E402

METHODS = (("pcn", {"metric": "prior"}), ("gpcn", {"metric": "laplace"}), ("rwmh", {"metric": "diagonal"}))


def _run(problem, y, method, kw, args, key=0):
    # gpCN is pCN in the coordinates whitened by the Laplace approximation
    method = "pcn" if method == "gpcn" else method
    t = time.perf_counter()
    post = ji.sample(problem, y, key=jax.random.key(key), method=method, num_chains=args.chains,
                     num_warmup=args.warmup, num_samples=args.draws, **kw)
    seconds = time.perf_counter() - t
    n = args.chains * args.draws
    return dict(acc=float(np.nanmean(np.asarray(post.stats.acceptance_rate))), ess=float(post.min_ess),
                ess_per_draw=float(post.min_ess) / n, rhat=float(post.max_rhat), seconds=seconds)


def twelve_unknowns():
    rng = np.random.default_rng(0)
    d = 12
    u, _ = np.linalg.qr(rng.normal(size=(d, d)))
    v, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a = u @ np.diag(np.sqrt(np.geomspace(0.01, 99.0, d))) @ v.T
    y = a @ rng.normal(size=d) + rng.normal(size=d)
    problem = ji.InverseProblem(jnp.asarray(a), ji.priors.Gaussian(jnp.zeros(d), 1.0), ji.likelihoods.Gaussian(1.0))
    return problem, jnp.asarray(y), float(np.linalg.cond(np.eye(d) + a.T @ a))


def _plot(sizes, rows, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for method, _ in METHODS:
        axes[0].plot(sizes, [rows[n, method]["acc"] for n in sizes], "o-", label=method)
        axes[1].plot(sizes, [max(rows[n, method]["ess_per_draw"], 1e-5) for n in sizes], "o-", label=method)
    for ax, label in zip(axes, ("acceptance rate", "min bulk ESS per draw")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("deconvolution1d n (unknowns)")
        ax.set_ylabel(label)
    axes[1].set_yscale("log")
    axes[0].legend()
    fig.suptitle(f"deconvolution1d, {args.chains} chains x ({args.warmup} warmup + {args.draws} draws)")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="64,128,256,512,1024")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--plot", default=os.path.join(os.path.dirname(__file__), "pcn_scaling.png"))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]  # --sizes "": the 12-unknown part only

    rows = {}
    for n in sizes:
        b = ji.problems.load("deconvolution1d", n=n)
        for method, kw in METHODS:
            r = _run(b.problem, b.y, method, kw, args)
            rows[n, method] = r
            print(f"n={n:5d} {method:5s} acc {r['acc']:.3f} minESS {r['ess']:8.1f} "
                  f"ESS/draw {r['ess_per_draw']:.4f} R-hat {r['rhat']:.3f} {r['seconds']:.1f}s", flush=True)

    problem, y, cond = twelve_unknowns()
    small = {}
    # the methods' own adaptation (metric="diagonal"), plain pCN (prior reference) and each
    # method's default metric ("auto": the Laplace whitening here, for pcn that is gpCN)
    for method, kw in (("mala", {"metric": "diagonal"}), ("rwmh", {"metric": "diagonal"}),
                       ("pcn", {"metric": "prior"}), ("mala", {}), ("rwmh", {}), ("pcn", {})):
        label = f"{method} (metric={kw.get('metric', 'auto')})"
        small[label] = _run(problem, y, method, kw, args)
        r = small[label]
        print(f"12 unknowns {label:26s} acc {r['acc']:.3f} minESS {r['ess']:.0f} "
              f"({100 * r['ess_per_draw']:.2f}% of draws) R-hat {r['rhat']:.3f}", flush=True)

    if sizes:
        _plot(sizes, rows, args)
    lines = ["| n | method | acceptance | min bulk ESS | ESS / draw | R-hat | seconds |", "|---|---|---|---|---|---|---|"]
    for n in sizes:
        for method, _ in METHODS:
            r = rows[n, method]
            lines.append(f"| {n} | {method} | {r['acc']:.3f} | {r['ess']:.1f} | {r['ess_per_draw']:.4f} | "
                         f"{r['rhat']:.3f} | {r['seconds']:.1f} |")
    lines += ["", f"12 unknowns, cond(posterior precision) = {cond:.0f}, {args.chains} x {args.draws} draws:", "",
              "| method | acceptance | min bulk ESS | % of draws | R-hat |", "|---|---|---|---|---|"]
    for method, r in small.items():
        lines.append(f"| {method} | {r['acc']:.3f} | {r['ess']:.0f} | {100 * r['ess_per_draw']:.2f} | {r['rhat']:.3f} |")
    print("\nMachine: " + machine_info())
    print("Command: .venv/bin/python benchmarks/pcn_scaling.py " + " ".join(sys.argv[1:]))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
