"""Batched MAP: jinverse vs a SciPy L-BFGS-B loop vs a one-at-a-time jitted JAX loop.

Two problems: linear-Gaussian (n=8, m=16) and a fixed random MLP R^8 -> R^16 (tanh, 32 hidden),
Gaussian prior (std 1) and noise (std 0.05). For each batch size B the three contenders solve the
same B observations; we report warm solves/second (median of repeats), compile time separately,
and the largest gap in final objective against SciPy (all must reach the same optimum).
jinverse's optimisers: its default for few unknowns, flat-loop BFGS (``optimizer="bfgs"``), the
same loop with L-BFGS (``"lbfgs"``, the default above 64 unknowns), ``optax.lbfgs()`` (zoom line
search nested in each step), damped Newton and Gauss-Newton. The one-at-a-time loop
runs the same solver (the same `_solve_one`) one observation per jitted call.

    .venv/bin/python benchmarks/map_batch.py [--sizes 1 64 1024 4096] [--devices 2] [--out benchmarks/RESULTS.md]

With ``--devices N`` the batch is sharded over N virtual CPU devices (``mesh=ji.batch_mesh()``):
one XLA CPU device runs these small vmapped loops on about one core, N devices use N cores.
"""

from __future__ import annotations

import argparse
import os
import time

# The SciPy loop solves tiny (16x8) systems one at a time: BLAS threads only add contention.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import sys

import jax

# --devices N: N virtual CPU devices and a batch mesh (set before JAX starts its backend)
if "--devices" in sys.argv:
    jax.config.update("jax_num_cpu_devices", int(sys.argv[sys.argv.index("--devices") + 1]))
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import scipy.optimize  # noqa: E402
from _common import machine_info, record  # noqa: E402

import jinverse as ji  # noqa: E402
from jinverse.map import _Settings, _solve_one  # noqa: E402
from jinverse.newton import choose  # noqa: E402

N, M, H, NOISE = 8, 16, 32, 0.05
# jinverse's default here (8 unknowns) is its flat-loop BFGS; "lbfgs" the same loop with L-BFGS
OPTIMIZERS = (("BFGS (default)", "bfgs"), ("L-BFGS", "lbfgs"), ("optax.lbfgs", optax.lbfgs()),
              ("newton", "newton"), ("gauss-newton", "gauss-newton"), ("auto", "auto"))


def make_problems():
    k1, k2, k3, k4 = jax.random.split(jax.random.key(42), 4)
    A = np.asarray(jax.random.normal(k1, (M, N)) / np.sqrt(N))
    W1 = np.asarray(jax.random.normal(k2, (H, N)) / np.sqrt(N))
    b1 = np.asarray(0.1 * jax.random.normal(k3, (H,)))
    W2 = np.asarray(jax.random.normal(k4, (M, H)) / np.sqrt(H))

    def mlp_jax(t):
        return W2 @ jnp.tanh(W1 @ t + b1)

    def mlp_np(t):
        h = np.tanh(W1 @ t + b1)
        return W2 @ h, h

    prior = ji.priors.Gaussian(jnp.zeros(N), 1.0)
    lik = ji.likelihoods.Gaussian(NOISE)
    linear = ji.InverseProblem(jnp.asarray(A), prior, lik)
    mlp = ji.InverseProblem(mlp_jax, prior, lik)

    # NumPy objective/gradient of -log posterior (constants dropped) for SciPy.
    def lin_obj(t, y):
        r = (A @ t - y) / NOISE
        return 0.5 * r @ r + 0.5 * t @ t, A.T @ r / NOISE + t

    def mlp_obj(t, y):
        f, h = mlp_np(t)
        r = (f - y) / NOISE
        gh = (W2.T @ r / NOISE) * (1 - h**2)
        return 0.5 * r @ r + 0.5 * t @ t, W1.T @ gh + t

    return {"linear": (linear, lin_obj, lambda t: A @ t), "mlp": (mlp, mlp_obj, lambda t: mlp_np(t)[0])}


def data(forward_np, B, seed=0):
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(B, N))
    return np.stack([forward_np(t) for t in theta]) + NOISE * rng.normal(size=(B, M))


def timed(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        jax.block_until_ready(out)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), out


