"""The benchmark grid: requests x methods x seeds, written to ``results.jsonl`` and resumable.

For every (request, seed) the original model (trained on all training data) and the oracle
(trained on D_r with the same recipe and seed) come from the checkpoint cache, so a repeated
benchmark trains neither again. Each finished (request, method, seed) row is appended to
``results.jsonl`` as soon as it is scored; a rerun with the same output folder skips rows already
there. Every row records what produced it (the request key, the training recipe and the method's
effective hyperparameters), so a rerun with other settings is refused instead of reprinting
stale rows; a row with an ``error`` (a diverged method) is retried, and readers take the latest
row per (dataset, model, task, method, seed).
"""

from __future__ import annotations

import json
import os
import platform
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from unlearnkit.audit import AuditConfig, Auditor
from unlearnkit.audit.reconstruction import save_image_grid
from unlearnkit.checkpoint import append_json_line, atomic_write_json, json_ready, read_json_lines, save_checkpoint
from unlearnkit.data import Dataset, default_cache_dir, load_dataset
from unlearnkit.methods import get_method, make_params, unlearn
from unlearnkit.metrics import DEFAULT_METRICS, compute_outputs, gap_to_oracle, score
from unlearnkit.metrics.tarf import tarf_gaps
from unlearnkit.runtime import resolve_device
from unlearnkit.tasks import TARF_TASKS, DeviceSplits, ForgetRequest, Hierarchy, attach_hierarchy, make_request, place
from unlearnkit.train import NonFiniteLossError, TrainJob, TrainRecipe, default_recipe, train_cached


@dataclass
class BenchConfig:
    """One benchmark grid. ``hparams`` maps a method name to its hyperparameter overrides."""

    dataset: str
    model: str
    tasks: list[str]
    methods: list[str]
    seeds: int = 1
    out: Path = Path("runs/bench")
    data_root: Path | None = None
    device: str = "auto"
    recipe: TrainRecipe | None = None
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    cache_dir: Path | None = None
    train_size: int | None = None  # a class-stratified subset of the training split (None: all of it)
    test_size: int | None = None
    audit: AuditConfig | None = None  # run the deep-forgetting audits on every row's model
    save_models: bool = False  # keep every model of the grid as OUT/models/<request>/seed<N>/<method>.safetensors
    hierarchy: dict[str, list[str]] | None = None  # {superclass: [fine class names]} for TARF tasks on a dataset without a built-in grouping

    def validate(self) -> None:
        refuse_repeats("--methods", self.methods)
        refuse_repeats("--task", self.tasks)
        for name in self.methods:
            get_method(name)  # raises with the list of valid names
        for name, overrides in self.hparams.items():
            if name in ("original", "retrain"):
                raise ValueError(f"--hparam {name}.*: the {name} reference row takes no hyperparameters (--epochs sets the training recipe)")
            method_cls = get_method(name)  # an unknown name is named as such, with the valid ones
            if name not in self.methods:
                raise ValueError(f"hyperparameters were given for {name!r}, which is not among --methods {self.methods}")
            make_params(method_cls, overrides)  # a typo fails now, not after training
        if self.seeds < 1:
            raise ValueError(f"--seeds must be at least 1; got {self.seeds}")
        if self.recipe is not None and self.recipe.epochs < 1:  # 0 epochs would cache an untrained "original"
            raise ValueError(f"--epochs must be at least 1; got {self.recipe.epochs}")
        for name, size in (("--train-size", self.train_size), ("--test-size", self.test_size)):
            if size is not None and size < 1:
                raise ValueError(f"{name} must be a positive number of samples; got {size}")

    def load(self) -> Dataset:
        """The configured dataset, reduced to the configured subset sizes (fixed subset seed 0)."""
        dataset = load_dataset(self.dataset, self.data_root, self.cache_dir).subset(self.train_size, self.test_size, seed=0)
        if self.hierarchy is None:
            return dataset
        return attach_hierarchy(dataset, Hierarchy.from_groups(dataset.class_names, self.hierarchy, "bench config"))


