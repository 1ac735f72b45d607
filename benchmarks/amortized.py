"""Amortised inversion (issue 18): learned networks against the exact solvers of the same density.

Point part (``deconvolution1d``, ``trained_regressor``): a `PointEstimator` trained on simulated
pairs; ``--n`` test observations simulated from the prior and the simulator (the distribution the
network was trained for; a fresh key). Timed, warm (each call run once before, compile excluded;
median of ``--repeats``): the network alone, exact MAP from the default start (the prior's
centre), MAP started at the network's answer (``ji.solve_map(problem, y, init=net)``), with the
default optimiser. Reported: RMSE against the true θ, the MAP objective gap of the network's answer
(nats, `map_report`), steps per lane, wall times, and the break-even number of observations
(training seconds / seconds saved per observation). For ``trained_regressor`` (a ring-shaped
posterior whose mean is no MAP start) also a `MixtureDensity`'s best component as the start.

Posterior part (``gaussian_linear``, ``two_moons``, ``inverse_kinematics``): a `MixtureDensity`;
on ``--n`` simulated observations the importance-sampling ESS of q against the exact density
(1000 draws each) and the time per posterior (q draws alone; q + weights); on ``--c2st-obs``
observations of the benchmark (``ji.problems.load(name, batch=...)``), C2ST against the reference
draws of q, of q resampled by its weights, and of NUTS (``ji.sample`` defaults: 4 chains, 500 warmup,
1000 draws), and NUTS's time per posterior.

Large part (``--part large``, not run by default): the point part at ``--large`` observations
(default 10^5) streamed through ``solve_map`` in blocks of ``--block`` lanes, one timed run each.

Proposal part (``--part proposal``): q as the proposal of exact samplers (`independence_sample`,
`smc_sample`) against NUTS and prior-started SMC on the benchmark observations (C2ST, ESS per
second), and gaussian_linear's time per posterior at ``--n`` observations (NUTS on ``--nuts-obs``
of them, extrapolated).

Latent part (``--part latent``): deblurring signals of a known family under a Gaussian prior, a
total-variation prior and a decoder-latent prior learned from 20,000 examples (`train_decoder`,
`latent_problem`); relative error and MAP wall time on 200 test signals.

    .venv/bin/python benchmarks/amortized.py [--n 10000] [--part point posterior latent] [--out benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jinverse as ji  # noqa: E402
from jinverse import amortized as am  # noqa: E402
from jinverse.newton import choose  # noqa: E402
from jinverse.problems.metrics import c2st  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import machine_info, record  # noqa: E402


def timed(fn, repeats):
    """(result, median seconds) of ``fn()`` over ``repeats`` warm calls (one call first, untimed)."""
    out = jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def timed_in_turn(fns, repeats):
    """(results, median seconds) of each of ``fns``, called in turn ``repeats`` times (after one
    untimed round)."""
    outs = [jax.block_until_ready(f()) for f in fns]
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            outs[i] = jax.block_until_ready(f())
            times[i].append(time.perf_counter() - t0)
    return outs, [statistics.median(t) for t in times]


def rmse(a, b):
    return float(jnp.sqrt(jnp.mean((jnp.asarray(a) - jnp.asarray(b)) ** 2)))


def break_even(train_s, saved_per_obs):
    return f"{train_s / saved_per_obs:,.0f}" if saved_per_obs > 0 else "never"


POINT_HEADER = [
    "| problem | start | training (steps, simulations, s) | start alone (s) | RMSE to θ_true | "
    "gap (nats) | MAP steps | MAP wall (s) | total (s) | break-even obs |",
    "|---|---|---|---|---|---|---|---|---|---|",
]


def point_nets(name, problem, args):
    """The trained starts of one problem: a point estimator, and for ``trained_regressor`` (a ring
    posterior whose mean is no MAP start) a mixture density's best component."""
    nets = [
        (
            "point estimator",
            am.train_point_estimator(problem, jax.random.key(0), num_steps=args.steps, progress=True),
        )
    ]
    if name == "trained_regressor":
        nets.append(
            (
                "mixture density (best component)",
                am.train_mixture_density(
                    problem, jax.random.key(0), num_components=8, num_steps=args.steps, progress=True
                ),
            )
        )
    return nets


