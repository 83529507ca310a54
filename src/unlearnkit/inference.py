"""Batched, gradient-free forward passes over a device-resident split."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from unlearnkit.data.batches import DeviceImages
from unlearnkit.runtime import autocast, eval_mode


def predict(
    model: nn.Module,
    images: DeviceImages,
    indices: np.ndarray,
    *,
    batch_size: int = 1024,
    with_features: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (fp32) and optionally penultimate features of ``images[indices]``, in index order."""
    logits, feats = [], []
    if len(indices) == 0:
        return torch.empty(0), (torch.empty(0) if with_features else None)
    with torch.inference_mode(), eval_mode(model), autocast(images.device):
        for x, _, _ in images.batches(indices, batch_size):
            x = x.contiguous(memory_format=torch.channels_last) if images.device.type == "cuda" else x
            if with_features:
                z = model.features(x)
                feats.append(z.float())
                logits.append(model.head(z).float())
            else:
                logits.append(model(x).float())
    return torch.cat(logits), (torch.cat(feats) if with_features else None)


def accuracy(model: nn.Module, images: DeviceImages, indices: np.ndarray, batch_size: int = 1024) -> float:
    """Top-1 accuracy in percent on ``images[indices]`` (NaN for an empty set)."""
    if len(indices) == 0:
        return float("nan")
    logits, _ = predict(model, images, indices, batch_size=batch_size)
    labels = images.labels[torch.as_tensor(np.asarray(indices), device=images.device)]
    return 100.0 * (logits.argmax(1) == labels).float().mean().item()
