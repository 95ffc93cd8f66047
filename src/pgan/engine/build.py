"""From a :class:`pgan.config.Config` to the objects a run needs beyond the network and the dataset.

Checks a config (:func:`validate_config`), builds its part source (:func:`build_part_source`, which
needs the variant table and the frozen ImageNet backbone, so it sits above ``models`` and ``parts``),
its evaluation sets and its data loaders. The network is built by :mod:`pgan.models.build`, the
dataset read by :mod:`pgan.data.build`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import DataLoader

from pgan.config import Config, check_values
from pgan.data.image_dataset import ReidImageDataset
from pgan.data.records import ReidDataset
from pgan.engine.oracle import role_score_table
from pgan.errors import PganError
from pgan.models.backbones import frozen_imagenet_backbone
from pgan.models.network import VARIANTS
from pgan.parts.roles import selection_roles
from pgan.parts.selection import select_top_d
from pgan.parts.sources import PART_SOURCES, PartSource, build_source
from pgan.parts.sources import default_part_file as source_part_file

__all__ = ["EvalSets", "build_eval_sets", "build_loader", "build_part_source", "default_part_file",
           "oracle_scores", "query_part_roles", "validate_config"]


def validate_config(cfg: Config) -> None:
    """Check every name and range in ``cfg`` before any work starts (one clear error per problem)."""
    from pgan.data.datasets import DATASETS
    from pgan.errors import unknown_name
    from pgan.losses.combined import LOSS_TERMS
    from pgan.models.backbones import BACKBONES
    from pgan.models.network import RETRIEVAL_FEATURES

    checks = [("variant", cfg.model.variant, VARIANTS), ("backbone", cfg.model.backbone, BACKBONES),
              ("part source", cfg.data.part_source, PART_SOURCES),
              ("dataset", cfg.data.dataset, DATASETS), ("retrieval feature", cfg.model.retrieval,
                                                        RETRIEVAL_FEATURES)]
    for kind, name, valid in checks:
        if name not in valid:
            raise unknown_name(kind, name, list(valid))
    bad_terms = [t for t in cfg.loss.terms if t not in LOSS_TERMS]
    if bad_terms or not cfg.loss.terms:
        raise PganError(f"loss.terms {list(cfg.loss.terms)} invalid; choose from {list(LOSS_TERMS)}")
    if cfg.data.missing_parts not in ("error", "empty"):
        raise PganError(f"data.missing_parts must be 'error' or 'empty', got {cfg.data.missing_parts!r}")
    if min(cfg.data.input_size) < 32:
        raise PganError(f"data.input_size {list(cfg.data.input_size)} is too small (at least 32 pixels)")
    for key, value, low in (("data.num_parts", cfg.data.num_parts, 1), ("data.p", cfg.data.p, 2),
                            ("data.k", cfg.data.k, 1), ("optim.epochs", cfg.optim.epochs, 1),
                            ("model.reduced_dim", cfg.model.reduced_dim, 8)):
        if value < low:
            raise PganError(f"{key}={value} must be at least {low}")
    check_values(cfg)
    from pgan.data.sampler import EPOCH_UNITS
    from pgan.models.part_attention import PAM_SCORES, PART_MAPS
    from pgan.parts.masks import MASK_MODES
    for key, value, valid in (("data.epoch", cfg.data.epoch, EPOCH_UNITS),
                              ("data.mask_mode", cfg.data.mask_mode, MASK_MODES),
                              ("model.pam_score", cfg.model.pam_score, PAM_SCORES),
                              ("model.part_map", cfg.model.part_map, PART_MAPS)):
        if value not in valid:
            raise PganError(f"{key}={value!r} must be one of {', '.join(valid)}")


def build_part_source(cfg: Config) -> PartSource | None:
    """The part source the variant needs (None for baseline and grid)."""
    validate_config(cfg)
    spec = VARIANTS[cfg.model.variant]
    if not spec.uses_parts or spec.grid:
        return None
    d = cfg.data
    return build_source(d.part_source, part_file=default_part_file(cfg), mask_root=d.mask_root,
                        num_parts=d.num_parts, missing=d.missing_parts, dataset=d.dataset, root=d.root,
                        mask_mode=d.mask_mode,
                        features=lambda: frozen_imagenet_backbone(cfg.model.backbone))


def default_part_file(cfg: Config) -> str | None:
    """``data.part_file``, else the file the part source reads by default
    (:func:`pgan.parts.sources.default_part_file`)."""
    d = cfg.data
    return source_part_file(d.part_source, d.root, d.part_file, d.part_cache, cfg.run.out_dir)


@dataclass
class EvalSets:
    """The query and gallery image sets of an evaluation."""

    query: ReidImageDataset
    gallery: ReidImageDataset
    # Roles (identity / shared / clutter) of each query image's selected parts, for the attention ratio;
    # None when the parts carry no roles and the dataset has no ground truth with roles.
    query_roles: list[list[str | None]] | None = None
    # The ground-truth class of each of those parts (None for clutter), to report wheels on their own rows.
    query_labels: list[list[str | None]] | None = None


def build_eval_sets(cfg: Config, ds: ReidDataset, parts: PartSource | None, feat: tuple[int, int]) -> EvalSets:
    d = cfg.data
    common = dict(input_size=tuple(d.input_size), feat_size=feat, parts=parts, train=False,
                  cache=d.cache_images, progress=cfg.run.progress, workers=d.workers)
    roles = query_part_roles(ds.query, parts, cfg)
    return EvalSets(ReidImageDataset(ds.query, **common, role_scores=oracle_scores(ds.query, parts, cfg)),
                    ReidImageDataset(ds.gallery, **common, role_scores=oracle_scores(ds.gallery, parts, cfg)),
                    *(roles if roles is not None else (None, None)))


def oracle_scores(records: list, parts: PartSource | None, cfg: Config) -> dict | None:
    """The oracle variant's role scores by image key (None for every other variant)."""
    if cfg.model.variant != "oracle":
        return None
    return role_score_table([r.key for r in records], parts, cfg.data.num_parts,
                            Path(cfg.data.root) / "parts_gt.jsonl")


def query_part_roles(records: list, parts: PartSource | None, cfg: Config
                     ) -> tuple[list[list[str | None]], list[list[str | None]]] | None:
    """Roles of the top-D parts of each query image and the ground-truth class of each (computed once per
    run: they do not change while training), or None when nothing is known about roles."""
    if parts is None or not hasattr(parts, "boxes_for"):
        return None
    selected = []
    for rec in records:
        item = parts.boxes_for(rec.key)
        selected.append(select_top_d(item.boxes, cfg.data.num_parts) if item is not None else [])
    roles, labels = selection_roles(selected, [rec.key for rec in records],
                                    Path(cfg.data.root) / "parts_gt.jsonl")
    return (roles, labels) if any(r is not None for rs in roles for r in rs) else None


def build_loader(dataset: ReidImageDataset, cfg: Config, **kwargs) -> DataLoader:
    """A loader over ``dataset`` with ``cfg.data.workers`` workers (none when the images are cached)."""
    workers = 0 if dataset.cache is not None else cfg.data.workers
    return DataLoader(dataset, num_workers=workers, persistent_workers=workers > 0, **kwargs)
