"""Which regularisation parameter λ should I use?

Tikhonov regularisation min ‖A x − y‖² + λ²‖x‖² needs a λ. Three rules choose it from the data:
generalised cross-validation (GCV), the corner of the L-curve, and the discrepancy principle
(needs the noise level). On Hansen's `phillips` test problem with several noise draws we
compare each rule's error with the best λ in hindsight (the oracle, which knows the truth).

Run:  python examples/regularization_choice.py        (quick:  JINVERSE_QUICK=1 or --quick)
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jinverse as ji

QUICK = os.environ.get("JINVERSE_QUICK") == "1" or "--quick" in sys.argv
jax.config.update("jax_enable_x64", True)


def main():
    n, draws = (32, 4) if QUICK else (128, 50)
    bench = ji.problems.load("phillips", n=n, noise=0.01, batch=draws)
    A, y, truth = bench.info["A"], bench.y, bench.theta_true
    sigma = bench.info["noise_std"]
    print(f"phillips, n={n}, relative noise 1%, {draws} noise draws")

    def error(x):
        return np.asarray(jnp.linalg.norm(x - truth, axis=-1) / jnp.linalg.norm(truth, axis=-1))

    # the oracle: the best λ on a fine grid, per noise draw (every (draw, λ) pair in one call)
    grid = jnp.logspace(-5, 1, 61)
    sweep = ji.linear.tikhonov(A, jnp.repeat(y[:, None], grid.size, 1), lam=jnp.tile(grid, (draws, 1)))
    sweep_err = np.asarray(jnp.linalg.norm(sweep.x - truth[:, None], axis=-1) / jnp.linalg.norm(truth[0]))
    oracle = sweep_err.min(1)

    results = {}
    for rule in ("gcv", "lcurve", "discrepancy"):
        res = ji.linear.tikhonov(A, y, lam=rule, noise_std=sigma)
        results[rule] = res
        ratio = error(res.x) / oracle
        print(f"  {rule:12s} median λ {float(jnp.median(res.lam)):.2e}: error / oracle error "
              f"median {np.median(ratio):.2f}, worst {ratio.max():.2f}")
    print(f"  oracle       median λ {float(np.median(grid[sweep_err.argmin(1)])):.2e}: "
          f"median relative error {np.median(oracle):.3f}")

    try:
        from jinverse import plots
    except ImportError:
        return
    r, s = np.asarray(sweep.residual_norm[0]), np.asarray(sweep.solution_norm[0])
    marks = {f"{k} (λ={float(v.lam[0]):.1e})": (float(v.residual_norm[0]), float(v.solution_norm[0]))
             for k, v in results.items() if k != "lcurve"}
    lc = results["lcurve"]
    fig = plots.lcurve(r, s, lams=np.asarray(grid), corner=(float(lc.residual_norm[0]), float(lc.solution_norm[0])),
                       chosen_label=f"L-curve corner (λ={float(lc.lam[0]):.1e})", marks=marks,
                       title="phillips: L-curve of the first noise draw")
    out = os.path.join(os.environ.get("JINVERSE_OUT", "jinverse_out/examples"), "regularization_choice.png")
    print("wrote", plots.save(fig, out))


if __name__ == "__main__":
    main()
