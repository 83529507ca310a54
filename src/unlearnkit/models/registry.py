"""Model registry: ``build_model(name, ...)`` makes any registered architecture."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch.nn as nn


class ModelError(ValueError):
    """An unknown model name, or a model that does not fit the toolkit's protocol."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    build: Callable[..., nn.Module]
    description: str


MODELS: dict[str, ModelInfo] = {}


def register_model(name: str, description: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``build(num_classes, image_shape, mean, std) -> nn.Module`` under ``name``."""

    def decorate(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = ModelInfo(name, fn, description)
        return fn

    return decorate


def build_model(
    name: str,
    num_classes: int,
    image_shape: Sequence[int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> nn.Module:
    """Build a registered model that takes float images in [0, 1] of ``image_shape`` (C, H, W).

    ``mean``/``std`` are per-channel input statistics; the model normalises its own input with
    them, so every method and metric feeds it raw [0, 1] images.
    """
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; registered models: {', '.join(sorted(MODELS))}")
    channels = image_shape[0]
    mean = tuple(mean) if mean is not None else (0.5,) * channels
    std = tuple(std) if std is not None else (0.5,) * channels
    if len(mean) != channels or len(std) != channels:
        raise ModelError(f"mean/std need {channels} values (one per channel); got {len(mean)} and {len(std)}")
    return MODELS[name].build(num_classes=num_classes, image_shape=tuple(image_shape), mean=mean, std=std)


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """The model a ``model_spec`` describes (a checkpoint sidecar's ``name``, ``num_classes``,
    ``image_shape``, ``mean`` and ``std``), freshly initialised."""
    return build_model(spec["name"], spec["num_classes"], spec["image_shape"], spec["mean"], spec["std"])


def available_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(MODELS)
