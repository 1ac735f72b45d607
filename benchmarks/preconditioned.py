"""Preconditioned sampling: `ji.sample` with its default metric ("auto" -> "laplace") on CUQIpy's
Deconvolution1D, against today's dense-metric NUTS, the diagonal metric and CUQIpy's LinearRTO.

The problem, data, prior N(0, I) and noise are those of benchmarks/sampling.py
(``cuqi.testproblem.Deconvolution1D(dim=128)``), and so are the estimators: min-ESS is the
smallest blackjax bulk ESS over the 128 parameters, time is warm wall time of the whole call
(for "laplace": the MAP, the curvature and its Cholesky, warmup and draws), best of
``--repeats`` with the jinverse rows timed in turns; compile = first call minus warm call.
The jinverse rows run with ``diagnose=False`` like the peers (R-hat/ESS timed apart).

    .venv/bin/python benchmarks/preconditioned.py          # ~5 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import _version, machine_info  # noqa: E402
from sampling import accuracy, interleaved, make_problem, min_ess, ratio, run_cuqi, setup  # noqa: E402

import jinverse as ji  # noqa: E402


def run(problem, y, **kw):
    def go(seed):
        post = ji.sample(problem, y, key=jax.random.key(seed), diagnose=False, **kw)
        return post.samples, post.stats.num_integration_steps

    return go


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--draws", type=int, default=1000, help="kept draws per chain (ji.sample's default)")
    p.add_argument("--dense-warmup", type=int, default=1000, help="warmup of the dense-mass row")
    p.add_argument("--cuqi-warmup", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    tp, a, y, s, mean, sd = setup(args.n)
    problem = make_problem(a, s)
    D, WD = args.draws, args.dense_warmup
    contenders = [
        ("jinverse `ji.sample` defaults (NUTS, metric='auto' -> 'laplace')", f"4 x (500+{D})",
         run(problem, y, num_samples=D)),
        ("jinverse NUTS, metric='dense' (today's dense_mass=True)", f"4 x ({WD}+{D})",
         run(problem, y, num_warmup=WD, num_samples=D, metric="dense")),
        ("jinverse NUTS, metric='diagonal' (the default before)", f"4 x (500+{D})",
         run(problem, y, num_samples=D, metric="diagonal")),
    ]
    results = interleaved([c[2] for c in contenders], args.repeats)
    rows = []
    for (name, nd, _), (first, t, (out, steps)) in zip(contenders, results):
        st = np.asarray(steps)
        rows.append((name, nd, first - t, t, min_ess(out), accuracy(out, mean, sd), st.mean(), st.max()))
    _, t, out = run_cuqi(tp, "LinearRTO", args.cuqi_warmup, D)
    rows.append(("CUQIpy LinearRTO, 1 chain", f"1 x ({args.cuqi_warmup}+{D})", np.nan, t, min_ess(out),
                 accuracy(out, mean, sd), np.nan, np.nan))
    # R-hat/ESS of the default call (what diagnose=True adds), warm
    post = ji.sample(problem, y, key=jax.random.key(0), num_samples=D, diagnose=False)
    post.diagnose()
    t0 = time.perf_counter()
    diag = post.diagnose()
    t_diag = time.perf_counter() - t0

    best = rows[0][4] / rows[0][3]
    lines = ["| contender | draws (chains x (warmup+kept)) | compile (s) | warm time (s) | min ESS | "
             "min-ESS/s | steps per draw, mean (max) | defaults / this | max\\|err\\|/sd |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, nd, comp, t, e, acc, sm, sx in rows:
        steps = "-" if np.isnan(sm) else f"{sm:.1f} ({sx:.0f})"
        lines.append(f"| {name} | {nd} | {comp:.1f} | {t:.2f} | {e:.0f} | {e / t:.1f} | {steps} | "
                     f"{ratio(best, e / t):.2f}x | {acc:.3f} |")
    r_rto = ratio(best, rows[3][4] / rows[3][3])
    r_dense = ratio(best, rows[1][4] / rows[1][3])
    lines += ["", f"Targets (issue #12): defaults / CUQIpy LinearRTO = **{r_rto:.1f}x** (target >= 10x); "
              f"defaults / today's dense-metric NUTS = **{r_dense:.1f}x** (target >= 3x). R-hat/ESS of the "
              f"default call (diagnose=True adds it): {t_diag:.2f} s warm; max R-hat {float(diag.max_rhat):.4f}, "
              f"status {int(diag.status)}.",
              "", f"Versions: cuqipy {_version('cuqipy')}."]
    # printed, not written: the section is appended to benchmarks/RESULTS.md by hand (the file
    # is shared by several scripts being run at the same time)
    print(f"Machine: {machine_info()}\n\nCommand: {' '.join(['.venv/bin/python', *sys.argv])}\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
