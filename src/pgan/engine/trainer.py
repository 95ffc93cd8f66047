"""The training loop: P x K batches, joint loss, AMP on CUDA, per-epoch checkpoints, exact resume.

Model selection: none. ``last.pt`` (the final epoch) is the model; evaluation during training
(``run.eval_every``) is for curves only, since the evaluation data is the test split.

Resume is exact because every random choice is a function of saved state: the
sampler's batches depend only on (seed, epoch), the learning rate only on the
fractional epoch, and the torch/numpy/python RNG states (flip, erasing) are in
the checkpoint. An interrupted run loses at most the epoch in progress, or, with
``checkpoint_every=N`` (``run.checkpoint_every``), at most N steps: every N steps inside an epoch
``last.pt`` is rewritten (atomically) with the step reached, the sampler's position, the epoch's
running loss sums and the RNG states; ``--resume`` then skips the batches already drawn in that
epoch. Such a resume is exact when batches are loaded in the main process (``data.workers=0`` or
``data.cache_images=true``); with loader worker processes the batch order is exact, but flips and
erasing for the rest of that one epoch come from fresh worker seeds (their RNG states live in the
workers, ahead of the training step, and cannot be saved).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from pgan.engine.checkpoint import rng_state, save_checkpoint, set_rng_state, unwrap
from pgan.errors import PganError
from pgan.losses.combined import PganLoss
from pgan.models.trained import load_checkpoint
from pgan.utils.atomic import atomic_write_text

log = logging.getLogger(__name__)


class Trainer:
    def __init__(self, model: torch.nn.Module, loss_fn: PganLoss, optimizer: torch.optim.Optimizer,
                 loader: DataLoader, device: torch.device, epochs: int,
                 schedule: Callable[[float], float] = lambda e: 1.0, run_dir: str | Path | None = None,
                 amp: bool = True, progress: bool = True,
                 evaluate: Callable[[torch.nn.Module], dict] | None = None, eval_every: int = 0,
                 is_main: bool = True, extra_state: dict | None = None,
                 epoch_hooks: list[Callable[[dict], None]] | None = None, checkpoint_every: int = 0,
                 step_hooks: list[Callable[[float], None]] | None = None) -> None:
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.loader, self.device, self.epochs = loader, device, epochs
        self.schedule = schedule
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.use_amp = amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.progress = progress and is_main
        self.evaluate, self.eval_every = evaluate, eval_every
        self.is_main = is_main
        self.extra_state = extra_state or {}
        self.epoch_hooks = list(epoch_hooks or [])  # called with each epoch's metrics row (main process)
        self.checkpoint_every = checkpoint_every  # steps between mid-epoch checkpoints (0: off)
        # called with the fractional epoch before every step (schedules other than the lr's); they must be
        # functions of that value alone, so that a resumed run sets the same values
        self.step_hooks = list(step_hooks or [])
        self.start_epoch = 0
        self.history: list[dict] = []
        self._partial: dict | None = None  # the interrupted epoch a mid-epoch checkpoint resumes
        self._resume_rng: dict | None = None

    # ----------------------------------------------------------------- state
    def state(self, epoch: int, partial: dict | None = None) -> dict:
        """Everything a resume needs after ``epoch`` finished epochs (and ``partial``: the steps done of
        the next one, with its sampler position and running loss sums; None at an epoch boundary)."""
        return {"model": unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "epoch": epoch, "rng": rng_state(),
                "step_in_epoch": partial["step"] if partial else 0, "partial_epoch": partial,
                "history": self.history, **self.extra_state}

    def resume(self, path: str | Path | dict) -> None:
        """Continue from a checkpoint file (or its already-loaded dict)."""
        ckpt = path if isinstance(path, dict) else load_checkpoint(path)
        unwrap(self.model).load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        self.start_epoch = int(ckpt["epoch"])
        self.history = list(ckpt.get("history", []))
        self._partial = ckpt.get("partial_epoch") or None
        if self._partial is not None:
            # The DataLoader draws its seed from the torch RNG when an epoch's iterator is made; the
            # saved states are put back after that draw (see train_epoch).
            self._resume_rng = ckpt["rng"]
            log.info("resumed at step %d of epoch %d", self._partial["step"], self.start_epoch + 1)
        else:
            log.info("resumed after epoch %d", self.start_epoch)

    def _set_lr(self, epoch_float: float) -> float:
        f = self.schedule(epoch_float)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * f
        return self.optimizer.param_groups[0]["lr"]

    # ------------------------------------------------------------------ loop
    def _step(self, batch: dict) -> dict[str, float]:
        images = batch["image"].to(self.device, non_blocking=True)
        labels = batch["pid"].to(self.device, non_blocking=True)
        masks = batch.get("masks")
        masks = masks.to(self.device, non_blocking=True) if masks is not None else None
        extra = {"role_scores": batch["role_scores"].to(self.device)} if "role_scores" in batch else {}
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
            out = self.model(images, masks, **extra)
        losses = self.loss_fn(out, labels)
        if not torch.isfinite(losses.total):
            raise PganError(f"the loss became {float(losses.total)} ({losses.parts}); "
                            "the last checkpoint is intact; try a lower optim.lr")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses.total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {"loss": float(losses.total.detach()), **losses.parts}

    def train_epoch(self, epoch: int) -> dict:
        self.model.train()
        partial = self._partial if self._partial is not None and int(self._partial["epoch"]) == epoch else None
        self._partial = None
        start = int(partial["step"]) if partial else 0
        sampler = self.loader.batch_sampler
        if start:
            if not hasattr(sampler, "load_state_dict"):
                raise PganError("a mid-epoch checkpoint needs a batch sampler that can skip batches")
            sampler.load_state_dict(partial["sampler"])
        elif hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        n = getattr(sampler, "steps_per_epoch", None) or len(self.loader)
        sums: dict[str, float] = dict(partial["sums"]) if partial else {}
        images_seen = int(partial["images"]) if partial else 0
        seconds_before = float(partial["seconds"]) if partial else 0.0
        t0 = time.perf_counter()
        batches = iter(self.loader)  # draws the loader's seed from the torch RNG
        if partial is not None and self._resume_rng is not None:
            set_rng_state(self._resume_rng)  # the states of the step reached, after that draw
            self._resume_rng = None
        bar = tqdm(batches, total=n, initial=start, disable=not self.progress,
                   desc=f"epoch {epoch + 1}/{self.epochs}", leave=False)
        lr = self.optimizer.param_groups[0]["lr"]
        for it, batch in enumerate(bar, start=start):
            at = epoch + it / max(n, 1)  # the fractional epoch every schedule is a function of
            lr = self._set_lr(at)
            for hook in self.step_hooks:
                hook(at)
            step = self._step(batch)
            for k, v in step.items():
                sums[k] = sums.get(k, 0.0) + v
            images_seen += len(batch["pid"])
            elapsed = seconds_before + time.perf_counter() - t0
            bar.set_postfix(loss=f"{step['loss']:.3f}", img_s=f"{images_seen / max(elapsed, 1e-9):.1f}")
            if self.checkpoint_every and (it + 1) % self.checkpoint_every == 0 and it + 1 < n:
                self._save_step(epoch, {"epoch": epoch, "step": it + 1, "sums": dict(sums),
                                        "images": images_seen, "seconds": elapsed,
                                        "sampler": {"epoch": epoch, "start": it + 1}})
        seconds = seconds_before + time.perf_counter() - t0
        stats = {"epoch": epoch + 1, **{k: v / max(n, 1) for k, v in sums.items()}, "lr": lr,
                 "images_per_s": images_seen / max(seconds, 1e-9), "seconds": seconds}
        return stats

    def fit(self) -> list[dict]:
        for epoch in range(self.start_epoch, self.epochs):
            stats = self.train_epoch(epoch)
            self.history.append(stats)
            self._save_last(epoch + 1)  # before evaluating: a failed evaluation costs no training
            last = epoch + 1 == self.epochs
            if self.evaluate is not None and (last or (self.eval_every and (epoch + 1) % self.eval_every == 0)):
                self._evaluate_into(stats)
                self._save_last(epoch + 1)
            if self.is_main:
                log.info("epoch %d: %s", epoch + 1,
                         " ".join(f"{k}={v:.4g}" for k, v in stats.items() if isinstance(v, float)))
                for hook in self.epoch_hooks:
                    hook(stats)
        if (self.evaluate is not None and self.history and self.start_epoch >= self.epochs
                and not any(k.startswith("eval_") for k in self.history[-1])):
            # Resumed after training finished but its evaluation failed: evaluate now.
            self._evaluate_into(self.history[-1])
            self._save_last(self.epochs)
        return self.history

    def _evaluate_into(self, stats: dict) -> None:
        # Evaluation must not move the training RNG (DataLoaders draw seeds from it), so a
        # run's trajectory does not depend on how often it was evaluated, and resume is exact.
        with torch.random.fork_rng(devices=[]):
            metrics = self.evaluate(self.model)
        stats.update({f"eval_{k}": v for k, v in metrics.items()})
        # No "best" checkpoint: the only labelled held-out data is the test split, and choosing
        # an epoch by its test mAP would leak it. Reports use the final epoch (last.pt).

    def _save_last(self, epochs_done: int) -> None:
        if self.is_main and self.run_dir is not None:
            save_checkpoint(self.run_dir / "last.pt", **self.state(epochs_done))
            self._write_metrics()

    def _save_step(self, epoch: int, partial: dict) -> None:
        """A mid-epoch checkpoint: ``epoch`` finished epochs before this one, and ``partial``'s steps of it."""
        if self.is_main and self.run_dir is not None:
            save_checkpoint(self.run_dir / "last.pt", **self.state(epoch, partial))

    def _write_metrics(self) -> None:
        keys: list[str] = []
        for row in self.history:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        for row in self.history:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else v)
                             for k, v in row.items()})
        atomic_write_text(self.run_dir / "metrics.csv", buf.getvalue())
