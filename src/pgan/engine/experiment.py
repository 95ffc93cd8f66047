"""From a :class:`pgan.config.Config` to objects, and the two jobs the CLI runs: train and evaluate.

Everything here is plain Python on top of the library: ``train(cfg)`` is what
``pgan train`` calls, ``evaluate_checkpoint(path)`` what ``pgan eval`` calls.
"""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from pgan.config import Config, apply_overrides, check_values, dump_config
from pgan.data.datasets import read_dataset
from pgan.data.image_dataset import ReidImageDataset
from pgan.data.records import ReidDataset, relabel
from pgan.data.sampler import IdentityBatchSampler
from pgan.engine.checkpoint import load_checkpoint, unwrap
from pgan.engine.distributed import cleanup, gather_for_mining, init_distributed
from pgan.engine.extract import extract_features
from pgan.engine.oracle import role_score_table
from pgan.engine.run_folder import RunLock, check_resume_config, remove_stale_temporaries
from pgan.engine.schedule import lr_factor
from pgan.engine.tensorboard import TensorBoardLogger
from pgan.engine.trainer import Trainer
from pgan.errors import PganError
from pgan.evaluation.attention_roles import attention_spread, role_attention
from pgan.losses.combined import PganLoss
from pgan.models.backbones import build_backbone, frozen_imagenet_backbone
from pgan.models.network import VARIANTS, ReidNet
from pgan.parts.roles import selection_roles
from pgan.parts.selection import select_top_d
from pgan.parts.sources import PART_SOURCES, PartSource, build_source
from pgan.parts.sources import default_part_file as source_part_file
from pgan.utils.atomic import atomic_write_json, atomic_write_text
from pgan.utils.device import resolve_device
from pgan.utils.seeding import seed_everything

log = logging.getLogger(__name__)

# The public API: the two jobs, and the builders that figures and tools reuse (``pgan.viz.ranks``).
__all__ = ["EvalSets", "build_eval_sets", "build_network", "build_part_source", "evaluate_checkpoint",
           "evaluate_sets", "feature_size", "load_trained", "read_configured_dataset", "train",
           "validate_config"]


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


def feature_size(backbone: torch.nn.Module, input_size: tuple[int, int]) -> tuple[int, int]:
    """The ``(h, w)`` of ``backbone``'s feature map for an ``input_size`` image (one dry run)."""
    with torch.no_grad():
        was = backbone.training
        backbone.eval()
        fh, fw = backbone(torch.zeros(1, 3, *input_size)).shape[-2:]
        backbone.train(was)
    return int(fh), int(fw)


def build_network(cfg: Config, num_classes: int, pretrained: bool | None = None) -> ReidNet:
    m = cfg.model
    backbone = build_backbone(m.backbone, m.pretrained if pretrained is None else pretrained,
                              m.last_stride, m.frozen_stages)
    return ReidNet(backbone, num_classes, variant=m.variant, reduced_dim=m.reduced_dim,
                   num_parts=cfg.data.num_parts, temperature=m.temperature, retrieval=m.retrieval,
                   pam_score=m.pam_score, learn_temperature=m.learn_temperature, part_map=m.part_map,
                   part_dropout=m.part_dropout, baseline_reduce=m.baseline_reduce,
                   oracle_temperature=m.oracle_temperature)


@dataclass
class EvalSets:
    query: ReidImageDataset
    gallery: ReidImageDataset
    # Roles (identity / shared / clutter) of each query image's selected parts, for the attention ratio;
    # None when the parts carry no roles and the dataset has no ground truth with roles.
    query_roles: list[list[str | None]] | None = None


def build_eval_sets(cfg: Config, ds: ReidDataset, parts: PartSource | None, feat: tuple[int, int]) -> EvalSets:
    d = cfg.data
    common = dict(input_size=tuple(d.input_size), feat_size=feat, parts=parts, train=False,
                  cache=d.cache_images, progress=cfg.run.progress, workers=d.workers)
    return EvalSets(ReidImageDataset(ds.query, **common, role_scores=oracle_scores(ds.query, parts, cfg)),
                    ReidImageDataset(ds.gallery, **common, role_scores=oracle_scores(ds.gallery, parts, cfg)),
                    query_part_roles(ds.query, parts, cfg))


