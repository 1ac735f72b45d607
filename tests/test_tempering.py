"""Replica exchange (`ji.sample(..., tempering=...)`, `jinverse.tempering`): mode weights against
quadrature, the swap move against its formula, reference draws (slow), and refusals."""

import warnings

import blackjax.diagnostics as bd
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from blackjax.mcmc.hmc import HMCState
from scipy import integrate

import jinverse as ji
from jinverse import tempering as tempering_lib
from jinverse.posterior import SamplingWarning

# y = θ² + noise, prior N(0.5, 1): modes at ±1, ~10 posterior sd apart (sd ≈ σ / 2 = 0.1), of
# mass 0.726 / 0.274; the likelihood at θ = 0 is exp(-12.5) of its peak
SIGMA, Y, M0 = 0.2, 1.0, 0.5


@pytest.fixture(scope="module")
def two_modes():
    problem = ji.InverseProblem(lambda t: t**2, ji.priors.Gaussian(jnp.array([M0]), 1.0),
                                ji.likelihoods.Gaussian(SIGMA))

    def density(t):
        return np.exp(-0.5 * (t - M0) ** 2 - 0.5 * ((Y - t**2) / SIGMA) ** 2)

    pos = integrate.quad(density, 0, 5, points=[1.0])[0]
    neg = integrate.quad(density, -5, 0, points=[-1.0])[0]
    return problem, pos / (pos + neg)


