"""Results tables: mean and standard deviation over seeds, the oracle as reference row."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
from rich.table import Table

from unlearnkit.audit import AUDIT_METRICS, residual

COLUMNS = (
    ("forget_acc", "Forget acc"),
    ("retain_acc", "Retain acc"),
    ("test_acc", "Test acc"),
    ("mia", "MIA-eff."),
    ("gap", "Gap"),
    ("time_s", "Time (s)"),
)
AUDIT_COLUMNS = (  # bench --audit; the full set of keys is unlearnkit.audit.AUDIT_METRICS
    ("mia_entropy_lr", "Ent-LR MIA"),
    ("rmia", "rMIA"),
    ("cka_forget_original", "CKA_f(o)"),
    ("rus_o", "RUS(o)"),
    ("rus_r", "RUS(r)"),
    ("aus", "AUS"),
    ("fm_forget", "FM D_f"),
    ("fm_test_forget", "FM test_f"),
    ("probe_forget", "Probe D_f"),
    ("probe_test_forget", "Probe test_f"),
    ("recon_psnr", "PSNR"),
    ("recon_ssim", "SSIM"),
)


def summarise(
    rows: Iterable[dict[str, Any]], columns: tuple[tuple[str, str], ...] = COLUMNS
) -> dict[tuple[str, str], dict[str, tuple[float, float, int]]]:
    """``{(task, method): {metric: (mean, std, n)}}`` over seeds; reference rows come first."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if "skipped" not in row:  # a method that does not apply to this task has no entry
            grouped[(row["task"], row["method"])].append(row)
    order = sorted(grouped, key=lambda k: (k[0], _method_rank(k[1]), k[1]))
    summary = {}
    for key in order:
        values = {}
        for metric, _ in columns:
            series = np.array([r[metric] for r in grouped[key] if r.get(metric) is not None], dtype=float)
            values[metric] = (float(series.mean()), float(series.std(ddof=0)), len(series)) if len(series) else (float("nan"), 0.0, 0)
        summary[key] = values
    return summary


AUDIT_CAPTION = (
    "MIA: % of D_f called member (lower = more forgetting); CKA_f(o): forget features vs the original's; "
    "FM / Probe: recovered accuracy %; PSNR/SSIM: gradient inversion of D_f. Judge each against the oracle row."
)


def _method_rank(method: str) -> int:
    return {"original": 0, "retrain": 1}.get(method, 2)


def _cell(mean: float, std: float, n: int, digits: int = 2) -> str:
    if n == 0 or np.isnan(mean):
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def results_table(rows: list[dict[str, Any]], title: str = "Results", columns: tuple[tuple[str, str], ...] = COLUMNS) -> Table:
    """A rich table: one row per (task, method), the oracle (``retrain``) as reference."""
    caption = "accuracies and MIA in %, Gap = mean |Δ| to retrain over UA, RA, TA, MIA" if columns == COLUMNS else AUDIT_CAPTION
    table = Table(title=title, caption=caption)
    table.add_column("Task", no_wrap=True)
    table.add_column("Method", no_wrap=True)
    for _, header in columns:
        table.add_column(header, justify="right", no_wrap=True)
    for (task, method), values in summarise(rows, columns).items():
        label = {"retrain": "retrain (oracle)", "original": "original"}.get(method, method)
        style = "bold" if method == "retrain" else ("dim" if method == "original" else None)
        table.add_row(task, label, *(_cell(*values[m]) for m, _ in columns), style=style)
    return table


def markdown_table(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...] = COLUMNS) -> str:
    """The same table as Markdown (for benchmarks/RESULTS.md)."""
    header = "| Task | Method | " + " | ".join(h for _, h in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 2)]
    for (task, method), values in summarise(rows, columns).items():
        label = "**retrain (oracle)**" if method == "retrain" else method
        lines.append(f"| {task} | {label} | " + " | ".join(_cell(*values[m]) for m, _ in columns) + " |")
    return "\n".join(lines)


def residual_rows(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """``{(task, method): {audit metric: mean residual over seeds}}`` for the forgetting audits of a
    ``bench --audit`` run: 0 = where that seed's oracle is, 1 = where its original is (NaN when
    the two references are closer than the metric's resolution)."""
    refs = {(r["task"], r["seed"], r["method"]): r for r in rows if r["method"] in ("original", "retrain")}
    keys = [k for k, info in AUDIT_METRICS.items() if info.forgetting]
    grouped: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        original, oracle = refs.get((row["task"], row["seed"], "original")), refs.get((row["task"], row["seed"], "retrain"))
        if "skipped" in row or row["method"] in ("original", "retrain") or not original or not oracle:
            continue
        for key in keys:
            values = (row.get(key), original.get(key), oracle.get(key))
            if None not in values:
                grouped[(row["task"], row["method"])][key].append(residual(*values, min_spread=AUDIT_METRICS[key].resolution))
    return {k: {m: float(np.nanmean(v)) if not np.isnan(v).all() else float("nan") for m, v in d.items()} for k, d in sorted(grouped.items())}


def residual_markdown(rows: list[dict[str, Any]], shallow: float = 0.5) -> str:
    """:func:`residual_rows` as Markdown; cells above ``shallow`` are bold (the attack still finds
    most of the original's signal)."""
    table = residual_rows(rows)
    keys = sorted({k for values in table.values() for k in values}, key=_audit_order)
    lines = ["| Task | Method | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for (task, method), values in table.items():
        cells = [_residual(values.get(k), shallow) for k in keys]
        lines.append(f"| {task} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _audit_order(key: str) -> int:
    return list(AUDIT_METRICS).index(key)


def _residual(value: float | None, shallow: float) -> str:
    if value is None or np.isnan(value):
        return "n/a"
    return f"**{value:.2f}**" if value > shallow else f"{value:.2f}"

