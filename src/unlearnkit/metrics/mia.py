"""Membership inference: the OPTML "MIA-efficacy" (spec 6.4a)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.svm import SVC

from unlearnkit.metrics.outputs import ModelOutputs, SplitOutputs
from unlearnkit.metrics.registry import register_metric
from unlearnkit.tasks import ForgetRequest


def confidence(split: SplitOutputs) -> np.ndarray:
    """Per-sample softmax probability of the true label, as a column (the OPTML confidence feature)."""
    probs = split.probs
    return probs[torch.arange(len(split)), split.labels].numpy()[:, None].astype(np.float64)


# [I] OPTML's SVC_MIA takes the first |test| samples of its retain loader, whose order (CIFAR's
# pickles) is effectively random. A slice in index order would draw one or two classes from a
# class-sorted dataset (an image folder, the JPEG CIFAR-10), so the members are drawn at random.
SHADOW_SEED = 0


def shadow_members(retain: SplitOutputs, count: int, seed: int = SHADOW_SEED) -> SplitOutputs:
    """``count`` retain samples drawn uniformly without replacement (seeded; all if fewer), as the
    attack's shadow members: independent of the dataset's sample order."""
    if len(retain) <= count:
        return retain
    chosen = torch.as_tensor(np.sort(np.random.default_rng(seed).choice(len(retain), size=count, replace=False)))
    return SplitOutputs(retain.logits[chosen], retain.labels[chosen])


def svc_attack(members: np.ndarray, non_members: np.ndarray, targets: np.ndarray) -> float:
    """Fit ``SVC(C=3, gamma='auto', rbf)`` on members (1) vs non-members (0); return the fraction of
    ``targets`` predicted non-member, in percent."""
    features = np.concatenate([members, non_members])
    labels = np.concatenate([np.ones(len(members)), np.zeros(len(non_members))])
    attack = SVC(C=3, gamma="auto", kernel="rbf").fit(features, labels)
    return 100.0 * float(1.0 - attack.predict(targets).mean())


@register_metric(
    "mia",
    ("mia",),
    "MIA-efficacy (OPTML SVC_MIA, confidence feature): % of D_f an SVC trained on retain members vs test "
    "non-members calls non-member",
)
def mia_efficacy(outputs: ModelOutputs, request: ForgetRequest) -> dict[str, float]:
    """Shadow members are ``|test|`` retain samples drawn at random with a fixed seed
    (:func:`shadow_members`; OPTML slices the first ``|test|`` of its shuffled-order data [I]),
    non-members the test set used for test accuracy (class-removed for class-wise requests),
    targets the forget set (spec 6.4a)."""
    test = outputs["test_retain"]
    if len(test) == 0:
        raise ValueError(
            "MIA-efficacy needs test samples of the retained classes as non-members, and this request's test split has "
            "none; add test samples of the kept classes, or evaluate with metrics='accuracy'"
        )
    retain = outputs["retain"]
    shadow = shadow_members(retain, len(test))
    return {"mia": svc_attack(confidence(shadow), confidence(test), confidence(outputs["forget"]))}