def test_mode_weights_right_where_plain_sampling_is_stuck(two_modes):
    problem, exact = two_modes
    kw = dict(key=jax.random.key(0), init=jnp.array([1.0]), jitter=0.05, num_warmup=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        plain = ji.sample(problem, jnp.array([Y]), num_samples=200, **kw)
    assert float(np.mean(np.asarray(plain.samples) > 0)) > 0.99  # every chain started in + stays there
    post = ji.sample(problem, jnp.array([Y]), tempering=8, num_samples=1000, **kw)
    check_mode_share(post, exact)
    t = post.tempering
    assert t.betas.shape == (8,) and t.swap_acceptance.shape == (7,)
    np.testing.assert_allclose(t.betas, [*np.geomspace(1, tempering_lib.BETA_MIN, 7), 0.0])
    assert np.all((np.asarray(t.swap_acceptance) > 0.1) & (np.asarray(t.swap_acceptance) <= 1))
    assert "replica exchange: 8 temperatures" in post.summary()


def check_mode_share(post, exact):
    positive = (np.asarray(post.samples)[..., 0] > 0).astype(float)  # (chains, draws)
    frac = positive.mean()
    # Monte-Carlo error of the mode share from the indicator's own effective sample size
    ess = float(bd.effective_sample_size(jnp.asarray(positive), chain_axis=0, sample_axis=1))
    assert 100 < ess and abs(frac - exact) < 4 * np.sqrt(exact * (1 - exact) / ess), (frac, exact, ess)
    assert int(post.status) == 0


def test_adapted_ladder_keeps_the_mode_weights_and_evens_the_swaps(two_modes):
    # The ladder tuned in the warmup, then fixed: the draws still weigh the modes as quadrature
    # does, and the swap acceptance is more even than the geometric ladder's on this problem
    # (0.61 ... 0.98 with tempering=8, seed 0).
    problem, exact = two_modes
    post = ji.sample(problem, jnp.array([Y]), key=jax.random.key(0), init=jnp.array([1.0]), jitter=0.05,
                     num_warmup=400, num_samples=1000, tempering="adaptive")
    check_mode_share(post, exact)
    betas, acc = np.asarray(post.tempering.betas), np.asarray(post.tempering.swap_acceptance)
    assert betas.shape == (tempering_lib.ADAPTIVE_K,) and betas[0] == 1 and betas[-1] == 0
    assert np.all(np.diff(betas) < 0) and not np.allclose(betas, tempering_lib.ladder(tempering_lib.ADAPTIVE_K))
    # each pair's rate is known to ~0.02 (1000 draws x 4 chains, every other draw); the tuning's
    # own estimates (4 rounds of 50 draws) to ~0.05: pairs within ±0.15 of their mean
    assert np.all(np.abs(acc - acc.mean()) < 0.15), acc


def test_swap_move_matches_its_formula():
    # ℓ(x) = -x²/2 per coordinate sum, a(x) = -|x|: a swap between β_k and β_{k+1} is accepted
    # with probability min(1, exp((β_k - β_{k+1}) (ℓ(x_{k+1}) - ℓ(x_k))))
    def parts(x):
        return -jnp.sum(jnp.abs(x)), -0.5 * jnp.sum(x**2)

    betas = jnp.array([1.0, 0.5, 0.2, 0.0])
    x = jnp.array([[0.1, 0.2], [1.0, -1.0], [3.0, 0.0], [0.5, 0.5]])
    lds = jax.vmap(lambda xi, b: jax.value_and_grad(tempering_lib.tempered(parts, b))(xi))(x, betas)
    states = HMCState(x, *lds)
    ell = jax.vmap(parts)(x)[1]
    want = np.minimum(1, np.exp((betas[:-1] - betas[1:]) * (ell[1:] - ell[:-1])))
    accepted = {0: 0, 1: 0}
    for i in range(2):  # round 0 proposes pairs (0, 1), (2, 3); round 1 the pair (1, 2)
        tried_want = np.arange(3) % 2 == i
        for s in range(200):
            new, prob, tried = tempering_lib.swap(jax.random.key(s), states, parts, betas, i, 1)
            np.testing.assert_array_equal(np.asarray(tried) > 0, tried_want)
            np.testing.assert_allclose(prob, want, rtol=1e-12)
            # each replica's log-density and gradient are its own β's at the position it now holds
            ld, grad = jax.vmap(lambda xi, b: jax.value_and_grad(tempering_lib.tempered(parts, b))(xi))(
                new.position, betas)
            np.testing.assert_allclose(new.logdensity, ld, rtol=1e-12)
            np.testing.assert_allclose(new.logdensity_grad, grad, rtol=1e-12)
            assert sorted(map(tuple, np.asarray(new.position).tolist())) == sorted(map(tuple, x.tolist()))
            accepted[i] += not np.array_equal(np.asarray(new.position[1]), np.asarray(x[1]))
        # replica 1 moved: the swap (0, 1) in round 0, (1, 2) in round 1
        p = want[0] if i == 0 else want[1]
        assert abs(accepted[i] / 200 - p) < 4 * np.sqrt(p * (1 - p) / 200) + 1e-9
    # not a swap round (every 2 draws, draw 1): nothing proposed
    _, _, tried = tempering_lib.swap(jax.random.key(0), states, parts, betas, 1, 2)
    assert not np.any(np.asarray(tried))


def test_equalise_is_exact_for_a_barrier_linear_in_log_beta():
    # If the rejection of a pair is c·log(β_k / β_{k+1}) (a communication barrier Λ(β) = c·log(1/β),
    # that of a Gaussian likelihood in many dimensions), one update gives the geometric ladder:
    # equal rejection in every pair. From any start, ends kept.
    start = jnp.array([1.0, 0.9, 0.5, 0.45, 0.02, 0.01])
    c = 0.1
    rejection = c * jnp.log(start[:-1] / start[1:])
    new = tempering_lib.equalise(start, 1.0 - rejection)
    np.testing.assert_allclose(new, np.geomspace(1.0, 0.01, 6), rtol=1e-12)
    # already equal rejections: the ladder stays where it is (a fixed point), also with a last β = 0
    ladder = jnp.asarray(tempering_lib.ladder(8))
    np.testing.assert_allclose(tempering_lib.equalise(ladder, jnp.full(7, 0.6)), ladder, rtol=1e-12)
    # a pair rejecting more gets its βs closer together; the ladder stays strictly decreasing
    acc = jnp.array([0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.06])  # inverse_kinematics's last pair (RESULTS)
    moved = np.asarray(tempering_lib.equalise(ladder, acc))
    assert moved[0] == 1 and moved[-1] == 0 and np.all(np.diff(moved) < 0)
    assert moved[-2] < ladder[-2] and np.all(moved[1:-1] < np.asarray(ladder)[1:-1])
    # unseen pairs (NaN) count as rejecting everything, and give no NaN
    assert np.all(np.isfinite(tempering_lib.equalise(ladder, acc.at[3].set(jnp.nan))))


def test_batch_ladder_and_stats(two_modes, tmp_path):
    problem, _ = two_modes
    ys = jnp.array([[1.0], [0.8]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        post = ji.sample(problem, ys, key=jax.random.key(1), tempering=(1.0, 0.3, 0.0), swap_every=2,
                         num_chains=2, num_warmup=100, num_samples=100)
    assert post.samples.shape == (2, 2, 100, 1)
    np.testing.assert_allclose(post.tempering.betas, [[1.0, 0.3, 0.0]] * 2)
    assert post.tempering.swap_acceptance.shape == (2, 2)
    assert np.all(np.isfinite(np.asarray(post.tempering.swap_acceptance)))
    one = post[1]
    np.testing.assert_allclose(one.tempering.betas, [1.0, 0.3, 0.0])
    assert "replica exchange: 3 temperatures" in post.summary()
    # saved and loaded with the ladder and swap rates, in both formats
    for suffix in (".npz", ".nc"):
        loaded = ji.load_result(ji.save_result(post, tmp_path / f"pt{suffix}")).result
        for field in ("betas", "swap_acceptance"):
            np.testing.assert_array_equal(getattr(loaded.tempering, field), getattr(post.tempering, field))
        np.testing.assert_array_equal(loaded.samples, post.samples)
    # a file without them (written before they were saved) loads with tempering None
    with np.load(tmp_path / "pt.npz") as npz:
        older = {k: npz[k] for k in npz.files if not k.startswith("tempering.")}
    np.savez(tmp_path / "pt.npz", **older)
    assert ji.load_result(tmp_path / "pt.npz").result.tempering is None


@pytest.mark.slow
def test_chunked_draws_equal_draws_at_once(two_modes):
    # progress=True draws in chunks from the warmed-up states (the swap rounds follow the draw
    # index): the same draws and swap rates, bit for bit
    problem, _ = two_modes
    ys = jnp.array([[1.0], [0.8]])
    kw = dict(key=jax.random.key(1), tempering=(1.0, 0.3, 0.0), swap_every=2, num_chains=2, num_warmup=100,
              num_samples=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        post = ji.sample(problem, ys, **kw)
        chunked = ji.sample(problem, ys, progress=True, **kw)
    np.testing.assert_array_equal(chunked.samples, post.samples)
    np.testing.assert_array_equal(chunked.tempering.swap_acceptance, post.tempering.swap_acceptance)


def test_refusals(two_modes):
    problem, _ = two_modes
    y = jnp.array([Y])
    key = jax.random.key(0)
    bad = [(dict(tempering=1), ValueError, "at least 2"), (dict(tempering=(0.5, 0.1)), ValueError, "starting at 1"),
           (dict(tempering=(1.0, 0.5, 0.7)), ValueError, "decreasing"),
           (dict(tempering=(1.0, -0.1)), ValueError, "in \\[0, 1\\]"), (dict(tempering=True), TypeError, "tempering"),
           (dict(tempering="hot"), TypeError, "tempering"), (dict(tempering=4, swap_every=0), ValueError, "swap_every"),
           (dict(tempering=4, method="mclmc"), ValueError, "tempering: given with method 'mclmc'"),
           (dict(tempering=4, method="smc"), ValueError, "tempering: given with method='smc'"),
           (dict(tempering="adaptiv"), TypeError, "tempering: got 'adaptiv'"),
           (dict(adapt_ladder=True), ValueError, "adapt_ladder: given without tempering"),
           (dict(tempering=4, adapt_ladder=1), TypeError, "adapt_ladder: got 1")]
    for kw, error, match in bad:
        with pytest.raises(error, match=match):
            ji.sample(problem, y, key=key, **kw)


@pytest.mark.slow
def test_two_moons_c2st():
    bench = ji.problems.load("two_moons")
    post = ji.sample(bench.problem, bench.y, key=jax.random.key(0), tempering=8, num_warmup=500,
                     num_samples=1000)
    score = float(ji.problems.evaluate(bench, post, metric="c2st")["value"])
    # 4000 draws per class: C2ST scatters by ~0.01 around 0.5; plain NUTS gets ~0.8 (issue 13)
    assert score < 0.55, score
