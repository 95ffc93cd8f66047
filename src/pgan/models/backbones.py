"""Backbones by name, with the re-ID "last stride 1" trick and offline-aware ImageNet weights.

Every backbone maps ``(B, 3, H, W)`` to a feature map ``(B, C, H/s, W/s)`` and
exposes ``out_channels``, ``stride`` and ``stages`` (the modules in order, so the
first ``frozen_stages`` can be frozen on a CPU budget).

Weights: ``pretrained=True`` loads torchvision's ImageNet weights through its
normal API, from the torch hub cache or a download. ``make install`` puts
MobileNetV2's file into the cache (``tools/install_weights.py``), so the CPU
recipes work offline; when neither works the error says so and names the switch
(``pretrained=False``) that trains from random initialisation instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

from pgan.errors import PganError, unknown_name

__all__ = ["BACKBONES", "Backbone", "build_backbone", "frozen_imagenet_backbone"]

log = logging.getLogger(__name__)


class Backbone(nn.Module):
    """A sequence of stages; ``forward`` returns the last feature map."""

    def __init__(self, stages: list[nn.Module], out_channels: int, stride: int, name: str) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.out_channels = out_channels
        self.stride = stride
        self.name = name
        self.frozen_stages = 0

    def freeze(self, n: int) -> None:
        """Freeze the first ``n`` stages: no gradient, BatchNorm statistics fixed."""
        if not 0 <= n <= len(self.stages):
            raise PganError(f"frozen_stages={n} is outside 0..{len(self.stages)} for backbone {self.name}")
        self.frozen_stages = n
        for stage in self.stages[:n]:
            for p in stage.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        for stage in self.stages[: self.frozen_stages]:
            stage.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.frozen_stages
        if n and self.training:
            with torch.no_grad():
                for stage in self.stages[:n]:
                    x = stage(x)
            x = x.detach()
            for stage in self.stages[n:]:
                x = stage(x)
            return x
        for stage in self.stages:
            x = stage(x)
        return x


def _hub_checkpoint(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def _load_weights(name: str, weights_enum, builder: Callable[..., nn.Module]) -> nn.Module:
    weights = weights_enum.IMAGENET1K_V1
    try:
        return builder(weights=weights)
    except Exception as exc:  # network errors come in many types (URLError, OSError, ...)
        raise PganError(
            f"ImageNet weights for {name} are not in the torch hub cache ({_hub_checkpoint(weights.url)}) "
            f"and could not be downloaded ({type(exc).__name__}); put the file there, or set "
            f"model.pretrained=false to train from random initialisation"
        ) from None


def _resnet(name: str, pretrained: bool, last_stride: int) -> Backbone:
    builder = getattr(torchvision.models, name)
    weights_enum = torchvision.models.get_model_weights(name)
    net = _load_weights(name, weights_enum, builder) if pretrained else builder(weights=None)
    if last_stride == 1:
        block = net.layer4[0]
        if hasattr(block, "conv2") and isinstance(block, torchvision.models.resnet.Bottleneck):
            block.conv2.stride = (1, 1)
        else:
            block.conv1.stride = (1, 1)
        block.downsample[0].stride = (1, 1)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    channels = net.fc.in_features
    return Backbone([stem, net.layer1, net.layer2, net.layer3, net.layer4], channels,
                    16 if last_stride == 1 else 32, name)


def _mobilenet_v2(pretrained: bool, last_stride: int) -> Backbone:
    builder = torchvision.models.mobilenet_v2
    net = (_load_weights("mobilenet_v2", torchvision.models.MobileNet_V2_Weights, builder)
           if pretrained else builder(weights=None))
    f = net.features
    if last_stride == 1:
        for m in f[14].modules():  # the last stride-2 block (14x14 -> 7x7 at 224 px)
            if isinstance(m, nn.Conv2d) and m.stride == (2, 2):
                m.stride = (1, 1)
    # Stages grouped by output stride: /2, /4, /8, /16, /32 (or /16 with last stride 1).
    groups = [(0, 2), (2, 4), (4, 7), (7, 14), (14, 19)]
    stages = [nn.Sequential(*f[a:b]) for a, b in groups]
    return Backbone(stages, 1280, 16 if last_stride == 1 else 32, "mobilenet_v2")


def _googlenet(pretrained: bool, last_stride: int) -> Backbone:
    builder = torchvision.models.googlenet
    if pretrained:
        net = _load_weights("googlenet", torchvision.models.GoogLeNet_Weights, builder)
    else:
        net = builder(weights=None, aux_logits=False, init_weights=True)
    # With last stride 1 the stride-2 pool before inception 5 is dropped (/16 instead of /32).
    last = [net.inception5a, net.inception5b] if last_stride == 1 else [net.maxpool4, net.inception5a,
                                                                       net.inception5b]
    stages = [nn.Sequential(net.conv1, net.maxpool1), nn.Sequential(net.conv2, net.conv3, net.maxpool2),
              nn.Sequential(net.inception3a, net.inception3b, net.maxpool3),
              nn.Sequential(net.inception4a, net.inception4b, net.inception4c, net.inception4d,
                            net.inception4e), nn.Sequential(*last)]
    return Backbone(stages, 1024, 16 if last_stride == 1 else 32, "googlenet")


def _vgg16(pretrained: bool, last_stride: int) -> Backbone:
    builder = torchvision.models.vgg16_bn
    net = _load_weights("vgg16_bn", torchvision.models.VGG16_BN_Weights, builder) if pretrained else builder()
    layers = list(net.features)
    if last_stride == 1:
        layers = layers[:-1]  # drop the last max-pool: /16 instead of /32
    stages, current = [], []
    for layer in layers:  # one stage per resolution, ending at each max-pool
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            stages.append(nn.Sequential(*current))
            current = []
    if current:
        stages.append(nn.Sequential(*current))
    return Backbone(stages, 512, 16 if last_stride == 1 else 32, "vgg16")


BACKBONES: dict[str, Callable[[bool, int], Backbone]] = {
    "resnet18": lambda pretrained, last_stride: _resnet("resnet18", pretrained, last_stride),
    "resnet34": lambda pretrained, last_stride: _resnet("resnet34", pretrained, last_stride),
    "resnet50": lambda pretrained, last_stride: _resnet("resnet50", pretrained, last_stride),
    "resnet101": lambda pretrained, last_stride: _resnet("resnet101", pretrained, last_stride),
    "mobilenet_v2": _mobilenet_v2,
    "googlenet": _googlenet,  # the paper's Fig. 7 backbones
    "vgg16": _vgg16,
}


def build_backbone(name: str, pretrained: bool = True, last_stride: int = 1,
                   frozen_stages: int = 0) -> Backbone:
    """Build a backbone by name, e.g. ``build_backbone("resnet50", pretrained=False)``."""
    if name not in BACKBONES:
        raise unknown_name("backbone", name, list(BACKBONES))
    if last_stride not in (1, 2):
        raise PganError(f"last_stride must be 1 or 2, got {last_stride}")
    bb = BACKBONES[name](pretrained, last_stride)
    bb.freeze(frozen_stages)
    return bb


def frozen_imagenet_backbone(name: str) -> Backbone:
    """The ImageNet backbone ``name`` (last stride 1), frozen and in eval mode: the feature function that
    part discovery (:mod:`pgan.parts.discovery`) fits on."""
    net = build_backbone(name, True, 1, 0).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net
