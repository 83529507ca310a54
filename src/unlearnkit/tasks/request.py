"""A forget request: which training samples must be forgotten, as named index sets."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from unlearnkit.data import Dataset, DeviceImages, ImageData
from unlearnkit.runtime import resolve_device


class RequestError(ValueError):
    """A forget request that cannot be honoured as given (the message says why and what is valid)."""


TRUE_REMAINING = "train_true_remaining"  # the extra set the oracle trains on (TARF's D_r, spec 5.2)
RESERVED_SET_NAMES = ("forget", "retain", "test_forget", "test_retain")


@dataclass(frozen=True)
class ForgetRequest:
    """Named index sets over a dataset, in the label space the model uses.

    Attributes:
        dataset: the data the indices point into.
        kind: ``"class"``, ``"random"``, ``"indices"``, ... (the registered request kind).
        spec: the request as a user would write it, e.g. ``"class:3"`` or ``"random:0.1"``.
        forget_idx: training indices of D_f.
        retain_idx: training indices of D_r (disjoint from D_f; together all training data).
        test_forget_idx: test indices of the forgotten classes (empty for sample-wise requests).
        test_retain_idx: test indices used for test accuracy (retained classes for class-wise
            forgetting, spec 6.1; the whole test set otherwise).
        label_space: ``"fine"`` (or ``"coarse"`` where a dataset has superclasses).
        forget_classes: class indices (in ``label_space``) forgotten by a class-wise request.
        extra_sets: further named index sets (TARF tasks, spec 5.2). A name starting with
            ``"train_"`` indexes the training split, one starting with ``"test_"`` the test split;
            metrics get a model's outputs on each under the same name. Empty for plain requests.
    """

    dataset: Dataset
    kind: str
    spec: str
    forget_idx: np.ndarray
    retain_idx: np.ndarray
    test_forget_idx: np.ndarray
    test_retain_idx: np.ndarray
    label_space: str = "fine"
    forget_classes: tuple[int, ...] = ()
    extra_sets: Mapping[str, np.ndarray] = field(default_factory=dict)
    _key: list[str] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_partition(self.forget_idx, self.retain_idx, len(self.dataset.train), "training")
        check_partition(self.test_forget_idx, self.test_retain_idx, len(self.dataset.test), "test", allow_empty_forget=True, cover=False)
        for name, indices in self.extra_sets.items():
            check_extra_set(name, indices, len(self.dataset.train), len(self.dataset.test))

    @property
    def oracle_idx(self) -> np.ndarray:
        """Training indices the oracle is retrained on: the true remaining set D_r = D \\ D_t for
        TARF tasks (spec 5.2, the ``"train_true_remaining"`` extra set), ``retain_idx`` otherwise."""
        return self.extra_sets.get(TRUE_REMAINING, self.retain_idx)

    @property
    def train_labels(self) -> np.ndarray:
        return labels_in_space(self.dataset.train, self.label_space, self.dataset.name)

    @property
    def test_labels(self) -> np.ndarray:
        return labels_in_space(self.dataset.test, self.label_space, self.dataset.name)

    @property
    def class_names(self) -> tuple[str, ...]:
        return class_names_in_space(self.dataset, self.label_space)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def key(self) -> str:
        """A short hash of the index sets and label space (identifies the request in results)."""
        if not self._key:
            digest = hashlib.sha256(self.dataset.fingerprint().encode() + self.label_space.encode())
            for part in (self.forget_idx, self.test_retain_idx):
                digest.update(np.sort(part).astype(np.int64).tobytes())
            if self.extra_sets:  # only TARF tasks: plain requests keep their old keys
                digest.update(self.kind.encode())
                for name in sorted(self.extra_sets):
                    digest.update(name.encode() + np.sort(self.extra_sets[name]).astype(np.int64).tobytes())
            self._key.append(digest.hexdigest()[:12])
        return self._key[0]

    def summary(self) -> str:
        return (
            f"{self.spec} on {self.dataset.name}: forget {len(self.forget_idx)}, retain {len(self.retain_idx)}, "
            f"test-forget {len(self.test_forget_idx)}, test-retain {len(self.test_retain_idx)}"
        )


def labels_in_space(split: ImageData, label_space: str, dataset_name: str) -> np.ndarray:
    """The labels of ``split`` in ``label_space`` (``"fine"`` or ``"coarse"``)."""
    if label_space == "fine":
        return split.labels
    if label_space == "coarse" and split.coarse_labels is not None:
        return split.coarse_labels
    raise RequestError(f"{dataset_name} has no {label_space!r} labels; use label_space='fine'")


def class_names_in_space(dataset: Dataset, label_space: str) -> tuple[str, ...]:
    if label_space == "coarse" and dataset.train.coarse_names is not None:
        return dataset.train.coarse_names
    labels_in_space(dataset.train, label_space, dataset.name)  # raises for an unknown space
    return dataset.class_names


def check_partition(
    forget: np.ndarray,
    retain: np.ndarray,
    size: int,
    what: str,
    *,
    allow_empty_forget: bool = False,
    cover: bool = True,
) -> None:
    """Check that ``forget`` and ``retain`` are disjoint, duplicate-free index sets of a split of ``size``."""
    for name, idx in (("forget", forget), ("retain", retain)):
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise RequestError(f"{what} {name} indices must be a 1-D integer array; got {idx.dtype} of shape {idx.shape}")
        if len(idx) and (idx.min() < 0 or idx.max() >= size):
            raise RequestError(f"{what} {name} indices must lie in [0, {size}); found [{idx.min()}, {idx.max()}]")
        if len(np.unique(idx)) != len(idx):
            raise RequestError(f"{what} {name} indices contain duplicates")
    if not allow_empty_forget and len(forget) == 0:
        raise RequestError(f"the {what} forget set is empty: there is nothing to unlearn")
    if len(np.intersect1d(forget, retain)):
        raise RequestError(f"the {what} forget and retain sets overlap in {len(np.intersect1d(forget, retain))} samples")
    if cover and len(forget) + len(retain) != size:
        raise RequestError(f"the {what} forget and retain sets must cover all {size} samples")
    if cover and len(retain) == 0:
        raise RequestError(f"the forget set covers all {size} {what} samples: nothing would remain to keep a model")


def extra_set_split(name: str) -> str:
    """``"train"`` or ``"test"``: the split an extra set indexes, read from its name's prefix."""
    for split in ("train", "test"):
        if name.startswith(split + "_") and len(name) > len(split) + 1:
            return split
    raise RequestError(f"extra set name {name!r} must start with 'train_' or 'test_' (the split it indexes)")


