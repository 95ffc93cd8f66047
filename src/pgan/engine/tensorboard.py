"""TensorBoard scalars for a training run (``run.tensorboard=true``), beside ``metrics.csv``.

:class:`TensorBoardLogger` is an epoch hook of :class:`pgan.engine.trainer.Trainer`: it gets every
epoch's row of ``metrics.csv`` and writes each number as a scalar at step = epoch, ``eval_*`` keys under
``eval/`` and the others (losses, lr, images/s) under ``train/``. A new number in the row (e.g. an
attention statistic) appears in TensorBoard without touching this file. On resume, events at or after
the resumed epoch from an earlier process are purged, so curves do not fold back.

    tensorboard --logdir runs/
"""

from __future__ import annotations

import math
from pathlib import Path

from pgan.errors import PganError

SKIP = ("epoch",)


class TensorBoardLogger:
    """Write an epoch's numbers to ``log_dir``; ``purge_step`` is the first epoch this process writes."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise PganError("run.tensorboard=true needs the tensorboard package: "
                            "pip install 'pgan[tensorboard]'") from None
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    @staticmethod
    def tag(key: str) -> str:
        return f"eval/{key[5:]}" if key.startswith("eval_") else f"train/{key}"

    def __call__(self, stats: dict) -> None:
        step = int(stats["epoch"])
        for key, value in stats.items():
            if key in SKIP or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(self.tag(key), float(value), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
