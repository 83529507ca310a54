"""Device-resident batching and on-device augmentation."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from unlearnkit.data import Augment, DeviceImages, ImageData
from unlearnkit.data.batches import random_crop


def tiny_split(n=10, size=6):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    return ImageData(images, np.arange(n) % 3, ("a", "b", "c"))


def test_random_crop_offsets():
    x = torch.rand(2, 3, 6, 6)
    centred = random_crop(x, 2, torch.tensor([[2, 2], [2, 2]]))
    assert torch.equal(centred, x)
    corner = random_crop(x, 2, torch.tensor([[0, 0], [4, 4]]))
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    assert torch.equal(corner[0], padded[0, :, :6, :6]) and torch.equal(corner[1], padded[1, :, 4:10, 4:10])


def test_batches_cover_each_index_once_in_seeded_order():
    images = DeviceImages(tiny_split(), "cpu")
    idx = np.array([1, 3, 5, 7, 9])
    runs = [
        torch.cat([b[2] for b in images.batches(idx, 2, shuffle=True, generator=torch.Generator().manual_seed(4))])
        for _ in range(2)
    ]
    assert sorted(runs[0].tolist()) == idx.tolist() and torch.equal(runs[0], runs[1])


def test_unaugmented_batches_are_exact_pixels_and_labels():
    split = tiny_split()
    images = DeviceImages(split, "cpu")
    x, y, idx = next(images.batches(np.array([4, 2]), 8))
    assert torch.equal(x, torch.from_numpy(split.images[[4, 2]]).float() / 255)
    assert y.tolist() == [1, 2] and idx.tolist() == [4, 2]


def test_flip_flips_about_half_and_keeps_pixels():
    split = tiny_split(n=400)
    images = DeviceImages(split, "cpu")
    x, _, idx = next(images.batches(np.arange(400), 400, augment=Augment(flip=True), generator=torch.Generator().manual_seed(0)))
    original = torch.from_numpy(split.images).float() / 255
    flipped = torch.tensor([torch.equal(x[i], original[i].flip(2)) for i in range(400)])
    unchanged = torch.tensor([torch.equal(x[i], original[i]) for i in range(400)])
    assert (flipped | unchanged).all() and 150 < flipped.sum() < 250


def test_label_override_and_mirror():
    split = tiny_split()
    images = DeviceImages(split, "cpu")
    override = torch.full((10,), 7)
    _, y, _ = next(images.batches(np.arange(3), 3, labels=override))
    assert y.tolist() == [7, 7, 7]
    assert torch.equal(images.mirrored().gather([0])[0], images.gather([0])[0].flip(3))


def test_crop_padding_is_fitted_below_a_tiny_image_size():
    images = DeviceImages(tiny_split(size=4), "cpu")  # reflect padding of 4 px needs images above 4 px
    x, _, _ = next(images.batches(np.arange(10), 10, augment=Augment(crop_pad=4), generator=torch.Generator().manual_seed(0)))
    assert x.shape == (10, 3, 4, 4)
    assert Augment(crop_pad=4).fitted(4, 6) == Augment(crop_pad=3) and Augment(crop_pad=4).fitted(32, 32) == Augment(crop_pad=4)
