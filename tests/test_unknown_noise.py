"""A linear model with an unknown noise variance (issue 14): MAP and NUTS against the closed form.

θ = {"beta": β, "var": v} with a flat prior on β and v ~ InverseGamma(a, b); y = X β + N(0, v I).
Then the joint mode is (β̂, (b + RSS/2) / (n/2 + a + 1)) with β̂ the least-squares fit, and the
marginal posterior of v is InverseGamma(a + (n - p)/2, b + RSS/2), that of β has mean β̂ and
covariance E[v] (XᵀX)⁻¹.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st

import jinverse as ji

N, P, A, B, SIGMA = 50, 3, 2.0, 1.0, 0.5


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(14)
    X = np.column_stack([np.ones(N), rng.normal(size=(N, P - 1))])
    y = X @ np.array([1.0, -2.0, 0.5]) + SIGMA * rng.normal(size=N)
    forward, lik = ji.likelihoods.bind(lambda t: jnp.asarray(X) @ t["beta"],
                                       ji.likelihoods.Gaussian(std=lambda t: jnp.sqrt(t["var"])))
    prior = ji.priors.Joint({"beta": ji.priors.Flat((P,)), "var": ji.priors.InverseGamma(A, B)})
    beta_hat, rss = np.linalg.lstsq(X, y, rcond=None)[:2]
    return ji.InverseProblem(forward, prior, lik), X, y, beta_hat, float(rss[0])


def test_map_is_the_closed_form_mode(model):
    problem, X, y, beta_hat, rss = model
    res = ji.solve_map(problem, y, tol=1e-10)
    assert bool(res.converged)
    v_mode = (B + rss / 2) / (N / 2 + A + 1)
    assert np.allclose(res.theta["beta"], beta_hat, rtol=1e-6, atol=1e-8)
    assert np.isclose(res.theta["var"], v_mode, rtol=1e-6)
    # the density is what scipy says it is (the prior on β is flat: log p = 0)
    ref = st.norm.logpdf(y, X @ beta_hat, np.sqrt(v_mode)).sum() + st.invgamma.logpdf(v_mode, A, scale=B)
    assert np.isclose(res.log_posterior, ref, rtol=1e-10)


def test_sampling_without_a_start_is_refused(model):
    problem, X, y, beta_hat, rss = model
    with pytest.raises(ValueError, match="improper.*init"):  # a flat prior has no draws to start from
        ji.sample(problem, y, key=jax.random.key(1), num_warmup=10, num_samples=10)


@pytest.mark.slow  # ~25 s on 2 cores, nearly all of it compiling NUTS's warmup
def test_nuts_recovers_the_noise_variance(model):
    problem, X, y, beta_hat, rss = model
    start = {"beta": jnp.zeros(P), "var": jnp.array(1.0)}
    post = ji.sample(problem, y, key=jax.random.key(1), init=start, num_chains=4, num_warmup=300,
                     num_samples=500)
    a_post, b_post = A + (N - P) / 2, B + rss / 2
    exact = st.invgamma(a_post, scale=b_post)
    v = np.asarray(post.samples["var"]).ravel()
    ess = float(post.ess()["var"])
    assert ess > 500
    # mean within 4 Monte-Carlo standard errors; sd within 4 standard errors of a sample sd
    # (for a kurtosis k the relative sd of a sample sd is sqrt((k - 1) / (4 ESS)))
    assert abs(v.mean() - exact.mean()) < 4 * exact.std() / np.sqrt(ess)
    kurt = exact.stats(moments="k") + 3
    assert abs(v.std() / exact.std() - 1) < 4 * np.sqrt((kurt - 1) / (4 * ess))
    beta = np.asarray(post.samples["beta"]).reshape(-1, P)
    beta_sd = np.sqrt(exact.mean() * np.diag(np.linalg.inv(X.T @ X)))
    ess_b = np.asarray(post.ess()["beta"])
    assert np.all(np.abs(beta.mean(0) - beta_hat) < 4 * beta_sd / np.sqrt(ess_b))
    # the simulated σ is inside the posterior's central 99.9%
    assert exact.ppf(5e-4) < SIGMA**2 < exact.ppf(1 - 5e-4)
