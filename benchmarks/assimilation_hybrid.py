"""Hybrid ensemble-variational and weak-constraint 4D-Var on Lorenz-96 (issue 16).

Lorenz-96, N = 40, F = 8, dt 0.05, every component observed every step, R = I (the Sakov 2008
configuration of the 4D-Var and filter tables above): twin experiments from a spun-up state, the
same truth and observations for every method of a seed.

- static: `cycled_4dvar` with ``B = 0.5² I`` (the 4D-Var table's B);
- hybrid: ``cycled_4dvar(..., hybrid=Hybrid(E0, beta, ETKF(inflation=1.02), localization=8))``,
  an ETKF of 20 members cycled alongside, its sample covariance localised (Gaspari-Cohn, radius 8)
  and blended with ``B_clim = 0.2² I``;
- ETKF alone (`cycled_filter`, 20 members, inflation 1.02), the ensemble the hybrid uses.
- weak constraint: a truth with model error ``N(0, 0.3² I)`` per step, static-B 4D-Var with and
  without ``model_std=0.3`` (weak: ``optimizer="newton-cg"``, Gauss-Newton with CG inner loops:
  440 controls per window, where the dense Gauss-Newton solve is slow on the CPU).

Figures: time-mean analysis RMSE at the window ends (the filtering analysis; every step for the
ETKF) after ``--burn`` model steps, per seed and averaged; warm seconds of the whole run (a
compile and run for the first seed, warm for the others: same shapes, other data).

    .venv/bin/python benchmarks/assimilation_hybrid.py [--part hybrid|sliding|dapper] [--steps 1000] [--seeds 0 1]
        [--out benchmarks/RESULTS.md]

``--part dapper``: on DAPPER's truth and observations, DAPPER's ``Var4D(Lag=4, xB=0.02)``
(two calls mended, benchmarks/assimilation_var4d_peer.py) against `cycled_4dvar` with the same
sliding windows and B, and the hybrid against DAPPER's ``EnKF('Sqrt')`` (DAPPER in its own
virtual environment, as benchmarks/assimilation_enkf.py).
``--part sliding``: static-B 4D-Var with 10-step windows sliding by 10, 5 and 2 steps, per
background std (the background of a sliding window has seen more observations, so wants a
smaller B).
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

from jinverse.assimilation import ETKF, Hybrid, cycled_4dvar, cycled_filter, twin_experiment  # noqa: E402
from jinverse.problems.dynamics import lorenz96_tendency, rk4_step  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import machine_info, record  # noqa: E402


def step(x):
    return rk4_step(lambda z: lorenz96_tendency(z, 8.0), x, 0.05)


def experiment(seed, n_steps, model_std=None):
    """Truth, observations, first background and first ensemble (20 members) of one seed."""
    k0, k1, k2, k3 = jax.random.split(jax.random.key(seed), 4)
    x0 = jax.lax.fori_loop(0, 500, lambda _, z: step(z), 8.0 + jax.random.normal(k0, (40,)))  # spin-up
    truth, ys = twin_experiment(step, x0, n_steps=n_steps, key=k1, model_std=model_std)
    return truth, ys, truth[0] + jax.random.normal(k2, (40,)), truth[0] + jax.random.normal(k3, (20, 40))


def run(method, window, seed, n_steps, burn):
    """(analysis RMSE, seconds of the call) of one method on one seed."""
    model_std = 0.3 if "model error" in method or method.startswith("weak") else None
    truth, ys, xb, E0 = experiment(seed, n_steps, model_std)
    kw = dict(window=window, truth=truth, burn_in=burn // window, background_std=0.5)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "ETKF":
            r = cycled_filter(
                step, E0, ys, truth=truth, key=jax.random.key(seed), method=ETKF(inflation=1.02), burn_in=burn
            )
        elif method.startswith("hybrid"):
            hyb = Hybrid(E0, beta=float(method.split("=")[1]), method=ETKF(inflation=1.02), localization=8.0)
            r = cycled_4dvar(step, xb, ys, **{**kw, "background_std": 0.2}, hybrid=hyb)
        elif method.startswith("weak"):
            r = cycled_4dvar(step, xb, ys, **kw, model_std=0.3, optimizer="newton-cg")
        else:  # static B, strong constraint
            r = cycled_4dvar(step, xb, ys, **kw)
    return float(r.mean_rmse), time.perf_counter() - t


def sliding(args):
    """Static-B strong-constraint 4D-Var, 10-step windows sliding by ``shift``, per background std."""
    stds = (0.1, 0.2, 0.3, 0.5)
    rows = []
    for shift in (10, 5, 2):
        figs = []
        for sb in stds:
            per_seed = []
            for seed in args.seeds:
                truth, ys, xb, _ = experiment(seed, args.steps)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = cycled_4dvar(
                        step,
                        xb,
                        ys,
                        window=10,
                        shift=shift,
                        background_std=sb,
                        truth=truth,
                        burn_in=args.burn // shift,
                    )
                per_seed.append((r.mean_rmse, r.mean_rmse_analysis))
            figs.append(np.mean(per_seed, axis=0))
        end = " | ".join(f"{e:.3f} ({a:.3f})" for e, a in figs)
        rows.append(f"| {shift} | {end} |")
        print(rows[-1], flush=True)
    return (
        f"Lorenz-96 as above, strong constraint, static B = σ_b² I, 10-step windows sliding by `shift` model steps "
        f"(each observation assimilated once: a window assimilates those of its last `shift` steps); {args.steps} "
        f"model steps, burn-in {args.burn}, mean over seeds {args.seeds}. Analysis RMSE at the window end (in "
        "brackets: at the window start, the smoother's).\n\n"
        f"| shift | {' | '.join(f'σ_b = {sb}' for sb in stds)} |\n|---|{'---|' * len(stds)}\n"
        + "\n".join(rows)
    )


def var4d_dapper(python, seed, n_obs):
    """DAPPER's Var4D(Lag=4, xB=0.02) on its own sakov2008 data (benchmarks/assimilation_var4d_peer.py)."""
    import subprocess
    import tempfile

    path = os.path.join(tempfile.mkdtemp(), "var4d.npz")
    env = dict(os.environ, DAPPER_LIVEPLOTTING="no", MPLBACKEND="agg")
    peer = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assimilation_var4d_peer.py")
    subprocess.run(
        [python, peer, path, str(seed), str(n_obs - 1), "4", "0.02"], check=True, env=env, capture_output=True
    )
    return dict(np.load(path))


