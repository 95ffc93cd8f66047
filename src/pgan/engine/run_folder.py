"""A run folder's guards: the single-writer lock, stale temporary files, and resume validation.

* :class:`RunLock`: ``<run>/.pgan.lock`` is created with ``O_EXCL`` and holds the
  owner's PID and host. A second trainer on the folder refuses with one line; a lock
  whose process has died (same host) is taken over with a warning. The ablation
  harness's ``.claim`` file (:mod:`pgan.bench.ablation`) is a different file that the
  harness takes *before* it calls the trainer, and neither ever waits for the other,
  so one process holding both cannot deadlock.
* :func:`remove_stale_temporaries`: ``.last.pt.*.tmp`` and similar files that
  :func:`pgan.utils.atomic.atomic_open` leaves when a process is killed mid-write.
* :func:`check_resume_config`: the keys that differ between a checkpoint's config and
  the config asked for, checked before anything in the folder is written.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from pgan.config import LEGACY_DEFAULTS, Config
from pgan.errors import PganError

log = logging.getLogger(__name__)

LOCK_NAME = ".pgan.lock"

RESUME_FREE_KEYS = frozenset({
    "optim.epochs",  # training longer is what resuming is for
    "run.out_dir", "run.progress", "run.device", "run.eval_every", "run.flip_test", "run.rerank",
    "run.checkpoint_every",
    "data.workers", "data.cache_images",
    "data.root", "data.part_file", "data.part_cache", "data.mask_root",  # data may move between machines
})
"""Config keys a resumed run may change; any other difference is refused."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    except OSError as exc:
        return exc.errno != errno.ESRCH
    return True


class RunLock:
    """Exclusive use of a run folder by one process (see the module docstring).

    Example::

        with RunLock("runs/pgan"):
            ...  # train, write checkpoints
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.held = False

    def acquire(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        host = socket.gethostname()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:
                    raise PganError(f"run folder {self.run_dir} has an unreadable lock {self.path}; "
                                    f"delete it if no pgan process uses this folder") from None
                pid, their_host = holder
                if their_host != host:
                    raise PganError(f"run folder {self.run_dir} is locked by process {pid} on host "
                                    f"{their_host}; if that process is gone, delete {self.path}") from None
                if _alive(pid):
                    raise PganError(f"run folder {self.run_dir} is in use by process {pid} (lock {self.path}); "
                                    f"wait for it to finish or choose another run.out_dir") from None
                log.warning("run folder %s: taking over the lock of process %d, which is no longer running",
                            self.run_dir, pid)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump({"pid": os.getpid(), "host": host}, fh)
            self.held = True
            return self
        raise PganError(f"run folder {self.run_dir}: could not take the lock {self.path} (contended)")

    def _holder(self) -> tuple[int, str] | None:
        try:
            data = json.loads(self.path.read_text())
            return int(data["pid"]), str(data["host"])
        except FileNotFoundError:
            return 0, socket.gethostname()  # released meanwhile: pid 0 is never alive -> retry
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        holder = self._holder()
        if holder is not None and holder[0] == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_temporaries(run_dir: str | Path) -> int:
    """Delete ``.<name>.*.tmp`` files an interrupted atomic write left in ``run_dir`` (hold the lock first)."""
    removed = 0
    for tmp in Path(run_dir).glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed += 1
    if removed:
        log.warning("run folder %s: removed %d temporary files left by an interrupted write", run_dir, removed)
    return removed


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(saved: dict, cfg: Config, free: frozenset[str] = RESUME_FREE_KEYS) -> list[str]:
    """``key=saved (now new)`` for every key (outside ``free``) where ``cfg`` differs from ``saved``.

    Keys the saved config lacks (added to pgan later) are compared with the value they were trained
    with: their default, or their old default where it changed (:data:`pgan.config.LEGACY_DEFAULTS`).
    """
    now = _flat(cfg.to_dict())
    before = {**_flat(Config().to_dict()), **LEGACY_DEFAULTS, **_flat(saved)}
    return [f"{k}={before.get(k)!r} (now {v!r})" for k, v in now.items()
            if k not in free and before.get(k) != v]


def check_resume_config(checkpoint: dict, cfg: Config, run_dir: str | Path) -> None:
    """Refuse (one line naming the keys) to resume ``checkpoint`` with a config that trains something else."""
    saved = checkpoint.get("config")
    if not isinstance(saved, dict):
        raise PganError(f"--resume: {Path(run_dir) / 'last.pt'} is not a pgan training checkpoint (no config)")
    diff = config_differences(saved, cfg)
    if diff:
        raise PganError(f"--resume: {run_dir} was trained with other settings: {', '.join(diff)}; resume with "
                        f"the same settings or choose another run.out_dir")
