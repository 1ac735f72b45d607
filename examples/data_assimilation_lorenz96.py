"""What was the state of a chaotic system, given noisy, partial observations over a window?

Strong-constraint 4D-Var on Lorenz-96 (`ji.problems.load("lorenz96")`): the unknown is the
initial state; the forward model runs RK4 through the window and returns every other component
at each step; the prior is the forecast background N(x_b, I). The MAP is the 4D-Var analysis;
its Laplace approximation gives the analysis error per component, which we check against the
actual error. We also forecast past the window from the background and from the analysis.

Run:  python examples/data_assimilation_lorenz96.py        (quick:  JINVERSE_QUICK=1 or --quick)
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jinverse as ji

QUICK = os.environ.get("JINVERSE_QUICK") == "1" or "--quick" in sys.argv
jax.config.update("jax_enable_x64", True)


def rmse(a, b):
    return float(jnp.sqrt(jnp.mean((a - b) ** 2)))


def main():
    n, window = (8, 5) if QUICK else (40, 10)
    bench = ji.problems.load("lorenz96", n=n, window=window, observed=2, obs_std=0.5, spinup=500)
    truth, x_b = bench.theta_true, bench.info["background"]
    print(f"Lorenz-96, n={n}: observe every 2nd component at {window + 1} steps (std 0.5); "
          f"background error std 1")

    analysis = ji.solve_map(bench.problem, bench.y, optimizer="newton")
    print(f"  background RMSE {rmse(x_b, truth):.3f}  ->  4D-Var analysis RMSE "
          f"{rmse(analysis.theta, truth):.3f}   ({analysis.messages()})")

    approx = ji.laplace(bench.problem, bench.y)
    sd = jnp.sqrt(jnp.diagonal(approx.covariance))
    z = (approx.mode - truth) / sd
    observed = np.zeros(n, bool)
    observed[np.asarray(bench.info["observed"])] = True
    print(f"  Laplace analysis std: observed components {float(jnp.mean(sd[observed])):.3f}, "
          f"unobserved {float(jnp.mean(sd[~observed])):.3f}")
    print(f"  standardised errors (should look like N(0, 1)): mean {float(jnp.mean(z)):+.2f}, "
          f"rms {float(jnp.sqrt(jnp.mean(z**2))):.2f}")

    flow = bench.info["operator"].flow
    lead = 20 if QUICK else 60
    for name, x0 in (("background", x_b), ("analysis", analysis.theta)):
        print(f"  forecast RMSE {lead} steps past the start, from the {name}: "
              f"{rmse(flow(x0, lead), flow(truth, lead)):.3f}")

    try:
        from jinverse import plots
    except ImportError:
        return
    lo, hi = approx.mode - 1.645 * sd, approx.mode + 1.645 * sd
    fig = plots.reconstruction(truth, analysis.theta, band=(lo, hi), labels=("true initial state", "4D-Var analysis"),
                               band_label="90% band (Laplace)", title="Lorenz-96 4D-Var analysis")
    fig.axes[0].plot(np.asarray(x_b), "o", color="gray", ms=3, label="background")
    fig.axes[0].legend(frameon=False)
    out = os.path.join(os.environ.get("JINVERSE_OUT", "jinverse_out/examples"), "lorenz96.png")
    print("wrote", plots.save(fig, out))


if __name__ == "__main__":
    main()
