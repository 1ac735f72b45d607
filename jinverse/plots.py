"""Plots where a person would rather look than read (matplotlib, the ``plot`` extra).

Every function builds and returns a `matplotlib.figure.Figure` without touching pyplot's global
state (no window opens; works headless), so ``fig.savefig(path)`` or `save` writes it, and a
notebook shows it. matplotlib is imported only when a plot is made.

- `reconstruction`: truth vs estimate, with a credible band (1-D) or images side by side (2-D).
- `trace`, `rank`: sampler traces and rank histograms per chain (one observation).
- `lcurve`: the L-curve of Tikhonov regularisation with the chosen corner.
- `pairs`: pair plot of posterior draws for a few unknowns, with truth and reference draws.
- `bench_summary`: the problem x method chart of `jinverse bench`.
"""

from __future__ import annotations

import pathlib

import numpy as np

from .problem import flat_leaves_np

_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'jinverse[plot]'") from exc
    return Figure(figsize=(width, height), layout="constrained")


def _wrap(text: str, width_in: float, fontsize_pt: float = 12.0) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``fontsize_pt`` (a title must not
    run past the edge of a narrow figure); breaks after ': ' first, then at spaces."""
    import textwrap

    chars = max(12, int(width_in * 72 / (0.62 * fontsize_pt)))  # DejaVu Sans: ~0.6 em per character
    lines = []
    for part in text.split("\n"):
        if len(part) > chars and ": " in part:
            head, tail = part.split(": ", 1)
            lines += textwrap.wrap(head + ":", chars) + textwrap.wrap(tail, chars)
        else:
            lines += textwrap.wrap(part, chars) or [""]
    return "\n".join(lines)


def _suptitle(fig, text: str, note: str | None = None) -> None:
    """The figure's title wrapped to its width, and ``note`` on a line of its own below it."""
    width = fig.get_figwidth()
    fig.suptitle(_wrap(text, width) + ("\n" + _wrap(note, width) if note else ""))


def _shown_note(idx, d: int) -> str | None:
    """Which unknowns a plot shows, when it shows only some of them."""
    idx = list(idx)
    if len(idx) >= d:
        return None
    names = ", ".join(f"θ[{j}]" for j in idx[:8]) + (", ..." if len(idx) > 8 else "")
    return f"showing {len(idx)} of {d} unknowns: {names}"


