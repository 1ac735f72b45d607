"""Issue 17: the jinverse calls of `map_batch.py` and `sampling.py`, timed warm, for a before/after
comparison of two jinverse trees in the same session.

Only the public API is called (``ji.solve_map``, ``ji.sample``, ``Posterior.diagnose``), on the
problems of those two scripts (their own builders), so the same file runs against an old tree
and the current one; which jinverse is imported is printed. Run it alternately with each tree
on ``PYTHONPATH`` and take medians over runs (`--compare` does the alternating and writes the
ratios)::

    .venv/bin/python benchmarks/restructure_ab.py --compare /tmp/old209 . --runs 3

One run prints one JSON line per call: ``{"row": ..., "s": best warm seconds of the repeats}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(fn, repeats):
    import jax
    import numpy as np

    jax.block_until_ready(fn())  # compile
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    # the best of the repeats: on a shared, loaded machine the other processes only add time
    return float(np.min(ts))


def run(args):
    sys.path.insert(0, HERE)
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import map_batch
    import numpy as np
    import sampling

    import jinverse as ji

    print(json.dumps({"jinverse": ji.__file__}), flush=True)
    warnings.simplefilter("ignore")
    out = {}
    for name, (problem, _, fwd) in map_batch.make_problems().items():
        y = jnp.asarray(map_batch.data(fwd, args.map_batch))
        for label, opt in map_batch.OPTIMIZERS:
            if args.optimizers and label.split()[0] not in args.optimizers.split(","):
                continue
            row = f"map_batch {name} {label} B={args.map_batch}"
            out[row] = timed(lambda: ji.solve_map(problem, y, optimizer=opt).log_posterior, args.repeats)  # noqa: B023
            print(json.dumps({"row": row, "s": out[row]}), flush=True)
    _, a, y, s, _, _ = sampling.setup(args.n)
    problem = sampling.make_problem(a, s)
    y = jnp.asarray(y)
    for mass in args.masses.split(","):
        dense = mass == "dense"
        warm = args.warmup if not dense else max(args.warmup, 75 + int(1.5 * args.n) + 50)
        row = f"sampling NUTS {mass} mass n={args.n} 4x({warm}+{args.draws})"
        post = {}

        def go(dense=dense, warm=warm, post=post):
            post[0] = ji.sample(problem, y, key=jax.random.key(0), num_chains=4, num_warmup=warm,
                                num_samples=args.draws, dense_mass=dense, diagnose=False)
            return post[0].samples

        out[row] = timed(go, args.repeats)
        print(json.dumps({"row": row, "s": out[row]}), flush=True)
        row = f"sampling diagnose() {mass} mass"
        out[row] = timed(lambda post=post: post[0].diagnose().max_rhat, args.repeats)
        print(json.dumps({"row": row, "s": out[row]}), flush=True)
    rng = np.random.default_rng(1)
    ys = jnp.asarray(rng.normal(size=(args.batch, a.shape[1])) @ a.T + s * rng.normal(size=(args.batch, a.shape[0])))
    for chunk in [None if c == "none" else int(c) for c in args.chunks.split(",")]:
        row = f"sampling batched {args.batch} obs NUTS dense 4x({args.batch_warmup}+{args.batch_draws}) chunk={chunk}"
        out[row] = timed(lambda chunk=chunk: ji.sample(problem, ys, key=jax.random.key(0), chunk_size=chunk,
                                                       num_warmup=args.batch_warmup, num_samples=args.batch_draws,
                                                       dense_mass=True).samples, args.repeats)
        print(json.dumps({"row": row, "s": out[row]}), flush=True)


def compare(args):
    """Alternate runs of each tree, ``args.runs`` times; medians and new/old ratios."""
    import numpy as np

    trees = [os.path.abspath(t) for t in args.compare]
    times: dict[str, dict[str, list[float]]] = {t: {} for t in trees}
    passthrough = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                   if k in ("map_batch", "n", "warmup", "draws", "batch", "batch_warmup", "batch_draws", "repeats",
                            "optimizers", "masses", "chunks")]
    for r in range(args.runs):
        for t in trees:
            env = dict(os.environ, PYTHONPATH=t)
            lines = subprocess.run([sys.executable, __file__, *passthrough], env=env, check=True,
                                   capture_output=True, text=True).stdout.splitlines()
            for line in lines:
                rec = json.loads(line)
                if "jinverse" in rec:
                    assert rec["jinverse"].startswith(t), (rec, t)
                    continue
                times[t].setdefault(rec["row"], []).append(rec["s"])
                print(f"run {r + 1} {t}: {rec['row']} {rec['s']:.4f} s", file=sys.stderr, flush=True)
    old, new = trees
    print("| call | old (s) | new (s) | new / old |\n|---|---:|---:|---:|")
    for row in times[old]:
        o, n = float(np.median(times[old][row])), float(np.median(times[new][row]))
        print(f"| {row} | {o:.3f} | {n:.3f} | {n / o:.2f} |")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--compare", nargs=2, metavar=("OLD_TREE", "NEW_TREE"))
    p.add_argument("--runs", type=int, default=3, help="alternating runs per tree (--compare)")
    p.add_argument("--repeats", type=int, default=3, help="warm repeats per call in one run (best)")
    p.add_argument("--map-batch", type=int, default=256)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--draws", type=int, default=300)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--batch-warmup", type=int, default=200)
    p.add_argument("--batch-draws", type=int, default=100)
    p.add_argument("--optimizers", default="", help="map_batch rows to run, by first word (e.g. BFGS,auto); all if empty")
    p.add_argument("--masses", default="diagonal,dense")
    p.add_argument("--chunks", default="none,2", help="chunk_size values of the batched rows ('none': one vmap)")
    args = p.parse_args()
    if args.compare:
        compare(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
