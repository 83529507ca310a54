"""Optimisation pieces shared by the gradient-based methods."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


def sgd(model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4) -> torch.optim.SGD:
    """The OPTML unlearning optimiser (spec 6.1): SGD with momentum 0.9 and weight decay 5e-4."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def frozen_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy whose parameters need no gradient (teachers, anchors)."""
    clone = copy.deepcopy(model).eval()
    for param in clone.parameters():
        param.requires_grad_(False)
    return clone


def squared_distance(model: nn.Module, anchor: nn.Module) -> torch.Tensor:
    """``||theta - theta_anchor||^2`` over all parameters."""
    return sum(((p - q) ** 2).sum() for p, q in zip(model.parameters(), anchor.parameters(), strict=True))
