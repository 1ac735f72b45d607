"""The `jinverse bench` results table: one row per (problem, method) record, a column per
figure, each with its format; blank where a figure does not apply (None or NaN)."""

from __future__ import annotations

import math

COLUMNS = [("problem", "problem", "{}"), ("method", "method", "{}"), ("metric", "metric", "{}"),
           ("better", "better", "{}"), ("value", "value", "{:.4g}"), ("seconds", "run s", "{:.3g}"),
           ("compile_s", "compile s", "{:.3g}"), ("diagnostics_s", "diag s", "{:.3g}"),
           ("scoring_s", "score s", "{:.3g}"), ("total_s", "total s", "{:.3g}"),
           ("converged", "converged", "{:.0%}"), ("max_rhat", "R-hat", "{:.3f}"),
           ("ess_per_s", "ESS/s", "{:.4g}"), ("coverage90", "cover90", "{:.0%}"), ("status", "status", "{}")]


def table_rows(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells of the records (blank where a figure does not apply)."""
    header = [h for _, h, _ in COLUMNS]
    rows = []
    for r in records:
        cells = []
        for key, _, fmt in COLUMNS:
            v = r.get(key)
            # blank where it does not apply: None, or NaN (e.g. R-hat of SMC's particles)
            blank = v is None or (isinstance(v, float) and math.isnan(v))
            cells.append("" if blank else fmt.format(v))
        rows.append(cells)
    return header, rows


def format_table(records: list[dict], markdown: bool = False) -> str:
    header, rows = table_rows(records)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])
