"""Metrics: accuracies, membership inference, gap to the oracle; computed from shared outputs."""

from __future__ import annotations

import torch.nn as nn

from unlearnkit.metrics import accuracy, mia, tarf  # noqa: F401  (registers the metrics)
from unlearnkit.metrics.gap import GAP_KEYS, gap_to_oracle
from unlearnkit.metrics.outputs import ModelOutputs, SplitOutputs, compute_outputs
from unlearnkit.metrics.registry import METRICS, register_metric
from unlearnkit.tasks import DeviceSplits, ForgetRequest

DEFAULT_METRICS = ("accuracy", "mia")


def evaluate(
    model: nn.Module,
    request: ForgetRequest,
    splits: DeviceSplits,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
) -> dict[str, float]:
    """Compute the named metrics of ``model`` on ``request`` from one shared forward pass."""
    check_metrics(metrics)
    return score(compute_outputs(model, request, splits), request, metrics)


def check_metrics(metrics: tuple[str, ...]) -> None:
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; registered: {', '.join(sorted(METRICS))}")


def score(outputs: ModelOutputs, request: ForgetRequest, metrics: tuple[str, ...] = DEFAULT_METRICS) -> dict[str, float]:
    """The named metrics from precomputed outputs (CPU only: safe to run in a worker thread)."""
    result: dict[str, float] = {}
    for name in metrics:
        result.update(METRICS[name].fn(outputs, request))
    return result


__all__ = [
    "DEFAULT_METRICS",
    "GAP_KEYS",
    "METRICS",
    "ModelOutputs",
    "SplitOutputs",
    "check_metrics",
    "compute_outputs",
    "evaluate",
    "gap_to_oracle",
    "register_metric",
    "score",
]
