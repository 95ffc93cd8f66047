"""The part detector: Faster R-CNN on a MobileNetV2 + FPN backbone (torchvision), and inference.

Why this model: the paper used an SSD, but on a CPU budget a two-stage
detector learns from few iterations far better than an SSD (whose recipe needs
hundreds of epochs of heavy augmentation): on the synthetic benchmark it passes
0.3-0.7 mAP@0.5 after two minutes of CPU training. RoIAlign over an FPN keeps
the small parts (lights, logos, stickers: 6-20 px on a 160 px vehicle). The
backbone is torchvision's MobileNetV2 (:func:`pgan.detection.backbone.mobilenet_v2_stages`,
ImageNet weights from the torch hub cache) with BatchNorm frozen (batches of a few images) and
its first ``frozen_stages`` stages fixed.

Sized for a CPU: images are resized so their short side is ``min_size`` (160,
the synthetic images' own size; use 224-320 for larger real images with tiny
parts); the FPN (64 channels) reads the stride-4, -8 and -16 stages, the
stride-32 stage is never computed; anchors of 8-104 px at the input size with
aspect ratios (h/w) 1:4 to 2:1 (windscreens are wide, hangings tall); 128 RoIs
per image. A training step of 8 images takes about 0.6 s on one CPU core.

Post-processing is per-class NMS at ``nms`` (0.45, the paper's) and a score
threshold; boxes come back in the original image's pixels.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import FeaturePyramidNetwork, FrozenBatchNorm2d, MultiScaleRoIAlign

from pgan.detection.backbone import mobilenet_v2_stages
from pgan.detection.box_ap import APResult, Detections, GroundTruth, box_ap
from pgan.errors import PganError
from pgan.parts import PART_CLASSES
from pgan.utils.device import resolve_device
from pgan.utils.safe_load import safe_torch_load

__all__ = ["DetectorConfig", "MobileNetFPN", "Prediction", "build_detector", "detector_checkpoint",
           "evaluate_detector", "load_detector", "predict", "read_checkpoint"]


@dataclass
class DetectorConfig:
    """Everything needed to rebuild the detector (stored in its checkpoints)."""

    classes: list[str] = field(default_factory=lambda: list(PART_CLASSES))
    min_size: int = 160
    max_size: int = 320
    levels: tuple[int, ...] = (1, 2, 3)
    fpn_channels: int = 64
    head_dim: int = 256
    frozen_stages: int = 2
    anchor_sizes: tuple[tuple[int, ...], ...] = ((8, 14), (24, 40), (64, 104))
    aspect_ratios: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    nms: float = 0.45
    score_thresh: float = 0.05
    max_detections: int = 100
    rois_per_image: int = 128

    @classmethod
    def from_dict(cls, d: dict) -> DetectorConfig:
        d = dict(d)
        d["anchor_sizes"] = tuple(tuple(s) for s in d.get("anchor_sizes", cls.anchor_sizes))
        d["aspect_ratios"] = tuple(d.get("aspect_ratios", cls.aspect_ratios))
        d["levels"] = tuple(d.get("levels", cls.levels))
        return cls(**d)


def _freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by a FrozenBatchNorm2d with the same statistics."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            _freeze_batchnorm(child)
    return module


class MobileNetFPN(nn.Module):
    """MobileNetV2 stages ``levels`` (0..4 = strides 2..32) -> a pyramid of ``out_channels`` maps.

    Stages after the last level are dropped (never computed).
    """

    def __init__(self, pretrained: bool, frozen_stages: int, out_channels: int,
                 levels: tuple[int, ...] = (1, 2, 3)) -> None:
        super().__init__()
        if sorted(set(levels)) != list(levels) or not levels or not 0 <= levels[0] <= levels[-1] <= 4:
            raise PganError(f"detector levels {levels} must be increasing stage indices in 0..4")
        bb = mobilenet_v2_stages(pretrained=pretrained, frozen_stages=frozen_stages)
        bb.stages = bb.stages[: levels[-1] + 1]
        self.levels = tuple(levels)
        self.body = _freeze_batchnorm(bb)
        channels = [self._channels(self.body.stages[i]) for i in self.levels]
        self.fpn = FeaturePyramidNetwork(channels, out_channels)
        self.out_channels = out_channels

    @staticmethod
    def _channels(stage: nn.Module) -> int:
        convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
        return convs[-1].out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = OrderedDict()
        for i, stage in enumerate(self.body.stages):
            x = stage(x)
            if i in self.levels:
                feats[str(i)] = x
        return self.fpn(feats)


def build_detector(cfg: DetectorConfig, pretrained: bool = True) -> FasterRCNN:
    """A Faster R-CNN for ``cfg.classes`` (plus background), e.g. ``build_detector(DetectorConfig())``."""
    if not cfg.classes:
        raise PganError("the detector needs at least one class")
    if len(set(cfg.classes)) != len(cfg.classes):
        raise PganError(f"duplicate class names in {cfg.classes}")
    if len(cfg.anchor_sizes) != len(cfg.levels):
        raise PganError(f"{len(cfg.anchor_sizes)} anchor size groups for {len(cfg.levels)} pyramid levels")
    backbone = MobileNetFPN(pretrained, cfg.frozen_stages, cfg.fpn_channels, cfg.levels)
    names = [str(i) for i in cfg.levels]
    anchors = AnchorGenerator(cfg.anchor_sizes, (cfg.aspect_ratios,) * len(cfg.anchor_sizes))
    pool = MultiScaleRoIAlign(names, output_size=7, sampling_ratio=2)
    head = TwoMLPHead(cfg.fpn_channels * 7 * 7, cfg.head_dim)
    predictor = FastRCNNPredictor(cfg.head_dim, len(cfg.classes) + 1)
    return FasterRCNN(
        backbone, num_classes=None, min_size=cfg.min_size, max_size=cfg.max_size,
        rpn_anchor_generator=anchors, box_roi_pool=pool, box_head=head, box_predictor=predictor,
        rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500,
        rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=300,
        box_batch_size_per_image=cfg.rois_per_image, box_nms_thresh=cfg.nms,
        box_score_thresh=cfg.score_thresh, box_detections_per_img=cfg.max_detections)


def detector_checkpoint(model: nn.Module, cfg: DetectorConfig, **state) -> dict:
    return {"kind": "pgan-part-detector", "config": asdict(cfg), "model": model.state_dict(), **state}


def read_checkpoint(path: str | Path, trust: bool | None = None) -> dict:
    """The raw dict of a detector checkpoint; PganError for a missing, unreadable or foreign file.

    Read with ``weights_only=True`` (no code runs); ``trust`` as in :func:`pgan.utils.safe_load.safe_torch_load`.
    """
    ckpt = safe_torch_load(path, trust, "detector checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("kind") != "pgan-part-detector":
        raise PganError(f"{path} is not a part-detector checkpoint (written by 'pgan parts train')")
    return ckpt


def load_detector(path: str | Path, device: torch.device | str = "cpu") -> tuple[FasterRCNN, DetectorConfig, dict]:
    """A detector saved by ``pgan parts train`` (eval mode), its config and the raw checkpoint."""
    ckpt = read_checkpoint(path)
    cfg = DetectorConfig.from_dict(ckpt["config"])
    model = build_detector(cfg, pretrained=False)
    model.load_state_dict(ckpt["model"])
    return model.to(resolve_device(str(device), '--device')).eval(), cfg, ckpt


@dataclass
class Prediction:
    """The detections of one image, in its own pixels, sorted by descending score."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: list[str]