def run_scipy(obj, Y):
    out = []
    for y in Y:
        r = scipy.optimize.minimize(obj, np.zeros(N), args=(y,), jac=True, method="L-BFGS-B",
                                    options={"gtol": 1e-8, "ftol": 1e-14, "maxiter": 500})
        out.append(r.fun)
    return np.array(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 1024, 4096])
    ap.add_argument("--chunk", type=int, default=None)
    ap.add_argument("--out", default="benchmarks/RESULTS.md")
    ap.add_argument("--label", default="", help="where it ran, if not this machine")
    ap.add_argument("--devices", type=int, default=1, help="virtual CPU devices, batch sharded over them")
    args = ap.parse_args()
    mesh = ji.batch_mesh() if args.devices > 1 else None
    rows = []
    for name, (problem, obj, fwd) in make_problems().items():
        # -log p(θ|y) = SciPy objective + a constant; measure the constant at one point
        t_, y_ = np.full(N, 0.3), np.full(M, 0.1)
        offset = float(-problem.log_posterior(jnp.asarray(t_), jnp.asarray(y_))) - obj(t_, y_)[0]
        for B in args.sizes:
            Y = data(fwd, B)
            t_sp, f_sp = timed(lambda: run_scipy(obj, Y), 1 if B > 64 else 3)
            for opt_name, opt in OPTIMIZERS:
                solve = lambda: ji.solve_map(problem, Y, optimizer=opt, chunk_size=args.chunk, mesh=mesh)  # noqa: E731
                t0 = time.perf_counter()
                jax.block_until_ready(solve().theta)
                compile_s = time.perf_counter() - t0
                t_ji, res = timed(lambda: solve().log_posterior, 5 if B <= 1024 else 3)
                settings = _Settings(choose(problem) if opt == "auto" else opt, 500, 1e-8, 16)
                one = jax.jit(lambda y, u0: _solve_one(problem, y, u0, settings)[1])
                jax.block_until_ready(one(jnp.asarray(Y[0]), jnp.zeros(N)))
                t_one, _ = timed(lambda: [one(jnp.asarray(y), jnp.zeros(N)) for y in Y], 1 if B > 64 else 3)
                rel_gap = ((-np.asarray(res) - offset) - f_sp) / np.maximum(1, np.abs(f_sp))
                gap = float(np.median(np.abs(rel_gap)))
                same = float(np.mean(np.abs(rel_gap) < 1e-6))  # the same optimum as SciPy
                worse = float(np.mean(rel_gap > 1e-6))  # a worse local optimum than SciPy's
                rows.append(dict(problem=name, opt=opt_name, B=B, compile_s=compile_s, ji=B / t_ji,
                                 one=B / t_one, scipy=B / t_sp, vs_scipy=t_sp / t_ji, vs_one=t_one / t_ji,
                                 gap=gap, same=same, worse=worse))
                print(f"{name:7s} {opt_name:14s} B={B:5d} compile {compile_s:5.2f}s | solves/s: jinverse "
                      f"{B / t_ji:8.0f}  jax-one {B / t_one:7.0f}  scipy {B / t_sp:7.0f} | x scipy "
                      f"{t_sp / t_ji:6.1f}  x one {t_one / t_ji:5.1f} | median gap {gap:.1e} same {same:.3f} "
                      f"worse {worse:.3f}", flush=True)
    table = ["| problem | optimizer | B | compile (s) | jinverse solves/s | one-at-a-time JAX solves/s "
             "| SciPy L-BFGS-B solves/s | x SciPy | x one-at-a-time | median rel. objective gap vs SciPy "
             "| same optimum as SciPy | worse local optimum |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        table.append(f"| {r['problem']} | {r['opt']} | {r['B']} | {r['compile_s']:.2f} | {r['ji']:.0f} | "
                     f"{r['one']:.0f} | {r['scipy']:.0f} | {r['vs_scipy']:.1f} | {r['vs_one']:.1f} | "
                     f"{r['gap']:.1e} | {r['same']:.3f} | {r['worse']:.3f} |")
    label = args.label + (f" {args.devices} virtual devices" if args.devices > 1 else "")
    key = "map_batch" + ("-" + "-".join(label.lower().split()) if label.strip() else "")
    title = "Batched MAP (issue 2)" + (f" — {label.strip()}" if label.strip() else "")
    record(args.out, key, title,
           "`.venv/bin/python benchmarks/map_batch.py " + " ".join(sys.argv[1:]).replace(f" --out {args.out}", "")
           + "`", machine_info(), "\n".join(table))


if __name__ == "__main__":
    main()
