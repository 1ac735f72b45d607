"""Rank-normalised split R-hat and bulk ESS in NumPy, for draws already on the host.

The same estimators as blackjax's `rhat`, `ess_bulk` and `effective_sample_size` (Vehtari,
Gelman, Simpson, Carpenter & Bürkner 2021; ArviZ's defaults), step for step: split chains,
average ranks over the pooled draws, Blom normal scores, split-R-hat of the scores and of the
folded scores, and the FFT autocovariance with Geyer's initial positive and monotone sequences.
They give the same values to rounding (`tests/test_posterior.py` compares them) without
compiling anything: `jinverse.convergence.draw_diagnostics` uses them for draws on the CPU outside
a JAX transformation, where compiling blackjax's five rank normalisations cost a quarter of
``ji.sample``'s first-call compilation (benchmarks/RESULTS.md, "Start-up and compilation").

Every function takes series shaped ``(S, chains, draws)`` (``S`` independent parameters) and
returns ``(S,)``. A series holding a NaN gives NaN; a constant one gives R-hat NaN and ESS 0.
"""

from __future__ import annotations

import numpy as np


def split_chains(x: np.ndarray) -> np.ndarray:
    """``(S, c, n)`` -> ``(S, 2c, n // 2)``: each chain's halves as two chains (odd n: last draw dropped)."""
    half = x.shape[2] // 2
    return np.concatenate([x[:, :, :half], x[:, :, half : 2 * half]], axis=1)


