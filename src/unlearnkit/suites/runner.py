"""Run a suite (``unlearnkit bench --suite NAME``) and lay its results out as its paper's table.

A ``kind: bench`` suite runs the benchmark grid (:func:`unlearnkit.bench.run_bench`) and prints
one row per (task, method) with the suite's columns, each followed by the paper's number where
the paper table has one (:mod:`unlearnkit.suites.paper_tables`), and notes saying where the setup
differs from the paper's. The ``minnorm`` suite runs the sine data-poisoning benchmark
(:func:`unlearnkit.suites.sine_poisoning.run_sine_benchmark`) as Table 1 (rows T, columns
methods, medians) and the colour benchmarks when their runners are installed.

Side effects stay here: files under the suite's output folder (``results.jsonl`` or
``sine.json``, ``table.md``, ``suite.json``) and printing to the given console.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from unlearnkit.audit import AUDIT_METRICS
from unlearnkit.bench import record_environment, run_bench
from unlearnkit.checkpoint import atomic_write_bytes, atomic_write_json
from unlearnkit.data import DataError, default_cache_dir, load_dataset
from unlearnkit.report import summarise
from unlearnkit.suites.config import SuiteConfig
from unlearnkit.suites.paper_tables import NO_NUMBERS, PaperTable, paper_table, setup_notes

PAPER_SUFFIX = " (paper)"


@dataclass
class SuiteResult:
    """What a suite run produced: bench rows or sine rows, the printed table as Markdown, the notes."""

    rows: list[dict[str, Any]]
    markdown: str
    notes: list[str] = field(default_factory=list)
    time_s: float = 0.0


def run_suite(config: SuiteConfig, console: Console | None = None) -> SuiteResult:
    """Run ``config`` and print its paper-layout table; write the outputs under ``config.out_dir``."""
    console = console or Console(quiet=True)
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "suite.json", {**dataclasses.asdict(config), "out": str(out)})  # the folder used, not the default None
    record_environment(out)
    start = time.perf_counter()
    if config.kind == "minnorm":
        result = _run_minnorm(config, console)
    else:
        bench = config.bench_config()
        # the out folder may also hold rows of another dataset or model (an earlier run): show this run's
        rows = [r for r in run_bench(bench, console) if (r.get("dataset"), r.get("model")) == (bench.dataset, bench.model)]
        table, markdown, notes = paper_layout(rows, config)
        _print_wide(console, table)
        result = SuiteResult(rows, markdown, notes)
    result.time_s = time.perf_counter() - start
    for note in result.notes:
        console.print(f"note: {note}", soft_wrap=True, markup=False)
    atomic_write_bytes(out / "table.md", (result.markdown + "\n\n" + "\n".join(f"- {n}" for n in result.notes) + "\n").encode())
    console.print(f"suite {config.name}{' (quick)' if config.quick else ''}: {out} ({result.time_s:.0f} s)")
    return result


# --- bench suites ------------------------------------------------------------------------------


def paper_layout(rows: list[dict[str, Any]], config: SuiteConfig) -> tuple[Table, str, list[str]]:
    """The suite's table: (task, method) rows; each metric column, then the paper's value beside it.

    Tasks keep the order they ran in; methods come as original, retrain, then the suite's order;
    methods only the paper has (e.g. DELETE) follow as ``NAME (paper)`` rows. Returns the rich
    table, the same as Markdown, and the notes (setup differences, [U] choices, missing metrics).
    """
    paper = paper_table(config.paper_table, config.dataset) if config.paper_table else None
    columns = tuple(config.metrics.items())
    summary = summarise(rows, columns)
    headers = ["Task", "Method"]
    paper_keys = paper.metrics() if paper else set()
    for key, header in columns:
        headers.append(header)
        if key in paper_keys:
            headers.append(header + PAPER_SUFFIX)
    body = []
    for task, method in _ordered(summary, rows, config):
        kind = task.partition(":")[0]
        cells = [task, {"retrain": "retrain (oracle)"}.get(method, method)]
        for key, _ in columns:
            cells.append(_cell(*summary[(task, method)][key]) if (task, method) in summary else "-")
            if key in paper_keys:
                cells.append(_number(paper.value(kind, method.removesuffix(PAPER_SUFFIX), key)))
        body.append(cells)
    table = Table(title=_title(config), caption=config.source)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i < 2 else "right", no_wrap=True, style="cyan" if header.endswith(PAPER_SUFFIX) else None)
    for cells in body:
        table.add_row(*cells, style="bold" if cells[1] == "retrain (oracle)" else None)
    markdown = _markdown(f"**{_title(config)}** ({config.source})", headers, body)
    return table, markdown, layout_notes(rows, config, paper)


def _title(config: SuiteConfig) -> str:
    return f"{config.title} (this run: {config.dataset} / {config.model}{', quick' if config.quick else ''})"


def _ordered(summary: dict, rows: list[dict[str, Any]], config: SuiteConfig) -> list[tuple[str, str]]:
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    rank = {m: i for i, m in enumerate(("original", "retrain", *config.methods))}
    keys = sorted(summary, key=lambda k: (tasks.index(k[0]) if k[0] in tasks else len(tasks), rank.get(k[1], len(rank)), k[1]))
    paper = paper_table(config.paper_table, config.dataset) if config.paper_table else None
    if paper is None:
        return keys
    extra = []
    for task in tasks:
        kind = task.partition(":")[0]
        extra += [(task, m + PAPER_SUFFIX) for m in paper.paper_only if (kind, m) in paper.rows]
    return sorted(keys + extra, key=lambda k: tasks.index(k[0]) if k[0] in tasks else len(tasks))


def layout_notes(rows: list[dict[str, Any]], config: SuiteConfig, paper: PaperTable | None) -> list[str]:
    """Where the numbers are not comparable with the paper's, and why some cells are empty."""
    notes = []
    if paper is not None:
        differs = setup_notes(paper, config.dataset, config.model, config.epochs, config.train_size, config.test_size)
        if differs:
            notes.append(f"paper columns: {paper.source}. NOT comparable: " + "; ".join(differs))
        else:
            notes.append(f"paper columns: {paper.source}. Same dataset and model as the paper; still differs in:")
        notes += [f"  {n}" for n in paper.notes]
    elif config.name in NO_NUMBERS:
        notes.append(NO_NUMBERS[config.name])
    if config.quick:
        notes.append("quick mode: the original/oracle and every method run on reduced budgets (see suite.json)")
    notes += list(config.notes)
    missing = [k for k in config.metrics if not any(r.get(k) is not None for r in rows)]
    if missing:
        hint = " (an audit metric needs its family in the suite's `audit:`, or --audit)" if set(missing) & set(AUDIT_METRICS) else ""
        notes.append(f"no row holds {', '.join(missing)}: shown as '-'{hint}")
    skipped = sorted({f"{r['method']} on {r['task']}" for r in rows if "skipped" in r or "error" in r})
    if skipped:
        notes.append("skipped or failed (see results.jsonl): " + ", ".join(skipped))
    return notes


