"""Training the part detector: resumable, time-budgeted, checkpointed atomically.

``train_detector`` runs SGD (momentum 0.9) with a linear warm-up and a cosine
decay over the run's progress, where progress is the larger of the epochs done
and the time budget spent (so a ``minutes`` budget still ends with a low
learning rate). ``<out>/last.pt`` is rewritten atomically after every epoch,
when the budget runs out and on Ctrl-C; ``resume=True`` continues from it at
the same batch of the same epoch (the batch order depends only on the seed and
epoch; the random flips are not replayed) and within the same total budget.

Example::

    samples = read_voc(["data/synth/annotations_voc/image_train"])[0]
    train_detector(samples, "runs/detector", TrainSettings(epochs=12))
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from pgan.detection.data import DetectionDataset, DetectionSample, collate
from pgan.detection.model import (
    DetectorConfig,
    build_detector,
    detector_checkpoint,
    read_checkpoint,
)
from pgan.errors import PganError
from pgan.utils.atomic import atomic_torch_save
from pgan.utils.device import resolve_device
from pgan.utils.seeding import seed_everything

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    """Optimisation settings of ``pgan parts train`` (``minutes``: an optional wall-clock budget)."""

    epochs: int = 12
    batch_size: int = 8
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 100
    minutes: float | None = None
    seed: int = 0
    device: str = "cpu"
    pretrained: bool = True
    cache_images: bool = False  # keep decoded images in RAM (small data sets only)
    progress: bool = True
    max_steps: int | None = None  # stop after this many steps in this call (smoke tests)


def lr_factor(step: int, progress: float, warmup_iters: int) -> float:
    """Linear warm-up from 0.001x over ``warmup_iters`` steps, then cosine to 0.01x as progress -> 1."""
    warm = min(1.0, 0.001 + (1 - 0.001) * step / warmup_iters) if warmup_iters > 0 else 1.0
    cos = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return warm * cos


def _train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, params: list, batch: tuple,
                device: torch.device, lr: float) -> dict[str, float]:
    """One SGD step on ``batch = (images, targets)``; returns the loss terms and their sum."""
    images = [im.to(device) for im in batch[0]]
    targets = [{k: v.to(device) for k, v in t.items()} for t in batch[1]]
    for g in opt.param_groups:
        g["lr"] = lr
    losses = model(images, targets)
    loss = sum(losses.values())
    if not torch.isfinite(loss):
        raise PganError(f"detector loss became {loss.item()}; lower the learning rate (--lr, now {lr:.4g} "
                        f"in this step)")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 10.0)
    opt.step()
    return {**{k: float(v.detach()) for k, v in losses.items()}, "loss": float(loss.detach())}


def _record(history: list[dict], epoch: int, sums: dict[str, float], count: int, spent: float,
            done: bool) -> None:
    """Add this call's mean losses of ``epoch`` to ``history``, merged with a partial entry of a resumed run."""
    if not count:
        return
    prev = history.pop() if history and history[-1].get("partial") and history[-1]["epoch"] == epoch + 1 else None
    before = int(prev.get("steps", 0)) if prev else 0
    total = count + before
    means = {k: (v + (prev.get(k, 0.0) * before if prev else 0.0)) / total for k, v in sums.items()}
    history.append({"epoch": epoch + 1, **means, "steps": total, "train_seconds": round(spent, 1),
                    **({} if done else {"partial": True})})


def train_detector(samples: list[DetectionSample], out_dir: str | Path, settings: TrainSettings,
                   cfg: DetectorConfig | None = None, resume: bool = False) -> dict:
    """Train on ``samples``; returns ``{"epochs_done", "steps", "train_seconds", "history", "checkpoint"}``."""
    out = Path(out_dir)
    ckpt_path = out / "last.pt"
    s = settings
    if s.batch_size < 1 or s.epochs < 1 or s.lr <= 0:
        raise PganError(f"batch_size ({s.batch_size}) and epochs ({s.epochs}) must be >= 1, lr ({s.lr}) > 0")
    state: dict = {}
    if resume:
        if not ckpt_path.is_file():
            raise PganError(f"--resume: no detector checkpoint at {ckpt_path}")
        state = read_checkpoint(ckpt_path)
        cfg = DetectorConfig.from_dict(state["config"])
    cfg = cfg or DetectorConfig()
    known = set(cfg.classes)
    if not any(lab in known for smp in samples for lab in smp.labels):
        raise PganError(f"no annotated box uses the detector's classes ({', '.join(cfg.classes[:5])}, ...)")
    seed_everything(s.seed)
    device = resolve_device(s.device, '--device')
    model = build_detector(cfg, pretrained=s.pretrained and not resume).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    epoch, step_in_epoch, global_step = 0, 0, 0
    spent, history = 0.0, []
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        epoch, step_in_epoch = state["epoch"], state["step_in_epoch"]
        global_step, spent, history = state["global_step"], state["train_seconds"], state["history"]
    data = DetectionDataset(samples, cfg.classes, train=True, cache=s.cache_images, seed=s.seed)
    steps_per_epoch = math.ceil(len(data) / s.batch_size)
    total_steps = steps_per_epoch * s.epochs
    budget = s.minutes * 60 if s.minutes else None

    def save() -> None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(detector_checkpoint(
            model, cfg, optimizer=opt.state_dict(), epoch=epoch, step_in_epoch=step_in_epoch,
            global_step=global_step, train_seconds=spent, history=history, settings=asdict(s)), ckpt_path)

    model.train()
    t_start, spent0, calls = time.perf_counter(), spent, 0
    stop = bool(budget and spent >= budget)  # a resumed run whose budget is already spent
    try:
        while epoch < s.epochs and not stop:
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(s.seed * 1000 + epoch))
            batches = order.split(s.batch_size)
            sums: dict[str, float] = {}
            counted = 0
            bar = tqdm(total=len(batches), initial=step_in_epoch, desc=f"detector epoch {epoch + 1}/{s.epochs}",
                       unit="batch", disable=not s.progress, leave=False)
            for idx in batches[step_in_epoch:]:
                progress = max(global_step / total_steps, (spent / budget) if budget else 0.0)
                lr = s.lr * lr_factor(global_step, progress, s.warmup_iters)
                losses = _train_step(model, opt, params, collate([data[int(i)] for i in idx]), device, lr)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                counted += 1
                step_in_epoch += 1
                global_step += 1
                calls += 1
                spent = spent0 + time.perf_counter() - t_start
                bar.update(1)
                bar.set_postfix(loss=f"{losses['loss']:.3f}", lr=f"{lr:.4f}")
                if (budget and spent >= budget) or (s.max_steps and calls >= s.max_steps):
                    stop = True
                    break
            bar.close()
            _record(history, epoch, sums, counted, spent, done=step_in_epoch >= len(batches))
            if step_in_epoch >= len(batches):
                log.info("detector epoch %d/%d: loss %.4f (%.0f s)", epoch + 1, s.epochs, history[-1]["loss"],
                         spent)
                epoch, step_in_epoch = epoch + 1, 0
            save()
    except KeyboardInterrupt:
        save()  # every finished step is kept; --resume continues from here
        raise
    return {"epochs_done": epoch, "steps": global_step, "train_seconds": spent, "history": history,
            "checkpoint": str(ckpt_path), "last_loss": history[-1]["loss"] if history else None}
