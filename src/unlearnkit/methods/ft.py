"""Fine-tuning on the retain set (catastrophic forgetting)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn as nn
import torch.nn.functional as F

from unlearnkit.methods.base import Access, Granted, LossGuard, Method, register_method
from unlearnkit.methods.common import sgd, step
from unlearnkit.runtime import autocast


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
    class Params:
        epochs: int = 10
        lr: float = 0.01
        momentum: float = 0.9
        weight_decay: float = 5e-4
        batch_size: int = 256

    def run(self, model: nn.Module, data: Granted, params: Params) -> dict[str, Any]:
        optimizer = sgd(model, params.lr, params.momentum, params.weight_decay)
        guard = LossGuard(self.name, data.device)
        model.train()
        for epoch in range(params.epochs):
            for x, y, _ in data.retain.batches(params.batch_size, data.generator):
                with autocast(data.device):
                    loss = F.cross_entropy(model(x), y)
                step(optimizer, loss)
                guard.add(loss)
            guard.check(epoch + 1)
        return {"steps": guard.steps}
