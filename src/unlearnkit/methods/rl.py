"""Random labels: relabel the forget set at random and keep training on the retain set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from unlearnkit.methods.base import Access, Granted, Method, register_method
from unlearnkit.methods.common import SGDParams, cross_entropy, sgd_passes


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
    class Params(SGDParams):
        lr: float = 0.013

    def run(self, model: nn.Module, data: Granted, params: Params) -> dict[str, Any]:
        def random_label_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            random_y = torch.randint(0, data.num_classes, (len(y),), generator=data.generator).to(y.device)
            return cross_entropy(net, x, random_y)

        passes = [(data.forget, random_label_loss), (data.retain, cross_entropy)]
        return {"steps": sgd_passes(self.name, model, data, params, passes)}
