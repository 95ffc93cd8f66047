"""The Refine operation of feature aggregation: an SE block, then a residual bottleneck.

Following the authors' code: squeeze-and-excitation with reduction 8, then a
pre-activation bottleneck (BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1) whose shortcut
is a 1x1 convolution, reducing ``in_channels`` to ``out_channels``. The
bottleneck width (``out_channels // 4``, as in ResNet bottlenecks) is our choice;
the paper does not state it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc(x.mean(dim=(2, 3)))
        return x * scale[:, :, None, None]


def _pre_act(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
                         nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False))


class Refine(nn.Module):
    """``(B, in, H, W) -> (B, out, H, W)``: SE, then a pre-activation residual bottleneck."""

    def __init__(self, in_channels: int, out_channels: int, se_reduction: int = 8) -> None:
        super().__init__()
        mid = max(out_channels // 4, 8)
        self.se = SqueezeExcite(in_channels, se_reduction)
        self.body = nn.Sequential(_pre_act(in_channels, mid, 1), _pre_act(mid, mid, 3),
                                  _pre_act(mid, out_channels, 1))
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.se(x)
        return self.body(x) + self.shortcut(x)

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(x).mean(dim=(2, 3))`` computed cheaply, exactly (training and eval).

        The body's last 1x1 convolution and the shortcut are bias-free linear maps,
        so they commute with global average pooling: they run on pooled vectors
        instead of at every position. The SE scale is per channel, so the pooled
        shortcut input is ``scale * mean(x)``.
        """
        mean = x.mean(dim=(2, 3))
        scale = self.se.fc(mean)
        y = self.body[1](self.body[0](x * scale[:, :, None, None]))
        bn, relu, conv = self.body[2]
        z = relu(bn(y)).mean(dim=(2, 3))
        return F.linear(z, conv.weight.flatten(1)) + F.linear(scale * mean, self.shortcut.weight.flatten(1))

    def forward_pooled_pair(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``forward_pooled(torch.cat([a, b], dim=1))`` without building the concatenation.

        In eval mode the SE scale and the BatchNorm after it are one per-sample
        affine map per channel, ``x * (scale * gamma / sigma) + (beta - mu * gamma / sigma)``;
        applied to each half with the first convolution's weight split in two, the
        ``(B, 2C, H, W)`` concatenation and its scaled copy are never materialised.
        Exact up to float rounding. In training (batch statistics) it falls back to
        :meth:`forward_pooled` on the concatenation.
        """
        bn0, _, conv0 = self.body[0]
        if self.training or bn0.running_var is None:
            return self.forward_pooled(torch.cat([a, b], dim=1))
        ca = a.shape[1]
        mean = torch.cat([a.mean(dim=(2, 3)), b.mean(dim=(2, 3))], dim=1)
        scale = self.se.fc(mean)
        inv = bn0.weight / torch.sqrt(bn0.running_var + bn0.eps)
        mult = scale * inv  # (B, 2C)
        shift = bn0.bias - bn0.running_mean * inv  # (2C,)
        w = conv0.weight
        y = F.conv2d(torch.relu(torch.addcmul(shift[:ca, None, None], a, mult[:, :ca, None, None])), w[:, :ca])
        y = y + F.conv2d(torch.relu(torch.addcmul(shift[ca:, None, None], b, mult[:, ca:, None, None])), w[:, ca:])
        y = self.body[1](y)
        bn, relu, conv = self.body[2]
        z = relu(bn(y)).mean(dim=(2, 3))
        return F.linear(z, conv.weight.flatten(1)) + F.linear(scale * mean, self.shortcut.weight.flatten(1))
