"""ResNet18 as used by the DD evaluation pools (CIFAR-style: 3x3 stem, no max-pool, BasicBlock [2,2,2,2]).

- ``ResNet18``: stride-2 convs downsample; the head averages the last map to 1x1 (HaBa's
  ``AdaptiveAvgPool2d(1)``; identical to the reference's ``avg_pool2d(4)`` at 28 and 32 px) -> Linear(512).
- ``ResNet18AP`` (MTT's ``ResNet18_AP``): every stride-2 conv becomes a stride-1 conv followed by a 2x2
  average pool (shortcut: 1x1 conv -> avg-pool -> norm); the head flattens the last map (512*4*4 at 32 px,
  512*3*3 at 28 px). Maps larger than 4x4 (inputs above 39 px, where the reference's fixed head breaks)
  are average-pooled to 4x4 first.

Default norm is instancenorm (``GroupNorm(C, C, affine=True)``); ``norm="batchnorm"`` gives the BN variants.
Convolutions have no bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from habacli.errors import ConfigError
from habacli.networks.layers import DDNet, can_pool, check_input, conv_out, norm_layer

_WIDTHS = (64, 128, 256, 512)


class BasicBlock(nn.Module):
    """conv3x3 -> norm -> relu -> conv3x3 -> norm, plus shortcut, then relu.

    With ``avgpool_down`` a stride-2 block keeps its convs at stride 1 and average-pools instead (the
    "_AP" variant); ``pool`` False drops that pool where the map is already 1 px.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, *, avgpool_down: bool, pool: bool = True):
        super().__init__()
        self.down_pool = avgpool_down and stride != 1 and pool
        conv_stride = 1 if avgpool_down else stride
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=conv_stride, padding=1, bias=False)
        self.bn1 = norm_layer(norm, c_out, 0, 0)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = norm_layer(norm, c_out, 0, 0)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            parts: list[nn.Module] = [nn.Conv2d(c_in, c_out, 1, stride=conv_stride, bias=False)]
            if self.down_pool:
                parts.append(nn.AvgPool2d(2, 2))
            parts.append(norm_layer(norm, c_out, 0, 0))
            self.shortcut = nn.Sequential(*parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        if self.down_pool:
            out = F.avg_pool2d(out, 2, 2)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _ResNet18Base(DDNet):
    avgpool_down = False

    def __init__(self, channels: int, num_classes: int, height: int, width: int, *, norm: str = "instancenorm"):
        super().__init__()
        check_input(type(self).__name__.lower(), channels, num_classes, height, width)
        if norm not in ("instancenorm", "batchnorm"):
            raise ConfigError(f"ResNet18 supports norm instancenorm or batchnorm, got {norm!r}")
        self.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = norm_layer(norm, 64, 0, 0)
        blocks: list[nn.Module] = []
        c, h, w = 64, height, width
        for i, c_out in enumerate(_WIDTHS):
            for j in range(2):
                stride = 2 if (i > 0 and j == 0) else 1
                pool = can_pool(h, w)
                blocks.append(BasicBlock(c, c_out, stride, norm, avgpool_down=self.avgpool_down, pool=pool))
                if stride == 2:
                    if self.avgpool_down:
                        h, w = (h // 2, w // 2) if pool else (h, w)
                    else:
                        h, w = conv_out(h, 3, 1, 2), conv_out(w, 3, 1, 2)
                c = c_out
        self.layers = nn.Sequential(*blocks)
        self.final_shape = (c, h, w)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(F.relu(self.bn1(self.conv1(x))))


class ResNet18(_ResNet18Base):
    """ResNet18 (``resnet18``, ``resnet18_bn``); ``embed`` is the 512-d globally pooled feature."""

    def __init__(self, channels: int, num_classes: int, height: int, width: int, *, norm: str = "instancenorm"):
        super().__init__(channels, num_classes, height, width, norm=norm)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 512
        self.classifier = nn.Linear(512, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 512]`` features after global average pooling."""
        return self.pool(self.trunk(x)).flatten(1)


class ResNet18AP(_ResNet18Base):
    """ResNet18_AP (``resnet18_ap``, ``resnet18_bn_ap``); ``embed`` is the flattened last map."""

    avgpool_down = True

    def __init__(self, channels: int, num_classes: int, height: int, width: int, *, norm: str = "instancenorm"):
        super().__init__(channels, num_classes, height, width, norm=norm)
        c, h, w = self.final_shape
        self.pool: nn.Module = nn.Identity()
        if h > 4 or w > 4:
            self.pool = nn.AdaptiveAvgPool2d((min(h, 4), min(w, 4)))
            h, w = min(h, 4), min(w, 4)
        self.feature_dim = c * h * w
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 512 * h * w]`` flattened features (8192-d at 32 px)."""
        return self.pool(self.trunk(x)).flatten(1)
