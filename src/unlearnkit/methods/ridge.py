"""Ridge (MinNorm-OG baseline): retain cross-entropy plus a geometrically decaying L2 penalty.

Also home of the MinNorm-OG baselines' shared loop (:func:`forget_paced_descent`): an epoch is
one pass over the *forget* batches, each paired with the next retain batch (spec 3.3), used by
``ridge`` and ``ngd``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnkit.methods.base import Access, Granted, LossGuard, Method, MethodError, Split, register_method
from unlearnkit.methods.common import adamw
from unlearnkit.runtime import autocast

# ---------------------------------------------------------------------------------- shared loop


@dataclass
class ForgetPacedParams:
    """The MinNorm-OG baselines' settings (spec 3.3-3.6); ``ridge`` and ``ngd`` add their own."""

    epochs: int = 5
    lr: float = 1e-4
    weight_decay: float = 0.01
    batch_size: int = 256
    retain_fraction: float = 1.0
    logit_clamp: float = 30.0
    augment: bool = False


def check_forget_paced(method: str, params: ForgetPacedParams) -> None:
    """Refuse settings the shared loop cannot run (a :class:`MethodError` naming the method)."""
    if params.epochs < 1 or params.batch_size < 1:
        raise MethodError(f"{method}.epochs and batch_size must be >= 1; got {params.epochs}, {params.batch_size}")
    if not params.lr > 0:
        raise MethodError(f"{method}.lr must be > 0; got {params.lr}")
    if not params.weight_decay >= 0:
        raise MethodError(f"{method}.weight_decay must be >= 0; got {params.weight_decay}")
    if not 0 < params.retain_fraction <= 1:
        raise MethodError(f"{method}.retain_fraction must lie in (0, 1]; got {params.retain_fraction}")
    if not params.logit_clamp >= 0:
        raise MethodError(f"{method}.logit_clamp must be >= 0 (0 = no clamp); got {params.logit_clamp}")


def forget_paced_steps(n_forget: int, batch_size: int) -> int:
    """Steps per epoch: the number of forget batches, ``ceil(|D_f| / batch_size)`` (no drop_last)."""
    return max(1, math.ceil(n_forget / batch_size))


def retain_cycle(
    split: Split, batch_size: int, generator: torch.Generator, augment: bool = False
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless retain batches: reshuffled passes, a pass continuing where the last step left it.

    As the reference's retain loader: ``drop_last`` when the split is larger than one batch (so
    every step sees a full batch), otherwise the whole split is one batch. ``islice`` stops
    before the dropped batch is gathered.
    """
    per_pass = len(split) // batch_size if len(split) > batch_size else 1
    while True:
        for x, y, _ in itertools.islice(split.batches(batch_size, generator, augment=augment), per_pass):
            yield x, y


def clamped_cross_entropy(logits: torch.Tensor, y: torch.Tensor, clamp: float) -> torch.Tensor:
    """Cross-entropy of logits clamped to ``[-clamp, clamp]`` (S1's ``MAX_LOGIT_THRESHOLD``; 0 = off)."""
    if clamp > 0:
        logits = logits.clamp(-clamp, clamp)
    return F.cross_entropy(logits, y)


GradientHook = Callable[[int], torch.Tensor | None]


def forget_paced_descent(
    method: str, model: nn.Module, data: Granted, params: ForgetPacedParams, after_backward: GradientHook | None = None
) -> int:
    """AdamW on the retain cross-entropy, ``epochs`` x ``ceil(|D_f| / batch_size)`` steps; returns the step count.

    Each step takes the next batch of :func:`retain_cycle` (D_f only sets the number of steps
    per epoch: only its size is read). ``after_backward(step)`` runs between the backward pass
    and the optimiser step with the 0-based global step index; it may modify the gradients and
    may return a penalty value to add to the loss that is checked for NaN/inf once per epoch.
    """
    optimizer = adamw(model, params.lr, params.weight_decay)
    guard = LossGuard(method, data.device)
    steps_per_epoch = forget_paced_steps(len(data.forget), params.batch_size)
    batches = retain_cycle(data.retain, params.batch_size, data.generator, params.augment)
    model.train()
    step_index = 0
    for epoch in range(params.epochs):
        for _ in range(steps_per_epoch):
            x, y = next(batches)
            with autocast(data.device):
                loss = clamped_cross_entropy(model(x), y, params.logit_clamp)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            extra = after_backward(step_index) if after_backward is not None else None
            optimizer.step()
            guard.add(loss if extra is None else loss + extra)
            step_index += 1
        guard.check(epoch + 1)
    return guard.steps


# ---------------------------------------------------------------------------------------- ridge


@register_method("ridge")
class Ridge(Method):
    """Ridge, a baseline of MinNorm-OG (Block, Mokhtari, Shakkottai, "Machine Unlearning under
    Overparameterization", NeurIPS 2025; spec 3.5), as ``RidgeUnlearner`` in
    ``jacob-block/overparameterized-unlearning`` ``common/unlearners/unlearners.py`` (S1).

    Each step minimises ``J_r + lambda_t * ||theta||_2^2`` on a retain batch with AdamW, where
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

    def access(self, params: Params) -> Access:
        check_params(self.name, params)
        return Access(forget=True, retain=True, retain_fraction=params.retain_fraction)

    def run(self, model: nn.Module, data: Granted, params: Params) -> dict[str, Any]:
        check_params(self.name, params)
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
