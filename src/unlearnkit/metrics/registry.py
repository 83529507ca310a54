"""Metric registry: a metric maps (model outputs, request) to named numbers, all in percent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from unlearnkit.metrics.outputs import ModelOutputs
from unlearnkit.tasks import ForgetRequest

MetricFn = Callable[[ModelOutputs, ForgetRequest], dict[str, float]]


@dataclass(frozen=True)
class MetricInfo:
    name: str
    fn: MetricFn
    keys: tuple[str, ...]
    description: str


METRICS: dict[str, MetricInfo] = {}


def register_metric(name: str, keys: tuple[str, ...], description: str) -> Callable[[MetricFn], MetricFn]:
    """Register ``fn(outputs, request) -> {key: value}`` as metric ``name``, producing ``keys`` (shown by ``unlearnkit list``)."""
    def decorate(fn: MetricFn) -> MetricFn:
        METRICS[name] = MetricInfo(name, fn, keys, description)
        return fn

    return decorate
