"""Building and growing a gallery index: batched, resumable, optionally sharded over processes.

:func:`build_index` lists the gallery (:func:`pgan.index.gallery.list_gallery`),
skips every file the index already holds, embeds the rest in batches with a
:class:`pgan.inference.FeatureExtractor` and commits each batch (rows, vectors,
skipped files) to SQLite before starting the next; a killed build therefore
loses at most the batch in flight, and running the same command again embeds
only what is missing. The faiss file is written atomically at the end.

Sharded build: under ``torchrun --nproc_per_node N -m pgan index build ...``
(RANK / WORLD_SIZE set) every rank embeds every N-th missing file into its own
shard database ``INDEX/shards/rank<r>/index.sqlite`` (resumable the same way); after a
barrier rank 0 merges the shards in gallery order, so ids are those a
single-process build would give, and writes the faiss file.

Index type: ``"auto"`` (the default) lets every faiss segment choose by its own row count: exact search
(``Flat``) up to :data:`pgan.index.tuning.AUTO_EXACT_MAX` rows, an inverted file with fast-scan codes and
exact re-scoring beyond (:mod:`pgan.index.tuning` has the measurements); any faiss factory string is
accepted. With ``backend="milvus"`` the vectors go to a Milvus collection instead
(:mod:`pgan.index.milvus`; ``"auto"`` is ``HNSW32`` there, ``Flat`` gives exact search).

:func:`remove_from_index` is the library form of ``pgan index remove`` (by path, id or time).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pgan.errors import NotAnImageError, PganError
from pgan.index.gallery import GalleryEntry, list_gallery
from pgan.index.milvus_gallery import is_handle
from pgan.index.milvus_gallery import parse as parse_handle
from pgan.index.records import ITEM_COLUMNS, hit_from_row
from pgan.index.store import DB_NAME, GalleryIndex, GalleryItem
from pgan.index.tuning import AUTO, auto_index_type
from pgan.inference.extractor import FeatureExtractor
from pgan.inference.images import decode

log = logging.getLogger(__name__)

def choose_index_type(n: int, backend: str = "faiss", dim: int = 512) -> str:
    """What ``index_type="auto"`` builds for a gallery of ``n`` images: on faiss, the type of one segment
    of ``n`` rows of ``dim``-d vectors (each segment chooses by its own rows); on Milvus, its HNSW index."""
    if backend == "milvus":
        return "HNSW32"
    return auto_index_type(n, dim)


@dataclass
class BuildReport:
    """What one build (or add) did; ``images_per_s`` counts the images embedded in this run."""

    index: str
    total: int  # files listed
    already: int  # held by the index before this run
    added: int
    skipped: list[str] = field(default_factory=list)  # unreadable files (also in the index's log)
    seconds: float = 0.0
    index_type: str = ""

    @property
    def images_per_s(self) -> float:
        return self.added / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["skipped"] = len(self.skipped)
        d["images_per_s"] = round(self.images_per_s, 2)
        return d


def _item(entry: GalleryEntry, boxes) -> GalleryItem:
    return GalleryItem(str(entry.path), entry.camera, entry.vehicle_id, entry.timestamp,
                       [[round(b.x1, 2), round(b.y1, 2), round(b.x2, 2), round(b.y2, 2)] for b in boxes])


def embed_into(store: GalleryIndex, entries: list[GalleryEntry], extractor: FeatureExtractor,
               batch_size: int, progress: bool = True, desc: str = "indexing") -> tuple[int, list[str]]:
    """Embed ``entries`` batch by batch into ``store``, one committed transaction per batch."""
    added, skipped = 0, []
    with tqdm(total=len(entries), desc=desc, unit="img", disable=not progress) as bar:
        for i in range(0, len(entries), batch_size):
            batch = entries[i:i + batch_size]
            ok, decoded, bad = [], [], []
            for e in batch:
                try:
                    decoded.append(decode(e.path))
                    ok.append(e)
                except NotAnImageError as exc:
                    bad.append((str(e.path), str(exc)))
                    log.warning("%s; skipped", exc)
            if ok:
                vecs, boxes = extractor.extract_with_parts(decoded)
            else:
                vecs, boxes = np.zeros((0, store.dim), np.float32), []
            store.add_batch([_item(e, b) for e, b in zip(ok, boxes)], vecs, bad)
            added += len(ok)
            skipped += [p for p, _ in bad]
            bar.update(len(batch))
    return added, skipped


def _extractor(checkpoint, extractor, parts, device, batch_size, runtime, onnx_path, flip) -> FeatureExtractor:
    if extractor is not None:
        return extractor
    if checkpoint is None:
        raise PganError("a checkpoint (or an extractor) is needed to embed the gallery")
    return FeatureExtractor(checkpoint, parts=parts, device=device, batch_size=batch_size, runtime=runtime,
                            onnx_path=onnx_path, flip=flip)


def _parts_setting(parts: str | Path | None) -> str:
    """What the index records for ``parts=`` (searches reuse it): a name, or a file's absolute path."""
    if parts is None:
        return "model's own"
    return str(Path(parts).resolve()) if Path(parts).is_file() else str(parts)


