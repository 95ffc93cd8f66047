"""Warming a memory-mapped faiss segment at load, in a background thread, so searches do not pay for it.

A segment read with ``IO_FLAG_MMAP_IFC`` keeps its float32 vectors (a ``Flat`` index, an HNSW graph's
storage, an ``...,RFlat`` refine stage) in a mapping of the file. A search touches a few random rows of it,
and each row's first touch costs either a disk read (the file is not in the page cache) or, once it is, a
page fault that maps the cached page into this process. Measured at 1M x 512 (``IVF4096,PQ128x4fs,RFlat``,
one thread, top 10): a fresh process answered in about 5 ms until the 2 GB file was cached; with the file
cached, queries whose rows were not yet mapped took 1.48 ms (11.6 page faults each) against 0.48 ms once
mapped.

:func:`prefetch` therefore asks the kernel to fault the whole mapping in (``madvise(MADV_POPULATE_READ)``,
Linux 5.14 and later: reads what is not cached and maps every page, 1.4 s for that 2 GB file). Where that
is not available (another OS, an older kernel, an index with no mapped vectors) it reads the file once
instead, which at least puts it in the page cache (``posix_fadvise(WILLNEED)`` did not, here). Files
under :data:`PREFETCH_MIN` are left to the first searches, and files over half the memory available are
skipped (the kernel would drop the pages again).

Safety: the thread keeps only the mapping's address, never a view of it; when a compaction closes the
segment meanwhile, ``madvise`` on the unmapped range fails (``ENOMEM``) and nothing else happens.
"""

from __future__ import annotations

import ctypes
import mmap
import sys
import threading
from pathlib import Path

import faiss

__all__ = ["MADV_POPULATE_READ", "PREFETCH_MIN", "mapped_ranges", "populate", "prefetch"]

PREFETCH_MIN = 64 << 20  # segment files from this size are warmed by a background thread
MADV_POPULATE_READ = 22  # <linux/mman.h>: fault the pages of a range in (page tables too), reading them
# faiss >= 1.10 holds flat codes in this type; an older faiss reads them into memory (nothing to map)
_MAYBE_OWNED = getattr(faiss, "MaybeOwnedVectorUInt8", ())


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def mapped_ranges(index: faiss.Index) -> list[tuple[int, int]]:
    """``(address, bytes)`` of the memory-mapped vector arrays of ``index`` and of the flat indexes inside it
    (an HNSW graph's storage, a refine stage); empty when faiss read them into memory."""
    out = []
    todo = [index]
    while todo:
        sub = faiss.downcast_index(todo.pop())
        codes = getattr(sub, "codes", None)
        if isinstance(codes, _MAYBE_OWNED) and not codes.is_owned and codes.size():
            out.append((int(faiss.rev_swig_ptr(codes.data(), 1).ctypes.data), int(codes.size())))
        todo += [getattr(sub, name) for name in ("refine_index", "base_index", "storage")
                 if getattr(sub, name, None) is not None]
    return out


def populate(ranges: list[tuple[int, int]]) -> bool:
    """``madvise(MADV_POPULATE_READ)`` over each range; False where the platform or kernel refuses."""
    if not sys.platform.startswith("linux") or not ranges:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return False
    ok = True
    for addr, size in ranges:
        start = addr - addr % mmap.PAGESIZE
        ok &= libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(size + addr - start), MADV_POPULATE_READ) == 0
    return ok


def _read_through(path: Path) -> None:
    buf = bytearray(16 << 20)
    try:
        with open(path, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass
    except OSError:  # removed by a compaction meanwhile: nothing to warm
        pass


def _warm(path: Path, ranges: list[tuple[int, int]]) -> None:
    if not populate(ranges):
        _read_through(path)


def prefetch(path: Path, index: faiss.Index | None = None) -> threading.Thread | None:
    """Warm a segment file (and ``index``'s mapping of it, see the module doc) in a daemon thread named
    ``prefetch <file>``; None when the file is small, gone or too large for the memory available."""
    try:
        size = path.stat().st_size
    except OSError:
        return None
    avail = _mem_available()
    if size < PREFETCH_MIN or (avail is not None and size > avail // 2):
        return None
    ranges = mapped_ranges(index) if index is not None else []
    thread = threading.Thread(target=_warm, args=(path, ranges), daemon=True, name=f"prefetch {path.name}")
    thread.start()
    return thread