def save(fig, path, dpi: int = 110) -> pathlib.Path:
    """Write ``fig`` to ``path`` (format from the suffix), creating the folder."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def _flat(x) -> np.ndarray:
    """One θ as one array: a single leaf keeps its shape (an image stays an image), several are
    flattened and joined (`problem.flat_leaves_np`)."""
    import jax

    leaves = jax.tree.leaves(x)
    return flat_leaves_np(leaves, 0) if len(leaves) > 1 else np.asarray(leaves[0])


def reconstruction(truth, estimate, *, band=None, std=None, extra: dict | None = None, x=None,
                   title: str | None = None,
                   labels: tuple[str, str] = ("truth", "estimate"), band_label: str = "90% credible band",
                   spatial: bool | None = None, names=None):
    """Truth against an estimate for one observation.

    Args:
        truth, estimate: θ, 1-D ``(n,)`` or 2-D ``(h, w)`` (pytrees are flattened to 1-D).
        band: ``(lower, upper)`` of a credible interval: a shaded band (1-D signal) or error
            bars (separate unknowns).
        std: posterior standard deviation, shown as a fourth image (2-D).
        extra: more images to show after these (2-D), ``{title: image}``.
        x: abscissa for a 1-D signal (default the index).
        title: the figure title.
        spatial: whether θ is a signal over space or time (a curve over its index, or an image)
            or separate unknowns (classifier inputs, model parameters: one marker per unknown,
            no line between them). Default: a signal when 2-D or more than 8 values.
        names: labels of the unknowns when they are not spatial (default ``θ[i]``).
    """
    t, e = np.asarray(_flat(truth), float), np.asarray(_flat(estimate), float)
    if spatial is None:
        spatial = t.ndim == 2 or t.size > 8
    if not spatial:
        return _components(t.ravel(), e.ravel(), band, title, labels, band_label, names)
    if t.ndim == 2:
        panels = [(t, labels[0]), (e, labels[1]), (np.abs(e - t), "|error|")]
        if std is not None:
            panels.append((np.asarray(std, float), "posterior std"))
        panels += [(np.asarray(v, float), k) for k, v in (extra or {}).items()]
        fig = _figure(3.3 * len(panels), 3.4)
        axes = fig.subplots(1, len(panels))
        lo, hi = float(min(t.min(), e.min())), float(max(t.max(), e.max()))
        for i, (ax, (img, name)) in enumerate(zip(axes, panels)):
            shared = i < 2  # truth and estimate on one colour scale
            im = ax.imshow(img, cmap="gray" if shared else "magma", vmin=lo if shared else None,
                           vmax=hi if shared else None, interpolation="nearest")
            ax.set_title(name)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, shrink=0.8)
    else:
        t, e = t.ravel(), e.ravel()
        xs = np.arange(t.size) if x is None else np.asarray(x)
        fig = _figure(7.5, 3.8)
        ax = fig.subplots()
        if band is not None:
            lower, upper = (np.asarray(_flat(b), float).ravel() for b in band)
            ax.fill_between(xs, lower, upper, color=_COLORS[0], alpha=0.22, lw=0, label=band_label)
        ax.plot(xs, t, color="black", lw=1.6, label=labels[0])
        ax.plot(xs, e, color=_COLORS[0], lw=1.6, ls="--", label=labels[1])
        ax.set_xlabel("index" if x is None else "x")
        ax.set_ylabel("θ")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False)
    if title:
        _suptitle(fig, title)
    return fig


def _components(t, e, band, title, labels, band_label, names):
    """Separate unknowns: truth and estimate as markers per unknown, the interval as error bars."""
    d = t.size
    fig = _figure(max(4.5, 0.55 * d + 2.5), 3.8)
    ax = fig.subplots()
    xs = np.arange(d)
    if band is not None:
        lo, hi = (np.asarray(_flat(b), float).ravel() for b in band)
        ax.errorbar(xs + 0.12, e, yerr=np.stack([e - lo, hi - e]), fmt="none", ecolor=_COLORS[0], alpha=0.6,
                    capsize=4, lw=1.4, label=band_label)
    ax.plot(xs - 0.12, t, "o", ls="none", color="black", ms=7, label=labels[0])
    ax.plot(xs + 0.12, e, "D", ls="none", color=_COLORS[0], ms=6, label=labels[1])
    ax.set_xticks(xs)
    ax.set_xticklabels(list(names) if names is not None else [f"θ[{i}]" for i in range(d)])
    ax.set_xlim(-0.6, d - 0.4)
    ax.set_xlabel("unknown")
    ax.set_ylabel("value")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(frameon=False, fontsize="small")
    if title:
        _suptitle(fig, title)
    return fig


def _chains(samples, max_params: int):
    """``(chains, draws, d)`` of one observation's draws, the first ``max_params`` unknowns."""
    return flat_leaves_np(samples, 2)[..., :max_params]


def _param_indices(d: int, max_params: int) -> np.ndarray:
    return np.unique(np.linspace(0, d - 1, min(d, max_params)).round().astype(int))


def trace(samples, *, max_params: int = 4, names=None, title: str | None = None):
    """Trace plot of each chain for up to ``max_params`` unknowns (evenly spread over θ).

    ``samples``: one observation's draws ``(chains, draws, *theta)`` (``post.samples`` of an
    unbatched posterior, or ``post[i].samples``).
    """
    full = _chains(samples, 10**9)
    idx = _param_indices(full.shape[-1], max_params)
    fig = _figure(8.0, 1.7 * len(idx) + 0.9)
    axes = np.atleast_1d(fig.subplots(len(idx), 1, sharex=True, squeeze=False)[:, 0])
    for ax, j in zip(axes, idx):
        for c in range(full.shape[0]):
            ax.plot(full[c, :, j], lw=0.7, alpha=0.8, color=_COLORS[c % len(_COLORS)], label=f"chain {c}")
        ax.set_ylabel(names[j] if names else f"θ[{j}]")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("draw")
    axes[0].legend(ncol=min(full.shape[0], 8), fontsize="small", frameon=False, loc="upper right")
    _suptitle(fig, title or "Trace per chain", _shown_note(idx, full.shape[-1]))
    return fig


