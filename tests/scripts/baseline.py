"""Bit-identical baseline of the host API, for restructurings (issue 17).

Records the results of a fixed set of public calls into an ``.npz`` file, and later checks that
the same calls give the same bits. Rounding differs between machines (XLA's CPU code
generation follows the instruction set), so record and check on the same machine, e.g.
before and after a refactoring:

    .venv/bin/python tests/scripts/baseline.py record /tmp/baseline.npz   # on the old commit
    .venv/bin/python tests/scripts/baseline.py check /tmp/baseline.npz    # on the new one

Exit status 0: every array equal bit for bit; 1: the names of those that differ are printed.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import jinverse as ji  # noqa: E402


def calls():
    """``name -> array`` for the fixed calls (small, a minute or two on 2 CPU cores)."""
    out = {}
    b = ji.problems.load("phillips", n=32, batch=4)
    for opt in ("auto", "lbfgs", "bfgs", "gauss-newton", "newton", "newton-cg"):
        r = ji.solve_map(b.problem, b.y, optimizer=opt, warn=False)
        out[f"map_{opt}_theta"], out[f"map_{opt}_status"] = r.theta, r.status
        out[f"map_{opt}_steps"] = r.num_steps
    lap = ji.laplace(b.problem, b.y)
    out["laplace_mean"], out["laplace_cov"] = lap.mean, lap.covariance
    low = ji.laplace(b.problem, b.y, rank=8, key=jax.random.key(2))
    out["laplace_rank8_eigvals"], out["laplace_rank8_var"] = low.eigvals, low.variance()
    A = b.info["A"]
    t = ji.linear.tikhonov(A, b.y, lam="gcv")
    out["tikhonov_x"], out["tikhonov_lam"] = t.x, t.lam
    g = ji.problems.load("gaussian_linear", dim=3, num_reference=100)
    for method in ("nuts", "mala", "rwmh", "pcn"):
        kw = {"metric": "prior"} if method == "pcn" else {}
        post = ji.sample(g.problem, g.y, key=jax.random.key(1), method=method, num_warmup=100,
                         num_samples=50, diagnose=False, **kw)
        out[f"sample_{method}"] = jax.tree.leaves(post.samples)[0]
    post = ji.sample(b.problem, b.y[:2], key=jax.random.key(3), num_warmup=100, num_samples=50,
                     diagnose=False)
    out["sample_default_batch"] = post.samples
    bern = ji.problems.load("bernoulli_glm", batch=2)
    out["map_bernoulli_auto"] = ji.solve_map(bern.problem, bern.y, warn=False).theta
    return {k: np.asarray(jnp.asarray(v)) for k, v in out.items()}


def main(argv):
    if len(argv) != 3 or argv[1] not in ("record", "check"):
        print(__doc__)
        return 2
    now = calls()
    if argv[1] == "record":
        np.savez(argv[2], **now)
        print(f"recorded {len(now)} arrays to {argv[2]}")
        return 0
    old = np.load(argv[2])
    bad = [k for k in old.files if k not in now or old[k].shape != now[k].shape
           or old[k].tobytes() != now[k].tobytes()]
    new = sorted(set(now) - set(old.files))
    print(f"{len(old.files) - len(bad)} of {len(old.files)} arrays bit-identical" + (f"; new: {new}" if new else ""))
    for k in bad:
        print("differs:", k)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
