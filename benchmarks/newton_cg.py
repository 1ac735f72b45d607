"""Figures for solve_map(optimizer="auto") (issue 12, item 1): prints markdown tables.

    .venv/bin/python benchmarks/newton_cg.py mlp [--sizes 1024 4096]      # auto vs BFGS vs Gauss-Newton
    .venv/bin/python benchmarks/newton_cg.py deconv1d [--batch 1000]      # default vs old default (L-BFGS)
    .venv/bin/python benchmarks/newton_cg.py deconv2d [--sizes 32 64 128] # Newton-CG mesh independence
    .venv/bin/python benchmarks/newton_cg.py problems [--batch 16]        # every built-in problem, default

Timings are warm (compile reported apart), median of ``--repeats``, in one process.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jinverse as ji  # noqa: E402
from jinverse import newton  # noqa: E402
from jinverse.steps import Point, Target  # noqa: E402


def timed(fn, repeats):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    compile_s = time.perf_counter() - t0
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), compile_s, out


def solve(problem, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ji.solve_map(problem, y, **kw)


def mlp(args):
    sys.path.insert(0, "benchmarks")
    from map_batch import data, make_problems

    print("| problem | optimizer | B | solves/s | x BFGS | converged | max steps |\n|---|---|---:|---:|---:|---:|---:|")
    for name, (problem, _, fwd) in make_problems().items():
        for B in args.sizes:
            Y = jnp.asarray(data(fwd, B))
            base = None
            for opt in ("bfgs", "auto", "gauss-newton", "newton"):
                t, _, r = timed(lambda: solve(problem, Y, optimizer=opt), args.repeats)
                base = base or t
                label = f"auto ({newton.choose(problem)})" if opt == "auto" else opt
                print(f"| {name} | {label} | {B} | {B / t:.0f} | {base / t:.2f} | "
                      f"{np.mean(np.asarray(r.converged)):.3f} | {int(np.max(r.num_steps))} |", flush=True)


def newton_cg_stats(problem, y, tol=1e-9, max_steps=500):
    """Newton steps, CG iterations (curvature products) and loop steps of one Newton-CG solve."""
    cg, target = newton.NewtonCG(), Target(problem, y, jacobian=False, tol=tol)
    u0 = problem.to_unconstrained(problem.prior.center())
    v0, g0 = jax.value_and_grad(target.objective)(u0)

    def small(v, g):
        return jnp.linalg.norm(jnp.ravel(g)) <= tol * (1 + jnp.abs(v))

    def cond(c):
        _, _, v, g, k, n, stalled = c
        return (k < max_steps) & ~small(v, g) & ~stalled

    def body(c):
        u, s, v, g, k, n, _ = c
        (u, v, g), s, stalled, adv = cg.step(target, Point(u, v, g), s)
        return u, s, v, g, k + adv, n + 1, stalled

    start = (u0, cg.init(target, Point(u0, v0, g0)), v0, g0, 0, 0, False)
    c = jax.jit(lambda: jax.lax.while_loop(cond, body, start))()
    return int(c[4]), int(c[1].products), int(c[5]), bool(small(c[2], c[3]))


def deconv1d(args):
    b = ji.problems.load("deconvolution1d", batch=args.batch)
    t_new, c_new, r_new = timed(lambda: solve(b.problem, b.y), args.repeats)
    t_old, c_old, r_old = timed(lambda: solve(b.problem, b.y, optimizer="lbfgs", max_steps=500), 1)
    print(f"deconvolution1d, {args.batch} observations (n=128): default ({newton.choose(b.problem)}) "
          f"{t_new:.2f} s (compile {c_new:.1f} s), converged {np.mean(np.asarray(r_new.converged)):.4f}, "
          f"max steps {int(np.max(r_new.num_steps))}; old default L-BFGS 500 steps {t_old:.2f} s "
          f"(compile {c_old:.1f} s), converged {np.mean(np.asarray(r_old.converged)):.4f}; "
          f"speed-up {t_old / t_new:.1f}x", flush=True)


def deconv2d(args):
    print("| pixels | d | Newton steps | CG iterations (curvature products) | loop steps | newton-cg s | "
          "L-BFGS s (500 steps) | L-BFGS converged | x L-BFGS |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        b = ji.problems.load("deconvolution2d", n=n)
        steps, cg, loops, ok = newton_cg_stats(b.problem, b.y)
        t_cg, _, r = timed(lambda: solve(b.problem, b.y, optimizer="newton-cg"), args.repeats)
        t_lb, _, r_lb = timed(lambda: solve(b.problem, b.y, optimizer="lbfgs"), 1)
        assert ok and bool(r.converged)
        print(f"| {n}² | {n * n} | {steps} | {cg} | {loops} | {t_cg:.2f} | {t_lb:.2f} | {bool(r_lb.converged)} | "
              f"{t_lb / t_cg:.1f} |", flush=True)


def problems(args):
    print("| problem | d | auto picks | converged | status counts (ok, max_steps, nonfinite, stalled) | "
          "max steps | seconds (incl. compile) |\n|---|---:|---|---:|---|---:|---:|")
    for name in ji.problems.names():
        batch = args.batch if name != "tomography" else args.tomography_batch
        b = ji.problems.load(name, batch=batch)
        d = sum(np.size(leaf) for leaf in jax.tree.leaves(b.problem.prior.center()))
        t0 = time.perf_counter()
        r = solve(b.problem, b.y)
        st = np.asarray(jax.block_until_ready(r.status))
        print(f"| {name} | {d} | {newton.choose(b.problem)} | {np.mean(st == 0):.2f} ({st.size}) | "
              f"{np.bincount(st, minlength=4).tolist()} | {int(np.max(r.num_steps))} | "
              f"{time.perf_counter() - t0:.1f} |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["mlp", "deconv1d", "deconv2d", "problems"])
    ap.add_argument("--sizes", type=int, nargs="+")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--tomography-batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.what == "mlp":
        args.sizes = args.sizes or [1024, 4096]
    if args.what == "deconv2d":
        args.sizes = args.sizes or [32, 64, 128]
    if args.batch is None:
        args.batch = 1000 if args.what == "deconv1d" else 16
    {"mlp": mlp, "deconv1d": deconv1d, "deconv2d": deconv2d, "problems": problems}[args.what](args)


if __name__ == "__main__":
    main()