def contenders(problem, nets, **options):
    """Functions of y: MAP from the prior centre, then per net: the net alone, MAP from the net."""
    fns = [lambda y: ji.solve_map(problem, y, warn=False, **options)]
    for _, net in nets:
        fns += [
            lambda y, net=net: net.map_start(problem, y),
            lambda y, net=net: ji.solve_map(problem, y, init=net, warn=False, **options),
        ]
    return fns


def point_rows(name, problem, theta, y, nets, outs, times):
    """Table rows from ``outs``/``times`` of [MAP from the prior centre, then per net: the net
    alone, MAP from the net]."""
    n = y.shape[0]
    cold, t_cold = outs[0], times[0]
    rows = [
        f"| {name} (`{choose(problem)}`) | prior centre (default) | - | - | {rmse(cold.theta, theta):.4f} | - | "
        f"{float(cold.num_steps.mean()):.2f} ({float(jnp.median(cold.num_steps)):.0f}) | "
        f"{t_cold:.2f} | {t_cold:.2f} | - |"
    ]
    for i, (label, net) in enumerate(nets):
        cfg = dict(net.config)
        start, t_net, warm, t_warm = outs[1 + 2 * i], times[1 + 2 * i], outs[2 + 2 * i], times[2 + 2 * i]
        gap = np.asarray(am.map_report(net, y, result=warm).gap)
        total = t_warm  # solve_map(init=net) includes the network's pass
        rows.append(
            f"| {name} | {label} | {cfg['num_steps']}, {cfg['num_simulations']:,}, {cfg['train_seconds']:.0f} | "
            f"{t_net:.3f} | {rmse(start, theta):.4f} | {np.median(gap):.3g} ({np.quantile(gap, 0.9):.3g}) | "
            f"{float(warm.num_steps.mean()):.2f} ({float(jnp.median(warm.num_steps)):.0f}) | "
            f"{t_warm - t_net:.2f} | {total:.2f} | alone: {break_even(cfg['train_seconds'], (t_cold - t_net) / n)}"
            f"; warm start: {break_even(cfg['train_seconds'], (t_cold - total) / n)} |"
        )
        print(rows[-1], flush=True)
    return rows


def point_part(args, lines):
    lines += [
        f"{args.n:,} observations simulated from the prior (fresh key); default optimiser "
        "(`auto`, named in the first row of each problem). "
        "Steps: mean (median) per lane. Gap: median (90th percentile) of log p(θ_MAP|y) - "
        "log p(θ_start|y), nats.",
        "",
        *POINT_HEADER,
    ]
    for name in ("deconvolution1d", "trained_regressor"):
        problem = ji.problems.load(name).problem
        theta, y = am.simulate_pairs(problem, jax.random.key(123), args.n)
        nets = point_nets(name, problem, args)
        # every contender timed in turn, round after round, so that load from other processes
        # falls on all of them alike
        outs, times = timed_in_turn([lambda f=f: f(y) for f in contenders(problem, nets)], args.repeats)
        lines += point_rows(name, problem, theta, y, nets, outs, times)
        if name == "deconvolution1d":  # L-BFGS: conditioning, not the start, sets its steps
            k = min(args.n, 1000)
            (lb_cold, lb_warm), (tl_cold, tl_warm) = timed_in_turn(
                [
                    lambda: ji.solve_map(problem, y[:k], optimizer="lbfgs", warn=False),
                    lambda: ji.solve_map(problem, y[:k], optimizer="lbfgs", init=nets[0][1], warn=False),
                ],
                1,
            )
            lines.append(
                f"| {name}, `lbfgs`, {k} obs | prior centre / point estimator | | | | | "
                f"{float(lb_cold.num_steps.mean()):.0f} / {float(lb_warm.num_steps.mean()):.0f} | "
                f"{tl_cold:.1f} / {tl_warm:.1f} | | |"
            )
            bench = ji.problems.load(name, batch=min(args.n, 1000))  # the phantom, not a prior draw
            ph = ji.solve_map(problem, bench.y, warn=False)
            lines.append(
                f"| {name}, its phantom ({bench.y.shape[0]} noise draws) | point estimator | | | "
                f"{rmse(nets[0][1](bench.y), bench.theta_true):.4f} (MAP {rmse(ph.theta, bench.theta_true):.4f})"
                f" | {np.median(np.asarray(am.map_report(nets[0][1], bench.y, result=ph).gap)):.3g} | | | | |"
            )
    lines.append("")