def oracle_scores(records: list, parts: PartSource | None, cfg: Config) -> dict | None:
    """The oracle variant's role scores by image key (None for every other variant)."""
    if cfg.model.variant != "oracle":
        return None
    return role_score_table([r.key for r in records], parts, cfg.data.num_parts,
                            Path(cfg.data.root) / "parts_gt.jsonl")


def query_part_roles(records: list, parts: PartSource | None, cfg: Config) -> list[list[str | None]] | None:
    """Roles of the top-D parts of each query image (computed once per run: they do not change while
    training), or None when nothing is known about roles."""
    if parts is None or not hasattr(parts, "boxes_for"):
        return None
    selected = []
    for rec in records:
        item = parts.boxes_for(rec.key)
        selected.append(select_top_d(item.boxes, cfg.data.num_parts) if item is not None else [])
    roles, _ = selection_roles(selected, [rec.key for rec in records], Path(cfg.data.root) / "parts_gt.jsonl")
    return roles if any(r is not None for rs in roles for r in rs) else None


def _loader(dataset: ReidImageDataset, cfg: Config, **kwargs) -> DataLoader:
    workers = 0 if dataset.cache is not None else cfg.data.workers
    return DataLoader(dataset, num_workers=workers, persistent_workers=workers > 0, **kwargs)


def evaluate_sets(model: torch.nn.Module, sets: EvalSets, cfg: Config, device: torch.device) -> dict:
    """Retrieval metrics (fractions) of ``model`` on query vs gallery, with the dataset's protocol
    (cross-camera for VeRi-776 / VERI-Wild / synth / custom, as listed for VRIC, seeded random-gallery
    trials for VehicleID; see :mod:`pgan.evaluation.protocols`)."""
    from pgan.evaluation import evaluate_protocol

    kw = dict(batch_size=64, shuffle=False)
    q = extract_features(unwrap(model), _loader(sets.query, cfg, **kw), device, cfg.run.flip_test,
                         cfg.run.progress, "query features")
    g = extract_features(unwrap(model), _loader(sets.gallery, cfg, **kw), device, cfg.run.flip_test,
                         cfg.run.progress, "gallery features")
    res = evaluate_protocol(cfg.data.dataset, q.feats, g.feats, sets.query.records, sets.gallery.records,
                            seed=cfg.run.seed, rerank={} if cfg.run.rerank else None)
    out = {**res.metrics, **{f"{k}_std": v for k, v in res.std.items()}}
    if q.part_weights is not None:
        weights, valid = q.part_weights.numpy(), q.part_valid.numpy()  # parts count by their masks
        spread = attention_spread(weights, valid)
        out["attention_entropy"], out["attention_max"] = spread.entropy_median, spread.max_weight_median
        if sets.query_roles is not None:
            out["attention_ratio"] = role_attention(list(weights), sets.query_roles, list(valid)).ratio
    return out


