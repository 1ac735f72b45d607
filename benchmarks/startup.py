"""Start-up and compilation (issue 15, item 5).

(a) ``jinverse --help``: wall time of the command, and the seconds of it spent importing the entry
    point and printing (interpreter start-up excluded);
(b) the same CLI command twice with a fresh, empty ``$JINVERSE_CACHE``: the first is what a fresh
    clone sees (compiles, trains, draws the reference), the second what every later call costs;
(c) first-call compilation of NUTS on ``deconvolution1d``: ``ji.sample(method="nuts")`` against a
    hand-written blackjax loop (``window_adaptation`` then a ``lax.scan`` of NUTS steps) on the
    same density (``problem.log_density``), same chains, warm-up and draws, each in a fresh
    process with the persistent cache off; compilation = first call minus a second, identical call
    (same key: the same work, nothing recompiles), in wall and CPU seconds, and the sum of JAX's
    own tracing, lowering and compilation events of the first call.

``--part ab --old WORKTREE`` repeats (b) for this tree and an earlier commit's worktree, interleaved;
``--part server`` repeats (b) with a ``jinverse server`` running (the commands run in it).

Run: ``python benchmarks/startup.py [--part help,calls,nuts,ab,server] [--nuts ROWS] [--nuts-length WARMUP,DRAWS]
[--repeats K] [--old WORKTREE]``; it prints markdown
tables (figures and their reading: benchmarks/RESULTS.md, "Start-up and compilation"). Wall times
on a shared machine are noisy: each figure comes with the CPU time (user + sys) and the load.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

JINVERSE = str(pathlib.Path(sys.executable).with_name("jinverse"))


def timed(cmd, env=None, **kw):
    """``(wall s, cpu s of the child, completed process)``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, **kw)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, cpu, proc


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


# -- (a) --help ------------------------------------------------------------------------------------

OWN = textwrap.dedent("""
    import sys, time
    t0, c0 = time.perf_counter(), time.process_time()
    import jinverse_cli
    try:
        jinverse_cli.main(["--help"], prog_name="jinverse")
    except SystemExit:
        pass
    print(time.perf_counter() - t0, time.process_time() - c0, "jax" in sys.modules, file=sys.stderr)
""")


def part_help(repeats: int = 7) -> list[str]:
    walls = [timed([JINVERSE, "--help"])[0] for _ in range(repeats)]
    bare = [timed([sys.executable, "-c", "pass"])[0] for _ in range(repeats)]
    own, own_cpu, jax_loaded = [], [], set()
    for _ in range(repeats):
        secs, cpu, loaded = timed([sys.executable, "-c", OWN])[2].stderr.split()
        own.append(float(secs))
        own_cpu.append(float(cpu))
        jax_loaded.add(loaded)
    return [f"| | median of {repeats} | min |", "|---|---|---|",
            f"| `jinverse --help`, wall | {statistics.median(walls):.3f} s | {min(walls):.3f} s |",
            f"| `python -c pass`, wall (interpreter start) | {statistics.median(bare):.3f} s | {min(bare):.3f} s |",
            f"| importing `jinverse_cli` + printing the help, wall | {statistics.median(own):.3f} s | {min(own):.3f} s |",
            f"| the same, CPU | {statistics.median(own_cpu):.3f} s | {min(own_cpu):.3f} s |",
            "", f"JAX imported by `--help`: {' / '.join(sorted(jax_loaded))}."]


# -- (b) cold and warm CLI calls -------------------------------------------------------------------

CALLS = (["solve", "deconvolution1d"], ["sample", "gaussian_linear"], ["solve", "trained_regressor"])


def part_calls() -> list[str]:
    rows = ["| command | cold wall | cold CPU | warm wall | warm CPU | wall ratio | CPU ratio |",
            "|---|---|---|---|---|---|---|"]
    for args in CALLS:
        with tempfile.TemporaryDirectory(prefix="jinverse-cache-") as cache:
            env = {**os.environ, "JINVERSE_CACHE": cache}
            env.pop("JINVERSE_NO_CACHE", None)
            cold = timed([JINVERSE, "-q", *args], env=env)
            warm = timed([JINVERSE, "-q", *args], env=env)
        rows.append(f"| `jinverse {' '.join(args)}` | {cold[0]:.1f} s | {cold[1]:.1f} s | {warm[0]:.1f} s | "
                    f"{warm[1]:.1f} s | {cold[0] / warm[0]:.1f}x | {cold[1] / warm[1]:.1f}x |")
        print(rows[-1], flush=True)
    return rows


