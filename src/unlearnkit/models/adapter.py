"""Let any classifier whose last layer is ``nn.Linear`` speak the toolkit's model protocol.

Methods and metrics only use three things: ``model(x)`` (logits), ``features(model, x)`` (the
penultimate representation) and ``head(model)`` (the final linear layer). Toolkit models have
them natively; :class:`ClassifierAdapter` finds them in a user's module.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from unlearnkit.models.registry import ModelError
from unlearnkit.runtime import eval_mode


class ClassifierAdapter(nn.Module):
    """Wrap ``module`` so that ``features``/``head`` exist.

    Args:
        module: a classifier mapping float images to logits.
        head: dotted name of its final ``nn.Linear`` (e.g. ``"fc"``); by default the last
            ``nn.Linear`` registered in the module.

    ``features(x)`` runs the module once and captures the input of the head with a forward hook.
    It checks that the head's output *is* the module's output, so a model whose last operation
    is not the named linear layer is refused with a clear error instead of giving wrong features.

    The adapter starts in the wrapped module's mode (train or eval), so wrapping changes nothing
    about how the module behaves.
    """

    def __init__(self, module: nn.Module, head: str | None = None):
        super().__init__()
        self.module = module
        # Not self.train(...): that would recurse and reset submodules the user set apart.
        self.training = module.training
        self.head_name = head or _last_linear_name(module)
        found = dict(module.named_modules()).get(self.head_name)
        if not isinstance(found, nn.Linear):
            raise ModelError(
                f"{self.head_name!r} is not an nn.Linear layer of the model; name the final linear layer, "
                f"one of: {', '.join(_linear_names(module)) or '(none)'}"
            )

    @property
    def head(self) -> nn.Linear:
        return dict(self.module.named_modules())[self.head_name]  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        captured: dict[str, torch.Tensor] = {}

        def hook(_layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            captured["features"], captured["logits"] = inputs[0], output

        handle = self.head.register_forward_hook(hook)
        try:
            logits = self.module(x)
        finally:
            handle.remove()
        if "features" not in captured or captured["logits"] is not logits:
            raise ModelError(
                f"the model's output is not the output of its layer {self.head_name!r} (by default the last "
                "nn.Linear registered); the toolkit needs a classifier whose last operation is an nn.Linear. If "
                "it is another layer, name it: unlearnkit.as_classifier(model, head='name'), with name one of "
                f"{', '.join(_linear_names(self.module))}"
            )
        return captured["features"]


def _linear_names(module: nn.Module) -> list[str]:
    return [name for name, layer in module.named_modules() if isinstance(layer, nn.Linear)]


def _last_linear_name(module: nn.Module) -> str:
    names = _linear_names(module)
    if not names:
        raise ModelError("the model has no nn.Linear layer; the toolkit needs a classifier ending in nn.Linear")
    return names[-1]


def as_classifier(module: nn.Module, head: str | None = None) -> nn.Module:
    """Return ``module`` itself if it already has ``features`` and a linear ``head``, else an adapter.

    A user module that happens to have attributes named ``features`` and ``head`` is taken as
    speaking the protocol; :func:`check_protocol` refuses it before any work if
    ``head(features(x))`` is not its output, and ``as_classifier(module, head="name")`` then wraps it.
    """
    if head is None and callable(getattr(module, "features", None)) and isinstance(getattr(module, "head", None), nn.Linear):
        return module
    return ClassifierAdapter(module, head)


def check_protocol(model: nn.Module, sample: torch.Tensor, tolerance: float = 1e-4) -> torch.Tensor:
    """Check on ``sample`` that ``model.head(model.features(x))`` is ``model(x)``; return the logits.

    Runs in eval mode without gradients. A :class:`ModelError` names the fix when the model's
    ``features``/``head`` are not its penultimate representation and final layer (e.g. a VGG whose
    ``features`` are conv maps, or a hidden layer between ``features`` and ``head``).
    """
    fix = (
        "the toolkit reads the model's `features` and `head` as its penultimate representation and final "
        "layer; if they are not, wrap the model: unlearnkit.as_classifier(model, head='<name of its last "
        "nn.Linear>')"
    )
    with torch.no_grad(), eval_mode(model):
        logits = model(sample)
        try:
            composed = model.head(model.features(sample))  # type: ignore[operator]
        except RuntimeError as err:
            raise ModelError(f"model.head(model.features(x)) fails ({str(err).splitlines()[0]}); {fix}") from err
    if isinstance(logits, tuple | list):  # a multi-head model: ``head`` is its first (class) head
        logits = logits[0]
    if composed.shape != logits.shape:
        raise ModelError(f"model.head(model.features(x)) does not have the shape of model(x); {fix}")
    gap = (composed - logits).abs().max().item()
    if not gap <= tolerance * max(1.0, logits.abs().max().item()):
        raise ModelError(f"model.head(model.features(x)) differs from model(x) by up to {gap:.3g}; {fix}")
    return logits


def features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Penultimate representation of ``x`` (input of the final linear layer)."""
    return model.features(x)  # type: ignore[operator]


def head(model: nn.Module) -> nn.Linear:
    """The final linear layer of a toolkit (or adapted) model."""
    return model.head  # type: ignore[return-value]


def reinitialize(model: nn.Module, seed: int) -> nn.Module:
    """Reset every layer that has ``reset_parameters`` in place, from ``seed`` (for retraining)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in model.modules():
            if layer is not model and callable(getattr(layer, "reset_parameters", None)):
                layer.reset_parameters()
    return model
