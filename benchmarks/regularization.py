"""Batched Tikhonov with GCV: jinverse vs a NumPy/SciPy loop vs PyLops.

Problem: Hansen's ``shaw`` with n = m = 256, 1% noise, B = 1,000 noise draws (``ji.problems``).
Every contender solves ``min ‖A x - y‖² + lam² ‖x‖²`` for every observation with its own lam:

- jinverse: ``ji.linear.tikhonov(A, Y, lam="gcv")`` — one SVD, then one compiled program for the
  batch (GCV on a 100-point log grid + 40 golden-section steps per observation, vmapped);
- NumPy/SciPy: the SVD once, then per observation the same grid and SciPy's bounded Brent
  (``minimize_scalar``) in the bracket around the grid minimum, and the filtered SVD solution;
- PyLops: ``regularized_inversion`` (LSQR on the stacked system) per observation, given the lam
  that SciPy's GCV chose (PyLops has no parameter choice).

Warm timings are medians of repeats; jinverse's compile time is reported separately. The
script checks that the contenders agree (lam and x) before reporting.

    .venv/bin/python benchmarks/regularization.py [--batch 1000] [--n 256] [--out benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import time

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402
import scipy.optimize  # noqa: E402
from _common import _version, machine_info, record  # noqa: E402

import jinverse as ji  # noqa: E402
from jinverse import proximal  # noqa: E402

NUM_GRID = 100


def scipy_gcv_loop(A, Y):
    """SVD once, then GCV per observation (grid + bounded Brent), then the Tikhonov solution."""
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    m = A.shape[0]
    smax = s[0]
    lo = max(s[s > 0].min(), smax * np.finfo(float).eps ** 0.75)
    grid = np.linspace(np.log(lo), np.log(100 * smax), NUM_GRID)
    s2 = s * s
    X = np.empty((Y.shape[0], A.shape[1]))
    lams = np.empty(Y.shape[0])
    for i, y in enumerate(Y):
        beta = U.T @ y
        perp2 = max(y @ y - beta @ beta, 0.0)

        def gcv(t):
            f = s2 / (s2 + np.exp(2 * t))
            return (np.sum(((1 - f) * beta) ** 2) + perp2) / (m - np.sum(f)) ** 2

        vals = [gcv(t) for t in grid]
        j = int(np.argmin(vals))
        a, b = grid[max(j - 1, 0)], grid[min(j + 1, NUM_GRID - 1)]
        t = scipy.optimize.minimize_scalar(gcv, bounds=(a, b), method="bounded",
                                           options={"xatol": 1e-10}).x
        lam = np.exp(t)
        X[i] = Vt.T @ (s * beta / (s2 + lam * lam))
        lams[i] = lam
    return X, lams


def pylops_loop(A, Y, lams):
    import pylops
    from pylops.optimization.leastsquares import regularized_inversion

    Op = pylops.MatrixMult(A)
    Id = pylops.Identity(A.shape[1])
    X = np.empty((Y.shape[0], A.shape[1]))
    for i, (y, lam) in enumerate(zip(Y, lams)):
        X[i] = regularized_inversion(Op, y, [Id], epsRs=[lam], atol=1e-12, btol=1e-12,
                                     iter_lim=20 * A.shape[1])[0]
    return X


def parameter_choice_table(draws=40):
    """Median over noise draws of error(method) / error(oracle lam), Tikhonov and TSVD."""
    rows = []
    for name in ("shaw", "phillips", "deriv2"):
        b = ji.problems.load(name, n=64, noise=0.01, seed=0, batch=draws)
        system = ji.linear.spectral_system(b.info["A"])
        xt, std = np.asarray(b.theta_true), b.problem.likelihood.std
        lams = np.logspace(-7, 1, 200)
        grid = ji.linear.tikhonov(system, np.broadcast_to(b.y, (200, *b.y.shape)),
                                  lam=np.broadcast_to(lams[:, None], (200, draws)))
        oracle = np.linalg.norm(np.asarray(grid.x) - xt, axis=-1).min(0)
        oracle_k = np.min([np.linalg.norm(np.asarray(ji.linear.tsvd(system, b.y, k=k).x) - xt, axis=-1)
                           for k in range(1, 64)], axis=0)
        cells = []
        for method in ("gcv", "lcurve", "discrepancy"):
            e = np.linalg.norm(np.asarray(ji.linear.tikhonov(system, b.y, lam=method, noise_std=std).x) - xt, axis=-1)
            ek = np.linalg.norm(np.asarray(ji.linear.tsvd(system, b.y, k=method, noise_std=std).x) - xt, axis=-1)
            cells.append(f"{np.median(e / oracle):.2f} / {np.median(ek / oracle_k):.2f}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return ("| problem | GCV | L-curve | discrepancy |\n|---|---|---|---|\n" + "\n".join(rows))


def tv_vs_tikhonov(draws=8):
    """Deblurring a piecewise-constant signal: best-parameter TV (FISTA) vs best-parameter Tikhonov."""
    n, sigma = 96, 0.02
    t = np.arange(n)
    A = np.exp(-0.5 * ((t[:, None] - t[None, :]) / 2.5) ** 2)
    A /= A.sum(1, keepdims=True)
    x = np.zeros(n)
    x[15:40], x[48:56], x[70:88] = 1.0, -0.5, 0.7
    Y = x @ A.T + sigma * np.random.default_rng(0).normal(size=(draws, n))
    lams = np.logspace(-3, 0, 40)
    tik = ji.linear.tikhonov(A, np.broadcast_to(Y, (40, draws, n)), lam=np.broadcast_to(lams[:, None], (40, draws)))
    err_tik = np.linalg.norm(np.asarray(tik.x) - x, axis=-1).min(0)
    errs = []
    for w in (5.0, 10.0, 25.0, 60.0, 150.0):
        prob = ji.InverseProblem(jax.numpy.asarray(A), ji.priors.TotalVariation((n,), weight=w, smoothing=0.0),
                                 ji.likelihoods.Gaussian(sigma))
        errs.append(np.linalg.norm(np.asarray(proximal.map_estimate(prob, Y, max_steps=3000, tol=1e-7).x) - x,
                                   axis=-1))
    ratio = np.min(errs, axis=0) / err_tik
    return float(np.median(ratio)), float(ratio.max())


def timed(fn, repeats):
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/RESULTS.md")
    args = ap.parse_args()

    bench = ji.problems.load("shaw", n=args.n, noise=0.01, seed=0, batch=args.batch)
    A, Y = np.asarray(bench.info["A"]), np.asarray(bench.y)

    def run_ji():
        res = ji.linear.tikhonov(A, Y, lam="gcv")
        return jax.block_until_ready(res)

    t0 = time.perf_counter()
    run_ji()
    first = time.perf_counter() - t0
    res, t_ji = timed(run_ji, args.repeats)
    (X_sp, lam_sp), t_sp = timed(lambda: scipy_gcv_loop(A, Y), max(1, args.repeats // 2))
    X_pl, t_pl = timed(lambda: pylops_loop(A, Y, lam_sp), 1)

    lam_gap = float(np.median(np.abs(np.asarray(res.lam) / lam_sp - 1)))
    scale = np.linalg.norm(X_sp, axis=1)
    x_gap = float(np.max(np.linalg.norm(np.asarray(res.x) - X_sp, axis=1) / scale))
    pl_rel = np.linalg.norm(X_pl - X_sp, axis=1) / scale
    pl_gap, pl_bad = float(np.median(pl_rel)), int(np.sum(pl_rel > 1e-4))
    err = np.linalg.norm(np.asarray(res.x) - np.asarray(bench.theta_true), axis=1) \
        / np.linalg.norm(np.asarray(bench.theta_true), axis=1)

    rows = [
        ("jinverse `tikhonov(A, Y, lam=\"gcv\")`", t_ji, "1.0"),
        ("NumPy/SciPy loop (SVD once, GCV per observation)", t_sp, f"{t_sp / t_ji:.1f}x slower"),
        ("PyLops `regularized_inversion` loop (LSQR, lam given)", t_pl, f"{t_pl / t_ji:.1f}x slower"),
    ]
    table = "| contender | warm time (s) | vs jinverse |\n|---|---|---|\n" + "\n".join(
        f"| {name} | {t:.3f} | {r} |" for name, t, r in rows)
    load = os.getloadavg()[0]
    body = (f"Load average at the end of the timings: {load:.1f} on {os.cpu_count()} cores (a machine "
            f"shared with other jobs: ratios vary with load, rerun on an idle machine).\n\n"
            f"shaw, n = m = {args.n}, 1% noise, B = {args.batch} observations, float64, each with "
            f"its own GCV lam. Warm medians ({args.repeats} repeats for jinverse, "
            f"{max(1, args.repeats // 2)} for SciPy, 1 for PyLops); jinverse's first call (compile "
            f"+ run) took {first:.2f} s and is not in the table.\n\n{table}\n\n"
            f"Agreement: median |lam_jinverse / lam_scipy - 1| = {lam_gap:.1e}; largest relative "
            f"difference of x, jinverse vs SciPy {x_gap:.1e}; PyLops vs SciPy median {pl_gap:.1e}, "
            f"{pl_bad} of {args.batch} observations differ by more than 1e-4 (LSQR stopping short "
            f"where GCV chose a tiny lam). "
            f"Median relative error of the GCV solutions against the true x: {np.median(err):.3f}. "
            f"PyLops {_version('pylops')}.")
    table_pc = parameter_choice_table()
    tv_med, tv_max = tv_vs_tikhonov()
    body += ("\n\nParameter choice on Hansen's problems (n = 64, 1% noise, 40 noise draws, seed 0): "
             "median over draws of error(method) / error(oracle lam), Tikhonov / TSVD "
             "(tests/test_linear.py asserts < 2; the L-curve on phillips is a known failure, "
             "marked xfail):\n\n" + table_pc +
             f"\n\nTV (exact, FISTA) vs Tikhonov on a blurred piecewise-constant signal (n = 96, "
             f"noise std 0.02, 8 draws, each method at its best parameter): error ratio TV / "
             f"Tikhonov median {tv_med:.2f}, worst {tv_max:.2f}.")
    print(body)
    if x_gap > 1e-4:
        raise SystemExit("contenders disagree; not recording")
    record(args.out, "regularization", "Batched Tikhonov + GCV (benchmarks/regularization.py)",
           f"`.venv/bin/python benchmarks/regularization.py --batch {args.batch} --n {args.n}`",
           machine_info(), body)


if __name__ == "__main__":
    main()
