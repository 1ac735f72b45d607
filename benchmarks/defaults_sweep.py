"""Defaults that hold (issue 12, item 4): every built-in problem with default settings.

For each `ji.problems.names()` problem at its default options: 16 observations simulated from
16 prior draws (``problem.simulate`` of ``problem.sample_prior``; where a prior draw gives a
non-finite observation, the benchmark's own ``theta_true`` with fresh noise), then

- ``ji.solve_map(problem, y)`` with every default: how many of the 16 converged, wall time;
- ``ji.sample(problem, y[:k], key=...)`` with the default method, metric, warmup, draws and 4
  chains on the first ``k`` of them (``--sample-obs``, default 4: the full 16 take hours on a
  2-core CPU): the worst R-hat and smallest bulk ESS over the observations, and the sampler's
  own warnings.

A row is ``ok`` when every solve converged and every posterior has R-hat <= 1.01 and bulk ESS
>= 400 (`jinverse.posterior`'s thresholds, 100 per chain); ``warned`` when a check failed and
`ji.sample` or `ji.solve_map` said so (the message is shown); ``FAIL`` when a check failed
silently or the call raised. Each problem runs in its own process (``--timeout`` seconds each),
so one slow or crashing problem does not stop the sweep.

    python benchmarks/defaults_sweep.py                      # all problems
    python benchmarks/defaults_sweep.py --problems phillips two_moons --sample-obs 16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

BATCH = 16
RHAT_MAX = 1.01
ESS_MIN = 400  # 100 per chain x 4 chains


def observations(bench, batch: int, seed: int = 0):
    """``(y, source)``: ``batch`` observations of ``bench.problem`` from prior draws."""
    import jax
    import jax.numpy as jnp

    problem = bench.problem
    k_theta, k_noise = jax.random.split(jax.random.key(seed))
    keys = jax.random.split(k_noise, batch)
    theta = problem.sample_prior(k_theta, (batch,))
    y = jax.vmap(problem.simulate)(keys, theta)
    good = jnp.all(jnp.isfinite(y.reshape(batch, -1)), axis=1)
    if bool(jnp.all(good)):
        return y, "prior draws"
    truth = bench.theta_true
    y_true = jax.vmap(lambda k: problem.simulate(k, truth))(keys)
    y = jnp.where(good.reshape(batch, *[1] * (y.ndim - 1)), y, y_true)
    return y, f"prior draws ({int(batch - good.sum())} non-finite replaced by theta_true + noise)"


def run_one(name: str, batch: int, sample_obs: int, seed: int) -> dict:
    """The sweep's figures for one problem (run in a child process)."""
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    import jinverse as ji
    from jinverse.lanes import flatten as _flat

    bench = ji.problems.load(name)
    problem = bench.problem
    y, source = observations(bench, batch, seed)
    row: dict = {"problem": name, "d": int(_flat(problem)[0]), "source": source, "notes": []}

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = jax.block_until_ready(ji.solve_map(problem, y))
    row["map_s"] = time.perf_counter() - t0
    row["map_converged"] = int(np.sum(np.asarray(res.converged)))
    row["map_warned"] = any(issubclass(w.category, ji.map.MAPWarning) for w in caught)
    if row["map_converged"] < batch:
        row["notes"] += [str(w.message) for w in caught if issubclass(w.category, ji.map.MAPWarning)]

    if sample_obs > 0:
        ys = y[:sample_obs]
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            post = ji.sample(problem, ys, key=jax.random.key(seed))
            jax.block_until_ready(post.samples)
        row["sample_s"] = time.perf_counter() - t0
        row["sample_obs"] = sample_obs
        row["max_rhat"] = float(np.max(post.max_rhat))
        row["min_ess"] = float(np.min(post.min_ess))
        steps = np.asarray(post.stats.num_integration_steps)
        row["steps_per_draw"] = float(steps.mean())
        row["sample_warned"] = any(issubclass(w.category, Warning) and "Sampling" in w.category.__name__
                                   for w in caught)
        row["notes"] += [str(w.message) for w in caught if "Sampling" in w.category.__name__]
    return row


def status(row: dict, batch: int) -> str:
    if "error" in row:
        return "FAIL"
    map_ok = row["map_converged"] == batch
    sample_ok = "max_rhat" not in row or (row["max_rhat"] <= RHAT_MAX and row["min_ess"] >= ESS_MIN)
    if map_ok and sample_ok:
        return "ok"
    said = (map_ok or row["map_warned"]) and (sample_ok or row.get("sample_warned", False))
    return "warned" if said else "FAIL"


def child(name: str, args) -> dict:
    """Run one problem in a fresh process; a crash or timeout becomes an ``error`` row."""
    cmd = [sys.executable, __file__, "--one", name, "--batch", str(args.batch),
           "--sample-obs", str(args.sample_obs), "--seed", str(args.seed)]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"problem": name, "error": f"timed out after {args.timeout} s", "total_s": args.timeout}
    total = time.perf_counter() - t0
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"problem": name, "error": f"exit {out.returncode}: {tail}", "total_s": total}
    return {**json.loads(lines[-1]), "total_s": total}


def fmt(row: dict, batch: int) -> str:
    def num(key, spec):
        return format(row[key], spec) if key in row else "-"

    note = row.get("error") or "; ".join(row.get("notes", []))
    note = note.replace("|", "/").replace("\n", " ")
    if len(note) > 160:
        note = note[:157] + "..."
    conv = f"{row['map_converged']}/{batch}" if "map_converged" in row else "-"
    return (f"| {row['problem']} | {row.get('d', '-')} | {conv} | {num('map_s', '.1f')} | "
            f"{num('max_rhat', '.3f')} | {num('min_ess', '.0f')} | {num('steps_per_draw', '.1f')} | "
            f"{num('sample_s', '.0f')} | "
            f"{status(row, batch)} | {note} | {num('total_s', '.0f')} |")


HEADER = ("| problem | d | MAP converged | MAP s | max R-hat | min ESS | steps/draw | sample s | "
          "status | warning / note | total s |\n|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problems", nargs="*", help="default: all of ji.problems.names()")
    p.add_argument("--batch", type=int, default=BATCH)
    p.add_argument("--sample-obs", type=int, default=4, help="observations sampled (0: MAP only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=int, default=1200, help="seconds per problem")
    p.add_argument("--jsonl", help="also append each row as JSON to this file")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        try:
            row = run_one(args.one, args.batch, args.sample_obs, args.seed)
        except Exception as exc:  # reported as the row's error by the parent
            row = {"problem": args.one, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(row))
        return 0

    import jinverse as ji

    names = args.problems or list(ji.problems.names())
    print(f"# defaults sweep: batch {args.batch}, sampling {args.sample_obs} of them, "
          f"{os.cpu_count()} cores", flush=True)
    print(HEADER, flush=True)
    rows = []
    for name in names:
        row = child(name, args)
        rows.append(row)
        print(fmt(row, args.batch), flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as f:
                f.write(json.dumps(row) + "\n")
    bad = [r["problem"] for r in rows if status(r, args.batch) == "FAIL"]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} rows ok or warned; FAIL: {', '.join(bad) or 'none'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
