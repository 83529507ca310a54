"""Gradient-inversion reconstruction of forget samples (OPC, Jung et al. 2025; spec 1.6, 7).

Only the existence of a "gradient-inversion-based data reconstruction attack" is verified for
OPC [V-abs]; the protocol here is the spec's recommendation [I], which follows Inverting
Gradients (Geiping, Bauermeister, Droege, Moeller, NeurIPS 2020): the attacker sees the
parameter gradient of the training loss on one forget sample, with its label, at the model under
audit, and optimises a dummy image until its gradient points the same way.

Choices [I], each a parameter:

- Cosine distance over the concatenation of all trainable parameters' gradients plus an
  anisotropic total-variation prior, Adam at lr 0.1 on the *sign* of the image gradient, the
  learning rate divided by 10 at 3/8, 5/8 and 7/8 of the steps, and the image clamped to
  [0, 1] after every step. The sign, the schedule and the clamp ("boxed") are the settings of
  the authors' public reference implementation. We clamp rather than use a sigmoid
  parametrisation because a sigmoid flattens the gradient near black and white pixels, which
  most digit and many natural-image pixels are.
- One restart and 1,000 steps by default, for cost; the spec suggests 2-5k iterations and the
  reference runs used more, so pass ``steps`` for a stronger (slower) attack.
- The model is in eval mode while attacking: with a batch of one, BatchNorm in train mode would
  normalise with the sample's own statistics (and update the running ones); eval mode uses the
  stored statistics, as the reference does, and disables dropout.
- Float32 throughout (no autocast): the second-order gradient is sensitive to precision.

Metrics: PSNR and SSIM from torchmetrics (``data_range=1``, SSIM with its default 11-tap,
sigma 1.5 Gaussian window, reflect padding, so images need H, W >= 6). LPIPS, the spec's third
metric, is not computed: it needs pretrained AlexNet weights downloaded at run time. Lower
PSNR/SSIM against the true image means deeper forgetting (spec 7).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from unlearnkit.audit.recovery import AuditError
from unlearnkit.checkpoint import atomic_write_bytes
from unlearnkit.runtime import eval_mode

DEFAULT_STEPS = 1000
DEFAULT_TV_WEIGHT = 1e-4
INIT_MEAN, INIT_STD = 0.5, 0.25


def invert_gradient(
    model: nn.Module,
    x_true: torch.Tensor,
    y: torch.Tensor,
    steps: int = DEFAULT_STEPS,
    lr: float = 0.1,
    tv_weight: float = DEFAULT_TV_WEIGHT,
    seed: int = 0,
    *,
    params: Iterable[nn.Parameter] | None = None,
    signed: bool = True,
    lr_decay: bool = True,
) -> torch.Tensor:
    """Reconstruct ``x_true`` from ``g* = grad_theta CE(model(x_true), y)`` (spec 1.6 steps 1-2).

    Args:
        model: the model under audit (e.g. the unlearned one); left in its original mode.
        x_true: ``(N, C, H, W)`` images in [0, 1]; ``N = 1`` is the spec's threat model (a small
            batch is matched jointly, with a mean-reduced loss).
        y: ``(N,)`` labels, known to the attacker.
        steps: Adam iterations.
        lr: initial Adam learning rate.
        tv_weight: weight of the total-variation prior (spec range 1e-4 to 1e-2).
        seed: seeds the Gaussian start ``N(0.5, 0.25^2)`` clamped to [0, 1], drawn on the CPU so
            CPU and CUDA runs start from the same image.
        params: the parameters whose gradient is observed; all trainable ones by default.
        signed: step on the sign of the image gradient (reference implementation).
        lr_decay: divide the learning rate by 10 at 3/8, 5/8, 7/8 of ``steps``.

    Returns:
        The reconstruction, detached, on ``x_true``'s device.
    """
    if steps < 1:
        raise AuditError(f"the inversion needs at least one step; got {steps}")
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(model):
        # Ordinary copies: tensors made under inference_mode cannot take part in autograd.
        x_true, y = x_true.detach().clone(), y.detach().clone()
        observed = _observed_params(model, params)
        target = [g.detach() for g in _param_gradient(model, x_true, y, observed, create_graph=False)]
        x_hat = _noise_like(x_true, seed).requires_grad_(True)
        optimizer = torch.optim.Adam([x_hat], lr=lr)
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, _milestones(steps) if lr_decay else [], gamma=0.1)
        for _ in range(steps):
            loss = inversion_loss(model, x_hat, y, target, observed, tv_weight)
            (grad,) = torch.autograd.grad(loss, x_hat)
            x_hat.grad = grad.sign() if signed else grad
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                x_hat.clamp_(0.0, 1.0)
    return x_hat.detach()


def inversion_loss(
    model: nn.Module,
    x_hat: torch.Tensor,
    y: torch.Tensor,
    target: list[torch.Tensor],
    params: list[nn.Parameter],
    tv_weight: float,
) -> torch.Tensor:
    """``1 - cos(grad_theta CE(model(x_hat), y), g*) + tv_weight * TV(x_hat)``, differentiable in
    ``x_hat`` (the parameter gradient is built with ``create_graph=True``)."""
    grads = _param_gradient(model, x_hat, y, params, create_graph=True)
    dot = sum((g * t).sum() for g, t in zip(grads, target, strict=True))
    norm = torch.sqrt(sum((g * g).sum() for g in grads)) * torch.sqrt(sum((t * t).sum() for t in target))
    return 1.0 - dot / norm.clamp_min(1e-12) + tv_weight * total_variation(x_hat)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV: mean absolute difference of vertically plus horizontally adjacent pixels."""
    return (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean() + (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean()


def reconstruction_scores(x_hat: torch.Tensor, x_true: torch.Tensor) -> dict[str, float]:
    """Mean per-image PSNR (dB) and SSIM of reconstructions against the true images (spec 1.6 step 3).

    Both in [0, 1] images with ``data_range=1``; PSNR is ``inf`` for an exact reconstruction.
    """
    if x_hat.shape != x_true.shape or x_hat.dim() != 4:
        raise AuditError(
            f"reconstructions and images must share one (N, C, H, W) shape; got {tuple(x_hat.shape)} and {tuple(x_true.shape)}"
        )
    x_hat, x_true = x_hat.detach().float(), x_true.detach().float().to(x_hat.device)
    psnr = peak_signal_noise_ratio(x_hat, x_true, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(x_hat, x_true, data_range=1.0, reduction="none")
    return {"psnr": psnr.mean().item(), "ssim": ssim.mean().item()}


def reconstruction_audit(
    models: Mapping[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int = DEFAULT_STEPS,
    *,
    lr: float = 0.1,
    tv_weight: float = DEFAULT_TV_WEIGHT,
    seed: int = 0,
) -> tuple[dict[str, dict[str, float]], dict[str, torch.Tensor]]:
    """Invert each sample's single-sample gradient through every named model; mean PSNR/SSIM per model.

    Every model attacks the same samples from the same starting noise (sample ``i`` uses seed
    ``seed + i``), so differences between models are paired. Typical ``models``:
    ``{"original": ..., "unlearned": ..., "oracle": ...}``; the oracle never saw the samples and
    gives the reference level for "forgotten". That level is not "unreconstructable": a
    single-sample gradient reveals its input through any model whose early layers pass signal
    (a linear first layer's weight gradient is an outer product with the input), trained on the
    sample or not. What deep forgetting changes is whether the gradient still carries the signal
    (e.g. dead activations after a collapse), so compare models against each other, not against
    an absolute threshold.

    Returns:
        ``(scores, reconstructions)``: ``scores[name] = {"psnr": ..., "ssim": ...}`` and
        ``reconstructions[name]`` an ``(N, C, H, W)`` tensor on ``images``' device.
    """
    if not models:
        raise AuditError("no models given; pass e.g. {'original': model, 'unlearned': model}")
    if images.dim() != 4 or len(images) == 0 or labels.shape != (len(images),):
        raise AuditError(
            f"need (N, C, H, W) images with N >= 1 and (N,) labels; got {tuple(images.shape)} and {tuple(labels.shape)}"
        )
    scores: dict[str, dict[str, float]] = {}
    reconstructions: dict[str, torch.Tensor] = {}
    for name, model in models.items():
        inverted = [
            invert_gradient(model, images[i : i + 1], labels[i : i + 1], steps, lr, tv_weight, seed + i)
            for i in range(len(images))
        ]
        reconstructions[name] = torch.cat(inverted)
        scores[name] = reconstruction_scores(reconstructions[name], images)
    return scores, reconstructions


def save_image_grid(
    true_images: torch.Tensor,
    reconstructions: Mapping[str, torch.Tensor],
    path: str | Path,
    *,
    panel_inches: float = 1.2,
    dpi: int = 100,
) -> Path:
    """Write one PNG: a row per sample, columns "true" then each model's reconstruction.

    The PNG is rendered in memory and written atomically, so a failed write leaves no partial
    file (and an older file intact).
    """
    figure = image_grid_figure(true_images, reconstructions, panel_inches=panel_inches, dpi=dpi)
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=dpi)
    target = Path(path)
    atomic_write_bytes(target, png.getvalue())
    return target


def image_grid_figure(
    true_images: torch.Tensor, reconstructions: Mapping[str, torch.Tensor], *, panel_inches: float = 1.2, dpi: int = 100
):
    """The grid as a matplotlib ``Figure`` on the Agg canvas (no pyplot, no global backend change).

    Size: ``(1 + len(reconstructions)) * panel_inches`` wide and ``rows * panel_inches`` plus a
    ``0.3 * panel_inches`` title strip high.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = {"true": true_images, **reconstructions}
    rows = len(true_images)
    for name, batch in columns.items():
        if batch.dim() != 4 or batch.shape != true_images.shape:
            raise AuditError(
                f"column {name!r} has shape {tuple(batch.shape)}; every column must match {tuple(true_images.shape)}"
            )
    if rows == 0:
        raise AuditError("no images to draw; pass at least one sample")
    width, height = len(columns) * panel_inches, (rows + 0.3) * panel_inches
    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, len(columns), squeeze=False)
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=rows / (rows + 0.3), wspace=0.05, hspace=0.05)
    for col, (name, batch) in enumerate(columns.items()):
        axes[0][col].set_title(name, fontsize=9)
        for row in range(rows):
            _draw(axes[row][col], batch[row])
    return figure


def _draw(axis, image: torch.Tensor) -> None:
    pixels = image.detach().float().clamp(0, 1).cpu().numpy()
    if pixels.shape[0] == 1:
        axis.imshow(pixels[0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        axis.imshow(np.transpose(pixels[:3], (1, 2, 0)), interpolation="nearest")
    axis.set_xticks([])
    axis.set_yticks([])


def _observed_params(model: nn.Module, params: Iterable[nn.Parameter] | None) -> list[nn.Parameter]:
    chosen = [p for p in model.parameters() if p.requires_grad] if params is None else list(params)
    if not chosen:
        raise AuditError(
            "the model has no trainable parameters to take a gradient of; pass params= or set requires_grad"
        )
    return chosen


def _param_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: list[nn.Parameter], *, create_graph: bool
) -> tuple[torch.Tensor, ...]:
    loss = F.cross_entropy(model(x), y)
    return torch.autograd.grad(loss, params, create_graph=create_graph)


def _noise_like(x: torch.Tensor, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = INIT_MEAN + INIT_STD * torch.randn(x.shape, generator=generator)
    return noise.clamp_(0.0, 1.0).to(device=x.device, dtype=torch.float32)


def _milestones(steps: int) -> list[int]:
    return sorted({max(1, steps * k // 8) for k in (3, 5, 7)})