def rank(samples, *, max_params: int = 4, bins: int = 20, names=None, title: str | None = None):
    """Rank histograms: the draws of all chains are ranked together; for well-mixed chains each
    chain's ranks are uniform (bars near the dashed line), Vehtari et al. (2021)."""
    full = _chains(samples, 10**9)
    idx = _param_indices(full.shape[-1], max_params)
    nc, nd = full.shape[:2]
    fig = _figure(max(2.6 * len(idx) + 0.5, 4.0), 0.55 * nc + 2.0)
    axes = np.atleast_1d(fig.subplots(1, len(idx), squeeze=False)[0])
    for ax, j in zip(axes, idx):
        ranks = np.argsort(np.argsort(full[..., j].ravel())).reshape(nc, nd)
        edges = np.linspace(0, nc * nd, bins + 1)
        expected = nd / bins
        for c in range(nc):
            counts, _ = np.histogram(ranks[c], bins=edges)
            h = 0.8 * counts / (expected * 2.0)  # bar height in units of one row
            ax.bar(edges[:-1], h, width=np.diff(edges), bottom=c, align="edge",
                   color=_COLORS[c % len(_COLORS)], alpha=0.75, edgecolor="white", lw=0.3)
            ax.axhline(c + 0.4, color="black", ls="--", lw=0.7)
        ax.set_yticks(np.arange(nc) + 0.2)
        ax.set_yticklabels([f"chain {c}" for c in range(nc)])
        ax.set_xticks([])
        ax.set_xlabel("rank (all chains)")
        ax.set_title(names[j] if names else f"θ[{j}]")
    _suptitle(fig, title or "Rank plot (uniform = well mixed)", _shown_note(idx, full.shape[-1]))
    return fig


def lcurve(residual_norms, solution_norms, *, lams=None, corner=None, chosen_label: str = "chosen λ",
           title: str | None = None, marks=None):
    """The L-curve ``(‖A x_λ - y‖, ‖L x_λ‖)`` on log-log axes with the chosen point.

    Args:
        residual_norms, solution_norms: the curve, one point per λ.
        lams: the λ of each point (annotates a few of them).
        corner: ``(residual_norm, solution_norm)`` of the chosen solution.
        marks: more points to show, ``{label: (residual_norm, solution_norm)}`` (e.g. other rules).
    """
    r, s = np.asarray(residual_norms, float), np.asarray(solution_norms, float)
    fig = _figure(5.8, 4.6)
    ax = fig.subplots()
    ax.loglog(r, s, color="black", lw=1.4)
    if lams is not None:
        lams = np.asarray(lams)
        for i in _spread_labels(r, s, avoid=corner):
            ax.plot(r[i], s[i], "o", ms=3, color="gray")
            ax.annotate(f"λ={lams[i]:.1e}", (r[i], s[i]), textcoords="offset points", xytext=(5, 3),
                        fontsize="x-small", color="gray")
    for k, (label, pt) in enumerate((marks or {}).items()):
        ax.plot(*pt, "s", ms=7, color=_COLORS[(k + 2) % len(_COLORS)], label=label)
    if corner is not None:
        ax.plot(*corner, "*", ms=16, color=_COLORS[1], label=chosen_label, zorder=5)
    ax.set_xlabel("residual norm ‖A x − y‖")
    ax.set_ylabel("solution (semi)norm ‖L x‖")
    ax.grid(alpha=0.3, which="both")
    if corner is not None or marks:
        ax.legend(frameon=False)
    ax.set_title(_wrap(title or "L-curve", fig.get_figwidth()))
    return fig


