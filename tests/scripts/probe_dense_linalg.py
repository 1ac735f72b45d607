"""Probe which dense factorisations and solves crash the process at a given matrix size.

Background (issue 19): in JAX 0.10 on CPU a batched (``vmap``-ed) Cholesky or ``cho_solve`` on one
16384 x 16384 float64 matrix (exactly 2**31 bytes) kills the process, while the same call without
a batch axis works. This script runs each operation in a fresh subprocess, so that a crash is
observed (exit code / signal) instead of taking the prober down, and prints one table row per case.

Each case builds a well-conditioned d x d matrix ``A = 2 I + 0.001`` (and ``L = 2 I + 0.001
tril(1)`` for the triangular solves), then runs one of

    cholesky          jnp.linalg.cholesky(A)
    triangular_solve  jax.scipy.linalg.solve_triangular(L, B, lower=True)
    cho_solve         jax.scipy.linalg.cho_solve((L, True), B)
    repro             cho_solve((cholesky(A), True), I)        (the reproduction of issue 19)
    eigh              jnp.linalg.eigh(A)
    svd               jnp.linalg.svd(A)
    solve             jnp.linalg.solve(A, B)                   (LU)
    scipy_cholesky    scipy.linalg.cholesky(np.asarray(A))     (the same OpenBLAS without XLA; plain only)

with ``B`` the d x d identity (``--rhs matrix``, what a covariance needs) or a vector
(``--rhs vector``), in one of three modes:

    plain    jit(op)(A)                      one unbatched call
    vmap     jit(vmap(op))(A[None])          a batch of one, the batched kernel
    map      jit(lambda a: lax.map(op, a))(A[None])   a batch of one, lanes in a scan

``--batch N`` stacks N copies in the vmap and map modes (does the limit apply to one matrix or
to the whole batched buffer?).

Usage (each case may take minutes at d = 16384; the default per-case timeout is 20 minutes)::

    .venv/bin/python tests/scripts/probe_dense_linalg.py --ops cholesky,cho_solve \\
        --dtypes float64 --sizes 16384 --modes plain,vmap

    .venv/bin/python tests/scripts/probe_dense_linalg.py --ops cholesky --dtypes float32 \\
        --sizes 23170,23171 --modes vmap

Exit code of the script: 0 whatever the outcome of the cases (the table is the result).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

OPS = ("cholesky", "triangular_solve", "cho_solve", "repro", "eigh", "svd", "solve", "scipy_cholesky")
MODES = ("plain", "vmap", "map")


def _child(op: str, dtype: str, d: int, mode: str, rhs: str, batch: int = 1) -> None:
    """Run one case in this process; print ``ok <seconds>`` if it returns."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", dtype == "float64")
    dt = jnp.dtype(dtype)
    a = jnp.eye(d, dtype=dt) * 2 + jnp.asarray(0.001, dt)
    low = jnp.eye(d, dtype=dt) * 2 + jnp.tril(jnp.full((d, d), 0.001, dt), -1)
    b = jnp.eye(d, dtype=dt) if rhs == "matrix" else jnp.ones((d,), dt)
    sl = jax.scipy.linalg
    fns = {
        "cholesky": lambda m: jnp.linalg.cholesky(m),
        "triangular_solve": lambda m: sl.solve_triangular(m, b, lower=True),
        "cho_solve": lambda m: sl.cho_solve((m, True), b),
        "repro": lambda m: sl.cho_solve((jnp.linalg.cholesky(m), True), jnp.eye(d, dtype=dt)),
        "eigh": lambda m: jnp.linalg.eigh(m),
        "svd": lambda m: jnp.linalg.svd(m),
        "solve": lambda m: jnp.linalg.solve(m, b),
    }
    if op == "scipy_cholesky":
        import numpy as np
        import scipy.linalg

        an = np.asarray(a)
        del a, low
        print("stage: built", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        out = scipy.linalg.cholesky(an, lower=True, overwrite_a=True, check_finite=False)
        print("stage: returned", file=sys.stderr, flush=True)
        print(f"ok {time.perf_counter() - t0:.1f} finite={bool(np.isfinite(out).all())}", flush=True)
        return
    one = fns[op]
    x = low if op in ("triangular_solve", "cho_solve") else a
    del a, low
    if mode == "plain":
        run = jax.jit(one)
    elif mode == "vmap":
        run, x = jax.jit(jax.vmap(one)), jnp.broadcast_to(x, (batch, d, d))
    else:
        run, x = jax.jit(lambda m: jax.lax.map(one, m)), jnp.broadcast_to(x, (batch, d, d))
    x = jax.block_until_ready(x)
    print("stage: built", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    out = jax.block_until_ready(run(x))
    print("stage: returned", file=sys.stderr, flush=True)
    finite = all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(out))
    print(f"ok {time.perf_counter() - t0:.1f} finite={finite}", flush=True)


def _outcome(rc: int | None, stdout: str) -> str:
    if rc is None:
        return "timeout"
    if rc == 0 and stdout.startswith("ok"):
        return " ".join(stdout.split()[:2]) + "s" + (" (nonfinite)" if "finite=False" in stdout else "")
    if rc < 0:
        return f"CRASH signal {signal.Signals(-rc).name}"
    return f"CRASH exit {rc}"


def run_case(op, dtype, d, mode, rhs, timeout, batch=1):
    """One case in a fresh interpreter; returns (outcome, seconds, last line of stderr)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", op, dtype, str(d), mode, rhs, str(batch)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        rc = None
    seconds = time.perf_counter() - t0
    tail = [line for line in err.strip().splitlines() if line.strip()][-1:] if err.strip() else [""]
    return _outcome(rc, out.strip()), seconds, tail[0][:100]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ops", default="cholesky,cho_solve", help=f"comma-separated, from {OPS}")
    p.add_argument("--dtypes", default="float64", help="comma-separated: float32, float64")
    p.add_argument("--sizes", default="16384", help="comma-separated matrix sizes d")
    p.add_argument("--modes", default="plain,vmap", help=f"comma-separated, from {MODES}")
    p.add_argument("--rhs", default="matrix", choices=("matrix", "vector"))
    p.add_argument("--batch", type=int, default=1, help="matrices per vmap/map call (default 1)")
    p.add_argument("--timeout", type=float, default=1200.0, help="seconds per case")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        op, dtype, d, mode, rhs, *batch = args.child
        _child(op, dtype, int(d), mode, rhs, int(batch[0]) if batch else 1)
        return 0
    import jax
    import jaxlib

    print(f"# jax {jax.__version__}, jaxlib {jaxlib.__version__}, python {sys.version.split()[0]}", flush=True)
    print(f"{'op':<17} {'dtype':<8} {'d':>6} {'GiB':>5} {'mode':<6} {'batch':>5} {'rhs':<7} {'outcome':<22} {'s':>7}  stderr",
          flush=True)
    for op in args.ops.split(","):
        if op not in OPS:
            raise SystemExit(f"--ops: got {op!r}, expected names from {OPS}")
        for dtype in args.dtypes.split(","):
            for d in (int(s) for s in args.sizes.split(",")):
                for mode in args.modes.split(","):
                    if mode not in MODES:
                        raise SystemExit(f"--modes: got {mode!r}, expected names from {MODES}")
                    gib = d * d * (8 if dtype == "float64" else 4) / 2**30  # one matrix
                    outcome, seconds, tail = run_case(op, dtype, d, mode, args.rhs, args.timeout,
                                                       1 if mode == "plain" else args.batch)
                    print(f"{op:<17} {dtype:<8} {d:>6} {gib:>5.2f} {mode:<6} {1 if mode == 'plain' else args.batch:>5} {args.rhs:<7} {outcome:<22} "
                          f"{seconds:>7.1f}  {tail}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
