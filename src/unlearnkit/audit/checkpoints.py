"""Audit saved checkpoints: rebuild the models, the dataset and the request, then :func:`run_audit`."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console

from unlearnkit.audit.auditor import AuditConfig
from unlearnkit.audit.report import run_audit
from unlearnkit.checkpoint import CheckpointError, load_model, weights_path
from unlearnkit.data import Dataset, load_dataset
from unlearnkit.runtime import resolve_device
from unlearnkit.tasks import ForgetRequest, make_request, place


def audit_checkpoints(
    checkpoints: dict[str, Path],
    dataset: str,
    task: str,
    out: Path,
    config: AuditConfig,
    *,
    data_root: Path | None = None,
    request_seed: int = 0,
    train_size: int | None = None,
    test_size: int | None = None,
    device: str = "auto",
    console: Console | None = None,
) -> dict[str, Any]:
    """Load each named checkpoint (toolkit safetensors + sidecar) and audit them on ``task``.

    The dataset subset (``train_size``/``test_size``, subset seed 0 as in ``bench``) and the
    request seed must be the ones the models were trained and unlearned with: indices of the
    forget set are only meaningful on the same data.
    """
    target = resolve_device(device)
    for name, path in checkpoints.items():
        if not weights_path(path).exists():
            raise CheckpointError(f"--{name} {path}: no such checkpoint (expected a .safetensors file with a .json sidecar)")
    loaded = {name: load_model(path, target) for name, path in checkpoints.items()}
    models = {name: model for name, (model, _) in loaded.items()}
    data = load_dataset(dataset, data_root).subset(train_size, test_size, seed=0)
    request = make_request(data, task, seed=request_seed)
    for name, (_, meta) in loaded.items():
        check_provenance(f"--{name} {checkpoints[name]}", meta, data, request)
    if console is not None:
        console.print(f"auditing {', '.join(models)} on {request.summary()}")
    context = {"checkpoints": {k: str(v) for k, v in checkpoints.items()}, "dataset": dataset, "task": task,
               "request_seed": request_seed, "train_size": train_size, "test_size": test_size}
    status = console.status(f"auditing {len(models)} models ({', '.join(config.families)})") if console else nullcontext()
    with status:  # a spinner on a terminal: the attacks take minutes on a CPU
        return run_audit(request, place(request, target), models, Path(out), config, context)


def check_provenance(what: str, meta: dict[str, Any], data: Dataset, request: ForgetRequest) -> None:
    """Refuse a checkpoint whose sidecar says it was made on other data or for another request:
    forget-set indices only mean the same samples on the same data, so such an audit would
    silently measure the wrong thing. Sidecars that do not record a field are not checked on it."""
    recorded = {
        "dataset": (meta.get("dataset"), data.name, "--dataset"),
        "data_fingerprint": (meta.get("data_fingerprint"), data.fingerprint(), "--train-size/--test-size or --data-root"),
        "task": (meta.get("task"), request.spec, "--task"),
        "request": (meta.get("request"), request.key(), "--task, --request-seed or the subset sizes"),
    }
    for field, (saved, current, option) in recorded.items():
        if saved is not None and saved != current:
            raise CheckpointError(
                f"{what} was made with {field} {saved!r}, but this audit uses {current!r}; "
                f"give the {option} the model was made with"
            )
