"""Plots: each builds a figure with the promised content and writes a PNG; matplotlib is lazy."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402

from jinverse import plots  # noqa: E402


def test_reachable_as_ji_plots():
    import jinverse as ji

    assert ji.plots is plots


def test_import_is_lazy():
    code = "import sys, jinverse, jinverse.plots, jinverse.cli; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_reconstruction_1d_band(tmp_path):
    x = np.linspace(0, 1, 50)
    truth, est = np.sin(6 * x), np.sin(6 * x) + 0.05
    fig = plots.reconstruction(truth, est, band=(est - 0.2, est + 0.2), x=x, title="t")
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    np.testing.assert_array_equal(lines["truth"].get_ydata(), truth)
    np.testing.assert_array_equal(lines["estimate"].get_ydata(), est)
    band = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(band) == 1
    verts = band[0].get_paths()[0].vertices
    assert np.isclose(verts[:, 1].max(), (est + 0.2).max()) and np.isclose(verts[:, 1].min(), (est - 0.2).min())
    path = plots.save(fig, tmp_path / "sub" / "r.png")
    assert path.stat().st_size > 5000


def test_reconstruction_2d_panels():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(8, 8))
    fig = plots.reconstruction(truth, truth + 0.1, std=np.ones((8, 8)))
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 4  # truth, estimate, |error|, std (+ colourbars)
    np.testing.assert_allclose(images[2].get_array(), 0.1)
    assert isinstance(images[0], AxesImage) and images[0].get_clim() == images[1].get_clim()


def test_trace_and_rank(tmp_path):
    rng = np.random.default_rng(1)
    draws = rng.normal(size=(3, 40, 5))
    fig = plots.trace(draws, max_params=3)
    assert len(fig.axes) == 3 and len(fig.axes[0].get_lines()) == 3
    np.testing.assert_array_equal(fig.axes[0].get_lines()[1].get_ydata(), draws[1, :, 0])
    fig = plots.rank(draws, max_params=2, bins=4)
    ax = fig.axes[0]
    # each chain's bars: its ranks among all 120 draws in 4 bins; heights sum to 0.8 * bins / 2
    heights = np.array([p.get_height() for p in ax.patches]).reshape(3, 4)
    np.testing.assert_allclose(heights.sum(1), 0.8 * 4 / 2)
    ranks = np.argsort(np.argsort(draws[..., 0].ravel())).reshape(3, 40)
    counts = np.histogram(ranks[2], bins=np.linspace(0, 120, 5))[0]
    np.testing.assert_allclose(heights[2], 0.8 * counts / (10 * 2))
    plots.save(fig, tmp_path / "rank.png")


def test_lcurve_marks_the_corner():
    lam = np.logspace(-3, 1, 30)
    r, s = 1 + lam, 1 / lam
    fig = plots.lcurve(r, s, lams=lam, corner=(r[10], s[10]), chosen_label="gcv")
    ax = fig.axes[0]
    star = [ln for ln in ax.get_lines() if ln.get_label() == "gcv"][0]
    assert star.get_xdata()[0] == r[10] and star.get_ydata()[0] == s[10]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"


def test_pairs_layout():
    rng = np.random.default_rng(2)
    fig = plots.pairs(rng.normal(size=(500, 3)), truth=np.zeros(3), reference=rng.normal(size=(800, 3)))
    visible = [ax for ax in fig.axes if ax.axison]
    assert len(fig.axes) == 9 and len(visible) == 6  # lower triangle and diagonal
    fig = plots.pairs(rng.normal(size=(2, 50, 9)), max_dim=4)
    assert len(fig.axes) == 16


def test_bench_summary_bars():
    recs = [{"problem": p, "method": m, "status": "ok", "metric": "rel_error", "value": v, "seconds": t}
            for p, m, v, t in [("a", "map", 0.1, 0.5), ("a", "nuts", 0.2, 2.0), ("b", "map", 0.3, 0.1)]]
    recs.append({"problem": "b", "method": "nuts", "status": "n/a"})
    fig = plots.bench_summary(recs)
    err_ax, time_ax = fig.axes
    heights = sorted(p.get_height() for p in err_ax.patches)
    assert heights == [0.1, 0.2, 0.3]
    assert sorted(p.get_height() for p in time_ax.patches) == [0.1, 0.5, 2.0]


# -- issue 15 item 10: what the plots show, and that they can be read ---------------------------

def _layout_problems(fig) -> list[str]:
    """Texts (titles, labels, annotations, legends; not tick labels) that run past the figure's
    edge or overlap each other, once drawn."""
    import itertools

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ticks = {id(t) for ax in fig.axes for a in (ax.xaxis, ax.yaxis) for t in a.get_ticklabels(which="both")}
    texts = [(t.get_text(), t.get_window_extent(renderer)) for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip() and id(t) not in ticks]
    edge = fig.bbox
    out = [f"clipped: {s!r}" for s, b in texts
           if b.x0 < edge.x0 - 1 or b.x1 > edge.x1 + 1 or b.y0 < edge.y0 - 1 or b.y1 > edge.y1 + 1]
    out += [f"overlap: {a!r} and {b!r}" for (a, ba), (b, bb) in itertools.combinations(texts, 2) if ba.overlaps(bb)]
    return out


def test_reconstruction_of_separate_unknowns_draws_no_line():
    """Two classifier inputs are two unknowns, not a signal over an index: a marker each, the
    interval as an error bar, labelled θ[0], θ[1]; a long signal keeps its curve."""
    truth, est = np.array([0.3, -1.2]), np.array([0.25, -1.0])
    fig = plots.reconstruction(truth, est, band=(est - 0.3, est + 0.4), title="trained_classifier: map")
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert lines["truth"].get_linestyle() == "None" and lines["estimate"].get_linestyle() == "None"
    np.testing.assert_array_equal(lines["estimate"].get_ydata(), est)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["θ[0]", "θ[1]"]
    assert ax.get_xlabel() == "unknown" and "index" not in ax.get_xlabel()
    assert not _layout_problems(fig)
    signal = plots.reconstruction(np.sin(np.arange(20.0)), np.sin(np.arange(20.0)))
    assert signal.axes[0].get_lines()[0].get_linestyle() == "-" and signal.axes[0].get_xlabel() == "index"
    # forced either way
    assert plots.reconstruction(truth, est, spatial=True).axes[0].get_xlabel() == "index"
    assert plots.reconstruction(np.zeros(12), np.ones(12), spatial=False).axes[0].get_xlabel() == "unknown"


def test_cli_draws_built_in_problems_by_their_kind():
    import jinverse as ji
    from jinverse.cli._outputs import spatial

    assert spatial(ji.problems.load("shaw", n=16))  # a curve over space
    assert not spatial(ji.problems.load("two_moons"))  # two parameters
    assert not spatial(ji.problems.load("lorenz63"))  # three variables x, y, z, not a signal


def test_trace_rank_pairs_say_which_unknowns_they_show():
    draws = np.random.default_rng(3).normal(size=(2, 30, 10))
    for fig in (plots.trace(draws), plots.rank(draws)):
        assert "showing 4 of 10 unknowns: θ[0], θ[3], θ[6], θ[9]" in fig._suptitle.get_text()
        assert len([ax for ax in fig.axes if ax.get_lines() or ax.patches]) == 4
    assert "showing 6 of 10 unknowns: θ[0], θ[1]" in plots.pairs(draws)._suptitle.get_text()
    assert "showing" not in plots.trace(draws[..., :3])._suptitle.get_text()  # all shown: nothing to say


def test_lcurve_labels_do_not_overlap(monkeypatch):
    """The λ labels of shaw's L-curve bunched in its corner and overlapped (as the CLI draws it)."""
    import types

    import jinverse as ji
    from jinverse.cli import _outputs

    bench = ji.problems.load("shaw", n=32)
    run = types.SimpleNamespace(method="tikhonov-gcv", result=ji.linear.tikhonov(bench.info["A"], bench.y, lam="gcv"))
    monkeypatch.setattr(plots, "save", lambda fig, path, **k: fig)
    fig = _outputs._lcurve_plot(pathlib.Path("unused"), bench, run, False)
    ax = fig.axes[0]
    assert sum(t.get_text().startswith("λ=") for t in ax.texts) >= 4
    assert not _layout_problems(fig)


def test_titles_fit_narrow_figures():
    """A long title on a one- or two-unknown figure ran past both edges."""
    rng = np.random.default_rng(4)
    long = "gaussian_linear_uniform: mclmc rank plot (first observation)"
    for fig in (plots.rank(rng.normal(size=(4, 50, 1)), title=long),
                plots.pairs(rng.normal(size=(200, 2)), truth=np.zeros(2), title=long),
                plots.reconstruction(np.zeros(2), np.ones(2), title=long),
                plots.lcurve(np.logspace(0, 1, 9), np.logspace(1, 0, 9), title=long)):
        assert not _layout_problems(fig)
