"""Checkpoints: safetensors weights plus a JSON sidecar, written atomically.

No pickle is involved anywhere, so loading a checkpoint from someone else cannot run code.
The sidecar (``<name>.json`` next to ``<name>.safetensors``) records how to rebuild the model
(``model_spec``), the training config, a data fingerprint and metrics.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or does not fit the model."""


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json_lines(path: Path) -> list[Any]:
    """The objects of a JSON-lines file (none if it is missing); a torn line (a crash mid-write) is dropped."""
    if not path.exists():
        return []
    objects = []
    for line in path.read_text().splitlines():
        try:
            objects.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return objects


def append_json_line(path: Path, obj: Any, **dumps: Any) -> None:
    """Append ``obj`` as one JSON line (``json.dumps`` options in ``dumps``) and flush it to disk,
    so a crash loses at most the line being written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(obj, **dumps) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def sidecar_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Save ``tensors`` as safetensors, then the sidecar: a sidecar present means the pair is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    atomic_write_json(sidecar_path(path), meta)


def save_checkpoint(model: nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Save a model's ``state_dict`` and ``meta`` (must be JSON-serialisable) at ``path``."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    save_tensors(path, dict(model.state_dict()), meta or {})
    return path


def read_sidecar(path: str | Path) -> dict[str, Any]:
    side = sidecar_path(Path(path).with_suffix(".safetensors"))
    if not side.exists():
        raise CheckpointError(f"checkpoint sidecar {side} is missing (an interrupted save?); re-create the checkpoint")
    try:
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint sidecar {side} is not valid JSON ({err}); re-create the checkpoint") from err
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint sidecar {side} holds a {type(meta).__name__}, not a JSON object; re-create the checkpoint")
    return meta


def read_tensors(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a truncated or foreign file is a :class:`CheckpointError`."""
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors checkpoint ({err}); it may be truncated by an interrupted copy "
            "or not a checkpoint at all: re-create it"
        ) from err


def load_state(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load weights saved by :func:`save_checkpoint` into ``model``; return the sidecar."""
    path = Path(path).with_suffix(".safetensors")
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    meta = read_sidecar(path)
    state = read_tensors(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} does not fit this model: {err}") from err
    return meta


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a toolkit model from a checkpoint's ``model_spec`` and load its weights."""
    from unlearnkit.models import build_from_spec

    meta = read_sidecar(path)
    spec = meta.get("model_spec")
    if not spec:
        raise CheckpointError(f"{path} has no model_spec in its sidecar; build the model yourself and call load_state "
                              "(to audit your own architecture, pass the loaded modules to unlearnkit.audit.run_audit)")
    model = build_from_spec(spec)
    load_state(model, path)
    return model.to(device), meta


def cached_fit(model: nn.Module, fit: Callable[[nn.Module], None], key: dict[str, Any], cache_dir: str | Path | None) -> nn.Module:
    """``model`` trained in place by ``fit(model)``, or loaded instead when ``cache_dir`` holds a
    checkpoint of the same ``key`` (a JSON-able dict; ``key["kind"]`` starts the file name).

    For models that are not :class:`~unlearnkit.train.TrainJob` s (the benchmark suites' sine MLPs
    and two-head colour models); the checkpoint is safetensors plus a sidecar holding ``key``.
    """
    if cache_dir is None:
        fit(model)
        return model.eval()
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{key.get('kind', 'model')}-{digest}.safetensors"
    if path.exists() and sidecar_path(path).exists():
        try:
            load_state(model, path)
            return model.eval()
        except CheckpointError as err:  # a damaged cache entry is refitted, not fatal
            log.warning("refitting %s: %s", path.name, err)
    fit(model)
    save_tensors(path, dict(model.state_dict()), {"key": key})
    return model.eval()

