"""The public API refuses bad input up front and leaves the caller's objects alone.

Tiny in-memory data (40 random 8x8 images, 4 classes) and untrained models: these tests check
contracts (errors, types, side effects), not forgetting quality.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import unlearnkit as uk
from unlearnkit.audit import AuditError, run_audit
from unlearnkit.bench import BenchConfig
from unlearnkit.data import Augment, DataError
from unlearnkit.methods import METHODS, MethodError, make_params
from unlearnkit.metrics import NonFiniteOutputError, compute_outputs
from unlearnkit.models import ClassifierAdapter, ModelError
from unlearnkit.tasks import RequestError, place
from unlearnkit.train import NonFiniteLossError, TrainRecipe

CPU = torch.device("cpu")
CLASSES = ("a", "b", "c", "d")


def own_split(n: int, seed: int) -> uk.ImageData:
    images = np.random.default_rng(seed).integers(0, 256, (n, 1, 8, 8), dtype=np.uint8)
    return uk.ImageData(images, np.arange(n, dtype=np.int64) % len(CLASSES), CLASSES)


@pytest.fixture(scope="module")
def own_data() -> uk.Dataset:
    return uk.Dataset("my-own-arrays", own_split(40, seed=0), own_split(20, seed=1))


@pytest.fixture(scope="module")
def request_01(own_data):
    return uk.index_request(own_data, [0, 1])


@pytest.fixture(scope="module")
def splits(request_01):
    return place(request_01, CPU)


def user_model(outputs: int = len(CLASSES)) -> nn.Module:
    """A user's classifier with BatchNorm and Dropout, whose train/eval mode matters."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, outputs)
    )


class LogSoftmaxHead(nn.Module):
    def __init__(self, scale: float | None = None):
        super().__init__()
        self.fc = nn.Linear(64, len(CLASSES))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.fc(x.flatten(1))
        return logits * self.scale if self.scale else torch.log_softmax(logits, 1)


# --- 1. hyperparameters are typed and checked when they are given -----------------------------


@pytest.mark.parametrize(
    ("method", "overrides", "match"),
    [
        ("ft", {"epochs": 2.5}, "ft.epochs must be of type int; got 2.5"),
        ("ft", {"epochs": True}, "ft.epochs must be of type int; got True"),
        ("ft", {"lr": None}, "ft.lr must be of type float, not None"),
        ("ft", {"lr": float("nan")}, "ft.lr must be a finite float"),
        ("ft", {"lr": "inf"}, "ft.lr must be a finite float"),
        ("ft", {"lr": "fast"}, "ft.lr must be of type float"),
        ("scrub", {"lr_decay_epochs": [1.5]}, r"scrub.lr_decay_epochs\[0\] must be of type int"),
        ("tarf", {"gate": 3}, "tarf.gate must be of type str"),
    ],
)
def test_make_params_refuses_values_of_the_wrong_type(method, overrides, match):
    with pytest.raises(MethodError, match=match):
        make_params(METHODS[method], overrides)


def test_make_params_takes_values_that_fit_the_type():
    assert make_params(METHODS["ft"], {"lr": 1, "epochs": np.int64(3)}).lr == 1.0
    assert type(make_params(METHODS["ft"], {"epochs": np.int64(3)}).epochs) is int
    assert make_params(METHODS["scrub"], {"lr_decay_epochs": [2, 4]}).lr_decay_epochs == (2, 4)
    assert make_params(METHODS["tarf"], {"n_target_classes": None}).n_target_classes is None


LOOP_SETTINGS = [("epochs", -1), ("epochs", 0), ("batch_size", 0), ("lr", -0.1)]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_refuses_bad_loop_settings_up_front(method):
    fields = METHODS[method].Params.__dataclass_fields__
    bad = [(key, value) for key, value in LOOP_SETTINGS if key in fields]
    for key, value in bad:
        with pytest.raises(MethodError, match=rf"{method}\b.*{key}"):
            make_params(METHODS[method], {key: value})


@pytest.mark.parametrize(
    ("method", "overrides", "match"),
    [
        ("tarf", {"t1": 0}, "tarf.t1"),
        ("famr", {"divergence": "nope"}, "famr.divergence"),
        ("npo", {"beta": 0.0}, "npo.beta"),
        ("boundary-shrink", {"bound": 2.0}, "boundary-shrink.bound"),
        ("iu", {"recursion_samples": 0}, "iu.recursion_samples"),
        ("kl-unif", {"forget_weight": -1.0}, "kl-unif.forget_weight"),
        ("l1-sparse", {"schedule": "nope"}, "l1-sparse.schedule"),
        ("unsir", {"impair_epochs": 0, "repair_epochs": 0}, "impair_epochs \\+ repair_epochs"),
        ("neggrad+", {"alpha": 1.5}, "neggrad\\+.alpha"),
    ],
)
def test_method_specific_checks_run_in_make_params(method, overrides, match):
    with pytest.raises(MethodError, match=match):
        make_params(METHODS[method], overrides)


