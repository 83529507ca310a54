"""The MinNorm-OG code base's (S1) unlearners on in-memory tensors, shared by its three benchmarks.

Spec 3.5 defines each baseline as S1 runs it: GD = NGD with sigma 0, Retrain = re-initialise then
GD, GA and NGP through the forget-paced loop, L1-sparse with the "minnorm" schedule. A
:class:`Trial` holds one trial's data and budget; :data:`UNLEARNERS` maps each method to a function
``(original, trial, hp) -> unlearned model`` (the original is never modified).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from unlearnkit.methods.base import DataLoss, Granted, TensorSplit
from unlearnkit.methods.common import ForgetPacedParams, forget_paced_descent
from unlearnkit.methods.runner import unlearn_tensors
from unlearnkit.models import reinitialize
from unlearnkit.runtime import cpu_generator, seed_everything
from unlearnkit.train import NonFiniteLossError, TrainRecipe


@dataclass(frozen=True)
class Trial:
    """One trial's unlearning inputs: the granted retain data, the forget data, the loss and budget.

    ``logit_clamp``: None keeps each method's default (the image experiments' +-30); the sine
    regression passes 0 (no clamp on a scalar output).
    """

    retain: tuple[torch.Tensor, torch.Tensor]
    forget: tuple[torch.Tensor, torch.Tensor]
    loss: DataLoss
    epochs: int
    batch_size: int
    seed: int
    logit_clamp: float | None = None


Unlearner = Callable[[nn.Module, Trial, dict[str, Any]], nn.Module]


def _registered(method: str, **fixed: Any) -> Unlearner:
    """A toolkit method through ``unlearn_tensors`` with the trial's loss, T and batch size."""

    def run(original: nn.Module, trial: Trial, hp: dict[str, Any]) -> nn.Module:
        options = {"epochs": trial.epochs, "batch_size": trial.batch_size, **fixed, **hp}
        if method == "l1-sparse":  # its L1 coefficient is named alpha; it has no logit clamp
            options["alpha"] = options.pop("lambda_reg")
        elif trial.logit_clamp is not None:
            options["logit_clamp"] = trial.logit_clamp
        model, _ = unlearn_tensors(original, trial.retain, trial.forget, method, loss=trial.loss, seed=trial.seed, **options)
        return model

    return run


def _retrain(original: nn.Module, trial: Trial, hp: dict[str, Any]) -> nn.Module:
    """S1's Retrain: re-initialise from the trial's seed, then AdamW on J_r for T epochs (spec 3.5)."""
    return _registered("ngd", sigma=0.0)(reinitialize(copy.deepcopy(original), trial.seed), trial, hp)


def _paired(retain_weight: float, forget_param: str | None) -> Unlearner:
    """S1's GA (``forget_param`` None: minimise -J_f) or NGP (minimise J_r - hp[forget_param] J_f), AdamW."""

    def run(original: nn.Module, trial: Trial, hp: dict[str, Any]) -> nn.Module:
        model = copy.deepcopy(original)
        granted = Granted(
            method="ga" if forget_param is None else "ngp",
            original=original,
            num_classes=0,
            device=trial.retain[0].device,
            seed=trial.seed,
            recipe=TrainRecipe(),
            generator=cpu_generator(trial.seed),
            forget_split=TensorSplit(*trial.forget),
            retain_split=TensorSplit(*trial.retain),
            loss=trial.loss,
        )
        clamp = {} if trial.logit_clamp is None else {"logit_clamp": trial.logit_clamp}
        params = ForgetPacedParams(epochs=trial.epochs, lr=hp["lr"], batch_size=trial.batch_size, **clamp)
        weight = 1.0 if forget_param is None else hp[forget_param]
        seed_everything(trial.seed)
        forget_paced_descent(granted.method, model, granted, params, retain_weight=retain_weight, forget_weight=weight)
        return model.eval()

    return run


UNLEARNERS: dict[str, Unlearner] = {
    "retrain": _retrain,
    "minnorm-og": _registered("minnorm-og"),
    "gd": _registered("ngd", sigma=0.0),
    "ga": _paired(0.0, None),
    "ngp": _paired(1.0, "lambda_ga"),
    "ngd": _registered("ngd"),
    "ridge": _registered("ridge"),
    "l1-sparse": _registered("l1-sparse", schedule="minnorm"),
}


def unlearn_trial(method: str, original: nn.Module, trial: Trial, hp: dict[str, Any], benchmark: str) -> nn.Module | None:
    """The unlearned model of ``method`` with hyperparameters ``hp``; None when its loss diverged."""
    if method not in UNLEARNERS:
        raise ValueError(f"unknown {benchmark}-benchmark method {method!r}; valid: {', '.join(UNLEARNERS)}")
    try:
        return UNLEARNERS[method](original, trial, hp)
    except NonFiniteLossError:
        return None
