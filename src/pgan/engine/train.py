"""``pgan train``: from a :class:`pgan.config.Config` to a trained, evaluated run folder.

``train(cfg)`` is what ``pgan train`` calls: it builds the objects (:mod:`pgan.engine.build`,
:mod:`pgan.models.build`, :mod:`pgan.data.build`), runs the :class:`~pgan.engine.trainer.Trainer` and
evaluates with :func:`pgan.engine.evaluate.evaluate_sets`.
"""

from __future__ import annotations

import platform
import subprocess
import time
from pathlib import Path

import torch

from pgan.config import Config, dump_config
from pgan.data.build import read_configured_dataset
from pgan.data.image_dataset import ReidImageDataset
from pgan.data.records import ReidDataset, relabel
from pgan.data.sampler import IdentityBatchSampler
from pgan.engine.build import build_eval_sets, build_loader, build_part_source, oracle_scores, validate_config
from pgan.engine.checkpoint import unwrap
from pgan.engine.distributed import cleanup, gather_for_mining, init_distributed
from pgan.engine.evaluate import evaluate_sets
from pgan.engine.run_folder import RunLock, check_resume_config, remove_stale_temporaries
from pgan.engine.schedule import lr_factor
from pgan.engine.tensorboard import TensorBoardLogger
from pgan.engine.trainer import Trainer
from pgan.errors import PganError
from pgan.losses.combined import PganLoss
from pgan.models.build import build_network, mask_size
from pgan.models.part_attention import temperature_warmup_scale
from pgan.models.trained import load_checkpoint
from pgan.utils.atomic import atomic_write_json, atomic_write_text
from pgan.utils.device import resolve_device
from pgan.utils.seeding import seed_everything

__all__ = ["check_splits", "param_groups", "stored_config", "temperature_hooks", "train", "write_run_info"]


def param_groups(model: torch.nn.Module, lr: float, pam_lr_mult: float = 1.0,
                 box_lr_mult: float = 1.0) -> list[dict]:
    """Trainable parameters; the PAM's in their own group at ``lr * pam_lr_mult`` when that is not 1, and
    the part box head's (``model.box_head``) in its own at ``lr * box_lr_mult``: it learns from scratch
    within a schedule made for fine-tuning a pretrained backbone, on a detached map, so its rate is its own."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    box = [p for n, p in named if ".part_box_head." in f".{n}"]
    named = [(n, p) for n, p in named if ".part_box_head." not in f".{n}"]
    pam = [p for n, p in named if ".pam." in f".{n}"]
    rest = [p for n, p in named if ".pam." not in f".{n}"]
    groups = [{"params": rest + pam}] if pam_lr_mult == 1.0 or not pam else [
        {"params": rest}, {"params": pam, "lr": lr * pam_lr_mult}]
    return groups + ([{"params": box, "lr": lr * box_lr_mult}] if box else [])


def temperature_hooks(model: torch.nn.Module, cfg: Config) -> list:
    """The step hook of ``model.temperature_warmup`` (none when it is off or the model has no PAM): sets the
    PAM's ``temperature_scale`` from the fractional epoch, so a resumed run sets the same value."""
    pam = getattr(unwrap(model), "pam", None)
    warm, t = cfg.model.temperature_warmup, cfg.model.temperature
    if pam is None or warm <= 0:
        return []

    def hook(epoch: float) -> None:
        pam.temperature_scale = temperature_warmup_scale(epoch, warm, t)

    return [hook]


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
    feat = mask_size(model, tuple(d.input_size))  # where the part masks live
    train_set = ReidImageDataset(train_records, tuple(d.input_size), feat, parts, train=True,
                                 cache=d.cache_images, flip_p=d.flip_p, erase_p=d.erase_p,
                                 progress=cfg.run.progress and info.is_main, workers=d.workers,
                                 role_scores=oracle_scores(train_records, parts, cfg))
    sampler = IdentityBatchSampler(train_set.pids, d.p, d.k, seed=cfg.run.seed,
                                   world_size=info.world_size, rank=info.rank, epoch=d.epoch)
    loader = build_loader(train_set, cfg, batch_sampler=sampler)
    sets = build_eval_sets(cfg, ds, parts, feat) if info.is_main else None
    model.to(device)
    if info.enabled:
        if cfg.run.sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    o = cfg.optim
    optimizer = torch.optim.Adam(param_groups(model, o.lr, o.pam_lr_mult, o.box_lr_mult), lr=o.lr,
                                 betas=tuple(o.betas), weight_decay=o.weight_decay)
    loss_fn = PganLoss(cfg.loss.lambda_ce, cfg.loss.margin, cfg.loss.label_smoothing, tuple(cfg.loss.terms),
                       gather=gather_for_mining if info.enabled else None,
                       entropy_floor=cfg.loss.entropy_floor, entropy_weight=cfg.loss.entropy_weight,
                       part_id_weight=cfg.loss.part_id_weight, box_weight=cfg.loss.box_weight,
                       mask_mode=cfg.data.mask_mode)

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
                      checkpoint_every=cfg.run.checkpoint_every, step_hooks=temperature_hooks(model, cfg),
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
