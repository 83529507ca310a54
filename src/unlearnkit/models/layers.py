"""Small building blocks shared by the registered models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` as the model's first layer (buffers, saved with the weights)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """An encoder followed by a linear ``head``: the protocol every toolkit model follows.

    ``features(x)`` is the penultimate representation, ``head`` the final ``nn.Linear``, and
    ``forward(x) == head(features(x))``.
    """

    def __init__(self, encoder: nn.Module, head: nn.Linear):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))
