"""A model's outputs on every split of a request, computed once and shared by all metrics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from unlearnkit.data import DeviceImages
from unlearnkit.inference import predict
from unlearnkit.models import ModelError
from unlearnkit.tasks import DeviceSplits, ForgetRequest
from unlearnkit.tasks.request import extra_set_split
from unlearnkit.train import NonFiniteLossError

SPLITS = ("forget", "retain", "test_forget", "test_retain")


class NonFiniteOutputError(NonFiniteLossError):
    """The model's outputs contain NaN or inf (e.g. unlearning diverged); no metric is defined.

    A :class:`NonFiniteLossError`, so code that records a diverged method as a result (bench)
    treats a model that diverged without a NaN loss the same way.
    """


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
    """Outputs of one model on ``forget``, ``retain``, ``test_forget``, ``test_retain`` and the
    request's extra sets (named as in ``request.extra_sets``)."""

    splits: dict[str, SplitOutputs]

    def __getitem__(self, name: str) -> SplitOutputs:
        return self.splits[name]


def split_indices(request: ForgetRequest) -> dict[str, tuple[str, np.ndarray]]:
    """Which device split and which indices make each named split: the four standard ones, then
    every extra set of the request (e.g. TARF's, spec 5.2) under its own name."""
    standard = {
        "forget": ("train", request.forget_idx),
        "retain": ("train", request.retain_idx),
        "test_forget": ("test", request.test_forget_idx),
        "test_retain": ("test", request.test_retain_idx),
    }
    extra = {name: (extra_set_split(name), indices) for name, indices in request.extra_sets.items()}
    return standard | extra


class _LogitTable:
    """Logits of one device split by sample index, filled as splits are computed.

    Extra sets usually overlap the standard splits (TARF's D_t, D_r, ... lie inside
    forget + retain), so their logits are looked up rather than computed again.
    """

    def __init__(self, size: int) -> None:
        self.known = np.zeros(size, dtype=bool)
        self.logits: torch.Tensor | None = None

    def fill(self, indices: np.ndarray, logits: torch.Tensor) -> None:
        if len(indices) == 0:
            return
        if self.logits is None:
            self.logits = torch.empty(len(self.known), logits.shape[1], dtype=logits.dtype)
        self.logits[torch.as_tensor(indices, dtype=torch.long)] = logits
        self.known[indices] = True

    def outputs(self, model: nn.Module, images: DeviceImages, indices: np.ndarray) -> torch.Tensor:
        """Logits of ``indices`` in order, running the model only on samples not seen before."""
        missing = indices[~self.known[indices]]
        if len(missing) == len(indices):  # nothing to reuse: exactly one forward pass, as before
            logits, _ = predict(model, images, indices)
            self.fill(indices, logits.cpu())
            return logits.cpu()
        if len(missing):
            logits, _ = predict(model, images, missing)
            self.fill(missing, logits.cpu())
        assert self.logits is not None
        return self.logits[torch.as_tensor(indices, dtype=torch.long)]


def compute_outputs(model: nn.Module, request: ForgetRequest, splits: DeviceSplits) -> ModelOutputs:
    """One forward pass over every sample of every split of ``request`` (none computed twice)."""
    tables = {"train": _LogitTable(len(splits.train)), "test": _LogitTable(len(splits.test))}
    result = {}
    for name, (which, indices) in split_indices(request).items():
        images = splits.train if which == "train" else splits.test
        logits = tables[which].outputs(model, images, np.asarray(indices))
        check_logits(logits, request, name)
        labels = images.labels[torch.as_tensor(indices, dtype=torch.long, device=images.device)]
        result[name] = SplitOutputs(logits, labels.cpu())
    return ModelOutputs(result)


def check_logits(logits: torch.Tensor, request: ForgetRequest, split: str) -> None:
    """Refuse outputs no metric can score: the wrong number of classes, or NaN/inf values.

    Checked on the logits themselves, so a raw user module (no ``head``) is covered too.
    """
    if len(logits) == 0:
        return
    if logits.ndim != 2 or logits.shape[1] != request.num_classes:
        raise ModelError(
            f"the model gives outputs of shape {tuple(logits.shape[1:])} per sample but the request's "
            f"{request.label_space} label space has {request.num_classes} classes; evaluate a model "
            f"with {request.num_classes} outputs trained on {request.dataset.name}'s labels"
        )
    if not torch.isfinite(logits).all():
        bad = int((~torch.isfinite(logits)).any(1).sum())
        raise NonFiniteOutputError(
            f"the model's outputs are NaN/inf on {bad} of {len(logits)} {split} samples: unlearning diverged "
            "(its weights may still be finite); lower the method's learning rate or its number of steps"
        )
