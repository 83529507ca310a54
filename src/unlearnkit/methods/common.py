"""Optimisation pieces shared by the gradient-based methods."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from unlearnkit.methods.base import Granted, LossGuard, Split
from unlearnkit.runtime import autocast

BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SGDParams:
    """The OPTML unlearning optimiser settings (spec 6.1); methods override the defaults they change."""

    epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256


def sgd(model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4) -> torch.optim.SGD:
    """The OPTML unlearning optimiser (spec 6.1): SGD with momentum 0.9 and weight decay 5e-4."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def adamw(model: nn.Module, lr: float, weight_decay: float = 0.01) -> torch.optim.AdamW:
    """The MinNorm-OG baselines' optimiser (spec 3.5): AdamW with PyTorch's default weight decay 0.01."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T^2 * KL(softmax(t/T) || softmax(s/T))`` averaged over the batch (SCRUB's ``DistillKL``, spec 6.2)."""
    log_student = nn.functional.log_softmax(student_logits.float() / temperature, dim=1)
    teacher = nn.functional.softmax(teacher_logits.float() / temperature, dim=1)
    kl = nn.functional.kl_div(log_student, teacher, reduction="sum") * temperature**2
    return kl / student_logits.shape[0]


def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def sgd_passes(method: str, model: nn.Module, data: Granted, params: SGDParams, passes: Sequence[tuple[Split, BatchLoss]]) -> int:
    """Each epoch, one SGD pass over each ``(split, loss)`` in order; returns the number of steps.

    The loss is checked for NaN/inf once per epoch (:class:`LossGuard`).
    """
    optimizer = sgd(model, params.lr, params.momentum, params.weight_decay)
    guard = LossGuard(method, data.device)
    model.train()
    for epoch in range(params.epochs):
        for split, batch_loss in passes:
            for x, y, _ in split.batches(params.batch_size, data.generator):
                with autocast(data.device):
                    loss = batch_loss(model, x, y)
                step(optimizer, loss)
                guard.add(loss)
        guard.check(epoch + 1)
    return guard.steps


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x), y)


def frozen_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy whose parameters need no gradient (teachers, anchors)."""
    clone = copy.deepcopy(model).eval()
    for param in clone.parameters():
        param.requires_grad_(False)
    return clone


def squared_distance(model: nn.Module, anchor: nn.Module) -> torch.Tensor:
    """``||theta - theta_anchor||^2`` over all parameters."""
    return sum(((p - q) ** 2).sum() for p, q in zip(model.parameters(), anchor.parameters(), strict=True))
