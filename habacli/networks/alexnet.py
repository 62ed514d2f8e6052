"""AlexNet, the small DD variant (not torchvision's): no normalisation at all.

conv5x5/128 (padding 2; 4 on 1-channel input) -> ReLU -> max-pool -> conv5x5/192 -> ReLU -> max-pool ->
conv3x3/256 -> ReLU -> conv3x3/192 -> ReLU -> conv3x3/192 -> ReLU -> max-pool -> Linear(192*4*4) at 28/32 px.
Maps larger than 4x4 (inputs above 39 px) are average-pooled to 4x4 (HaBa's ``AdaptiveAvgPool2d(4)``);
max-pools that would empty a 1-px map are dropped; smaller maps give Linear(192*h*w).
"""

from __future__ import annotations

import torch
from torch import nn

from habacli.networks.layers import DDNet, can_pool, check_input, conv2d, conv_out

# (out channels, kernel, padding, pool after)
_LAYERS = ((128, 5, 2, True), (192, 5, 2, True), (256, 3, 1, False), (192, 3, 1, False), (192, 3, 1, True))


class AlexNet(DDNet):
    """AlexNet (``alexnet``); ``embed`` is the flattened last map (3072-d at 32 px)."""

    def __init__(self, channels: int, num_classes: int, height: int, width: int):
        super().__init__()
        check_input("alexnet", channels, num_classes, height, width)
        layers: list[nn.Module] = []
        c, h, w = channels, height, width
        for i, (c_out, k, pad, pool) in enumerate(_LAYERS):
            if i == 0 and channels == 1:
                pad = 4
            layers += [conv2d(c, c_out, k, pad), nn.ReLU(inplace=True)]
            c, h, w = c_out, conv_out(h, k, pad), conv_out(w, k, pad)
            if pool and can_pool(h, w):
                layers.append(nn.MaxPool2d(2, 2))
                h, w = h // 2, w // 2
        if h > 4 or w > 4:
            layers.append(nn.AdaptiveAvgPool2d((min(h, 4), min(w, 4))))
            h, w = min(h, 4), min(w, 4)
        self.features = nn.Sequential(*layers)
        self.feature_dim = c * h * w
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 192 * h * w]`` flattened features."""
        return self.features(x).flatten(1)
