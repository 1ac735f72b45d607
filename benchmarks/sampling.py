"""Posterior sampling: min-ESS per second on CUQIpy's Deconvolution1D, and batched sampling.

Contenders get the same matrix, data, prior N(0, I) and noise N(0, 0.01^2 I), taken from
``cuqi.testproblem.Deconvolution1D(dim=128)``:
  jinverse ``ji.sample`` NUTS (4 chains), a hand-written blackjax NUTS loop (4 vmapped chains,
  window adaptation), NumPyro NUTS (4 vectorised chains), each with a diagonal and with a dense
  mass matrix (dense: the same warmup windows for all three); CUQIpy NUTS and LinearRTO (1 chain
  each, CUQIpy has no multi-chain or dense-mass sampler); jinverse's exact linear-Gaussian sampler.
ESS is the same estimator for everyone (blackjax's rank-normalised bulk ESS, the smallest over the
128 parameters). Times are warm (second run, compile excluded and reported apart) and include
warmup + sampling. Then: a batch of observations x 4 chains in one ``ji.sample`` call (per
``chunk_size``) vs one call per observation (warm; timed on a subset and scaled).

    .venv/bin/python benchmarks/sampling.py            # ~15 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)
import blackjax  # noqa: E402
import blackjax.diagnostics as bd  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import _version, machine_info, record  # noqa: E402

import jinverse as ji  # noqa: E402

warnings.filterwarnings("ignore")


def ratio(a: float, b: float) -> float:
    """a / b; inf when b is 0 (a min-ESS of 0 from a run too short to estimate it)."""
    return a / b if b > 0 else float("inf")


def min_ess(draws) -> float:
    """Smallest bulk ESS over parameters; draws shaped (chains, draws, n)."""
    return float(jnp.min(jax.jit(bd.ess_bulk)(jnp.asarray(draws))))


def accuracy(draws, mean, sd) -> float:
    """Largest |sample mean - exact mean| in units of the exact posterior std."""
    d = np.asarray(draws).reshape(-1, mean.shape[0])
    return float(np.max(np.abs(d.mean(0) - mean) / sd))


def timed(fn, repeats=1):
    """(first-call seconds, best warm seconds, last output)."""
    return interleaved([fn], repeats)[0]


def interleaved(fns, repeats):
    """Time several contenders in turns (so machine load hits them alike): per contender
    (first-call seconds, best warm seconds, last output)."""
    res = []
    for fn in fns:
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(0))
        res.append([time.perf_counter() - t0, np.inf, out])
    for r in range(repeats):
        for fn, rr in zip(fns, res):
            t0 = time.perf_counter()
            rr[2] = jax.block_until_ready(fn(r + 1))
            rr[1] = min(rr[1], time.perf_counter() - t0)
    return [tuple(rr) for rr in res]


def setup(n, npz=None):
    """CUQIpy's test problem: (tp, A, y, noise std, exact posterior mean, exact posterior sd).
    With ``npz`` (written by ``--save-problem``), the same arrays without CUQIpy (tp is None):
    for machines without it, such as the GPU host."""
    if npz:
        d = np.load(npz)
        return None, d["a"], d["y"], float(d["s"]), d["mean"], d["sd"]
    import cuqi

    np.random.seed(0)
    tp = cuqi.testproblem.Deconvolution1D(dim=n)
    a = np.asarray(tp.likelihood.model.get_matrix().todense()) if hasattr(
        tp.likelihood.model.get_matrix(), "todense") else np.asarray(tp.likelihood.model.get_matrix())
    y = np.asarray(tp.data)
    s = float(np.sqrt(np.asarray(tp.likelihood.distribution.cov).ravel()[0]))
    prec = a.T @ a / s**2 + np.eye(n)
    cov = np.linalg.inv(prec)
    mean = cov @ a.T @ y / s**2
    return tp, a, y, s, mean, np.sqrt(np.diag(cov))


def first_window(d):
    """The dense warmup's first slow window, as jinverse sets it (given to every contender)."""
    return max(25, math.ceil(1.5 * d))


