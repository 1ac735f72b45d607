"""Scaling: time per solved problem as the batch grows, peak memory, and 1/2/8 devices.

Every measurement runs in a fresh subprocess (so peak memory is that size's own). The problem
is the 8-parameter MLP inversion of benchmarks/map_batch.py (R^8 -> R^16, Gaussian prior and
noise); MAP by jinverse's damped Newton and by L-BFGS. Sampling: HMC (window adaptation) with
4 chains per observation, time per effective sample as the batch of posteriors grows.

    .venv/bin/python benchmarks/scaling.py                 # CPU: sizes up to 10^6, 1/2/8 devices
    .venv/bin/python benchmarks/scaling.py --devices 1 --precision 32 --label "GPU"   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def worker(kind: str, batch: int, devices: int, optimizer: str, precision: int) -> dict:
    import resource
    import time

    import jax

    if devices > 1:
        jax.config.update("jax_num_cpu_devices", devices)
    jax.config.update("jax_enable_x64", precision == 64)
    import jax.numpy as jnp
    import numpy as np

    import jinverse as ji

    sys.path.insert(0, HERE)
    from map_batch import make_problems

    problem = make_problems()["mlp"][0]
    dtype = jnp.float64 if precision == 64 else jnp.float32
    theta = problem.sample_prior(jax.random.key(0), (batch,))
    keys = jax.random.split(jax.random.key(1), batch)
    y = jax.jit(jax.vmap(problem.simulate))(keys, theta).astype(dtype)
    mesh = ji.batch_mesh() if devices > 1 else None
    out = {"kind": kind, "batch": batch, "devices": devices, "optimizer": optimizer, "precision": precision,
           "device": jax.devices()[0].device_kind}
    if kind == "map":
        import optax

        # names as solve_map takes them ("newton", "bfgs", "lbfgs"), or "optax-lbfgs"
        opt = optax.lbfgs() if optimizer == "optax-lbfgs" else optimizer
        t1 = time.perf_counter()
        r = ji.solve_map(problem, y, optimizer=opt, mesh=mesh)
        jax.block_until_ready(r.theta)
        t2 = time.perf_counter()
        r = ji.solve_map(problem, y, optimizer=opt, mesh=mesh)  # warm: same shapes, no compile
        jax.block_until_ready(r.theta)
        t3 = time.perf_counter()
        out.update(first_call_s=t2 - t1, warm_s=t3 - t2, per_problem_us=1e6 * (t3 - t2) / batch,
                   converged=float(np.mean(np.asarray(r.converged))),
                   rmse_vs_truth=float(np.sqrt(np.mean((np.asarray(r.theta) - np.asarray(theta)) ** 2))))
    else:  # sampling: `batch` posteriors x 4 chains
        kw = dict(key=jax.random.key(2), method="hmc", num_chains=4, num_warmup=200, num_samples=200)
        t1 = time.perf_counter()
        post = ji.sample(problem, y, **kw)
        jax.block_until_ready(post.samples)
        t2 = time.perf_counter()
        post = ji.sample(problem, y, **kw)
        jax.block_until_ready(post.samples)
        t3 = time.perf_counter()
        ess = np.asarray(post.ess())  # (*batch, d)
        min_ess = float(np.sum(np.min(ess.reshape(batch, -1), axis=-1)))
        out.update(first_call_s=t2 - t1, warm_s=t3 - t2, total_min_ess=min_ess,
                   us_per_effective_sample=1e6 * (t3 - t2) / min_ess)
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["device_peak_mib"] = stats["peak_bytes_in_use"] / 2**20
    return out


def run(kind, batch, devices, optimizer, precision, timeout):
    cmd = [sys.executable, __file__, "--worker", kind, str(batch), str(devices), optimizer, str(precision)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"kind": kind, "batch": batch, "devices": devices, "optimizer": optimizer,
                "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", nargs=5)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100, 1000, 10**4, 10**5, 10**6],
                    help="MAP batch sizes")
    ap.add_argument("--sample-sizes", type=int, nargs="*", default=[1, 16, 256, 4096],
                    help="batch sizes of sampled posteriors (4 chains each)")
    ap.add_argument("--optimizers", nargs="+", default=["newton", "bfgs"],
                    help="solve_map optimizers: newton, bfgs, lbfgs, gauss-newton, or optax-lbfgs")
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2, 8])
    ap.add_argument("--device-batch", type=int, default=16384)
    ap.add_argument("--precision", type=int, default=64)
    ap.add_argument("--label", default="CPU")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--timeout", type=int, default=1800)
    args = ap.parse_args()
    if args.worker:
        kind, b, d, opt, prec = args.worker
        print(json.dumps(worker(kind, int(b), int(d), opt, int(prec))))
        return
    rows = []
    for opt in args.optimizers:
        for b in args.sizes:
            rows.append(run("map", b, 1, opt, args.precision, args.timeout))
            print(json.dumps(rows[-1]), flush=True)
    for d in [d for d in args.devices if d > 1]:
        for opt in args.optimizers:
            rows.append(run("map", args.device_batch, d, opt, args.precision, args.timeout))
            print(json.dumps(rows[-1]), flush=True)
    for b in args.sample_sizes:
        rows.append(run("sample", b, 1, "hmc", args.precision, args.timeout))
        print(json.dumps(rows[-1]), flush=True)

    sys.path.insert(0, HERE)
    from _common import machine_info, record

    lines = ["| what | optimizer / sampler | batch | devices | warm time (s) | per problem (µs) or per effective "
             "sample (µs) | first call incl. compile (s) | converged | peak host RSS (MiB) | device peak (MiB) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['kind']} | {r['optimizer']} | {r['batch']} | {r['devices']} | error: {r['error'][:80]} |||||")
            continue
        per = r.get("per_problem_us", r.get("us_per_effective_sample"))
        lines.append(f"| {r['kind']} | {r['optimizer']} | {r['batch']} | {r['devices']} | {r['warm_s']:.3f} | "
                     f"{per:.2f} | {r['first_call_s']:.2f} | {r.get('converged', float('nan')):.3f} | "
                     f"{r['peak_rss_mib']:.0f} | {r.get('device_peak_mib', float('nan')):.0f} |")
    key = "scaling" if args.label == "CPU" else f"scaling-{args.label.lower().replace(' ', '-')}"
    record(args.out, key, f"Scaling with batch size and devices ({args.label}, float{args.precision})",
           f"`.venv/bin/python benchmarks/scaling.py {' '.join(sys.argv[1:])}`".replace(" `", "`"),
           machine_info(), "\n".join(lines))


if __name__ == "__main__":
    main()
