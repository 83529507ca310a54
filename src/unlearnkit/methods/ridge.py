"""Ridge (MinNorm-OG baseline): retain cross-entropy plus a geometrically decaying L2 penalty."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from unlearnkit.methods.base import Access, Granted, Method, MethodError, register_method
from unlearnkit.methods.common import ForgetPacedParams, check_forget_paced, forget_paced_descent


@register_method("ridge")
class Ridge(Method):
    """Ridge, a baseline of MinNorm-OG (Block, Mokhtari, Shakkottai, "Machine Unlearning under
    Overparameterization", NeurIPS 2025; spec 3.5), as ``RidgeUnlearner`` in
    ``jacob-block/overparameterized-unlearning`` ``common/unlearners/unlearners.py`` (S1).

    Each step minimises ``J_r + lambda_t * ||theta||_2^2`` on a retain batch with AdamW (``J`` =
    ``data.loss``: cross-entropy by default, MSE on the sine benchmark of spec 3.4a), where
    ``theta`` is every trainable parameter and ``lambda_t = lambda_reg * gamma_reg ** t`` for the
    0-based global step t (:func:`ridge_coefficient`). Checked in S1: the coefficient is
    multiplied by ``gamma_reg`` *after* every step (``post_loss_update``), so the first step uses
    ``lambda_reg`` [V-code]. The penalty's gradient ``2 * lambda_t * theta`` is added in closed form
    after the backward pass (:func:`add_l2_gradient`; the same update as differentiating the
    norm).

    Epoch (spec 3.3, checked in S1 ``base_unlearner.py``): one pass over the forget batches,
    each paired with the next retain batch of the same batch size; the retain loader is cycled
    and reshuffled when exhausted, its position carrying over between epochs; it drops its last
    short batch when D_r' is larger than one batch [V-code]. D_f only sets the number of steps
    per epoch, ``ceil(|D_f| / batch_size)``: this method declares the forget set but reads only
    its size. Deviation: S1 also runs the forget batch through the model (in train mode, without
    gradient), which updates BatchNorm running statistics with forget data as a side effect; we
    do not forward D_f at all.

    Losses on logits clamped to +-30 (``logit_clamp``; S1's image experiments clamp with
    ``MAX_LOGIT_THRESHOLD = 30`` before every loss [V-code]; 0 disables). AdamW with PyTorch's
    default weight decay 0.01, which S1 does not override [V-code].

    Defaults: ``lr`` 1e-4 [I] (S1 grids: 1e-3 to 1e-6 for label erasure, 5e-3 to 1e-4 for
    representation collapse, spec 3.6), ``lambda_reg`` 0.1 [I] (grids 1e-3 to 0.9),
    ``gamma_reg`` 0.9 [I] (grids 0.2 to 0.9), ``epochs`` 5 [I] (T in {2, 5, 10, 15}), batch 256
    (S1's CIFAR batch, spec 3.4). ``retain_fraction`` 1.0: S1's benchmarks give the unlearner a
    seeded random 0.1% to 1% of D_r (``retain_access_pct``); set it to reproduce them (it is
    drawn by the runner, not per trial as in S1). ``augment`` = False: S1's unlearning datasets
    (stored CIFAR tensors, ``ReloadedColorDataset`` for Tiny ImageNet) only recolour and
    normalise (checked in ``common/utils/data_utils.py``) [V-code].

    Cost: ``epochs * ceil(|D_f| / batch_size)`` forward/backward passes on retain batches.
    """

    needs = Access(forget=True, retain=True)
    summary = "retain cross-entropy + lambda_t * ||theta||^2, lambda_t decaying geometrically per step (AdamW)"

    @dataclass
    class Params(ForgetPacedParams):
        lambda_reg: float = 0.1
        gamma_reg: float = 0.9

    @classmethod
    def check(cls, params: Params) -> None:
        check_params(cls.name, params)

    def access(self, params: Params) -> Access:
        return Access(forget=True, retain=True, retain_fraction=params.retain_fraction)

    def run(self, model: nn.Module, data: Granted, params: Params) -> dict[str, Any]:
        parameters = [p for p in model.parameters() if p.requires_grad]

        def penalty(step_index: int) -> torch.Tensor:
            return add_l2_gradient(parameters, ridge_coefficient(params.lambda_reg, params.gamma_reg, step_index))

        return {"steps": forget_paced_descent(self.name, model, data, params, penalty)}


def check_params(method: str, params: Ridge.Params) -> None:
    check_forget_paced(method, params)
    if not params.lambda_reg >= 0:
        raise MethodError(f"{method}.lambda_reg must be >= 0; got {params.lambda_reg}")
    if not 0 <= params.gamma_reg <= 1:
        raise MethodError(f"{method}.gamma_reg (the per-step decay) must lie in [0, 1]; got {params.gamma_reg}")


def ridge_coefficient(lambda_reg: float, gamma_reg: float, step: int) -> float:
    """The L2 coefficient of 0-based global ``step``: ``lambda_reg * gamma_reg ** step``."""
    return lambda_reg * gamma_reg**step


@torch.no_grad()
def add_l2_gradient(parameters: list[torch.Tensor], coefficient: float) -> torch.Tensor:
    """``grad += 2 * coefficient * theta``; returns ``coefficient * ||theta||_2^2`` (on the device, no sync).

    A parameter without a gradient gets the penalty's gradient alone, as autograd would give it.
    """
    device = parameters[0].device
    if coefficient == 0:
        return torch.zeros((), device=device)
    for p in parameters:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    torch._foreach_add_([p.grad for p in parameters], parameters, alpha=2 * coefficient)
    norms = torch._foreach_norm(parameters, 2)
    return coefficient * torch.stack([n.float() ** 2 for n in norms]).sum()
