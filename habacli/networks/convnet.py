"""ConvNet: the workhorse of dataset distillation (DC, DSA, DM, MTT, HaBa).

``depth`` blocks of Conv3x3(width, bias) -> norm -> activation -> 2x2 pool, then one linear layer on the
flattened map. As in the reference, a 1-channel input gets padding 3 on the first conv, so a 28x28
image is treated as 32x32 and every later shape matches CIFAR's.
"""

from __future__ import annotations

import torch
from torch import nn

from habacli.errors import ConfigError
from habacli.networks.layers import (
    POOLINGS,
    AvgPool2x2,
    DDNet,
    activation,
    can_pool,
    check_input,
    conv2d,
    conv_out,
    norm_layer,
)


class ConvNet(DDNet):
    """ConvNet-``depth`` of ``width`` channels; ``embed`` is the flattened last feature map
    (2048-d for ConvNet-3 at 32 px, ConvNetD4 at 64 px, ConvNetD5 at 128 px)."""

    def __init__(
        self,
        channels: int,
        num_classes: int,
        height: int,
        width: int,
        *,
        net_width: int = 128,
        depth: int = 3,
        norm: str = "instancenorm",
        act: str = "relu",
        pooling: str = "avgpooling",
    ):
        super().__init__()
        check_input("convnet", channels, num_classes, height, width)
        if depth < 1 or net_width < 1:
            raise ConfigError(f"convnet: depth and width must be >= 1 (got depth={depth}, width={net_width})")
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r} (choose from: {', '.join(POOLINGS)})")
        layers: list[nn.Module] = []
        c, h, w = channels, height, width
        for d in range(depth):
            pad = 3 if channels == 1 and d == 0 else 1
            layers.append(conv2d(c, net_width, 3, pad))
            c, h, w = net_width, conv_out(h, 3, pad), conv_out(w, 3, pad)
            if norm != "none":
                layers.append(norm_layer(norm, c, h, w))
            layers.append(activation(act))
            if pooling != "none" and can_pool(h, w):
                layers.append(AvgPool2x2() if pooling == "avgpooling" else nn.MaxPool2d(2, 2))
                h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.feature_shape = (c, h, w)
        self.feature_dim = c * h * w
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened features before the classifier, ``[N, width * h * w]``."""
        return self.features(x).flatten(1)
