"""R-hat and bulk ESS on the host (`jinverse._host_diagnostics`) against blackjax's estimators
(the JAX path, `jinverse.convergence._diagnostics`) and ArviZ: the same values to rounding."""

import blackjax.diagnostics as bd
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jinverse import _host_diagnostics as host
from jinverse.convergence import _diagnostics, draw_diagnostics


def _ar1(rng, shape, rho):
    """AR(1) chains along axis -2 of ``shape`` ``(..., draws, d)``: autocorrelated like MCMC output."""
    noise = rng.standard_normal(shape)
    x = np.empty(shape)
    x[..., 0, :] = noise[..., 0, :]
    for t in range(1, shape[-2]):
        x[..., t, :] = rho * x[..., t - 1, :] + np.sqrt(1 - rho**2) * noise[..., t, :]
    return x


def _cases():
    rng = np.random.default_rng(0)
    fast = _ar1(rng, (4, 400, 3), 0.3)
    slow = _ar1(rng, (4, 101, 3), 0.97)  # odd draws; Geyer's sequence runs long
    shifted = fast + np.array([0.0, 0.0, 0.0, 3.0])[:, None, None]  # one chain elsewhere: R-hat >> 1
    ties = np.round(fast, 1)  # many tied values (e.g. a Metropolis sampler's repeats)
    stuck = fast.copy()
    stuck[..., 1] = 2.5  # one constant parameter: R-hat NaN, ESS 0
    wide = fast * np.array([1.0, 1.0, 1.0, 4.0])[:, None, None]  # same centre, one wide chain (folded R-hat)
    return {"fast": fast, "slow": slow, "shifted": shifted, "ties": ties, "stuck": stuck, "wide": wide}


@pytest.mark.parametrize("name", list(_cases()))
def test_series_estimators_equal_blackjax(name):
    x = _cases()[name]  # (chains, draws, d)
    series = np.moveaxis(x, -1, 0)
    rhat, ess = host.rhat_and_ess(series)
    want_rhat = np.asarray(jax.vmap(bd.rhat)(jnp.asarray(series)))
    want_ess = np.asarray(jax.vmap(bd.ess_bulk)(jnp.asarray(series)))
    np.testing.assert_allclose(rhat, want_rhat, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(ess, want_ess, rtol=1e-10, atol=1e-9)
    plain = np.asarray(jax.vmap(bd.effective_sample_size)(jnp.asarray(series)))
    np.testing.assert_allclose(host.effective_sample_size(series), plain, rtol=1e-10, atol=1e-9)


def test_nan_series_stays_alone():
    x = _cases()["fast"].copy()
    x[2, 10, 0] = np.nan
    rhat, ess = host.rhat_and_ess(np.moveaxis(x, -1, 0))
    assert np.isnan(rhat[0]) and np.isnan(ess[0])
    assert np.all(np.isfinite(rhat[1:])) and np.all(np.isfinite(ess[1:]))


def test_rhat_matches_arviz():
    """R-hat is ArviZ's ``method="rank"`` exactly. (Bulk ESS follows blackjax, tested above: its
    truncation of the autocorrelation sum differs from ArviZ's, by 1-3% on some series.)"""
    az = pytest.importorskip("arviz")
    for name, x in _cases().items():
        x = x[
            :, : 2 * (x.shape[1] // 2)
        ]  # even draws: for odd ones ArviZ drops the middle draw, blackjax the last
        rhat, _ = host.rhat_and_ess(np.moveaxis(x, -1, 0))
        want = [az.rhat(x[..., j], method="rank") for j in range(x.shape[-1])]
        np.testing.assert_allclose(rhat, want, rtol=1e-12, equal_nan=True, err_msg=name)


def test_draw_diagnostics_host_equals_compiled():
    """Every field of the host path equals the compiled JAX path, batch axes and a θ pytree included."""
    cases = _cases()
    draws = np.stack([cases["fast"], cases["shifted"], cases["ties"], cases["wide"]])  # (4 obs, 4, 400, 3)
    samples = {"a": draws[..., :1], "b": draws[..., 1:].reshape(4, 4, 400, 2)}
    div = np.zeros(draws.shape[:3], bool)
    div[1, 0, :5] = True
    for diagnose in (True, False):
        got = draw_diagnostics(jax.tree.map(jnp.asarray, samples), jnp.asarray(div), diagnose)
        want = _diagnostics(jnp.asarray(draws), jnp.asarray(div), diagnose=diagnose)
        assert set(got) == set(want)
        for k in want:
            np.testing.assert_allclose(
                np.asarray(got[k]), np.asarray(want[k]), rtol=1e-10, equal_nan=True, err_msg=k
            )
    assert np.asarray(got["num_divergent"]).tolist() == [0, 5, 0, 0]


def test_draw_diagnostics_under_jit_is_compiled_path():
    x = jnp.asarray(_cases()["fast"][None])
    div = jnp.zeros(x.shape[:3], bool)
    traced = jax.jit(lambda s: draw_diagnostics(s, div))(x)
    host_side = draw_diagnostics(x, div)
    for k in traced:
        np.testing.assert_allclose(
            np.asarray(traced[k]), np.asarray(host_side[k]), rtol=1e-10, equal_nan=True
        )
