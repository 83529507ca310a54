"""Damaged checkpoints: a clear CheckpointError naming the file, and a damaged cache entry refitted."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from unlearnkit.checkpoint import CheckpointError, cached_fit, load_state, read_sidecar, save_checkpoint


def _saved(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3))
    return model, save_checkpoint(model, tmp_path / "model", {"note": "x"})


def test_a_truncated_weights_file_is_a_checkpoint_error_naming_it(tmp_path) -> None:
    model, path = _saved(tmp_path)
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(CheckpointError, match=r"model\.safetensors is not a readable safetensors checkpoint"):
        load_state(model, path)


def test_a_foreign_file_is_a_checkpoint_error(tmp_path) -> None:
    model, path = _saved(tmp_path)
    path.write_bytes(b"not a checkpoint at all, just some text")
    with pytest.raises(CheckpointError, match="re-create it"):
        load_state(model, path)


def test_a_broken_sidecar_names_the_sidecar(tmp_path) -> None:
    _, path = _saved(tmp_path)
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"model\.json is not valid JSON"):
        read_sidecar(path)
    path.with_suffix(".json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="not a JSON object"):
        read_sidecar(path)


def test_a_damaged_cache_entry_is_refitted_and_replaced(tmp_path) -> None:
    fits: list[int] = []

    def fit(model: nn.Module) -> None:
        fits.append(1)
        with torch.no_grad():
            model[0].weight.fill_(0.5)

    key = {"kind": "toy", "n": 1}
    cached_fit(nn.Sequential(nn.Linear(4, 3)), fit, key, tmp_path)
    (entry,) = tmp_path.glob("toy-*.safetensors")
    entry.write_bytes(entry.read_bytes()[:20])
    refitted = cached_fit(nn.Sequential(nn.Linear(4, 3)), fit, key, tmp_path)
    assert len(fits) == 2 and torch.all(refitted[0].weight == 0.5)
    reloaded = cached_fit(nn.Sequential(nn.Linear(4, 3)), fit, key, tmp_path)
    assert len(fits) == 2 and torch.all(reloaded[0].weight == 0.5)  # the rewritten entry loads again
