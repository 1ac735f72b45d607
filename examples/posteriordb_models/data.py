"""Data for the eight posteriordb models (`models.py`).

Real data where it is public and short:

- eight schools (Rubin 1981; Gelman et al., *Bayesian Data Analysis*, sec. 5.5): the estimated
  coaching effects ``y`` and their standard errors ``sigma``.
- lynx-hare: Hudson's Bay Company pelts (thousands) 1900-1920, as in Carpenter's Stan case study
  "Predator-Prey Population Dynamics: the Lotka-Volterra model in Stan" (2018) and posteriordb's
  ``hudson_lynx_hare``: ``y_init`` is 1900 (hare, lynx), ``y`` 1901-1920 at ``ts = 1..20``.
- GP regression and GP Poisson regression: stan-dev/stat_comp_benchmarks ``gp_regr`` /
  ``gp_pois_regr`` (posteriordb's ``gp_pois_regr`` data), 11 points at x = -10, -8, ..., 10.

Simulated from the model itself with a fixed seed, in posteriordb's shapes (its data files are
not reachable offline): kidiq (434 children, ``mom_hs`` 0/1 and ``mom_iq``), AR(5) (T = 200),
GARCH(1,1) (T = 200, ``sigma1 = 0.5``) and mesquite (46 plants, six covariates and ``group``).
The parameter values used are near posteriordb's reference posterior means where we know them.
"""

from __future__ import annotations

import numpy as np

EIGHT_SCHOOLS = {"y": np.array([28.0, 8, -3, 7, -1, 1, 18, 12]),
                 "sigma": np.array([15.0, 10, 16, 11, 9, 11, 10, 18])}

HARE = [30, 47.2, 70.2, 77.4, 36.3, 20.6, 18.1, 21.4, 22, 25.4, 27.1, 40.3, 57, 76.6, 52.3, 19.5, 11.2, 7.6,
        14.6, 16.2, 24.7]
LYNX = [4, 6.1, 9.8, 35.2, 59.4, 41.7, 19, 13, 8.3, 9.1, 7.4, 8, 12.3, 19.5, 45.7, 51.1, 29.7, 15.8, 9.7,
        10.1, 8.6]
# rows: 1900 (y_init), then 1901..1920; columns: hare (prey), lynx (predator)
LYNX_HARE = {"y": np.column_stack([HARE, LYNX]).astype(float), "ts": np.arange(1.0, 21.0)}

GP_X = np.arange(-10.0, 11.0, 2.0)
GP_REGR = {"x": GP_X, "y": np.array([4.75906, 1.59423, 2.99548, 5.27501, 1.66472, 2.24347, 2.8914, 4.08681,
                                     4.60588, 0.802364, 3.92136])}
GP_POIS_REGR = {"x": GP_X, "k": np.array([40.0, 37, 29, 12, 4, 3, 9, 19, 77, 82, 33])}


def kidiq(seed: int = 14) -> dict:
    """434 children: kid_score ~ N(26 + 6 mom_hs + 0.56 mom_iq, 18²)."""
    rng = np.random.default_rng(seed)
    mom_hs = (rng.uniform(size=434) < 0.79).astype(float)
    mom_iq = rng.normal(100.0, 15.0, 434)
    kid_score = 26.0 + 6.0 * mom_hs + 0.56 * mom_iq + rng.normal(0.0, 18.0, 434)
    return {"mom_hs": mom_hs, "mom_iq": mom_iq, "kid_score": kid_score}


def ar_k(seed: int = 14, T: int = 200) -> dict:
    """AR(5): y_t = 0.2 + Σ β_k y_{t-k} + N(0, 0.5²), after a burn-in of 100 steps."""
    rng = np.random.default_rng(seed)
    beta = np.array([0.5, -0.2, 0.15, 0.05, -0.1])
    y = np.zeros(T + 100)
    for t in range(5, T + 100):
        y[t] = 0.2 + beta @ y[t - 5:t][::-1] + rng.normal(0.0, 0.5)
    return {"K": 5, "y": y[100:]}


def garch(seed: int = 14, T: int = 200) -> dict:
    """GARCH(1,1): σ_t² = α₀ + α₁ (y_{t-1} - μ)² + β₁ σ_{t-1}², y_t ~ N(μ, σ_t²), σ_1 = 0.5."""
    rng = np.random.default_rng(seed)
    mu, a0, a1, b1, sigma1 = 5.0, 0.5, 0.4, 0.4, 0.5
    y, s = np.zeros(T), sigma1
    for t in range(T):
        if t:
            s = np.sqrt(a0 + a1 * (y[t - 1] - mu) ** 2 + b1 * s**2)
        y[t] = rng.normal(mu, s)
    return {"y": y, "sigma1": sigma1}


def mesquite(seed: int = 14) -> dict:
    """46 plants (26 in group 0, 20 in group 1): log weight linear in the log sizes, σ = 0.27."""
    rng = np.random.default_rng(seed)
    diam1 = np.exp(rng.normal(0.2, 0.6, 46))
    diam2 = diam1 * np.exp(rng.normal(-0.2, 0.3, 46))
    canopy_height = np.exp(rng.normal(0.0, 0.4, 46))
    total_height = canopy_height * np.exp(rng.normal(0.3, 0.2, 46))
    density = rng.integers(1, 10, 46).astype(float)
    group = np.repeat([0.0, 1.0], [26, 20])
    X = np.column_stack([np.ones(46), np.log(diam1), np.log(diam2), np.log(canopy_height), np.log(total_height),
                         np.log(density), group])
    beta = np.array([5.35, 0.39, 1.15, 0.37, 0.39, 0.11, 0.58])
    weight = np.exp(X @ beta + rng.normal(0.0, 0.27, 46))
    return {"X": X, "weight": weight}
