"""A small convolutional network, fast on CPU: the default model of tests and the demo."""

from __future__ import annotations

import torch.nn as nn

from unlearnkit.models.layers import Classifier, Normalize
from unlearnkit.models.registry import register_model


def _conv_block(c_in: int, c_out: int, pool: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return layers


@register_model("cnn", "3 conv-BN-ReLU blocks (32/64/128), global average pool; features are 128-d")
def build_cnn(num_classes: int, image_shape: tuple[int, int, int], mean, std, width: int = 32) -> Classifier:
    channels, height, _ = image_shape
    # Pool only while the map stays at least 4x4, so 8x8 digits and 32x32 CIFAR both fit.
    pools = [height // (2 ** (i + 1)) >= 4 for i in range(2)]
    encoder = nn.Sequential(
        Normalize(mean, std),
        *_conv_block(channels, width, pools[0]),
        *_conv_block(width, 2 * width, pools[1]),
        *_conv_block(2 * width, 4 * width, False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return Classifier(encoder, nn.Linear(4 * width, num_classes))
