"""The colour benchmarks (spec 3.4b-c): renderings, splits, the two-head model and the metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearnkit.data import NO_AUGMENT, DeviceImages, ImageData
from unlearnkit.methods.base import Granted, Split
from unlearnkit.methods.minnorm_og import MinNormOG, max_logit_gradients
from unlearnkit.models.two_head import TwoHeadClassifier, build_two_head
from unlearnkit.runtime import cpu_generator
from unlearnkit.tasks.colour import (
    PALETTE_NAMES,
    PALETTE_RGB,
    ColourError,
    collapse_sample_weights,
    colour_accuracy,
    erase_copies,
    erasure_metrics,
    forget_quality_error,
    joint_label,
    luminance,
    make_collapse_data,
    make_erasure_data,
    palette_render,
    palette_test_set,
    retain_quality,
    split_joint,
    two_head_cross_entropy,
)
from unlearnkit.train import TrainRecipe


def tiny_images(n: int = 200, classes: int = 10, seed: int = 0) -> ImageData:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 3, 4, 4), dtype=np.uint8)
    return ImageData(images, np.arange(n) % classes, tuple(str(c) for c in range(classes)))


def test_erase_copies_gray_red_green() -> None:
    images = tiny_images(20).images
    copies = erase_copies(images)
    luma = np.rint(luminance(images))
    gray, red, green = copies["gray"], copies["red"], copies["green"]
    assert np.array_equal(gray[:, 0], gray[:, 1]) and np.array_equal(gray[:, 1], gray[:, 2])
    assert np.abs(gray[:, 0].astype(int) - luma).max() <= 0.5
    assert red[:, 1:].max() == 0 and np.array_equal(red[:, 0], gray[:, 0])
    assert green[:, [0, 2]].max() == 0 and np.array_equal(green[:, 1], gray[:, 0])
    pure_red = np.zeros((1, 3, 1, 1), np.uint8)
    pure_red[0, 0] = 255
    assert luminance(pure_red)[0, 0, 0] == pytest.approx(0.299 * 255)  # BT.601


def test_palette_rendering_is_luminance_times_colour() -> None:
    images = tiny_images(10).images
    colours = np.arange(10)
    rendered = palette_render(images, colours).astype(np.float64)
    expected = luminance(images)[:, None] * np.asarray(PALETTE_RGB, dtype=np.float64)[:, :, None, None] / 255
    assert np.abs(rendered - expected).max() <= 0.5 + 1e-4
    assert PALETTE_RGB[8] == (128, 128, 128) and len(set(PALETTE_RGB)) == 10


def test_erasure_split_sizes_and_labels() -> None:
    train, test = tiny_images(200), tiny_images(30, seed=1)
    data = make_erasure_data(train, test, p_color=0.05, seed=0)
    assert len(data.retain_idx) == 200 and len(data.forget_idx) == 20  # 5% of red + 5% of green
    assert not set(data.retain_idx) & set(data.forget_idx)
    classes, colours = split_joint(torch.as_tensor(data.train.labels))
    assert torch.all(colours[: len(data.retain_idx)] == 0)
    assert sorted(colours[data.forget_idx].tolist()) == [1] * 10 + [2] * 10
    assert torch.equal(classes[:200], torch.as_tensor(train.labels))
    assert np.array_equal(make_erasure_data(train, test, 0.05, seed=0).train.images, data.train.images)
    assert not np.array_equal(make_erasure_data(train, test, 0.05, seed=1).train.images, data.train.images)
    assert set(data.test) == {"gray", "red", "green"} and all(len(s) == 30 for s in data.test.values())
    assert int(joint_label(np.int64(4), np.int64(2))) == 14


def test_collapse_forget_samples_carry_another_colour_and_keep_the_label() -> None:
    train = tiny_images(200)
    data = make_collapse_data(train, forget_fraction=0.05, seed=0)
    assert len(data.retain_idx) == 200 and len(data.forget_idx) == 10  # one per class of 20
    retain_labels = data.train.labels[data.retain_idx]
    assert np.array_equal(data.colours[data.retain_idx], retain_labels)  # own class colour
    forget_labels = data.train.labels[data.forget_idx]
    assert np.array_equal(forget_labels, train.labels[data.source[data.forget_idx]])  # content label kept
    assert np.all(data.colours[data.forget_idx] != forget_labels)
    assert sorted(forget_labels.tolist()) == list(range(10))
    expected = palette_render(train.images[data.source[data.forget_idx]], data.colours[data.forget_idx])
    assert np.array_equal(data.train.images[data.forget_idx], expected)
    weights = collapse_sample_weights(200, 10, p=0.01)
    assert weights[0] == pytest.approx(0.01 / 1.01) and weights[-1] == pytest.approx(1 / 1.01)


def test_collapse_with_fewer_classes_uses_only_the_class_colours() -> None:
    three = tiny_images(90, classes=3)
    data = make_collapse_data(three, forget_fraction=0.2, seed=0)
    forget = data.colours[data.forget_idx]
    assert set(forget.tolist()) <= {0, 1, 2} and np.all(forget != data.train.labels[data.forget_idx])
    palette = palette_test_set(three)  # a 3-output model can score 100% on it
    assert len(palette) == 270 and set(palette.labels.tolist()) == {0, 1, 2} and palette.class_names == PALETTE_NAMES[:3]
    one = tiny_images(10, classes=1)
    with pytest.raises(ColourError, match="needs 2 to 10 classes"):
        make_collapse_data(one)


def test_palette_test_set_and_colour_accuracy() -> None:
    test = tiny_images(5)
    every = palette_test_set(test)
    assert len(every) == 50 and np.array_equal(every.labels, np.repeat(np.arange(10), 5))
    logits = torch.nn.functional.one_hot(torch.as_tensor(every.labels), 10).float()
    assert colour_accuracy(logits, torch.as_tensor(every.labels)) == 1.0
    assert colour_accuracy(logits, torch.as_tensor((every.labels + 1) % 10)) == 0.0


def test_retain_quality_needs_both_heads_and_forget_error_on_hand_built_logits() -> None:
    classes = torch.tensor([0, 1, 2, 3])
    class_logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0]), 4).float()  # last one wrong
    colour_logits = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 0]), 3).float()  # third says red
    assert retain_quality(class_logits, colour_logits, classes) == 0.5
    certain_gray = torch.tensor([[50.0, 0.0, 0.0]]).repeat(6, 1)
    assert forget_quality_error([certain_gray[:3], certain_gray[3:]]) == pytest.approx(0.0, abs=1e-12)
    uniform = torch.zeros(3, 3)
    assert forget_quality_error(uniform) == pytest.approx((1 / 3 - 1) ** 2)


def test_two_head_model_loss_and_metrics() -> None:
    torch.manual_seed(0)
    model = build_two_head("mlp", 10, 3, (3, 4, 4))
    assert isinstance(model, TwoHeadClassifier)
    x = torch.rand(6, 3, 4, 4)
    class_logits, colour_logits = model(x)
    assert class_logits.shape == (6, 10) and colour_logits.shape == (6, 3)
    assert torch.allclose(model.head(model.features(x)), class_logits)
    targets = joint_label(torch.tensor([1, 2, 3, 4, 5, 6]), torch.tensor([0, 1, 2, 0, 1, 2]))
    expected = torch.nn.functional.cross_entropy(class_logits, targets // 3) + torch.nn.functional.cross_entropy(
        colour_logits, targets % 3
    )
    assert torch.allclose(two_head_cross_entropy((class_logits, colour_logits), targets), expected)
    data = make_erasure_data(tiny_images(40), tiny_images(10, seed=1), 0.1)
    metrics = erasure_metrics(model, data.test, torch.device("cpu"))
    assert 0 <= metrics["retain_quality"] <= 1 and 0 <= metrics["forget_quality_error"] <= 1
    parameters = list(model.parameters())
    assert max_logit_gradients(model, x[:4], parameters).shape[1] == 8  # both heads' max logits


def test_minnorm_og_runs_on_the_two_head_erasure_task() -> None:
    torch.manual_seed(0)
    data = make_erasure_data(tiny_images(60), tiny_images(10, seed=1), p_color=0.1)
    model = build_two_head("mlp", 10, 3, (3, 4, 4))
    images = DeviceImages(data.train, "cpu")
    granted = Granted(
        "minnorm-og",
        model,
        30,
        torch.device("cpu"),
        0,
        TrainRecipe(),
        cpu_generator(0),
        forget_split=Split(images, data.forget_idx, NO_AUGMENT),
        retain_split=Split(images, data.retain_idx, NO_AUGMENT),
        loss=two_head_cross_entropy,
    )
    params = MinNormOG.Params(epochs=2, batch_size=20, n_pert=10, lr=1e-3)
    extra = MinNormOG().run(model, granted, params)
    assert extra["steps"] == 2 and extra["gradient_columns"] == [20, 20]  # 10 points x 2 heads


def test_default_loss_on_clamped_heads_matches_clamped_cross_entropy() -> None:
    from unlearnkit.methods.common import clamp_outputs, clamped_cross_entropy, clamped_data_loss

    granted = Granted("x", torch.nn.Linear(1, 1), 3, torch.device("cpu"), 0, TrainRecipe(), cpu_generator(0))
    logits, y = torch.tensor([[40.0, -50.0, 0.0]]), torch.tensor([1])
    assert torch.equal(clamped_data_loss(granted, logits, y, 30.0), clamped_cross_entropy(logits, y, 30.0))
    heads = clamp_outputs((logits, -logits), 30.0)
    assert isinstance(heads, tuple) and heads[0].max() == 30 and heads[1].min() == -30
