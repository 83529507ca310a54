"""MinNorm-OG: shrink the parameters orthogonally to the retain output-gradient span, then descend on D_r."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from unlearnkit.methods.base import Access, Granted, LossGuard, Method, MethodError, register_method
from unlearnkit.methods.common import (
    ForgetPacedParams,
    adamw,
    check_forget_paced,
    clamped_data_loss,
    forget_paced_steps,
    retain_cycle,
)
from unlearnkit.runtime import autocast, eval_mode
from unlearnkit.train import NonFiniteLossError

# Maps a model's output to its list of logit heads. Our models have one head (``model(x)`` is a
# tensor); a multi-head model returning a tuple (S1's erase experiment: class and colour heads)
# gives one entry per head, and its max-logit gradients are stacked head after head.
Heads = Callable[[Any], Sequence[torch.Tensor]]


def output_heads(output: Any) -> list[torch.Tensor]:
    """The logit heads of a model output: a tuple/list as is, a single tensor as a one-element list."""
    return list(output) if isinstance(output, (tuple, list)) else [output]


PER_SAMPLE_MODES = ("loop", "vmap")


@register_method("minnorm-og")
class MinNormOG(Method):
    """MinNorm-OG (Block, Mokhtari, Shakkottai, "Machine Unlearning under Overparameterization",
    NeurIPS 2025; spec 3.2-3.3), following ``MinNormOGUnlearner`` in
    ``jacob-block/overparameterized-unlearning`` ``common/unlearners/unlearners.py``, the base loop
    in ``common/unlearners/base_unlearner.py`` and ``proj`` in ``common/utils/misc_utils.py`` (S1).

    Per step (an epoch = ``ceil(|D_f| / batch_size)`` steps; D_f only sets that count, its size is
    the only thing read): take the next retain batch ``B_r`` (cycled, reshuffled per pass, position
    carried over between epochs, :func:`~unlearnkit.methods.common.retain_cycle`). In a projection
    epoch (``t < epochs - gd_epochs`` and ``t % proj_period == 0``):

    1. draw ``n_pert`` class-balanced points of ``B_r`` (:func:`class_balanced_sample`:
       ``n_pert // #classes in B_r`` per present class, a class with fewer members gives them all);
       with floating (regression) targets a uniformly random ``n_pert`` of ``B_r`` instead
       (:func:`gradient_sample`; S1's regression branch);
    2. stack the gradients of each point's **max logit** (argmax index held fixed) with respect to
       every trainable parameter into ``A`` (p x k) (:func:`max_logit_gradients`);
    3. ``theta <- theta - c * (theta - Q Q^T theta)`` with ``A = QR`` (reduced QR in float64, Q cast
       to float32) on the flattened trainable-parameter vector (:func:`shrink_orthogonal`), then
       ``c <- gamma_reg * c``; ``c`` starts at ``lambda_reg`` in [0, 1] (S1 asserts it; a
       MethodError here).

    Then one AdamW step on the retain data loss of ``B_r`` (``data.loss``: cross-entropy by
    default, MSE for the sine benchmark, the sum of both heads' CE for the colour benchmarks;
    logits clamped to +-30, S1's
    ``MAX_LOGIT_THRESHOLD``; ``logit_clamp`` 0 disables). Checked in S1: the projection runs before
    the descent step (``pre_loss_update``), as in the paper's Algorithm 1 (appendix F.1.10 says
    after; we follow the code) [V-code].

    ``forward_before_projection`` (default True, bit-faithful): S1 runs the retain forward pass
    *before* the projection and writes the projected weights through ``param.data.copy_``, so the
    descent gradient comes from the pre-projection graph, whose saved weight tensors alias the
    parameters and are therefore read at their projected values in backward; AdamW then updates
    the projected weights. We do exactly that (``.data`` writes bypass autograd's version check).
    On CUDA, bf16 autocast saves bf16 *copies* of the weights, so there the backward uses the
    pre-projection weights throughout (a numerically tiny difference from S1's fp32 run). False:
    the forward pass runs after the projection (a clean re-implementation; spec 3.3 "Subtle code
    detail").

    Per-sample gradients (``per_sample_grads``): ``"loop"`` (default, as S1) runs one forward pass
    of the subsample in the model's current (train) mode and one backward per sample
    (``autograd.grad`` with ``retain_graph``); this is exactly S1's computation, including
    BatchNorm's batch statistics over the subsample (each sample's gradient then depends on the
    others) and the side effect of that forward pass on BN running statistics. ``"vmap"``:
    ``torch.func.vmap`` over ``functional_call`` in **eval** mode, so BN uses its running
    statistics, each gradient is that of the sample alone, and running statistics are untouched
    (a different span on BN models; identical on models without BN or dropout). Both run in
    float32 without autocast (a bf16 gradient basis would make the projection inexact). At most
    ``n_pert`` gradients (times the number of heads) are held, as the p x k matrix A.

    Multi-head models: :func:`max_logit_gradients` takes ``heads`` (a function from the model
    output to its list of logit tensors, :func:`output_heads` by default) and stacks the
    per-head max-logit gradients head after head (``H * k`` columns), as S1 does for its class and
    colour heads; class balance uses the labels given (S1: the first head's labels). A 1-output
    regression model's "max logit" is its single output (spec 3.2, regression).

    Deviations and choices:

    - Randomness: S1 draws the class-balanced subsample with the global ``torch.randperm``; we
      draw it from the run's seeded ``data.generator``.
    - S1 also forwards the forget batch (train mode, no gradient), updating BN running
      statistics with forget data; we do not forward D_f at all (as ``ridge``/``ngd``).
    - Host syncs: the class-balanced draw needs the batch's labels on the host, and a non-finite
      gradient matrix or parameter vector raises :class:`NonFiniteLossError` (S1 raises too);
      both happen once per projection step only.
    - A batch with more classes than ``n_pert`` gives ``n_pert // #classes = 0`` points per class
      and an empty A; as in S1 the step then shrinks the *whole* parameter vector by ``c``
      (``Q Q^T theta = 0``). Keep ``n_pert`` >= the number of classes per batch (S1's Tiny
      ImageNet runs, 200 classes with n_pert 50, hit this case). ``gradient_columns`` in the
      record shows the number of columns of each projection.

    Defaults (spec 3.6 has no single image default; the CIFAR label-erasure values where given):
    ``epochs`` 2 [I] (S1's CIFAR label-erasure T = 2), ``lr`` 1e-4 [I] (grid {1e-3 ... 1e-6}),
    ``lambda_reg`` 0.1 [I] (grid {1e-3, 1e-2, 5e-2, 1e-1}; also the best data-poisoning value),
    ``gamma_reg`` 0.8 [I] (grid {0.2, 0.4, 0.8}; 0.9 was best for data poisoning), ``gd_epochs``
    (T_GD) 0 [V] (fixed in the label-erasure grid), ``proj_period`` (T_proj) 1 [V], ``n_pert`` 50
    [V], batch 256 [V] (S1's CIFAR batch), AdamW weight decay 0.01 (PyTorch's default, not
    overridden in S1) [V-code], ``augment`` False (S1's unlearning datasets only recolour and
    normalise) [V-code], ``retain_fraction`` 1.0 (S1's benchmarks give 0.1% to 1% of D_r; set it
    to reproduce them; drawn once by the runner).

    Cost per step: one forward/backward on a retain batch; in projection epochs also one forward
    of <= n_pert points, n_pert backward passes (loop) or one vmapped gradient, and a float64 QR
    of a p x n_pert matrix (O(p n_pert^2)). Peak extra memory ~6 p n_pert x 4 bytes (A, its
    float64 copy, the float64 Q and its float32 cast): ~13 GB for a ResNet-18 (p = 11.2M) at
    n_pert 50, as in S1.
    """

    needs = Access(forget=True, retain=True)
    summary = "shrink theta orthogonally to the retain max-logit gradient span, then AdamW on retain CE"

    @dataclass
    class Params(ForgetPacedParams):
        epochs: int = 2
        lambda_reg: float = 0.1
        gamma_reg: float = 0.8
        gd_epochs: int = 0
        proj_period: int = 1
        n_pert: int = 50
        forward_before_projection: bool = True
        per_sample_grads: str = "loop"

    @classmethod
    def check(cls, params: Params) -> None:
        check_params(cls.name, params)

    def access(self, params: Params) -> Access:
        return Access(forget=True, retain=True, retain_fraction=params.retain_fraction)

    def run(self, model: nn.Module, data: Granted, params: Params) -> dict[str, Any]:
        parameters = [p for p in model.parameters() if p.requires_grad]
        optimizer = adamw(model, params.lr, params.weight_decay)
        guard = LossGuard(self.name, data.device)
        steps_per_epoch = forget_paced_steps(len(data.forget), params.batch_size)
        batches = retain_cycle(data.retain, params.batch_size, data.generator, params.augment)
        c = params.lambda_reg
        c_per_step: list[float] = []
        columns: list[int] = []
        model.train()
        for epoch in range(params.epochs):
            project = is_projection_epoch(epoch, params.epochs, params.gd_epochs, params.proj_period)
            for _ in range(steps_per_epoch):
                x, y = next(batches)
                if params.forward_before_projection:
                    with autocast(data.device):
                        loss = clamped_data_loss(data, model(x), y, params.logit_clamp)
                if project:
                    chosen = gradient_sample(y, params.n_pert, data.generator).to(x.device)
                    grads = max_logit_gradients(model, x[chosen], parameters, mode=params.per_sample_grads)
                    shrink_orthogonal(parameters, grads, c, self.name)
                    columns.append(grads.shape[1])
                    del grads
                    c_per_step.append(c)
                    c = params.gamma_reg * c
                else:
                    c_per_step.append(0.0)
                if not params.forward_before_projection:
                    with autocast(data.device):
                        loss = clamped_data_loss(data, model(x), y, params.logit_clamp)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                guard.add(loss)
            guard.check(epoch + 1)
        return {
            "steps": guard.steps,
            "projections": len(columns),
            "c_per_step": c_per_step,
            "c_final": c,
            "gradient_columns": columns,
        }


def check_params(method: str, params: MinNormOG.Params) -> None:
    check_forget_paced(method, params)
    if not 0 <= params.lambda_reg <= 1:
        raise MethodError(
            f"{method}.lambda_reg (the initial shrink coefficient c = 1 / (1 + lambda)) must lie in [0, 1]; "
            f"got {params.lambda_reg}"
        )
    if not 0 <= params.gamma_reg <= 1:
        raise MethodError(f"{method}.gamma_reg (the per-projection decay of c) must lie in [0, 1]; got {params.gamma_reg}")
    if params.gd_epochs < 0:
        raise MethodError(f"{method}.gd_epochs (final epochs without projection) must be >= 0; got {params.gd_epochs}")
    if params.proj_period < 1:
        raise MethodError(f"{method}.proj_period (project every T_proj epochs) must be >= 1; got {params.proj_period}")
    if params.n_pert < 1:
        raise MethodError(f"{method}.n_pert (points per projection) must be >= 1; got {params.n_pert}")
    if params.per_sample_grads not in PER_SAMPLE_MODES:
        raise MethodError(f"{method}.per_sample_grads must be one of {', '.join(PER_SAMPLE_MODES)}; got {params.per_sample_grads!r}")


def is_projection_epoch(epoch: int, epochs: int, gd_epochs: int, proj_period: int) -> bool:
    """S1's rule: project in epoch ``t`` iff ``t < T - T_GD`` and ``t % T_proj == 0`` (0-based t)."""
    return epoch < epochs - gd_epochs and epoch % proj_period == 0


def gradient_sample(targets: torch.Tensor, n_pert: int, generator: torch.Generator) -> torch.Tensor:
    """The batch positions whose max-logit gradients span G (spec 3.2 "Subsample selection").

    Integer targets (class indices) give S1's class-balanced draw (:func:`class_balanced_sample`);
    floating targets (regression, e.g. the sine benchmark of spec 3.4a) give S1's regression
    branch, a uniformly random ``n_pert`` of the batch (all of it if smaller), drawn with
    ``generator`` [V-code for both branches; switching on the target dtype is our choice, I].
    """
    if targets.is_floating_point():
        return torch.randperm(len(targets), generator=generator)[:n_pert]
    return class_balanced_sample(targets, n_pert, generator)


def class_balanced_sample(labels: torch.Tensor, n_pert: int, generator: torch.Generator) -> torch.Tensor:
    """Batch positions of a class-balanced subsample (CPU int64), as S1's ``get_output_grads``.

    ``n_per_class = n_pert // #unique labels``; each present class (ascending) contributes a
    uniformly random ``n_per_class`` of its positions (all of them if it has fewer), drawn with
    ``generator``.
    """
    labels = labels.detach().cpu()
    classes = torch.unique(labels)
    per_class = n_pert // len(classes)
    picks = []
    for cls in classes:
        members = torch.nonzero(labels == cls).flatten()
        picks.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(picks)


def max_logit_gradients(
    model: nn.Module,
    x: torch.Tensor,
    parameters: Sequence[torch.Tensor],
    *,
    mode: str = "loop",
    heads: Heads = output_heads,
) -> torch.Tensor:
    """``A`` (p x H*k): column ``h*k + i`` is the gradient of head h's max logit at ``x[i]``.

    The argmax index is held fixed (the gradient of ``max`` flows to the argmax only). ``p`` counts
    ``parameters`` in order (missing gradients are zeros, as S1). ``mode="loop"``: one forward pass
    in the model's current mode and one backward per sample (S1); ``"vmap"``: per-sample
    gradients by ``torch.func`` in eval mode. float32, no autocast. Rows are built sample by
    sample, so only this matrix is held.
    """
    if mode not in PER_SAMPLE_MODES:
        raise ValueError(f"mode must be one of {PER_SAMPLE_MODES}; got {mode!r}")
    parameters = list(parameters)
    total = sum(p.numel() for p in parameters)
    if len(x) == 0:
        return torch.zeros((total, 0), device=parameters[0].device)
    if mode == "vmap":
        return _vmap_gradients(model, x, parameters, heads)
    outputs = heads(model(x))
    rows = torch.empty((len(outputs) * len(x), total), device=parameters[0].device, dtype=torch.float32)
    row = 0
    for head_index, logits in enumerate(outputs):
        top = logits.float().max(dim=1).values
        for i in range(len(top)):
            last = head_index == len(outputs) - 1 and i == len(top) - 1
            grads = torch.autograd.grad(top[i], parameters, retain_graph=not last, allow_unused=True)
            torch.cat(
                [(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for g, p in zip(grads, parameters, strict=True)],
                out=rows[row],
            )
            row += 1
    return rows.T


def _vmap_gradients(model: nn.Module, x: torch.Tensor, parameters: list[torch.Tensor], heads: Heads) -> torch.Tensor:
    from torch.func import functional_call, grad, vmap

    name_of = {id(p): name for name, p in model.named_parameters()}
    if any(id(p) not in name_of for p in parameters):
        raise ValueError("parameters must be parameters of model")
    order = [name_of[id(p)] for p in parameters]  # the column order of the loop mode
    trainable = {name_of[id(p)]: p.detach() for p in parameters}
    constants = {name: p.detach() for name, p in model.named_parameters() if name not in trainable}
    constants.update(dict(model.named_buffers()))
    with eval_mode(model):
        probe = heads(functional_call(model, (trainable, constants), (x[:1],)))
        columns = []
        for head_index in range(len(probe)):

            def top_logit(weights: dict[str, torch.Tensor], sample: torch.Tensor, h: int = head_index) -> torch.Tensor:
                out = heads(functional_call(model, (weights, constants), (sample.unsqueeze(0),)))[h]
                return out.float().max(dim=1).values[0]

            per_sample = vmap(grad(top_logit), in_dims=(None, 0))(trainable, x)
            columns.append(torch.cat([per_sample[name].reshape(len(x), -1) for name in order], dim=1))
            del per_sample
    return torch.cat(columns, dim=0).T


@torch.no_grad()
def shrink_orthogonal(parameters: Sequence[torch.Tensor], grads: torch.Tensor, c: float, method: str = "minnorm-og") -> torch.Tensor:
    """``theta <- theta - c * P_perp(theta)`` in place; returns the update ``delta`` (flat, float32).

    ``P_perp(theta) = theta - Q Q^T theta`` with ``grads = QR`` (reduced QR in float64, Q cast to
    float32), as S1's ``proj``. The new values are written through ``param.data`` (S1's
    ``set_param_vec``), so an autograd graph built before the call stays usable.
    """
    parameters = list(parameters)
    theta = torch.cat([p.detach().reshape(-1).float() for p in parameters])
    if not bool(torch.isfinite(grads).all()) or not bool(torch.isfinite(theta).all()):
        raise NonFiniteLossError(
            f"{method}: the parameters or their max-logit gradients became NaN/inf; lower its learning rate. "
            "The original model is unchanged."
        )
    q = torch.linalg.qr(grads.double(), mode="reduced").Q.float()
    perp = theta - q @ (q.T @ theta)
    delta = -c * perp
    new = theta + delta
    for p, piece in zip(parameters, new.split([p.numel() for p in parameters]), strict=True):
        p.data.copy_(piece.view_as(p).to(p.dtype))
    return delta


def projection_fraction(delta: torch.Tensor, grads: torch.Tensor) -> float:
    """``|Q^T delta| / |delta|`` for the span of ``grads``: 0 when ``delta`` is orthogonal to it."""
    q = torch.linalg.qr(grads.double(), mode="reduced").Q
    norm = delta.double().norm()
    return 0.0 if norm == 0 else float((q.T @ delta.double()).norm() / norm)


__all__ = [
    "MinNormOG",
    "class_balanced_sample",
    "gradient_sample",
    "is_projection_epoch",
    "max_logit_gradients",
    "output_heads",
    "projection_fraction",
    "shrink_orthogonal",
]
