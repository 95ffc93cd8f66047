"""Plain records shared by every dataset reader.

A record is ``(path, pid, camid)`` plus the key used to look up its part boxes;
a dataset is three lists of records (train, query, gallery). Readers never reuse
the camera slot for anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ImageRecord", "ReidDataset", "relabel"]


@dataclass(frozen=True)
class ImageRecord:
    """One image: where it is, whose it is, which camera took it.

    ``key`` is the path relative to the dataset root in POSIX form; part-box
    files are indexed by it.
    """

    path: Path
    pid: int
    camid: int
    key: str


@dataclass
class ReidDataset:
    """A re-ID dataset split into train / query / gallery records."""

    name: str
    root: Path
    train: list[ImageRecord]
    query: list[ImageRecord]
    gallery: list[ImageRecord]
    meta: dict = field(default_factory=dict)

    @property
    def num_train_pids(self) -> int:
        return len({r.pid for r in self.train})

    def summary(self) -> str:
        def line(name: str, recs: list[ImageRecord]) -> str:
            return (
                f"  {name:<8} ids {len({r.pid for r in recs}):>6}  images {len(recs):>7}  "
                f"cameras {len({r.camid for r in recs}):>4}"
            )

        return "\n".join(
            [f"dataset {self.name} at {self.root}", line("train", self.train),
             line("query", self.query), line("gallery", self.gallery)]
        )


def relabel(records: list[ImageRecord]) -> tuple[list[ImageRecord], dict[int, int]]:
    """Map training identities to contiguous labels 0..N-1 (sorted by original id)."""
    mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    out = [ImageRecord(r.path, mapping[r.pid], r.camid, r.key) for r in records]
    return out, mapping
