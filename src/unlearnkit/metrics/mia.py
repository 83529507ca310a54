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
    """Shadow members are the first ``|test|`` retain samples, non-members the test set used for
    test accuracy (class-removed for class-wise requests), targets the forget set (spec 6.4a)."""
    test = outputs["test_retain"]
    if len(test) == 0:
        raise ValueError(
            "MIA-efficacy needs test samples of the retained classes as non-members, and this request's test split has "
            "none; add test samples of the kept classes, or evaluate with metrics='accuracy'"
        )
    retain = outputs["retain"]
    shadow = SplitOutputs(retain.logits[: len(test)], retain.labels[: len(test)])
    return {"mia": svc_attack(confidence(shadow), confidence(test), confidence(outputs["forget"]))}
