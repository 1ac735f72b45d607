"""How well can I undo a blur, and how sure can I be of each point?

A 1-D piecewise-smooth signal is blurred by a Gaussian kernel and measured with noise
(`ji.problems.load("deconvolution1d")`). We compare three answers: Tikhonov with λ by GCV
(`ji.linear`), the MAP under a smoothness (GMRF) prior and under a total-variation prior (edges
kept), and the posterior under the GMRF prior drawn by NUTS, whose 90% credible band says how far each
point of the answer can be trusted.

Run:  python examples/deconvolution.py        (quick:  JINVERSE_QUICK=1 or --quick)
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jinverse as ji

QUICK = os.environ.get("JINVERSE_QUICK") == "1" or "--quick" in sys.argv
jax.config.update("jax_enable_x64", True)


def rel_error(x, truth):
    return float(jnp.linalg.norm(x - truth) / jnp.linalg.norm(truth))


def main():
    n = 32 if QUICK else 128
    bench = ji.problems.load("deconvolution1d", n=n, noise=0.02, phantom="piecewise_smooth")
    truth, y, blur = bench.theta_true, bench.y, bench.problem.forward
    noise = ji.likelihoods.Gaussian(bench.info["noise_std"])
    print(f"deconvolution1d: n={n}, noise std {bench.info['noise_std']:.3g}")

    tik = ji.linear.tikhonov(bench.info["A"], y, lam="gcv")
    print(f"  Tikhonov, λ by GCV (λ={float(tik.lam):.3g}):  relative error {rel_error(tik.x, truth):.3f}")

    scale = float(jnp.sqrt(jnp.mean(truth**2)))
    smooth = ji.InverseProblem(blur, ji.priors.GMRF((n,), order=1, precision=n / scale**2), noise)
    edges = ji.InverseProblem(blur, ji.priors.TotalVariation((n,), weight=n / scale, smoothing=1e-3 * scale),
                              noise)
    map_smooth = ji.solve_map(smooth, y)
    map_tv = ji.solve_map(edges, y, init=tik.x)
    print(f"  MAP, GMRF smoothness prior:  relative error {rel_error(map_smooth.theta, truth):.3f}")
    print(f"  MAP, total-variation prior:  relative error {rel_error(map_tv.theta, truth):.3f} "
          "(keeps the jumps)")

    post = ji.sample(smooth, y, key=jax.random.key(0), num_chains=2 if QUICK else 4,
                     num_warmup=150 if QUICK else 500, num_samples=150 if QUICK else 1000, init="map")
    lo, hi = post.quantile(jnp.array([0.05, 0.95]))
    inside = float(jnp.mean((truth >= lo) & (truth <= hi)))
    print(f"  posterior mean (GMRF, NUTS): relative error {rel_error(post.mean(), truth):.3f}; "
          f"the 90% band holds {inside:.0%} of the true signal (band width "
          f"{float(jnp.min(hi - lo)):.3f} to {float(jnp.max(hi - lo)):.3f})")
    print(f"  sampler: R-hat {float(post.max_rhat):.3f}, min ESS {float(post.min_ess):.0f}")

    try:
        from jinverse import plots
    except ImportError:
        return
    fig = plots.reconstruction(truth, post.mean(), band=(lo, hi), labels=("truth", "posterior mean"),
                               title="deconvolution: posterior mean and 90% band (GMRF prior)")
    ax = fig.axes[0]
    ax.plot(np.asarray(map_tv.theta), color="#D55E00", lw=1.2, label="MAP, TV prior")
    ax.plot(np.asarray(y), color="gray", lw=0.8, alpha=0.7, label="blurred data")
    ax.legend(frameon=False)
    out = os.path.join(os.environ.get("JINVERSE_OUT", "jinverse_out/examples"), "deconvolution.png")
    print("wrote", plots.save(fig, out))


if __name__ == "__main__":
    main()
