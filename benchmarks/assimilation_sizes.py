"""Ensemble sizes batched in one compiled program (issue 16, item 1).

Lorenz-96 (N = 40 state, F = 8, dt 0.05, every component observed every step, R = I; DAPPER's
``sakov2008`` configuration, jinverse's own twin experiments as in ``assimilation_enkf.py``):
the ETKF with N in ``--sizes`` members (inflation ``--infl``, one per size) as one
`cycled_filter` call with a list of ensembles of different sizes (padded to the largest, the
padding masked) against one call per size. Figures: wall time of the first call (compile +
run) and warm (best of 3), and the time-mean analysis RMSE per N from both (the same
computation: single runs of a chaotic model drift apart over thousands of cycles through
rounding, so they agree statistically, not to the digit).

    .venv/bin/python benchmarks/assimilation_sizes.py [--cycles 2000] [--seeds 3000 3001]
        [--out benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from jinverse import assimilation as da  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import machine_info, record  # noqa: E402
from assimilation_enkf import CONFIGS, own_data  # noqa: E402


def timed(fn):
    """``(result, first call s, warm s best of 3)``."""
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t
    walls = []
    for _ in range(3):  # best of 3: the machine is shared
        t = time.perf_counter()
        out = jax.block_until_ready(fn())
        walls.append(time.perf_counter() - t)
    return out, first, min(walls)


def one_seed(seed, cycles, sizes, infls):
    c = CONFIGS["lorenz96"]
    truth, ys, burn = own_data("lorenz96", seed, cycles)
    burn = burn if burn < cycles else 0  # a short smoke run
    E = c["mu"] + np.sqrt(c["var"]) * np.asarray(jax.random.normal(jax.random.key(seed + 7), (max(sizes), c["n"])))
    Es = [E[:N] for N in sizes]
    key = jax.random.key(seed + 8)
    kw = dict(truth=truth, burn_in=burn, obs_std=c["obs_std"])
    step = c["flow"].step

    def batched():
        return da.cycled_filter(step, Es, ys, key=key, method=da.ETKF(inflation=list(infls)), **kw).mean_rmse

    def sequential():
        return [da.cycled_filter(step, E_b, ys, key=k, method=da.ETKF(inflation=f), **kw).mean_rmse
                for E_b, f, k in zip(Es, infls, jax.random.split(key, len(sizes)))]

    rb, first_b, warm_b = timed(batched)
    rs, first_s, warm_s = timed(sequential)
    return np.asarray(rb), np.asarray(rs), (first_b, warm_b, first_s, warm_s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=2000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[3000, 3001])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 15, 20, 30, 40])
    ap.add_argument("--infl", type=float, nargs="+", default=[1.04, 1.04, 1.03, 1.02, 1.02])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    warnings.simplefilter("ignore", da.FilterWarning)  # N = 10 < 40 without localisation loses the truth
    if len(args.infl) != len(args.sizes):
        ap.error(f"--infl: got {len(args.infl)} values, expected one per size ({len(args.sizes)})")
    runs = [one_seed(s, args.cycles, args.sizes, args.infl) for s in args.seeds]
    rb = np.array([r[0] for r in runs])  # (seeds, sizes)
    rs = np.array([r[1] for r in runs])
    t = np.array([r[2] for r in runs])  # (seeds, 4)
    for r in runs:
        print(np.round(r[0], 4), np.round(r[1], 4), np.round(r[2], 2), flush=True)
    rows = "\n".join(
        f"| {N} | {f} | {rb[:, i].mean():.3f} ({', '.join(f'{v:.3f}' for v in rb[:, i])}) | "
        f"{rs[:, i].mean():.3f} ({', '.join(f'{v:.3f}' for v in rs[:, i])}) |"
        for i, (N, f) in enumerate(zip(args.sizes, args.infl)))
    first_b, _, first_s, _ = t[0]  # later seeds reuse the compiled programs (same shapes)
    _, warm_b, _, warm_s = np.median(t, axis=0)
    body = (f"ETKF, sizes {args.sizes} with inflations {args.infl}; {args.cycles} observation times, burn-in 20 time "
            f"units; seeds {args.seeds} (own twin experiments, first ensembles the first N rows of one draw from "
            f"N(e_0, 0.001 I)). Load average {os.getloadavg()[0]:.1f} on 2 shared cores.\n\n"
            "| N | inflation | analysis RMSE, one batched call: mean (per seed) | one call per size |\n"
            "|---|---|---|---|\n" + rows
            + f"\n\nWall time: one batched call {first_b:.2f} s first (compile + run, first seed), "
              f"{warm_b:.2f} s warm (median over seeds); five calls, one per size, {first_s:.2f} s first (five compilations), "
              f"{warm_s:.2f} s warm. Batched / separate: {first_b / first_s:.2f}x first, {warm_b / warm_s:.2f}x warm "
              f"(the batch pads every experiment to N = {max(args.sizes)}).")
    print(body)
    if args.out:
        record(args.out, "assimilation-sizes", "Ensemble sizes batched in one program (issue 16)",
               "`.venv/bin/python benchmarks/assimilation_sizes.py --out benchmarks/RESULTS.md`", machine_info(), body)


if __name__ == "__main__":
    main()
