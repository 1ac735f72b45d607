"""One status convention (issue 17): every public result has ``status`` codes from the one enum
family of `jinverse.status` and an ``ok`` mask equal to ``status == OK``; the older names stay
aliases, their values unchanged, and result files written before load."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinverse as ji
from jinverse import proximal
from jinverse._samplers import Stats
from jinverse.status import OK, MAPStatus, SamplingStatus, StatusFamily, approximation_status, finite_status

DATA = pathlib.Path(__file__).parent / "data" / "results_v1"


@pytest.fixture(scope="module")
def small():
    return ji.problems.load("phillips", n=8, batch=3)


def _check(result, family):
    status, ok = np.asarray(result.status), np.asarray(result.ok)
    assert ok.dtype == bool and ok.shape == status.shape, type(result).__name__
    np.testing.assert_array_equal(ok, status == OK)
    np.testing.assert_array_equal(ok, np.asarray(family.ok(status)))
    for code in np.unique(status):  # every code is a member (or, for flags, a set of members) of the family
        assert int(family(int(code))) == int(code)
    return status


def test_every_result_type_has_status_and_ok_with_one_meaning(small):
    p, y = small.problem, small.y
    short = ji.solve_map(p, y, optimizer="lbfgs", max_steps=2, warn=False)  # stopped early: not ok
    assert list(_check(short, MAPStatus)) == [MAPStatus.MAX_STEPS] * 3
    _check(ji.solve_map(p, y, warn=False), MAPStatus)
    _check(ji.solve_map(p, y, num_starts=2, key=jax.random.key(0), warn=False).starts, MAPStatus)
    _check(ji.laplace(p, y), MAPStatus)
    _check(ji.laplace(p, y, rank=2, key=jax.random.key(1)), MAPStatus)
    _check(ji.laplace_evidence(p, y), MAPStatus)
    A = small.info["A"]
    _check(ji.linear.tikhonov(A, y, lam=1e-3), MAPStatus)
    _check(ji.linear.tsvd(A, y, k=3), MAPStatus)
    f = lambda x: 0.5 * jnp.sum((x - 1.0) ** 2)  # noqa: E731
    for steps, code in ((1, MAPStatus.MAX_STEPS), (500, MAPStatus.OK)):
        out = proximal.fista(f, lambda x: 0.0, lambda v, t: v, jnp.zeros(3), step=0.5, max_steps=steps)
        assert int(_check(out, MAPStatus)) == code
    mixture = ji.ModeMixture(theta=jnp.zeros((2, 1)), mean=jnp.zeros((2, 1)), covariance=jnp.ones((2, 1, 1)),
                             log_evidence=jnp.array([0.0, -jnp.inf]), weights=jnp.array([1.0, 0.0]),
                             ok=jnp.array([True, False]), problem=p)
    assert list(_check(mixture, MAPStatus)) == [OK, MAPStatus.NOT_FOUND]
    flags = jnp.array([0, SamplingStatus.NONFINITE | SamplingStatus.DIVERGENCES, SamplingStatus.UNCHECKED])
    shape = (3, 2, 4)
    stats = Stats(*(jnp.zeros(shape) for _ in Stats._fields))
    post = ji.Posterior(samples=jnp.zeros((*shape, 2)), stats=stats, max_rhat=jnp.ones(3), min_ess=jnp.ones(3),
                        num_divergent=jnp.zeros(3, int), status=flags, warnings=(), method="nuts", num_warmup=0)
    assert list(_check(post, SamplingStatus)) == [int(f) for f in flags]


def test_status_of_a_result_built_at_a_mode():
    """``ok`` where the search converged and the curvature is positive definite; the search's own
    code where it failed; ``NOT_POSITIVE_DEFINITE`` where only the curvature failed."""
    search = np.array([0, MAPStatus.MAX_STEPS, 0, MAPStatus.NONFINITE])
    ok = np.array([True, False, False, False])
    expected = [OK, MAPStatus.MAX_STEPS, MAPStatus.NOT_POSITIVE_DEFINITE, MAPStatus.NONFINITE]
    assert list(approximation_status(search, ok)) == expected
    assert list(np.asarray(approximation_status(jnp.asarray(search), jnp.asarray(ok)))) == expected
    x = np.array([[1.0, 2.0], [np.nan, 1.0]])
    assert list(finite_status(x, 1)) == [OK, MAPStatus.NONFINITE]


def test_one_family_and_the_old_names_as_aliases():
    assert issubclass(MAPStatus, StatusFamily) and issubclass(SamplingStatus, StatusFamily)
    # old import paths, same classes
    assert ji.Status is ji.MAPStatus is MAPStatus
    from jinverse import map as map_module
    from jinverse import posterior, run_status

    assert map_module.Status is MAPStatus
    assert posterior.Status is run_status.Status is ji.SamplingStatus is SamplingStatus
    # values unchanged (stored in result files and in the bit-identical baseline)
    assert [int(MAPStatus[n]) for n in ("CONVERGED", "MAX_STEPS", "NONFINITE", "STALLED")] == [0, 1, 2, 3]
    assert [int(SamplingStatus[n]) for n in ("HIGH_RHAT", "LOW_ESS", "DIVERGENCES", "NONFINITE", "UNCHECKED",
                                             "METRIC_FALLBACK", "TEMPERING_INCOMPLETE", "MULTIMODAL")] == [
        1, 2, 4, 8, 16, 32, 64, 128]
    # shared names for shared meanings
    assert MAPStatus.OK == SamplingStatus.OK == OK == 0 and MAPStatus.OK is MAPStatus.CONVERGED
    assert MAPStatus(0).name == "CONVERGED"  # (status_counts and old reports read this name)
    assert "non-finite" in MAPStatus.NONFINITE.describe() and "non-finite" in SamplingStatus.NONFINITE.describe()
    assert SamplingStatus(9).describe() == "R-hat too high + non-finite draws"
    # MAPResult: ``converged`` is ``ok``, also as a keyword when building one
    z = jnp.zeros(2)
    r = ji.MAPResult(jnp.zeros((2, 1)), z, z, z.astype(int), converged=jnp.array([True, False]),
                     status=jnp.array([0, 1]))
    assert r.converged is r.ok and list(np.asarray(r.ok)) == [True, False]
    with pytest.raises(TypeError, match="ok"):
        ji.MAPResult(jnp.zeros((2, 1)), z, z, z.astype(int), status=jnp.array([0, 1]))


def test_result_files_written_before_the_status_family_load():
    """Files written by jinverse e2f0a47 (before `jinverse.status`; tests/data/results_v1)."""
    old = ji.load_result(DATA / "map.npz")
    assert list(np.asarray(old.status)) == [0, 1, 2]
    assert list(np.asarray(old.ok)) == list(np.asarray(old.converged)) == [True, False, False]
    assert [MAPStatus(int(c)).name for c in old.status] == ["CONVERGED", "MAX_STEPS", "NONFINITE"]
    lap = ji.load_result(DATA / "laplace.npz")  # no status stored: OK where ok, else NOT_FOUND
    assert list(np.asarray(lap.ok)) == [True, False]
    assert list(np.asarray(lap.status)) == [OK, MAPStatus.NOT_FOUND]


def test_laplace_status_round_trips(tmp_path, small):
    approx = ji.laplace(small.problem, small.y)
    path = ji.save_result(approx, tmp_path / "lap.npz", benchmark=small)
    back = ji.load_result(path)
    np.testing.assert_array_equal(np.asarray(back.status), np.asarray(approx.status))
