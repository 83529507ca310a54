"""Shared tiny fixtures: the embedded digits data, a trained small model, a class-wise request."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from unlearnkit.data import Dataset, ImageData, load_dataset
from unlearnkit.models import build_model
from unlearnkit.tasks import ForgetRequest, class_request, place
from unlearnkit.train import TrainRecipe, train

CPU = torch.device("cpu")
TINY_RECIPE = TrainRecipe(epochs=15, batch_size=64, lr=0.05, label_smoothing=0.0)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # No test may write to the user's home cache.
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path_factory.getbasetemp() / "unlearnkit-cache"))


def subset(dataset: Dataset, n_train: int, n_test: int) -> Dataset:
    """The first ``n`` samples of each split (digits are shuffled, so classes stay balanced)."""

    def take(split: ImageData, n: int) -> ImageData:
        return replace(split, images=split.images[:n], labels=split.labels[:n])

    return Dataset(dataset.name, take(dataset.train, n_train), take(dataset.test, n_test), dataset.source)


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return load_dataset("digits", cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def small_digits(digits: Dataset) -> Dataset:
    return subset(digits, 600, 200)


@pytest.fixture(scope="session")
def class_3(small_digits: Dataset) -> ForgetRequest:
    return class_request(small_digits, ["3"])


def train_mlp(dataset: Dataset, train_idx: np.ndarray, seed: int = 0, recipe: TrainRecipe = TINY_RECIPE) -> torch.nn.Module:
    """A small MLP trained on ``train_idx`` on the CPU (a second or two)."""
    torch.manual_seed(seed)
    mean, std = dataset.channel_stats()
    model = build_model("mlp", dataset.num_classes, dataset.image_shape, mean, std)
    request = class_request(dataset, [0])  # any request: only its device splits are used
    train(model, place(request, CPU).train, train_idx, recipe, seed=seed, augment=recipe.augment_for(dataset.name))
    return model.eval()


@pytest.fixture(scope="session")
def original(small_digits: Dataset) -> torch.nn.Module:
    return train_mlp(small_digits, np.arange(len(small_digits.train)))


@pytest.fixture(scope="session")
def oracle(small_digits: Dataset, class_3: ForgetRequest) -> torch.nn.Module:
    return train_mlp(small_digits, class_3.retain_idx)
