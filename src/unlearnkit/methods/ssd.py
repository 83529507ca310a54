"""Selective Synaptic Dampening: shrink the weights that matter far more to D_f than to D."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnkit.methods.base import Access, Granted, Method, MethodError, Split, register_method
from unlearnkit.runtime import autocast, eval_mode


@register_method("ssd")
class SelectiveSynapticDampening(Method):
    """SSD (Foster, Schoepf, Brintrup, AAAI 2024; spec 6.3, S4/S14 ports), training-free.

    Importances are diagonal-Fisher estimates: ``I_D`` on the full training set D = D_r ∪ D_f
    and ``I_f`` on D_f. Every parameter entry with ``I_f > selection * I_D`` is multiplied by
    ``min((dampening * I_D / I_f) ** exponent, lower_bound)``; all other entries stay bit-identical.

    Checked in ``if-loops/selective-synaptic-dampening`` (``ssd.py``, ``forget_*_strategies.py``,
    ``src/forget_full_class_main.py``):

    - an importance is the squared gradient of the *batch-mean* cross-entropy, summed over the
      batches and divided by the number of batches (a per-batch, not per-sample, Fisher: no
      per-sample gradients are formed, which also makes it cheap);
    - the model is in eval mode; the loaders are unshuffled and unaugmented (the unlearning
      transform is ToTensor + Normalize only); D is the concatenation retain-then-forget;
    - ``importance_batch_size`` = 64 is the scripts' ``-b`` default [V-code];
    - lambda (``dampening``) = 1 and alpha (``selection``) = 10 for ResNet-18 (the repo halves
      alpha for ViT); ``exponent`` = 1 and ``lower_bound`` = 1 (the cap that stops a weight from
      growing; the repo calls it a lower bound) [V-code].

    Choices: the batches follow the granted index order (retain indices, then forget indices),
    without shuffling, as in the reference; the reference's retain order is class-sorted in its
    full-class script, an artefact of its data preparation that we do not copy [I]. Forward
    passes use bf16 autocast on CUDA; gradients and importances are fp32.

    Cost: one forward/backward pass over D and one over D_f, no training. Needs D_f and D_r.
    """

    needs = Access(forget=True, retain=True)
    summary = "dampen the weights whose forget-set Fisher importance exceeds alpha x the full-set importance"

    @dataclass
    class Params:
        dampening: float = 1.0
        selection: float = 10.0
        exponent: float = 1.0
        lower_bound: float = 1.0
        importance_batch_size: int = 64

    def run(self, model: nn.Module, data: Granted, params: Params) -> dict[str, Any]:
        check_params(self.name, params)
        full = full_train_split(data)
        importance_full = importances(model, full, data.generator, params.importance_batch_size)
        importance_forget = importances(model, data.forget, data.generator, params.importance_batch_size)
        selected = dampen(model, importance_full, importance_forget, params)
        batches = _num_batches(len(full), params.importance_batch_size) + _num_batches(
            len(data.forget), params.importance_batch_size
        )
        total = sum(p.numel() for p in model.parameters())
        return {"steps": batches, "dampened_fraction": selected / max(total, 1)}


def check_params(method: str, params: SelectiveSynapticDampening.Params) -> None:
    if not params.dampening > 0:
        raise MethodError(f"{method}.dampening (lambda) must be > 0; got {params.dampening}")
    if not params.selection >= 0:
        raise MethodError(f"{method}.selection (alpha) must be >= 0; got {params.selection}")
    if not params.exponent > 0:
        raise MethodError(f"{method}.exponent must be > 0; got {params.exponent}")
    if not params.lower_bound > 0:
        raise MethodError(
            f"{method}.lower_bound (the cap on the dampening factor) must be > 0; got {params.lower_bound}"
        )
    if params.importance_batch_size < 1:
        raise MethodError(f"{method}.importance_batch_size must be >= 1; got {params.importance_batch_size}")


def full_train_split(data: Granted) -> Split:
    """D = D_r ∪ D_f as one split, retain indices first (the reference's concatenation order)."""
    retain, forget = data.retain, data.forget
    return Split(retain.images, np.concatenate([retain.indices, forget.indices]), retain.augment)


def importances(model: nn.Module, split: Split, generator: torch.Generator, batch_size: int) -> dict[str, torch.Tensor]:
    """SSD's diagonal Fisher: ``mean over batches of (d CE_batch-mean / d theta)^2`` per parameter entry.

    Eval mode, no augmentation, batches in index order. Parameters without a gradient (frozen
    or unused) get zero importance. The model's parameters and mode are left unchanged.
    """
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    device = named[0][1].device if named else torch.device("cpu")
    result = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in model.named_parameters()}
    batches = 0
    with eval_mode(model):
        for x, y, _ in split.batches(batch_size, generator, shuffle=False, augment=False):
            with autocast(device):
                loss = F.cross_entropy(model(x).float(), y)
            grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
            for (name, _), grad in zip(named, grads, strict=True):
                if grad is not None:
                    result[name].add_(grad.float().square())
            batches += 1
    for value in result.values():
        value.div_(batches)
    return result


@torch.no_grad()
def dampen(
    model: nn.Module,
    importance_full: dict[str, torch.Tensor],
    importance_forget: dict[str, torch.Tensor],
    params: SelectiveSynapticDampening.Params,
) -> int:
    """Multiply the selected entries by their dampening factor in place; returns how many were selected."""
    selected = 0
    for name, p in model.named_parameters():
        full, forget = importance_full[name], importance_forget[name]
        mask = forget > params.selection * full
        factor = (params.dampening * full / forget).pow(params.exponent).clamp(max=params.lower_bound)
        p.copy_(torch.where(mask, p * factor.to(p.dtype), p))
        selected = selected + mask.sum()
    return int(selected)  # one host sync for the whole model


def _num_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)
