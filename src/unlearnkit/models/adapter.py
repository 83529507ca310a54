"""Let any classifier whose last layer is ``nn.Linear`` speak the toolkit's model protocol.

Methods and metrics only use three things: ``model(x)`` (logits), ``features(model, x)`` (the
penultimate representation) and ``head(model)`` (the final linear layer). Toolkit models have
them natively; :class:`ClassifierAdapter` finds them in a user's module.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from unlearnkit.models.registry import ModelError


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
            raise ModelError(f"{self.head_name!r} is not an nn.Linear layer of the model; name the final linear layer")

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
                f"the model's output is not the output of its layer {self.head_name!r}; the toolkit needs a "
                "classifier whose last operation is an nn.Linear (pass head='name' to choose it)"
            )
        return captured["features"]


def _last_linear_name(module: nn.Module) -> str:
    names = [name for name, layer in module.named_modules() if isinstance(layer, nn.Linear)]
    if not names:
        raise ModelError("the model has no nn.Linear layer; the toolkit needs a classifier ending in nn.Linear")
    return names[-1]


def as_classifier(module: nn.Module, head: str | None = None) -> nn.Module:
    """Return ``module`` itself if it already has ``features`` and a linear ``head``, else an adapter."""
    if head is None and callable(getattr(module, "features", None)) and isinstance(getattr(module, "head", None), nn.Linear):
        return module
    return ClassifierAdapter(module, head)


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
