"""float32 vs float64: accuracy of MAP on the benchmark problems.

Each precision runs in a fresh process (``jax_enable_x64`` is process-wide). For each problem we
report the MAP's metric against the truth (``ji.problems.evaluate``), the relative difference
between the float32 and float64 MAPs, and the fraction converged.

    .venv/bin/python benchmarks/precision.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = [  # (problem, options, optimizer)
    ("shaw", {"n": 64}, None),
    ("phillips", {"n": 64}, None),
    ("deconvolution1d", {"n": 128}, None),
    ("heat1d", {}, None),
    ("lorenz63", {}, None),
    ("gaussian_linear", {"reference": False}, "newton"),
]


def worker(bits: int, out: str, data: str | None):
    """MAP in this precision; float32 solves the very data (and truth) of the float64 run."""
    import dataclasses

    import jax

    jax.config.update("jax_enable_x64", bits == 64)
    import numpy as np

    import jinverse as ji

    given = json.load(open(data)) if data else {}
    results = {}
    for name, opts, opt in CASES:
        b = ji.problems.load(name, **opts)
        if name in given:
            b = dataclasses.replace(b, y=np.asarray(given[name]["y"]),
                                    theta_true=np.asarray(given[name]["theta_true"]))
        y = np.asarray(b.y)
        r = ji.solve_map(b.problem, y.astype(np.float64 if bits == 64 else np.float32), optimizer=opt,
                         max_steps=2000)
        score = ji.problems.evaluate(b, r)
        theta = np.asarray(r.theta, dtype=np.float64)
        results[name] = {"metric": score["metric"], "value": float(np.mean(score["value"])),
                         "converged": float(np.mean(np.asarray(r.converged))), "theta": theta.tolist(),
                         "y": np.asarray(b.y, np.float64).tolist(),
                         "theta_true": np.asarray(b.theta_true, np.float64).tolist()}
    with open(out, "w") as f:
        json.dump(results, f)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
        return
    runs, runs_file = {}, {}
    for bits in (64, 32):
        out = f"/tmp/jinverse_precision_{bits}_{os.getpid()}.json"
        data = [runs_file[64]] if bits == 32 else []
        subprocess.run([sys.executable, __file__, "--worker", str(bits), out, *data], check=True)
        runs_file[bits] = out
        with open(out) as f:
            runs[bits] = json.load(f)
    import numpy as np

    sys.path.insert(0, HERE)
    from _common import machine_info, record

    lines = ["| problem | metric | float64 | float32 | rel. difference float32 vs float64 MAP | converged f64 / f32 |",
             "|---|---|---:|---:|---:|---:|"]
    for name, _, _ in CASES:
        a, b = runs[64][name], runs[32][name]
        ta, tb = np.asarray(a["theta"]), np.asarray(b["theta"])
        diff = float(np.linalg.norm(ta - tb) / max(np.linalg.norm(ta), 1e-300))
        lines.append(f"| {name} | {a['metric']} | {a['value']:.4g} | {b['value']:.4g} | {diff:.2e} | "
                     f"{a['converged']:.2f} / {b['converged']:.2f} |")
        print(lines[-1], flush=True)
    record(os.path.join(HERE, "RESULTS.md"), "precision", "float32 vs float64 MAP accuracy on benchmark problems",
           "`.venv/bin/python benchmarks/precision.py`", machine_info(),
           "\n".join(lines) + "\n\nfloat32 uses tol=1e-4 on the relative gradient (float64: 1e-9); "
           "'converged' counts the status flag.")


if __name__ == "__main__":
    main()
