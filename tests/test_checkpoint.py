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


def test_dotted_names_are_distinct_checkpoints(tmp_path) -> None:
    first, second = nn.Sequential(nn.Linear(4, 3)), nn.Sequential(nn.Linear(4, 3))
    assert save_checkpoint(first, tmp_path / "model.v1").name == "model.v1.safetensors"
    save_checkpoint(second, tmp_path / "model.v2")
    restored = nn.Sequential(nn.Linear(4, 3))
    load_state(restored, tmp_path / "model.v1")
    assert torch.equal(restored[0].weight, first[0].weight)
    assert read_sidecar(tmp_path / "model.v1.safetensors") == {}
    assert save_checkpoint(first, tmp_path / "plain.safetensors").name == "plain.safetensors"


def test_a_folder_is_not_a_checkpoint_name(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="is a folder; give a checkpoint file name inside it"):
        save_checkpoint(nn.Linear(4, 3), tmp_path)
    with pytest.raises(CheckpointError, match="is a folder"):
        save_checkpoint(nn.Linear(4, 3), f"{tmp_path / 'new'}/")


def test_a_pickle_file_is_named_as_such_not_as_missing(tmp_path) -> None:
    (tmp_path / "w.pt").write_bytes(b"\x80\x04pickled")
    with pytest.raises(CheckpointError, match=r"w\.pt is not a safetensors checkpoint.*never unpickles"):
        load_state(nn.Linear(4, 3), tmp_path / "w.pt")


def test_checkpoints_get_the_usual_file_mode_and_strict_json(tmp_path) -> None:
    import json
    import os
    import stat

    import numpy as np

    plain = tmp_path / "plain"
    plain.write_text("x")
    path = save_checkpoint(nn.Linear(4, 3), tmp_path / "model", {"loss": float("nan"), "acc": np.float32(0.5), "ids": np.arange(2)})
    for written in (path, path.with_suffix(".json")):
        assert stat.S_IMODE(os.stat(written).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)
    meta = json.loads(path.with_suffix(".json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert meta == {"loss": None, "acc": 0.5, "ids": [0, 1]}
