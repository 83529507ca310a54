"""Gradient ascent on the forget set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn as nn
import torch.nn.functional as F

from unlearnkit.methods.base import Access, Granted, LossGuard, Method, register_method
from unlearnkit.methods.common import sgd, step
from unlearnkit.runtime import autocast


@register_method("ga")
class GradientAscent(Method):
    """GA (Thudi et al.; OPTML ``unlearn/GA.py``, spec 6.1): minimise -CE on D_f only.

    Defaults are the OPTML README values: 5 epochs, SGD lr 1e-4 (momentum 0.9, wd 5e-4), batch
    256. The loss is unbounded below; a diverging run stops with a clear error.
    """

    needs = Access(forget=True)
    summary = "maximise cross-entropy on the forget set"

    @dataclass
    class Params:
        epochs: int = 5
        lr: float = 1e-4
        momentum: float = 0.9
        weight_decay: float = 5e-4
        batch_size: int = 256

    def run(self, model: nn.Module, data: Granted, params: Params) -> dict[str, Any]:
        optimizer = sgd(model, params.lr, params.momentum, params.weight_decay)
        guard = LossGuard(self.name, data.device)
        model.train()
        for epoch in range(params.epochs):
            for x, y, _ in data.forget.batches(params.batch_size, data.generator):
                with autocast(data.device):
                    loss = -F.cross_entropy(model(x), y)
                step(optimizer, loss)
                guard.add(loss)
            guard.check(epoch + 1)
        return {"steps": guard.steps}
