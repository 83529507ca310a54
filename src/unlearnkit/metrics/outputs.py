"""A model's outputs on every split of a request, computed once and shared by all metrics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from unlearnkit.inference import predict
from unlearnkit.tasks import DeviceSplits, ForgetRequest

SPLITS = ("forget", "retain", "test_forget", "test_retain")


@dataclass(frozen=True)
class SplitOutputs:
    """Logits (fp32, CPU) and labels of one split, in the split's index order."""

    logits: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.softmax(1)

    def accuracy(self) -> float:
        if len(self) == 0:
            return float("nan")
        return 100.0 * (self.logits.argmax(1) == self.labels).float().mean().item()


@dataclass(frozen=True)
class ModelOutputs:
    """Outputs of one model on ``forget``, ``retain``, ``test_forget`` and ``test_retain``."""

    splits: dict[str, SplitOutputs]

    def __getitem__(self, name: str) -> SplitOutputs:
        return self.splits[name]


def split_indices(request: ForgetRequest) -> dict[str, tuple[str, np.ndarray]]:
    """Which device split and which indices make each named split."""
    return {
        "forget": ("train", request.forget_idx),
        "retain": ("train", request.retain_idx),
        "test_forget": ("test", request.test_forget_idx),
        "test_retain": ("test", request.test_retain_idx),
    }


def compute_outputs(model: nn.Module, request: ForgetRequest, splits: DeviceSplits) -> ModelOutputs:
    """One forward pass over every split of ``request``."""
    result = {}
    for name, (which, indices) in split_indices(request).items():
        images = splits.train if which == "train" else splits.test
        logits, _ = predict(model, images, indices)
        labels = images.labels[torch.as_tensor(indices, dtype=torch.long, device=images.device)]
        result[name] = SplitOutputs(logits.cpu(), labels.cpu())
    return ModelOutputs(result)
