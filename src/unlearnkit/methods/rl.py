"""Random labels: relabel the forget set at random and keep training on the retain set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnkit.methods.base import Access, Granted, LossGuard, Method, register_method
from unlearnkit.methods.common import sgd, step
from unlearnkit.runtime import autocast


@register_method("rl")
class RandomLabels(Method):
    """RL (Golatkar et al.; OPTML/SalUn ``unlearn/RL.py``, spec 6.1).

    Each epoch is one pass over D_f with labels drawn uniformly from all classes (the true label
    may be drawn, as in the reference), then one pass over D_r with true labels: the CIFAR-10
    form of the reference. Defaults: 10 epochs, SGD lr 0.013 (the SalUn README value), batch 256.
    """

    needs = Access(forget=True, retain=True)
    summary = "cross-entropy on forget samples with random labels, then on the retain set"

    @dataclass
    class Params:
        epochs: int = 10
        lr: float = 0.013
        momentum: float = 0.9
        weight_decay: float = 5e-4
        batch_size: int = 256

    def run(self, model: nn.Module, data: Granted, params: Params) -> dict[str, Any]:
        optimizer = sgd(model, params.lr, params.momentum, params.weight_decay)
        guard = LossGuard(self.name, data.device)
        model.train()
        for epoch in range(params.epochs):
            for x, y, _ in data.forget.batches(params.batch_size, data.generator):
                random_y = torch.randint(0, data.num_classes, (len(y),), generator=data.generator).to(y.device)
                self._step(model, optimizer, guard, x, random_y, data)
            for x, y, _ in data.retain.batches(params.batch_size, data.generator):
                self._step(model, optimizer, guard, x, y, data)
            guard.check(epoch + 1)
        return {"steps": guard.steps}

    @staticmethod
    def _step(model, optimizer, guard: LossGuard, x: torch.Tensor, y: torch.Tensor, data: Granted) -> None:
        with autocast(data.device):
            loss = F.cross_entropy(model(x), y)
        step(optimizer, loss)
        guard.add(loss)
