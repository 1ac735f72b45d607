"""The trained networks are stored on disk and loaded back, not retrained (issue 15 item 5)."""

import time

import equinox as eqx
import jax
import numpy as np
import pytest

from jinverse.problems import trained


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JINVERSE_CACHE", str(tmp_path))
    calls = []
    real = trained._train
    monkeypatch.setattr(trained, "_train", lambda *a, **k: calls.append(1) or real(*a, **k))
    yield tmp_path, calls
    trained.trained_regressor_model.cache_clear()
    trained.trained_classifier_model.cache_clear()


@pytest.mark.parametrize("build, kw", [(trained.trained_regressor_model, {"dim": 2}),
                                       (trained.trained_classifier_model, {"num_classes": 3})])
def test_trained_parameters_cached_on_disk(cache, build, kw):
    tmp_path, calls = cache

    def load(**extra):
        build.cache_clear()  # as a new process would: only the disk cache is left
        t0 = time.perf_counter()
        model, errors = build(width=8, steps=300, **kw, **extra)
        jax.block_until_ready(model)
        return model, errors, time.perf_counter() - t0

    first, errors1, t_first = load()
    assert len(calls) == 1 and len(list((tmp_path / "trained").glob("*.eqx"))) == 1
    second, errors2, t_second = load()
    assert len(calls) == 1, "the second load retrained"
    assert errors2 == errors1
    a, b = (jax.tree.leaves(eqx.filter(m, eqx.is_array)) for m in (first, second))
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and np.array_equal(np.asarray(x), np.asarray(y))  # bit for bit
    assert t_second < t_first / 5, (t_first, t_second)
    load(seed=1)  # an option that changes training: trained anew, stored beside the first
    assert len(calls) == 2 and len(list((tmp_path / "trained").glob("*.eqx"))) == 2


def test_reference_draws_cached_on_disk(cache, monkeypatch):
    import jinverse as ji
    from jinverse.problems import reference as ref

    tmp_path, _ = cache
    calls = []
    real = ref.rejection_from_prior
    monkeypatch.setattr(ref, "rejection_from_prior", lambda *a, **k: calls.append(1) or real(*a, **k))
    load = lambda **kw: ji.problems.load("trained_classifier", width=8, steps=300, num_reference=200, **kw)
    first = load()
    assert len(calls) == 1 and list((tmp_path / "reference").glob("trained_classifier-*.npy"))
    trained.trained_classifier_model.cache_clear()
    second = load()
    assert len(calls) == 1, "the reference draws were drawn again"
    np.testing.assert_array_equal(np.asarray(second.reference["draws"]), np.asarray(first.reference["draws"]))
    load(seed=1)  # new observations: new draws
    assert len(calls) == 2
