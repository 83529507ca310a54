"""Results tables: mean and standard deviation over seeds, the oracle as reference row.

The ± in every table is the population standard deviation over seeds (``ddof=0``). Rows are
grouped by (dataset, model, task, method); a file's later row for the same seed supersedes an
earlier one (a retried method that had failed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
from rich.table import Table

from unlearnkit.audit import AUDIT_METRICS, metric_residual
from unlearnkit.audit.report import RESIDUAL_MARGIN, residual_reading
from unlearnkit.bench import latest_rows

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


STD_NOTE = "± = population std over seeds (ddof=0)"


def summarise_settings(
    rows: Iterable[dict[str, Any]], columns: tuple[tuple[str, str], ...] = COLUMNS
) -> dict[tuple[str, str, str, str], dict[str, tuple[float, float, int]]]:
    """``{(dataset, model, task, method): {metric: (mean, std, n)}}`` over seeds, the std with
    ``ddof=0`` (population); the latest row per seed counts. Tasks come in the order they first
    appear in ``rows`` (``bench`` runs them in ``--task`` order); within a task the reference rows
    come first, then the methods in first-seen order: ``bench`` writes each cell in ``--methods``
    order, so a file shows the order of the run that first wrote each method (a resumed run with
    a reordered ``--methods`` keeps the earlier order)."""
    grouped: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in latest_rows(list(rows)):  # first-seen order, which the stable sort keeps among methods
        if "skipped" not in row:  # a method that does not apply to this task has no entry
            grouped[_setting_of(row)].append(row)
    task_rank = _first_seen_rank(key[2] for key in grouped)
    order = sorted(grouped, key=lambda k: (k[0], k[1], task_rank[k[2]], _method_rank(k[3])))
    return {key: _statistics(grouped[key], columns) for key in order}


def _setting_of(row: dict[str, Any]) -> tuple[str, str, str, str]:
    """The table row a result row belongs to: (dataset, model, task, method)."""
    return (row.get("dataset", ""), row.get("model", ""), row["task"], row["method"])


def _first_seen_rank(names: Iterable[str]) -> dict[str, int]:
    rank: dict[str, int] = {}
    for name in names:
        rank.setdefault(name, len(rank))
    return rank


def summarise(
    rows: Iterable[dict[str, Any]], columns: tuple[tuple[str, str], ...] = COLUMNS
) -> dict[tuple[str, str], dict[str, tuple[float, float, int]]]:
    """``{(task, method): {metric: (mean, std, n)}}`` for rows of one dataset and model (see
    :func:`summarise_settings`). Raises ValueError when the rows mix several, rather than
    averaging different models together."""
    summary = summarise_settings(rows, columns)
    settings = sorted({key[:2] for key in summary})
    if len(settings) > 1:
        raise ValueError(f"the results mix {len(settings)} dataset/model settings {settings}; summarise each on its own (or use summarise_settings)")
    return {(task, method): values for (_, _, task, method), values in summary.items()}


def _statistics(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...]) -> dict[str, tuple[float, float, int]]:
    values = {}
    for metric, _ in columns:
        series = np.array([r[metric] for r in rows if r.get(metric) is not None], dtype=float)
        values[metric] = (float(series.mean()), float(series.std(ddof=0)), len(series)) if len(series) else (float("nan"), 0.0, 0)
    return values


def error_notes(rows: Iterable[dict[str, Any]]) -> list[str]:
    """One line per row that failed (e.g. a diverged method), with its reason; superseded rows are left out."""
    return [f"{r['method']} ({r['task']}, seed {r.get('seed')}): {r['error']}" for r in latest_rows(list(rows)) if r.get("error")]


def table_notes(rows: Iterable[dict[str, Any]]) -> list[str]:
    """What a table of ``rows`` does not show by itself, one line each: ``failed:`` rows (shown as
    dashes), ``skipped:`` methods (left out: they cannot serve the task) and ``mixed:`` means
    (one table row averaging seeds run with different hyperparameters or recipes)."""
    latest = latest_rows(list(rows))
    notes = [f"failed: {note}" for note in error_notes(latest)]
    skipped = {(r["task"], r["method"]): r["skipped"] for r in latest if "skipped" in r}
    notes += [f"skipped: {method} ({task}): {reason}" for (task, method), reason in skipped.items()]
    return notes + [f"mixed: {note}" for note in mixed_settings_notes(latest)]


def mixed_settings_notes(rows: list[dict[str, Any]]) -> list[str]:
    """One line per (dataset, model, task, method) whose latest seed rows differ in ``hparams`` or
    ``recipe`` (e.g. a failed seed retried with a lower learning rate): its mean mixes them."""
    grouped: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in latest_rows(rows):
        if "skipped" not in row and not row.get("error"):
            grouped[_setting_of(row)].append(row)
    notes = []
    for (_, _, task, method), group in grouped.items():
        settings = [_flat_settings(r) for r in group]
        differing = sorted({k for s in settings for k in s if len({repr(t.get(k)) for t in settings}) > 1})
        if differing:
            detail = "; ".join(
                f"{key}: " + ", ".join(f"{s.get(key)} (seed {r.get('seed')})" for s, r in zip(settings, group, strict=True))
                for key in differing
            )
            notes.append(f"{method} ({task}): its seeds ran with different settings ({detail}); the mean mixes them")
    return notes


def _flat_settings(row: dict[str, Any]) -> dict[str, Any]:
    hparams = row.get("hparams") or {}
    recipe = row.get("recipe") or {}
    return hparams | {f"recipe.{k}": v for k, v in recipe.items()}


AUDIT_CAPTION = (
    "MIA: % of D_f called member (lower = more forgetting); CKA_f(o): forget features vs the original's; "
    "FM / Probe: recovered accuracy %; PSNR/SSIM: gradient inversion of D_f. Judge each against the oracle row; "
    + STD_NOTE
)


def _method_rank(method: str) -> int:
    return {"original": 0, "retrain": 1}.get(method, 2)


def _cell(mean: float, std: float, n: int, digits: int = 2) -> str:
    if n == 0 or np.isnan(mean):
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def results_table(rows: list[dict[str, Any]], title: str = "Results", columns: tuple[tuple[str, str], ...] = COLUMNS) -> Table:
    """A rich table: one row per (task, method), the oracle (``retrain``) as reference; Dataset and
    Model columns lead when the rows hold more than one. ± is the population std over seeds (ddof=0)."""
    main = f"accuracies and MIA in %, Gap = mean |Δ| to retrain over UA, RA, TA, MIA; {STD_NOTE}"
    table = Table(title=title, caption=main if columns == COLUMNS else AUDIT_CAPTION)
    summary = summarise_settings(rows, columns)
    several = _several_settings(summary)
    for header in ("Dataset", "Model", "Task", "Method") if several else ("Task", "Method"):
        table.add_column(header, no_wrap=True)
    for _, header in columns:
        table.add_column(header, justify="right", no_wrap=True)
    for (dataset, model, task, method), values in summary.items():
        label = {"retrain": "retrain (oracle)", "original": "original"}.get(method, method)
        style = "bold" if method == "retrain" else ("dim" if method == "original" else None)
        lead = (dataset, model, task) if several else (task,)
        table.add_row(*lead, label, *(_cell(*values[m]) for m, _ in columns), style=style)
    return table


def markdown_table(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...] = COLUMNS) -> str:
    """The same table as Markdown (for benchmarks/RESULTS.md); ± is the population std over seeds (ddof=0)."""
    summary = summarise_settings(rows, columns)
    lead = ("Dataset", "Model", "Task") if _several_settings(summary) else ("Task",)
    header = "| " + " | ".join(lead) + " | Method | " + " | ".join(h for _, h in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + len(lead) + 1)]
    for (dataset, model, task, method), values in summary.items():
        label = "**retrain (oracle)**" if method == "retrain" else method
        cells = (dataset, model, task)[-len(lead):]
        lines.append("| " + " | ".join(cells) + f" | {label} | " + " | ".join(_cell(*values[m]) for m, _ in columns) + " |")
    return "\n".join(lines)


def _several_settings(summary: dict[tuple[str, str, str, str], Any]) -> bool:
    return len({key[:2] for key in summary}) > 1


def residual_rows(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """``{(task, method): {audit metric: mean residual over seeds}}`` for the forgetting audits of a
    ``bench --audit`` run: 0 = where that seed's oracle is, 1 = where its original is (NaN when
    the two references are closer than the metric's resolution)."""
    rows = latest_rows(rows)
    refs = {(*_cell_of(r), r["method"]): r for r in rows if r["method"] in ("original", "retrain")}
    keys = [k for k, info in AUDIT_METRICS.items() if info.forgetting]
    grouped: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        original, oracle = refs.get((*_cell_of(row), "original")), refs.get((*_cell_of(row), "retrain"))
        if "skipped" in row or row["method"] in ("original", "retrain") or not original or not oracle:
            continue
        for key in keys:
            values = (row.get(key), original.get(key), oracle.get(key))
            if None not in values:
                grouped[(row["task"], row["method"])][key].append(metric_residual(key, *values))
    task_rank = _first_seen_rank(task for task, _ in grouped)
    order = sorted(grouped, key=lambda k: task_rank[k[0]])  # stable: methods keep first-seen order, as in the results table
    return {k: {m: float(np.nanmean(v)) if not np.isnan(v).all() else float("nan") for m, v in grouped[k].items()} for k in order}