def test_bench_validation_catches_a_bad_value_before_training():
    config = BenchConfig(dataset="digits", model="mlp", tasks=["class:3"], methods=["ft"], hparams={"ft": {"epochs": -1}})
    with pytest.raises(MethodError, match="ft.epochs must be >= 1"):
        config.validate()


def test_method_checks_run_once_per_unlearn(request_01, splits, monkeypatch):
    import unlearnkit.methods.bad_teacher as bad_teacher

    calls = []
    monkeypatch.setattr(bad_teacher, "check_params", lambda method, params: calls.append(method))
    uk.unlearn(user_model(), request_01, "bad-teacher", device=CPU, splits=splits, epochs=1)
    assert calls == ["bad-teacher"]


# --- 2. unlearn leaves the caller's module as it was ----------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_unlearn_leaves_the_callers_module_untouched(request_01, splits, training):
    model = user_model().train(training)
    before = {name: (t.data_ptr(), t.device, t.clone()) for name, t in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    unlearned, _ = uk.unlearn(model, request_01, "ft", device=CPU, splits=splits, epochs=1, lr=0.5)
    assert [m.training for m in model.modules()] == modes
    for name, tensor in model.state_dict().items():
        ptr, device, values = before[name]
        assert (tensor.data_ptr(), tensor.device) == (ptr, device), name
        assert torch.equal(tensor, values), f"{name} changed"
    changed = [not torch.equal(a, b) for a, b in zip(unlearned.parameters(), model.parameters(), strict=True)]
    assert any(changed), "the returned model is a copy that was trained"


@pytest.mark.parametrize("training", [True, False])
def test_adapter_adopts_the_wrapped_modules_mode(training):
    module = user_model().train(training)
    assert ClassifierAdapter(module).training is training
    assert [m.training for m in module.modules()] == [training] * len(list(module.modules()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_unlearn_on_cuda_does_not_move_the_callers_module(request_01):
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(256, len(CLASSES)))
    uk.unlearn(model, request_01, "ft", device="cuda", epochs=1)
    # to_device moves in place and makes conv weights channels_last on CUDA; the caller's stay put.
    assert all(p.device.type == "cpu" and p.is_contiguous() for p in model.parameters())


# --- 3. a model whose output is not its head's output is refused by unlearn ------------------------


@pytest.mark.parametrize("scale", [None, 2.0])
def test_unlearn_refuses_a_model_whose_last_operation_is_not_the_head(request_01, splits, scale):
    with pytest.raises(ModelError, match="not the output of its layer 'fc'"):
        uk.unlearn(LogSoftmaxHead(scale), request_01, "ft", device=CPU, splits=splits, epochs=1)


# --- 4. evaluate checks the output width and takes one metric name ----------------------------------


@pytest.mark.parametrize("outputs", [5, 11])
def test_evaluate_refuses_a_raw_model_with_the_wrong_output_count(request_01, splits, outputs):
    with pytest.raises(ModelError, match=f"shape \\({outputs},\\).* 4 classes"):
        uk.evaluate(user_model(outputs).eval(), request_01, splits)


def test_evaluate_takes_a_single_metric_name(request_01, splits):
    result = uk.evaluate(user_model().eval(), request_01, splits, metrics="accuracy")
    assert "forget_acc" in result and "mia" not in result


# --- 5. non-finite outputs are a clear error (and a NonFiniteLossError for bench) -------------------


def test_non_finite_outputs_are_a_clear_error(request_01, splits):
    diverged = user_model().eval()
    with torch.no_grad():  # finite weights whose products overflow float32
        diverged[1].weight.fill_(1e30)
        diverged[5].weight.fill_(1e30)
    assert all(torch.isfinite(p).all() for p in diverged.parameters())
    with pytest.raises(NonFiniteOutputError, match="NaN/inf.*lower the method's learning rate"):
        uk.evaluate(diverged, request_01, splits)
    with pytest.raises(NonFiniteLossError):  # what bench records as an "error" row
        compute_outputs(diverged, request_01, splits)


# --- 6. one's own arrays: unregistered datasets unlearn without augmentation ------------------------


def test_unregistered_dataset_gets_no_augmentation_unless_the_recipe_sets_it():
    assert TrainRecipe().augment_for("my-own-arrays") == Augment(crop_pad=0, flip=False)
    assert TrainRecipe(crop_pad=2, flip=True).augment_for("my-own-arrays") == Augment(crop_pad=2, flip=True)
    assert TrainRecipe().augment_for("cifar10") == Augment(crop_pad=4, flip=True)


def test_own_arrays_end_to_end(own_data):
    request = uk.index_request(own_data, [0, 1, 2])
    unlearned, record = uk.unlearn(user_model(), request, "ft", device="cpu", epochs=2)
    metrics = uk.evaluate(unlearned, request, uk.place(request, CPU), metrics=("accuracy",))
    assert record.method == "ft" and record.steps == 2
    assert 0 <= metrics["forget_acc"] <= 100 and 0 <= metrics["test_acc"] <= 100


# --- 7. random_request: numpy reals are fractions, numpy ints counts, bools refused -----------------


@pytest.mark.parametrize(("amount", "count"), [(np.float32(0.1), 4), (np.float64(0.25), 10), (0.5, 20), (np.int64(3), 3), (5, 5)])
def test_random_request_reads_numpy_amounts(own_data, amount, count):
    assert len(uk.random_request(own_data, amount).forget_idx) == count


@pytest.mark.parametrize("amount", [True, np.bool_(True), False])
def test_random_request_refuses_bools(own_data, amount):
    with pytest.raises(RequestError, match="bool"):
        uk.random_request(own_data, amount)


# --- 8. a user's model: named features/head that are not the penultimate layer, frozen, float64 -----


class NamedFeaturesWithHiddenLayer(nn.Module):
    """Has ``features`` and a linear ``head``, but a hidden layer sits between them."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())
        self.fc1 = nn.Linear(16, 16)
        self.head = nn.Linear(16, len(CLASSES))

    def forward(self, x):
        return self.head(torch.relu(self.fc1(self.features(x))))


class ConvFeatures(nn.Module):
    """VGG-style: ``features`` are conv maps, the classifier flattens them."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(256, len(CLASSES))

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


@pytest.mark.parametrize("model_type", [NamedFeaturesWithHiddenLayer, ConvFeatures])
def test_a_model_whose_features_and_head_do_not_compose_is_refused_with_the_fix(request_01, splits, model_type, tmp_path):
    with pytest.raises(ModelError, match=r"as_classifier\(model, head="):
        uk.unlearn(model_type(), request_01, "ft", device=CPU, splits=splits, epochs=1)
    with pytest.raises(AuditError, match=r"the original model: .*as_classifier\(model, head="):
        run_audit(request_01, splits, {"original": model_type()}, tmp_path / "audit")
    wrapped = uk.as_classifier(model_type(), head="head")  # the fix the message names
    uk.unlearn(wrapped, request_01, "ft", device=CPU, splits=splits, epochs=1)


def test_a_head_registered_before_another_linear_is_named_in_the_error():
    class FcFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(32, len(CLASSES))
            self.proj = nn.Linear(64, 32)

        def forward(self, x):
            return self.fc(torch.relu(self.proj(x.flatten(1))))

    adapter = uk.as_classifier(FcFirst())
    with pytest.raises(ModelError, match=r"'proj'.*as_classifier\(model, head='name'\).*fc, proj"):
        adapter.features(torch.zeros(1, 1, 8, 8))
    assert uk.as_classifier(FcFirst(), head="fc").features(torch.zeros(1, 1, 8, 8)).shape == (1, 32)


def test_a_fully_frozen_model_is_refused_and_stays_frozen(request_01, splits):
    model = user_model().requires_grad_(False)
    with pytest.raises(ModelError, match="frozen.*requires_grad_"):
        uk.unlearn(model, request_01, "ft", device=CPU, splits=splits, epochs=1)
    assert not any(p.requires_grad for p in model.parameters())
    partly = user_model()
    partly[1].requires_grad_(False)  # a frozen first layer is the user's choice and is kept
    unlearned, _ = uk.unlearn(partly, request_01, "ft", device=CPU, splits=splits, epochs=1, lr=0.5)
    assert torch.equal(unlearned.module[1].weight, partly[1].weight)


def test_a_float64_model_is_refused_by_name(request_01, splits):
    model = user_model().double()
    with pytest.raises(ModelError, match="float64 parameters.*model.float()"):
        uk.unlearn(model, request_01, "ft", device=CPU, splits=splits, epochs=1)
    with pytest.raises(ModelError, match="float64 parameters"):
        uk.evaluate(model, request_01, splits)


@pytest.mark.parametrize("seed", ["x", 1.5, None, -1, True])
def test_unlearn_refuses_a_seed_that_is_not_a_non_negative_integer(request_01, splits, seed):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        uk.unlearn(user_model(), request_01, "ft", device=CPU, splits=splits, seed=seed)


def test_mia_without_retained_test_samples_is_a_clear_error():
    only_a = uk.ImageData(np.zeros((4, 1, 8, 8), np.uint8), np.zeros(4, np.int64), CLASSES)
    data = uk.Dataset("my-own-arrays", own_split(40, seed=0), only_a)
    request = uk.make_request(data, "class:a")
    with pytest.raises(ValueError, match="MIA-efficacy needs test samples of the retained classes"):
        uk.evaluate(user_model(), request, place(request, CPU))
    assert "mia" not in uk.evaluate(user_model(), request, place(request, CPU), metrics="accuracy")


# --- 9. one's own arrays are checked: labels, names, layout --------------------------------------------


def test_image_data_refuses_fractional_labels_and_takes_whole_floats_and_lists():
    images = np.zeros((3, 1, 8, 8), np.uint8)
    with pytest.raises(DataError, match="whole numbers.*0.9"):
        uk.ImageData(images, np.array([0.9, 1.9, 2.9]), CLASSES)
    assert uk.ImageData(images, np.array([0.0, 1.0, 2.0]), CLASSES).labels.dtype == np.int64
    assert uk.ImageData(images, [0, 1, 2], list(CLASSES)).class_names == CLASSES
    assert list(uk.ImageData(images, torch.tensor([0, 1, 2]), CLASSES).labels) == [0, 1, 2]
    with pytest.raises(DataError, match="integer class indices"):
        uk.ImageData(images, np.array(["a", "b", "c"]), CLASSES)


def test_image_data_refuses_repeated_class_names():
    with pytest.raises(DataError, match="distinct.*repeated: a"):
        uk.ImageData(np.zeros((2, 1, 8, 8), np.uint8), np.array([0, 1]), ("a", "a", "b"))


def test_image_data_refuses_channels_last_images_with_the_transpose():
    with pytest.raises(DataError, match=r"look like \(N, H, W, C\).*transpose\(0, 3, 1, 2\)"):
        uk.ImageData(np.zeros((2, 16, 16, 3), np.uint8), np.array([0, 1]), CLASSES)


@pytest.mark.parametrize(("spec", "match"), [("random:5.0", "give the whole number 5"), ("random:1.0", "whole number 1")])
def test_a_whole_float_amount_hints_at_the_count(own_data, spec, match):
    with pytest.raises(RequestError, match=match):
        uk.make_request(own_data, spec)


def test_a_signed_count_is_a_count(own_data):
    assert len(uk.make_request(own_data, "random:+5").forget_idx) == 5


# --- 10. devices: a model and data on different devices are named as such -------------------------------


def test_a_model_on_another_device_than_the_splits_is_named(request_01, splits):
    model = uk.build_model("mlp", len(CLASSES), (1, 8, 8)).to("meta")  # stands in for a GPU model beside CPU data
    with pytest.raises(ModelError, match=r"the model is on meta but the data splits are on cpu; place the splits"):
        uk.evaluate(model, request_01, splits)
    with pytest.raises(AuditError, match="the original model: the model is on meta"):
        run_audit(request_01, splits, {"original": model}, out=None)


def test_place_takes_device_names_and_unlearn_follows_the_splits_device(request_01):
    assert uk.place(request_01, "auto").train.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    on_cpu = uk.place(request_01, "cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        uk.place(request_01, "tpu")
    unlearned, _ = uk.unlearn(user_model(), request_01, "ft", splits=on_cpu, epochs=1)  # device="auto"
    assert next(unlearned.parameters()).device == CPU
    assert set(uk.evaluate(unlearned, request_01, on_cpu)) >= {"forget_acc", "mia"}


def test_cuda_without_an_index_is_the_same_place_as_cuda_0():
    from unlearnkit.tasks.compatibility import _same_place

    cuda, cuda0, cuda1, cpu = (torch.device(d) for d in ("cuda", "cuda:0", "cuda:1", "cpu"))
    assert _same_place(cuda0, cuda) and _same_place(cuda, cuda1) and _same_place(cpu, cpu)
    assert not _same_place(cuda0, cuda1) and not _same_place(cpu, cuda)
