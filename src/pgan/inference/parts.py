"""The test-time part pipeline for a new image: part boxes -> top-D -> masks at feature resolution.

The part source must be the one the model was trained with (``cfg.data.part_source``):

* an image that belongs to the training dataset (its path lies under
  ``cfg.data.root`` and the dataset's part file lists it) gets the boxes of that
  file, exactly what ``pgan eval`` uses;
* otherwise the boxes are computed: ``proposals`` and ``grid`` models compute
  them with the same method, ``dff`` and ``kmeans`` models with the basis saved
  beside their part file (``parts_dff.basis.npz``) and the ImageNet backbone; a
  ``detector`` or ``file`` model needs ``parts=`` to say where boxes of a
  brand-new photo come from.

``parts`` (the ``FeatureExtractor`` argument) overrides the source for images the
part file does not list: ``"proposals"``, ``"grid"``, ``"dff"`` / ``"kmeans"`` (the
model's own basis), a part-discovery basis (``*.basis.npz``, from ``pgan parts discover``),
a part-detector checkpoint (``*.pt``, from ``pgan parts train``) or a part-box file (``*.jsonl``, keyed by path
relative to the dataset root, or by absolute path).

``"model"`` takes the parts of every image from the network's own part box head (a model trained with
``model.box_head=true``, see :mod:`pgan.models.box_head`): no boxes or masks are made here, the network
decodes its own in the same forward pass (``kind == "model"``). It is the default of a box-head model:
that is what the head is trained for, and its ONNX export takes images only, so the default gives the
same embedding with either runtime; ``parts="proposals"`` (PyTorch runtime) still uses the proposals the
head was trained on.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pgan.config import Config
from pgan.errors import PganError
from pgan.inference.images import DecodedImage
from pgan.models.network import VARIANTS
from pgan.parts.boxfile import ImageParts, PartBox, read_part_file
from pgan.parts.masks import boxes_to_masks, grid_boxes
from pgan.parts.selection import select_top_d
from pgan.parts.sources import default_part_file

log = logging.getLogger(__name__)


def dataset_root(root: str, checkpoint: str | Path | None) -> Path:
    """The absolute path of a (possibly relative) path from a training config: relative to the working
    directory if it exists there, else to the first folder above the checkpoint where it exists (a run
    folder ``runs/x/last.pt`` trained from the project folder finds ``data/...`` two levels up)."""
    path = Path(root)
    if path.is_absolute() or path.exists() or checkpoint is None:
        return path.resolve()
    for parent in Path(checkpoint).resolve().parents:
        if (parent / path).exists():
            return (parent / path).resolve()
    return path.resolve()


def _detector_fn(checkpoint: Path, d: int, device: str):
    from pgan.detection.extract import detector_boxes_fn
    from pgan.detection.model import load_detector

    model, dcfg, _ = load_detector(checkpoint, device)
    return detector_boxes_fn(model, dcfg.classes, d, nms=0.45, min_score=0.05)


def _discovery_fn(name: str, part_file: Path | None, config: Config, device: str):
    """Boxes from a part-discovery basis: ``name`` is a ``*.basis.npz`` file, or ``dff``/``kmeans`` for the
    basis beside the model's own part file."""
    from pgan.models.backbones import frozen_imagenet_backbone
    from pgan.parts.discovery import PartBasis, basis_path, discovery_boxes_fn

    if name in ("dff", "kmeans"):
        if part_file is None or config.data.part_source != name:
            raise PganError(f"parts={name!r} uses the basis of a model trained on part source {name!r}; this "
                            f"model used {config.data.part_source!r}: give a *.basis.npz file instead")
        path = basis_path(part_file)
    else:
        path = Path(name)
    if not path.is_file():
        raise PganError(f"part-discovery basis {path} does not exist (pgan parts discover writes it beside its "
                        f"part file)")
    basis = PartBasis.load(path)
    features = frozen_imagenet_backbone(config.model.backbone).to(device)
    return discovery_boxes_fn(basis, lambda x: features(x.to(device)).cpu()), f"{basis.method} {path}"


