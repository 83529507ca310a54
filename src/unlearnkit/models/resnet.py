"""ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool), as in the unlearning literature."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnkit.models.layers import Classifier, Normalize
from unlearnkit.models.registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


def _stage(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1))


@register_model("resnet18", "CIFAR ResNet-18 (3x3 stem, no max-pool, 11.2M parameters); features are 512-d")
def build_resnet18(num_classes: int, image_shape: tuple[int, int, int], mean, std) -> Classifier:
    encoder = nn.Sequential(
        Normalize(mean, std),
        nn.Conv2d(image_shape[0], 64, 3, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        _stage(64, 64, 1),
        _stage(64, 128, 2),
        _stage(128, 256, 2),
        _stage(256, 512, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return Classifier(encoder, nn.Linear(512, num_classes))