def _print_wide(console: Console, table: Table) -> None:
    """Print ``table`` at its natural width (a paper table has many columns; never truncate numbers)."""
    width = Measurement.get(console, console.options.update(width=10_000), table).maximum
    narrow = console.width
    console.width = max(narrow, width)
    try:
        console.print(table)
    finally:
        console.width = narrow


def _cell(mean: float, std: float, n: int) -> str:
    if n == 0 or math.isnan(mean):
        return "-"
    return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _g(value: float | None) -> str:
    """Three significant digits (the sine errors span 0.4 to 1400), '-' for none, 'inf' for a divergence."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3g}"


# --- MinNorm-OG ----------------------------------------------------------------------------------


def _run_minnorm(config: SuiteConfig, console: Console) -> SuiteResult:
    """The sine data-poisoning table (spec 3.4a, 3.7), then the colour parts if installed."""
    from unlearnkit.suites.sine_poisoning import SINE_GRIDS, run_sine_benchmark
    from unlearnkit.suites.trials import TrialJournal

    sine = config.sine
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    markdown = ""
    if sine is not None:
        cache = (config.cache_dir or default_cache_dir()) / "sine"
        results = run_sine_benchmark(
            range(1, sine.seeds + 1),
            sine.budgets,
            sine.methods,
            original_epochs=sine.original_epochs,
            hidden=sine.hidden,
            cache_dir=cache,
            grid=SINE_GRIDS[sine.grid],
            progress=lambda line: console.print(f"  {line}", markup=False) if not console.quiet else None,
            journal=TrialJournal(
                config.out_dir / "sine.journal.jsonl",
                {"seeds": sine.seeds, "original_epochs": sine.original_epochs, "hidden": sine.hidden},
            ),
        )
        rows = [{"part": "sine"} | dataclasses.asdict(r) for r in results]
        atomic_write_json(config.out_dir / "sine.json", rows)
        table, markdown = sine_table(rows, sine.methods, config.title)
        _print_wide(console, table)
        notes += sine_notes(sine)
    for part in config.colour:
        colour_rows, note, colour_markdown = _run_colour(part, config, console)
        rows += colour_rows
        notes.append(note)
        markdown = "\n\n".join(m for m in (markdown, colour_markdown) if m)  # table.md holds every printed table
    return SuiteResult(rows, markdown, notes + list(config.notes))


def sine_table(rows: list[dict[str, Any]], methods: tuple[str, ...], title: str) -> tuple[Table, str]:
    """Table 1's layout: one row per T, one column per method; ``ours median (central range) | paper median``."""
    budgets = sorted({r["epochs"] for r in rows})
    by_key = {(r["epochs"], r["method"]): r for r in rows}
    headers = ["T", *methods]
    body = []
    for epochs in budgets:
        cells = [str(epochs)]
        for method in methods:
            row = by_key.get((epochs, method))
            if row is None:
                cells.append("-")
                continue
            paper = row.get("paper_median")
            ours = f"{_g(row['median'])} ({_g(row['low'])}, {_g(row['high'])})"
            cells.append(ours + f" | {_g(paper) if paper is not None else '-'}")
        body.append(cells)
    table = Table(title=title, caption="median sup-norm error over seeds (central range) | the paper's median (Table 1, spec 3.7); lower is better")
    for header in headers:
        table.add_column(header, justify="right", no_wrap=True)
    for cells in body:
        table.add_row(*cells)
    escaped = [[c.replace("|", "\\|") for c in cells] for cells in body]  # a cell holds "ours | paper"
    return table, _markdown(f"**{title}**: median (central range) \\| paper median", headers, escaped)