def check_extra_set(name: str, indices: np.ndarray, n_train: int, n_test: int) -> None:
    """Check one named extra set: a valid name and duplicate-free, in-range integer indices."""
    if name in RESERVED_SET_NAMES:
        raise RequestError(f"extra set name {name!r} is taken by a standard split; reserved: {', '.join(RESERVED_SET_NAMES)}")
    split = extra_set_split(name)
    size = n_train if split == "train" else n_test
    if indices.ndim != 1 or (len(indices) and not np.issubdtype(indices.dtype, np.integer)):
        raise RequestError(f"extra set {name!r} must be a 1-D integer array; got {indices.dtype} of shape {indices.shape}")
    if len(indices) and (indices.min() < 0 or indices.max() >= size):
        raise RequestError(f"extra set {name!r} indices must lie in [0, {size}) ({split} split); found [{indices.min()}, {indices.max()}]")
    if len(np.unique(indices)) != len(indices):
        raise RequestError(f"extra set {name!r} contains duplicate indices")


@dataclass(frozen=True)
class DeviceSplits:
    """A request's train and test splits on one device, labels in the request's label space."""

    train: DeviceImages
    test: DeviceImages


def place(request: ForgetRequest, device: str | torch.device = "auto") -> DeviceSplits:
    """Copy the request's dataset to ``device`` (``"auto"``, ``"cpu"``, ``"cuda"`` or a
    ``torch.device``) once; methods and metrics then index into it."""
    target = resolve_device(device)
    return DeviceSplits(
        train=DeviceImages(request.dataset.train, target, request.train_labels),
        test=DeviceImages(request.dataset.test, target, request.test_labels),
    )
