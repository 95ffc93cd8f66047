"""Resumable part extraction over a whole dataset -> the part-box file.

:func:`run_extraction` is the shared loop (the detector in :mod:`pgan.detection.extract`,
the proposals and the grid all use it): it lists every image of every split, skips those the output
file already holds, decodes the rest in batches on a thread pool, asks a
``boxes_fn`` for their boxes and appends one line per image (flushed to disk
after every batch). An interrupted run keeps everything written; a truncated
last line is cut off before appending. Unreadable images are logged, counted
and skipped (they are retried on the next run).

Example::

    report = write_grid_file("synth", "data/synth", "data/synth/parts_grid.jsonl")
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from pgan.data.datasets import read_dataset
from pgan.data.records import ImageRecord
from pgan.errors import PganError
from pgan.parts.boxfile import ImageParts, PartBox, append_part_lines, check_part_file_owner, read_part_file
from pgan.parts.masks import grid_boxes
from pgan.utils.images import load_rgb

__all__ = ["BoxesFn", "ExtractReport", "dataset_images", "repair_tail", "run_extraction",
           "write_grid_file"]

log = logging.getLogger(__name__)

BoxesFn = Callable[[list[torch.Tensor]], list[list[PartBox]]]
"""Boxes for a batch of ``uint8 (3, H, W)`` images, in each image's own pixels."""


@dataclass
class ExtractReport:
    """What one extraction run did; ``images_per_s`` counts the images processed in this run."""

    out: str
    total: int
    already: int
    written: int
    corrupt: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["corrupt"] = len(self.corrupt)
        d["images_per_s"] = round(self.images_per_s, 2)
        return d


def dataset_images(dataset: str, root: str | Path) -> list[ImageRecord]:
    """Every image of every split (train, query, gallery), each key once, in split order."""
    ds = read_dataset(dataset, root)
    seen: dict[str, ImageRecord] = {}
    for rec in [*ds.train, *ds.query, *ds.gallery]:
        seen.setdefault(rec.key, rec)
    return list(seen.values())


def repair_tail(path: Path) -> bool:
    """Cut a truncated last line (an interrupted append) off ``path``; True if something was cut."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 1))
        if fh.read(1) == b"\n":
            return False
        block, pos = 65536, size
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                fh.truncate(start + cut + 1)
                return True
            pos = start
        fh.truncate(0)
    return True


def _load(rec: ImageRecord) -> torch.Tensor | None:
    try:
        return load_rgb(rec.path)
    except PganError:
        return None


def run_extraction(records: Sequence[ImageRecord], out: str | Path, boxes_fn: BoxesFn, batch_size: int = 8,
                   progress: bool = True, workers: int = 2, desc: str = "extracting parts") -> ExtractReport:
    """Append part boxes of every record ``out`` lacks (see the module docstring)."""
    out = Path(out)
    if batch_size < 1:
        raise PganError(f"batch size must be >= 1, got {batch_size}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if repair_tail(out):
        log.warning("%s: removed a truncated last line left by an interrupted run", out)
    done = set(read_part_file(out)) if out.is_file() and out.stat().st_size else set()
    todo = [r for r in records if r.key not in done]
    report = ExtractReport(str(out), len(records), len(records) - len(todo), 0)
    if report.already:
        log.info("%s already holds %d of %d images; extracting the other %d", out, report.already,
                 len(records), len(todo))
    t0 = time.perf_counter()
    batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    with ThreadPoolExecutor(max(1, workers)) as pool, \
            tqdm(total=len(todo), desc=desc, unit="img", disable=not progress) as bar:
        ahead: deque = deque()  # decode up to two batches ahead of the model, no more (bounded memory)
        upcoming = iter(batches)

        def submit() -> None:
            b = next(upcoming, None)
            if b is not None:
                ahead.append((b, pool.submit(lambda: [_load(r) for r in b])))

        submit()
        submit()
        while ahead:
            batch, future = ahead.popleft()
            submit()
            images = future.result()
            ok = [(r, im) for r, im in zip(batch, images) if im is not None]
            for r, im in zip(batch, images):
                if im is None:
                    report.corrupt.append(str(r.path))
                    log.warning("cannot read image %s; skipped", r.path)
            if ok:
                boxes = boxes_fn([im for _, im in ok])
                append_part_lines(out, [ImageParts(r.key, int(im.shape[-1]), int(im.shape[-2]), b)
                                        for (r, im), b in zip(ok, boxes)])
                report.written += len(ok)
            bar.update(len(batch))
    report.seconds = time.perf_counter() - t0
    if report.corrupt:
        log.warning("%d unreadable images were skipped (first: %s); rerun to retry them",
                    len(report.corrupt), report.corrupt[0])
    return report


def write_grid_file(dataset: str, root: str | Path, out: str | Path, d: int = 8, progress: bool = True,
                    workers: int = 2) -> ExtractReport:
    """Write :func:`pgan.parts.masks.grid_boxes` for every image of ``dataset`` (resumable)."""
    check_part_file_owner(out, "grid")
    if d < 1:
        raise PganError(f"D (cells per image) must be >= 1, got {d}")

    def fn(images: list[torch.Tensor]) -> list[list[PartBox]]:
        return [grid_boxes(int(im.shape[-1]), int(im.shape[-2]), d) for im in images]

    return run_extraction(dataset_images(dataset, root), out, fn, 64, progress, workers, desc="grid boxes")