def part_ab(old: str, repeats: int = 3) -> list[str]:
    """(b) for this tree against ``old`` (a git worktree of an earlier commit, imported through
    ``PYTHONPATH``): one cold call each with its own empty cache, then ``repeats`` warm calls
    each, the two trees alternating; CPU seconds (medians). Adds ``--no-score`` to ``sample``
    (C2ST training is work, not start-up)."""
    rows = ["| command | before: cold | before: warm | before: ratio | after: cold | after: warm | after: ratio |",
            "|---|---|---|---|---|---|---|"]
    trees = {"before": old, "after": None}
    with tempfile.TemporaryDirectory(prefix="jinverse-ab-") as root:
        def call(tree, args):
            env = {**os.environ, "JINVERSE_CACHE": os.path.join(root, tree)}
            env.pop("JINVERSE_NO_CACHE", None)
            env.pop("PYTHONPATH", None)
            if trees[tree]:
                env["PYTHONPATH"] = trees[tree]
            return timed([JINVERSE, "-q", *args], env=env, cwd=root)[1]

        for args in (*CALLS[::2], [*CALLS[1], "--no-score"]):
            cold = {t: call(t, args) for t in trees}
            warm: dict[str, list[float]] = {t: [] for t in trees}
            for _ in range(repeats):
                for t in trees:
                    warm[t].append(call(t, args))
            cells = [f"{cold[t]:.2f} s | {statistics.median(warm[t]):.2f} s | "
                     f"{cold[t] / statistics.median(warm[t]):.1f}x" for t in trees]
            rows.append(f"| `jinverse {' '.join(args)}` | " + " | ".join(cells) + " |")
            print(rows[-1], flush=True)
    return rows