def versus_dapper(args):
    """On DAPPER's own truth and observations (``mods.Lorenz96.sakov2008``): DAPPER's ``Var4D(Lag=4,
    xB=0.02)`` (windows of 4 observation intervals sliding by one, B = 0.02 × the climatological
    covariance of the truth, 10 Gauss-Newton iterations; mended, benchmarks/assimilation_var4d_peer.py)
    against `cycled_4dvar` with the same windows and B, and the hybrid (β = 1, 10-step windows)
    against DAPPER's ``EnKF('Sqrt')`` with the ETKF's settings."""
    import math

    from assimilation_enkf import dapper_python, run_dapper

    python = dapper_python(None)
    ctors = ["EnKF('Sqrt',N=20,infl=1.02,rot=True)"]
    figs: dict[str, list] = {k: [] for k in ("var4d", "ours", "etkf", "hybrid")}
    gaps = []
    for seed in args.seeds:
        d = run_dapper(python, "lorenz96", seed, args.steps, ctors)
        xx, yy, burn, mu = d["xx"], d["yy"], int(d["burn_in"]), d["mu"]
        figs["etkf"].append((d["rmse"][0], d["wall"][0]))
        v = var4d_dapper(python, seed, args.steps)
        assert np.array_equal(v["xx"], xx) and np.array_equal(v["yy"], yy), "DAPPER's two runs differ in data"
        figs["var4d"].append((float(v["rmse"]), float(v["wall"])))
        B = 0.02 * np.cov(xx.T)
        times = []
        for _ in range(2):  # compile + run, then warm
            t = time.perf_counter()
            r = cycled_4dvar(step, mu, yy, window=4, shift=1, B=B, truth=xx, burn_in=burn - 3, warn=False)
            times.append(time.perf_counter() - t)
        figs["ours"].append((r.mean_rmse, *times))
        # cycle c ends at observation time c + 3, DAPPER's analysis there
        gaps.append(float(np.mean(np.abs(np.asarray(r.rmse_filter)[burn - 3 :] - v["series"][burn:]))))
        L = np.linalg.cholesky(d["C"] + 1e-12 * np.eye(40))
        E0 = mu + jax.random.normal(jax.random.key(seed), (20, 40)) @ L.T
        hyb = Hybrid(E0, beta=1.0, method=ETKF(inflation=1.02), localization=8.0)
        times = []
        for _ in range(2):
            t = time.perf_counter()
            r = cycled_4dvar(
                step,
                mu,
                yy,
                window=10,
                background_std=0.2,
                truth=xx,
                hybrid=hyb,
                burn_in=math.ceil((burn + 1) / 10) - 1,
                warn=False,
            )
            times.append(time.perf_counter() - t)
        figs["hybrid"].append((r.mean_rmse, *times))
        print(seed, {k: v[-1] for k, v in figs.items()}, flush=True)

    def cell(k, i=0):
        v = np.array(figs[k])[:, i]
        return f"{v.mean():.3f} ({', '.join(f'{x:.3f}' for x in v)})"

    def sec(k):
        """jinverse: the first call (compile + run) / the median of the others (warm); DAPPER: median."""
        v = np.array(figs[k])[:, 1:]
        if v.shape[1] == 1:
            return f"{np.median(v):.1f}"
        return f"{v[0, 0]:.1f} / {np.median(v.ravel()[1:]):.1f}"

    return (
        f"Lorenz-96 as above on DAPPER 1.8.1's own truth and observations (`mods.Lorenz96.sakov2008`, "
        f"`HMM.simulate()` per seed), {args.steps} observation times, DAPPER's burn-in (20 time units), seeds "
        f"{args.seeds}. Strong-constraint 4D-Var with windows of 4 steps sliding by 1 and B = 0.02 × the "
        "truth's climatological covariance: `cycled_4dvar(window=4, shift=1, B=...)`, the scheme of DAPPER's "
        "`Var4D(Lag=4,xB=0.02)` (each window assimilates its newest observation). Hybrid: β = 1, "
        "10-step windows, ETKF N = 20, inflation 1.02, localisation radius 8; first ensemble from DAPPER's "
        "N(mu, C).\n\n"
        "| method | analysis RMSE: mean (per seed) | s (DAPPER: one run; jinverse: first call, compile + run / "
        "other calls, warm) |\n"
        "|---|---|---|\n"
        f"| DAPPER Var4D(Lag=4, xB=0.02) (two calls mended: benchmarks/assimilation_var4d_peer.py) | "
        f"{cell('var4d')} | {sec('var4d')} |\n"
        f"| jinverse cycled_4dvar(window=4, shift=1) | {cell('ours')} | {sec('ours')} |\n"
        f"| DAPPER EnKF('Sqrt', N=20, infl=1.02) | {cell('etkf')} | {sec('etkf')} |\n"
        f"| jinverse hybrid 4D-Var, β = 1, window 10 | {cell('hybrid')} | {sec('hybrid')} |\n\n"
        f"Sliding 4D-Var, jinverse against DAPPER's Var4D per observation time after the burn-in: mean |RMSE "
        f"difference| {', '.join(f'{g:.1e}' for g in gaps)} (per seed)."
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--burn", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--part", choices=["hybrid", "sliding", "dapper"], default="hybrid")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    command = (
        f"`.venv/bin/python benchmarks/assimilation_hybrid.py --part {args.part} --steps {args.steps} "
        f"--burn {args.burn} --seeds {' '.join(map(str, args.seeds))} --out benchmarks/RESULTS.md`"
    )
    if args.part in ("sliding", "dapper"):
        body = sliding(args) if args.part == "sliding" else versus_dapper(args)
        print(body)
        key, title = {
            "sliding": ("assimilation-sliding", "Sliding 4D-Var windows (issue 16)"),
            "dapper": ("assimilation-var-dapper", "Sliding and hybrid 4D-Var against DAPPER (issue 16)"),
        }[args.part]
        if args.out:
            record(args.out, key, title, command, machine_info(), body)
        return
    plan = [("ETKF", 1), ("static", 1), ("static", 5), ("static", 10)]
    plan += [(f"hybrid β={b}", w) for w in (1, 5, 10) for b in (0.9, 1.0)]
    plan += [("static, model error 0.3", 10), ("weak, model_std=0.3", 10)]
    rows = []
    for method, window in plan:
        figs = np.array([run(method, window, s, args.steps, args.burn) for s in args.seeds])
        rmse, sec = figs.T
        rows.append(
            f"| {method} | {window if method != 'ETKF' else '–'} | {rmse.mean():.3f} "
            f"({', '.join(f'{v:.3f}' for v in rmse)}) | {sec[0]:.1f} | {np.median(sec[1:]):.1f} |"
        )
        print(rows[-1], flush=True)
    body = (
        f"Lorenz-96, N = 40, F = 8, dt 0.05, every component observed every step, R = I; {args.steps} "
        f"model steps, burn-in {args.burn}, seeds {args.seeds} (own twin experiments, spun-up truth, first "
        "background and 20-member ensemble N(truth, I)). Hybrid: ETKF (N = 20, inflation 1.02) cycled "
        "alongside, localisation radius 8, B_clim = 0.2² I, recentred. Static: B = 0.5² I. The last two "
        "rows: a truth with model error N(0, 0.3² I) per step; weak: model_std=0.3, optimizer='newton-cg' "
        "(Gauss-Newton with CG inner loops; 440 controls per window).\n\n"
        "| method | window | analysis RMSE at window end: mean (per seed) | s, first seed (compile + run) "
        "| s, other seeds (warm) |\n|---|---|---|---|---|\n" + "\n".join(rows)
    )
    print(body)
    if args.out:
        record(
            args.out,
            "assimilation-hybrid",
            "Hybrid ensemble-variational and weak-constraint 4D-Var (issue 16)",
            command,
            machine_info(),
            body,
        )


if __name__ == "__main__":
    main()
