"""Tempered SMC and replica exchange against NUTS on multimodal benchmarks: C2ST against the
reference draws.

One observation of each problem (``ji.problems.load(name)``, seed 0), the same number of draws
for every method: NUTS with ``--chains`` chains x ``--draws`` draws after ``--warmup``; SMC
with ``--chains`` x ``--draws`` particles; ``pt``: NUTS with replica exchange
(``tempering=--temperatures``, the default ladder), same chains, warmup and draws; ``pta``: the
same with the ladder adapted in the warmup (``adapt_ladder=True``). Each method
runs twice in the same process: the first call's extra time over the second is reported as
compile time, the second (new key) as warm wall time. C2ST (`jinverse.problems.evaluate`,
0.5 = indistinguishable) on the second run.

    .venv/bin/python benchmarks/smc.py [--problems two_moons slcp] [--methods nuts smc pt pta]
        [--out benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import jinverse as ji  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import machine_info, record  # noqa: E402


def run(bench, method, key, args):
    kw = dict(num_chains=args.chains, num_samples=args.draws)
    if method in ("nuts", "pt", "pta"):
        kw["num_warmup"] = args.warmup
    if method in ("pt", "pta"):
        kw["adapt_ladder"] = method == "pta"
        method, kw["tempering"] = "nuts", args.temperatures
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = time.perf_counter()
        post = ji.sample(bench.problem, bench.y, key=key, method=method, **kw)
        jax.block_until_ready(post.samples)
        wall = time.perf_counter() - t
    return post, wall, [str(w.message).split(":")[0] for w in caught]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", nargs="+", default=["two_moons", "slcp", "gaussian_mixture",
                                                      "inverse_kinematics", "trained_classifier"])
    ap.add_argument("--methods", nargs="+", default=["nuts", "smc", "pt"], choices=["nuts", "smc", "pt", "pta"])
    ap.add_argument("--temperatures", type=int, default=8)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--out", default=None, help="RESULTS.md to write the section to (default: print)")
    args = ap.parse_args()
    rows = ["| problem | method | C2ST | compile s | warm wall s | notes |", "|---|---|---|---|---|---|"]
    for name in args.problems:
        bench = ji.problems.load(name)
        for method in args.methods:
            _, first, _ = run(bench, method, jax.random.key(1), args)
            post, wall, caught = run(bench, method, jax.random.key(2), args)
            score = float(ji.problems.evaluate(bench, post, metric="c2st")["value"])
            if method == "smc":
                s = post.smc
                note = (f"{int(s.num_stages)} stages, log Z {float(post.log_evidence):.3f}, final ESS "
                        f"{float(s.final_ess):.0f}, acceptance {float(s.acceptance_rate):.2f}")
            elif method in ("pt", "pta"):
                rates = " ".join(f"{float(r):.2f}" for r in post.tempering.swap_acceptance)
                betas = " ".join(f"{float(b):.3g}" for b in post.tempering.betas)
                note = f"max R-hat {float(post.max_rhat):.2f}, β {betas}, swap acceptance {rates}"
            else:
                note = f"max R-hat {float(post.max_rhat):.2f}"
            note += "; warned: " + ", ".join(caught) if caught else "; no warning"
            rows.append(f"| {name} | {method} | {score:.3f} | {max(first - wall, 0):.1f} | {wall:.1f} | {note} |")
            print(rows[-1], flush=True)
    body = (f"One observation each (seed 0), {args.chains} x {args.draws} draws per method (NUTS after "
            f"{args.warmup} warmup steps; SMC: that many particles, defaults: 20 random-walk moves per "
            "stage, target ESS 0.5; pt: NUTS with replica exchange, "
            f"{args.temperatures} temperatures: {args.temperatures - 1} geometric from 1 to "
            f"{ji.tempering.BETA_MIN:g}, then 0 (the prior); swaps every draw; pta: the same ladder's ends, the βs "
            f"adapted in the warmup, {ji.tempering.ADAPT_ROUNDS} rounds equalising the swap rejections, then "
            "fixed). C2ST against the problem's reference "
            "draws (0.5 is ideal).\n\n"
            + "\n".join(rows))
    command = "`.venv/bin/python benchmarks/smc.py " + " ".join(sys.argv[1:]) + "`"
    if args.out:
        record(args.out, "smc", "Tempered SMC and replica exchange vs NUTS on multimodal posteriors (C2ST)", command,
               machine_info(), body)
    print(body)


if __name__ == "__main__":
    main()
