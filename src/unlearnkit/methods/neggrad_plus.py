"""NegGrad+: descend on the retain set and ascend on the forget set in the same step."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnkit.methods.base import Access, Granted, LossGuard, Method, MethodError, register_method
from unlearnkit.methods.common import frozen_copy
from unlearnkit.runtime import autocast


@register_method("neggrad+")
class NegGradPlus(Method):
    """NegGrad+ in the form of the SCRUB repository (Kurmanji et al. 2023; spec 6.2).

    Per paired batch (a retain batch with the next forget batch, the forget loader cycled):
    ``alpha * (CE_r + (anchor_wd / 2) * ||theta - theta_o||^2) - (1 - alpha) * CE_f``.
    Defaults: alpha 0.95, 10 epochs, SGD lr 0.01, momentum 0.9 [V-code]. One epoch is one pass over
    D_r [I]. ``anchor_wd`` = 0.1 is the small-scale config's weight decay, which the repo's L2
    penalty uses [I]; batch 128 is the small-scale batch [I]. The anchor term's gradient,
    ``alpha * anchor_wd * (theta - theta_o)``, is added in closed form after the backward pass
    (the same update, without differentiating a sum over every parameter tensor).
    """

    needs = Access(forget=True, retain=True)
    summary = "alpha * retain CE (+ L2 anchor to the original) - (1 - alpha) * forget CE"

    @dataclass
    class Params:
        epochs: int = 10
        lr: float = 0.01
        momentum: float = 0.9
        alpha: float = 0.95
        anchor_wd: float = 0.1
        batch_size: int = 128

    @classmethod
    def check(cls, params: Params) -> None:
        if not 0 <= params.alpha <= 1:
            raise MethodError(f"{cls.name}.alpha (the retain weight; 1 - alpha weighs the forget ascent) must lie in [0, 1]; got {params.alpha}")
        if not params.anchor_wd >= 0:
            raise MethodError(f"{cls.name}.anchor_wd must be >= 0; got {params.anchor_wd}")

    def run(self, model: nn.Module, data: Granted, params: Params) -> dict[str, Any]:
        anchor = frozen_copy(data.original)
        optimizer = torch.optim.SGD(model.parameters(), lr=params.lr, momentum=params.momentum)
        guard = LossGuard(self.name, data.device)
        model.train()
        for epoch in range(params.epochs):
            forget_batches = itertools.cycle(list(data.forget.batches(params.batch_size, data.generator)))
            for x_r, y_r, _ in data.retain.batches(params.batch_size, data.generator):
                x_f, y_f, _ = next(forget_batches)
                with autocast(data.device):
                    retain_loss = F.cross_entropy(model(x_r), y_r)
                    forget_loss = F.cross_entropy(model(x_f), y_f)
                loss = params.alpha * retain_loss - (1 - params.alpha) * forget_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                add_anchor_gradient(model, anchor, params.alpha * params.anchor_wd)
                optimizer.step()
                guard.add(loss)
            guard.check(epoch + 1)
        return {"steps": guard.steps}


@torch.no_grad()
def add_anchor_gradient(model: nn.Module, anchor: nn.Module, scale: float) -> None:
    """``grad += scale * (theta - theta_anchor)``: the gradient of ``(scale / 2) * ||theta - theta_anchor||^2``."""
    pairs = [(p, q) for p, q in zip(model.parameters(), anchor.parameters(), strict=True) if p.grad is not None]
    grads = [p.grad for p, _ in pairs]
    diffs = torch._foreach_sub([p.detach() for p, _ in pairs], [q for _, q in pairs])
    torch._foreach_add_(grads, diffs, alpha=scale)