SINE_GRID_NOTES = {
    "full": "spec 3.6's grids (Table 7) in full, as the paper",
    "full-cpu": "spec 3.6's grids (Table 7) in full, except MinNorm-OG at T >= 100: one factor at a time around Table 6's setting",
    "default": "the default grid, a documented subset of spec 3.6's grids (Table 7); MinNorm-OG uses Table 6's setting",
    "reduced": "the reduced grid (the default grid with one own-parameter value at T >= 1000); MinNorm-OG uses Table 6's setting",
}


def sine_notes(sine: Any) -> list[str]:
    """How a sine run differs from the paper's (Table 1: 10 seeds, T in {10, 100, 1000}, 100,000-epoch originals, full grids)."""
    from unlearnkit.suites.sine_poisoning import EPOCH_BUDGETS, SEEDS
    from unlearnkit.tasks.sine import HIDDEN, ORIGINAL_EPOCHS

    differs = []
    if sine.seeds != len(SEEDS):
        differs.append(f"{sine.seeds} seeds (paper: {len(SEEDS)}; the central range drops 2 best and 2 worst only at 10)")
    if tuple(sine.budgets) != EPOCH_BUDGETS:
        differs.append(f"budgets T = {list(sine.budgets)} (paper: {list(EPOCH_BUDGETS)})")
    if sine.original_epochs != ORIGINAL_EPOCHS:
        differs.append(f"originals trained {sine.original_epochs} epochs (paper: {ORIGINAL_EPOCHS}): a less exact interpolation of D_r u D_f")
    if sine.hidden != HIDDEN:
        differs.append(f"MLP width {sine.hidden} (paper: {HIDDEN})")
    notes = [f"hyperparameters: {SINE_GRID_NOTES[sine.grid]}"]
    if differs:
        notes.insert(0, "NOT the paper's setup: " + "; ".join(differs))
    return notes


