"""The method and suite names the CLI's ``--help`` shows, kept here so that ``--help`` needs only
click (importing `jinverse.bench` imports JAX). tests/test_cli_startup.py checks that they equal
`jinverse.bench`'s tables."""

POINT_METHODS = {
    "map": "MAP by ji.solve_map's default optimiser (chosen by the problem's structure)",
    "newton": "MAP by damped Newton with the dense Hessian (ji.solve_map(optimizer='newton'))",
    "laplace": "Gaussian at the mode, inverse-Hessian covariance (ji.laplace)",
    "tikhonov-gcv": "Tikhonov, lambda by generalised cross-validation (ji.linear; linear problems)",
    "tikhonov-lcurve": "Tikhonov, lambda at the L-curve corner (ji.linear; linear problems)",
    "tikhonov-discrepancy": "Tikhonov, lambda by the discrepancy principle (ji.linear; linear problems)",
}
SAMPLE_METHODS = {
    "nuts": "No-U-Turn sampler, Stan's window adaptation",
    "hmc": "HMC, 16 leapfrog steps, window adaptation",
    "mala": "Metropolis-adjusted Langevin, dual-averaged step",
    "rwmh": "random-walk Metropolis, tuned diagonal proposal",
    "mclmc": "microcanonical Langevin (unadjusted; >= 2 unknowns; a draw per decoherence length)",
    "chees": "ChEES-adapted jittered HMC across chains",
    "smc": "adaptive tempered SMC from prior to posterior (weighs separate modes; log evidence)",
}
SUITE_NAMES = ("quick", "full")

#: the commands a running `jinverse server` runs (the others, and --help, run in the calling process)
SERVED_COMMANDS = ("solve", "sample", "bench", "demo")
