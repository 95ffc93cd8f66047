"""A part box head: the network predicts its own part boxes, CenterNet-style, on the backbone's grid.

Why: at serving time the part boxes of a new photo come from saliency proposals, a CPU step about as
long as the int8 network itself. With ``model.box_head=true`` the network learns, beside the re-ID head
and on the same part boxes, to predict them; ``parts="model"`` then boxes a new photo in the same forward
pass that embeds it (one model call per batch, no proposals).

Data flow::

    F_g (B, C, h, w) --detach--> 3x3 conv C->64, ReLU, 1x1 conv -> pred (B, 5, h, w)
    pred: [heat logit | width, height (cells) | x, y offset of the centre inside its cell]
    decode: sigmoid(heat), keep 3x3 peaks, top-D cells, score >= threshold
        -> boxes (B, D, 4) in [0, 1] image coordinates (x1, y1, x2, y2) + scores (B, D); 0 = absent part
    render: boxes -> (B, D, mh, mw) masks at the part head's mask size, exactly as
        :func:`pgan.parts.masks.boxes_to_masks` rasterises a box (``mode`` "any" or "fraction")

The head sees ``F_g`` **detached**: its loss trains only its own two convolutions, so the backbone and
the re-ID head get exactly the gradients they get without it, and (its initialisation draws from a
forked random state, see :class:`pgan.models.network.ReidNet`) a run with the head trains the same re-ID
weights as the same seed without it. The head then reads features learnt for identity, not for boxes; the
price is that nothing makes the backbone better at localising parts, which is not what it is for.

Training targets come from the batch's own part masks (no data-pipeline change): each non-empty mask
gives a box (:func:`masks_to_boxes`), its centre cell on the ``h x w`` grid gets a Gaussian peak
(:func:`box_targets`), its size and sub-cell offset are regressed there. Loss (:func:`box_head_loss`):
CenterNet's penalty-reduced focal loss on the heat map plus L1 on size and offset at the centres.

A mask built with ``mode="any"`` only says which cells a box touches, so its target box is the cell span
shrunk by a quarter cell on each side: rendered back with "any" it switches on exactly the same cells,
and a predicted edge may be off by up to a quarter cell either way before a cell flips (the span itself
would put every edge on a cell border, where any error flips a cell).

On a coarse grid (MobileNetV2 at 160 px: 5 x 5) two parts whose centres share a cell become one peak;
the head then returns fewer parts than the proposals did (absent parts are empty masks, as for an image
with fewer proposals).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pgan.errors import PganError

__all__ = ["ANY_SHRINK", "BoxHead", "BoxTargets", "PartBoxDecoder", "box_head_loss", "box_targets",
           "decode_boxes", "masks_to_boxes", "render_masks"]

ANY_SHRINK = 0.25  # cells taken off each side of an "any" mask's cell span (see the module doc)
_MASK_MODES = ("any", "fraction")


class BoxHead(nn.Module):
    """``pred = head(F_g)``: ``(B, 5, h, w)`` heat logit, size (cells) and centre offset (cells) per cell.

    ``decoder`` turns ``pred`` into boxes and masks (a parameter-free submodule, so an ONNX export names
    its nodes ``.../decoder/...`` and int8 quantisation can leave them in float)."""

    def __init__(self, in_channels: int, num_parts: int, mask_mode: str = "any", threshold: float = 0.3,
                 hidden: int = 64) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.out = nn.Conv2d(hidden, 5, 1)
        nn.init.normal_(self.conv.weight, std=0.01)
        nn.init.zeros_(self.conv.bias)
        nn.init.normal_(self.out.weight, std=0.01)
        nn.init.zeros_(self.out.bias)
        with torch.no_grad():
            self.out.bias[0] = -2.19  # CenterNet's prior: sigmoid = 0.1 everywhere at the start
        self.decoder = PartBoxDecoder(num_parts, mask_mode, threshold)

    @property
    def mask_mode(self) -> str:
        return self.decoder.mask_mode

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.conv(fmap)))


class PartBoxDecoder(nn.Module):
    """``(masks, boxes, scores)`` from a head's ``pred``: :func:`decode_boxes` then :func:`render_masks`."""

    def __init__(self, num_parts: int, mask_mode: str = "any", threshold: float = 0.3) -> None:
        super().__init__()
        if mask_mode not in _MASK_MODES:
            raise PganError(f"mask mode {mask_mode!r} must be one of {_MASK_MODES}")
        if not 0.0 <= threshold < 1.0:
            raise PganError(f"model.box_threshold must be in [0, 1), got {threshold}")
        self.num_parts, self.mask_mode, self.threshold = num_parts, mask_mode, threshold

    def forward(self, pred: torch.Tensor, mask_size: tuple[int, int]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        boxes, scores = decode_boxes(pred, self.num_parts, self.threshold)
        return render_masks(boxes, mask_size[0], mask_size[1], self.mask_mode), boxes, scores


def decode_boxes(pred: torch.Tensor, d: int, threshold: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``d`` strongest peaks of ``pred`` (B, 5, h, w) as boxes ``(B, d, 4)`` in [0, 1] image coordinates
    and scores ``(B, d)``, best first. A peak is a cell whose sigmoid heat is the largest of its 3 x 3
    neighbourhood; a peak below ``threshold`` (or a slot past the grid's peaks) is an absent part: box and
    score 0. Pure tensor operations (ONNX opset 17)."""
    b, _, h, w = pred.shape
    heat = torch.sigmoid(pred[:, 0])
    peaks = heat * (F.max_pool2d(heat[:, None], 3, stride=1, padding=1)[:, 0] == heat).to(heat.dtype)
    k = min(d, h * w)
    scores, idx = peaks.flatten(1).topk(k, dim=1)  # (B, k)
    reg = pred[:, 1:].flatten(2).gather(2, idx[:, None, :].expand(b, 4, k))  # (B, 4, k)
    row = torch.div(idx, w, rounding_mode="floor").to(pred.dtype)
    col = (idx - torch.div(idx, w, rounding_mode="floor") * w).to(pred.dtype)
    size_w, size_h = reg[:, 0].clamp_min(0), reg[:, 1].clamp_min(0)
    cx = (col + reg[:, 2].clamp(0, 1)) / w
    cy = (row + reg[:, 3].clamp(0, 1)) / h
    boxes = torch.stack([cx - size_w / (2 * w), cy - size_h / (2 * h), cx + size_w / (2 * w),
                         cy + size_h / (2 * h)], dim=-1).clamp(0, 1)
    keep = ((scores >= threshold) & (scores > 0)).to(pred.dtype)  # 0: not a peak
    boxes, scores = boxes * keep[..., None], scores * keep
    if k < d:
        boxes = torch.cat([boxes, boxes.new_zeros(b, d - k, 4)], dim=1)
        scores = torch.cat([scores, scores.new_zeros(b, d - k)], dim=1)
    return boxes, scores


def render_masks(boxes: torch.Tensor, fh: int, fw: int, mode: str = "any") -> torch.Tensor:
    """``(B, D, fh, fw)`` masks of boxes ``(B, D, 4)`` in [0, 1] image coordinates: the same masks as
    :func:`pgan.parts.masks.box_to_mask` (``min_overlap=0``) gives for the same boxes in pixels. A box
    with no area is an empty mask."""
    if mode not in _MASK_MODES:
        raise PganError(f"mask mode {mode!r} must be one of {_MASK_MODES}")
    bx = boxes.clamp(0, 1)
    x1, y1, x2, y2 = (bx[..., i, None] for i in range(4))  # (B, D, 1)
    nonempty = ((x2 > x1) & (y2 > y1)).to(boxes.dtype)
    cols = torch.arange(fw, dtype=boxes.dtype, device=boxes.device)
    rows = torch.arange(fh, dtype=boxes.dtype, device=boxes.device)
    if mode == "fraction":
        cover_x = (torch.minimum(x2 * fw, cols + 1) - torch.maximum(x1 * fw, cols)).clamp(0, 1)
        cover_y = (torch.minimum(y2 * fh, rows + 1) - torch.maximum(y1 * fh, rows)).clamp(0, 1)
    else:  # cells from floor(lo) to max(ceil(hi), floor(lo) + 1), as box_to_mask
        c0, r0 = torch.floor(x1 * fw), torch.floor(y1 * fh)
        c1, r1 = torch.maximum(torch.ceil(x2 * fw), c0 + 1), torch.maximum(torch.ceil(y2 * fh), r0 + 1)
        cover_x = ((cols >= c0) & (cols < c1)).to(boxes.dtype)
        cover_y = ((rows >= r0) & (rows < r1)).to(boxes.dtype)
    return cover_y[..., :, None] * cover_x[..., None, :] * nonempty[..., None]


def masks_to_boxes(masks: torch.Tensor, mode: str = "any") -> tuple[torch.Tensor, torch.Tensor]:
    """The box each mask ``(B, D, mh, mw)`` was rasterised from, as far as the mask tells: ``(B, D, 4)`` in
    [0, 1] image coordinates and ``valid`` ``(B, D)`` (non-empty masks).

    Per axis, the profile ``p`` (each column's largest value over the rows, over the mask's largest value)
    spans cells ``c0..c1``; the box runs from ``c0 + 1 - p[c0]`` to ``c1 + p[c1]`` (exact for a "fraction"
    mask whose box covers at least one whole cell in each axis; a box inside one cell is centred in it).
    With ``mode="any"`` the span is shrunk by :data:`ANY_SHRINK` on each side (see the module doc)."""
    b, d, mh, mw = masks.shape
    top = masks.flatten(2).amax(-1)  # (B, D)
    valid = top > 0
    norm = masks / top.clamp_min(1e-12)[..., None, None]
    edges = [_axis_extent(norm.amax(dim=-2), mode), _axis_extent(norm.amax(dim=-1), mode)]  # x, y in cells
    boxes = torch.stack([edges[0][0] / mw, edges[1][0] / mh, edges[0][1] / mw, edges[1][1] / mh], dim=-1)
    return boxes * valid[..., None].to(boxes.dtype), valid


def _axis_extent(profile: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) in cells of a ``(..., n)`` profile in [0, 1] (see :func:`masks_to_boxes`)."""
    n = profile.shape[-1]
    on = profile > 0
    c0 = on.to(torch.int8).argmax(-1)
    c1 = n - 1 - on.flip(-1).to(torch.int8).argmax(-1)
    p0 = profile.gather(-1, c0[..., None])[..., 0]
    p1 = profile.gather(-1, c1[..., None])[..., 0]
    c0f, c1f = c0.to(profile.dtype), c1.to(profile.dtype)
    lo, hi = c0f + 1 - p0, c1f + p1
    single = c0 == c1
    lo = torch.where(single, c0f + (1 - p0) / 2, lo)
    hi = torch.where(single, c0f + (1 + p0) / 2, hi)
    if mode == "any":
        lo, hi = lo + ANY_SHRINK, hi - ANY_SHRINK
    return lo, hi


@dataclass
class BoxTargets:
    """CenterNet targets on an ``h x w`` grid: ``heat`` (B, h, w) in [0, 1] (1 exactly at each centre),
    ``reg`` (B, 4, h, w) size (cells) and centre offset at the centres, ``centres`` (B, h, w) bool."""

    heat: torch.Tensor
    reg: torch.Tensor
    centres: torch.Tensor


def box_targets(masks: torch.Tensor, h: int, w: int, mode: str = "any") -> BoxTargets:
    """Targets for a head on an ``h x w`` grid from the batch's part masks ``(B, D, mh, mw)`` (any size).

    Each non-empty mask's box (:func:`masks_to_boxes`) puts a Gaussian on the heat map at its centre cell,
    ``sigma = max(size / 6, 1/3)`` cells per axis (CenterNet's spread, with a floor so a one-cell part
    still has one), combined by maximum; size and offset are regressed at the centre cell. Two parts
    with the same centre cell: the first (best-ranked) one's size and offset."""
    b, d = masks.shape[:2]
    boxes, valid = masks_to_boxes(masks.float(), mode)
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    bw, bh = (x2 - x1) * w, (y2 - y1) * h  # cells
    cx, cy = (x1 + x2) / 2 * w, (y1 + y2) / 2 * h
    col = cx.floor().clamp(0, w - 1)
    row = cy.floor().clamp(0, h - 1)
    sx, sy = (bw / 6).clamp_min(1 / 3), (bh / 6).clamp_min(1 / 3)
    cols = torch.arange(w, dtype=boxes.dtype, device=boxes.device)
    rows = torch.arange(h, dtype=boxes.dtype, device=boxes.device)
    gx = torch.exp(-((cols - col[..., None]) ** 2) / (2 * sx[..., None] ** 2))  # (B, D, w)
    gy = torch.exp(-((rows - row[..., None]) ** 2) / (2 * sy[..., None] ** 2))  # (B, D, h)
    gauss = gy[..., :, None] * gx[..., None, :] * valid[..., None, None].to(boxes.dtype)
    heat = gauss.amax(dim=1) if d else boxes.new_zeros(b, h, w)
    reg = boxes.new_zeros(b, 4, h, w)
    centres = torch.zeros(b, h, w, dtype=torch.bool, device=boxes.device)
    values = torch.stack([bw, bh, cx - col, cy - row], dim=-1)  # (B, D, 4)
    bi, di = valid.nonzero(as_tuple=True)
    for k in reversed(range(bi.numel())):  # the best-ranked part written last wins its cell
        i, j = int(bi[k]), int(di[k])
        r, c = int(row[i, j]), int(col[i, j])
        reg[i, :, r, c] = values[i, j]
        centres[i, r, c] = True
    return BoxTargets(heat, reg, centres)


def box_head_loss(pred: torch.Tensor, masks: torch.Tensor, mode: str = "any") -> torch.Tensor:
    """CenterNet's loss of a head's ``pred`` (B, 5, h, w) against targets from ``masks`` (B, D, mh, mw):
    the penalty-reduced focal loss (alpha 2, beta 4) on the heat map plus L1 on size and offset at the
    centres, each normalised by the number of centres (at least 1)."""
    pred = pred.float()
    t = box_targets(masks.detach(), pred.shape[-2], pred.shape[-1], mode)
    p = torch.sigmoid(pred[:, 0]).clamp(1e-4, 1 - 1e-4)
    pos = t.centres.float()
    n = pos.sum().clamp_min(1.0)
    focal = -(pos * (1 - p) ** 2 * p.log() + (1 - pos) * (1 - t.heat) ** 4 * p ** 2 * (1 - p).log()).sum() / n
    l1 = ((pred[:, 1:] - t.reg).abs() * pos[:, None]).sum() / n
    return focal + l1