def refuse_repeats(option: str, names: list[str]) -> None:
    """A name given twice would run its rows twice and write duplicates: refuse it."""
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{option} names {', '.join(repeated)} more than once; list each once")


class SettingsChangedError(ValueError):
    """``results.jsonl`` holds finished rows of this grid made with other settings."""


def run_bench(config: BenchConfig, console: Console | None = None) -> list[dict[str, Any]]:
    """Run the grid and return its rows: the latest row per (task, method, seed) of the grid in
    ``config.out/results.jsonl``, reused or new. Rows of other grids in the same file are kept
    there (``unlearnkit report`` shows the whole file) but not returned.

    Raises:
        SettingsChangedError: before any training, when a finished row of the grid was made with
            another request, recipe or hyperparameters (rerunning would mix or reprint stale rows).
    """
    config.validate()
    console = console or Console(quiet=True)
    device = resolve_device(config.device)
    dataset = config.load()
    recipe = config.recipe or default_recipe(config.dataset)
    results_path = Path(config.out) / "results.jsonl"
    rows = read_results(results_path)
    check_rows(rows, str(results_path))
    rows = latest_rows(rows)
    requests = [make_request(dataset, task, seed=0) for task in config.tasks]  # validate every task first
    record_environment(Path(config.out))
    cells = [(_seeded(dataset, request, seed), seed) for request in requests for seed in range(config.seeds)]
    plan = [(request, seed, _cell_settings(config, request, recipe)) for request, seed in cells]
    done = _finished_ids(config, rows, plan, results_path)
    if done:
        todo = sum(len(settings) for _, _, settings in plan) - len(done)
        console.print(f"{len(done)} finished rows in {results_path} reused; {todo} to run", markup=False)
    with _progress(console) as progress:
        for request, seed, settings in plan:
            pending = [m for m in settings if _id(config, request, m, seed) not in done]
            if pending:  # one line per cell: the only progress a log file (no live bar) gets
                console.print(f"{request.spec}, seed {seed}: {', '.join(pending)}", markup=False)
                rows.extend(_run_cell(config, dataset, request, seed, recipe, device, pending, progress, results_path))
    grid = {_id(config, request, method, seed) for request, seed, settings in plan for method in settings}
    return [row for row in latest_rows(rows) if _row_id(row) in grid]


def _seeded(dataset: Dataset, request: ForgetRequest, seed: int) -> ForgetRequest:
    """A random request draws its own forget set per seed; class and TARF requests are fixed."""
    return make_request(dataset, request.spec, seed=seed) if seed > 0 and request.kind == "random" else request


def _cell_settings(config: BenchConfig, request: ForgetRequest, recipe: TrainRecipe) -> dict[str, dict[str, Any]]:
    """``{method: the settings its row must record}`` for one cell, reference rows first."""
    methods = ("original", "retrain", *config.methods)
    shared = {"request": request.key()} | _run_settings(config, recipe)
    return {m: shared | {"hparams": effective_hparams(config, request, m)} for m in methods}


def _run_settings(config: BenchConfig, recipe: TrainRecipe) -> dict[str, Any]:
    """The settings every row of this run records, as they read back from results.jsonl."""
    return {"recipe": _plain(asdict(recipe)), "audit": _plain(config.audit.describe()) if config.audit is not None else None}


def effective_hparams(config: BenchConfig, request: ForgetRequest, method: str) -> dict[str, Any]:
    """The hyperparameters ``method`` runs with in this request: defaults, the request's derived
    values, then the user's overrides (``{}`` for the original and oracle rows)."""
    if method in ("original", "retrain"):
        return {}
    method_cls = get_method(method)
    overrides = method_cls.request_overrides(config.hparams.get(method, {}), request)
    return _plain(asdict(make_params(method_cls, overrides)))


def _plain(value: Any) -> Any:
    """``value`` as it reads back from results.jsonl (tuples become lists, NaN null), for comparison."""
    return json.loads(json.dumps(json_ready(value), default=str))


