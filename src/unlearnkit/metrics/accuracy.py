"""Forget, retain and test accuracy (spec section 7)."""

from __future__ import annotations

from unlearnkit.metrics.outputs import ModelOutputs
from unlearnkit.metrics.registry import register_metric
from unlearnkit.tasks import ForgetRequest


@register_metric(
    "accuracy",
    ("forget_acc", "retain_acc", "test_acc", "test_forget_acc"),
    "accuracy on D_f, D_r (train), the test set (retained classes only for class-wise requests, spec 6.1) "
    "and the forgotten classes' test split",
)
def accuracies(outputs: ModelOutputs, request: ForgetRequest) -> dict[str, float]:
    return {
        "forget_acc": outputs["forget"].accuracy(),
        "retain_acc": outputs["retain"].accuracy(),
        "test_acc": outputs["test_retain"].accuracy(),
        "test_forget_acc": outputs["test_forget"].accuracy(),
    }
