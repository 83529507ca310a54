"""Checkpoints: safetensors weights plus a JSON sidecar, written atomically.

No pickle is involved anywhere, so loading a checkpoint from someone else cannot run code.
The sidecar (``<name>.json`` next to ``<name>.safetensors``) records how to rebuild the model
(``model_spec``), the training config, a data fingerprint and metrics.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or does not fit the model."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# The mode a plain open() would give a new file; mkstemp's temporary files are 0600, and a
# checkpoint or report moved into place should be as readable as any other file the user writes.
_FILE_MODE = 0o666 & ~_umask()


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new temporary file in ``path``'s folder (created if needed), with the usual file mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, _FILE_MODE)
    return fd, tmp


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_ready(value: Any) -> Any:
    """``value`` for strict JSON: NaN/inf become null, numpy scalars numbers, arrays, tensors, tuples
    and sets lists, dict keys strings (recursively); other objects are left to ``json.dumps``."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, np.ndarray | torch.Tensor):
        value = value.tolist()
    if isinstance(value, list | tuple | set | frozenset):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON (:func:`json_ready`; anything else unknown as its ``str``), atomically."""
    atomic_write_bytes(path, _json_bytes(obj))


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(json_ready(obj), indent=2, sort_keys=True, default=str, allow_nan=False) + "\n").encode()


def read_json_lines(path: Path) -> list[Any]:
    """The objects of a JSON-lines file (none if it is missing). A line that is not JSON (a crash
    mid-write tears the last one) is dropped with a warning naming its line numbers."""
    if not path.exists():
        return []
    objects, torn = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            objects.append(json.loads(line))
        except json.JSONDecodeError:
            torn.append(number)
    if torn:
        shown = ", ".join(map(str, torn[:5])) + (f" and {len(torn) - 5} more" if len(torn) > 5 else "")
        warnings.warn(f"{path}: line(s) {shown} are not JSON (a write torn by a crash?) and are ignored", stacklevel=2)
    return objects


def append_json_line(path: Path, obj: Any, **dumps: Any) -> None:
    """Append ``obj`` as one JSON line (``json.dumps`` options in ``dumps``) and flush it to disk,
    so a crash loses at most the line being written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torn_tail = path.exists() and path.stat().st_size > 0 and _last_byte(path) != b"\n"
    with path.open("a") as handle:
        # After a crash mid-write the file ends in a partial line: start a new one, or this
        # object would be glued to the fragment and lost with it.
        handle.write(("\n" if torn_tail else "") + json.dumps(obj, **dumps) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1)


def sidecar_path(weights: Path) -> Path:
    """Where the JSON sidecar of the ``.safetensors`` file ``weights`` lives."""
    return weights.with_suffix(".json")


def weights_path(path: str | Path) -> Path:
    """The weights file of a checkpoint named ``path``: ``path`` itself if it ends in ``.safetensors``,
    else ``path`` with ``.safetensors`` appended (so ``model.v1`` and ``model.v2`` stay two checkpoints)."""
    path = Path(path)
    return path if path.suffix == ".safetensors" else path.with_name(path.name + ".safetensors")


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Save ``tensors`` as safetensors, then the sidecar: a sidecar present means the pair is complete.

    The weights file's header holds a hash of the tensors and one of the sidecar it was saved
    with, so a pair torn by a crash between the two writes (new weights beside an old sidecar)
    and corrupted weights are both refused on load instead of read as a valid checkpoint.
    """
    path = Path(path)
    cpu = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    sidecar = _json_bytes(meta)
    header = {"tensors_sha256": tensors_digest(cpu), "sidecar_sha256": hashlib.sha256(sidecar).hexdigest()}
    fd, tmp = _temp_beside(path)
    os.close(fd)
    try:
        save_file(cpu, tmp, metadata=header)
        os.chmod(tmp, _FILE_MODE)  # save_file writes the file anew, with mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    atomic_write_bytes(sidecar_path(path), sidecar)


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of CPU ``tensors`` (in name order)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(model: nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Save a model's ``state_dict`` and ``meta`` (must be JSON-serialisable) as ``path``.safetensors
    (:func:`weights_path`) plus its JSON sidecar; return the weights file's path."""
    if str(path).endswith(("/", os.sep)) or Path(path).is_dir():
        raise CheckpointError(f"{path} is a folder; give a checkpoint file name inside it, e.g. {Path(path) / 'model'}")
    path = weights_path(path)
    save_tensors(path, dict(model.state_dict()), meta or {})
    return path


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The JSON sidecar (config, fingerprint, metrics) of the checkpoint at ``path``."""
    side = sidecar_path(weights_path(path))
    if not side.exists():
        raise CheckpointError(f"checkpoint sidecar {side} is missing (an interrupted save?); re-create the checkpoint")
    try:
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint sidecar {side} is not valid JSON ({err}); re-create the checkpoint") from err
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint sidecar {side} holds a {type(meta).__name__}, not a JSON object; re-create the checkpoint")
    return meta


def read_tensors(path: str | Path, device: str = "cpu", *, same_save: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a truncated, foreign or corrupted file is a
    :class:`CheckpointError`. With ``same_save`` (the toolkit's own partial and cached models),
    so is a sidecar from another save than the weights; a user may edit their own sidecar.
    Files saved before the header hashes existed are read unchecked."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors checkpoint ({err}); it may be truncated by an interrupted copy "
            "or not a checkpoint at all: re-create it"
        ) from err
    _verify(Path(path), header, tensors, same_save)
    return tensors if device == "cpu" else {k: v.to(device) for k, v in tensors.items()}


def _verify(path: Path, header: dict[str, str], tensors: dict[str, torch.Tensor], same_save: bool) -> None:
    if "tensors_sha256" in header and tensors_digest(tensors) != header["tensors_sha256"]:
        raise CheckpointError(f"{path}'s weights do not match the hash saved with them (corrupted on disk?); re-create it")
    side = sidecar_path(path)
    if same_save and "sidecar_sha256" in header and hashlib.sha256(side.read_bytes()).hexdigest() != header["sidecar_sha256"]:
        raise CheckpointError(
            f"{side.name} is not the sidecar {path.name} was saved with (a save interrupted between the two files?); "
            "re-create the checkpoint"
        )


def load_state(model: nn.Module, path: str | Path, *, same_save: bool = False) -> dict[str, Any]:
    """Load weights saved by :func:`save_checkpoint` into ``model``; return the sidecar
    (``same_save``: see :func:`read_tensors`)."""
    given, path = Path(path), weights_path(path)
    if not path.exists():
        if given != path and given.is_file():
            raise CheckpointError(
                f"{given} is not a safetensors checkpoint (no {path.name} beside it); the toolkit never unpickles "
                "files, so a torch.save file cannot be loaded: load it yourself if you trust it and re-save it "
                "with unlearnkit.save_checkpoint"
            )
        raise CheckpointError(f"no checkpoint at {path}")
    meta = read_sidecar(path)
    state = read_tensors(path, same_save=same_save)
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
            load_state(model, path, same_save=True)
            return model.eval()
        except CheckpointError as err:  # a damaged cache entry is refitted, not fatal
            log.warning("refitting %s: %s", path.name, err)
    fit(model)
    save_tensors(path, dict(model.state_dict()), {"key": key})
    return model.eval()