def _finished_ids(config: BenchConfig, rows: list[dict[str, Any]], plan: list[tuple], results_path: Path) -> set[tuple]:
    """Ids of the planned rows already finished with the same settings.

    Raises SettingsChangedError naming every difference when a finished row was made otherwise.
    Rows with an ``error`` are not finished (a rerun retries them), whatever their settings.
    """
    finished = {_row_id(r): r for r in rows if "error" not in r}
    done, changes = set(), []
    for request, seed, settings in plan:
        for method, wanted in settings.items():
            row_id = _id(config, request, method, seed)
            if row_id not in finished:
                continue
            differences = _differences(finished[row_id], wanted, method)
            if differences:
                changes.extend(differences)
            elif not _lacks_outputs(config, request, seed, method, finished[row_id], wanted):
                done.add(row_id)
    if changes:
        shown = list(dict.fromkeys(changes))  # the same change repeats for every seed and task
        more = f" (and {len(shown) - 6} more)" if len(shown) > 6 else ""
        raise SettingsChangedError(
            f"{results_path} holds finished rows of this grid made with other settings: {'; '.join(shown[:6])}{more}. "
            f"Use a new --out for these settings (or delete {results_path} to replace its rows)"
        )
    return done


def _differences(row: dict[str, Any], wanted: dict[str, Any], method: str) -> list[str]:
    """What differs between the settings recorded in ``row`` and ``wanted``, e.g. ``"ga: lr 0.001 -> 0.01"``."""
    if "recipe" not in row:
        return [f"{method}: its row predates settings tracking (no recipe recorded), so it cannot be matched"]
    found = []
    if row.get("request") != wanted["request"]:
        found.append(f"{row['task']}: request {row.get('request')} -> {wanted['request']} (another forget set or --train-size/--test-size)")
    found += [f"recipe: {d}" for d in _changed(row["recipe"], wanted["recipe"])]
    found += [f"{method}: {d}" for d in _changed(row.get("hparams") or {}, wanted["hparams"])]
    if row.get("audit") is not None and wanted["audit"] is not None:
        found += [f"audit: {d}" for d in _changed(row["audit"], wanted["audit"])]
    return found


def _lacks_outputs(config: BenchConfig, request: ForgetRequest, seed: int, method: str, row: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """A finished row this run must redo because it asks for more: audits the row was run without,
    or a saved model (``--save-models``) that is not on disk."""
    if wanted["audit"] is not None and row.get("audit") is None:
        return True
    saved = _models_dir(config, request, seed) / f"{method}.safetensors"
    return config.save_models and "skipped" not in row and not saved.exists()


def _models_dir(config: BenchConfig, request: ForgetRequest, seed: int) -> Path:
    return Path(config.out) / "models" / _request_name(request) / f"seed{seed}"


def _changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [f"{key} {old.get(key)} -> {new.get(key)}" for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]


def _run_cell(
    config: BenchConfig,
    dataset: Dataset,
    request: ForgetRequest,
    seed: int,
    recipe: TrainRecipe,
    device: torch.device,
    pending: list[str],
    progress: Progress,
    results_path: Path,
) -> list[dict[str, Any]]:
    """Run the pending methods of one (request, seed) cell, appending each row to ``results_path``.

    The forward passes run here, on the device; the metrics (the MIA's SVC fits dominate) are
    scored in worker threads, so they overlap the next method's GPU work and each other. A row is
    written as soon as its scores (and the oracle's, for the Gap) are in, so a killed run keeps
    every row finished before it.
    """
    splits = place(request, device)
    cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    original, original_meta = _train(config, dataset, request, np.arange(len(dataset.train)), recipe, seed, splits, cache, progress, "original")
    oracle, oracle_meta = _train(config, dataset, request, request.oracle_idx, recipe, seed, splits, cache, progress, "oracle")
    base = {
        "dataset": config.dataset,
        "model": config.model,
        "task": request.spec,
        "request": request.key(),
        "seed": seed,
        "device": device.type,
        "n_train": len(dataset.train),
        "n_test": len(dataset.test),
    } | _run_settings(config, recipe)
    with ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1)) as pool:
        cell = _Cell(config, request, seed, recipe, splits, pool, progress)
        if config.audit is not None:
            cell.auditor = Auditor(request, splits, original, oracle, config.audit)
        if config.save_models:
            cell.models_dir = _models_dir(config, request, seed)
            cell.model_spec = original_meta["model_spec"]
        oracle_scores, oracle_audit = cell.submit(oracle, "retrain")
        references = {
            "original": (original, original_meta),
            "retrain": (oracle, oracle_meta),
        }
        writer = _RowWriter(results_path, base, oracle_scores)
        try:
            for method in pending:
                if method in references:
                    model, meta = references[method]
                    future, audited = (oracle_scores, oracle_audit) if method == "retrain" else cell.submit(model, method)
                    writer.add(method, future, meta["time_s"], {"hparams": {}, "cached": meta["cached"]} | audited)
                else:
                    writer.add(method, *cell.unlearn(original, method))
        finally:  # a crash in one method keeps every row finished before it
            writer.write_all()
            if cell.auditor is not None and cell.auditor.gallery:
                _save_gallery(cell.auditor, Path(config.out) / "audit" / f"{_request_name(request)}-seed{seed}.png")
    return writer.rows


