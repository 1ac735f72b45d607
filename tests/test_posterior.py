"""ji.Posterior on synthetic draws: moments, diagnostics against ArviZ, status and warnings."""

import jax.numpy as jnp
import numpy as np
import pytest

from jinverse import Posterior
from jinverse._samplers import Stats
from jinverse.convergence import _diagnostics, diagnose_draws, draw_diagnostics
from jinverse.posterior import SamplingWarning, Status, status_and_warnings, warn


def _posterior(draws, divergent=None):
    """A Posterior around given draws shaped (*batch, chains, draws, *theta)."""
    draws = np.asarray(draws)
    nb = draws.ndim - 3  # θ is a vector
    lead = draws.shape[: nb + 2]
    div = np.zeros(lead, bool) if divergent is None else divergent
    stats = Stats(jnp.full(lead, 0.8), jnp.asarray(div), jnp.full(lead, 7, jnp.int32),
                  jnp.full(lead, 0.1), jnp.full(lead, jnp.nan))
    # the diagnostics ji.sample computes (blackjax's R-hat and bulk ESS; in NumPy for draws on the CPU)
    diag = draw_diagnostics(jnp.asarray(draws), jnp.asarray(div))
    status, msgs = status_and_warnings(diag, lead[nb])
    return Posterior(jnp.asarray(draws), stats, diag["max_rhat"], diag["min_ess"],
                     jnp.asarray(diag["num_divergent"]), jnp.asarray(status), tuple(msgs), "test", 10)


@pytest.fixture(scope="module")
def iid():
    rng = np.random.default_rng(0)
    return rng.normal(loc=[1.0, -2.0], scale=[0.5, 3.0], size=(4, 1000, 2))