def large_part(args, lines):
    """The point part at ``--large`` observations, streamed through ``solve_map`` in blocks of
    ``--block`` lanes: each contender compiled and run once on the first block (untimed; the same
    program, the last block padded to it), then timed on the whole batch: once if that takes over a
    minute (where compiling the batch-shaped host work is a few seconds of it), else twice, the
    second run counted."""
    lines += [
        f"{args.large:,} observations simulated from the prior (fresh key), streamed in blocks of "
        f"{args.block:,} lanes (`block_size`); each contender run once untimed on one block (compiles "
        "the same program), then timed on the whole batch (a run under 60 s: run again, the second "
        "counted). Columns as in the 10^4 section above.",
        "",
        *POINT_HEADER,
    ]
    for name in ("deconvolution1d", "trained_regressor"):
        problem = ji.problems.load(name).problem
        theta, y = am.simulate_pairs(problem, jax.random.key(123), args.large)
        nets = point_nets(name, problem, args)
        fns = contenders(problem, nets, block_size=args.block)
        outs, times = [], []
        for f in fns:
            jax.block_until_ready(f(y[: args.block]))
            for _ in range(2):  # a run under a minute again: the first one paid the batch-shaped host work
                t0 = time.perf_counter()
                out = jax.block_until_ready(f(y))
                t = time.perf_counter() - t0
                if t > 60:
                    break
            outs.append(out)
            times.append(t)
            print(f"{name}: contender {len(times)}/{len(fns)}: {times[-1]:.1f} s", flush=True)
        lines += point_rows(name, problem, theta, y, nets, outs, times)
    lines.append("")


