"""The vector files of a faiss gallery index: immutable segments, listed in ``index.sqlite``.

Every vector is kept once, in one segment file under ``INDEX/segments/``::

    <name>.f32     a log segment: the float32 vectors of one committed batch (n x d, raw), memory-mapped and
                   searched exactly; what ``add_batch`` writes, so a committed batch is searchable at once
    <name>.faiss   a faiss segment: a ``faiss.index_factory`` index over some rows (no id map), memory-mapped
                   (``IO_FLAG_MMAP_IFC``) where faiss allows; what finalize and compaction write
    <name>.npz     beside either: the segment's columns, one value per row: ``ids``, ``camera``,
                   ``vehicle_id``, ``ts`` (int64, :data:`NO_VALUE` when unknown)

Row order: a log segment's rows are in id order (as added); a faiss segment's are camera-major (by camera,
then id), so the rows of one camera, and of one camera in a time window, are contiguous: a camera filter
reads one block of vectors and a time window one block per camera (:meth:`Segment.search`).

A segment file is written atomically before the transaction that lists it commits, and deleted only after
the transaction that unlists it; a file no transaction lists is a crashed writer's and is removed by the
next finalize. Filters become row masks over the columns and run inside the search (faiss
``IDSelectorBitmap``), or, for small selections, an exact search over just the selected rows.

Example::

    seg = load(Path("runs/gallery/segments"), "f-0-1a2b3c4d", "faiss", 512, {"efSearch": 64})
    scores, ids = seg.search(queries, 10, mask=seg.columns.camera == 3)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from pgan.errors import PganError
from pgan.index.records import NO_TIME
from pgan.index.tuning import K_FACTOR
from pgan.index.vector_store import SearchFilter
from pgan.index.warm import prefetch
from pgan.utils.atomic import atomic_open

__all__ = ["Columns", "NO_VALUE", "Segment", "load", "new_inner_index", "write_faiss", "write_log"]

NO_VALUE = NO_TIME  # a camera / vehicle id / time the gallery does not know
EXACT_MAX = 150_000  # selections up to this many rows are searched exactly over just those rows
EXACT_SHARE = 0.15  # ... and so are those under this share of a segment: a graph search with a selector
# widens its beam by 1 / share and still missed (recall@10 0.92 at 10 % of 1M in 19 ms, exact: 1.0)
RUN_MIN = 64  # exact search takes one block search per run of consecutive rows when runs average this


@dataclass
class Columns:
    """One value per row of a segment (aligned with its vectors)."""

    ids: np.ndarray
    camera: np.ndarray
    vehicle_id: np.ndarray
    ts: np.ndarray

    @classmethod
    def of(cls, ids, camera, vehicle_id, ts) -> Columns:
        def col(values) -> np.ndarray:
            return np.array([NO_VALUE if v is None else int(v) for v in values], dtype=np.int64)

        return cls(np.asarray(ids, dtype=np.int64), col(camera), col(vehicle_id), col(ts))

    @classmethod
    def concat(cls, parts: list[Columns]) -> Columns:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) if parts else np.zeros(0, np.int64)
                     for f in ("ids", "camera", "vehicle_id", "ts")))

    def take(self, rows: np.ndarray) -> Columns:
        return Columns(self.ids[rows], self.camera[rows], self.vehicle_id[rows], self.ts[rows])

    def save(self, path: Path) -> None:
        with atomic_open(path, "wb") as fh:
            np.savez(fh, ids=self.ids, camera=self.camera, vehicle_id=self.vehicle_id, ts=self.ts)

    @classmethod
    def read(cls, path: Path) -> Columns:
        with np.load(path) as z:
            return cls(z["ids"], z["camera"], z["vehicle_id"], z["ts"])


def new_inner_index(dim: int, index_type: str, params: dict) -> faiss.Index:
    """An empty inner-product ``faiss.index_factory(dim, index_type)`` (one line for a bad factory string)."""
    try:
        index = faiss.index_factory(dim, index_type, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise PganError(f"invalid faiss index type {index_type!r}: {str(exc).splitlines()[-1]}") from None
    hnsw = getattr(faiss.downcast_index(index), "hnsw", None)
    if hnsw is not None:
        hnsw.efConstruction = int(params.get("efConstruction", 80))
    return index


def training_need(index: faiss.Index, index_type: str) -> int:
    """How many vectors ``index`` must be trained on (0: none)."""
    if index.is_trained:
        return 0
    need = 1
    try:
        need = max(need, faiss.extract_index_ivf(index).nlist)
    except RuntimeError:
        pass
    if "PQ" in index_type.upper():
        need = max(need, 256)
    return need


def apply_search_params(index: faiss.Index, params: dict) -> None:
    """Set HNSW ``efSearch``, IVF ``nprobe`` and the refine stage's ``k_factor`` (faiss does not serialise
    them)."""
    inner = faiss.downcast_index(index)
    if hasattr(inner, "hnsw") and "efSearch" in params:
        inner.hnsw.efSearch = int(params["efSearch"])
    try:
        faiss.extract_index_ivf(inner).nprobe = int(params.get("nprobe", 32))
    except RuntimeError:
        pass  # not an IVF index
    if hasattr(inner, "k_factor"):  # IndexRefine: how many candidates per result are re-scored exactly
        inner.k_factor = float(params.get("k_factor", K_FACTOR))


def write_log(folder: Path, name: str, vectors: np.ndarray, columns: Columns) -> None:
    """A log segment: the raw vectors, then their columns (each file atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_open(folder / f"{name}.f32", "wb") as fh:
        fh.write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    columns.save(folder / f"{name}.npz")


def write_faiss(folder: Path, name: str, index: faiss.Index, columns: Columns) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_open(folder / f"{name}.faiss", "wb") as fh:
        fh.write(faiss.serialize_index(index).tobytes())
    columns.save(folder / f"{name}.npz")


def files(folder: Path, name: str, kind: str) -> list[Path]:
    return [folder / f"{name}.{'f32' if kind == 'log' else 'faiss'}", folder / f"{name}.npz"]


class Segment:
    """One loaded segment: its columns, its vectors (memory-mapped) and how to search them."""

    def __init__(self, name: str, kind: str, columns: Columns, dim: int, vecs: np.ndarray | None = None,
                 index: faiss.Index | None = None, owner: faiss.Index | None = None) -> None:
        self.name, self.kind, self.columns, self.dim = name, kind, columns, dim
        self.index, self._owner = index, owner  # owner: the object faiss returned (keeps `index` alive)
        self.flat = vecs  # the exact vectors as an (n, d) array when the segment has them (log, *Flat)
        if vecs is None and index is not None:
            storage = index
            for attr in ("storage", "refine_index"):  # HNSW's vectors, IndexRefine's exact vectors
                if hasattr(index, attr):
                    storage = faiss.downcast_index(getattr(index, attr))
            if isinstance(storage, faiss.IndexFlat) and storage.ntotal == len(columns.ids):
                self.flat = faiss.rev_swig_ptr(storage.get_xb(), storage.ntotal * dim).reshape(-1, dim)
        self.alive: np.ndarray | None = None  # rows not removed; None: all
        self.params: dict = {}  # the search parameters in effect (the index's, or tuned for this segment)
        self._by_id: np.ndarray | None = None  # rows sorted by id (built on the first row_of)
        self._camera_sorted: bool | None = None  # whether rows are camera-major (checked on first use)

    def __len__(self) -> int:
        return len(self.columns.ids)

    @property
    def live(self) -> int:
        return len(self) if self.alive is None else int(self.alive.sum())

    def set_tombstones(self, removed: np.ndarray) -> None:
        dead = np.isin(self.columns.ids, removed) if len(removed) else None
        self.alive = None if dead is None or not dead.any() else ~dead

    def row_of(self, image_id: int) -> int | None:
        if self._by_id is None:  # rows in id order (faiss segments are camera-major, see the module doc)
            ids = self.columns.ids
            self._by_id = np.arange(len(ids)) if bool(np.all(ids[1:] > ids[:-1])) else np.argsort(ids,
                                                                                                   kind="stable")
        ids = self.columns.ids[self._by_id]
        at = int(np.searchsorted(ids, image_id))
        return int(self._by_id[at]) if at < len(self) and ids[at] == image_id else None

    def vectors(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The vectors of ``rows`` (all: None), exact where the segment stores them exactly."""
        if self.flat is not None:
            return np.array(self.flat if rows is None else self.flat[rows], dtype=np.float32)
        rows = np.arange(len(self)) if rows is None else np.asarray(rows)
        try:
            faiss.extract_index_ivf(self.index).make_direct_map()
        except RuntimeError:
            pass
        return np.stack([self.index.reconstruct(int(r)) for r in rows]) if len(rows) else np.zeros((0, self.dim),
                                                                                                  np.float32)

    def _exact_subset(self, queries: np.ndarray, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``k`` over just ``rows`` (ascending), read in place: one exhaustive search per run of
        consecutive rows when the runs are long (a camera, a time window, a camera in a time window), else
        faiss's gather-free search by row numbers."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        starts = np.flatnonzero(np.diff(rows) != 1) + 1 if len(rows) else np.zeros(0, np.int64)
        if len(rows) >= RUN_MIN * (len(starts) + 1):  # runs of RUN_MIN rows or more on average: one search per run
            bounds = np.concatenate([[0], starts, [len(rows)]])
            found_s, found_r = [], []
            for a, b in zip(bounds[:-1], bounds[1:]):
                # faiss, not numpy: a memory-mapped faiss file's vectors need not be 4-byte aligned, and numpy
                # multiplies unaligned arrays without BLAS (10x slower: 7 ms for 10,000 x 512 against 0.45 ms)
                scores, at = faiss.knn(queries, self.flat[rows[a]:rows[b - 1] + 1], min(k, int(b - a)),
                                       metric=faiss.METRIC_INNER_PRODUCT)
                found_s.append(scores)
                found_r.append(np.where(at >= 0, rows[a] + at, -1))
            scores, picked = np.concatenate(found_s, axis=1), np.concatenate(found_r, axis=1)
            if len(found_s) > 1:
                order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
                scores = np.take_along_axis(scores, order, axis=1)
                picked = np.take_along_axis(picked, order, axis=1)
            return scores, np.where(picked >= 0, self.columns.ids[np.clip(picked, 0, len(self) - 1)], -1)
        subset = np.ascontiguousarray(np.broadcast_to(rows.astype(np.int64), (len(queries), len(rows))))
        vals = np.empty((len(queries), k), np.float32)
        picked = np.empty((len(queries), k), np.int64)
        faiss.knn_inner_products_by_idx(faiss.swig_ptr(queries), faiss.swig_ptr(self.flat), faiss.swig_ptr(subset),
                                        self.dim, len(queries), len(self), len(rows), k, faiss.swig_ptr(vals),
                                        faiss.swig_ptr(picked), len(rows))  # the subset's row stride
        return vals, np.where(picked >= 0, self.columns.ids[np.clip(picked, 0, len(self) - 1)], -1)

    def camera_span(self, camera: int) -> tuple[int, int] | None:
        """``(first, stop)`` rows of ``camera`` when the rows are camera-major (faiss segments), else None."""
        if self._camera_sorted is None:
            cams = self.columns.camera
            self._camera_sorted = bool(np.all(cams[1:] >= cams[:-1]))
        if not self._camera_sorted:
            return None
        cams = self.columns.camera
        return int(np.searchsorted(cams, camera, "left")), int(np.searchsorted(cams, camera, "right"))

    def search_where(self, queries: np.ndarray, k: int, where: SearchFilter) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` under a filter. A camera filter on camera-major rows looks at that camera's rows
        only (found by binary search), so its cost does not grow with the rest of the segment; a thin
        selection there is searched exactly, a wide one falls back to the whole-segment mask."""
        cols = self.columns
        span = self.camera_span(where.camera) if where.camera is not None else None
        if span is not None:
            lo, hi = span
            part = where.mask(cols.camera[lo:hi], cols.vehicle_id[lo:hi], cols.ts[lo:hi], NO_VALUE)
            if self.alive is not None:
                part = self.alive[lo:hi] if part is None else part & self.alive[lo:hi]
            rows = np.arange(lo, hi) if part is None else lo + np.flatnonzero(part)
            if self.flat is not None and (len(rows) <= EXACT_MAX or len(rows) < EXACT_SHARE * len(self)):
                k = min(k, len(rows))
                if k == 0:
                    return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
                return self._exact_subset(queries, k, rows)
        return self.search(queries, k, where.mask(cols.camera, cols.vehicle_id, cols.ts, NO_VALUE))

    def search(self, queries: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, ``(nq, <=k)`` each, best first; ids -1 where fewer rows pass ``mask``."""
        if self.alive is not None:
            mask = self.alive if mask is None else mask & self.alive
        n = len(self)
        chosen = n if mask is None else int(mask.sum())
        k = min(k, chosen)
        if k == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        thin = mask is not None and (chosen <= EXACT_MAX or chosen < EXACT_SHARE * n)
        if mask is not None and self.flat is not None and (thin or self.index is None):
            return self._exact_subset(queries, k, np.flatnonzero(mask))
        if self.index is None:  # a log segment, unfiltered: every row
            scores = self.flat @ queries.T  # (n, nq)
            top = np.argpartition(-scores, k - 1, axis=0)[:k] if k < n else np.broadcast_to(
                np.arange(n)[:, None], (n, len(queries)))
            best = np.take_along_axis(scores, top, axis=0).T  # (nq, k)
            order = np.argsort(-best, axis=1, kind="stable")
            picked = np.take_along_axis(top.T, order, axis=1)
            return np.take_along_axis(best, order, axis=1), self.columns.ids[picked]
        if mask is None:
            scores, rows = self.index.search(queries, k)
        else:
            bits = np.packbits(mask, bitorder="little")
            sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
            inner = faiss.downcast_index(self.index)
            share = chosen / n
            if hasattr(inner, "hnsw"):  # a thinner selection needs a wider beam for the same recall
                ef = int(min(4096, max(k, self.params.get("efSearch", 128)) / max(share, EXACT_SHARE)))
                sp = faiss.SearchParametersHNSW(sel=sel, efSearch=ef)
            else:
                try:  # a thinner selection probes more lists for the same recall
                    ivf = faiss.extract_index_ivf(inner)
                    nprobe = int(min(ivf.nlist, ivf.nprobe / max(share, EXACT_SHARE)))
                    sp = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
                except RuntimeError:
                    sp = faiss.SearchParameters(sel=sel)
                if hasattr(inner, "k_factor"):  # IndexRefine: the selector goes to its base index
                    sp = faiss.IndexRefineSearchParameters(k_factor=inner.k_factor, base_index_params=sp)
            scores, rows = self.index.search(queries, k, params=sp)
            del bits
        ids = np.where(rows >= 0, self.columns.ids[np.clip(rows, 0, n - 1)], -1)
        return scores, ids


def load(folder: Path, name: str, kind: str, dim: int, params: dict) -> Segment:
    """A listed segment, memory-mapped (:class:`FileNotFoundError` when a compaction removed it meanwhile)."""
    columns = Columns.read(folder / f"{name}.npz")
    if kind == "log":
        path = folder / f"{name}.f32"
        vecs = np.memmap(path, dtype=np.float32, mode="r", shape=(len(columns.ids), dim)) if len(columns.ids) \
            else np.zeros((0, dim), np.float32)
        return Segment(name, kind, columns, dim, vecs=vecs)
    path = folder / f"{name}.faiss"
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        owner = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
    except RuntimeError as exc:
        raise PganError(f"{path} is not a readable faiss index ({str(exc).splitlines()[-1][:120]})") from None
    index = faiss.downcast_index(owner)
    prefetch(path, index)
    apply_search_params(index, params)
    segment = Segment(name, kind, columns, dim, index=index, owner=owner)
    segment.params = dict(params)
    return segment
