"""Class-stratified subsets: what `bench --train-size/--test-size` runs on."""

from __future__ import annotations

import numpy as np
import pytest

from unlearnkit.data import DataError


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
