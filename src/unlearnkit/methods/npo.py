"""Negative Preference Optimization on the forget set, as in the MinNorm-OG baselines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnkit.methods.base import Access, Granted, LossGuard, Method, MethodError, register_method
from unlearnkit.methods.common import adamw, frozen_copy, step
from unlearnkit.runtime import autocast


@register_method("npo")
class NegativePreferenceOptimization(Method):
    """NPO (Zhang, Lin, Bai, Mei, COLM 2024) in the form of the MinNorm-OG code (S1, spec 3.5).

    Loss on a forget batch: ``(2 / beta) * mean_i softplus(beta * (log pi_theta(y_i|x_i) - log pi_o(y_i|x_i)))``,
    which equals the reference's ``(2 / beta) * mean log(1 + (pi_theta / pi_o) ** beta)`` but is
    computed from log-softmax, so it stays finite when a probability underflows. Its gradient is
    the GA gradient of ``log pi_theta`` weighted by ``2 * sigmoid(beta * (log pi_theta - log pi_o))``:
    bounded by 2 and vanishing as ``pi_theta -> 0``, unlike GA.

    Checked in ``jacob-block/overparameterized-unlearning`` (``common/unlearners/{unlearners,
    base_unlearner}.py``, ``experiments/erase/interface.py``, ``scripts/*/run_grid_cifar.sh``):

    - ``beta`` is the reference's ``reg_coef``; pi_o is a frozen copy of the original [V-code];
    - one epoch = one pass over a shuffled forget loader, one AdamW step per forget batch
      (PyTorch's default weight decay 0.01) [V-code];
    - the reference also draws a retain batch each step and runs it through the model without
      gradient; it never enters the NPO loss (its only effect is on BatchNorm running
      statistics in train mode). We do not read D_r at all: forget-only access [deviation].
      Consequence for BatchNorm models: our running statistics see forget batches only,
      the reference's also one retain batch per step;
    - the reference builds its frozen reference model as a fresh module, which is in *train*
      mode, so both pi_theta and pi_o use batch statistics and the ratio is exactly 1 at
      theta = theta_o even with BatchNorm. ``reference_train_mode`` = True reproduces this
      [V-code]; False evaluates pi_o in eval mode (running statistics);
    - the reference's experiment interfaces clamp the student's logits to [-30, 30]; we do not
      clamp (the log-softmax form needs no guard) [deviation];
    - ``batch_size`` 256 is the value the run scripts pass [V-code].

    Defaults [I]: ``beta`` 0.1 (in the label-erasure grid {1e-3, 1e-2, 5e-2, 1e-1} and the
    collapse grid {0.01, 0.1, 0.5, 0.9}); ``lr`` 1e-4 (in both CIFAR lr grids); ``epochs`` 5 (the
    CIFAR run scripts' EPOCHS). The paper's chosen values per task were not verified.

    Cost: per epoch one pass over D_f with two forward passes (model and reference) and one
    backward pass per batch. Forget set only.
    """

    needs = Access(forget=True)
    summary = "NPO: (2/beta) * softplus(beta * log(pi_theta / pi_original)) on the forget set, AdamW"

    @dataclass
    class Params:
        beta: float = 0.1
        lr: float = 1e-4
        epochs: int = 5
        batch_size: int = 256
        weight_decay: float = 0.01
        reference_train_mode: bool = True

    def run(self, model: nn.Module, data: Granted, params: Params) -> dict[str, Any]:
        if not params.beta > 0:
            raise MethodError(f"{self.name}.beta (the reference's reg_coef) must be > 0; got {params.beta}")
        if not params.lr > 0:
            raise MethodError(f"{self.name}.lr must be > 0; got {params.lr}")
        if params.epochs < 1 or params.batch_size < 1:
            raise MethodError(
                f"{self.name}.epochs and batch_size must be >= 1; got {params.epochs}, {params.batch_size}"
            )
        reference = frozen_copy(data.original).train(params.reference_train_mode)
        optimizer = adamw(model, params.lr, params.weight_decay)
        guard = LossGuard(self.name, data.device)
        model.train()
        for epoch in range(params.epochs):
            for x, y, _ in data.forget.batches(params.batch_size, data.generator):
                with autocast(data.device):
                    with torch.no_grad():
                        reference_logits = reference(x)
                    logits = model(x)
                loss = npo_loss(logits, reference_logits, y, params.beta)
                step(optimizer, loss)
                guard.add(loss)
            guard.check(epoch + 1)
        return {"steps": guard.steps}


def npo_loss(logits: torch.Tensor, reference_logits: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """``(2 / beta) * mean softplus(beta * (log pi(y|x) - log pi_ref(y|x)))`` in fp32."""
    log_p = F.log_softmax(logits.float(), dim=1).gather(1, y[:, None]).squeeze(1)
    log_ref = F.log_softmax(reference_logits.float(), dim=1).gather(1, y[:, None]).squeeze(1)
    return (2.0 / beta) * F.softplus(beta * (log_p - log_ref)).mean()
