"""Class-stratified subsets: what `bench --train-size/--test-size` runs on."""

from __future__ import annotations

import numpy as np
import pytest

from unlearnkit.data import DataError, Dataset, ImageData
from unlearnkit.data.dataset import stratified_sample


def test_subset_keeps_each_class_share_and_is_seeded(digits):
    small = digits.subset(300, 100, seed=0)
    assert (len(small.train), len(small.test)) == (300, 100)
    full_share = np.bincount(digits.train.labels) / len(digits.train)
    assert np.abs(np.bincount(small.train.labels) - 300 * full_share).max() <= 1  # largest-remainder quotas
    again = digits.subset(300, 100, seed=0)
    assert np.array_equal(small.train.images, again.train.images)
    other = digits.subset(300, 100, seed=1)
    assert not np.array_equal(small.train.images, other.train.images)
    assert small.fingerprint() != digits.fingerprint() and "subset: 300 train / 100 test" in small.source


def test_subset_images_come_from_the_split_with_their_labels(digits):
    small = digits.subset(50, None, seed=3)
    assert small.test is digits.test
    flat = digits.train.images.reshape(len(digits.train), -1)
    for image, label in zip(small.train.images, small.train.labels, strict=True):
        match = np.flatnonzero((flat == image.reshape(-1)).all(1))
        assert len(match) and label in digits.train.labels[match]


def test_subset_of_everything_is_the_dataset_and_too_small_is_an_error(digits):
    assert digits.subset(None, None) is digits and digits.subset(10**6, 10**6) is digits
    with pytest.raises(DataError, match="cannot hold all 10 classes"):
        digits.subset(5)


def test_subset_keeps_a_rare_class():
    labels = np.repeat([0, 1, 2], [1000, 1000, 5])
    split = ImageData(np.zeros((len(labels), 1, 2, 2), np.uint8), labels, ("a", "b", "rare"))
    small = Dataset("rare", split, split).subset(100, None, seed=0)
    # Proportional quotas round the rare class to zero ([50, 50, 0]); it keeps one, taken from a big class.
    assert np.bincount(small.train.labels).tolist() == [49, 50, 1]


def proportional_index(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """The indices that the allocation before the at-least-one rule drew (largest remainders only)."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts * size / len(labels)).astype(int)
    remainder = counts * size / len(labels) - quota
    quota[np.argsort(-remainder, kind="stable")[: size - quota.sum()]] += 1
    kept = [rng.choice(np.flatnonzero(labels == c), q, replace=False) for c, q in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(kept))


@pytest.mark.parametrize(("size", "seed"), [(10, 0), (137, 2), (300, 0), (1000, 5)])
def test_subset_without_rare_classes_is_unchanged(digits, size, seed):
    # Benchmark subsets (and so their cached models) must not move: same samples as before the rule.
    balanced = np.random.default_rng(seed).permutation(np.repeat(np.arange(10), 150))
    split = ImageData(np.arange(len(balanced), dtype=np.uint8).reshape(-1, 1, 1, 1), balanced, tuple("abcdefghij"))
    for full in (split, digits.train):
        small = stratified_sample(full, size, seed, "train")
        index = proportional_index(full.labels, size, seed)
        np.testing.assert_array_equal(small.labels, full.labels[index])
        np.testing.assert_array_equal(small.images, full.images[index])
