"""Metrics: accuracies, membership inference, gap to the oracle; computed from shared outputs."""

from __future__ import annotations

import torch.nn as nn

from unlearnkit.metrics import accuracy, mia, tarf  # noqa: F401  (registers the metrics)
from unlearnkit.metrics.gap import GAP_KEYS, gap_to_oracle
from unlearnkit.metrics.outputs import ModelOutputs, NonFiniteOutputError, SplitOutputs, compute_outputs
from unlearnkit.metrics.registry import METRICS, register_metric
from unlearnkit.tasks import DeviceSplits, ForgetRequest
from unlearnkit.tasks.compatibility import check_device, check_parameters

DEFAULT_METRICS = ("accuracy", "mia")


def evaluate(
    model: nn.Module,
    request: ForgetRequest,
    splits: DeviceSplits,
    metrics: str | tuple[str, ...] = DEFAULT_METRICS,
) -> dict[str, float]:
    """Compute the named metrics (one name or several) of ``model`` on ``request`` from one
    shared forward pass. Raises ``ModelError`` if the model is not float32, is not on the device
    of ``splits`` (:func:`unlearnkit.tasks.place`) or its output count is not the request's class
    count, and :class:`NonFiniteOutputError` if its outputs are NaN/inf."""
    metrics = metric_names(metrics)
    check_metrics(metrics)
    check_parameters(model, trainable=False)
    check_device(model, splits)
    return score(compute_outputs(model, request, splits), request, metrics)


def metric_names(metrics: str | tuple[str, ...]) -> tuple[str, ...]:
    """``metrics`` as a tuple of names; a single string is one name, not a sequence of letters."""
    return (metrics,) if isinstance(metrics, str) else tuple(metrics)


def check_metrics(metrics: str | tuple[str, ...]) -> None:
    """Refuse unknown metric names (a ``ValueError`` listing the registered ones)."""
    metrics = metric_names(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; registered: {', '.join(sorted(METRICS))}")


def score(outputs: ModelOutputs, request: ForgetRequest, metrics: str | tuple[str, ...] = DEFAULT_METRICS) -> dict[str, float]:
    """The named metrics from precomputed outputs (CPU only: safe to run in a worker thread)."""
    result: dict[str, float] = {}
    for name in metric_names(metrics):
        result.update(METRICS[name].fn(outputs, request))
    return result


__all__ = [
    "DEFAULT_METRICS",
    "GAP_KEYS",
    "METRICS",
    "ModelOutputs",
    "NonFiniteOutputError",
    "SplitOutputs",
    "check_metrics",
    "compute_outputs",
    "evaluate",
    "gap_to_oracle",
    "metric_names",
    "register_metric",
    "score",
]
