"""Start-up: load and check the index and the model, warn about exposure, run uvicorn.

``load_service`` refuses to start (a :class:`PganError`, one line) when the index folder is
missing or unreadable, when the checkpoint or ONNX model is missing, or when the index was built
with another model than the one given (an int8 export is another model: its index must be built
with it, ``pgan index build --runtime onnx --onnx model-int8.onnx``).
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from dataclasses import replace
from pathlib import Path

from pgan.errors import PganError
from pgan.index import GalleryIndex
from pgan.index.search import extractor_for
from pgan.inference import FeatureExtractor
from pgan.serve.settings import ServeSettings

log = logging.getLogger(__name__)


def load_service(index_path: str | Path, checkpoint: str | Path | None = None, parts: str | None = None,
                 device: str = "auto", runtime: str = "torch", onnx_path: str | Path | None = None,
                 threads: int = 0) -> tuple[GalleryIndex, FeatureExtractor]:
    """Open the gallery index and its model; ``checkpoint=None`` uses the one the index was built with.

    ``runtime="onnx"`` runs ``onnx_path`` (``pgan export onnx``, fp32 or int8) with onnxruntime
    (``threads`` intra-op threads, 0: one per core); its metadata carries the config, so no
    checkpoint is needed. Its fingerprint must be the index's, as an eager model's must: an fp32
    export serves an index built with its checkpoint, an int8 export only an index built with it.

    ``parts`` says where the part boxes of an uploaded photo come from (``"proposals"``,
    ``"grid"``, a part-detector checkpoint; see :class:`pgan.inference.FeatureExtractor`);
    None takes the one the index was built with, else the model's own part source. A model whose
    own source cannot box a new photo (trained on a part file, e.g. ground-truth boxes, like the
    demo's) falls back to ``proposals`` with a one-line warning, which ``/api/info`` repeats
    (``upload_parts_fallback``); give ``parts`` (a detector checkpoint) to choose instead.
    Searches by gallery id use the stored vectors, whatever ``parts`` is.

    Refuses (one line) a missing index, one with no searchable snapshot (an interrupted first
    build, a faiss file derived from another database), a missing checkpoint, another model.
    An index that a writer is growing starts with its last complete snapshot.
    """
    from pgan.index.milvus_gallery import is_handle

    index_path = index_path if is_handle(index_path) else Path(index_path)
    if not is_handle(index_path) and not index_path.exists():
        raise PganError(f"index {index_path} does not exist (build one with `pgan index build`)")
    index = GalleryIndex.open(index_path)
    searchable = index.searchable()  # one line when there is no snapshot that matches the database
    if searchable == 0:
        raise PganError(f"index {index_path} holds no images")
    if searchable < len(index):
        log.warning("index %s: %d of %d images are searchable (a build or add is running or was interrupted); "
                    "the rest appear when it finishes", index_path, searchable, len(index))
    if runtime == "onnx":
        if onnx_path is None:
            raise PganError("--runtime onnx needs --onnx MODEL.onnx (written by 'pgan export onnx')")
        # The export's own metadata names the model; with a checkpoint given, the export must be of it.
        ckpt = Path(checkpoint) if checkpoint is not None else Path(onnx_path)
    else:
        if onnx_path is not None:
            raise PganError("--onnx is used with --runtime onnx only")
        ckpt = Path(checkpoint) if checkpoint is not None else Path(str(index.checkpoint))
    if not ckpt.is_file():
        hint = "" if checkpoint is not None or runtime == "onnx" else " (recorded in the index; pass --checkpoint)"
        what = "ONNX model" if runtime == "onnx" and checkpoint is None else "checkpoint"
        raise PganError(f"{what} {ckpt} does not exist{hint}")
    # The index's own settings (part source, flip TTA), checked against it: IndexMismatchError, one line.
    extractor = extractor_for(index, ckpt, parts=parts, device=device, runtime=runtime,
                              onnx_path=onnx_path if checkpoint is not None else None, threads=threads)
    if parts is None and extractor.new_photo_parts is None:
        note = (f"the model was trained on part source {extractor.config.data.part_source!r} (a part file), "
                f"which has no boxes for an uploaded photo, and no --parts was given: uploads use 'proposals' "
                f"(give --parts with a part-detector checkpoint to use one)")
        log.warning("%s", note)
        extractor.set_parts("proposals", note=note)
    return index, extractor


def trusted_hosts(host: str) -> tuple[str, ...]:
    """The Host header names a loopback server answers to (its own bound name included)."""
    bound = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return tuple(dict.fromkeys(("127.0.0.1", "localhost", "[::1]", bound.lower())))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, token: str | None) -> str | None:
    """The warning printed when the service listens beyond this machine, or None on loopback."""
    if is_loopback(host):
        return None
    auth = ("every API call needs the bearer token, but traffic is plain HTTP (put TLS in front)" if token else
            "there is NO authentication: anyone who can reach this port can search the gallery and download "
            "its images (set --token)")
    return f"WARNING: pgan serve listens on {host}, beyond this machine; {auth}"


def serve(index_path: str | Path, checkpoint: str | Path | None = None, host: str = "127.0.0.1",
          port: int = 8000, settings: ServeSettings | None = None, parts: str | None = None,
          device: str = "auto", log_level: str = "info", runtime: str = "torch",
          onnx_path: str | Path | None = None, threads: int = 0) -> None:
    """Load everything, then serve until interrupted (the ``pgan serve`` command)."""
    import uvicorn

    from pgan.serve.app import create_app

    settings = settings or ServeSettings()
    if is_loopback(host) and not settings.allowed_hosts:
        settings = replace(settings, allowed_hosts=trusted_hosts(host))
    warning = exposure_warning(host, settings.token)
    if warning:
        print(f"\n{'!' * 100}\n{warning}\n{'!' * 100}\n", file=sys.stderr, flush=True)
    index, extractor = load_service(index_path, checkpoint, parts=parts, device=device, runtime=runtime,
                                    onnx_path=onnx_path, threads=threads)
    log.info("gallery %s: %d images, model %s (%s)", index_path, len(index), str(index.model_fingerprint)[:12],
             runtime if runtime == "torch" else f"onnxruntime, {extractor.model.precision}")
    uvicorn.run(create_app(index, extractor, settings), host=host, port=port, log_level=log_level)