def build_index(images: str | Path, out: str | Path, checkpoint: str | Path | None = None,
                index_type: str = "auto", batch_size: int = 32, parts: str | Path | None = None,
                device: str = "auto", runtime: str = "torch", onnx_path: str | Path | None = None,
                params: dict | None = None, progress: bool = True, flip: bool = False,
                extractor: FeatureExtractor | None = None, backend: str | None = None, uri: str | None = None,
                collection: str | None = None, split: str | None = None) -> BuildReport:
    """Build (or resume building) the index ``out`` of the gallery ``images`` (a folder or a CSV).

    ``split``: a CSV with a ``split`` column (the custom-dataset CSV) is indexed only for that split's rows,
    e.g. ``split="gallery"``; such a CSV needs it (:func:`pgan.index.gallery.list_gallery`).

    ``backend``: where the searchable vectors go, ``"faiss"`` (a new index's default; a resumed one
    keeps its own) or ``"milvus"`` with ``uri`` (a Milvus Lite ``.db`` path or ``http://host:19530``)
    and ``collection`` (default ``pgan_<out folder name>``); the metadata stays in ``out/index.sqlite``."""
    from pgan.engine.distributed import barrier, cleanup, env_dist_info, init_distributed
    from pgan.utils.device import resolve_device

    if batch_size < 1:
        raise PganError(f"batch size must be >= 1, got {batch_size}")
    entries = list_gallery(images, split)
    info = env_dist_info()
    if info.enabled:
        _, dev = init_distributed(resolve_device(device, "--device"))
        device = str(dev)
    try:
        handle = is_handle(out)  # milvus://host:port/collection: the whole gallery in Milvus, no folder
        if handle:
            parse_handle(out)  # one line when malformed, before the model loads
            if info.enabled:
                raise PganError("a sharded build writes an index folder; build a milvus:// handle in one process")
            backend = backend or "milvus"
        else:
            out = Path(out)
        if not handle and backend is None and (out / DB_NAME).is_file():  # a resumed build keeps its backend
            with GalleryIndex.open(out) as existing:
                backend = existing.backend
        if not handle and backend == "milvus" and not (out / DB_NAME).is_file():  # settings before the model
            from pgan.index import milvus

            milvus.settings(out, uri, collection, choose_index_type(0, backend) if index_type == "auto"
                            else index_type)
        fx = _extractor(checkpoint, extractor, parts, device, batch_size, runtime, onnx_path, flip)
        kind = "HNSW32" if index_type == AUTO and (handle or backend == "milvus") else index_type
        t0 = time.perf_counter()
        if info.is_main:
            store = GalleryIndex.create(out, fx.embedding_dim, fx.model_fingerprint, fx.checkpoint, kind, params,
                                        backend=None if handle else backend, uri=uri, collection=collection,
                                        source=str(Path(images).resolve()), parts=_parts_setting(fx.parts_arg),
                                        runtime=fx.runtime, flip=str(bool(fx.flip)))
            store.close()
        # Paths already embedded into a shard by an earlier, interrupted sharded run (of any world size), read
        # before any rank writes: nobody embeds them again, so no file can end up in two shards.
        in_shards = _held_by_shards(out) if info.enabled else set()
        barrier()
        main = GalleryIndex.open(out, readonly=not info.is_main)
        done = main.paths()
        todo = [e for e in entries if str(e.path) not in done]
        report = BuildReport(str(out), len(entries), len(entries) - len(todo), 0, index_type=kind)
        if report.already:
            log.info("%s already holds %d of %d files; embedding the other %d", out, report.already,
                     len(entries), len(todo))
        if not info.enabled:
            report.added, report.skipped = embed_into(main, todo, fx, batch_size, progress)
        else:
            shard = _open_shard(out, info.rank, main)
            pending = [e for e in todo if str(e.path) not in in_shards]
            embed_into(shard, pending[info.rank::info.world_size], fx, batch_size, progress and info.is_main,
                       f"indexing (rank {info.rank})")
            shard.close()
            barrier()
            if info.is_main:
                report.added, report.skipped = _merge_shards(main, out, info.world_size, todo)
            barrier()
        if info.is_main:
            main.finalize()
        main.close()
        report.seconds = time.perf_counter() - t0
        if report.skipped:
            log.warning("%d unreadable files were skipped (first: %s); they are listed in %s",
                        len(report.skipped), report.skipped[0], out if handle else out / DB_NAME)
        return report
    finally:
        if info.enabled:
            cleanup()


def _open_shard(out: Path, rank: int, main: GalleryIndex) -> GalleryIndex:
    return GalleryIndex.create(out / "shards" / f"rank{rank}", main.dim, main.model_fingerprint,
                               main.checkpoint, main.index_type, main.params)


def _shard_dirs(out: Path) -> list[Path]:
    """Every shard folder under ``out/shards`` (also those of an earlier run with more processes)."""
    found = [p.parent for p in (out / "shards").glob(f"rank*/{DB_NAME}")]
    return sorted(found, key=lambda p: (len(p.name), p.name))


