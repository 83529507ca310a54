"""Metrics against hand-computed values, and on a real original/oracle pair."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from unlearnkit.data import Dataset
from unlearnkit.metrics import GAP_KEYS, METRICS, ModelOutputs, SplitOutputs, evaluate, gap_to_oracle
from unlearnkit.metrics.accuracy import accuracies
from unlearnkit.metrics.mia import confidence, mia_efficacy, shadow_members, svc_attack
from unlearnkit.tasks import ForgetRequest, place

CPU = torch.device("cpu")
NO_REQUEST = SimpleNamespace()  # accuracy and MIA read only the outputs


def _split(logits: list[list[float]], labels: list[int]) -> SplitOutputs:
    return SplitOutputs(torch.tensor(logits, dtype=torch.float32), torch.tensor(labels, dtype=torch.long))


def _at_confidence(confidences: np.ndarray) -> SplitOutputs:
    """Two-class outputs, true label 0, whose softmax on the true label is ``confidences``."""
    p = np.asarray(confidences, dtype=np.float64)
    logits = np.stack([np.log(p), np.log1p(-p)], axis=1)
    return SplitOutputs(torch.tensor(logits, dtype=torch.float32), torch.zeros(len(p), dtype=torch.long))


def _around(value: float, n: int, spread: float, seed: int) -> np.ndarray:
    return np.clip(value + np.random.default_rng(seed).uniform(-spread, spread, n), 1e-4, 1 - 1e-4)


# --- accuracy --------------------------------------------------------------------------------


def test_split_accuracy_hand_computed() -> None:
    two_of_three = _split([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]], [0, 1, 1])
    assert two_of_three.accuracy() == pytest.approx(200 / 3, rel=1e-6)
    assert math.isnan(SplitOutputs(torch.empty(0, 2), torch.empty(0, dtype=torch.long)).accuracy())


def test_accuracies_map_each_split_to_its_key() -> None:
    outputs = ModelOutputs(
        {
            # 2 of 3 correct
            "forget": _split([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 5.0]], [0, 1, 0]),
            # 4 of 4 correct
            "retain": _split([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [3.0, 2.0, 1.0]], [0, 1, 2, 0]),
            # 1 of 4 correct
            "test_retain": _split([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], [0, 1, 2, 2]),
            # 0 of 2 correct
            "test_forget": _split([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [0, 0]),
        }
    )
    result = accuracies(outputs, NO_REQUEST)
    assert set(result) == {"forget_acc", "retain_acc", "test_acc", "test_forget_acc"}
    assert result["forget_acc"] == pytest.approx(200 / 3, rel=1e-6)
    assert result["retain_acc"] == pytest.approx(100.0)
    assert result["test_acc"] == pytest.approx(25.0)
    assert result["test_forget_acc"] == pytest.approx(0.0)


# --- MIA -------------------------------------------------------------------------------------


def test_confidence_is_softmax_of_the_true_label() -> None:
    split = _split([[0.0, math.log(3.0)], [0.0, math.log(3.0)], [1.0, 2.0]], [1, 0, 1])
    conf = confidence(split)
    assert conf.shape == (3, 1)
    assert conf.dtype == np.float64
    assert conf[0, 0] == pytest.approx(0.75, abs=1e-6)
    assert conf[1, 0] == pytest.approx(0.25, abs=1e-6)
    assert conf[2, 0] == pytest.approx(math.e / (1 + math.e), abs=1e-6)
    three = confidence(_split([[1.0, 2.0, 3.0]], [2]))
    assert three[0, 0] == pytest.approx(math.exp(3) / (math.exp(1) + math.exp(2) + math.exp(3)), abs=1e-6)


def test_svc_attack_separates_confident_members_from_unsure_non_members() -> None:
    members = _around(0.99, 30, 0.01, seed=0)[:, None]
    non_members = _around(0.1, 30, 0.02, seed=1)[:, None]
    low = _around(0.1, 12, 0.02, seed=2)[:, None]
    high = _around(0.99, 12, 0.01, seed=3)[:, None]
    assert svc_attack(members, non_members, low) == pytest.approx(100.0)
    assert svc_attack(members, non_members, high) == pytest.approx(0.0)
    half = np.concatenate([low[:6], high[:6]])
    assert svc_attack(members, non_members, half) == pytest.approx(50.0)


def test_shadow_members_are_a_seeded_draw_from_the_whole_retain_split() -> None:
    # A class-sorted retain split (an image folder's order): 25 of class 0, then 25 of class 1.
    retain = SplitOutputs(torch.randn(50, 2, generator=torch.Generator().manual_seed(0)), torch.tensor([0] * 25 + [1] * 25))
    shadow = shadow_members(retain, 10)
    assert len(shadow) == 10 and set(shadow.labels.tolist()) == {0, 1}  # a slice of the first 10 would be class 0 only
    assert torch.equal(shadow.logits, shadow_members(retain, 10).logits)  # seeded: the same draw every time
    rows = [int(torch.nonzero((retain.logits == row).all(1))[0]) for row in shadow.logits]
    assert rows == sorted(rows) and len(set(rows)) == 10  # distinct samples, kept in index order
    assert shadow_members(retain, 50) is retain and shadow_members(retain, 80) is retain


def test_mia_efficacy_takes_test_size_shadow_members_and_the_retained_test_split() -> None:
    n_test = 10
    outputs = ModelOutputs(
        {
            "retain": _at_confidence(_around(0.99, 50, 0.01, seed=0)),  # members: confident
            "test_retain": _at_confidence(_around(0.1, n_test, 0.02, seed=2)),
            # A distractor: the forgotten classes' test split is confident; it must not be a non-member.
            "test_forget": _at_confidence(_around(0.99, 30, 0.01, seed=3)),
            "forget": _at_confidence(_around(0.1, 8, 0.02, seed=4)),
        }
    )
    result = mia_efficacy(outputs, NO_REQUEST)
    assert set(result) == {"mia"} and result["mia"] == pytest.approx(100.0)
    shadow = shadow_members(outputs["retain"], n_test)
    expected = svc_attack(confidence(shadow), confidence(outputs["test_retain"]), confidence(outputs["forget"]))
    assert result["mia"] == expected


def test_mia_efficacy_is_zero_when_forget_looks_like_members() -> None:
    outputs = ModelOutputs(
        {
            "retain": _at_confidence(_around(0.6, 20, 0.02, seed=0)),
            "test_retain": _at_confidence(_around(0.1, 20, 0.02, seed=1)),
            # The forgotten classes' test split sits where the targets are; it is not a non-member set.
            "test_forget": _at_confidence(_around(0.95, 10, 0.02, seed=2)),
            "forget": _at_confidence(_around(0.95, 9, 0.02, seed=3)),
        }
    )
    assert mia_efficacy(outputs, NO_REQUEST)["mia"] == pytest.approx(0.0)
    # With test_forget as the non-members the answer would be the opposite.
    wrong = svc_attack(confidence(outputs["retain"]), confidence(outputs["test_forget"]), confidence(outputs["forget"]))
    assert wrong == pytest.approx(100.0)


# --- gap -------------------------------------------------------------------------------------


def test_gap_to_oracle_hand_example() -> None:
    unlearned = {"forget_acc": 10.0, "retain_acc": 90.0, "test_acc": 80.0, "mia": 50.0}
    oracle = {"forget_acc": 0.0, "retain_acc": 100.0, "test_acc": 85.0, "mia": 100.0}
    assert gap_to_oracle(unlearned, oracle) == pytest.approx((10 + 10 + 5 + 50) / 4)
    assert gap_to_oracle(unlearned, oracle) == pytest.approx(18.75)
    assert gap_to_oracle(oracle, unlearned) == pytest.approx(18.75)
    assert gap_to_oracle(oracle, oracle) == 0.0


def test_gap_ignores_keys_outside_ua_ra_ta_mia() -> None:
    assert GAP_KEYS == ("forget_acc", "retain_acc", "test_acc", "mia")
    a = {"forget_acc": 1.0, "retain_acc": 2.0, "test_acc": 3.0, "mia": 4.0, "test_forget_acc": 0.0, "time_s": 100.0}
    b = {"forget_acc": 1.0, "retain_acc": 2.0, "test_acc": 3.0, "mia": 8.0, "test_forget_acc": 90.0, "time_s": 1.0}
    assert gap_to_oracle(a, b) == pytest.approx(1.0)


# --- evaluate on trained models --------------------------------------------------------------


def _direct_accuracy(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(images).float() / 255.0)
    return 100.0 * float((logits.argmax(1).numpy() == labels).mean())


ALL_KEYS = {"forget_acc", "retain_acc", "test_acc", "test_forget_acc", "mia"}


def test_evaluate_original_and_oracle(
    small_digits: Dataset, class_3: ForgetRequest, original: torch.nn.Module, oracle: torch.nn.Module
) -> None:
    splits = place(class_3, CPU)
    orig = evaluate(original, class_3, splits)
    retr = evaluate(oracle, class_3, splits)
    for result in (orig, retr):
        assert set(result) == ALL_KEYS
        assert all(0.0 <= value <= 100.0 for value in result.values()), result
    assert orig["forget_acc"] > 80 and orig["test_forget_acc"] > 80
    assert retr["forget_acc"] < 5 and retr["test_forget_acc"] < 5
    assert retr["retain_acc"] > 80 and retr["test_acc"] > 80
    # The oracle never saw the class, so its forget set looks like non-members.
    assert retr["mia"] > orig["mia"]


def test_evaluate_accuracies_match_a_direct_forward_pass(
    small_digits: Dataset, class_3: ForgetRequest, original: torch.nn.Module
) -> None:
    result = evaluate(original, class_3, place(class_3, CPU))
    train, test = small_digits.train, small_digits.test
    expected = {
        "forget_acc": _direct_accuracy(original, train.images[class_3.forget_idx], train.labels[class_3.forget_idx]),
        "retain_acc": _direct_accuracy(original, train.images[class_3.retain_idx], train.labels[class_3.retain_idx]),
        "test_acc": _direct_accuracy(
            original, test.images[class_3.test_retain_idx], test.labels[class_3.test_retain_idx]
        ),
        "test_forget_acc": _direct_accuracy(
            original, test.images[class_3.test_forget_idx], test.labels[class_3.test_forget_idx]
        ),
    }
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-3), key


def test_each_metric_returns_its_declared_keys(class_3: ForgetRequest, original: torch.nn.Module) -> None:
    splits = place(class_3, CPU)
    for name, info in METRICS.items():
        assert set(evaluate(original, class_3, splits, (name,))) == set(info.keys), name


def test_evaluate_unknown_metric(class_3: ForgetRequest, original: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="unknown metric.*nope.*registered"):
        evaluate(original, class_3, place(class_3, CPU), ("accuracy", "nope"))
