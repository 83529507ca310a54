"""A shared encoder with two linear heads (content class and colour): MinNorm-OG's erasure model.

Spec 3.4b: S1's CIFAR model is a ResNet-18 (CIFAR stem, ``fc = Identity``) with a 10-way class
head and a 3-way colour head on the 512-d features [V-code]. ``model(x)`` returns the tuple
``(class_logits, colour_logits)``, which MinNorm-OG's ``output_heads`` splits into two heads
(stacking both heads' max-logit gradients, spec 3.2).

Not in the model registry, deliberately [I]: every registered model returns one logit tensor,
and the trainer, the metrics and ``unlearn`` rely on that. :func:`build_two_head` instead takes
any registered architecture's encoder (``"resnet18"`` for the benchmark, ``"mlp"``/``"cnn"``
for tests) and puts the two heads on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from unlearnkit.models.registry import ModelError, build_model


class TwoHeadClassifier(nn.Module):
    """``encoder`` followed by ``head`` (content classes) and ``colour_head``; forward gives both logits.

    ``features(x)`` is the shared representation; ``head`` is the class head, so the toolkit's
    ``features``/``head`` protocol still names the content classifier.
    """

    def __init__(self, encoder: nn.Module, head: nn.Linear, colour_head: nn.Linear):
        super().__init__()
        if head.in_features != colour_head.in_features:
            raise ModelError(
                f"both heads must read the same features; got {head.in_features} and {colour_head.in_features} inputs"
            )
        self.encoder = encoder
        self.head = head
        self.colour_head = colour_head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return self.head(z), self.colour_head(z)


def build_two_head(
    name: str,
    num_classes: int,
    num_colours: int,
    image_shape: Sequence[int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> TwoHeadClassifier:
    """The encoder of registered model ``name`` with a ``num_classes`` head and a ``num_colours`` head.

    Spec 3.4b uses ``build_two_head("resnet18", 10, 3, (3, 32, 32))`` with mean = std = 0.5 (the
    registry's default normalisation) [V-code]. The heads are fresh ``nn.Linear`` layers.
    """
    if num_classes < 1 or num_colours < 1:
        raise ModelError(f"num_classes and num_colours must be >= 1; got {num_classes} and {num_colours}")
    single = build_model(name, num_classes, image_shape, mean, std)
    features = single.head.in_features
    return TwoHeadClassifier(single.encoder, single.head, nn.Linear(features, num_colours))


__all__ = ["TwoHeadClassifier", "build_two_head"]