LAST_POSTERIOR = {}  # mass -> the last jinverse posterior (its diagnostics are timed apart)


def run_jinverse(problem, y, warmup, draws, dense=False):
    """``ji.sample`` with ``diagnose=False``: draws and sampler statistics, like NumPyro's
    ``mcmc.run`` and the hand-written loop; R-hat/ESS (``post.diagnose()``) are timed apart."""

    def go(seed):
        post = ji.sample(problem, y, key=jax.random.key(seed), num_chains=4, num_warmup=warmup,
                         num_samples=draws, dense_mass=dense, diagnose=False)
        LAST_POSTERIOR["dense" if dense else "diagonal"] = post
        return post.samples, post.stats.num_integration_steps

    return go


def time_diagnose(post) -> float:
    """Seconds of ``post.diagnose()`` (blackjax's rank-normalised R-hat and bulk ESS), warm."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jax.block_until_ready(post.diagnose().max_rhat)
        t0 = time.perf_counter()
        jax.block_until_ready(post.diagnose().max_rhat)
    return time.perf_counter() - t0


def run_blackjax(a, y, s, warmup, draws, chains=4, dense=False):
    a_j, y_j = jnp.asarray(a), jnp.asarray(y)
    from blackjax.adaptation.base import get_filter_adapt_info_fn
    from blackjax.adaptation.staged_adaptation import staged_adaptation
    from blackjax.adaptation.window_adaptation import build_schedule

    def logdensity(x):
        r = (y_j - a_j @ x) / s
        return -0.5 * jnp.dot(r, r) - 0.5 * jnp.dot(x, x)

    @jax.jit
    def loop(key):
        k_init, k_warm, k_draw = jax.random.split(key, 3)
        x0 = jax.random.normal(k_init, (chains, a.shape[1]))
        if dense:  # Stan's windows with the same first slow window as jinverse's dense warmup
            first = first_window(a.shape[1])
            adapt = staged_adaptation(blackjax.nuts, logdensity, metric="welford_dense",
                                      schedule_fn=lambda n: build_schedule(n, first_window_size=first),
                                      adaptation_info_fn=get_filter_adapt_info_fn())
        else:
            adapt = blackjax.window_adaptation(blackjax.nuts, logdensity,
                                               adaptation_info_fn=get_filter_adapt_info_fn())

        def warm(k, x):
            (state, params), _ = adapt.run(k, x, num_steps=warmup)
            return state, params

        states, params = jax.vmap(warm)(jax.random.split(k_warm, chains), x0)

        def step(states, k):
            def one(k, st, p):
                return blackjax.nuts(logdensity, **p).step(k, st)

            states, info = jax.vmap(one)(jax.random.split(k, chains), states, params)
            return states, (states.position, info.num_integration_steps)

        _, (xs, steps) = jax.lax.scan(step, states, jax.random.split(k_draw, draws))
        return jnp.swapaxes(xs, 0, 1), jnp.swapaxes(steps, 0, 1)

    return lambda seed: loop(jax.random.key(seed))


def run_numpyro(a, y, s, warmup, draws, chains=4, dense=False):
    import numpyro
    import numpyro.distributions as dist
    import numpyro.infer.hmc_util as hmc_util
    from numpyro.infer import MCMC, NUTS

    a_j, y_j = jnp.asarray(a), jnp.asarray(y)

    def model():
        x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([a.shape[1]]).to_event(1))
        numpyro.sample("y", dist.Normal(a_j @ x, s).to_event(1), obs=y_j)

    mcmc = MCMC(NUTS(model, dense_mass=dense), num_warmup=warmup, num_samples=draws,
                num_chains=chains, chain_method="vectorized", progress_bar=False)
    stan = hmc_util.build_adaptation_schedule

    def schedule(num_steps):  # the same windows as jinverse's and blackjax's dense warmup
        from blackjax.adaptation.window_adaptation import build_schedule

        rows = np.asarray(build_schedule(num_steps, first_window_size=first_window(a.shape[1])))
        ends = [np.flatnonzero(rows[:, 0])[0] - 1, *np.flatnonzero(rows[:, 1]), num_steps - 1]
        return [hmc_util.AdaptWindow(s0 + 1, e) for s0, e in zip([-1, *ends[:-1]], ends)]

    def go(seed):
        hmc_util.build_adaptation_schedule = schedule if dense else stan
        try:
            mcmc.run(jax.random.key(seed), extra_fields=("num_steps",))
        finally:
            hmc_util.build_adaptation_schedule = stan
        steps = mcmc.get_extra_fields(group_by_chain=True)["num_steps"]
        return mcmc.get_samples(group_by_chain=True)["x"], steps

    return timed(go, repeats=1)


def run_cuqi(tp, sampler_name, warmup, draws):
    import cuqi

    def go(seed):
        np.random.seed(seed)
        with contextlib.redirect_stderr(io.StringIO()):  # CUQIpy's progress bars
            sampler = getattr(cuqi.sampler, sampler_name)(tp.posterior)
            sampler.warmup(warmup)
            sampler.sample(draws)
        return np.asarray(sampler.get_samples().samples).T[None]  # (1, draws, n)

    t0 = time.perf_counter()
    out = go(1)
    return np.nan, time.perf_counter() - t0, out


def run_exact(problem, y, draws, repeats):
    """jinverse's exact linear-Gaussian posterior (`ji.linear.linear_gaussian`, dense Cholesky):
    build it and draw ``draws`` independent samples, as one chain."""

    def go(seed):
        post = ji.linear.linear_gaussian(problem, y)
        return post.sample(jax.random.key(seed), (draws,))[None], None

    return timed(go, repeats)


def batched(problem, a, s, n_obs, warmup, draws, per_obs_subset, chunks, dense):
    """Warm seconds of one call on the batch (per chunk_size), of one call per observation
    (a subset, scaled), and the trajectory lengths: mean over lanes and draws, and mean over
    draws of the longest lane (what a vmapped step waits for)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n_obs, a.shape[1]))
    ys = x @ a.T + s * rng.normal(size=(n_obs, a.shape[0]))
    kw = dict(num_warmup=warmup, num_samples=draws, dense_mass=dense)

    def batch(chunk):
        def go(seed):
            post = ji.sample(problem, ys, key=jax.random.key(seed), chunk_size=chunk, **kw)
            return post.samples, post.stats.num_integration_steps

        return go

    out = {}
    for chunk in chunks:
        first, t, (samples, steps) = timed(batch(chunk), repeats=1)
        out[chunk] = (first - t, t)
        print(f"batched {n_obs} obs chunk_size={chunk}: {t:.2f}s warm", flush=True)
    steps = np.asarray(steps)  # (obs, chains, draws)
    lanes = steps.transpose(2, 0, 1).reshape(draws, -1)
    ess_b = float(np.median([min_ess(samples[i]) for i in range(n_obs)]))

    def one(seed):
        res = None
        for i in range(per_obs_subset):
            res = ji.sample(problem, ys[i], key=jax.random.key(seed + i), **kw).samples
        return res

    t_loop = timed(one, repeats=1)[1] * n_obs / per_obs_subset
    return out, t_loop, ess_b, float(lanes.mean()), float(lanes.max(1).mean())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--warmup", type=int, default=300, help="warmup of the diagonal-mass rows")
    p.add_argument("--dense-warmup", type=int, default=1000, help="warmup of the dense-mass rows")
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--cuqi-warmup", type=int, default=50)
    p.add_argument("--cuqi-draws", type=int, default=1000, help="LinearRTO and the exact sampler")
    p.add_argument("--cuqi-nuts-draws", type=int, default=200)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--batch-warmup", type=int, default=400)
    p.add_argument("--batch-draws", type=int, default=100)
    p.add_argument("--batch-mass", choices=["dense", "diag"], default="dense")
    p.add_argument("--per-obs-subset", type=int, default=8)
    p.add_argument("--batch-chunks", default="none,2", help="chunk_size values ('none': one vmap)")
    p.add_argument("--skip-cuqi-nuts", action="store_true")
    p.add_argument("--skip-batch", action="store_true")
    p.add_argument("--masses", default="diagonal,dense", help="mass matrices of the NUTS rows")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--notes", help="a file whose text is appended to the recorded section")
    p.add_argument("--problem-npz", help="load the problem's arrays from this file instead of CUQIpy")
    p.add_argument("--save-problem", help="write the problem's arrays to this .npz file and stop")
    p.add_argument("--batch-only", action="store_true",
                   help="only the batched comparison, recorded in its own section (e.g. on a GPU)")
    p.add_argument("--label", default="", help="names the recorded section (e.g. 'GPU NVIDIA H200')")
    args = p.parse_args()

    tp, a, y, s, mean, sd = setup(args.n, args.problem_npz)
    if args.save_problem:
        np.savez(args.save_problem, a=a, y=y, s=s, mean=mean, sd=sd)
        return
    if args.batch_only:
        return batch_only(args, a, s)
    problem = make_problem(a, s)
    rows = []  # (name, draws, compile, warm time, min ESS, accuracy, mean steps, max steps)

    def add(name, res, n_draws):
        first, t, (out, steps) = res
        e = min_ess(out)
        compile_s = first - t if np.isfinite(first) else np.nan
        st = np.asarray(steps) if steps is not None else np.full(1, np.nan)
        rows.append((name, n_draws, compile_s, t, e, accuracy(out, mean, sd), float(st.mean()),
                     float(st.max())))
        print(f"{name:48s} compile {compile_s:7.2f}s warm {t:8.2f}s min-ESS {e:8.0f} "
              f"ESS/s {e / t:9.1f} max|err|/sd {rows[-1][5]:.3f} steps {st.mean():.0f}", flush=True)

    W, WD, D = args.warmup, args.dense_warmup, args.draws
    JI, BJ, NP = "jinverse `ji.sample` NUTS", "hand-written blackjax NUTS loop", "NumPyro NUTS"
    for mass, w in (("diagonal", W), ("dense", WD)):
        if mass not in args.masses.split(","):
            continue
        dense = mass == "dense"
        res_ji, res_bj = interleaved([run_jinverse(problem, y, w, D, dense),
                                      run_blackjax(a, y, s, w, D, dense=dense)], args.repeats)
        nd = f"4 x ({w}+{D})"
        add(f"{JI}, {mass} mass", res_ji, nd)
        add(f"{BJ}, {mass} mass", res_bj, nd)
        add(f"{NP}, {mass} mass (4 vectorised chains)", run_numpyro(a, y, s, w, D, dense=dense), nd)
    diag_s = {m: time_diagnose(p) for m, p in LAST_POSTERIOR.items()}
    cw, cd, cn = args.cuqi_warmup, args.cuqi_draws, args.cuqi_nuts_draws

    def cuqi(name, draws):
        first, t, out = run_cuqi(tp, name, cw, draws)
        return first, t, (out, None)

    add("CUQIpy LinearRTO, 1 chain", cuqi("LinearRTO", cd), f"1 x ({cw}+{cd})")
    if not args.skip_cuqi_nuts:
        add("CUQIpy NUTS, 1 chain", cuqi("NUTS", cn), f"1 x ({cw}+{cn})")
    add("jinverse exact `ji.linear.linear_gaussian(...).sample`", run_exact(problem, y, cd, args.repeats),
        f"1 x (0+{cd})")

    rate = {r[0]: r[4] / r[3] for r in rows}
    cuqi_best_name = max((k for k in rate if k.startswith("CUQIpy")), key=rate.get)
    cuqi_best = rate[cuqi_best_name]
    best = max((k for k in rate if k.startswith(JI)), key=rate.get)
    best_mass = "dense" if best.endswith("dense mass") else "diagonal"
    ji_rate = rate[best]

    batch_part = [] if args.skip_batch else batch_section(args, problem, a, s)

    lines = [
        f"CUQIpy `Deconvolution1D(dim={args.n})` (Gaussian PSF, periodic BC, sinc phantom, "
        f"noise std {s}), prior N(0, I). Min-ESS = smallest bulk ESS over the {args.n} parameters "
        "(blackjax rank-normalised estimator for every contender, exact draws included); time = "
        "warm wall time of warmup + sampling (jinverse and the blackjax loop timed in turns, best "
        "of `--repeats`; NumPyro best of 1 warm run; 1 run for CUQIpy); compile = first call "
        "minus warm call. Steps = leapfrog steps per kept draw, mean (max). `max|err|/sd` = "
        "largest |sample mean - exact posterior mean| in exact posterior standard deviations. "
        "Dense rows: every NUTS contender adapts a dense mass matrix with the same Stan windows "
        f"(75 fast, slow windows of {first_window(args.n)} = 1.5 d then the rest, 50 fast: "
        "jinverse's dense warmup; blackjax `staged_adaptation` with `build_schedule(n, "
        "first_window_size=...)`; NumPyro with its `build_adaptation_schedule` replaced by the "
        "same windows) and the same warmup length; CUQIpy has no dense-mass NUTS.",
        "",
        "| contender | draws (chains x (warmup+kept)) | compile (s) | warm time (s) | min ESS | "
        "min-ESS/s | steps | jinverse best / this | max\\|err\\|/sd |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, nd, comp, t, e, acc, sm, sx in rows:
        steps = "-" if np.isnan(sm) else f"{sm:.0f} ({sx:.0f})"
        lines.append(f"| {name} | {nd} | {comp:.1f} | {t:.2f} | {e:.0f} | {e / t:.1f} | {steps} | "
                     f"{ratio(ji_rate, e / t):.2f}x | {acc:.3f} |")
    bj = rate[f"{BJ}, {best_mass} mass"]
    npy = rate[f"{NP}, {best_mass} mass (4 vectorised chains)"]
    exact = rate["jinverse exact `ji.linear.linear_gaussian(...).sample`"]
    lines += [
        "",
        f"Targets, on jinverse's best NUTS setting here ({best_mass} mass; peers with the same "
        f"setting): jinverse / CUQIpy best ({cuqi_best_name.split(',')[0]}) = "
        f"**{ratio(ji_rate, cuqi_best):.2f}x** (target >= 3x); jinverse / NumPyro = **{ratio(ji_rate, npy):.2f}x** "
        f"(target >= 1x); jinverse / hand-written blackjax loop = **{ratio(ji_rate, bj):.2f}x** (target "
        f">= 0.8x). Exact samplers, like for like: jinverse's exact linear-Gaussian sampler / CUQIpy "
        f"LinearRTO = **{ratio(exact, rate['CUQIpy LinearRTO, 1 chain']):.0f}x**.",
        "",
        "The jinverse rows call `ji.sample(..., diagnose=False)`: draws and per-draw sampler "
        "statistics, as NumPyro's `mcmc.run` and the hand-written loop return. R-hat and bulk ESS "
        "(blackjax's rank-normalised estimators, `post.diagnose()`, the default `diagnose=True`) "
        "then take " + ", ".join(f"{t:.2f} s ({m} rows)" for m, t in diag_s.items())
        + " on top, like NumPyro's `print_summary`.",
    ]
    lines += batch_part
    lines += [
        "",
        f"Versions: cuqipy {_version('cuqipy')}, numpyro {_version('numpyro')}.",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        cmd = "`.venv/bin/python " + " ".join(["benchmarks/sampling.py",
                                               *[f"'{x}'" if " " in x else x for x in sys.argv[1:]]]) + "`"
        notes = open(args.notes).read().strip() if args.notes and os.path.exists(args.notes) else ""
        label = args.label.strip()
        key = "sampling" + ("-" + "-".join(label.lower().replace(",", "").split()) if label else "")
        record(os.path.join(os.path.dirname(__file__), "RESULTS.md"), key,
               "Posterior sampling: min-ESS/s and batched sampling (benchmarks/sampling.py)"
               + (f" — {label}" if label else ""), cmd, machine_info(), body + ("\n\n" + notes if notes else ""))


def batch_only(args, a, s):
    """The batched comparison alone, recorded as ``sampling-batched[-label]``."""
    body = "\n".join(batch_section(args, make_problem(a, s), a, s)).strip()
    print(body)
    if not args.no_record:
        label = args.label.strip()
        key = "sampling-batched" + ("-" + "-".join(label.lower().split()) if label else "")
        cmd = "`" + " ".join(["python3" if label else ".venv/bin/python", "benchmarks/sampling.py",
                              *[f"'{x}'" if " " in x else x for x in sys.argv[1:]]]) + "`"
        record(os.path.join(os.path.dirname(__file__), "RESULTS.md"), key,
               "Batched posterior sampling (issue 3)" + (f" — {label}" if label else ""), cmd,
               machine_info(), body)


def make_problem(a, s):
    """The contenders' problem in jinverse: y = A x + N(0, s² I), x ~ N(0, I)."""
    return ji.InverseProblem(jnp.asarray(a), ji.priors.Gaussian(jnp.zeros(a.shape[1]), 1.0),
                             ji.likelihoods.Gaussian(s))


def batch_section(args, problem, a, s):
    """Run the batched comparison for every ``--batch-chunks`` value; its report lines."""
    chunks = [None if c == "none" else int(c) for c in args.batch_chunks.split(",")]
    b_times, t_loop, ess_b, steps_mean, steps_max = batched(
        problem, a, s, args.batch, args.batch_warmup, args.batch_draws, args.per_obs_subset,
        chunks, args.batch_mass == "dense")
    best_chunk = min(b_times, key=lambda c: b_times[c][1])
    return batch_lines(args, b_times, t_loop, ess_b, steps_mean, steps_max, best_chunk)


def batch_lines(args, b_times, t_loop, ess_b, steps_mean, steps_max, best_chunk):
    lines = [
        "",
        f"Batched ({args.batch_mass} mass): {args.batch} observations x 4 chains x "
        f"({args.batch_warmup} warmup + {args.batch_draws} draws), NUTS, one `ji.sample` call on "
        f"y shaped ({args.batch}, {args.n}) vs one call per observation ({args.per_obs_subset} "
        f"calls timed warm, scaled to {args.batch}): {t_loop:.2f} s.",
        "",
        "| one call, chunk_size | warm time (s) | compile (s) | per-observation calls / this |",
        "|---|---|---|---|",
    ]
    for c, (comp, t) in b_times.items():
        lines.append(f"| {c if c else 'None (one vmap)'} | {t:.2f} | {comp:.1f} | {t_loop / t:.2f}x |")
    lines += [
        "",
        f"Best: **{t_loop / b_times[best_chunk][1]:.2f}x** (target >= 5x). Median min-ESS per "
        f"observation: {ess_b:.0f}. Leapfrog steps per draw (last configuration): mean over lanes "
        f"{steps_mean:.1f}, mean over draws of the longest of the {args.batch * 4} lanes "
        f"{steps_max:.1f}.",
    ]
    return lines


if __name__ == "__main__":
    main()