@dataclass
class _RowWriter:
    """The rows of one cell, each appended to ``results_path`` the moment its scores (and the
    oracle's, for the Gap) are in: scoring runs in the pool, so rows are written from its threads."""

    results_path: Path
    base: dict[str, Any]
    oracle_scores: Future
    waiting: list[tuple[str, Future | None, float, dict[str, Any]]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, future: Future | None, time_s: float, extra: dict[str, Any]) -> None:
        with self.lock:
            self.waiting.append((method, future, time_s, extra))
        for pending in (future, self.oracle_scores):
            if pending is not None:  # runs at once if already done
                pending.add_done_callback(lambda _: self.write_ready())

    def write_ready(self) -> None:
        """Append the rows, in plan order, up to the first whose scoring is still running (scoring
        takes seconds, so a row waits little; the file keeps the ``--methods`` order that
        ``report`` shows). A failed scoring is left for :meth:`write_all`."""
        if not _succeeded(self.oracle_scores):
            return
        with self.lock:
            while self.waiting and (self.waiting[0][1] is None or _succeeded(self.waiting[0][1])):
                try:
                    self._append(*self.waiting[0])
                except Exception:  # noqa: BLE001 - a callback's error is only logged: keep the row for write_all, which raises it
                    return
                self.waiting.pop(0)

    def write_all(self) -> None:
        """Wait for every scoring, then append the remaining rows (raises a scoring's exception)."""
        wait([self.oracle_scores, *(entry[1] for entry in self.waiting if entry[1] is not None)])
        errors = []
        with self.lock:
            waiting, self.waiting = self.waiting, []
            for entry in waiting:  # every row that can be written is, before the first error is raised
                try:
                    self._append(*entry)
                except Exception as err:  # noqa: BLE001
                    errors.append(err)
        if errors:
            raise errors[0]

    def _append(self, method: str, future: Future | None, time_s: float, extra: dict[str, Any]) -> None:
        oracle_metrics = self.oracle_scores.result()
        metrics = future.result() if future is not None else {}
        gap = gap_to_oracle(metrics, oracle_metrics) if metrics else None
        tarf = tarf_gaps(metrics, oracle_metrics) if metrics and "ua_given" in metrics else {}  # gap_given, gap_target
        row = self.base | {"method": method} | metrics | {"gap": gap} | tarf | {"time_s": time_s} | extra
        append_result(self.results_path, row)
        self.rows.append(row)


def _succeeded(future: Future) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def _save_gallery(auditor: Auditor, path: Path) -> None:
    """One image grid per cell: the true forget samples, then every audited model's reconstruction."""
    images, _ = auditor.reconstruction_targets()
    save_image_grid(images.cpu(), auditor.gallery, path)


def _request_name(request: ForgetRequest) -> str:
    """A file-name-safe, readable and unique name: the task spec plus the request key's start."""
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in request.spec)[:60]
    return f"{slug}-{request.key()[:8]}"


