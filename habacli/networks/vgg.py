"""VGG11 of the DD evaluation pools: cfg [64,M,128,M,256,256,M,512,512,M,512,512,M], each conv3x3
followed by norm + ReLU, M = 2x2 max-pool, then Linear(512).

As in the reference, the first conv uses padding 3 on 1-channel input (28 px -> 32 px). Default norm is
instancenorm; ``norm="batchnorm"`` is VGG11BN. Where the last map is larger than 1x1 (inputs above
63 px, where the reference's Linear(512) breaks) it is average-pooled to 1x1 (HaBa's
``AdaptiveAvgPool2d(1)``); max-pools that would empty a 1-px map are dropped (inputs below 32 px).
"""

from __future__ import annotations

import torch
from torch import nn

from habacli.networks.layers import DDNet, can_pool, check_input, conv2d, conv_out, norm_layer

_CFG_VGG11: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG11(DDNet):
    """VGG11 (``vgg11``, ``vgg11_bn``); ``embed`` is the 512-d feature before the classifier."""

    def __init__(self, channels: int, num_classes: int, height: int, width: int, *, norm: str = "instancenorm"):
        super().__init__()
        check_input("vgg11", channels, num_classes, height, width)
        layers: list[nn.Module] = []
        c, h, w = channels, height, width
        for i, item in enumerate(_CFG_VGG11):
            if item == "M":
                if can_pool(h, w):
                    layers.append(nn.MaxPool2d(2, 2))
                    h, w = h // 2, w // 2
                continue
            pad = 3 if channels == 1 and i == 0 else 1
            layers.append(conv2d(c, int(item), 3, pad))
            c, h, w = int(item), conv_out(h, 3, pad), conv_out(w, 3, pad)
            layers += [norm_layer(norm, c, h, w), nn.ReLU(inplace=True)]
        if h > 1 or w > 1:
            layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.feature_dim = c
        self.classifier = nn.Linear(c, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 512]`` features."""
        return self.features(x).flatten(1)
