"""Low-rank Laplace on `deconvolution2d` at n² pixels: rank, time, memory and accuracy.

For each image side ``n`` (one process per size, so peak memory is per size):
- the closed-form spectrum of the prior-preconditioned misfit Hessian (the problem's default
  prior is iid ``N(0, s²)``, its blur separable, ``A = M ⊗ M``, so ``λ_ij = (s/σ)² μ_i² μ_j²``
  from the 1-D singular values ``μ`` of ``M``): the rank holding 99% of the data-informed
  variance reduction ``Σ log(1+λ)`` (and of the trace reduction ``Σ λ/(1+λ)``);
- ``ji.laplace(problem, y, at=theta, rank=r)``: warm wall time (compile reported apart), peak
  RSS, the eigenvalues against the closed form, its own 99% rank (over the kept pairs);
- where affordable (n ≤ 64) the dense ``ji.laplace`` at the same point (for this linear-Gaussian
  problem the exact posterior): its time and the low-rank pointwise std's relative error.

The curvature does not depend on the expansion point for a linear model; both are expanded at
``theta_true`` so that the figures time the curvature work, not the mode search (item 1).

Usage: ``python benchmarks/lowrank_laplace.py [--sizes 32 64 128] [--rank 1100]`` prints a
markdown section (append it to RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def one_size(n: int, rank: int, oversampling: int, power_iters: int, dense: bool) -> dict:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    import jinverse as ji

    bench = ji.problems.load("deconvolution2d", n=n)
    p, y, at = bench.problem, bench.y, bench.theta_true
    s = float(np.asarray(p.prior.std).ravel()[0])
    sigma = float(np.asarray(p.likelihood.std).ravel()[0])
    mu = np.linalg.svd(np.asarray(p.forward.matrix), compute_uv=False)
    lam = np.sort(((s / sigma) ** 2 * np.outer(mu, mu) ** 2).ravel())[::-1]
    gain, trace = np.cumsum(np.log1p(lam)), np.cumsum(lam / (1 + lam))
    d = n * n
    r = min(rank, d)
    out = {"n": n, "d": d, "rank": r, "r99_logdet": int(np.argmax(gain >= 0.99 * gain[-1]) + 1),
           "r99_trace": int(np.argmax(trace >= 0.99 * trace[-1]) + 1), "above_0.1": int(np.sum(lam > 0.1)),
           "kept_fraction": float(gain[r - 1] / gain[-1])}
    kw = dict(at=at, rank=r, oversampling=oversampling, power_iters=power_iters)
    t0 = time.perf_counter()
    approx = ji.laplace(p, y, **kw)
    jax.block_until_ready(approx.eigvecs)
    first = time.perf_counter() - t0
    warm = []
    for _ in range(2 if n <= 64 else 1):
        t0 = time.perf_counter()
        approx = ji.laplace(p, y, **kw)
        std = approx.std()
        jax.block_until_ready(std)
        warm.append(time.perf_counter() - t0)
    out.update(lowrank_s=float(np.median(warm)), lowrank_compile_s=first - min(warm),
               lowrank_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
               factor_mib=(approx.eigvecs.size + approx.eigvals.size) * 8 / 2**20,
               r99_randomized=int(approx.informed_rank(0.99)), ok=bool(approx.ok),
               eig_top_relerr=float(np.max(np.abs(np.asarray(approx.eigvals[:r // 2]) - lam[:r // 2]) / lam[:r // 2])),
               eig_last=float(approx.eigvals[-1]), eig_last_exact=float(lam[r - 1]))
    if dense:
        t0 = time.perf_counter()
        ref = ji.laplace(p, y, at=at)
        ref_std = jnp.sqrt(jnp.diagonal(ref.covariance))
        jax.block_until_ready(ref_std)
        out["dense_s"] = time.perf_counter() - t0  # one call: compile + run (a d x d Hessian)
        rel = np.asarray(std) / np.asarray(ref_std) - 1
        # bound (ii) of tests/test_lowrank.py: var_r - var <= λ_{r+1}/(1+λ_{r+1}) var_pr
        tail = lam[r] / (1 + lam[r]) if r < d else 0.0
        bound = np.sqrt(1 + tail * s**2 / np.asarray(ref_std).ravel() ** 2) - 1
        out.update(std_relerr_max=float(np.max(np.abs(rel))), std_relerr_median=float(np.median(np.abs(rel))),
                   std_bound_max=float(np.max(bound)), std_overstated=bool(np.all(rel >= -1e-9)),
                   dense_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return out


def table(rows) -> str:
    lines = ["| n² | d | exact r99 (log det) | exact r99 (trace) | λ > 0.1 | r kept | kept share of Σlog(1+λ) | "
             "r99 from the kept pairs | low-rank s (warm) | compile s | peak RSS GiB | V, λ MiB | "
             "dense s (1 call) | dense peak RSS GiB | std rel. err max / median | bound (ii) max |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for o in rows:
        dense = (f"{o['dense_s']:.1f} | {o['dense_rss_gib']:.2f} | {o['std_relerr_max']:.1e} / "
                 f"{o['std_relerr_median']:.1e} | {o['std_bound_max']:.1e}") if "dense_s" in o else \
            "not run (issue 19) | - | - | -"
        lines.append(f"| {o['n']}² | {o['d']} | {o['r99_logdet']} | {o['r99_trace']} | {o['above_0.1']} | "
                     f"{o['rank']} | {o['kept_fraction']:.4f} | {o['r99_randomized']} | {o['lowrank_s']:.1f} | "
                     f"{o['lowrank_compile_s']:.1f} | {o['lowrank_rss_gib']:.2f} | {o['factor_mib']:.0f} | {dense} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--rank", type=int, default=1100)
    ap.add_argument("--oversampling", type=int, default=10)
    ap.add_argument("--power-iters", type=int, default=1)
    ap.add_argument("--dense-max", type=int, default=64, help="largest n for the dense comparison")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # worker: one size, JSON on stdout
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one_size(a.one, a.rank, a.oversampling, a.power_iters, a.one <= a.dense_max)))
        return
    rows = []
    for n in a.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--rank", str(a.rank), "--oversampling",
               str(a.oversampling), "--power-iters", str(a.power_iters), "--dense-max", str(a.dense_max)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr)
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from _common import machine_info

    print(f"Machine: {machine_info()}\n\nCommand: `python benchmarks/lowrank_laplace.py --sizes "
          f"{' '.join(map(str, a.sizes))} --rank {a.rank} --oversampling {a.oversampling} "
          f"--power-iters {a.power_iters}`\n\n{table(rows)}")


if __name__ == "__main__":
    main()
