"""Bad Teacher: distil from a random "incompetent" teacher on D_f and from the original on D_r."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnkit.methods.base import Access, Granted, LossGuard, Method, MethodError, Split, register_method
from unlearnkit.methods.common import frozen_copy, step
from unlearnkit.models import reinitialize
from unlearnkit.runtime import autocast, to_device


@register_method("bad-teacher")
class BadTeacher(Method):
    """Bad Teacher / incompetent teacher (Chundawat, Tarun, Mandal, Kankanhalli, "Can Bad Teaching
    Induce Forgetting? Unlearning in Deep Networks Using an Incompetent Teacher", AAAI 2023;
    spec 6.3), following ``vikram2000b/bad-teaching-unlearning`` ``unlearn.py``
    (``UnlearnerLoss``, ``blindspot_unlearner``) and its S4 port
    (``teresayongpuiyee/MachineUnlearning`` ``unlearn_strategies/strategies.py``, ``bad_teacher``).

    Student = the model (a copy of the original). Competent teacher = a frozen copy of the
    original. Incompetent teacher = the same architecture with every layer re-initialised
    (:func:`incompetent_teacher`, seeded with ``data.seed``; the reference instantiates a fresh,
    untrained network). One dataset mixes D_f and the retain subset and is shuffled into batches;
    for each sample the target is the incompetent teacher's softmax on a forget sample and the
    competent teacher's on a retain sample, and the student minimises ``KL(target || student)``
    at temperature T (:func:`bad_teacher_loss`). Both teachers run in eval mode without gradient,
    the student in train mode [V-code].

    Checked in the reference:

    - the KL is ``F.kl_div(log_softmax(s / T), target)`` with PyTorch's default reduction
      ``'mean'``, which averages over the batch *and the classes* (1/C of the batch-mean KL);
      there is no ``T^2`` factor. We keep that reduction [V-code] (under Adam a constant factor
      in the loss only interacts with Adam's epsilon);
    - defaults: Adam lr 1e-4 (no weight decay), 1 epoch, temperature 1, batch 256, and a uniform
      random 30% of the retain set (``random.sample(retain, int(0.3 * len(retain)))``) [V-code;
      spec 6.3, S4 defaults]. ``retain_fraction`` = 0.3 is therefore the declared access; the
      runner draws the subset, seeded;
    - the reference's data transforms only resize and normalise, so ``augment`` = False [V-code].

    Cost: ``epochs`` passes over D_f plus 30% of D_r, each batch with one student
    forward/backward and two teacher forwards. Needs D_f and a fraction of D_r.
    """

    needs = Access(forget=True, retain=True, retain_fraction=0.3)
    summary = "KL to a randomly initialised teacher on forget samples, KL to the original on retain samples"

    @dataclass
    class Params:
        epochs: int = 1
        lr: float = 1e-4
        temperature: float = 1.0
        batch_size: int = 256
        retain_fraction: float = 0.3
        augment: bool = False

    @classmethod
    def check(cls, params: Params) -> None:
        check_params(cls.name, params)

    def access(self, params: Params) -> Access:
        return Access(forget=True, retain=True, retain_fraction=params.retain_fraction)

    def run(self, model: nn.Module, data: Granted, params: Params) -> dict[str, Any]:
        forget, retain = data.forget, data.retain
        if forget.images is not retain.images:
            raise MethodError(f"{self.name} needs the forget and retain splits of the same device images")
        competent = frozen_copy(data.original)
        incompetent = incompetent_teacher(data.original, data.seed, data.device)
        # The "label" of each sample is its set: 1 for a forget sample, 0 for a retain sample.
        is_forget = torch.zeros(len(forget.images), dtype=torch.long, device=data.device)
        is_forget[torch.as_tensor(forget.indices, device=data.device)] = 1
        mixed = Split(forget.images, np.concatenate([forget.indices, retain.indices]), forget.augment)
        optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
        guard = LossGuard(self.name, data.device)
        model.train()
        for epoch in range(params.epochs):
            for x, flag, _ in mixed.batches(
                params.batch_size, data.generator, augment=params.augment, labels=is_forget
            ):
                with torch.no_grad(), autocast(data.device):
                    competent_logits = competent(x)
                    incompetent_logits = incompetent(x)
                with autocast(data.device):
                    student_logits = model(x)
                loss = bad_teacher_loss(student_logits, flag, competent_logits, incompetent_logits, params.temperature)
                step(optimizer, loss)
                guard.add(loss)
            guard.check(epoch + 1)
        return {"steps": guard.steps}


def check_params(method: str, params: BadTeacher.Params) -> None:
    if params.epochs < 1 or params.batch_size < 1:
        raise MethodError(f"{method}.epochs and batch_size must be >= 1; got {params.epochs}, {params.batch_size}")
    if not params.lr > 0:
        raise MethodError(f"{method}.lr must be > 0; got {params.lr}")
    if not params.temperature > 0:
        raise MethodError(f"{method}.temperature must be > 0; got {params.temperature}")
    if not 0 < params.retain_fraction <= 1:
        raise MethodError(f"{method}.retain_fraction must lie in (0, 1]; got {params.retain_fraction}")


def incompetent_teacher(original: nn.Module, seed: int, device: torch.device) -> nn.Module:
    """A frozen, eval-mode copy of ``original`` with every layer re-initialised from ``seed``.

    Initialised on the CPU, then moved to ``device``, so the teacher is the same on every device
    (and CUDA's random state is not touched).
    """
    teacher = frozen_copy(original).cpu()
    reinitialize(teacher, seed)
    return to_device(teacher, device).eval()


def bad_teacher_loss(
    student_logits: torch.Tensor,
    is_forget: torch.Tensor,
    competent_logits: torch.Tensor,
    incompetent_logits: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``KL(target || softmax(student / T))`` averaged over the batch and the classes (the reference's reduction).

    ``target`` is ``softmax(incompetent / T)`` where ``is_forget`` is 1 and ``softmax(competent / T)``
    where it is 0.
    """
    competent = F.softmax(competent_logits.float() / temperature, dim=1)
    incompetent = F.softmax(incompetent_logits.float() / temperature, dim=1)
    target = torch.where(is_forget.bool()[:, None], incompetent, competent)
    log_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    return F.kl_div(log_student, target, reduction="batchmean") / target.shape[1]