def param_groups(model: torch.nn.Module, lr: float, pam_lr_mult: float = 1.0) -> list[dict]:
    """Trainable parameters; the PAM's in their own group at ``lr * pam_lr_mult`` when that is not 1."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    pam = [p for n, p in named if ".pam." in f".{n}"]
    rest = [p for n, p in named if ".pam." not in f".{n}"]
    if pam_lr_mult == 1.0 or not pam:
        return [{"params": rest + pam}]
    return [{"params": rest}, {"params": pam, "lr": lr * pam_lr_mult}]


def read_configured_dataset(cfg: Config) -> ReidDataset:
    """The dataset of ``cfg.data``, with its test subset (VehicleID size, VERI-Wild size) if set."""
    kwargs: dict = {}
    subset = cfg.data.test_subset
    if subset is not None:
        if cfg.data.dataset == "vehicleid":
            if subset not in ("800", "1600", "2400"):
                raise PganError(f"data.test_subset for vehicleid must be 800, 1600 or 2400, got {subset!r}")
            kwargs["test_size"] = int(subset)
        elif cfg.data.dataset == "veriwild":
            kwargs["size"] = subset
        else:
            raise PganError(f"data.test_subset applies to vehicleid and veriwild, not {cfg.data.dataset!r}")
    return read_dataset(cfg.data.dataset, cfg.data.root, **kwargs)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_run_info(run_dir: Path, cfg: Config) -> None:
    atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    atomic_write_json(run_dir / "run_info.json", {
        "git_commit": _git_commit(), "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "python": platform.python_version(), "host": platform.node(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S")})


def train(cfg: Config, resume: bool = False) -> dict:
    """Train ``cfg`` and evaluate it after the last epoch; returns the final metrics and timing.

    Under ``torchrun`` every process runs this; rank 0 alone evaluates, logs and
    writes checkpoints (see :mod:`pgan.engine.distributed` for the batch rule).
    """
    validate_config(cfg)
    seed_everything(cfg.run.seed)
    info, device = init_distributed(resolve_device(cfg.run.device))
    try:
        return _train(cfg, resume, info, device)
    finally:
        if info.enabled:
            cleanup()


def check_splits(ds: ReidDataset) -> None:
    """Every split a run needs (train for the steps, query and gallery for the evaluation) has images."""
    for split in ("train", "query", "gallery"):
        if not getattr(ds, split):
            raise PganError(f"dataset {ds.name!r} at {ds.root} has no {split} images; a training run needs "
                            f"train, query and gallery images")


def stored_config(cfg: Config) -> dict:
    """``cfg`` as stored in checkpoints: paths made absolute, so ``pgan eval`` works from any folder."""
    d = cfg.to_dict()
    for section, key in (("data", "root"), ("data", "part_file"), ("data", "part_cache"), ("data", "mask_root"),
                         ("run", "out_dir")):
        if d[section][key]:
            d[section][key] = str(Path(d[section][key]).expanduser().resolve())
    return d


def _train(cfg: Config, resume: bool, info, device: torch.device) -> dict:
    run_dir = Path(cfg.run.out_dir)
    if not info.is_main:
        return _train_locked(cfg, resume, info, device, None)
    with RunLock(run_dir):  # one writer per run folder; released on any exit
        remove_stale_temporaries(run_dir)
        ckpt = None
        if resume:
            if not (run_dir / "last.pt").is_file():
                raise PganError(f"--resume: no checkpoint at {run_dir / 'last.pt'}")
            ckpt = load_checkpoint(run_dir / "last.pt")
            check_resume_config(ckpt, cfg, run_dir)  # before anything in the folder is rewritten
        return _train_locked(cfg, resume, info, device, ckpt)


def _train_locked(cfg: Config, resume: bool, info, device: torch.device, ckpt: dict | None) -> dict:
    run_dir = Path(cfg.run.out_dir)
    if resume and ckpt is None and not (run_dir / "last.pt").is_file():
        raise PganError(f"--resume: no checkpoint at {run_dir / 'last.pt'}")
    if cfg.run.sync_bn and info.enabled and device.type != "cuda":
        raise PganError("run.sync_bn=true needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel); "
                        "set run.sync_bn=false")
    d = cfg.data
    # Checked before any work starts: the sampler shards identities over processes.
    if d.p % info.world_size:
        raise PganError(f"data.p={d.p} identities per global batch is not divisible by the "
                        f"world size {info.world_size}")
    ds = read_configured_dataset(cfg)
    check_splits(ds)
    train_records, _ = relabel(ds.train)
    num_classes = len({r.pid for r in train_records})
    parts = build_part_source(cfg)
    model = build_network(cfg, num_classes)
    feat = feature_size(model.backbone, tuple(d.input_size))
    train_set = ReidImageDataset(train_records, tuple(d.input_size), feat, parts, train=True,
                                 cache=d.cache_images, flip_p=d.flip_p, erase_p=d.erase_p,
                                 progress=cfg.run.progress and info.is_main, workers=d.workers,
                                 role_scores=oracle_scores(train_records, parts, cfg))
    sampler = IdentityBatchSampler(train_set.pids, d.p, d.k, seed=cfg.run.seed,
                                   world_size=info.world_size, rank=info.rank, epoch=d.epoch)
    loader = _loader(train_set, cfg, batch_sampler=sampler)
    sets = build_eval_sets(cfg, ds, parts, feat) if info.is_main else None
    model.to(device)
    if info.enabled:
        if cfg.run.sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    o = cfg.optim
    optimizer = torch.optim.Adam(param_groups(model, o.lr, o.pam_lr_mult), lr=o.lr, betas=tuple(o.betas),
                                 weight_decay=o.weight_decay)
    loss_fn = PganLoss(cfg.loss.lambda_ce, cfg.loss.margin, cfg.loss.label_smoothing, tuple(cfg.loss.terms),
                       gather=gather_for_mining if info.enabled else None)

    def schedule(e: float) -> float:
        return lr_factor(e, o.warmup_epochs, o.warmup_factor, tuple(o.milestones), o.gamma)

    def evaluate(mdl: torch.nn.Module) -> dict:
        return evaluate_sets(mdl, sets, cfg, device) if sets is not None else {}

    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_run_info(run_dir, cfg)
    trainer = Trainer(model, loss_fn, optimizer, loader, device, o.epochs, schedule, run_dir,
                      amp=cfg.run.amp, progress=cfg.run.progress, evaluate=evaluate,
                      eval_every=cfg.run.eval_every, is_main=info.is_main,
                      checkpoint_every=cfg.run.checkpoint_every,
                      extra_state={"config": stored_config(cfg), "num_classes": num_classes,
                                   "world_size": info.world_size})
    if resume:
        trainer.resume(ckpt if ckpt is not None else run_dir / "last.pt")
    tb = TensorBoardLogger(run_dir, purge_step=trainer.start_epoch + 1) if cfg.run.tensorboard and info.is_main \
        else None
    if tb is not None:
        trainer.epoch_hooks.append(tb)
    try:
        history = trainer.fit()
    finally:
        if tb is not None:
            tb.close()
    # Summed per-epoch times, so a resumed run reports its whole training time.
    train_seconds = float(sum(h.get("seconds", 0.0) for h in history))
    final = {k[5:]: v for k, v in history[-1].items() if k.startswith("eval_")} if history else {}
    result = {"variant": cfg.model.variant, "metrics": final, "train_seconds": train_seconds,
              "epochs": o.epochs, "num_classes": num_classes, "world_size": info.world_size}
    if info.is_main:
        atomic_write_json(run_dir / "result.json", result)
    return result


def load_trained(checkpoint: str | Path, device: torch.device | None = None) -> tuple[ReidNet, Config]:
    """Rebuild a trained network (and its config) from a checkpoint written by :func:`train`."""
    from pgan.config import restore_config

    ckpt = load_checkpoint(checkpoint)
    if "config" not in ckpt or "num_classes" not in ckpt:
        raise PganError(f"{checkpoint} is not a pgan training checkpoint (no config inside)")
    cfg = restore_config(ckpt["config"], str(checkpoint))  # keys it lacks: as trained (LEGACY_DEFAULTS)
    model = build_network(cfg, ckpt["num_classes"], pretrained=False)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise PganError(f"{checkpoint}: weights do not fit variant {cfg.model.variant!r} "
                        f"with backbone {cfg.model.backbone!r}: {str(exc).splitlines()[0]}") from None
    model.to(device or torch.device("cpu")).eval()
    return model, cfg


def evaluate_checkpoint(checkpoint: str | Path, overrides: list[str] | None = None) -> dict:
    """Evaluate a checkpoint on its dataset's query/gallery (overrides can point at other data)."""

    model, cfg = load_trained(checkpoint)
    apply_overrides(cfg, overrides or [])
    device = resolve_device(cfg.run.device)
    model.to(device)
    ds = read_configured_dataset(cfg)
    parts = build_part_source(cfg)
    feat = feature_size(model.backbone, tuple(cfg.data.input_size))
    metrics = evaluate_sets(model, build_eval_sets(cfg, ds, parts, feat), cfg, device)
    log.info("%s", json.dumps(metrics))
    return metrics