def normal_scores(x: np.ndarray) -> np.ndarray:
    """Blom normal scores ``Φ⁻¹((r - 3/8) / (N + 1/4))`` of the average ranks ``r`` of each
    series' ``N = chains x draws`` pooled values (ties share their mean rank); NaN for a series
    holding a NaN."""
    from scipy.special import ndtri  # type: ignore[import-untyped]  # (scipy: a dependency of jax)

    s, c, n = x.shape
    pool = x.reshape(s, c * n)
    order = np.argsort(pool, axis=1, kind="stable")
    ordered = np.take_along_axis(pool, order, axis=1)
    same = ordered[:, 1:] == ordered[:, :-1]
    edge = np.ones((s, 1), bool)
    positions = np.broadcast_to(np.arange(c * n), pool.shape)
    # each sorted value's tie group runs from its first to its last position
    start = np.maximum.accumulate(np.where(np.concatenate([edge, ~same], axis=1), positions, 0), axis=1)
    last = np.where(np.concatenate([~same, edge], axis=1), positions, c * n - 1)
    end = np.minimum.accumulate(last[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty(pool.shape)
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, axis=1)
    ranks[np.any(np.isnan(pool), axis=1)] = np.nan
    return ndtri((ranks - 3.0 / 8) / (c * n + 1.0 / 4)).reshape(s, c, n)


def potential_scale_reduction(x: np.ndarray) -> np.ndarray:
    """Gelman-Rubin R-hat of ``(S, c, n)`` series (no splitting, no ranks)."""
    n = x.shape[2]
    between = n * np.var(np.mean(x, axis=2), axis=1, ddof=1)
    within = np.mean(np.var(x, axis=2, ddof=1), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant series: 0 / 0, NaN
        return np.sqrt((between / within + n - 1) / n)


def rhat(x: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
    """Rank-normalised split R-hat: the larger of the bulk and the folded one (blackjax's `rhat`).
    ``scores``: `normal_scores` of ``split_chains(x)`` when already computed (`ess_bulk` needs
    the same)."""
    split = split_chains(x)
    bulk = normal_scores(split) if scores is None else scores
    folded = np.abs(split - np.median(split.reshape(split.shape[0], -1), axis=1)[:, None, None])
    return np.maximum(potential_scale_reduction(bulk), potential_scale_reduction(normal_scores(folded)))


def effective_sample_size(x: np.ndarray) -> np.ndarray:
    """ESS of ``(S, c, n)`` series from the chains' FFT autocovariance, truncated by Geyer's initial
    positive sequence and made monotone (blackjax's `effective_sample_size`)."""
    s, c, n = x.shape
    varies = np.any(x != x[:, :, :1], axis=(1, 2))
    means = np.mean(x, axis=2, keepdims=True)
    spectrum = np.fft.rfft(x - means, n=2 * n, axis=2)
    autocov = np.fft.irfft(spectrum * np.conjugate(spectrum), n=2 * n, axis=2)[:, :, :n] / n
    mean_autocov = np.mean(autocov, axis=1)  # (S, n)
    var0 = mean_autocov[:, 0] * n / (n - 1.0)
    degenerate = np.isfinite(var0) & (~varies | (var0 <= 0.0))
    weighted = var0 * (n - 1.0) / n
    if c > 1:
        weighted = weighted + np.var(means[:, :, 0], axis=1, ddof=1)
    weighted = np.where(degenerate, 1.0, weighted)
    n_even = n - n % 2
    rho = np.concatenate(
        [np.ones((s, 1)), 1.0 - (var0[:, None] - mean_autocov[:, 1:n_even]) / weighted[:, None]], axis=1
    )
    even, odd = rho[:, 0::2], rho[:, 1::2]
    # Geyer's initial positive sequence: the pairs up to the first non-positive sum ...
    keep = np.logical_and.accumulate((even + odd) > 0.0, axis=1)
    last = np.where(keep.any(axis=1), keep.shape[1] - 1 - np.argmax(keep[:, ::-1], axis=1), 0)
    rows = np.arange(s)
    odd = np.where(keep, odd, 0.0)
    after = np.minimum(last + 1, even.shape[1] - 1)  # (the index past the end reads the last pair)
    keep_even = keep.copy()
    inside = last + 1 < even.shape[1]
    keep_even[rows[inside], last[inside] + 1] = even[rows[inside], last[inside] + 1] > 0
    even = np.where(keep_even, even, 0.0)
    # ... and made monotone: each pair's sum at most the previous one's
    sums = even + odd
    monotone = np.minimum.accumulate(sums, axis=1)
    lowered = sums > np.concatenate([sums[:, :1], monotone[:, :-1]], axis=1)
    even_final = np.where(lowered, monotone / 2.0, even)
    odd_final = np.where(lowered, monotone / 2.0, odd)
    tau = -1.0 + 2.0 * np.sum(even_final + odd_final, axis=1) - even_final[rows, after]
    tau = np.maximum(tau, 1 / np.log10(c * n))
    ess = np.where(degenerate, 0.0, c * n / tau)
    return np.where(np.any(np.isnan(x), axis=(1, 2)), np.nan, ess)


def rhat_and_ess(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`rhat` and bulk ESS (`effective_sample_size` of the split chains' normal scores) of
    ``(S, c, n)`` series, ranking the pooled draws once for both."""
    scores = normal_scores(split_chains(x))
    return rhat(x, scores), effective_sample_size(scores)


def draw_stats(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For draws ``(L, chains, draws, d)``: each parameter's R-hat and bulk ESS ``(L, d)``, and each
    lane's worst R-hat of a chain against itself (its two halves as two chains), ``(L,)``: the
    ``series_stats`` of `jinverse.convergence.draw_diagnostics` on the host."""
    lanes, c, n, d = flat.shape
    rhat_, ess = rhat_and_ess(np.moveaxis(flat, -1, 1).reshape(lanes * d, c, n))
    halves = np.moveaxis(flat[:, :, : 2 * (n // 2)].reshape(lanes, c, 2, n // 2, d), -1, 2)
    self_rhat = np.nanmax(rhat(halves.reshape(lanes * c * d, 2, n // 2)).reshape(lanes, c * d), axis=-1)
    return rhat_.reshape(lanes, d), ess.reshape(lanes, d), self_rhat
