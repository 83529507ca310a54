"""Fine-tuning on the retain set (catastrophic forgetting)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from unlearnkit.methods.base import Access, Granted, Method, register_method
from unlearnkit.methods.common import SGDParams, cross_entropy, sgd_passes


@register_method("ft")
class FineTune(Method):
    """FT (Golatkar et al.; OPTML ``unlearn/FT.py``, spec 6.1): cross-entropy on D_r.

    Defaults are the OPTML CLI values: 10 epochs, SGD lr 0.01, momentum 0.9, weight decay 5e-4,
    batch 256, training augmentation. OPTML's MultiStepLR milestones (91, 136) never fire
    within 10 epochs, so the learning rate is constant here.
    """

    needs = Access(retain=True)
    summary = "cross-entropy on the retain set"

    @dataclass
    class Params(SGDParams):
        pass

    def run(self, model: nn.Module, data: Granted, params: Params) -> dict[str, Any]:
        return {"steps": sgd_passes(self.name, model, data, params, [(data.retain, cross_entropy)])}
