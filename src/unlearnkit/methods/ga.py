"""Gradient ascent on the forget set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from unlearnkit.methods.base import Access, Granted, Method, register_method
from unlearnkit.methods.common import SGDParams, cross_entropy, sgd_passes


@register_method("ga")
class GradientAscent(Method):
    """GA (Thudi et al.; OPTML ``unlearn/GA.py``, spec 6.1): minimise -CE on D_f only.

    Defaults are the OPTML README values: 5 epochs, SGD lr 1e-4 (momentum 0.9, wd 5e-4), batch
    256. The loss is unbounded below; a diverging run stops with a clear error.
    """

    needs = Access(forget=True)
    summary = "maximise cross-entropy on the forget set"

    @dataclass
    class Params(SGDParams):
        epochs: int = 5
        lr: float = 1e-4

    def run(self, model: nn.Module, data: Granted, params: Params) -> dict[str, Any]:
        def ascent(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return -cross_entropy(net, x, y)

        return {"steps": sgd_passes(self.name, model, data, params, [(data.forget, ascent)])}
