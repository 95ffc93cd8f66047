"""Searching an index with photos: embed them with the index's model, query, optionally draw.

Example::

    results = search_images("runs/gallery", ["query.jpg"], topk=5)
    results[0].hits[0].path, results[0].hits[0].score
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pgan.index.gallery import entry_from_name
from pgan.index.store import GalleryIndex, Hit
from pgan.inference.extractor import FeatureExtractor
from pgan.parts.boxfile import PartBox

__all__ = ["QueryResult", "draw_results", "extractor_for", "search_images"]


@dataclass
class QueryResult:
    query: str
    hits: list[Hit]
    query_boxes: list[PartBox]

    def json_lines(self) -> list[dict]:
        return [{"query": self.query, **h.to_dict()} for h in self.hits]


def extractor_for(index: GalleryIndex, checkpoint: str | Path | None = None, parts: str | Path | None = None,
                  device: str = "auto", runtime: str = "torch", onnx_path: str | Path | None = None,
                  threads: int = 0) -> FeatureExtractor:
    """The extractor the index was built with (its checkpoint, part setting, flip), checked against it
    (``threads``: onnxruntime's intra-op threads, see :class:`FeatureExtractor`)."""
    if parts is None and index.meta.get("parts", "model's own") != "model's own":
        parts = index.meta["parts"]
    fx = FeatureExtractor(checkpoint or index.checkpoint, parts=parts, device=device,
                          flip=index.meta.get("flip") == "True", runtime=runtime, onnx_path=onnx_path,
                          threads=threads)
    index.check_model(fx.model_fingerprint, fx.embedding_dim)
    return fx


def search_images(index: str | Path | GalleryIndex, images: Sequence[str | Path], topk: int = 20,
                  camera: int | None = None, exclude_camera: int | None = None, since: str | None = None,
                  until: str | None = None, extractor: FeatureExtractor | None = None,
                  vehicle_id: int | None = None, **extractor_kwargs) -> list[QueryResult]:
    """Top-``topk`` gallery matches of each query photo (see :meth:`GalleryIndex.search`)."""
    idx = index if isinstance(index, GalleryIndex) else GalleryIndex.open(index)
    fx = extractor or extractor_for(idx, **extractor_kwargs)
    idx.check_model(fx.model_fingerprint, fx.embedding_dim)
    emb, boxes = fx.extract_with_parts(list(images))
    hits = idx.search(emb, topk, camera=camera, exclude_camera=exclude_camera, since=since, until=until,
                      vehicle_id=vehicle_id)
    return [QueryResult(str(q), h, b) for q, h, b in zip(images, hits, boxes)]


def draw_results(results: list[QueryResult], out_png: str | Path, size: int = 112) -> Path:
    """One row per query, ``[query | top-1 ... top-k]`` with part boxes; frames green / red where the
    query's vehicle id is known (a VeRi-style name) and the match's too, grey otherwise."""
    from pgan.viz.ranklist import RankRow, draw_rank_rows

    rows = []
    for r in results:
        qid = entry_from_name(Path(r.query)).vehicle_id
        correct = [None if qid is None or h.vehicle_id is None else h.vehicle_id == qid for h in r.hits]
        rows.append(RankRow(Path(r.query), "query" if qid is None else f"query id{qid}",
                            [Path(h.path) for h in r.hits],
                            [f"#{h.rank} {h.score:.3f}" + (f" c{h.camera}" if h.camera is not None else "")
                             for h in r.hits], correct,
                            query_boxes=[[b.x1, b.y1, b.x2, b.y2] for b in r.query_boxes],
                            gallery_boxes=[h.boxes for h in r.hits]))
    return draw_rank_rows(rows, out_png, size=size, title="query (blue) and its top matches with part boxes")