def _spread_labels(r, s, *, avoid=None, count: int = 6, box=(0.17, 0.07)) -> list[int]:
    """Up to ``count`` points of a log-log curve to label, none whose label (a box ``box`` wide
    and high, in fractions of the axes, to the upper right of its point) would overlap another's
    or the chosen point's: an L-curve bunches its points in the corner."""
    lr, ls = np.log10(r), np.log10(s)
    ok = np.isfinite(lr) & np.isfinite(ls)
    if not ok.any():
        return []
    span = lambda v: (v[ok].min(), max(np.ptp(v[ok]), 1e-12))  # noqa: E731
    (r0, rw), (s0, sw) = span(lr), span(ls)
    u, v = (lr - r0) / rw, (ls - s0) / sw
    taken = []
    if avoid is not None:
        taken.append(((np.log10(avoid[0]) - r0) / rw, (np.log10(avoid[1]) - s0) / sw))
    chosen: list[int] = []
    for i in np.linspace(0, len(r) - 1, 4 * count).round().astype(int):
        if not ok[i] or len(chosen) == count:
            continue
        if all(abs(u[i] - a) > box[0] or abs(v[i] - b) > box[1] for a, b in taken):
            chosen.append(int(i))
            taken.append((u[i], v[i]))
    return chosen


def pairs(draws, *, truth=None, reference=None, names=None, max_dim: int = 6, max_points: int = 2000,
          title: str | None = None):
    """Pair plot: histograms on the diagonal, scatter of draws below it.

    Args:
        draws: ``(n, d)`` (or ``(chains, draws, d)``) draws of one observation.
        truth: the true θ ``(d,)``, marked in red.
        reference: reference draws ``(m, d)``, shown in grey beneath.
        max_dim: only the first ``max_dim`` unknowns are shown.
    """
    d_all = np.asarray(draws, float)
    d_all = d_all.reshape(-1, d_all.shape[-1])
    d = min(d_all.shape[-1], max_dim)
    rng = np.random.default_rng(0)
    pick = lambda a: a[rng.permutation(len(a))[:max_points], :d]  # noqa: E731
    x = pick(d_all)
    ref = None if reference is None else pick(np.asarray(reference, float).reshape(-1, d_all.shape[-1]))
    t = None if truth is None else np.ravel(np.asarray(truth, float))[:d]
    fig = _figure(1.9 * d + 0.8, 1.9 * d + 0.6)
    axes = fig.subplots(d, d, squeeze=False)
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if j > i:
                ax.set_axis_off()
                continue
            if i == j:
                if ref is not None:
                    ax.hist(ref[:, i], bins=40, density=True, color="gray", alpha=0.45)
                ax.hist(x[:, i], bins=40, density=True, histtype="step", color=_COLORS[0], lw=1.3)
                if t is not None:
                    ax.axvline(t[i], color="red", lw=1.2)
                ax.set_yticks([])
            else:
                if ref is not None:
                    ax.scatter(ref[:, j], ref[:, i], s=2, color="gray", alpha=0.25, lw=0)
                ax.scatter(x[:, j], x[:, i], s=2, color=_COLORS[0], alpha=0.35, lw=0)
                if t is not None:
                    ax.plot(t[j], t[i], "+", color="red", ms=10, mew=1.8)
            label = (lambda k: names[k] if names else f"θ[{k}]")
            if i == d - 1:
                ax.set_xlabel(label(j))
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(label(i))
            elif j != i:
                ax.set_yticklabels([])
    handles = [("draws", _COLORS[0])] + ([("reference", "gray")] if ref is not None else []) + \
              ([("truth", "red")] if t is not None else [])
    from matplotlib.lines import Line2D

    # in the empty upper-right corner of the grid (clear of the title)
    target = axes[0, d - 1] if d > 1 else axes[0, 0]
    target.legend([Line2D([], [], color=c, lw=3) for _, c in handles], [h for h, _ in handles],
                  loc="upper right", frameon=False)
    _suptitle(fig, title or "Posterior pair plot", _shown_note(range(d), d_all.shape[-1]))
    return fig