def test_moments_match_numpy(iid):
    post = _posterior(iid)
    flat = iid.reshape(-1, 2)
    np.testing.assert_allclose(post.mean(), flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose(post.std(), flat.std(0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(post.quantile(0.9), np.quantile(flat, 0.9, axis=0), rtol=1e-10)
    assert post.quantile(jnp.array([0.1, 0.5])).shape == (2, 2)
    with pytest.raises(ValueError, match="q: got"):
        post.quantile(1.5)


def test_rhat_and_ess_match_arviz(iid):
    az = pytest.importorskip("arviz")
    post = _posterior(iid)
    idata = post.to_arviz()
    np.testing.assert_allclose(post.rhat(), az.rhat(idata)["theta"].values, rtol=1e-6)
    np.testing.assert_allclose(post.ess(), az.ess(idata, method="bulk")["theta"].values, rtol=1e-6)
    np.testing.assert_allclose(post.ess("tail"), az.ess(idata, method="tail")["theta"].values, rtol=1e-6)
    assert "diverging" in idata.sample_stats and idata.posterior["theta"].shape == (4, 1000, 2)
    # iid draws: R-hat ~ 1 and ESS ~ the number of draws
    assert np.all(np.asarray(post.rhat()) < 1.01) and np.all(np.asarray(post.ess()) > 2500)
    assert int(post.status) == 0 and post.warnings == ()


def test_batched_posterior_keeps_batch_axes(iid):
    rng = np.random.default_rng(1)
    draws = np.stack([iid, iid + rng.normal(size=iid.shape)])
    post = _posterior(draws)
    assert post.batch_shape == (2,) and post.num_chains == 4 and post.num_draws == 1000
    assert post.mean().shape == post.rhat().shape == post.ess().shape == (2, 2)
    np.testing.assert_allclose(post[1].mean(), draws[1].reshape(-1, 2).mean(0), rtol=1e-12)
    assert "batch (2,)" in post.summary()
    with pytest.raises(IndexError, match="index: got 2"):  # not clamped to the last element
        post[2]
    with pytest.raises(IndexError, match="index"):
        post[0, 1]
    assert post[-1].samples.shape == (4, 1000, 2)
    with pytest.raises(ValueError, match="post\\[0\\].to_arviz"):
        post.to_arviz()


def test_status_flags_and_warnings(iid):
    stuck = iid.copy()
    stuck[0] += 5.0  # one chain elsewhere: R-hat flags it
    div = np.zeros((4, 1000), bool)
    div[1, 3] = True
    post = _posterior(stuck, divergent=div)
    assert int(post.status) & Status.HIGH_RHAT and int(post.status) & Status.DIVERGENCES
    assert not int(post.status) & Status.NONFINITE
    text = " ".join(post.warnings)
    assert "R-hat above 1.01" in text and "1 divergent" in text
    assert "R-hat above 1.01" in post.summary()
    slow = _posterior(np.cumsum(iid, axis=1) / 30)  # random-walk chains: ESS < 100 per chain
    assert int(slow.status) & Status.LOW_ESS and any("ESS below 100 per chain" in w and "needed" in w for w in slow.warnings)
    bad = iid.copy()
    bad[2, 5, 0] = np.nan
    assert int(_posterior(bad).status) & Status.NONFINITE


def test_summary_table(iid):
    text = _posterior(iid).summary()
    assert "test, 4 chains x 1000 draws (+10 warmup)" in text
    assert "theta[0]" in text and "theta[1]" in text and "no warnings" in text
    mean0 = float(text.split("theta[0]")[1].split()[0])
    assert abs(mean0 - iid[..., 0].mean()) < 1e-3


def test_ess_kind_validated(iid):
    with pytest.raises(ValueError, match="kind"):
        _posterior(iid).ess("median")


def _unchecked(draws, divergent=None):
    """A Posterior as ``ji.sample(..., diagnose=False)`` builds it (same `diagnose_draws` path)."""
    post = _posterior(draws, divergent)
    diag, status, msgs = diagnose_draws(post.samples, post.stats.is_divergent, post.num_chains, False)
    return Posterior(post.samples, post.stats, diag["max_rhat"], diag["min_ess"], diag["num_divergent"],
                     jnp.asarray(status), tuple(msgs), "test", 10)


def test_unchecked_posterior_and_diagnose_afterwards(iid):
    stuck = iid.copy()
    stuck[0] += 5.0  # a high R-hat the unchecked posterior must not claim to have checked
    draws = np.stack([iid, stuck])
    post = _unchecked(draws)
    assert np.all(np.asarray(post.status) == Status.UNCHECKED) and not np.any(post.ok) and not post.checked
    assert np.all(np.isnan(post.max_rhat)) and np.all(np.isnan(post.min_ess))
    assert post.warnings == ("R-hat and ESS not computed (diagnose=False) in 2 of 2 posteriors: convergence "
                             "is unknown; call .diagnose() to compute them",)
    assert "UNCHECKED" in post.summary() and "call .diagnose()" in post.summary()
    assert int(post[1].status) == Status.UNCHECKED and "not computed" in post[1].warnings[0]
    one = post[0].summary()
    assert "theta[0]" in one and "call .diagnose()" in one and " - " in one.split("theta[0]")[1].splitlines()[0]
    with pytest.warns(SamplingWarning, match="R-hat above 1.01 in 1 of 2"):
        done = post.diagnose()
    ref = _posterior(draws)  # diagnosed at construction, as ji.sample does by default
    assert done.checked and done.warnings == ref.warnings
    for f in ("max_rhat", "min_ess", "num_divergent", "status"):
        assert np.array_equal(np.asarray(getattr(done, f)), np.asarray(getattr(ref, f))), f
    st = np.asarray(done.status)
    assert st[1] & Status.HIGH_RHAT and st[0] == 0
    with pytest.warns(SamplingWarning):  # diagnosing again recomputes the same
        again = done.diagnose()
    assert np.array_equal(np.asarray(again.max_rhat), np.asarray(done.max_rhat))


def test_unchecked_still_flags_nonfinite_and_divergences(iid):
    bad = iid.copy()
    bad[2, 5, 0] = np.nan
    div = np.zeros((4, 1000), bool)
    div[1, 3] = True
    post = _unchecked(bad, divergent=div)
    assert int(post.status) == Status.NONFINITE | Status.DIVERGENCES | Status.UNCHECKED
    assert len(post.warnings) == 3 and "non-finite" in post.warnings[0] and "1 divergent" in post.warnings[1]
    with pytest.warns(SamplingWarning) as record:  # warned about: the faults, not the skipped check
        warn(post.warnings)
    assert "non-finite" in str(record[0].message) and "not computed" not in str(record[0].message)
    with pytest.warns(SamplingWarning, match="non-finite") as record:
        assert int(post.diagnose().status) == Status.NONFINITE | Status.DIVERGENCES
    assert record[0].filename == __file__  # points at the caller


def test_bench_merge_keeps_flags_of_chunks(iid):
    """`jinverse bench --chunk` merges per-chunk posteriors: found faults stay found, unchecked
    chunks stay unchecked (not mistaken for non-finite draws)."""
    from jinverse.bench import _merge

    bad = iid.copy()
    bad[2, 5, 0] = np.nan
    checked = _merge("nuts", [_posterior(np.stack([iid, bad])), _posterior(iid[None])])
    assert [int(s) for s in np.asarray(checked.status)] == [0, Status.NONFINITE, 0]
    unchecked = _merge("nuts", [_unchecked(np.stack([iid, bad])), _unchecked(iid[None])])
    assert [int(s) for s in np.asarray(unchecked.status)] == [
        Status.UNCHECKED, Status.UNCHECKED | Status.NONFINITE, Status.UNCHECKED]
    assert not unchecked.checked


def test_concatenate_is_public_and_inverts_slicing(iid):
    """`jinverse.posterior.concatenate` (what `bench` merges chunks with) rejoins slices of a
    batch: the same draws, flags and statistics as the whole."""
    from jinverse.posterior import concatenate

    bad = iid.copy()
    bad[2, 5, 0] = np.nan
    whole = _posterior(np.stack([iid, bad, iid]))
    joined = concatenate([whole[:1], whole[1:]])
    np.testing.assert_array_equal(np.asarray(joined.samples), np.asarray(whole.samples))
    np.testing.assert_array_equal(np.asarray(joined.status), np.asarray(whole.status))
    np.testing.assert_array_equal(np.asarray(joined.max_rhat), np.asarray(whole.max_rhat))
    assert joined.warnings == whole.warnings
    with pytest.raises(TypeError, match="posteriors"):
        concatenate([whole, "not a posterior"])


def test_chains_in_different_modes_flagged_multimodal(iid):
    """Chains each mixing well but whose means lie far apart in within-chain standard deviations
    get `Status.MULTIMODAL` and a warning naming method='smc' and init='modes'; chains that
    drift (not stationary) or that differ by less than `MODE_SEPARATION` sds do not."""
    from jinverse.posterior import MODE_SEPARATION, RHAT_LIMIT

    apart = iid.copy()
    apart[3, :, 0] += 6 * 0.5  # one chain 6 sds away in parameter 0 (3 chains in one mode, 1 in the other)
    post = _posterior(apart)
    assert int(post.status) & Status.MULTIMODAL and int(post.status) & Status.HIGH_RHAT
    text = next(w for w in post.warnings if w.startswith("multimodal posterior"))
    assert "method='smc'" in text and "init='modes'" in text and "different modes" in text
    assert "multimodal posterior" in post.summary()
    # drifting chains: R-hat high, but no chain is stationary on its own
    drift = _posterior(np.cumsum(iid, axis=1) / 30)
    assert int(drift.status) & Status.HIGH_RHAT and not int(drift.status) & Status.MULTIMODAL
    # close chains: means 1 sd apart give R-hat > 1.1 with 1000 draws each, yet they overlap
    close = iid.copy()
    close[3, :, 0] += 1.0 * 0.5
    diag = _diagnostics(jnp.asarray(close), jnp.zeros((4, 1000), bool))
    assert float(diag["max_rhat"]) > 1.1 > RHAT_LIMIT and float(diag["mode_separation"]) < MODE_SEPARATION
    assert not int(_posterior(close).status) & Status.MULTIMODAL
    # slicing a batch keeps the flag and the message
    both = _posterior(np.stack([iid, apart]))
    assert [int(s) & Status.MULTIMODAL for s in np.asarray(both.status)] == [0, Status.MULTIMODAL]
    assert int(both[1].status) & Status.MULTIMODAL and any(w.startswith("multimodal") for w in both[1].warnings)
