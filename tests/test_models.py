"""Registered models, the adapter for user classifiers, re-initialisation and checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from unlearnkit.checkpoint import CheckpointError, load_model, load_state, save_checkpoint
from unlearnkit.models import (
    MODELS,
    ClassifierAdapter,
    ModelError,
    as_classifier,
    available_models,
    build_model,
    features,
    head,
    reinitialize,
)

SHAPES = {"mlp": [(1, 8, 8), (3, 32, 32)], "cnn": [(1, 8, 8), (3, 32, 32)], "resnet18": [(3, 32, 32)]}
CASES = [(name, shape) for name, shapes in SHAPES.items() for shape in shapes]


def test_every_registered_model_is_covered() -> None:
    assert set(available_models()) == set(SHAPES) == set(MODELS)


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_model_protocol(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    num_classes = 7
    model = build_model(name, num_classes, shape).eval()
    x = torch.rand(2, *shape)
    with torch.no_grad():
        logits = model(x)
        feats = model.features(x)
        via_head = model.head(feats)
    assert logits.shape == (2, num_classes)
    assert feats.ndim == 2 and feats.shape[0] == 2
    assert torch.allclose(logits, via_head, atol=1e-5)
    assert isinstance(model.head, nn.Linear)
    assert model.head.out_features == num_classes
    assert model.head.in_features == feats.shape[1]
    assert head(model) is model.head
    with torch.no_grad():
        assert torch.allclose(features(model, x), feats)


def test_models_normalise_their_own_input() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", 3, (1, 4, 4), (0.2,), (0.5,)).eval()
    first, second = [m for m in model.encoder if isinstance(m, nn.Linear)]
    x = torch.rand(2, 1, 4, 4)
    with torch.no_grad():
        expected = model.head(torch.relu(second(torch.relu(first(((x - 0.2) / 0.5).flatten(1))))))
        assert torch.allclose(model(x), expected, atol=1e-6)
    # The statistics are buffers, so they travel with the state dict.
    assert any(torch.equal(v, torch.tensor([0.2]).view(1, 1, 1, 1)) for v in model.state_dict().values())


def test_resnet18_has_the_cifar_stem_and_size() -> None:
    model = build_model("resnet18", 10, (3, 32, 32))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    stem = convs[0]
    assert stem.in_channels == 3 and stem.out_channels == 64
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1) and stem.padding == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    n_params = sum(p.numel() for p in model.parameters())
    assert abs(n_params - 11.17e6) < 0.01e6, n_params
    assert model.head.in_features == 512


def test_build_model_unknown_name_lists_registered_models() -> None:
    with pytest.raises(ModelError, match="unknown model 'vgg'") as info:
        build_model("vgg", 10, (3, 32, 32))
    assert all(name in str(info.value) for name in ("mlp", "cnn", "resnet18"))
    assert issubclass(ModelError, ValueError)


@pytest.mark.parametrize(("mean", "std"), [((0.5, 0.5), (0.5,)), ((0.5,), (0.5, 0.5, 0.5)), ((), ())])
def test_build_model_mean_std_must_match_channels(mean, std) -> None:
    with pytest.raises(ModelError, match="1 values"):
        build_model("mlp", 10, (1, 8, 8), mean, std)


# --- adapter ---------------------------------------------------------------------------------


def _user_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def test_adapter_on_a_user_sequential() -> None:
    user = _user_mlp().eval()
    model = as_classifier(user)
    assert isinstance(model, ClassifierAdapter)
    assert model.head is user[3]
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        feats = model.features(x)
        hidden = torch.relu(user[1](x.flatten(1)))
        assert feats.shape == (5, 32)
        assert torch.allclose(feats, hidden, atol=1e-6)
        assert torch.allclose(model(x), user(x))
        assert torch.allclose(model.head(feats), user(x), atol=1e-6)
    # The adapter shares the user's parameters rather than copying them.
    assert model.head.weight is user[3].weight


class _ScaledOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(64, 16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.body(x.flatten(1)))) * 2


def test_adapter_refuses_a_model_whose_last_op_is_not_the_head() -> None:
    model = as_classifier(_ScaledOutput())
    with pytest.raises(ModelError, match="'fc'"):
        model.features(torch.rand(2, 1, 8, 8))


class _NoLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 10, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).flatten(1)


def test_adapter_refuses_a_model_without_linear_layer() -> None:
    with pytest.raises(ModelError, match="no nn.Linear"):
        as_classifier(_NoLinear())


class _AuxAfterHead(nn.Module):
    """The last *registered* Linear (``aux``) is not the output layer; ``fc`` is."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(64, 16)
        self.fc = nn.Linear(16, 10)
        self.aux = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.body(x.flatten(1))))