def bench_summary(records: list[dict], *, title: str | None = None):
    """The `jinverse bench` chart: per problem, how far each method's score is from its metric's
    ideal value, and the time of each phase.

    The top panel plots the shortfall from the ideal (`metric_info(...).shortfall`: the error
    itself for an error, ``1 - value`` for a success fraction, ``|c2st - 0.5|`` for C2ST), so
    that lower is better for every metric; each problem's label names its metric and ideal. The
    bottom panel stacks the run time (solid), compilation (light) and diagnostics plus scoring
    (hatched), when the records have them.

    ``records`` are `jinverse.bench.run_matrix` records; pairs that did not run or were not
    scored are left out.
    """
    from .problems.metrics import metric_info

    ok = [r for r in records if r.get("status") in ("ok", "flagged") and r.get("value") is not None]
    probs = list(dict.fromkeys(r["problem"] for r in ok))
    meths = list(dict.fromkeys(r["method"] for r in ok))
    fig = _figure(max(7.0, 1.4 * len(probs) + 3), 6.8)
    ax_err, ax_t = fig.subplots(2, 1, sharex=True)
    width = 0.8 / max(len(meths), 1)
    gaps = {id(r): float(metric_info(r["metric"]).shortfall(r["value"])) for r in ok}
    positive = [g for g in gaps.values() if g > 0]
    floor = min(positive) / 10 if positive else 1e-3  # where a perfect score (0) is drawn
    for k, m in enumerate(meths):
        xs, gap, run, comp, post = [], [], [], [], []
        for i, p in enumerate(probs):
            hit = [r for r in ok if r["problem"] == p and r["method"] == m]
            if hit:
                r = hit[0]
                xs.append(i + (k - (len(meths) - 1) / 2) * width)
                gap.append(max(gaps[id(r)], floor))
                run.append(r.get("seconds") or 0.0)
                comp.append(r.get("compile_s") or 0.0)
                post.append((r.get("diagnostics_s") or 0.0) + (r.get("scoring_s") or 0.0))
        color = _COLORS[k % len(_COLORS)]
        ax_err.bar(xs, gap, width, color=color, label=m, edgecolor="white", lw=0)
        ax_t.bar(xs, run, width, color=color)
        bottom = np.asarray(run)
        for part, style in ((comp, {"alpha": 0.4}), (post, {"hatch": "///", "alpha": 0.7})):
            if any(v > 0 for v in part):
                ax_t.bar(xs, part, width, bottom=bottom, color=color, edgecolor="white", lw=0, **style)
                bottom = bottom + np.asarray(part)
    label = {}
    for p in probs:
        names = dict.fromkeys(r["metric"] for r in ok if r["problem"] == p)
        label[p] = " / ".join(f"{n}: ideal {metric_info(n).ideal:g}" for n in names)
    ax_err.text(0.995, 0.98, "bar: distance of the score from its ideal value\n(error: the error; "
                "success fraction: 1 - value; c2st: |value - 0.5|)", transform=ax_err.transAxes,
                ha="right", va="top", fontsize="x-small", color="dimgray")
    ax_err.set_ylabel("distance from the ideal score\n(lower is better)")
    ax_err.set_yscale("log")
    if ok:  # room above the bars for the note
        ax_err.set_ylim(floor / 1.5, max(max(gaps.values()), floor) * 4)
    ax_err.grid(alpha=0.3, axis="y", which="both")
    ax_err.legend(ncol=min(len(meths), 6), frameon=False, loc="upper left", bbox_to_anchor=(0, 1.18))
    ax_t.set_ylabel("time (s, lower is better)\nsolid: run; light: compile;\nhatched: diagnostics + scoring",
                    fontsize="small")
    ax_t.set_yscale("log")
    times = [r.get("seconds") or 0.0 for r in ok]
    if any(t > 0 for t in times):  # show the solid run segments whole (log autoscale starts above them)
        ax_t.set_ylim(bottom=min(t for t in times if t > 0) / 2)
    ax_t.grid(alpha=0.3, axis="y", which="both")
    ax_t.set_xticks(range(len(probs)))
    ax_t.set_xticklabels([f"{p}\n({label[p]})" for p in probs], fontsize="small")
    _suptitle(fig, title or "jinverse bench: distance from the ideal score and time, per problem and method")
    return fig