class TestTimeParts:
    """Part boxes and masks for decoded images, following the model's training part source."""

    __test__ = False  # not a pytest class

    def __init__(self, config: Config, parts: str | Path | None = None, device: str = "cpu",
                 checkpoint: str | Path | None = None) -> None:
        spec = VARIANTS[config.model.variant]
        self.d = int(config.data.num_parts)
        self.mask_mode = config.data.mask_mode  # masks as the model was trained on them
        self.kind = "none" if not spec.uses_parts else ("grid" if spec.grid else "boxes")
        self.source = config.data.part_source
        self.root = dataset_root(config.data.root, checkpoint)
        self.lookup: dict[str, ImageParts] = {}
        self.part_file: Path | None = None
        self.compute = None  # a pgan.parts.extract.BoxesFn for images the part file lacks
        self.compute_rgb = None  # or, for proposals, boxes straight from the decoded (H, W, 3) arrays
        self.compute_name: str | None = None
        if self.kind != "boxes":
            return
        box_head = bool(config.model.box_head)
        if parts is None and box_head:
            parts = "model"  # what a box-head model is for (see the module doc)
        if parts is not None and str(parts) == "model":
            if not box_head:
                raise PganError("parts='model' takes the parts from the model's own box head; this model was "
                                "trained without one (model.box_head=false): give another part source")
            self.kind, self.compute_name = "model", "model"
            return
        if self.source in ("file", "detector", "proposals", "dff", "kmeans"):
            d = config.data
            named = default_part_file(self.source, self.root, d.part_file, d.part_cache, config.run.out_dir)
            if named is not None:  # None: a detector model without data.part_file (training refuses one)
                part_file = Path(named)
                self.part_file = part_file if part_file.is_absolute() else dataset_root(named, checkpoint)
                if self.part_file.is_file():
                    self.lookup = read_part_file(self.part_file)
                else:
                    log.info("part file %s of the model's dataset is absent; boxes will be computed",
                             self.part_file)
        name = str(parts) if parts is not None else (
            self.source if self.source in ("proposals", "grid", "dff", "kmeans") else None)
        if name == "proposals":
            from pgan.parts.proposals import proposal_boxes_fn, propose_boxes

            self.compute, self.compute_name = proposal_boxes_fn(), "proposals"
            # The same function as `pgan parts proposals` runs (so the same boxes), without a (3, H, W) copy.
            self.compute_rgb = lambda arrays: [propose_boxes(a) for a in arrays]
        elif name == "grid":
            self.compute = lambda ims: [grid_boxes(int(im.shape[-1]), int(im.shape[-2]), self.d) for im in ims]
            self.compute_name = "grid"
        elif name in ("dff", "kmeans") or name is not None and name.endswith(".basis.npz"):
            self.compute, self.compute_name = _discovery_fn(name, self.part_file, config, device)
        elif name is not None:
            path = Path(name)
            if not path.is_file():
                raise PganError(f"parts={name!r}: expected 'proposals', 'grid', 'dff', 'kmeans', 'model', a "
                                f"part-discovery basis, a part-detector checkpoint or a part-box file, and no "
                                f"such file exists")
            if path.suffix in (".pt", ".pth"):
                self.compute, self.compute_name = _detector_fn(path, self.d, device), f"detector {path}"
            else:
                extra = read_part_file(path)
                self.lookup = {**self.lookup, **extra}
                self.compute_name = None

    def _key(self, path: Path | None) -> str | None:
        if path is None:
            return None
        p = path.resolve()
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:
            return p.as_posix()

    def boxes(self, images: list[DecodedImage]) -> list[ImageParts]:
        """The top-D boxes of each image (original pixels) and the size they refer to."""
        if self.kind in ("none", "model"):  # "model": the network finds its own (FeatureExtractor)
            return [ImageParts("", im.width, im.height, []) for im in images]
        if self.kind == "grid":
            return [ImageParts("", im.width, im.height, grid_boxes(im.width, im.height, self.d)) for im in images]
        out: list[ImageParts | None] = []
        todo: list[int] = []
        for i, im in enumerate(images):
            key = self._key(im.path)
            item = self.lookup.get(key) if key is not None else None
            if item is None and im.path is not None:
                item = self.lookup.get(im.path.resolve().as_posix())
            if item is not None:
                out.append(ImageParts(item.image, item.width, item.height, select_top_d(item.boxes, self.d)))
            else:
                out.append(None)
                todo.append(i)
        if todo:
            if self.compute is None:
                where = images[todo[0]].path or "an in-memory image"
                raise PganError(
                    f"no part boxes for {where}: the model was trained on part source {self.source!r} "
                    f"({self.part_file or 'no part file'}), which does not list it; give parts (--parts): "
                    f"'proposals', a part-detector checkpoint or a part-box file")
            if self.compute_rgb is not None:
                found = self.compute_rgb([images[i].rgb for i in todo])
            else:
                found = self.compute([images[i].chw_uint8() for i in todo])
            for i, boxes in zip(todo, found):
                out[i] = ImageParts("", images[i].width, images[i].height, select_top_d(list(boxes), self.d))
        return out  # type: ignore[return-value]

    def masks(self, parts: list[ImageParts], feat_size: tuple[int, int]) -> np.ndarray | None:
        """``(N, D, h, w)`` float32 masks (None when the network takes no masks or makes its own)."""
        if self.kind != "boxes":
            return None
        fh, fw = feat_size
        return np.stack([boxes_to_masks(p.boxes, p.width, p.height, fh, fw, self.d, mode=self.mask_mode)
                         for p in parts])


def box_lists(parts: list[ImageParts]) -> list[list[PartBox]]:
    return [list(p.boxes) for p in parts]
