"""``unlearn(model, request, method)``: the one entry point that runs any registered method."""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from unlearnkit.methods.base import (
    Access,
    DataLoss,
    Granted,
    Method,
    Split,
    TensorSplit,
    cross_entropy_loss,
    get_method,
    make_params,
)
from unlearnkit.models import as_classifier
from unlearnkit.runtime import check_seed, cpu_generator, eval_mode, resolve_device, seed_everything, to_device
from unlearnkit.tasks import DeviceSplits, ForgetRequest, place
from unlearnkit.tasks.compatibility import check_compatible
from unlearnkit.train import TrainRecipe, default_recipe


@dataclass
class UnlearnRecord:
    """What a method run did: its name, hyperparameters, wall-clock time and step count."""

    method: str
    hparams: dict[str, Any]
    time_s: float
    seed: int
    access: str
    steps: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def unlearn(
    model: nn.Module,
    request: ForgetRequest,
    method: str,
    *,
    seed: int = 0,
    device: str | torch.device = "auto",
    recipe: TrainRecipe | None = None,
    splits: DeviceSplits | None = None,
    **hparams: Any,
) -> tuple[nn.Module, UnlearnRecord]:
    """Unlearn ``request`` from ``model`` with a registered method; the given model is not modified.

    Args:
        model: a toolkit model or any classifier ending in ``nn.Linear`` (wrapped by the adapter).
        request: the forget request (:func:`unlearnkit.tasks.make_request`).
        method: a registered name (``unlearnkit list`` shows them).
        seed: seeds the method's randomness (batch order, random labels, subsets).
        device: ``"auto"`` (the device of ``splits`` when given, else CUDA when available, else
            CPU), ``"cpu"`` or ``"cuda"``.
        recipe: the original model's training recipe (used by ``retrain``); defaults to the
            dataset's default recipe.
        splits: the request's data already on a device (:func:`unlearnkit.place`; reuse across
            many calls).
        **hparams: overrides of the method's ``Params`` fields.

    Returns:
        The unlearned model (a copy) and an :class:`UnlearnRecord`.
    """
    seed = check_seed(seed)
    method_cls = get_method(method)
    params = make_params(method_cls, hparams)
    runner = method_cls()
    target = splits.train.device if splits is not None and device == "auto" else resolve_device(device)
    splits = splits if splits is not None else place(request, target)
    original = working_copy(model, target)
    check_compatible(original, request, splits)
    unlearned = copy.deepcopy(original)
    access = runner.access(params)
    seed_everything(seed)
    granted = _grant(access, method, original, request, splits, seed, recipe or default_recipe(request.dataset.name))
    return unlearned, _timed_run(runner, unlearned, granted, params, access, target)


def working_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """A copy of ``model`` on ``device``, adapted to the model protocol.

    Copied first: moving to the device (and channels_last on CUDA) works in place, and the
    caller's module must keep its device, dtype, memory format, mode and weights.
    """
    return to_device(as_classifier(copy.deepcopy(model)), device)


def _timed_run(runner: Method, unlearned: nn.Module, granted: Granted, params: Any, access: Access, device: torch.device) -> UnlearnRecord:
    """Run the method in place on ``unlearned`` and record it; CUDA work is synchronised so the time is real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    extra = runner.run(unlearned, granted, params) or {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    unlearned.eval()
    return UnlearnRecord(
        method=granted.method,
        hparams=dataclasses.asdict(params),
        time_s=elapsed,
        seed=granted.seed,
        access=access.describe(),
        steps=extra.pop("steps", None),
        extra=extra,
    )


def unlearn_tensors(
    model: nn.Module,
    retain: tuple[torch.Tensor, torch.Tensor],
    forget: tuple[torch.Tensor, torch.Tensor],
    method: str,
    *,
    loss: DataLoss = cross_entropy_loss,
    seed: int = 0,
    **hparams: Any,
) -> tuple[nn.Module, UnlearnRecord]:
    """Unlearn ``forget`` from ``model`` given as in-memory ``(inputs, targets)`` tensors.

    The entry point for tasks that are not image datasets (the sine data-poisoning benchmark,
    spec 3.4a): the data stay on their device as :class:`TensorSplit` s, ``loss`` is the data loss
    the S1-family methods descend on (e.g. MSE), and the model is used as given (no adapter, no
    shape check against a request). Methods that need an image dataset or a training recipe
    (``retrain``, SalUn's relabelling...) do not run here. The given model is not modified.
    """
    seed = check_seed(seed)
    method_cls = get_method(method)
    params = make_params(method_cls, hparams)
    runner = method_cls()
    access = runner.access(params)
    device = retain[0].device
    unlearned = copy.deepcopy(model)
    with torch.no_grad(), eval_mode(model):
        outputs = model(retain[0][:1])
    seed_everything(seed)
    granted = Granted(
        method=method,
        original=model,
        num_classes=outputs.shape[-1] if isinstance(outputs, torch.Tensor) else outputs[0].shape[-1],
        device=device,
        seed=seed,
        recipe=TrainRecipe(),
        generator=cpu_generator(seed),
        loss=loss,
    )
    if access.forget:
        granted.forget_split = TensorSplit(*forget)
    if access.retain:
        kept = torch.as_tensor(retain_subset(np.arange(len(retain[0])), access.retain_fraction, seed), device=device)
        granted.retain_split = TensorSplit(retain[0][kept], retain[1][kept])
    return unlearned, _timed_run(runner, unlearned, granted, params, access, device)


def _grant(
    access: Access,
    method: str,
    original: nn.Module,
    request: ForgetRequest,
    splits: DeviceSplits,
    seed: int,
    recipe: TrainRecipe,
) -> Granted:
    augment = recipe.augment_for(request.dataset.name)
    granted = Granted(
        method=method,
        original=original,
        num_classes=request.num_classes,
        device=splits.train.device,
        seed=seed,
        recipe=recipe,
        generator=cpu_generator(seed),
        forget_classes=request.forget_classes,
    )
    if access.forget:
        granted.forget_split = Split(splits.train, request.forget_idx, augment)
    if access.retain:
        granted.retain_split = Split(splits.train, retain_subset(request.retain_idx, access.retain_fraction, seed), augment)
    return granted


def retain_subset(retain_idx: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded uniform ``fraction`` of the retain indices (all of them at 1.0)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"retain fraction must lie in (0, 1]; got {fraction}")
    if fraction == 1:
        return retain_idx
    count = max(1, round(fraction * len(retain_idx)))
    return np.sort(np.random.default_rng(seed).choice(retain_idx, size=count, replace=False))
