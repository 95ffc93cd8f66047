"""``pgan viz ranks``: rank-list pages for chosen or random queries, one model or two side by side.

Example::

    rank_pages("runs/demo/pgan/last.pt", "runs/viz/ranks", compare="runs/demo/baseline/last.pt")

writes ``ranks_page01.png ...`` (4 queries a page), ``ranks.json`` (top-K keys,
hits and AP of every shown query for each model) and ``report.html``.
Ranking follows the dataset's protocol: same-camera images of the query's
vehicle are removed except on VehicleID and VRIC (as in evaluation).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from pgan.config import Config, apply_overrides
from pgan.data.build import read_configured_dataset
from pgan.data.image_dataset import ReidImageDataset
from pgan.data.records import ImageRecord, ReidDataset
from pgan.engine.build import build_part_source
from pgan.engine.extract import extract_features
from pgan.errors import PganError
from pgan.models.build import mask_size
from pgan.models.network import ReidNet
from pgan.models.trained import load_trained
from pgan.parts.sources import PartSource
from pgan.utils.atomic import atomic_write_json
from pgan.viz.ranklist import RankRow, draw_rank_compare, draw_rank_rows, top_k_valid
from pgan.viz.report_html import Section, prepare_out_dir, write_report

__all__ = ["LoadedRun", "QueryRanking", "average_precision", "find_record", "load_run", "rank_pages",
           "rank_queries", "rank_row", "select_queries"]

log = logging.getLogger(__name__)


@dataclass
class LoadedRun:
    """A trained checkpoint with everything needed to run it on its dataset."""

    checkpoint: Path
    model: ReidNet
    cfg: Config
    dataset: ReidDataset
    parts: PartSource | None
    feat_size: tuple[int, int]

    @property
    def label(self) -> str:
        return f"{self.cfg.model.variant} ({self.checkpoint.parent.name}/{self.checkpoint.name})"

    def image_set(self, records: list[ImageRecord]) -> ReidImageDataset:
        """Evaluation-mode images (+ part masks) of ``records``."""
        return ReidImageDataset(records, tuple(self.cfg.data.input_size), self.feat_size, self.parts,
                                train=False, progress=False)


def load_run(checkpoint: str | Path, device: torch.device | None = None,
             overrides: list[str] | None = None) -> LoadedRun:
    """Load a checkpoint, its dataset and its part source (errors name the file at fault).

    ``overrides`` (``section.key=value``) change the stored config, e.g. ``data.root=...`` for
    data that moved since training."""
    model, cfg = load_trained(checkpoint, device)
    apply_overrides(cfg, overrides or [])
    ds = read_configured_dataset(cfg)
    parts = build_part_source(cfg)
    feat = mask_size(model, tuple(cfg.data.input_size))
    return LoadedRun(Path(checkpoint), model, cfg, ds, parts, feat)


def find_record(records: list[ImageRecord], name: str) -> ImageRecord | None:
    """The record whose key, file name or file stem is ``name``."""
    for r in records:
        if name in (r.key, Path(r.key).name, Path(r.key).stem):
            return r
    return None


def select_queries(records: list[ImageRecord], num: int = 8, query_ids: list[str] | None = None,
                   seed: int = 0, where: str = "the query set") -> list[ImageRecord]:
    """Queries by image key / file name / vehicle id (its first query image), or ``num`` at random."""
    if not records:
        raise PganError(f"{where} is empty")
    if query_ids:
        out = []
        for qid in query_ids:
            rec = find_record(records, qid)
            if rec is None and qid.isdigit():
                same = sorted((r for r in records if r.pid == int(qid)), key=lambda r: r.key)
                rec = same[0] if same else None
            if rec is None:
                raise PganError(f"query id {qid!r} is not in {where} ({len(records)} images); give an image "
                                f"key like {records[0].key!r}, its file name, or a vehicle id")
            out.append(rec)
        return out
    if num < 1:
        raise PganError(f"--queries must be at least 1, got {num}")
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(records), size=min(num, len(records)), replace=False).tolist())
    return [records[i] for i in pick]


def average_precision(matches: np.ndarray) -> float:
    """AP of one ranked list of booleans (0 when there is no match)."""
    hits = np.flatnonzero(matches)
    if hits.size == 0:
        return 0.0
    return float(np.mean(np.arange(1, hits.size + 1) / (hits + 1)))


@dataclass
class QueryRanking:
    query: ImageRecord
    top: list[ImageRecord]
    correct: list[bool]
    ap: float
    first_hit: int | None  # 1-based rank of the first correct match (None: no match at all)


def rank_queries(run: LoadedRun, queries: list[ImageRecord], k: int, device: torch.device,
                 batch_size: int = 64) -> list[QueryRanking]:
    """Rank the whole gallery for each query with ``run``'s model."""
    gallery = run.image_set(run.dataset.gallery)
    flip = run.cfg.run.flip_test
    q = extract_features(run.model, DataLoader(run.image_set(queries), batch_size=batch_size), device, flip,
                         progress=False)
    g = extract_features(run.model, DataLoader(gallery, batch_size=batch_size), device, flip, progress=False)
    remove_same_camera = run.cfg.data.dataset not in ("vric", "vehicleid")
    out = []
    for i, qr in enumerate(queries):
        order = top_k_valid(q.feats[i], g.feats, qr.pid, qr.camid, g.pids, g.camids, len(g.pids),
                            remove_same_camera)
        matches = g.pids[order] == qr.pid
        hits = np.flatnonzero(matches)
        top = [gallery.records[j] for j in order[:k]]
        out.append(QueryRanking(qr, top, [bool(m) for m in matches[:k]], average_precision(matches),
                                int(hits[0]) + 1 if hits.size else None))
    return out


