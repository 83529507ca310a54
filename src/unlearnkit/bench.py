"""The benchmark grid: requests x methods x seeds, written to ``results.jsonl`` and resumable.

For every (request, seed) the original model (trained on all training data) and the oracle
(trained on D_r with the same recipe and seed) come from the checkpoint cache, so a repeated
benchmark trains neither again. Each finished (request, method, seed) row is appended to
``results.jsonl`` at once; a rerun with the same output folder skips rows already there.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from unlearnkit.audit import AuditConfig, Auditor
from unlearnkit.audit.reconstruction import save_image_grid
from unlearnkit.checkpoint import append_json_line, read_json_lines, save_checkpoint
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
        for name in self.methods:
            get_method(name)  # raises with the list of valid names
        for name, overrides in self.hparams.items():
            if name not in self.methods:
                raise ValueError(f"hyperparameters were given for {name!r}, which is not among --methods {self.methods}")
            make_params(get_method(name), overrides)  # a typo fails now, not after training
        if self.seeds < 1:
            raise ValueError(f"--seeds must be at least 1; got {self.seeds}")
        for name, size in (("--train-size", self.train_size), ("--test-size", self.test_size)):
            if size is not None and size < 1:
                raise ValueError(f"{name} must be a positive number of samples; got {size}")

    def load(self) -> Dataset:
        """The configured dataset, reduced to the configured subset sizes (fixed subset seed 0)."""
        dataset = load_dataset(self.dataset, self.data_root, self.cache_dir).subset(self.train_size, self.test_size, seed=0)
        if self.hierarchy is None:
            return dataset
        return attach_hierarchy(dataset, Hierarchy.from_groups(dataset.class_names, self.hierarchy, "bench config"))


def run_bench(config: BenchConfig, console: Console | None = None) -> list[dict[str, Any]]:
    """Run the grid and return every row of ``config.out/results.jsonl`` (old and new)."""
    config.validate()
    console = console or Console(quiet=True)
    device = resolve_device(config.device)
    dataset = config.load()
    recipe = config.recipe or default_recipe(config.dataset)
    results_path = Path(config.out) / "results.jsonl"
    rows = read_results(results_path)
    done = {_row_id(r) for r in rows}
    requests = [make_request(dataset, task, seed=0) for task in config.tasks]  # validate every task first
    with _progress(console) as progress:
        for request in requests:
            for seed in range(config.seeds):
                if seed > 0 and request.kind == "random":
                    request = make_request(dataset, request.spec, seed=seed)
                pending = [m for m in ("original", "retrain", *config.methods) if _id(config, request, m, seed) not in done]
                if not pending:
                    continue
                rows.extend(_run_cell(config, dataset, request, seed, recipe, device, pending, progress, results_path))
    return rows


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
    scored in worker threads, so they overlap the next method's GPU work and each other.
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
    }
    rows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1)) as pool:
        cell = _Cell(config, request, seed, recipe, splits, pool, progress)
        if config.audit is not None:
            cell.auditor = Auditor(request, splits, original, oracle, config.audit)
        if config.save_models:
            cell.models_dir = Path(config.out) / "models" / _request_name(request) / f"seed{seed}"
            cell.model_spec = original_meta["model_spec"]
        oracle_scores, oracle_audit = cell.submit(oracle, "retrain")
        references = {
            "original": (original, original_meta),
            "retrain": (oracle, oracle_meta),
        }
        scored: list[tuple[str, Future | None, float, dict[str, Any]]] = []
        try:
            for method in pending:
                if method in references:
                    model, meta = references[method]
                    future, audited = (oracle_scores, oracle_audit) if method == "retrain" else cell.submit(model, method)
                    scored.append((method, future, meta["time_s"], {"hparams": {}, "cached": meta["cached"]} | audited))
                else:
                    scored.append((method, *cell.unlearn(original, method)))
        finally:  # a crash in one method keeps every row finished before it
            oracle_metrics = oracle_scores.result()
            for method, future, time_s, extra in scored:
                metrics = future.result() if future is not None else {}
                gap = gap_to_oracle(metrics, oracle_metrics) if metrics else None
                tarf = tarf_gaps(metrics, oracle_metrics) if metrics and "ua_given" in metrics else {}  # gap_given, gap_target
                row = base | {"method": method} | metrics | {"gap": gap} | tarf | {"time_s": time_s} | extra
                append_result(results_path, row)
                rows.append(row)
            if cell.auditor is not None and cell.auditor.gallery:
                _save_gallery(cell.auditor, Path(config.out) / "audit" / f"{_request_name(request)}-seed{seed}.png")
    return rows


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
            meta = {"model_spec": self.model_spec, "method": name, "task": self.request.spec, "seed": self.seed}
            save_checkpoint(model, self.models_dir / f"{name}.safetensors", meta)
        audited = self.auditor.audit(model, name) if self.auditor is not None else {}
        metrics = (*DEFAULT_METRICS, "tarf") if self.request.kind in TARF_TASKS else DEFAULT_METRICS  # spec 5.6 keys on TARF tasks
        return self.pool.submit(score, compute_outputs(model, self.request, self.splits), self.request, metrics), audited

    def unlearn(self, original: torch.nn.Module, method: str) -> tuple[Future | None, float, dict[str, Any]]:
        method_cls = get_method(method)
        overrides = method_cls.request_overrides(self.config.hparams.get(method, {}), self.request)
        reason = method_cls.inapplicable(self.request.forget_classes)
        if reason:  # e.g. a class-wise-only method in a random-sample cell of --methods all
            return None, float("nan"), {"hparams": overrides, "skipped": reason}
        task = self.progress.add_task(f"{method} (seed {self.seed})", total=None)
        try:
            model, record = unlearn(original, self.request, method, seed=self.seed, device=self.splits.train.device, recipe=self.recipe, splits=self.splits, **overrides)
        except NonFiniteLossError as err:  # a diverging method is a result, not a crash of the grid
            return None, float("nan"), {"hparams": overrides, "error": str(err)}
        finally:
            self.progress.remove_task(task)
        future, audited = self.submit(model, method)
        return future, record.time_s, {"hparams": record.hparams, "steps": record.steps, "access": record.access} | audited


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


def _row_id(row: dict[str, Any]) -> tuple:
    return (row["dataset"], row["model"], row["task"], row["method"], row["seed"])


def read_results(path: Path) -> list[dict[str, Any]]:
    """Rows of a results file; a torn last line (a crash mid-write) is dropped, not fatal."""
    return read_json_lines(path)


def append_result(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON row and flush it to disk, so a crash loses at most the row being written."""
    append_json_line(path, _finite(row), default=_jsonable, allow_nan=False)


def _finite(value: Any) -> Any:
    """NaN/inf (e.g. forgotten-class test accuracy of a random request) become null: strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)


def environment() -> dict[str, str]:
    """Where a benchmark ran (written next to the results)."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    return {"python": platform.python_version(), "torch": torch.__version__, "gpu": gpu, "cpus": str(os.cpu_count())}


@contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=console.quiet) as progress:
        yield progress


def with_epochs(recipe: TrainRecipe, epochs: int | None) -> TrainRecipe:
    return recipe if epochs is None else replace(recipe, epochs=epochs)
