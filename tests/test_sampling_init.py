"""``ji.sample(init=...)`` with one start per chain, shaped ``(chains, *θ)`` or ``(*batch, chains, *θ)``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinverse as ji

D, CHAINS = 2, 3


@pytest.fixture(scope="module")
def problem():
    return ji.InverseProblem(lambda t: t, ji.priors.Gaussian(jnp.zeros(D), 1.0), ji.likelihoods.Gaussian(1.0))


def test_one_start_per_chain(problem):
    # chains started 40 posterior sds apart: after 1 warmup step and 4 random-walk draws each chain
    # is still next to its own start (a step moves ~1 sd); a bad shape names num_chains
    starts = jnp.array([[-40.0, 0.0], [0.0, 40.0], [40.0, -40.0]])
    opts = dict(num_chains=CHAINS, method="rwmh", num_warmup=1, num_samples=4, jitter=0.0, diagnose=False)
    ys = jnp.zeros((2, D))  # two observations: both calls below run one compiled program
    # (chains, *θ): the same per-chain starts for every observation
    post = ji.sample(problem, ys, key=jax.random.key(0), init=starts, **opts)
    assert post.samples.shape == (2, CHAINS, 4, D)
    assert np.all(np.abs(np.asarray(post.samples) - np.asarray(starts)[None, :, None, :]) < 10)
    # (*batch, chains, *θ): a start per observation and chain
    per_obs = jnp.stack([starts, -starts])
    post = ji.sample(problem, ys, key=jax.random.key(0), init=per_obs, **opts)
    assert np.all(np.abs(np.asarray(post.samples) - np.asarray(per_obs)[:, :, None, :]) < 10)
    with pytest.raises(ValueError, match="num_chains=3"):
        ji.sample(problem, jnp.zeros(D), key=jax.random.key(0), init=jnp.zeros((4, D)), num_chains=CHAINS)


def test_per_chain_starts_are_used_as_given(problem):
    # starts given per chain are not jittered: any jitter gives the same bits as jitter=0, while
    # one start shared by the chains is still spread by the jitter
    opts = dict(num_chains=CHAINS, method="rwmh", num_warmup=1, num_samples=4, diagnose=False)
    starts, y, key = jnp.array([[-4.0, 0.0], [0.0, 4.0], [4.0, -4.0]]), jnp.zeros(D), jax.random.key(1)
    exact = ji.sample(problem, y, key=key, init=starts, jitter=0.0, **opts)
    for jitter in (0.1, 2.0):  # 0.1: the default
        post = ji.sample(problem, y, key=key, init=starts, jitter=jitter, **opts)
        np.testing.assert_array_equal(post.samples, exact.samples)
    one = [ji.sample(problem, y, key=key, init=starts[0], jitter=j, **opts).samples for j in (0.0, 0.1)]
    assert not np.array_equal(one[0], one[1])
