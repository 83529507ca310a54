"""Does a model fit a forget request? Checked once, on one sample, before any work."""

from __future__ import annotations

import torch
import torch.nn as nn

from unlearnkit.models import ModelError, check_protocol
from unlearnkit.tasks.request import DeviceSplits, ForgetRequest


def check_compatible(model: nn.Module, request: ForgetRequest, splits: DeviceSplits, *, trainable: bool = True) -> None:
    """Refuse a model that cannot serve the request, before any work: parameters that are not
    float32 (or, if it must be ``trainable``, all frozen) or not on the device of ``splits``, an
    input or output shape that does not fit the request, or ``features``/``head`` that do not
    compose to its output (:func:`check_protocol`; an adapted model whose output is e.g.
    ``log_softmax(fc(x))`` is refused here, not later in an audit).
    """
    check_parameters(model, trainable=trainable)
    check_device(model, splits)
    sample, _ = splits.train.gather(request.retain_idx[:1])
    try:  # check_protocol turns its own feature/head failures into ModelErrors; a RuntimeError is model(x)'s
        logits = check_protocol(model, sample)
    except RuntimeError as err:
        raise ModelError(
            f"the model does not accept {request.dataset.name} images of shape {tuple(sample.shape[1:])} "
            f"(float in [0, 1]): {str(err).splitlines()[0]}"
        ) from err
    width = logits.shape[-1]
    if width != request.num_classes:
        raise ModelError(
            f"the model has {width} outputs but the request's {request.label_space} label space has "
            f"{request.num_classes} classes; give a model trained on {request.dataset.name}'s labels"
        )


def check_parameters(model: nn.Module, *, trainable: bool = True) -> None:
    """Refuse parameters the toolkit cannot use: not float32 (inputs are float32 images), or, when the
    model must be ``trainable``, all frozen."""
    params = list(model.parameters())
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in params if p.dtype != torch.float32})
    if dtypes:
        raise ModelError(
            f"the model has {', '.join(dtypes)} parameters; the toolkit feeds float32 images and trains in float32 "
            "(bf16 autocast on CUDA): give a float32 model (model.float())"
        )
    if trainable and params and not any(p.requires_grad for p in params):
        raise ModelError(
            "every parameter of the model is frozen (requires_grad=False), so no method can change it; unfreeze "
            "the layers unlearning may change (e.g. model.requires_grad_(True)); your model is not modified"
        )


def check_device(model: nn.Module, splits: DeviceSplits) -> None:
    """Refuse a model whose parameters are not on the device the splits were placed on."""
    data = splits.train.device
    devices = sorted({str(p.device) for p in model.parameters()})
    if devices and not any(_same_place(torch.device(d), data) for d in devices):
        raise ModelError(
            f"the model is on {', '.join(devices)} but the data splits are on {data}; place the splits on the "
            f"model's device (uk.place(request, {devices[0]!r})) or move the model (model.to({str(data)!r}))"
        )


def _same_place(a: torch.device, b: torch.device) -> bool:
    # "cuda" means the current GPU, so it matches any "cuda:N" rather than being a different device
    return a.type == b.type and (a.index == b.index or None in (a.index, b.index))
