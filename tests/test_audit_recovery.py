"""Recovery attacks (spec 1.5): the feature map undoes a rotation but not a collapse; the linear
probe reads class information from rotated features but not from noise; misuse is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import CPU

from unlearnkit.audit.recovery import (
    AuditError,
    default_calibration_split,
    default_probe_split,
    feature_map_attack,
    fit_feature_map,
    linear_probe_attack,
    stratified_halves,
)
from unlearnkit.inference import accuracy
from unlearnkit.tasks import ForgetRequest, place, random_request


class RotatedFeatures(nn.Module):
    """The original encoder followed by an orthogonal rotation, with a new random head:
    a 'shallow' unlearning whose own predictions are wrong but whose features lost nothing."""

    def __init__(self, base: nn.Module, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        d = base.head.in_features
        rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=gen))
        self.base = base
        self.register_buffer("rotation", rotation)
        self.head = nn.Linear(d, base.head.out_features)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=gen))
            self.head.bias.zero_()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.features(x) @ self.rotation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class CollapsedForget(nn.Module):
    """The original model, except that inputs it assigns to ``forget_class`` get all-zero features
    (a perfect one-point contraction of the forget class, spec 1.2)."""

    def __init__(self, base: nn.Module, forget_class: int):
        super().__init__()
        self.base, self.forget_class, self.head = base, forget_class, base.head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.base.features(x)
        keep = self.base.head(feats).argmax(1) != self.forget_class
        return feats * keep[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class NoiseFeatures(nn.Module):
    """Features that carry no information about the input (fresh Gaussian noise)."""

    def __init__(self, base: nn.Module):
        super().__init__()
        self.head = nn.Linear(base.head.in_features, base.head.out_features)
        self.generator = torch.Generator().manual_seed(1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn(len(x), self.head.in_features, generator=self.generator).to(x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _calibration_on_retain(request: ForgetRequest) -> np.ndarray:
    # A held-out part of D_r (spec 1.5 step 1): here all of it, to have more samples than the 256
    # feature dimensions of the test MLP.
    return request.retain_idx


def _forget_targets(request: ForgetRequest) -> dict[str, tuple[str, np.ndarray]]:
    return {"forget": ("train", request.forget_idx), "test_forget": ("test", request.test_forget_idx)}


def test_feature_map_fully_recovers_a_rotation(original: nn.Module, class_3: ForgetRequest) -> None:
    splits = place(class_3, CPU)
    rotated = RotatedFeatures(original).eval()
    original_forget = accuracy(original, splits.train, class_3.forget_idx)
    own_forget = accuracy(rotated, splits.train, class_3.forget_idx)
    recovered = feature_map_attack(
        rotated,
        original,
        splits,
        _calibration_on_retain(class_3),
        _forget_targets(class_3),
        calibration_split="train",
        forget_idx=class_3.forget_idx,
    )
    assert original_forget > 90
    assert own_forget < 50, "the rotated model's random head should not classify the forget set"
    assert abs(recovered["forget"] - original_forget) <= 1.0
    assert abs(recovered["test_forget"] - accuracy(original, splits.test, class_3.test_forget_idx)) <= 5.0


def test_feature_map_cannot_recover_a_collapse(original: nn.Module, class_3: ForgetRequest) -> None:
    splits = place(class_3, CPU)
    collapsed = CollapsedForget(original, forget_class=3).eval()
    targets = {**_forget_targets(class_3), "test_retain": ("test", class_3.test_retain_idx)}
    recovered = feature_map_attack(
        collapsed,
        original,
        splits,
        _calibration_on_retain(class_3),
        targets,
        calibration_split="train",
        forget_idx=class_3.forget_idx,
    )
    assert recovered["forget"] < 10
    assert recovered["test_forget"] < 10
    assert recovered["test_retain"] > 85, "retained classes keep their features, so the map recovers them"


def test_feature_map_is_the_identity_for_identical_features() -> None:
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(200, 8, generator=gen)
    mapping = fit_feature_map(feats, feats, ridge=0.0)
    assert torch.allclose(mapping[:8], torch.eye(8, dtype=torch.float64), atol=1e-8)
    assert torch.allclose(mapping[8], torch.zeros(8, dtype=torch.float64), atol=1e-8)


def test_default_calibration_excludes_forget_data(class_3: ForgetRequest) -> None:
    (split, calibration), targets = default_calibration_split(class_3, seed=0)
    assert split == "test"
    assert not np.isin(calibration, class_3.test_forget_idx).any()
    assert not np.isin(calibration, targets["test_retain"][1]).any()
    assert set(targets) == {"forget", "test_forget", "test_retain"}


def test_linear_probe_reads_rotated_features_not_noise(original: nn.Module, class_3: ForgetRequest) -> None:
    splits = place(class_3, CPU)
    probe_train, targets = default_probe_split(class_3, seed=0)
    rotated = linear_probe_attack(RotatedFeatures(original).eval(), splits, probe_train, targets)
    noise = linear_probe_attack(NoiseFeatures(original).eval(), splits, probe_train, targets)
    assert rotated["forget"] > 80 and rotated["test_retain"] > 80
    assert noise["forget"] < 35 and noise["test_retain"] < 35


def test_default_probe_split_is_disjoint_and_covers_every_class(class_3: ForgetRequest, small_digits) -> None:
    for request in (class_3, random_request(small_digits, 0.1, seed=0)):
        ((split, probe_idx),) = default_probe_split(request, seed=3)[0].values()
        targets = default_probe_split(request, seed=3)[1]
        assert split == "test"
        assert set(np.unique(request.test_labels[probe_idx])) == set(np.unique(request.test_labels))
        for target_split, target_idx in targets.values():
            assert len(target_idx) > 0
            if target_split == "test":
                assert not np.isin(target_idx, probe_idx).any()
    assert "test_forget" in default_probe_split(class_3)[1]
    assert "test_forget" not in default_probe_split(random_request(small_digits, 0.1))[1]


def test_stratified_halves_partition() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    first, second = stratified_halves(np.arange(6), labels, seed=0)
    assert sorted(np.concatenate([first, second]).tolist()) == list(range(6))
    assert np.bincount(labels[first], minlength=3).tolist() == [2, 1, 1]


def test_calibration_overlapping_the_forget_set_is_refused(original: nn.Module, class_3: ForgetRequest) -> None:
    splits = place(class_3, CPU)
    leaky = np.concatenate([class_3.retain_idx[:50], class_3.forget_idx[:1]])
    with pytest.raises(AuditError, match="forget samples"):
        feature_map_attack(
            original,
            original,
            splits,
            leaky,
            _forget_targets(class_3),
            calibration_split="train",
            forget_idx=class_3.forget_idx,
        )


def test_too_small_calibration_and_empty_targets_are_refused(original: nn.Module, class_3: ForgetRequest) -> None:
    splits = place(class_3, CPU)
    with pytest.raises(AuditError, match="at least"):
        feature_map_attack(original, original, splits, class_3.test_retain_idx[:3], _forget_targets(class_3))
    with pytest.raises(AuditError, match="empty"):
        feature_map_attack(
            original, original, splits, class_3.test_retain_idx, {"test_forget": ("test", np.empty(0, dtype=np.int64))}
        )
    with pytest.raises(AuditError, match="no target"):
        feature_map_attack(original, original, splits, class_3.test_retain_idx, {})
    with pytest.raises(AuditError, match="unknown split"):
        feature_map_attack(original, original, splits, class_3.test_retain_idx, {"x": ("val", np.arange(3))})


def test_probe_refuses_targets_it_was_trained_on(original: nn.Module, class_3: ForgetRequest) -> None:
    splits = place(class_3, CPU)
    probe_train = {"some_test": ("test", np.arange(100))}
    with pytest.raises(AuditError, match="share 10 test samples"):
        linear_probe_attack(original, splits, probe_train, {"overlap": ("test", np.arange(90, 120))})


def test_probe_with_forget_labels_still_separates_a_collapse(original: nn.Module, class_3: ForgetRequest) -> None:
    # The documented caveat: a one-point contraction defeats the feature map (no forget labels)
    # but not a probe that is shown labelled forget-class images.
    splits = place(class_3, CPU)
    probe_train, targets = default_probe_split(class_3, seed=0)
    recovered = linear_probe_attack(CollapsedForget(original, forget_class=3).eval(), splits, probe_train, targets)
    assert recovered["forget"] > 90
