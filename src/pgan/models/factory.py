"""Models by name, the timm way: ``create_model`` and ``list_backbones``.

Example::

    import pgan
    pgan.list_backbones("resnet*")                    # ['resnet101', 'resnet18', 'resnet34', 'resnet50']
    model = pgan.create_model("pgan", backbone="resnet50", num_classes=576, pretrained=True)
    fmap = model.forward_features(images)             # (B, 2048, 16, 16) at 256 px, last stride 1
    out = model.forward_head(fmap, masks)             # ModelOutput; masks (B, D, 16, 16)

    # Any module with an ``out_channels`` attribute feeds the PGAN head:
    trunk = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, stride=4, padding=1), torch.nn.ReLU())
    trunk.out_channels = 64
    model = pgan.create_model("pgan", backbone=trunk, num_classes=10)
"""

from __future__ import annotations

import fnmatch

from torch import nn

from pgan.errors import PganError
from pgan.models.backbones import BACKBONES, build_backbone
from pgan.models.network import ReidNet

__all__ = ["create_model", "list_backbones"]


def list_backbones(pattern: str | None = None) -> list[str]:
    """Registered backbone names, sorted; ``pattern`` is a shell-style filter such as ``"resnet*"``."""
    names = sorted(BACKBONES)
    return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def create_model(variant: str = "pgan", backbone: str | nn.Module = "resnet50", num_classes: int = 576,
                 pretrained: bool = False, last_stride: int = 1, frozen_stages: int = 0,
                 **head_kwargs) -> ReidNet:
    """A re-ID network: ``variant`` (``baseline``, ``pgan``, ``nopam``, ``grid``) on ``backbone``.

    ``backbone`` is a registered name (see :func:`list_backbones`; ``pretrained``, ``last_stride`` and
    ``frozen_stages`` apply to it) or a module mapping ``(B, 3, H, W)`` to a feature map, with an
    ``out_channels`` attribute. ``head_kwargs`` go to :class:`pgan.models.network.ReidNet`
    (``reduced_dim``, ``num_parts``, ``temperature``, ``retrieval``). ``pretrained`` defaults to False:
    nothing is downloaded unless asked for.
    """
    if isinstance(backbone, str):
        trunk = build_backbone(backbone, pretrained=pretrained, last_stride=last_stride,
                               frozen_stages=frozen_stages)
    elif isinstance(backbone, nn.Module):
        if pretrained or frozen_stages:
            raise PganError("pretrained and frozen_stages apply to registered backbones; "
                            "prepare a backbone module yourself before passing it")
        trunk = backbone
    else:
        raise PganError(f"backbone must be a name ({', '.join(list_backbones())}) or an nn.Module, "
                        f"got {type(backbone).__name__}")
    return ReidNet(trunk, num_classes, variant=variant, **head_kwargs)