@torch.no_grad()
def predict(model: FasterRCNN, images: list[torch.Tensor], classes: list[str], nms: float | None = None,
            min_score: float | None = None) -> list[Prediction]:
    """Detect parts in float ``(3, H, W)`` images in [0, 1]; ``nms``/``min_score`` override the config."""
    model.eval()
    heads = model.roi_heads
    old = heads.nms_thresh, heads.score_thresh
    if nms is not None:
        heads.nms_thresh = nms
    if min_score is not None:
        heads.score_thresh = min_score
    try:
        device = next(model.parameters()).device
        outputs = model([im.to(device) for im in images])
    finally:
        heads.nms_thresh, heads.score_thresh = old
    preds = []
    for out in outputs:
        order = torch.argsort(out["scores"], descending=True, stable=True)
        preds.append(Prediction(out["boxes"][order].cpu().numpy(), out["scores"][order].cpu().numpy(),
                                [classes[int(i) - 1] for i in out["labels"][order]]))
    return preds


def evaluate_detector(model: FasterRCNN, classes: list[str], samples: list, batch_size: int = 8,
                      iou_threshold: float = 0.5, progress: bool = False) -> APResult:
    """Box AP per class and mean on annotated ``samples`` (:class:`DetectionSample`), VOC style.

    Detections use a low score threshold (0.01) so the precision/recall curve is complete.
    """
    from tqdm import tqdm

    from pgan.utils.images import load_rgb

    dets, truth = [], []
    for i in tqdm(range(0, len(samples), batch_size), desc="detector eval", unit="batch", disable=not progress,
                  leave=False):
        chunk = samples[i:i + batch_size]
        preds = predict(model, [load_rgb(s.image).float().div_(255) for s in chunk], classes, min_score=0.01)
        for s, p in zip(chunk, preds):
            dets.append(Detections(p.boxes, p.scores, p.labels))
            truth.append(GroundTruth(s.boxes, s.labels, s.difficult))
    return box_ap(dets, truth, iou_threshold, classes=classes)