@dataclass
class _Cell:
    """One (request, seed) cell of the grid: unlearns and submits scoring to the worker pool."""

    config: BenchConfig
    request: ForgetRequest
    seed: int
    recipe: TrainRecipe
    splits: DeviceSplits
    pool: ThreadPoolExecutor
    progress: Progress

    auditor: Auditor | None = None
    models_dir: Path | None = None
    model_spec: dict[str, Any] | None = None

    def submit(self, model: torch.nn.Module, name: str) -> tuple[Future, dict[str, Any]]:
        """Score ``model`` in the pool; save and audit it here (the audits use the device)."""
        if self.models_dir is not None:
            save_checkpoint(model, self.models_dir / f"{name}.safetensors", self._provenance(name))
        outputs = compute_outputs(model, self.request, self.splits)  # refuses NaN/inf outputs before any audit
        audited = self.auditor.audit(model, name) if self.auditor is not None else {}
        metrics = (*DEFAULT_METRICS, "tarf") if self.request.kind in TARF_TASKS else DEFAULT_METRICS  # spec 5.6 keys on TARF tasks
        return self.pool.submit(score, outputs, self.request, metrics), audited

    def _provenance(self, name: str) -> dict[str, Any]:
        """A saved model's sidecar: how to rebuild it and what it was made on, which
        ``unlearnkit audit`` checks before auditing it."""
        dataset = self.request.dataset
        return {"model_spec": self.model_spec, "method": name, "task": self.request.spec, "seed": self.seed,
                "dataset": dataset.name, "data_fingerprint": dataset.fingerprint(), "request": self.request.key()}

    def unlearn(self, original: torch.nn.Module, method: str) -> tuple[Future | None, float, dict[str, Any]]:
        method_cls = get_method(method)
        overrides = method_cls.request_overrides(self.config.hparams.get(method, {}), self.request)
        reason = method_cls.inapplicable(self.request.forget_classes)
        hparams = effective_hparams(self.config, self.request, method)  # recorded so a rerun can match the row
        if reason:  # e.g. a class-wise-only method in a random-sample cell of --methods all
            return None, float("nan"), {"hparams": hparams, "skipped": reason}
        task = self.progress.add_task(f"{method} (seed {self.seed})", total=None)
        try:
            model, record = unlearn(original, self.request, method, seed=self.seed, device=self.splits.train.device, recipe=self.recipe, splits=self.splits, **overrides)
            future, audited = self.submit(model, method)
        except NonFiniteLossError as err:  # a diverging method (NaN loss or NaN outputs) is a result, not a crash of the grid
            return None, float("nan"), {"hparams": hparams, "error": str(err)}
        finally:
            self.progress.remove_task(task)
        details = {"hparams": record.hparams, "steps": record.steps, "access": record.access, "record": scalar_details(record.extra)}
        return future, record.time_s, details | audited


def scalar_details(extra: dict[str, Any]) -> dict[str, Any]:
    """The single-value diagnostics a method reports (e.g. ``iu``'s ``relative_update``, ``ssd``'s
    ``dampened_fraction``, ``pour-p``'s ``direction`` name), kept in the row: numbers, strings and
    booleans; numpy scalars and one-element arrays or tensors become Python values, and per-step
    lists stay in the in-memory record."""
    details = {}
    for key, value in extra.items():
        if _is_one_value(value):  # np.float32(1.0), torch.tensor(1.0), torch.tensor([1.0])
            value = value.item()
        if isinstance(value, int | float | str | bool):
            details[key] = value
    return details


def _is_one_value(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, np.ndarray | np.generic) and value.size == 1


def _train(config, dataset, request, train_idx, recipe, seed, splits: DeviceSplits, cache, progress: Progress, role: str):
    job = TrainJob(dataset, config.model, train_idx, request.train_labels, request.label_space, recipe, seed)
    task = progress.add_task(f"train {role} (seed {seed})", total=recipe.epochs)
    model, meta = train_cached(
        job,
        splits.train,
        cache_dir=cache,
        test_images=splits.test,
        test_idx=request.test_retain_idx,
        progress=lambda done, total, loss: progress.update(task, completed=done),
    )
    progress.remove_task(task)
    return model, meta


def _id(config: BenchConfig, request: ForgetRequest, method: str, seed: int) -> tuple:
    return (config.dataset, config.model, request.spec, method, seed)