def posterior_part(args, lines):
    lines += [
        f"IS-ESS: 1000 draws of q per observation weighted by the exact log-density, on {args.n:,} "
        "simulated observations: median and 10th percentile of ESS/N, share with ESS/N > 0.5. "
        f"C2ST (0.5 = indistinguishable) against the reference draws, mean over {args.c2st_obs} benchmark "
        "observations: q alone, q resampled by its importance weights, NUTS.",
        "",
        "| problem | q (components, cov) | training (steps, simulations, s) | ESS/N median (p10) | ESS/N > 0.5 | "
        "s per posterior: q / q + IS / NUTS | C2ST q / q+IS / NUTS | break-even obs vs NUTS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, K in (("gaussian_linear", 2), ("two_moons", 8), ("inverse_kinematics", 8)):
        problem = ji.problems.load(name).problem
        q = am.train_mixture_density(
            problem, jax.random.key(0), num_components=K, num_steps=args.steps, progress=True
        )
        cfg = dict(q.config)
        _, y = am.simulate_pairs(problem, jax.random.key(123), args.n)
        _, t_q = timed(lambda: q.sample(jax.random.key(1), y, 1000), args.repeats)
        imp, t_is = timed(lambda: am.importance_sample(q, y, jax.random.key(1), num=1000), args.repeats)
        frac = np.asarray(imp.ess_fraction)
        bench = ji.problems.load(name, batch=args.c2st_obs)
        post, t_nuts = timed(lambda: ji.sample(problem, bench.y, key=jax.random.key(2)), 1)
        ref = np.asarray(bench.reference["draws"])
        qd = np.asarray(q.sample(jax.random.key(3), bench.y, 4000))
        ib = am.importance_sample(q, bench.y, jax.random.key(4), num=20000)
        rd = np.asarray(ib.resample(jax.random.key(5), 4000))
        nd = np.asarray(post.samples).reshape(args.c2st_obs, -1, ref.shape[-1])
        acc = [np.mean([c2st(d[i], ref[i]) for i in range(args.c2st_obs)]) for d in (qd, rd, nd)]
        per_nuts = t_nuts / args.c2st_obs
        lines.append(
            f"| {name} | {K}, {cfg['covariance']} | {cfg['num_steps']}, {cfg['num_simulations']:,}, "
            f"{cfg['train_seconds']:.0f} | {np.median(frac):.3f} ({np.quantile(frac, 0.1):.3f}) | "
            f"{np.mean(frac > 0.5):.2f} | {t_q / args.n:.1e} / {t_is / args.n:.1e} / {per_nuts:.2f} | "
            f"{acc[0]:.3f} / {acc[1]:.3f} / {acc[2]:.3f} | "
            f"{break_even(cfg['train_seconds'], per_nuts - t_is / args.n)} |"
        )
        print(lines[-1], flush=True)
    lines.append("")


def proposal_part(args, lines):
    """q as the proposal of exact samplers against NUTS and prior-started SMC, on the benchmark's
    observations (C2ST against the reference draws), and per-posterior time at --n observations
    for gaussian_linear."""
    lines += [
        f"On {args.c2st_obs} benchmark observations per problem: C2ST (0.5 = indistinguishable) against "
        "the reference draws, mean; min ESS: median over observations of the smallest bulk ESS over "
        "parameters (SMC: the ESS of its final weights, not an MCMC ESS); s/post: warm wall time of one "
        "call on all observations, divided by their number; ESS/s: min ESS / s per posterior. NUTS: "
        "`ji.sample` defaults (4 chains, 500 warmup, 1000 draws). IMH: `independence_sample`, 4 chains x "
        "(100 burn-in + 1000 draws), 2 random-walk moves per transition; acc: its mean acceptance of "
        "the independence proposals. SMC: 4000 particles, from q (`smc_sample`) or from the prior "
        "(`ji.sample(method='smc')`); stages: mean tempering stages.",
        "",
        "| problem | sampler | C2ST | min ESS | s / post | min ESS / s | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, K in (("gaussian_linear", 2), ("two_moons", 8), ("inverse_kinematics", 8)):
        problem = ji.problems.load(name).problem
        q = am.train_mixture_density(
            problem, jax.random.key(0), num_components=K, num_steps=args.steps, progress=True
        )
        bench = ji.problems.load(name, batch=args.c2st_obs)
        ref = np.asarray(bench.reference["draws"])
        runs = {
            "NUTS": lambda: ji.sample(problem, bench.y, key=jax.random.key(2)),
            "IMH from q": lambda: am.independence_sample(q, bench.y, jax.random.key(2), local_steps=2),
            "SMC from q": lambda: am.smc_sample(q, bench.y, jax.random.key(2)),
            "SMC from prior": lambda: ji.sample(problem, bench.y, key=jax.random.key(2), method="smc"),
        }
        outs, times = timed_in_turn(list(runs.values()), 1)
        for (label, _), post, t in zip(runs.items(), outs, times):
            draws = np.asarray(post.samples).reshape(args.c2st_obs, -1, ref.shape[-1])
            acc = np.mean([c2st(draws[i], ref[i]) for i in range(args.c2st_obs)])
            ess, per = float(np.median(np.asarray(post.min_ess))), t / args.c2st_obs
            note = (
                f"acc {float(jnp.mean(post.stats.acceptance_rate)):.2f}"
                if label.startswith("IMH")
                else f"stages {float(jnp.mean(post.smc.num_stages)):.1f}"
                if label.startswith("SMC")
                else f"{int(np.sum(np.asarray(post.num_divergent)))} divergences"
            )
            lines.append(
                f"| {name} | {label} | {acc:.3f} | {ess:.0f} | {per:.3f} | {ess / per:,.0f} | {note} |"
            )
            print(lines[-1], flush=True)
        if name == "gaussian_linear":
            many = gaussian_linear_throughput(args, problem, q)
    lines += ["", many, ""]


def gaussian_linear_throughput(args, problem, q):
    """Seconds per posterior at ``--n`` observations of gaussian_linear: q alone, q + importance
    weights, IMH from q (all at --n, one call each, warm), NUTS on --nuts-obs observations in
    one call (extrapolated per observation)."""
    _, y = am.simulate_pairs(problem, jax.random.key(123), args.n)
    k = args.nuts_obs
    (_, imp, imh, nuts), (t_q, t_is, t_imh, t_nuts) = timed_in_turn(
        [
            lambda: q.sample(jax.random.key(1), y, 1000),
            lambda: am.importance_sample(q, y, jax.random.key(1), num=1000),
            lambda: am.independence_sample(q, y, jax.random.key(1), num_chains=1, diagnose=False),
            lambda: ji.sample(problem, y[:k], key=jax.random.key(2), diagnose=False),
        ],
        1,
    )
    n = args.n
    return (
        f"gaussian_linear, time per posterior at {n:,} observations (one call each, warm): q alone "
        f"(1000 draws) {t_q / n:.1e} s, q + importance weights (1000) {t_is / n:.1e} s "
        f"(median ESS/N {float(jnp.median(imp.ess_fraction)):.3f}), IMH from q (1 chain, 100 + 1000) "
        f"{t_imh / n:.1e} s (acceptance {float(jnp.mean(imh.stats.acceptance_rate)):.3f}); NUTS (4 chains, "
        f"500 + 1000) on {k} observations in one call {t_nuts / k:.2e} s per posterior, so "
        f"~{t_nuts / k * n:,.0f} s for {n:,} (extrapolated, linear in observations)."
    )


def signals(key, num, n):
    """A family of 1-D signals on n cells: a Gaussian bump plus a box, random heights, places, widths."""
    x = (jnp.arange(n) + 0.5) / n
    k = jax.random.split(key, 6)
    u = lambda i, lo, hi: jax.random.uniform(k[i], (num, 1), minval=lo, maxval=hi)  # noqa: E731
    bump = u(0, 0.5, 1.5) * jnp.exp(-0.5 * ((x - u(1, 0.15, 0.85)) / u(2, 0.03, 0.08)) ** 2)
    box = u(3, -1.0, 1.0) * (jnp.abs(x - u(4, 0.2, 0.8)) < u(5, 0.05, 0.15))
    return bump + box


def latent_part(args, lines):
    n, latent_dim, noise, n_test = 64, 8, 0.02, 200
    blur = ji.problems.load("deconvolution1d", n=n, sigma=0.03).problem.forward
    train = signals(jax.random.key(0), 20_000, n)
    truth = signals(jax.random.key(1), n_test + 50, n)
    lik = ji.likelihoods.Gaussian(noise)
    y = jax.vmap(blur)(truth) + noise * jax.random.normal(jax.random.key(2), truth.shape)
    val, test = slice(n_test, None), slice(0, n_test)
    rel = lambda est, i: np.median(
        np.linalg.norm(np.asarray(est) - np.asarray(truth[i]), axis=-1)  # noqa: E731
        / np.linalg.norm(np.asarray(truth[i]), axis=-1)
    )
    rows = []
    gauss = ji.InverseProblem(
        blur, ji.priors.Gaussian(jnp.zeros(n), float(jnp.sqrt(jnp.mean(train**2)))), lik
    )
    r, t = timed(lambda: ji.solve_map(gauss, y[test], warn=False), args.repeats)
    rows.append(("Gaussian N(0, rms² I)", "-", rel(r.theta, test), t))
    best = None
    for w in (3.0, 10.0, 30.0, 100.0):  # TV weight chosen on 50 validation signals
        tv = ji.InverseProblem(blur, ji.priors.TotalVariation((n,), weight=w, smoothing=1e-3), lik)
        err = rel(ji.solve_map(tv, y[val], warn=False).theta, val)
        best = (err, w, tv) if best is None or err < best[0] else best
    r, t = timed(lambda: ji.solve_map(best[2], y[test], warn=False), args.repeats)
    rows.append(
        (f"total variation (weight {best[1]:g}, chosen on 50 validation signals)", "-", rel(r.theta, test), t)
    )
    t0 = time.perf_counter()
    g = am.train_decoder(train, latent_dim, jax.random.key(3), num_steps=args.steps, progress=True)
    train_s = time.perf_counter() - t0
    latent = am.latent_problem(gauss, g, latent_dim)
    r, t = timed(
        lambda: ji.solve_map(latent, y[test], num_starts=8, key=jax.random.key(4), warn=False), args.repeats
    )
    rows.append(
        (
            f"decoder g(z), z ~ N(0, I_{latent_dim}) (VAE on 20,000 examples; MAP in z, 8 starts)",
            f"{args.steps} steps, {train_s:.0f} s",
            rel(am.decode(g, r.theta), test),
            t,
        )
    )
    lines += [
        f"Signals on {n} cells: a Gaussian bump plus a box (random heights, places, widths); Gaussian blur "
        f"(deconvolution1d's operator, sigma 0.03), noise std {noise}; {n_test} test signals drawn from "
        "the family. MAP under each prior; relative error ||θ - θ_true|| / ||θ_true||, median.",
        "",
        "| prior | training | relative error | MAP wall (s) |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c:.3f} | {d:.2f} |" for a, b, c, d in rows]
    lines.append("")
    print("\n".join(lines[-len(rows) - 1 :]), flush=True)


PARTS = {
    "point": "Amortised / learned inverses (issue 18): point estimates and warm-started MAP",
    "large": "Amortised / learned inverses (issue 18): point estimates and warm-started MAP at 10^5 observations",
    "posterior": "Amortised / learned inverses (issue 18): amortised posteriors against the exact density",
    "proposal": "Amortised / learned inverses (issue 18): q as the proposal of exact samplers",
    "latent": "Amortised / learned inverses (issue 18): a decoder-latent prior",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--large", type=int, default=100_000, help="observations of --part large")
    ap.add_argument("--block", type=int, default=4096, help="solve_map block_size of --part large")
    ap.add_argument("--c2st-obs", type=int, default=3)
    ap.add_argument(
        "--nuts-obs", type=int, default=64, help="NUTS observations of the --part proposal throughput"
    )
    ap.add_argument(
        "--part", nargs="+", default=["point", "posterior", "proposal", "latent"], choices=list(PARTS)
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    run = {
        "point": point_part,
        "large": large_part,
        "proposal": proposal_part,
        "posterior": posterior_part,
        "latent": latent_part,
    }
    for part in args.part:  # each part is its own section of the results file
        lines = []
        run[part](args, lines)
        body = "\n".join(lines)
        print(body)
        if args.out:
            command = "`.venv/bin/python " + " ".join(["benchmarks/amortized.py"] + sys.argv[1:]) + "`"
            record(args.out, f"amortized-{part}", PARTS[part], command, machine_info(), body)


if __name__ == "__main__":
    main()