def rank_row(r: QueryRanking) -> RankRow:
    """The figure row of one ranked query."""
    q = r.query
    return RankRow(q.path, f"query id{q.pid} c{q.camid}", [g.path for g in r.top],
                   [f"{i}. id{g.pid} c{g.camid}" for i, g in enumerate(r.top, 1)], r.correct)


def _check_same_data(a: LoadedRun, b: LoadedRun) -> None:
    da, db = a.cfg.data, b.cfg.data
    if da.dataset != db.dataset or Path(da.root).resolve() != Path(db.root).resolve():
        raise PganError(f"--compare {b.checkpoint} was trained on {db.dataset} at {db.root} but {a.checkpoint} "
                        f"on {da.dataset} at {da.root}; side-by-side rank lists need the same query and gallery")


def rank_pages(checkpoint: str | Path, out_dir: str | Path, compare: str | Path | None = None,
               num_queries: int = 8, query_ids: list[str] | None = None, k: int = 5, per_page: int = 4,
               seed: int = 0, size: int = 112, overrides: list[str] | None = None) -> dict:
    """Write rank-list pages, ``ranks.json`` and ``report.html`` into ``out_dir``; returns the summary.

    With ``compare`` each row shows ``compare``'s top-K on the left and
    ``checkpoint``'s on the right (e.g. baseline vs PGAN, as in the paper's Fig. 9).
    ``overrides`` apply to both checkpoints' configs (see :func:`load_run`).
    """
    if k < 1 or per_page < 1:
        raise PganError(f"--k and the queries per page must be at least 1 (got k={k}, per_page={per_page})")
    out = prepare_out_dir(out_dir)
    device = torch.device("cpu")
    main = load_run(checkpoint, device, overrides)
    runs = [main]
    if compare is not None:
        other = load_run(compare, device, overrides)
        _check_same_data(main, other)
        runs = [other, main]
    queries = select_queries(main.dataset.query, num_queries, query_ids, seed,
                             f"the query set of {main.cfg.data.root}")
    rankings = [rank_queries(run, queries, k, device) for run in runs]
    labels = [run.label for run in runs]
    pages = []
    for p, start in enumerate(range(0, len(queries), per_page), 1):
        name = f"ranks_page{p:02d}.png"
        title = (f"query (blue), top-{k} gallery: green = same vehicle, red = different  "
                 f"[{main.cfg.data.dataset}, page {p}]")
        rows = [[rank_row(r) for r in ranking[start:start + per_page]] for ranking in rankings]
        if len(rows) == 2:
            draw_rank_compare(rows[0], rows[1], out / name, (labels[0], labels[1]), size, title)
        else:
            draw_rank_rows(rows[0], out / name, size, title)
        pages.append(name)
    summary = {
        "checkpoints": [str(run.checkpoint) for run in runs], "models": labels, "k": k,
        "dataset": main.cfg.data.dataset, "root": main.cfg.data.root, "pages": pages,
        "queries": [{"key": q.key, "pid": q.pid, "camid": q.camid,
                     "models": [{"top": [g.key for g in rk[i].top], "correct": rk[i].correct, "ap": rk[i].ap,
                                 "first_hit": rk[i].first_hit} for rk in rankings]}
                    for i, q in enumerate(queries)],
        "mean_ap": [float(np.mean([r.ap for r in rk])) for rk in rankings],
    }
    atomic_write_json(out / "ranks.json", summary)
    header = ["query", "id", "cam"] + [f"{lab}: hits@{k} / AP" for lab in labels]
    table = [header] + [[q.key, str(q.pid), str(q.camid)]
                        + [f"{sum(rk[i].correct)} / {rk[i].ap:.3f}" for rk in rankings]
                        for i, q in enumerate(queries)]
    table.append(["mean AP of these queries", "", ""] + [f"{m:.3f}" for m in summary["mean_ap"]])
    sections = [Section("Queries", [f"Top-{k} gallery images per query; left to right: "
                                    + " | ".join(labels) + "."], table=table, files=["ranks.json"]),
                Section("Rank lists", images=pages)]
    write_report(out, "Rank lists", sections, {"checkpoints": ", ".join(summary["checkpoints"]),
                                               "dataset": f"{main.cfg.data.dataset} at {main.cfg.data.root}"})
    log.info("wrote %d rank-list pages to %s", len(pages), out)
    return summary
