"""A two-hidden-layer perceptron on flattened pixels (fast tests, tabular-like images)."""

from __future__ import annotations

import math

import torch.nn as nn

from unlearnkit.models.layers import Classifier, Normalize
from unlearnkit.models.registry import register_model


@register_model("mlp", "flatten -> 256 -> 256 (ReLU) -> linear head; features are 256-d")
def build_mlp(num_classes: int, image_shape: tuple[int, int, int], mean, std, hidden: int = 256) -> Classifier:
    encoder = nn.Sequential(
        Normalize(mean, std),
        nn.Flatten(),
        nn.Linear(math.prod(image_shape), hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
    )
    return Classifier(encoder, nn.Linear(hidden, num_classes))
