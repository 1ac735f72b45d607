"""Batched tempered SMC (issue 13 figure): 256 observations of ``two_moons`` in one
``ji.sample(..., method="smc")`` call against 256 calls of one observation each.

Observations: ``problem.simulate`` of 256 prior draws (seed 0). Both sides use the same
particles per observation (``--particles``) and SMC defaults; the single calls run after one
warm-up call, so compilation is not counted on either side (it is reported apart). The log
evidences of the two runs are compared as a sanity check (different random keys: they agree
to Monte Carlo error, not bit for bit).

    .venv/bin/python benchmarks/smc_batch.py [--batch 256] [--particles 1000]
"""

from __future__ import annotations

import argparse
import time
import warnings

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import jinverse as ji  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--particles", type=int, default=1000)
    args = ap.parse_args()
    problem = ji.problems.load("two_moons").problem
    k_theta, k_y, k_run = jax.random.split(jax.random.key(0), 3)
    theta = problem.sample_prior(k_theta, (args.batch,))
    y = jax.vmap(problem.simulate)(jax.random.split(k_y, args.batch), theta)
    kw = dict(method="smc", num_samples=args.particles)
    warnings.simplefilter("ignore")

    t0 = time.perf_counter()
    post = ji.sample(problem, y, key=k_run, **kw)
    jax.block_until_ready(post.samples)
    first_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    post = ji.sample(problem, y, key=k_run, **kw)
    jax.block_until_ready(post.samples)
    batched = time.perf_counter() - t0

    t0 = time.perf_counter()
    jax.block_until_ready(ji.sample(problem, y[0], key=k_run, **kw).samples)
    first_single = time.perf_counter() - t0
    logz = []
    t0 = time.perf_counter()
    for i in range(args.batch):
        p = ji.sample(problem, y[i], key=jax.random.fold_in(k_run, i), **kw)
        logz.append(float(p.log_evidence))
    singles = time.perf_counter() - t0
    diff = np.abs(np.asarray(post.log_evidence) - np.asarray(logz))
    print(f"two_moons, {args.batch} observations, SMC with {args.particles} particles each:")
    print("| run | first call s (incl. compile) | warm s | per observation ms |\n|---|---|---|---|")
    print(f"| one call, {args.batch} observations | {first_batched:.1f} | {batched:.2f} | "
          f"{1e3 * batched / args.batch:.1f} |")
    print(f"| {args.batch} calls, one observation each | {first_single:.1f} (one) | {singles:.2f} | "
          f"{1e3 * singles / args.batch:.1f} |")
    bad = int(np.sum(~np.isfinite(np.asarray(post.log_evidence))))
    print(f"one call / {args.batch} calls, warm: {singles / batched:.2f}x; |log Z batched - log Z single| "
          f"over finite pairs: median {np.nanmedian(diff):.3f}, max {np.nanmax(diff):.3f} nats (different keys: "
          f"Monte Carlo error); non-finite log Z in {bad} of {args.batch} (batched call)")


if __name__ == "__main__":
    main()
