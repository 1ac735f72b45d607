"""Posterior sampling: min-ESS per second on CUQIpy's Deconvolution1D, and batched sampling.

Contenders get the same matrix, data, prior N(0, I) and noise N(0, 0.01^2 I), taken from
``cuqi.testproblem.Deconvolution1D(dim=128)``:
  jinverse ``ji.sample`` NUTS (4 chains), a hand-written blackjax NUTS loop (4 vmapped chains,
  window adaptation), NumPyro NUTS (4 vectorised chains), CUQIpy NUTS and LinearRTO (1 chain each,
  CUQIpy has no multi-chain sampler).
ESS is the same estimator for everyone (blackjax's rank-normalised bulk ESS, the smallest over the
128 parameters). Times are warm (second run, compile excluded and reported apart) and include
warmup + sampling. Then: 256 observations x 4 chains in one ``ji.sample`` call vs one call per
observation (warm; the per-observation loop is timed on a subset and scaled to 256).

    .venv/bin/python benchmarks/sampling.py            # a few minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import contextlib
import io
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


def setup(n):
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


def run_jinverse(problem, y, warmup, draws):
    def go(seed):
        post = ji.sample(problem, y, key=jax.random.key(seed), num_chains=4, num_warmup=warmup,
                         num_samples=draws)
        return post.samples

    return go


def run_blackjax(a, y, s, warmup, draws, chains=4):
    a_j, y_j = jnp.asarray(a), jnp.asarray(y)

    def logdensity(x):
        r = (y_j - a_j @ x) / s
        return -0.5 * jnp.dot(r, r) - 0.5 * jnp.dot(x, x)

    @jax.jit
    def loop(key):
        k_init, k_warm, k_draw = jax.random.split(key, 3)
        x0 = jax.random.normal(k_init, (chains, a.shape[1]))
        adapt = blackjax.window_adaptation(blackjax.nuts, logdensity,
                                           adaptation_info_fn=blackjax.adaptation.base.get_filter_adapt_info_fn())

        def warm(k, x):
            (state, params), _ = adapt.run(k, x, num_steps=warmup)
            return state, params

        states, params = jax.vmap(warm)(jax.random.split(k_warm, chains), x0)

        def step(states, k):
            def one(k, st, p):
                return blackjax.nuts(logdensity, **p).step(k, st)

            states, _ = jax.vmap(one)(jax.random.split(k, chains), states, params)
            return states, states.position

        _, xs = jax.lax.scan(step, states, jax.random.split(k_draw, draws))
        return jnp.swapaxes(xs, 0, 1)

    return lambda seed: loop(jax.random.key(seed))


def run_numpyro(a, y, s, warmup, draws, chains=4):
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    a_j, y_j = jnp.asarray(a), jnp.asarray(y)

    def model():
        x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([a.shape[1]]).to_event(1))
        numpyro.sample("y", dist.Normal(a_j @ x, s).to_event(1), obs=y_j)

    mcmc = MCMC(NUTS(model), num_warmup=warmup, num_samples=draws, num_chains=chains,
                chain_method="vectorized", progress_bar=False)

    def go(seed):
        mcmc.run(jax.random.key(seed))
        return mcmc.get_samples(group_by_chain=True)["x"]

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


def batched(problem, a, s, n_obs, warmup, draws, per_obs_subset, chunk):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n_obs, a.shape[1]))
    ys = x @ a.T + s * rng.normal(size=(n_obs, a.shape[0]))

    def batch(seed):
        return ji.sample(problem, ys, key=jax.random.key(seed), num_warmup=warmup,
                         num_samples=draws).samples

    first_b, t_batch, out_b = timed(batch, repeats=1)

    def chunked(seed):
        return ji.sample(problem, ys, key=jax.random.key(seed), num_warmup=warmup,
                         num_samples=draws, chunk_size=chunk).samples

    t_chunk = timed(chunked, repeats=1)[1] if chunk else np.nan

    def one(seed):
        out = None
        for i in range(per_obs_subset):
            out = ji.sample(problem, ys[i], key=jax.random.key(seed + i), num_warmup=warmup,
                            num_samples=draws).samples
        return out

    first_o, t_sub, _ = timed(one, repeats=1)
    t_loop = t_sub * n_obs / per_obs_subset
    ess_b = float(np.median([min_ess(out_b[i]) for i in range(0, n_obs, max(1, n_obs // 16))]))
    return first_b, t_batch, t_loop, ess_b, t_chunk


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--cuqi-warmup", type=int, default=200)
    p.add_argument("--cuqi-draws", type=int, default=500)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--batch-warmup", type=int, default=200)
    p.add_argument("--batch-draws", type=int, default=200)
    p.add_argument("--per-obs-subset", type=int, default=8)
    p.add_argument("--batch-chunk", type=int, default=4)
    p.add_argument("--skip-cuqi-nuts", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args()

    tp, a, y, s, mean, sd = setup(args.n)
    problem = ji.InverseProblem(jnp.asarray(a), ji.priors.Gaussian(jnp.zeros(args.n), 1.0),
                                ji.likelihoods.Gaussian(s))
    rows = []  # (name, compile, warm time, min ESS, accuracy, draws)

    def add(name, res, n_draws):
        first, t, out = res
        e = min_ess(out)
        compile_s = first - t if np.isfinite(first) else np.nan
        rows.append((name, compile_s, t, e, accuracy(out, mean, sd), n_draws))
        print(f"{name:40s} compile {compile_s:7.2f}s warm {t:8.2f}s min-ESS {e:8.0f} "
              f"ESS/s {e / t:9.1f} max|err|/sd {rows[-1][4]:.3f}", flush=True)

    W, D = args.warmup, args.draws
    res_ji, res_bj = interleaved([run_jinverse(problem, y, W, D), run_blackjax(a, y, s, W, D)],
                                 args.repeats)
    add("jinverse `ji.sample` NUTS, 4 chains", res_ji, f"4 x ({W}+{D})")
    add("hand-written blackjax NUTS loop, 4 chains", res_bj, f"4 x ({W}+{D})")
    add("NumPyro NUTS, 4 vectorised chains", run_numpyro(a, y, s, W, D), f"4 x ({W}+{D})")
    cw, cd = args.cuqi_warmup, args.cuqi_draws
    add("CUQIpy LinearRTO, 1 chain", run_cuqi(tp, "LinearRTO", cw, cd), f"1 x ({cw}+{cd})")
    if not args.skip_cuqi_nuts:
        add("CUQIpy NUTS, 1 chain", run_cuqi(tp, "NUTS", cw, cd), f"1 x ({cw}+{cd})")

    rate = {r[0]: r[3] / r[2] for r in rows}
    ji_rate = rate["jinverse `ji.sample` NUTS, 4 chains"]
    cuqi_best = max(v for k, v in rate.items() if k.startswith("CUQIpy"))
    first_b, t_batch, t_loop, ess_b, t_chunk = batched(
        problem, a, s, args.batch, args.batch_warmup, args.batch_draws, args.per_obs_subset,
        args.batch_chunk)
    print(f"batched {args.batch} obs: one call {t_batch:.2f}s (compile {first_b - t_batch:.1f}s), "
          f"per-observation {t_loop:.2f}s -> {t_loop / t_batch:.1f}x; median min-ESS {ess_b:.0f}")

    lines = [
        f"CUQIpy `Deconvolution1D(dim={args.n})` (Gaussian PSF, periodic BC, sinc phantom, "
        f"noise std {s}), prior N(0, I). Min-ESS = smallest bulk ESS over the {args.n} parameters "
        "(blackjax rank-normalised estimator for every contender); time = warm wall time of warmup "
        "+ sampling (jinverse and the blackjax loop timed in turns, best of `--repeats`; NumPyro best of 1 warm run; 1 run for CUQIpy); compile = first call minus "
        "warm call. `max|err|/sd` = largest |sample mean - exact posterior mean| in exact posterior "
        "standard deviations (a sanity check of correctness).",
        "",
        "| contender | draws (chains x (warmup+kept)) | compile (s) | warm time (s) | min ESS | "
        "min-ESS/s | jinverse / this | max\\|err\\|/sd |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, comp, t, e, acc, nd in rows:
        lines.append(f"| {name} | {nd} | {comp:.1f} | {t:.2f} | {e:.0f} | {e / t:.1f} | "
                     f"{ji_rate / (e / t):.2f}x | {acc:.3f} |")
    bj = rate["hand-written blackjax NUTS loop, 4 chains"]
    npy = rate["NumPyro NUTS, 4 vectorised chains"]
    lines += [
        "",
        f"Targets: jinverse / CUQIpy best = **{ji_rate / cuqi_best:.1f}x** (target >= 3x); "
        f"jinverse / NumPyro = **{ji_rate / npy:.2f}x** (target >= 1x); jinverse / raw blackjax "
        f"loop = **{ji_rate / bj:.2f}x** (target >= 0.8x).",
        "",
        f"Batched: {args.batch} observations x 4 chains x ({args.batch_warmup} warmup + "
        f"{args.batch_draws} draws), NUTS. One `ji.sample` call on y shaped ({args.batch}, {args.n}): "
        f"**{t_batch:.2f} s** warm (compile {first_b - t_batch:.1f} s); one call per observation: "
        f"{t_loop:.2f} s ({args.per_obs_subset} calls timed warm, scaled to {args.batch}) -> "
        f"**{t_loop / t_batch:.1f}x** (target >= 5x). Median min-ESS per observation in the batch: "
        f"{ess_b:.0f}. The same batch with `chunk_size={args.batch_chunk}` (observations vmapped "
        f"{args.batch_chunk} at a time, chunks in sequence): {t_chunk:.2f} s -> "
        f"**{t_loop / t_chunk:.1f}x** vs per-observation calls.",
        "",
        f"Versions: cuqipy {_version('cuqipy')}, numpyro {_version('numpyro')}.",
        "",
        "Notes. (1) jinverse and the hand-written loop run the same blackjax NUTS and window "
        "adaptation, so their min-ESS differ only by random streams (min over 128 parameters, "
        "about +-10%); the time ratio is the abstraction's cost (generic prior/likelihood "
        "densities with a few more elementwise ops per gradient, per-draw statistics, R-hat/ESS "
        "diagnostics). (2) LinearRTO draws nearly independent samples by a randomised "
        "least-squares solve (CGLS, CUQIpy's default maxit=10, whose inexactness shows in its "
        "max|err|/sd); on a linear-Gaussian posterior it is the natural sampler, while NUTS with a "
        "diagonal mass matrix needs long trajectories on this ill-conditioned posterior. For "
        "linear-Gaussian problems jinverse's exact posterior (`ji.linear`) is the right tool. "
        "(3) Batched NUTS on a CPU: a vmapped NUTS step lasts as long as the longest trajectory "
        "among all its lanes, and the work here is compute-bound (a 128x128 mat-vec per leapfrog "
        "step, trees up to 2^10 steps), so one call over the batch cannot beat one call per "
        "observation on 2 cores; batching pays where per-call overhead dominates (small problems) "
        "or on an accelerator (not measured here). `chunk_size` bounds the lockstep waste.",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        cmd = "`.venv/bin/python " + " ".join(["benchmarks/sampling.py", *sys.argv[1:]]) + "`"
        record(os.path.join(os.path.dirname(__file__), "RESULTS.md"), "sampling",
               "Posterior sampling: min-ESS/s and batched sampling (benchmarks/sampling.py)", cmd,
               machine_info(), body)


if __name__ == "__main__":
    main()
