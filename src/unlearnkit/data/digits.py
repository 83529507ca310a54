"""scikit-learn's 8x8 handwritten digits, the dataset that needs no file and no download."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from unlearnkit.data.dataset import Dataset, ImageData
from unlearnkit.data.registry import register_dataset

DIGIT_NAMES = tuple(str(d) for d in range(10))
TEST_SIZE = 0.2
SPLIT_SEED = 0


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 ``(N, 1, 8, 8)`` images scaled from 0..16 to 0..255, and their labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    return images, bunch.target.astype(np.int64)


@register_dataset("digits", crop_pad=0, flip=False, description="scikit-learn 8x8 digits, 10 classes (bundled)")
def load_digits_dataset(root: Path | None, cache_dir: Path) -> Dataset:
    """Load scikit-learn's ``load_digits()`` with a fixed stratified train/test split.

    The split is ``train_test_split(test_size=0.2, random_state=0, stratify=labels)``: 1,437 train
    and 360 test images, the same on every machine (each split kept in the original order).
    ``root`` and ``cache_dir`` are not used (the data ships inside scikit-learn and loads in
    milliseconds); a ``root`` given anyway gets a warning rather than being dropped silently.
    """
    from sklearn.model_selection import train_test_split

    if root is not None:
        warnings.warn(
            f"digits ships with scikit-learn, so the data root {root} is not read; for your own files use "
            "--dataset imagefolder (or load_dataset('imagefolder', root=...))",
            stacklevel=3,  # the caller of load_dataset, the one entry point
        )

    images, labels = digits_arrays()
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=labels
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return Dataset(
        name="digits",
        train=ImageData(images[train_idx], labels[train_idx], DIGIT_NAMES),
        test=ImageData(images[test_idx], labels[test_idx], DIGIT_NAMES),
        source="scikit-learn load_digits",
    )
