"""Defaults that hold (issue 12, item 4): `ji.solve_map` and `ji.sample` with every default.

The fast tests take a few built-in problems at small sizes, simulate observations from prior
draws (a new user's data, not the benchmark's own y) and check what the defaults promise: every
solve converges, and every posterior passes `ji.sample`'s own checks (R-hat <= 1.01, bulk ESS
>= 100 per chain, no divergences) with the default method, metric, warmup and draw counts. The
full sweep over `ji.problems.names()` is `benchmarks/defaults_sweep.py`, run by the slow test.
"""

from __future__ import annotations

import importlib.util
import pathlib
import warnings

import jax
import numpy as np
import pytest

import jinverse as ji
from jinverse.posterior import ESS_PER_CHAIN, RHAT_LIMIT

SWEEP = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "defaults_sweep.py"


def _sweep():
    spec = importlib.util.spec_from_file_location("defaults_sweep", SWEEP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = [
    ("deconvolution1d", {"n": 32}),
    ("phillips", {"n": 32}),
    # non-Gaussian likelihood (logistic): damped Newton and the adapted diagonal metric
    ("bernoulli_glm", {"reference": False}),
]


@pytest.mark.parametrize("name,options", CASES, ids=[c[0] for c in CASES])
def test_defaults_converge_and_mix(name, options):
    bench = ji.problems.load(name, **options)
    y, _ = _sweep().observations(bench, 4, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a default that fails must not hide behind a warning here
        res = ji.solve_map(bench.problem, y)
        post = ji.sample(bench.problem, y[:2], key=jax.random.key(2))
    assert np.all(np.asarray(res.converged)), res.status
    assert np.all(np.asarray(post.max_rhat) <= RHAT_LIMIT), post.max_rhat
    assert np.all(np.asarray(post.min_ess) >= ESS_PER_CHAIN * post.num_chains), post.min_ess
    assert np.all(np.asarray(post.status) == 0), post.warnings


@pytest.mark.slow
def test_defaults_sweep_every_problem():
    """Every built-in problem at its default options: 16 observations, MAP on all, sampling on
    4; a row may be ``warned`` (the driver said why it could not) but never ``FAIL``."""
    sweep = _sweep()
    assert sweep.main(["--batch", "16", "--sample-obs", "4", "--timeout", "3600"]) == 0


def test_separate_modes_are_named():
    """Chains each stationary in its own mode get the multimodal warning; chains drifting (a
    random walk: not stationary within a chain) get only the R-hat warning."""
    import jax.numpy as jnp

    from jinverse.convergence import _diagnostics
    from jinverse.posterior import status_and_warnings

    rng = np.random.default_rng(0)
    modes = rng.standard_normal((4, 1000, 2)) + np.array([-3.0, -3.0, 3.0, 3.0])[:, None, None]
    walk = np.cumsum(rng.standard_normal((4, 1000, 2)), axis=1)
    for draws, named in ((modes, True), (walk, False)):
        diag = _diagnostics(jnp.asarray(draws), jnp.zeros((4, 1000), bool))
        status, msgs = status_and_warnings(diag, 4)
        assert float(diag["max_rhat"]) > RHAT_LIMIT
        assert any(m.startswith("multimodal posterior") for m in msgs) == named, msgs
