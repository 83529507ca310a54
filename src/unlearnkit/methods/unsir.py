"""UNSIR: learn error-maximising noise for the forget classes, impair on it, repair on retained data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnkit.methods.base import Access, Granted, LossGuard, Method, MethodError, Split, register_method
from unlearnkit.methods.common import cross_entropy, step
from unlearnkit.runtime import autocast, eval_mode
from unlearnkit.train import NonFiniteLossError


@register_method("unsir")
class Unsir(Method):
    """UNSIR, Unlearning by Selective Impair and Repair (Tarun, Chundawat, Mandal, Kankanhalli,
    "Fast Yet Effective Machine Unlearning", IEEE TNNLS 2023; spec 6.3). Counts follow the S4
    port (``teresayongpuiyee/MachineUnlearning`` ``unlearn_strategies/strategies.py`` ``unsir``
    and ``unlearn.py`` ``UNSIR_noise_train`` / ``UNSIR_create_noisy_loader``); learning rates
    follow the authors' notebook (``vikram2000b/Fast-Machine-Unlearning``, ``Machine
    Unlearning.ipynb``).

    1. **Noise.** For each forget class c (class-wise request: the removed classes; sample-wise
       request: every class present in D_f), a batch of ``noise_batch_size`` images of the data's
       shape is learned (:func:`learn_noise`): ``z`` starts at N(0, 1) (drawn from the run's
       generator) and takes ``noise_steps`` full-batch Adam steps (``noise_lr``) on
       ``-CE(model(mean + std * z), c) + noise_l2 * mean_i ||z_i||_2^2`` (:func:`noise_loss`).
       Checked in both references: the regulariser is the per-image *sum* of squares averaged
       over the batch, weight 0.1, and the noise starts at ``randn`` [V-code]. The references
       learn the noise directly on *normalised* input tensors (their transforms normalise with
       the data's channel statistics), while toolkit models take [0, 1] pixels and normalise
       inside. ``standardize_noise`` = True (default) reproduces the reference in our input space:
       the noise fed to the model is ``mean + std * z`` with the per-channel mean and standard
       deviation of the retained subset's images (:func:`channel_stats`), so start and penalty
       are those of N(0, 1) noise on normalised data [I: the references' own normalisation
       constants are CIFAR's; we estimate them from the data]. False learns ``z`` directly in
       pixel space (a start about 4x wider relative to CIFAR data, penalty towards black
       images); on the tiny test problem that variant's impair step makes the model predict the
       forget class everywhere instead of forgetting it. The model is the original (nothing has
       changed yet), run in eval mode [I]: the references leave it in train mode, which in
       BatchNorm models also feeds the noise into the running statistics; only ``z`` is
       differentiated.
    2. **Impair.** ``impair_epochs`` pass(es) of Adam (``impair_lr``) with cross-entropy over the
       shuffled union of ``noise_copies`` copies of each class's noise batch, labelled with its
       class, and the retained subset: up to ``samples_per_class`` samples of every class in the
       granted retain split (:func:`retained_subset`). Checked in S4: "80 noise batches" are 80
       copies of the *same* learned batch (the noise module returns one tensor) [V-code].
    3. **Repair.** ``repair_epochs`` pass(es) of a fresh Adam (``repair_lr``) with cross-entropy
       on the retained subset alone.

    Data: only the *labels* of D_f are read (UNSIR needs no forget images); the access model
    knows only forget/retain, so the forget set is declared. The retained subset is drawn from the
    granted retain split with the run's generator (the references take the first samples of
    each class in dataset order); in a sample-wise request it includes the forget classes' other
    samples, which the references (class-wise only) never meet.

    Defaults and where they come from:

    - ``noise_batch_size`` 32, ``noise_steps`` 25, ``noise_copies`` 80, ``samples_per_class``
      500 [V-code S4; spec 6.3]. The notebook uses 256, 5 x 8 = 40 steps, 20 copies and 1000;
    - ``noise_lr`` 0.1 and ``noise_l2`` 0.1 [V-code, both references];
    - ``impair_lr`` 0.02 and ``repair_lr`` 0.01, Adam without weight decay, batch 256 for both
      phases, 1 epoch each [V-code notebook]. S4 instead runs both phases through its generic
      trainer (Adam lr 1e-4, weight decay 1e-4, batch 32 for impair and 128 for repair). Taking
      the authors' values, which the paper's results come from, is our choice [I] (the spec
      leaves these open). ``weight_decay`` (0) applies to both phases;
    - the notebook labels every class's noise with the constant ``class_num = 0`` (the first
      forget class of its example), wrong for a second class; we label each class's noise with
      its own class; S4 handles a single class only;
    - ``augment`` = False: the references' transforms only normalise [V-code];
    - ``standardize_noise`` = True [I], see step 1.

    **What these defaults do to a small BatchNorm CNN** (measured on CPU on the H100 benchmark's
    Fashion-MNIST ``cnn``, 91.7% retain accuracy; forgetting class 0). Nothing in the code
    departs from the references in a way that matters here; the damage comes from the
    authors' optimiser settings applied to this model:

    - Adam's first steps move every weight by about ``lr`` whatever its gradient. The ``cnn``'s
      conv weights have RMS 0.24 / 0.049 / 0.023 (conv 1/2/3: trained by SGD with weight decay),
      so one step at ``impair_lr`` 0.02 or ``repair_lr`` 0.01 is about the size of a conv-3
      weight. After the default 28 impair + 18 repair steps, conv 2 and conv 3 have moved by
      2.7x and 5.5x their own norm (they feed BatchNorm, so their direction is essentially
      replaced). The repair phase alone, on the untouched original and with no noise at all,
      takes retain accuracy from 91.7% to 60.0%; impair alone gives 41.9%; both 68.6% (the H100
      benchmark: 66.3 +- 8.2%). The authors' own notebook loses accuracy too (CIFAR-10
      ResNet-18 at 77.2% test accuracy: 68.2% on the retained classes after impair, 70.9% after
      repair);
    - the noise is the smaller part: one noise copy instead of 80 gives 77.4%; learning the noise
      in train mode as both references do gives 69.6%; ``standardize_noise`` = False is worse
      (on a 6000-image subset 60.0% against 76.9%);
    - the number of repair steps is ``samples_per_class * classes / batch_size`` (18 here, S4's
      500 per class): the notebook's complete configuration (noise batch 256, 40 noise steps, 20
      copies, 1000 per class, so 72 impair and 36 repair steps) gives 74.9%;
    - sample-wise requests learn noise for every class present in D_f: on 10% random
      forgetting that is 10 x 32 x 80 = 25,600 noise images against 5,000 retained ones (84% of
      the impair data, ``noise_share`` in the record; 36% for one class), 120 impair steps, and
      retain 70.2% (H100: 65.2%). The references only do class-wise forgetting;
    - for reference, S4 runs both phases with Adam lr 1e-4 and weight decay 1e-4 (impair batch
      32, repair batch 128), and its repair result is discarded (``training_optimization``
      returns a copy, assigned to ``_``).

    The knobs: ``impair_lr`` / ``repair_lr`` (step size against the weights' scale),
    ``samples_per_class`` and ``batch_size`` (how many repair steps), ``noise_copies`` (the noise
    share). They are left at the authors' values: no reference validates other values.

    Cost: one pass over the retained subset for its channel statistics, ``noise_steps``
    forward/backward passes on one noise batch per forget class, then
    ``impair_epochs`` passes over the noise copies plus the retained subset and
    ``repair_epochs`` passes over the retained subset.
    """

    needs = Access(forget=True, retain=True)
    summary = "learn error-maximising noise per forget class, train on it with retained data (impair), then repair"

    @dataclass
    class Params:
        noise_batch_size: int = 32
        noise_steps: int = 25
        noise_lr: float = 0.1
        noise_l2: float = 0.1
        noise_copies: int = 80
        samples_per_class: int = 500
        impair_epochs: int = 1
        impair_lr: float = 0.02
        repair_epochs: int = 1
        repair_lr: float = 0.01
        weight_decay: float = 0.0
        batch_size: int = 256
        augment: bool = False
        standardize_noise: bool = True

    @classmethod
    def check(cls, params: Params) -> None:
        check_params(cls.name, params)

    def run(self, model: nn.Module, data: Granted, params: Params) -> dict[str, Any]:
        forget, retain = data.forget, data.retain
        forget_labels = forget.images.labels[torch.as_tensor(forget.indices, device=forget.images.labels.device)]
        classes = [int(c) for c in torch.unique(forget_labels).tolist()]
        subset = retained_subset(retain, params.samples_per_class, data.generator)
        shape = tuple(retain.images.images.shape[1:])
        shift, scale = 0.0, 1.0
        if params.standardize_noise:
            shift, scale = channel_stats(
                Split(retain.images, subset, retain.augment), params.batch_size, data.generator
            )
        noises = []
        for label in classes:
            start = torch.randn((params.noise_batch_size, *shape), generator=data.generator).to(data.device)
            noises.append(
                learn_noise(model, label, start, params.noise_steps, params.noise_lr, params.noise_l2, shift, scale)
            )
        noise = torch.cat(noises)
        if not torch.isfinite(noise).all():
            raise NonFiniteLossError(f"{self.name}: the learned noise is not finite; lower noise_lr")
        noise_labels = torch.tensor(classes, device=data.device).repeat_interleave(params.noise_batch_size)
        guard = LossGuard(self.name, data.device)
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=params.impair_lr, weight_decay=params.weight_decay)
        for epoch in range(params.impair_epochs):
            for x, y in impair_batches(retain, subset, noise, noise_labels, params, data.generator):
                with autocast(data.device):
                    loss = cross_entropy(model, x, y)
                step(optimizer, loss)
                guard.add(loss)
            guard.check(epoch + 1, hint="lower impair_lr")
        impair_steps = guard.steps
        optimizer = torch.optim.Adam(model.parameters(), lr=params.repair_lr, weight_decay=params.weight_decay)
        repair = Split(retain.images, subset, retain.augment)
        for epoch in range(params.repair_epochs):
            for x, y, _ in repair.batches(params.batch_size, data.generator, augment=params.augment):
                with autocast(data.device):
                    loss = cross_entropy(model, x, y)
                step(optimizer, loss)
                guard.add(loss)
            guard.check(params.impair_epochs + epoch + 1, hint="lower repair_lr")
        return {
            "steps": guard.steps,
            "impair_steps": impair_steps,
            "noise_share": len(noise) * params.noise_copies / (len(noise) * params.noise_copies + len(subset)),
            "noise_steps": params.noise_steps * len(classes),
            "forget_classes": classes,
        }


def check_params(method: str, params: Unsir.Params) -> None:
    counts = {
        "noise_batch_size": params.noise_batch_size,
        "noise_copies": params.noise_copies,
        "samples_per_class": params.samples_per_class,
        "batch_size": params.batch_size,
    }
    for name, value in counts.items():
        if value < 1:
            raise MethodError(f"{method}.{name} must be >= 1; got {value}")
    for name, value in {
        "noise_steps": params.noise_steps,
        "impair_epochs": params.impair_epochs,
        "repair_epochs": params.repair_epochs,
    }.items():
        if value < 0:
            raise MethodError(f"{method}.{name} must be >= 0; got {value}")
    if params.impair_epochs + params.repair_epochs < 1:
        raise MethodError(f"{method} needs impair_epochs + repair_epochs >= 1")
    for name, value in {
        "noise_lr": params.noise_lr,
        "impair_lr": params.impair_lr,
        "repair_lr": params.repair_lr,
    }.items():
        if not value > 0:
            raise MethodError(f"{method}.{name} must be > 0; got {value}")
    if not params.noise_l2 >= 0 or not params.weight_decay >= 0:
        raise MethodError(
            f"{method}.noise_l2 and weight_decay must be >= 0; got {params.noise_l2}, {params.weight_decay}"
        )


def noise_loss(
    model: nn.Module,
    z: torch.Tensor,
    label: int,
    l2: float,
    shift: torch.Tensor | float = 0.0,
    scale: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """``-CE(model(shift + scale * z), label) + l2 * mean_i ||z_i||^2``: the objective the noise minimises."""
    with autocast(z.device):
        logits = model(shift + scale * z)
    target = torch.full((len(z),), label, dtype=torch.long, device=z.device)
    return -F.cross_entropy(logits.float(), target) + l2 * z.pow(2).flatten(1).sum(1).mean()


def learn_noise(
    model: nn.Module,
    label: int,
    start: torch.Tensor,
    steps: int,
    lr: float,
    l2: float,
    shift: torch.Tensor | float = 0.0,
    scale: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """Error-maximising noise for class ``label``: ``steps`` Adam steps on :func:`noise_loss` from ``z = start``.

    The noise is ``shift + scale * z`` in the model's input space; ``z`` is optimised (and
    penalised). Only ``z`` is differentiated (the model's parameters get no gradient); the model
    runs in eval mode. Returns the learned noise in input space, detached.
    """
    z = start.detach().clone()
    if z.device.type == "cuda" and z.dim() == 4:
        z = z.contiguous(memory_format=torch.channels_last)
    z.requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    with eval_mode(model):
        for _ in range(steps):
            loss = noise_loss(model, z, label, l2, shift, scale)
            (z.grad,) = torch.autograd.grad(loss, z)
            optimizer.step()
    return (shift + scale * z).detach()


@torch.no_grad()
def channel_stats(split: Split, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of ``split``'s unaugmented images, shaped ``(C, 1, 1)``."""
    total = square = None
    count = 0
    for x, _, _ in split.batches(batch_size, generator, shuffle=False, augment=False):
        x = x.double()
        sums, squares = x.sum(dim=(0, 2, 3)), x.pow(2).sum(dim=(0, 2, 3))
        total = sums if total is None else total + sums
        square = squares if square is None else square + squares
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (square / count - mean**2).clamp_min(1e-12).sqrt()
    return mean.float()[:, None, None], std.float()[:, None, None]


def retained_subset(retain: Split, per_class: int, generator: torch.Generator) -> np.ndarray:
    """Up to ``per_class`` random retain indices of every class present in ``retain`` (sorted)."""
    labels = retain.images.labels[torch.as_tensor(retain.indices, device=retain.images.labels.device)].cpu().numpy()
    chosen = []
    for label in np.unique(labels):
        members = retain.indices[labels == label]
        order = torch.randperm(len(members), generator=generator).numpy()
        chosen.append(members[order[:per_class]])
    return np.sort(np.concatenate(chosen))


def impair_batches(
    retain: Split,
    subset: np.ndarray,
    noise: torch.Tensor,
    noise_labels: torch.Tensor,
    params: Unsir.Params,
    generator: torch.Generator,
):
    """Shuffled batches of the union of ``noise_copies`` copies of ``noise`` and the retained ``subset``.

    A uniform permutation of all positions decides each batch's composition; noise rows are
    taken from the learned tensor, retain samples are read through a :class:`Split` of exactly
    that batch's indices (so every read goes through the granted split's images).
    """
    n_noise = len(noise) * params.noise_copies
    order = torch.randperm(n_noise + len(subset), generator=generator)
    for start in range(0, len(order), params.batch_size):
        chunk = order[start : start + params.batch_size]
        rows = chunk[chunk < n_noise] % len(noise)
        picked = subset[(chunk[chunk >= n_noise] - n_noise).numpy()]
        xs = [noise[rows.to(noise.device)]]
        ys = [noise_labels[rows.to(noise.device)]]
        if len(picked):
            part = Split(retain.images, picked, retain.augment)
            for x, y, _ in part.batches(len(picked), generator, shuffle=False, augment=params.augment):
                xs.append(x)
                ys.append(y)
        yield torch.cat(xs), torch.cat(ys)
