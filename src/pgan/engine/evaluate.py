"""``pgan eval``: retrieval metrics of a network on query vs gallery, and of a saved checkpoint."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from pgan.config import Config, apply_overrides
from pgan.data.build import read_configured_dataset
from pgan.engine.build import EvalSets, build_eval_sets, build_loader, build_part_source
from pgan.engine.checkpoint import unwrap
from pgan.engine.extract import extract_features
from pgan.evaluation.attention_roles import attention_figures, attention_spread
from pgan.models.build import mask_size
from pgan.models.trained import load_trained
from pgan.utils.device import resolve_device

log = logging.getLogger(__name__)

__all__ = ["evaluate_checkpoint", "evaluate_sets"]


def evaluate_sets(model: torch.nn.Module, sets: EvalSets, cfg: Config, device: torch.device) -> dict:
    """Retrieval metrics (fractions) of ``model`` on query vs gallery, with the dataset's protocol
    (cross-camera for VeRi-776 / VERI-Wild / synth / custom, as listed for VRIC, seeded random-gallery
    trials for VehicleID; see :mod:`pgan.evaluation.protocols`)."""
    from pgan.evaluation import evaluate_protocol

    kw = dict(batch_size=64, shuffle=False)
    q = extract_features(unwrap(model), build_loader(sets.query, cfg, **kw), device, cfg.run.flip_test,
                         cfg.run.progress, "query features")
    g = extract_features(unwrap(model), build_loader(sets.gallery, cfg, **kw), device, cfg.run.flip_test,
                         cfg.run.progress, "gallery features")
    res = evaluate_protocol(cfg.data.dataset, q.feats, g.feats, sets.query.records, sets.gallery.records,
                            seed=cfg.run.seed, rerank={} if cfg.run.rerank else None)
    out = {**res.metrics, **{f"{k}_std": v for k, v in res.std.items()}}
    if q.part_weights is not None:
        weights, valid = q.part_weights.numpy(), q.part_valid.numpy()  # parts count by their masks
        spread = attention_spread(weights, valid)
        out["attention_entropy"], out["attention_max"] = spread.entropy_median, spread.max_weight_median
        if sets.query_roles is not None:  # the ratio with and without wheels, and each role's relative weight
            out.update(attention_figures(list(weights), sets.query_roles, sets.query_labels, list(valid)))
    return out


def evaluate_checkpoint(checkpoint: str | Path, overrides: list[str] | None = None) -> dict:
    """Evaluate a checkpoint on its dataset's query/gallery (overrides can point at other data)."""

    model, cfg = load_trained(checkpoint)
    apply_overrides(cfg, overrides or [])
    device = resolve_device(cfg.run.device)
    model.to(device)
    ds = read_configured_dataset(cfg)
    parts = build_part_source(cfg)
    feat = mask_size(model, tuple(cfg.data.input_size))
    metrics = evaluate_sets(model, build_eval_sets(cfg, ds, parts, feat), cfg, device)
    log.info("%s", json.dumps(metrics))
    return metrics
