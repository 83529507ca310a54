"""One trainer for the original model and the retrain-from-scratch oracle, and their cache.

The loop follows spec/performance.md: data resident on the device, on-device augmentation, bf16
autocast and channels_last on CUDA, Nesterov SGD with a one-cycle (triangular) learning rate,
no host synchronisation inside an epoch. Each epoch draws its order and augmentation from
``seed`` and the epoch number alone, so an interrupted run resumes exactly where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnkit.checkpoint import CheckpointError, load_state, read_sidecar, read_tensors, save_tensors, sidecar_path
from unlearnkit.data import Augment, Dataset, DeviceImages, available_datasets, dataset_info
from unlearnkit.inference import accuracy
from unlearnkit.models import build_from_spec
from unlearnkit.runtime import autocast, cpu_generator, to_device

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, float], None]  # (epoch done, total epochs, epoch loss)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the model given is left untouched."""


@dataclass(frozen=True)
class TrainRecipe:
    """How the original model and the oracle are trained (identical for both, by construction).

    ``crop_pad``/``flip`` of None take the dataset's registered augmentation; a dataset that is
    not registered (an in-memory ``Dataset`` of one's own arrays) gets none (crop_pad 0, no flip)
    unless the recipe sets them, since nothing says which augmentation suits it. The learning rate
    rises linearly from ``lr * start_lr_frac`` to ``lr`` over ``warmup_frac`` of the steps, then
    falls linearly to ``lr * final_lr_frac``. ``decay_norm_and_bias=False`` exempts normalisation
    weights and biases (1-D parameters) from weight decay.
    """

    epochs: int = 30
    batch_size: int = 512
    lr: float = 0.2
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup_frac: float = 0.15
    start_lr_frac: float = 0.1
    final_lr_frac: float = 0.0
    crop_pad: int | None = None
    flip: bool | None = None
    decay_norm_and_bias: bool = True
    bf16: bool = True
    compile: bool = False

    def augment_for(self, dataset_name: str) -> Augment:
        """The training augmentation: the recipe's settings, else the registered dataset's, else none."""
        registered = dataset_name in available_datasets()
        info = dataset_info(dataset_name) if registered else None
        return Augment(
            crop_pad=self.crop_pad if self.crop_pad is not None else (info.crop_pad if info else 0),
            flip=self.flip if self.flip is not None else (info.flip if info else False),
        )


# Recipes that train each registered dataset to a sensible accuracy quickly; any field can be
# overridden (e.g. ``replace(default_recipe("cifar10"), epochs=60)``).
DEFAULT_RECIPES: dict[str, TrainRecipe] = {
    "digits": TrainRecipe(epochs=20, batch_size=128, lr=0.1, label_smoothing=0.0),
    "fashion-mnist": TrainRecipe(epochs=10, batch_size=512, lr=0.2),
    # Measured on an H100 (benchmarks/RESULTS.md): ~90% test accuracy on the JPEG CIFAR-10 in ~25-38 s.
    "cifar10": TrainRecipe(epochs=30, batch_size=1024, lr=0.8, label_smoothing=0.2),
    "cifar100": TrainRecipe(epochs=40, batch_size=512, lr=0.2),
}


def default_recipe(dataset_name: str) -> TrainRecipe:
    """The training recipe the toolkit uses for ``dataset_name`` (a plain :class:`TrainRecipe` for a dataset without one)."""
    return DEFAULT_RECIPES.get(dataset_name, TrainRecipe())


@dataclass
class TrainStats:
    epochs: int
    steps: int
    time_s: float
    images_per_s: float
    final_loss: float
    resumed_from_epoch: int = 0
    history: list[float] = field(default_factory=list)


def lr_at(step: int, total_steps: int, recipe: TrainRecipe) -> float:
    """The one-cycle multiplier of the base learning rate at ``step``."""
    warm = max(1, round(recipe.warmup_frac * total_steps))
    if step < warm:
        return recipe.start_lr_frac + (1 - recipe.start_lr_frac) * step / warm
    frac = (step - warm) / max(1, total_steps - warm)
    return 1 - (1 - recipe.final_lr_frac) * frac


