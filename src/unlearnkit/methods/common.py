"""Optimisation pieces shared by the gradient-based methods."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnkit.methods.base import Granted, LossGuard, MethodError, Split
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


# --- The MinNorm-OG baselines' loop: an epoch is one pass over the *forget* batches, each paired
# --- with the next retain batch (spec 3.3). Used by ridge, ngd and kl-unif.

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


def clamp_outputs(output: Any, clamp: float) -> Any:
    """Each head of ``output`` (a tensor or a tuple of tensors) clamped to ``[-clamp, clamp]``; 0 = off."""
    if clamp <= 0:
        return output
    if isinstance(output, (tuple, list)):
        return type(output)(head.clamp(-clamp, clamp) for head in output)
    return output.clamp(-clamp, clamp)


def clamped_data_loss(data: Granted, output: Any, y: torch.Tensor, clamp: float) -> torch.Tensor:
    """``data.loss`` (cross-entropy by default) on the clamped outputs (S1 clamps before every loss).

    With the default loss this equals :func:`clamped_cross_entropy`. For regression (the sine
    benchmark, spec 3.4a) give ``logit_clamp`` = 0: S1 clamps only in its image experiments.
    """
    return data.loss(clamp_outputs(output, clamp), y)


GradientHook = Callable[[int], torch.Tensor | None]


def forget_paced_descent(
    method: str,
    model: nn.Module,
    data: Granted,
    params: ForgetPacedParams,
    after_backward: GradientHook | None = None,
    *,
    retain_weight: float = 1.0,
    forget_weight: float = 0.0,
) -> int:
    """AdamW on ``retain_weight * J_r - forget_weight * J_f``, ``epochs`` x ``ceil(|D_f| / batch_size)`` steps.

    ``J`` is ``data.loss`` (cross-entropy unless the task gives another, e.g. MSE) on outputs
    clamped to ``params.logit_clamp``. Each step takes the next batch of :func:`retain_cycle`.
    With the default ``forget_weight`` = 0, D_f only sets the number of steps per epoch (only its
    size is read; used so by ridge, ngd). A nonzero ``forget_weight`` pairs each step with the next
    batch of a shuffled pass over D_f, as S1's base loop: ``retain_weight`` = 0 and
    ``forget_weight`` = 1 is S1's GA, ``retain_weight`` = 1 and ``forget_weight`` = lambda_GA its
    NGP (spec 3.5) [V-code]. With ``retain_weight`` = 0 the retain set is not read.
    ``after_backward(step)`` runs between the backward pass and the optimiser step with the
    0-based global step index; it may modify the gradients and may return a penalty value to
    add to the loss that is checked for NaN/inf once per epoch. Returns the step count.
    """
    optimizer = adamw(model, params.lr, params.weight_decay)
    guard = LossGuard(method, data.device)
    steps_per_epoch = forget_paced_steps(len(data.forget), params.batch_size)
    batches = retain_cycle(data.retain, params.batch_size, data.generator, params.augment) if retain_weight else None
    model.train()
    step_index = 0
    for epoch in range(params.epochs):
        if forget_weight:
            forget_batches = (f[:2] for f in data.forget.batches(params.batch_size, data.generator, augment=params.augment))
        else:
            forget_batches = itertools.repeat(None, steps_per_epoch)
        for forget_batch in forget_batches:
            loss = _paired_loss(data, model, params.logit_clamp, batches, forget_batch, retain_weight, forget_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            extra = after_backward(step_index) if after_backward is not None else None
            optimizer.step()
            guard.add(loss if extra is None else loss + extra)
            step_index += 1
        guard.check(epoch + 1)
    return guard.steps


def _paired_loss(
    data: Granted,
    model: nn.Module,
    clamp: float,
    retain_batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None,
    forget_batch: tuple[torch.Tensor, torch.Tensor] | None,
    retain_weight: float,
    forget_weight: float,
) -> torch.Tensor:
    """``retain_weight * J(next retain batch) - forget_weight * J(forget_batch)`` (terms of weight 0 skipped)."""
    loss = torch.zeros((), device=data.device)
    with autocast(data.device):
        if retain_batches is not None:
            x, y = next(retain_batches)
            retain_loss = clamped_data_loss(data, model(x), y, clamp)
            loss = retain_loss if retain_weight == 1 else retain_weight * retain_loss
        if forget_batch is not None:
            x_f, y_f = forget_batch
            loss = loss - forget_weight * clamped_data_loss(data, model(x_f), y_f, clamp)
    return loss
