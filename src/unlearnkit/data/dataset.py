"""The one in-memory dataset type every loader returns.

Images are kept as uint8 ``N x C x H x W`` numpy arrays so that a whole dataset can be moved to
an accelerator once and batched there (see :mod:`unlearnkit.data.batches`).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field, replace

import numpy as np


class DataError(ValueError):
    """A dataset is missing, malformed or used with an invalid argument."""


@dataclass(frozen=True)
class ImageData:
    """One split (train or test) of an image classification dataset.

    Attributes:
        images: uint8 array ``(N, C, H, W)``.
        labels: int64 array ``(N,)`` of fine labels in ``[0, len(class_names))``.
        class_names: names of the fine classes, indexed by label.
        coarse_labels: optional int64 array ``(N,)`` of superclass labels.
        coarse_names: names of the superclasses, when ``coarse_labels`` is given.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    coarse_labels: np.ndarray | None = None
    coarse_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", np.asarray(self.images))
        _check_images(self.images)
        object.__setattr__(self, "labels", _integer_labels("labels", self.labels, len(self.images)))
        object.__setattr__(self, "class_names", _unique_names("class_names", self.class_names))
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise DataError(
                f"labels must lie in [0, {len(self.class_names)}) for {len(self.class_names)} class names; "
                f"found range [{self.labels.min()}, {self.labels.max()}]"
            )
        if (self.coarse_labels is None) != (self.coarse_names is None):
            raise DataError("coarse_labels and coarse_names must be given together")
        if self.coarse_labels is not None:
            object.__setattr__(self, "coarse_labels", _integer_labels("coarse_labels", self.coarse_labels, len(self.images)))
            object.__setattr__(self, "coarse_names", _unique_names("coarse_names", self.coarse_names))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """A short content hash of images, labels and names (cache keys, checkpoint sidecars)."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.images).tobytes())
        digest.update(self.labels.tobytes())
        digest.update("\x1f".join(self.class_names).encode())
        if self.coarse_labels is not None:
            digest.update(self.coarse_labels.tobytes())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Dataset:
    """A named dataset: a train and a test split sharing one label space.

    ``source`` says where the arrays came from (a path, "scikit-learn", a JPEG archive...), so that
    results can tell e.g. CIFAR-10 from its JPEG re-encoding.
    """

    name: str
    train: ImageData
    test: ImageData
    source: str = ""
    _fingerprint: list[str] = field(default_factory=list, init=False, repr=False, compare=False)  # fingerprint() cache

    def __post_init__(self) -> None:
        if self.train.class_names != self.test.class_names:
            raise DataError(f"{self.name}: train and test splits have different class names")
        if self.train.image_shape != self.test.image_shape:
            raise DataError(
                f"{self.name}: train images are {self.train.image_shape} but test images are "
                f"{self.test.image_shape}"
            )

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.train.image_shape

    def fingerprint(self) -> str:
        """Content hash of both splits, computed once (hashing CIFAR takes ~0.3 s)."""
        if not self._fingerprint:
            self._fingerprint.append(
                hashlib.sha256((self.train.fingerprint() + self.test.fingerprint()).encode()).hexdigest()[:16]
            )
        return self._fingerprint[0]

    def subset(self, train_size: int | None = None, test_size: int | None = None, seed: int = 0) -> Dataset:
        """A class-stratified random subset of each split (``None`` keeps a split whole).

        Each class keeps its share of the split, so a balanced dataset stays balanced, and at least
        one sample, so a rare class is not dropped; the order of the kept samples is the original
        order. The subset is a new dataset (its fingerprint, and so every checkpoint key, differs from
        the full one); ``source`` records the sizes.
        """
        train = stratified_sample(self.train, train_size, seed, "train")
        test = stratified_sample(self.test, test_size, seed, "test")
        if train is self.train and test is self.test:
            return self
        source = f"{self.source} [subset: {len(train)} train / {len(test)} test, seed {seed}]"
        return Dataset(self.name, train, test, source)

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the training images in [0, 1] (for model input normalisation)."""
        pixels = self.train.images.astype(np.float32) / 255.0
        mean = pixels.mean(axis=(0, 2, 3))
        std = pixels.std(axis=(0, 2, 3)) + 1e-6
        return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def stratified_sample(split: ImageData, size: int | None, seed: int, what: str) -> ImageData:
    """``size`` samples of ``split``, each class drawn in proportion to its count, at least one (seeded)."""
    if size is None or size >= len(split):
        if size is not None and size > len(split):
            warnings.warn(f"a {what} subset of {size} was asked for, but the {what} split has {len(split)} images; using all of them", stacklevel=3)
        return split
    if size < split.num_classes:
        raise DataError(f"a {what} subset of {size} cannot hold all {split.num_classes} classes; ask for at least {split.num_classes}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(split.labels, return_counts=True)
    quota = _class_quotas(counts, size)
    kept = [rng.choice(np.flatnonzero(split.labels == c), q, replace=False) for c, q in zip(classes, quota, strict=True)]
    index = np.sort(np.concatenate(kept))
    coarse = split.coarse_labels[index] if split.coarse_labels is not None else None
    return replace(split, images=split.images[index], labels=split.labels[index], coarse_labels=coarse)


def _class_quotas(counts: np.ndarray, size: int) -> np.ndarray:
    """Samples per class: ``size`` shared in proportion to ``counts`` (largest remainders), at least one each.

    A class far rarer than the others can round to zero, which would drop it from the subset
    (and so from every class-wise task); it gets one sample, taken from the class given the most
    above its share. When no class rounds to zero the quotas are the proportional ones.
    """
    share = counts * size / counts.sum()
    quota = np.floor(share).astype(int)
    remainder = share - quota
    quota[np.argsort(-remainder, kind="stable")[: size - quota.sum()]] += 1  # largest remainders fill up to size
    for rare in np.flatnonzero(quota == 0):
        if size < len(counts):
            break  # too small to hold every class
        donor = np.argmax(np.where(quota > 1, quota - share, -np.inf))
        quota[donor] -= 1
        quota[rare] = 1
    return quota


def _check_images(images: np.ndarray) -> None:
    if images.dtype != np.uint8 or images.ndim != 4:
        raise DataError(
            f"images must be a uint8 array of shape (N, C, H, W); got dtype {images.dtype} and shape {images.shape}"
        )
    if images.shape[1] not in (1, 3, 4) and images.shape[-1] in (1, 3, 4):
        raise DataError(
            f"images of shape {images.shape} look like (N, H, W, C); the toolkit takes (N, C, H, W): "
            "transpose them with images.transpose(0, 3, 1, 2)"
        )


def _integer_labels(name: str, labels: object, count: int) -> np.ndarray:
    """``labels`` as int64, refusing fractional values (a silent truncation would mislabel samples)."""
    values = np.asarray(labels)
    if values.shape != (count,):
        raise DataError(f"{name} must have shape ({count},) to match the images; got {values.shape}")
    if values.dtype.kind == "f":
        fractional = ~(np.isfinite(values) & (values == np.round(values)))
        if fractional.any():
            raise DataError(f"{name} must be whole numbers (class indices); got non-integer values such as {values[fractional][0]!r}")
    if values.dtype.kind not in "iuf":
        raise DataError(f"{name} must be integer class indices; got dtype {values.dtype}")
    return values.astype(np.int64, copy=False)


def _unique_names(name: str, names: object) -> tuple[str, ...]:
    names = tuple(str(n) for n in names)  # type: ignore[attr-defined]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{name} must be distinct (a request names a class by its name); repeated: {', '.join(repeated)}")
    return names