def make_optimizer(model: nn.Module, recipe: TrainRecipe) -> torch.optim.SGD:
    """The recipe's SGD (momentum, Nesterov, weight decay) over ``model``'s trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.decay_norm_and_bias:
        groups = [{"params": params}]
    else:
        groups = [
            {"params": [p for p in params if p.ndim > 1]},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
    return torch.optim.SGD(
        groups,
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov and recipe.momentum > 0,
        weight_decay=recipe.weight_decay,
        fused=params[0].is_cuda,
    )


def train(
    model: nn.Module,
    images: DeviceImages,
    train_idx: np.ndarray,
    recipe: TrainRecipe,
    *,
    seed: int,
    augment: Augment,
    progress: ProgressFn | None = None,
    resume_path: Path | None = None,
    checkpoint_every_s: float = 60.0,
) -> TrainStats:
    """Train ``model`` (already on ``images.device``) in place on ``images[train_idx]``.

    With ``resume_path``, the state is saved there at most every ``checkpoint_every_s`` seconds
    and a run that finds a matching partial checkpoint continues from it.

    Raises:
        NonFiniteLossError: the loss became NaN/inf (checked once per epoch, no per-step sync).
    """
    device = images.device
    steps_per_epoch = math.ceil(len(train_idx) / recipe.batch_size)
    total_steps = recipe.epochs * steps_per_epoch
    optimizer = make_optimizer(model, recipe)
    start_epoch, earlier_s = _resume(resume_path, model, optimizer) if resume_path else (0, 0.0)
    step = start_epoch * steps_per_epoch
    forward = torch.compile(model) if recipe.compile else model
    model.train()
    history: list[float] = []
    last_save = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for epoch in range(start_epoch, recipe.epochs):
        loss_sum = torch.zeros((), device=device)
        generator = cpu_generator(seed * 1_000_003 + epoch)
        for x, y, _ in images.batches(train_idx, recipe.batch_size, shuffle=True, augment=augment, generator=generator):
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, recipe.bf16):
                loss = F.cross_entropy(forward(x), y, label_smoothing=recipe.label_smoothing)
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr * lr_at(step, total_steps, recipe)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += loss.detach()
        epoch_loss = loss_sum.item() / steps_per_epoch
        if not math.isfinite(epoch_loss):
            raise NonFiniteLossError(
                f"training loss became {epoch_loss} in epoch {epoch + 1}; lower the learning rate (now {recipe.lr})"
            )
        history.append(epoch_loss)
        if progress:
            progress(epoch + 1, recipe.epochs, epoch_loss)
        if resume_path and epoch + 1 < recipe.epochs and time.perf_counter() - last_save > checkpoint_every_s:
            _save_partial(resume_path, model, optimizer, epoch + 1, earlier_s + time.perf_counter() - start)
            last_save = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    done_epochs = recipe.epochs - start_epoch
    return TrainStats(
        epochs=recipe.epochs,
        steps=total_steps,
        time_s=earlier_s + elapsed,  # a resumed run counts the epochs trained before the interruption too
        images_per_s=done_epochs * len(train_idx) / max(elapsed, 1e-9),
        final_loss=history[-1] if history else float("nan"),
        resumed_from_epoch=start_epoch,
        history=history,
    )


def _save_partial(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, time_s: float) -> None:
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    for i, group in enumerate(optimizer.param_groups):
        for j, param in enumerate(group["params"]):
            buf = optimizer.state.get(param, {}).get("momentum_buffer")
            if buf is not None:
                tensors[f"momentum/{i}/{j}"] = buf
    save_tensors(path, tensors, {"epoch": epoch, "time_s": time_s})


def _resume(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, float]:
    """The epoch a matching partial checkpoint at ``path`` reached (0 if none) and the seconds
    trained before it; its weights and momentum are loaded into ``model`` and ``optimizer``."""
    if not (path.exists() and sidecar_path(path).exists()):
        return 0, 0.0
    try:
        meta = read_sidecar(path)
        epoch, earlier_s = int(meta["epoch"]), float(meta.get("time_s", 0.0))
        state = read_tensors(path, device=str(next(model.parameters()).device), same_save=True)
    except (CheckpointError, KeyError, TypeError, ValueError) as err:  # a damaged partial save costs its epochs, not the run
        log.warning("starting %s over: its partial checkpoint is unreadable (%s)", path.name, err)
        return 0, 0.0
    model.load_state_dict({k[len("model/") :]: v for k, v in state.items() if k.startswith("model/")})
    for i, group in enumerate(optimizer.param_groups):
        for j, param in enumerate(group["params"]):
            key = f"momentum/{i}/{j}"
            if key in state:
                optimizer.state[param]["momentum_buffer"] = state[key]
    log.info("resumed training from epoch %d (%s)", epoch, path)
    return epoch, earlier_s


# ---------------------------------------------------------------------------------------------
# The cache of trained originals and oracles.


@dataclass(frozen=True)
class TrainJob:
    """Everything that determines a trained model; its hash is the cache key."""

    dataset: Dataset
    model_name: str
    train_idx: np.ndarray
    labels: np.ndarray
    label_space: str
    recipe: TrainRecipe
    seed: int

    def key(self) -> str:
        """The cache key: the training split's content (not the test split: a new --test-size reuses
        the model), labels, subset, model, recipe, the augmentation it resolves to, and seed."""
        parts = {
            "data": self.dataset.train.fingerprint(),
            "augment": asdict(self.recipe.augment_for(self.dataset.name)),  # the name decides it when the recipe does not
            "labels": hashlib.sha256(np.ascontiguousarray(self.labels).tobytes()).hexdigest()[:16],
            "label_space": self.label_space,
            "subset": hashlib.sha256(np.sort(self.train_idx).astype(np.int64).tobytes()).hexdigest()[:16],
            "model": self.model_name,
            "recipe": asdict(replace(self.recipe, compile=False)),
            "seed": self.seed,
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]

    def model_spec(self) -> dict[str, Any]:
        mean, std = self.dataset.channel_stats()
        return {
            "name": self.model_name,
            "num_classes": int(self.labels.max()) + 1,
            "image_shape": list(self.dataset.image_shape),
            "mean": list(mean),
            "std": list(std),
        }


def _initial_model(spec: dict[str, Any], seed: int) -> nn.Module:
    torch.manual_seed(seed)  # the initialisation is part of what the seed determines
    return build_from_spec(spec)


def train_cached(
    job: TrainJob,
    images: DeviceImages,
    *,
    cache_dir: Path,
    test_images: DeviceImages | None = None,
    test_idx: np.ndarray | None = None,
    progress: ProgressFn | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``job``'s model or load it from ``cache_dir/models/<key>``; return it and its sidecar.

    The sidecar records the config, data fingerprint, training time and test accuracy, so a
    cached model reports the same figures as a fresh one.
    """
    spec = job.model_spec()
    model = _initial_model(spec, job.seed)
    key = job.key()
    path = cache_dir / "models" / f"{key}.safetensors"
    if path.exists() and sidecar_path(path).exists():
        try:
            meta = load_state(model, path, same_save=True)
        except CheckpointError as err:  # a damaged cache entry is retrained and replaced, not fatal
            log.warning("retraining %s: %s", path.name, err)
            model = _initial_model(spec, job.seed)  # load_state may have filled part of it
        else:
            log.info("loaded cached model %s", path)
            return to_device(model, images.device), meta | {"cached": True}
    model = to_device(model, images.device)
    stats = train(
        model,
        images,
        job.train_idx,
        job.recipe,
        seed=job.seed,
        augment=job.recipe.augment_for(job.dataset.name),
        progress=progress,
        resume_path=cache_dir / "models" / f"{key}.partial.safetensors",
    )
    meta = {
        "key": key,
        "model_spec": spec,
        "dataset": job.dataset.name,
        "data_fingerprint": job.dataset.fingerprint(),
        "label_space": job.label_space,
        "train_size": int(len(job.train_idx)),
        "recipe": asdict(job.recipe),
        "seed": job.seed,
        "time_s": stats.time_s,
        "images_per_s": stats.images_per_s,
        "final_loss": stats.final_loss,
        "resumed_from_epoch": stats.resumed_from_epoch,
    }
    if test_images is not None and test_idx is not None:
        meta["test_acc"] = accuracy(model, test_images, test_idx)
    save_tensors(path, dict(model.state_dict()), meta)
    for partial in (path.with_name(f"{key}.partial.safetensors"), path.with_name(f"{key}.partial.json")):
        partial.unlink(missing_ok=True)
    return model, meta | {"cached": False}
