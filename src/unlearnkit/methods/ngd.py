"""Noisy gradient descent (MinNorm-OG baseline): retain descent with Gaussian noise on every gradient."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from unlearnkit.methods.base import Access, Granted, Method, MethodError, register_method
from unlearnkit.methods.common import ForgetPacedParams, check_forget_paced, forget_paced_descent


@register_method("ngd")
class NoisyGD(Method):
    """NGD, a baseline of MinNorm-OG (Block, Mokhtari, Shakkottai, "Machine Unlearning under
    Overparameterization", NeurIPS 2025; spec 3.5), as ``NGDUnlearner`` in
    ``jacob-block/overparameterized-unlearning`` ``common/unlearners/unlearners.py`` (S1).

    Each step: the gradient of the retain data loss (``data.loss``: cross-entropy by default, MSE
    on the sine benchmark of spec 3.4a), then ``N(0, sigma^2)`` noise added to every
    parameter's gradient (checked in S1 ``common/utils/model_utils.py``, ``add_gradient_noise``:
    ``grad += sigma * randn_like(grad)`` for every parameter that has a gradient [V-code]), then
    the AdamW step. Note that AdamW normalises the noisy gradient, so sigma acts relative to the
    gradient's scale: on a model that (nearly) interpolates D_r the retain gradient is tiny, and
    any sigma of the reference grids drowns it, making the first steps close to random-sign
    steps of size ``lr`` (the effect grows with sigma only while sigma is below the gradient's
    size; see the tests).

    Epoch, retain cycling, logit clamp (+-30), AdamW weight decay 0.01, ``retain_fraction`` and
    the deviation about forwarding D_f are those of ``ridge`` (see :class:`~unlearnkit.methods.ridge.Ridge`,
    :func:`~unlearnkit.methods.ridge.forget_paced_descent`): D_f is declared but only its size is
    read, to count ``ceil(|D_f| / batch_size)`` steps per epoch.

    Noise and determinism: on the CPU the noise is drawn from the run's seeded generator
    (``data.generator``), interleaved with the batch-order draws. On CUDA, drawing a
    parameter-sized vector on the CPU and copying it every step would dominate the step time, so
    it is drawn on the device from a ``torch.Generator`` seeded with ``data.seed``: runs are
    deterministic per device, but the CPU and CUDA noise sequences differ. ``sigma`` = 0 draws no
    noise at all, so it is exactly plain GD (AdamW on the retain loss) with the same batches.

    Defaults: ``sigma`` 0.1 [I] (S1 grids {0.1, 0.5, 1} for data poisoning and {0.1, 1, 10} for
    the image benchmarks, spec 3.6), ``lr`` 1e-4 [I], ``epochs`` 5 [I], batch 256 (S1's CIFAR
    batch), ``retain_fraction`` 1.0 (S1 benchmarks use 0.001 to 0.01).

    Cost: ``epochs * ceil(|D_f| / batch_size)`` forward/backward passes on retain batches, plus
    one parameter-sized Gaussian draw per step.
    """

    needs = Access(forget=True, retain=True)
    summary = "retain cross-entropy with N(0, sigma^2) noise added to every gradient (AdamW)"

    @dataclass
    class Params(ForgetPacedParams):
        sigma: float = 0.1

    @classmethod
    def check(cls, params: Params) -> None:
        check_params(cls.name, params)

    def access(self, params: Params) -> Access:
        return Access(forget=True, retain=True, retain_fraction=params.retain_fraction)

    def run(self, model: nn.Module, data: Granted, params: Params) -> dict[str, Any]:
        parameters = [p for p in model.parameters() if p.requires_grad]
        if data.device.type == "cuda":
            generator = torch.Generator(device=data.device).manual_seed(data.seed)
        else:
            generator = data.generator

        def noise(step_index: int) -> None:
            if params.sigma > 0:
                add_gradient_noise(parameters, params.sigma, generator)

        return {"steps": forget_paced_descent(self.name, model, data, params, noise)}


def check_params(method: str, params: NoisyGD.Params) -> None:
    check_forget_paced(method, params)
    if not params.sigma >= 0:
        raise MethodError(f"{method}.sigma (the gradient-noise standard deviation) must be >= 0; got {params.sigma}")


@torch.no_grad()
def add_gradient_noise(parameters: list[torch.Tensor], sigma: float, generator: torch.Generator) -> None:
    """``grad += sigma * N(0, 1)`` for every parameter that has a gradient (as S1's ``add_gradient_noise``).

    The noise is drawn on ``generator``'s device (one flat draw per step) and moved to the
    gradients' device when they differ.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    total = sum(g.numel() for g in grads)
    flat = torch.randn(total, generator=generator, device=generator.device, dtype=torch.float32)
    flat = flat.to(grads[0].device)
    pieces = [
        piece.view_as(g).to(g.dtype) for piece, g in zip(flat.split([g.numel() for g in grads]), grads, strict=True)
    ]
    torch._foreach_add_(grads, pieces, alpha=sigma)