def _run_colour(part: str, config: SuiteConfig, console: Console) -> tuple[list[dict[str, Any]], str, str]:
    """Run ``unlearnkit.suites.colour_<part>`` if it is installed, through the first entry point it has.

    The colour runners are built separately; this calls ``run_<part>_benchmark`` (or
    ``run_colour_<part>_benchmark``, ``run_benchmark``) with those of ``dataset`` (the suite's
    ``colour_dataset``), ``quick``, ``device``, ``cache_dir``, ``out_json`` and ``progress`` that
    its signature names; its presets decide everything else (seeds, budgets, grids). Returns the
    rows (flat dicts), a note for the table and the table as Markdown (empty if it did not run).
    """
    module_name = f"unlearnkit.suites.colour_{part}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        return [], f"colour {part}: {module_name} is not available ({err}); this part was not run", ""
    names = (f"run_{part}_benchmark", f"run_colour_{part}_benchmark", "run_benchmark")
    entry = next((getattr(module, n) for n in names if callable(getattr(module, n, None))), None)
    if entry is None:
        return [], f"colour {part}: {module_name} has none of {', '.join(names)}; this part was not run", ""
    signature = inspect.signature(entry)
    if config.quick and "quick" not in signature.parameters:
        return [], f"colour {part}: {module_name}.{entry.__name__} has no quick option; not run in quick mode", ""
    available: dict[str, Any] = {
        "quick": config.quick,
        "device": config.device,
        "cache_dir": config.cache_dir or default_cache_dir(),
        "out_json": config.out_dir / f"colour_{part}.json",
        "progress": lambda line: console.print(f"  {line}", markup=False) if not console.quiet else None,
    }
    required = [p.name for p in signature.parameters.values() if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if any(name not in (*available, "dataset") for name in required):
        return [], f"colour {part}: {module_name}.{entry.__name__} needs {required}; the suite passes {sorted(available)} and dataset; not run", ""
    if "dataset" in signature.parameters:
        try:
            available["dataset"] = load_dataset(config.colour_dataset, config.data_root, config.cache_dir)
        except DataError as err:
            return [], f"colour {part}: dataset {config.colour_dataset} is not available ({err}); not run", ""
    result = entry(**{k: v for k, v in available.items() if k in signature.parameters})
    rows = [_as_row(part, r) for r in getattr(result, "rows", result) or []]
    markdown = ""
    if rows:
        table, markdown = _flat_table(f"MinNorm-OG colour {part} ({config.colour_dataset}; {entry.__name__})", rows)
        _print_wide(console, table)
    where = available["out_json"] if "out_json" in signature.parameters else "not written"
    return rows, f"colour {part}: ran {module_name}.{entry.__name__} on {config.colour_dataset} ({len(rows)} rows; JSON: {where})", markdown


def _flat_table(title: str, rows: list[dict[str, Any]]) -> tuple[Table, str]:
    """A plain table of the rows' scalar fields (the colour runners own their layouts), for the
    terminal and as Markdown; a missing value (no paper number) reads ``-``."""
    keys = [k for k, v in rows[0].items() if isinstance(v, (str, int, float)) or v is None]
    cells = [[_g(row.get(k)) if isinstance(row.get(k), float) or row.get(k) is None else str(row[k]) for k in keys] for row in rows]
    table = Table(title=title)
    for key in keys:
        table.add_column(key, justify="right", no_wrap=True)
    for line in cells:
        table.add_row(*line)
    return table, _markdown(f"### {title}", keys, cells)


def _markdown(heading: str, headers: list[str], body: list[list[str]]) -> str:
    """``heading``, a blank line, then a Markdown table of ``headers`` and the rows of ``body``."""
    lines = [heading, "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])


def _as_row(part: str, row: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(row):
        row = dataclasses.asdict(row)
    return {"part": f"colour_{part}"} | (dict(row) if isinstance(row, dict) else {"value": row})
