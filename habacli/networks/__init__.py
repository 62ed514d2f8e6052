"""The DD network family behind one registry: ConvNet variants, ResNet18, VGG11, AlexNet.

``get_network(name, channels=, num_classes=, height=, width=)`` builds a freshly initialised network
(PyTorch default init). Initialisation draws from torch's global RNG, or, when ``generator`` is given,
from a private RNG seeded from that generator (the global RNG is left untouched).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

from habacli._registry import Registry
from habacli.networks.convnet import ConvNet
from habacli.networks.layers import DDNet

__all__ = ["NETWORKS", "DDNet", "get_network", "list_networks", "default_network"]

NetworkFactory = Callable[..., nn.Module]
NETWORKS: Registry[NetworkFactory] = Registry("network")

_CONVNETS: dict[str, dict[str, Any]] = {
    "convnet": {},
    "convnet_bn": {"norm": "batchnorm"},
    "convnet_ln": {"norm": "layernorm"},
    "convnet_nn": {"norm": "none"},
    "convnet_gn": {"norm": "groupnorm"},
    "convnet_in": {"norm": "instancenorm"},
    "convnet_as": {"act": "sigmoid"},
    "convnet_al": {"act": "leakyrelu"},
    "convnet_mp": {"pooling": "maxpooling"},
    "convnet_np": {"pooling": "none"},
    **{f"convnetd{d}": {"depth": d} for d in range(1, 6)},
    **{f"convnetw{w}": {"net_width": w} for w in (32, 64, 128, 256)},
}
for _name, _kw in _CONVNETS.items():
    NETWORKS.add(_name, partial(ConvNet, **_kw))


def _register_others() -> None:
    """Register the evaluation networks (ResNet18, VGG11, AlexNet families)."""
    from habacli.networks import alexnet, resnet, vgg  # lazy: these modules import NETWORKS from this package

    for name, factory in (
        ("resnet18", partial(resnet.ResNet18, norm="instancenorm")),
        ("resnet18_bn", partial(resnet.ResNet18, norm="batchnorm")),
        ("resnet18_ap", partial(resnet.ResNet18AP, norm="instancenorm")),
        ("resnet18_bn_ap", partial(resnet.ResNet18AP, norm="batchnorm")),
        ("vgg11", partial(vgg.VGG11, norm="instancenorm")),
        ("vgg11_bn", partial(vgg.VGG11, norm="batchnorm")),
        ("alexnet", alexnet.AlexNet),
    ):
        NETWORKS.add(name, factory)


_register_others()


def list_networks(pattern: str | None = None) -> list[str]:
    """Registered network names, optionally filtered by an fnmatch pattern."""
    return NETWORKS.names(pattern)


def get_network(
    name: str,
    *,
    channels: int,
    num_classes: int,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Build network ``name`` for ``[channels, height, width]`` inputs and ``num_classes`` outputs.

    Raises :class:`~habacli.errors.UnknownNameError` for unknown names and
    :class:`~habacli.errors.ConfigError` for impossible shapes.
    """
    factory = NETWORKS.get(name)
    if generator is None:
        return factory(channels, num_classes, height, width)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory(channels, num_classes, height, width)


def default_network(spec_or_size: Any) -> str:
    """The reference backbone for an image size: ``convnet`` up to 32 px, ``convnetd4`` up to 64 px,
    ``convnetd5`` above. Accepts a spec (``.height``/``.width``), an int, or ``(height, width)``."""
    if hasattr(spec_or_size, "height"):
        size = max(int(spec_or_size.height), int(spec_or_size.width))
    elif isinstance(spec_or_size, (tuple, list)):
        size = max(int(s) for s in spec_or_size)
    else:
        size = int(spec_or_size)
    if size <= 32:
        return "convnet"
    if size <= 64:
        return "convnetd4"
    return "convnetd5"
