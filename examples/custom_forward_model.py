"""How do I bring my own simulation?

Any JAX function of θ is a forward model. Here it is a damped oscillator
x'' + 2ζω x' + ω² x = 0, integrated by a hand-written RK4 loop (`jax.lax.scan`), observed at 40
times with noise. θ is a pytree {"omega", "zeta", "x0"}: frequency and damping are positive
(log-normal priors, sampled in log space automatically), the initial displacement is Gaussian.
`ji.InverseProblem` gives MAP and NUTS for free, gradients by autodiff through the solver.

Run:  python examples/custom_forward_model.py        (quick:  JINVERSE_QUICK=1 or --quick)
"""

import os
import sys

import jax
import jax.numpy as jnp

import jinverse as ji

QUICK = os.environ.get("JINVERSE_QUICK") == "1" or "--quick" in sys.argv
jax.config.update("jax_enable_x64", True)

DT, STEPS_PER_OBS, NUM_OBS = 0.05, 4, 40


def oscillator(theta):
    """Displacement at NUM_OBS times: RK4 on (x, v), STEPS_PER_OBS steps between observations."""
    omega, zeta = theta["omega"], theta["zeta"]

    def f(s):
        x, v = s
        return jnp.stack([v, -2 * zeta * omega * v - omega**2 * x])

    def rk4(s, _):
        k1 = f(s)
        k2 = f(s + DT / 2 * k1)
        k3 = f(s + DT / 2 * k2)
        k4 = f(s + DT * k3)
        return s + DT / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None

    def observe(s, _):
        s = jax.lax.scan(rk4, s, None, length=STEPS_PER_OBS)[0]
        return s, s[0]

    return jax.lax.scan(observe, jnp.stack([theta["x0"], 0.0]), None, length=NUM_OBS)[1]


def main():
    prior = ji.priors.Joint({"omega": ji.priors.LogNormal(jnp.log(2.0), 0.5),
                             "zeta": ji.priors.LogNormal(jnp.log(0.1), 1.0),
                             "x0": ji.priors.Gaussian(0.0, 1.0)})
    problem = ji.InverseProblem(oscillator, prior, ji.likelihoods.Gaussian(0.05))
    truth = {"omega": jnp.asarray(2.5), "zeta": jnp.asarray(0.15), "x0": jnp.asarray(1.2)}
    y = problem.simulate(jax.random.key(1), truth)
    print(f"damped oscillator, {NUM_OBS} noisy displacements; truth "
          + ", ".join(f"{k}={float(v):.3f}" for k, v in truth.items()))

    fit = ji.solve_map(problem, y, num_starts=4, key=jax.random.key(2))
    print("  MAP:  " + ", ".join(f"{k}={float(v):.3f}" for k, v in fit.theta.items())
          + f"   ({fit.messages()})")

    # A frequency fit has many local modes (aliases), far apart in ω: start the chains at the MAP
    # of several starts rather than at prior draws, which would land in different modes.
    post = ji.sample(problem, y, key=jax.random.key(3), num_chains=2 if QUICK else 4,
                     num_warmup=150 if QUICK else 500, num_samples=150 if QUICK else 1000, init=fit.theta)
    mean, sd = post.mean(), post.std()
    print("  posterior (NUTS):")
    for k in truth:
        z = float((truth[k] - mean[k]) / sd[k])
        print(f"    {k:6s} {float(mean[k]):.3f} ± {float(sd[k]):.3f}   truth is {z:+.1f} sd away")
    print(f"  R-hat {float(post.max_rhat):.3f}, min ESS {float(post.min_ess):.0f}")

    try:
        from jinverse import plots
    except ImportError:
        return
    names = ["omega", "zeta", "x0"]
    draws = jnp.stack([post.samples[k] for k in names], -1).reshape(-1, 3)
    fig = plots.pairs(draws, truth=jnp.stack([truth[k] for k in names]), names=names,
                      title="damped oscillator: posterior of (ω, ζ, x0)")
    out = os.path.join(os.environ.get("JINVERSE_OUT", "jinverse_out/examples"), "custom_forward_model.png")
    print("wrote", plots.save(fig, out))


if __name__ == "__main__":
    main()
