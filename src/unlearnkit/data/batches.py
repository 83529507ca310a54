"""Device-resident batching with on-device augmentation.

A split is copied to the device once as uint8 (CIFAR-10 train is 154 MB); every batch is an
index slice of it, converted to float and augmented on the device, so a CUDA run never waits on
a DataLoader (spec/performance.md section 6.1). The random numbers of an epoch (order, crop
offsets, flips) are drawn on the CPU from a seeded generator, so a run is reproducible and the
same on CPU and CUDA.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from unlearnkit.data.dataset import DataError, ImageData


@dataclass(frozen=True)
class Augment:
    """Training augmentation: random crop after ``crop_pad`` pixels of reflect padding, and flips."""

    crop_pad: int = 0
    flip: bool = False

    @property
    def active(self) -> bool:
        return self.crop_pad > 0 or self.flip

    def fitted(self, height: int, width: int) -> Augment:
        """This augmentation with the crop padding below the image size, which reflect padding
        needs (a 4 px image gets at most 3 px, not the CIFAR default of 4)."""
        pad = min(self.crop_pad, height - 1, width - 1)
        return self if pad == self.crop_pad else replace(self, crop_pad=max(pad, 0))


NO_AUGMENT = Augment()


class DeviceImages:
    """One split of images and labels held on ``device``.

    Args:
        data: the split.
        device: where to keep it.
        labels: optional replacement labels (e.g. coarse labels, or a model's label space);
            defaults to ``data.labels``.
    """

    def __init__(self, data: ImageData, device: torch.device | str, labels: np.ndarray | None = None):
        self.device = torch.device(device)
        self.images = torch.from_numpy(np.ascontiguousarray(data.images)).to(self.device)
        chosen = data.labels if labels is None else np.asarray(labels, dtype=np.int64)
        if chosen.shape != (len(data),):
            raise DataError(f"labels must have shape ({len(data)},); got {chosen.shape}")
        self.labels = torch.from_numpy(chosen).to(self.device)

    def __len__(self) -> int:
        return len(self.labels)

    def batches(
        self,
        indices: np.ndarray | torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: Augment = NO_AUGMENT,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        labels: torch.Tensor | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y, idx)``: float images in [0, 1], labels and the dataset indices of the batch.

        ``labels`` overrides the stored labels (indexed by dataset index), which is how methods
        train on relabelled data without copying images.
        """
        order = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        if len(order) == 0:
            raise DataError("cannot iterate over an empty index set")
        if shuffle:
            order = order[torch.randperm(len(order), generator=generator)]
        augment = augment.fitted(*self.images.shape[-2:])
        plan = _draw_augmentation(len(order), augment, generator)
        order = order.to(self.device)
        plan = {k: v.to(self.device) for k, v in plan.items()}
        source_labels = self.labels if labels is None else labels
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            if len(idx) == 0:
                break
            x = self.images[idx].float().div_(255.0)
            x = _apply_augmentation(x, augment, {k: v[start : start + batch_size] for k, v in plan.items()})
            yield x, source_labels[idx], idx

    def mirrored(self) -> DeviceImages:
        """The same split with every image flipped horizontally (test-time augmentation)."""
        clone = object.__new__(DeviceImages)
        clone.device, clone.labels, clone.images = self.device, self.labels, self.images.flip(3)
        return clone

    def gather(self, indices: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (float, [0, 1]) and labels of the given indices, unaugmented, in one tensor."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long, device=self.device)
        return self.images[idx].float().div_(255.0), self.labels[idx]


def _draw_augmentation(n: int, augment: Augment, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    plan: dict[str, torch.Tensor] = {}
    if augment.crop_pad > 0:
        plan["shift"] = torch.randint(0, 2 * augment.crop_pad + 1, (n, 2), generator=generator)
    if augment.flip:
        plan["flip"] = torch.rand(n, generator=generator) < 0.5
    return plan


def _apply_augmentation(x: torch.Tensor, augment: Augment, plan: dict[str, torch.Tensor]) -> torch.Tensor:
    if "shift" in plan:
        x = random_crop(x, augment.crop_pad, plan["shift"])
    if "flip" in plan:
        x = torch.where(plan["flip"][:, None, None, None], x.flip(3), x)
    return x


def random_crop(x: torch.Tensor, pad: int, shift: torch.Tensor) -> torch.Tensor:
    """Crop each image of ``x`` at its own offset ``shift[i] = (dy, dx)`` after reflect padding.

    One gather for the whole batch: no per-image Python loop.
    """
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    rows = shift[:, 0, None] + torch.arange(h, device=x.device)  # (n, h)
    cols = shift[:, 1, None] + torch.arange(w, device=x.device)  # (n, w)
    batch = torch.arange(n, device=x.device)[:, None, None]
    cropped = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
    return cropped.permute(0, 3, 1, 2)