REQUIRED_KEYS = ("task", "method", "seed")  # what every row of `unlearnkit bench` has and the tables need


TEXT_KEYS = ("dataset", "model", "task", "method")
NUMBER_KEYS = ("forget_acc", "retain_acc", "test_acc", "test_forget_acc", "mia", "gap", "time_s")


def check_rows(rows: list[Any], source: str) -> None:
    """Raise ValueError naming ``source`` and the problem when ``rows`` are not bench results:
    missing keys, or a value of the wrong type (a table would crash or mislabel on it)."""
    hint = "give the results.jsonl written by `unlearnkit bench --out DIR`"
    missing = sorted({key for row in rows for key in REQUIRED_KEYS if not isinstance(row, dict) or key not in row})
    if missing:
        raise ValueError(
            f"{source} is not a bench results file: rows lack the key(s) {', '.join(map(repr, missing))} "
            f"(every row needs {', '.join(REQUIRED_KEYS)}); {hint}"
        )
    for number, row in enumerate(rows, start=1):
        problem = _row_type_problem(row)
        if problem:
            raise ValueError(f"{source} is not a bench results file: row {number} has {problem}; {hint}")


def _row_type_problem(row: dict[str, Any]) -> str | None:
    for key in TEXT_KEYS:
        if key in row and not isinstance(row[key], str):
            return f"{key}={row[key]!r} (expected text)"
    if isinstance(row["seed"], bool) or not isinstance(row["seed"], int):
        return f"seed={row['seed']!r} (expected a whole number)"
    for key in NUMBER_KEYS:
        value = row.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"{key}={value!r} (expected a number or null)"
    return None


def _row_id(row: dict[str, Any]) -> tuple:
    return (row.get("dataset"), row.get("model"), row["task"], row["method"], row.get("seed"))


def latest_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last row per (dataset, model, task, method, seed), in first-seen order: a retried
    row (after an ``error``) supersedes the earlier one."""
    latest = {_row_id(row): row for row in rows}
    return list(latest.values())


def read_results(path: Path) -> list[dict[str, Any]]:
    """Rows of a results file; a torn line (a crash mid-write) is dropped with a warning, not fatal."""
    return read_json_lines(path)


def append_result(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON row and flush it to disk, so a crash loses at most the row being written."""
    append_json_line(path, json_ready(row), default=str, allow_nan=False)  # NaN/inf (e.g. a random request's forgotten-class test accuracy) as null


def environment() -> dict[str, str]:
    """Where a benchmark ran (written next to the results)."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    return {"python": platform.python_version(), "torch": torch.__version__, "gpu": gpu, "cpus": str(os.cpu_count())}


def record_environment(out: Path) -> None:
    """Write where these rows are computed to ``out/environment.json``.

    A folder resumed on another machine keeps the other environments under ``earlier``, and a
    warning says that its ``time_s`` values then mix machines.
    """
    path = out / "environment.json"
    current = environment()
    try:
        previous = json.loads(path.read_text()) if path.exists() else None
    except (OSError, json.JSONDecodeError):
        previous = None  # unreadable (torn by a crash): nothing to keep
    known = []
    if isinstance(previous, dict):
        known = [*previous.pop("earlier", []), previous]
    others = [env for i, env in enumerate(known) if env != current and env not in known[:i]]
    if known and known[-1] != current:
        warnings.warn(f"rows in {out} were also computed on another machine ({path} lists each); "
                      "their time_s values are not comparable", stacklevel=2)
    atomic_write_json(path, {**current, "earlier": others} if others else current)


class _CountColumn(ProgressColumn):
    """``done/total`` for a counted task (training epochs); nothing for an open-ended one (a method run)."""

    def render(self, task: Task) -> Text:
        return Text("" if task.total is None else f"{task.completed:g}/{task.total:g}")


@contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    columns = (TextColumn("{task.description}"), BarColumn(), _CountColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=console.quiet) as progress:
        yield progress


def with_epochs(recipe: TrainRecipe, epochs: int | None) -> TrainRecipe:
    return recipe if epochs is None else replace(recipe, epochs=epochs)