def _held_by_shards(out: Path) -> set[str]:
    held: set[str] = set()
    for folder in _shard_dirs(out):
        with GalleryIndex.open(folder) as shard:
            held |= shard.paths()
    return held


def _merge_shards(main: GalleryIndex, out: Path, world: int, todo: list[GalleryEntry]) -> tuple[int, list[str]]:
    """Copy every shard's rows into ``main`` in gallery order (so ids match a single-process build).

    Every shard folder present is read, not only ranks ``0..world-1``: a resume with another
    ``--nproc_per_node`` keeps what the earlier run embedded. A path found in two shards (left by an
    older pgan, which could assign it twice) is merged once."""
    import shutil

    order = {str(e.path): i for i, e in enumerate(todo)}
    rows, bad, seen, dupes = [], [], set(), 0
    for folder in _shard_dirs(out):
        shard = GalleryIndex.open(folder)
        _, vecs = shard.vectors()
        for hit, v in zip(shard.conn.execute(f"SELECT {ITEM_COLUMNS} FROM items ORDER BY id"), vecs):
            if hit[1] in seen:
                dupes += 1
            elif hit[1] in order:  # absent: merged already by an earlier, interrupted merge
                seen.add(hit[1])
                rows.append((order[hit[1]], hit, v))
        bad += shard.skipped()
        shard.close()
    if dupes:
        log.warning("%d files were embedded in two shards (an earlier resume with another world size); "
                    "each is merged once", dupes)
    rows.sort(key=lambda t: t[0])
    for i in range(0, len(rows), 1024):
        chunk = rows[i:i + 1024]
        items = [GalleryItem(h[1], h[2], h[3], h[4], hit_from_row(h).boxes) for _, h, _ in chunk]
        main.add_batch(items, np.stack([v for _, _, v in chunk]) if chunk else np.zeros((0, main.dim)))
    if bad:
        main.add_batch([], np.zeros((0, main.dim), np.float32), bad)
    shutil.rmtree(out / "shards", ignore_errors=True)
    return len(rows), [p for p, _ in bad]


def add_to_index(index: str | Path, images: str | Path, checkpoint: str | Path | None = None,
                 batch_size: int = 32, parts: str | Path | None = None, device: str = "auto",
                 runtime: str = "torch", onnx_path: str | Path | None = None, progress: bool = True,
                 extractor: FeatureExtractor | None = None, split: str | None = None) -> BuildReport:
    """Add the images of a folder or CSV to an existing index (files it already holds are skipped).

    ``split``: only that split's rows of a CSV with a ``split`` column (which needs it), as in
    :func:`build_index`.

    The model defaults to the checkpoint recorded in the index; another model is refused
    (:class:`pgan.errors.IndexMismatchError`). The part setting is the index's: ``parts`` may repeat
    it, another one is refused (one line), so one index never mixes part sources."""
    store = GalleryIndex.open(index, readonly=False)
    try:
        recorded = store.meta.get("parts", "model's own")
        if parts is None and extractor is None and recorded != "model's own":
            parts = recorded
        fx = _extractor(checkpoint or store.checkpoint, extractor, parts, device, batch_size, runtime, onnx_path,
                        store.meta.get("flip") == "True")
        store.check_model(fx.model_fingerprint, fx.embedding_dim)
        given = _parts_setting(getattr(fx, "parts_arg", None))
        if given != recorded:
            raise PganError(f"index {index} was built with parts {recorded!r}; 'index add' must use the same "
                            f"(omit --parts to use it), got {given!r}")
        entries = list_gallery(images, split)
        done = store.paths()
        todo = [e for e in entries if str(e.path) not in done]
        t0 = time.perf_counter()
        report = BuildReport(str(index), len(entries), len(entries) - len(todo), 0, index_type=store.index_type)
        report.added, report.skipped = embed_into(store, todo, fx, batch_size, progress, "adding")
        store.finalize()
        report.seconds = time.perf_counter() - t0
        return report
    finally:
        store.close()


def remove_from_index(index: str | Path, paths: list[str | Path] = (), ids: list[int] = (),
                      before: str | None = None, compact: bool = False) -> dict:
    """Remove items from the index folder or ``milvus://`` handle ``index`` (see :func:`remove`); with
    ``compact``, faiss segments are rewritten without them at once (otherwise the next merge drops
    them). Returns ``{"removed": n, "ids": [...], "size": items left}``; nothing given is an error."""
    if not paths and not ids and before is None:
        raise PganError("say what to remove: image paths, --ids or --before TIME")
    resolved = [str(Path(p).resolve()) if Path(p).exists() else str(p) for p in paths]
    with GalleryIndex.open(index, readonly=False) as idx:
        gone = idx.remove(paths=resolved, ids=[int(i) for i in ids], before=before)
        if compact:
            idx.compact()
        return {"removed": len(gone), "ids": gone, "size": len(idx)}