def server_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux: /proc/PID/stat)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def part_server(repeats: int = 3) -> list[str]:
    """(b) with ``jinverse server start`` first: the same command ``1 + repeats`` times, all run in
    the one server (fresh, empty cache). Wall seconds of the client, and CPU seconds of the client
    plus the server's CPU over the call; the server's start-up (imports) is shown apart."""
    rows = ["| command | first: wall | first: CPU | later: wall (median) | later: CPU (median) | wall ratio | "
            "CPU ratio |", "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="jinverse-server-") as cache:
        env = {**os.environ, "JINVERSE_CACHE": cache}
        for k in ("JINVERSE_NO_CACHE", "JINVERSE_NO_SERVER"):
            env.pop(k, None)
        wall, cpu, proc = timed([JINVERSE, "server", "start", "--idle-timeout", "30"], env=env)
        pid = int(proc.stdout.split("pid ")[1].split(",")[0])
        rows.insert(0, f"`jinverse server start`: {wall:.2f} s wall until it answers (it imports JAX and "
                       "jinverse once).\n")
        try:
            for args in (*CALLS[::2], [*CALLS[1], "--no-score"]):
                walls, cpus = [], []
                for _ in range(1 + repeats):
                    before = server_cpu(pid)
                    w, c, _ = timed([JINVERSE, "-q", *args], env=env)
                    walls.append(w)
                    cpus.append(c + server_cpu(pid) - before)
                later_w, later_c = statistics.median(walls[1:]), statistics.median(cpus[1:])
                rows.append(f"| `jinverse {' '.join(args)}` | {walls[0]:.2f} s | {cpus[0]:.2f} s | {later_w:.2f} s | "
                            f"{later_c:.2f} s | {walls[0] / later_w:.1f}x | {cpus[0] / later_c:.1f}x |")
                print(rows[-1], flush=True)
        finally:
            subprocess.run([JINVERSE, "server", "stop"], env=env, capture_output=True)
    return rows


# -- (c) NUTS compilation: jinverse against hand-written blackjax ----------------------------------

PRELUDE = textwrap.dedent("""
    import json, sys, time
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import jinverse as ji
    CHAINS, WARMUP, DRAWS = 4, *json.loads(sys.argv[2])
    bench = ji.problems.load("deconvolution1d")
    problem, y = bench.problem, bench.y

    from jinverse.bench import compile_seconds  # JAX's own tracing, lowering and compile events

    def timed_twice(run):
        # the same key twice: the second call repeats the first's work exactly, minus compilation
        out = {}
        for call in ("first", "second"):
            t0, c0, e0 = time.perf_counter(), time.process_time(), compile_seconds()
            jax.block_until_ready(run(jax.random.key(0)))
            out[call], out[call + "_cpu"] = time.perf_counter() - t0, time.process_time() - c0
            out[call + "_events"] = compile_seconds() - e0
        print("RESULT", json.dumps(out))
""")

JINVERSE_NUTS = PRELUDE + textwrap.dedent("""
    options = json.loads(sys.argv[1]) or {}
    timed_twice(lambda key: ji.sample(problem, y, key=key, method="nuts", num_chains=CHAINS,
                                      num_warmup=WARMUP, num_samples=DRAWS, progress=False,
                                      **options).samples)
""")

BLACKJAX_NUTS = PRELUDE + textwrap.dedent("""
    import blackjax

    def logdensity(u):
        return problem.log_density(u, y)

    def chain(key, u0):
        k_warm, k_draws = jax.random.split(key)
        adapt = blackjax.window_adaptation(blackjax.nuts, logdensity)
        (state, params), _ = adapt.run(k_warm, u0, num_steps=WARMUP)
        nuts = blackjax.nuts(logdensity, **params)

        def step(state, k):
            state, _ = nuts.step(k, state)
            return state, state.position

        return jax.lax.scan(step, state, jax.random.split(k_draws, DRAWS))[1]

    @jax.jit
    def run(key):
        k_init, k_chains = jax.random.split(key)
        u0 = problem.sample_prior(k_init, (CHAINS,))
        return jax.vmap(chain)(jax.random.split(k_chains, CHAINS), u0)

    timed_twice(run)
""")

NUTS_VARIANTS = {
    "hand-written blackjax (window adaptation, diagonal mass matrix)": (BLACKJAX_NUTS, None),
    "`ji.sample(method=\"nuts\")`, defaults (metric \"auto\" = Laplace whitening here, diagnostics)":
        (JINVERSE_NUTS, {}),
    "`ji.sample(method=\"nuts\", diagnose=False)`": (JINVERSE_NUTS, {"diagnose": False}),
    "`ji.sample(method=\"nuts\", metric=\"diagonal\")` (blackjax's algorithm, diagnostics)":
        (JINVERSE_NUTS, {"metric": "diagonal"}),
}


def part_nuts(only=(), length=(500, 1000), repeats=1) -> list[str]:
    """``length``: warm-up and draws per chain (compilation does not depend on them: shorter runs
    leave less sampling time in the first-minus-second difference, so less noise); each program
    is run ``repeats`` times, each time in a fresh process, and the medians are shown."""
    env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"}
    rows = ["| program | first call wall (CPU) | second call wall (CPU) | compilation: wall, CPU, JAX's "
            "compile events | vs blackjax: wall, CPU, events |", "|---|---|---|---|---|"]
    base = None
    for label, (code, options) in NUTS_VARIANTS.items():
        if only and not any(o in label for o in only):
            continue
        runs = [json.loads(timed([sys.executable, "-c", code, json.dumps(options), json.dumps(length)],
                                 env=env)[2].stdout.split("RESULT", 1)[1]) for _ in range(repeats)]
        r = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        comp = tuple(statistics.median(c) for c in zip(*[
            (run["first"] - run["second"], run["first_cpu"] - run["second_cpu"], run["first_events"]) for run in runs]))
        base = comp if base is None else base
        rows.append(f"| {label} | {r['first']:.2f} s ({r['first_cpu']:.2f} s) | {r['second']:.2f} s "
                    f"({r['second_cpu']:.2f} s) | {comp[0]:.2f} s, {comp[1]:.2f} s, {comp[2]:.2f} s | "
                    + ", ".join(f"{c / b:.2f}x" for c, b in zip(comp, base)) + " |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="help,calls,nuts")
    parser.add_argument("--nuts", default="", help="comma-separated substrings: only these NUTS rows "
                        "(the first row run is the reference of the ratios)")
    parser.add_argument("--nuts-length", default="500,1000", help="NUTS warm-up and draws per chain")
    parser.add_argument("--repeats", type=int, default=1, help="nuts, ab: fresh processes per program (medians)")
    parser.add_argument("--old", default="", help="ab: a git worktree of the commit to compare against")
    args = parser.parse_args()
    only = [o for o in args.nuts.split(",") if o]
    length = tuple(int(v) for v in args.nuts_length.split(","))
    parts = {"help": part_help, "calls": part_calls, "nuts": lambda: part_nuts(only, length, args.repeats),
             "ab": lambda: part_ab(args.old, max(args.repeats, 1)),
             "server": lambda: part_server(max(args.repeats, 1))}
    body = []
    for name in args.part.split(","):
        start = load()
        t0 = time.perf_counter()
        lines = parts[name]()
        body += [f"### {name} (load average at start {start}, at end {load()}; {time.perf_counter() - t0:.0f} s)",
                 "", *lines, ""]
        print("\n".join(lines), flush=True)
    print("\n".join(body))


if __name__ == "__main__":
    main()