def _cell_of(row: dict[str, Any]) -> tuple:
    """The grid cell of a row: its references are the original and oracle of the same cell."""
    return (row.get("dataset"), row.get("model"), row["task"], row["seed"])


def residual_markdown(rows: list[dict[str, Any]], shallow: float = 0.5) -> str:
    """:func:`residual_rows` as Markdown, each cell read as in the audit report
    (:func:`~unlearnkit.audit.report.residual_reading`), then a legend line."""
    table = residual_rows(rows)
    keys = sorted({k for values in table.values() for k in values}, key=_audit_order)
    lines = ["| Task | Method | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for (task, method), values in table.items():
        cells = [_residual(values.get(k), shallow) for k in keys]
        lines.append(f"| {task} | {method} | " + " | ".join(cells) + " |")
    legend = (
        f"Residual: 0 = where the oracle is, 1 = where the original is; **bold** above {shallow:g} = shallow (the attack "
        f"still finds most of the original's signal); (beyond) above {1 + RESIDUAL_MARGIN:g} = further from the oracle "
        f"than the original; (past) below {-RESIDUAL_MARGIN:g} = overshoots the oracle; n/a = the references are too "
        "close or in the wrong order for the attack."
    )
    return "\n".join([*lines, "", legend])


def _audit_order(key: str) -> int:
    return list(AUDIT_METRICS).index(key)


def _residual(value: float | None, shallow: float) -> str:
    if value is None or np.isnan(value):
        return "n/a"
    reading = residual_reading(value, shallow)
    if reading is None:
        return f"{value:.2f}"
    if reading == "past oracle":
        return f"{value:.2f} (past)"
    return f"**{value:.2f}**" + (" (beyond)" if reading == "beyond original" else "")