def test_adapter_head_by_name() -> None:
    torch.manual_seed(0)
    user = _AuxAfterHead().eval()
    x = torch.rand(4, 1, 8, 8)
    default = as_classifier(user)
    assert default.head is user.aux
    with pytest.raises(ModelError):
        default.features(x)  # aux never produces the output
    named = as_classifier(user, head="fc")
    assert named.head is user.fc
    with torch.no_grad():
        assert torch.allclose(named.features(x), torch.relu(user.body(x.flatten(1))), atol=1e-6)
    with pytest.raises(ModelError, match="'nope'"):
        as_classifier(user, head="nope")
    with pytest.raises(ModelError, match="not an nn.Linear"):
        as_classifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU()), head="2")


def test_adapter_head_by_dotted_name() -> None:
    user = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(64, 8), nn.ReLU()), nn.Linear(8, 4))
    assert as_classifier(user, head="2").head is user[2]
    assert as_classifier(user, head="1.0").head is user[1][0]


def test_toolkit_models_are_returned_unwrapped() -> None:
    for name in ("mlp", "cnn"):
        model = build_model(name, 10, (1, 8, 8))
        assert as_classifier(model) is model
    adapted = as_classifier(_user_mlp())
    assert as_classifier(adapted) is adapted  # an adapter already speaks the protocol


# --- reinitialize ----------------------------------------------------------------------------


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_reinitialize_changes_weights_deterministically() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", 10, (1, 8, 8))
    before = _state(model)
    rng_before = torch.random.get_rng_state()
    assert reinitialize(model, seed=1) is model
    assert torch.equal(torch.random.get_rng_state(), rng_before), "reinitialize must not consume the global RNG"
    after_1 = _state(model)
    for key, value in before.items():
        if key.endswith("weight") and value.ndim > 1:
            assert not torch.equal(value, after_1[key]), key
    torch.manual_seed(123)
    other = build_model("cnn", 10, (1, 8, 8))
    reinitialize(other, seed=1)
    for key, value in after_1.items():
        assert torch.equal(value, other.state_dict()[key]), key
    reinitialize(other, seed=2)
    assert not torch.equal(other.head.weight, after_1["head.weight"])


def test_reinitialize_resets_batchnorm_statistics() -> None:
    model = build_model("cnn", 10, (1, 8, 8)).train()
    model(torch.rand(8, 1, 8, 8))
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn.num_batches_tracked.item() == 1
    reinitialize(model, seed=0)
    assert bn.num_batches_tracked.item() == 0
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))


# --- checkpoints -----------------------------------------------------------------------------


def _spec(name: str = "mlp", num_classes: int = 10, shape=(1, 8, 8)) -> dict:
    return {
        "name": name,
        "num_classes": num_classes,
        "image_shape": list(shape),
        "mean": [0.3] * shape[0],
        "std": [0.2] * shape[0],
    }


def _saved(tmp_path, name: str = "mlp"):
    spec = _spec(name)
    torch.manual_seed(0)
    model = build_model(spec["name"], spec["num_classes"], spec["image_shape"], spec["mean"], spec["std"])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))  # weights no fresh build would have
    meta = {"model_spec": spec, "note": "hello", "test_acc": 97.5}
    path = save_checkpoint(model, tmp_path / "ckpt", meta)
    return model, path, meta


