"""Retrain from scratch on the retain set: the gold standard every method is compared with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from unlearnkit.methods.base import Access, Granted, Method, register_method
from unlearnkit.models import reinitialize
from unlearnkit.train import train


@register_method("retrain")
class Retrain(Method):
    """Re-initialise every layer and train on D_r with the original model's recipe (spec 6.1).

    Uses the recipe the runner passes (the one the original was trained with), so the oracle
    differs from the original only in its data. ``bench`` takes this row from the cached oracle
    instead of training it again.
    """

    needs = Access(retain=True)
    summary = "train from scratch on the retain set with the original recipe"

    @dataclass
    class Params:
        pass

    def run(self, model: nn.Module, data: Granted, params: Params) -> dict[str, Any]:
        reinitialize(model, data.seed)
        retain = data.retain
        stats = train(model, retain.images, retain.indices, data.recipe, seed=data.seed, augment=retain.augment)
        return {"steps": stats.steps, "epochs": stats.epochs}