def test_checkpoint_round_trip(tmp_path) -> None:
    model, path, meta = _saved(tmp_path)
    assert path == tmp_path / "ckpt.safetensors"
    assert path.exists() and path.with_suffix(".json").exists()
    loaded, loaded_meta = load_model(path)
    assert loaded_meta["note"] == "hello" and loaded_meta["test_acc"] == 97.5
    assert loaded_meta["model_spec"] == meta["model_spec"]
    original_state, loaded_state = model.state_dict(), loaded.state_dict()
    assert set(original_state) == set(loaded_state)
    for key, value in original_state.items():
        assert torch.equal(value, loaded_state[key]), key
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded.eval()(x))
    # Loading by the stem or by the sidecar path works too.
    again, _ = load_model(tmp_path / "ckpt")
    assert torch.equal(again.head.weight, model.head.weight)


def test_checkpoint_cnn_round_trip_keeps_buffers(tmp_path) -> None:
    model = build_model("cnn", 4, (1, 8, 8), (0.1,), (0.9,)).train()
    model(torch.rand(16, 1, 8, 8))  # non-trivial BatchNorm running statistics
    path = save_checkpoint(
        model, tmp_path / "cnn.safetensors", {"model_spec": _spec("cnn", 4) | {"mean": [0.1], "std": [0.9]}}
    )
    loaded, _ = load_model(path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_load_model_needs_model_spec(tmp_path) -> None:
    model = build_model("mlp", 10, (1, 8, 8))
    path = save_checkpoint(model, tmp_path / "nospec", {"note": "no spec"})
    with pytest.raises(CheckpointError, match="model_spec"):
        load_model(path)
    # ... but the weights can still be loaded into a model built by hand.
    fresh = build_model("mlp", 10, (1, 8, 8))
    assert load_state(fresh, path) == {"note": "no spec"}
    assert torch.equal(fresh.head.weight, model.head.weight)


def test_loading_into_a_different_architecture(tmp_path) -> None:
    _, path, _ = _saved(tmp_path)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_state(build_model("cnn", 10, (1, 8, 8)), path)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_state(build_model("mlp", 5, (1, 8, 8)), path)  # same layers, other head size


def test_loading_with_missing_or_unexpected_keys(tmp_path) -> None:
    # Same shapes where keys overlap, so only a strict load notices the difference.
    one = nn.Sequential(nn.Linear(4, 4))
    two = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    path_one = save_checkpoint(one, tmp_path / "one", {})
    path_two = save_checkpoint(two, tmp_path / "two", {})
    with pytest.raises(CheckpointError, match="does not fit"):
        load_state(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)), path_one)  # missing 1.weight
    with pytest.raises(CheckpointError, match="does not fit"):
        load_state(nn.Sequential(nn.Linear(4, 4)), path_two)  # unexpected 1.weight


def test_load_model_with_a_wrong_spec(tmp_path) -> None:
    _, path, _ = _saved(tmp_path)
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["model_spec"]["name"] = "cnn"
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        load_model(path)


def test_missing_sidecar(tmp_path) -> None:
    model, path, _ = _saved(tmp_path)
    path.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match="sidecar"):
        load_model(path)
    with pytest.raises(CheckpointError, match="sidecar"):
        load_state(model, path)


def test_missing_weights(tmp_path) -> None:
    model, path, _ = _saved(tmp_path)
    path.unlink()
    with pytest.raises(CheckpointError):
        load_state(model, path)
    with pytest.raises(CheckpointError):
        load_model(path)


def test_checkpoint_files_are_safetensors_not_pickle(tmp_path) -> None:
    model, path, _ = _saved(tmp_path)
    raw = path.read_bytes()
    assert not raw.startswith(b"PK") and not raw.startswith(b"\x80"), "torch.save zip/pickle format"
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    assert "head.weight" in header
    tensors = load_file(str(path))
    assert set(tensors) == set(model.state_dict())
    assert torch.equal(tensors["head.weight"], model.head.weight.detach())
    json.loads(path.with_suffix(".json").read_text())  # the sidecar is plain JSON
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp")), "temporary files left behind"
