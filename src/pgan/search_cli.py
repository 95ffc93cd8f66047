"""The ``search``, ``index`` and ``export`` subcommands of ``pgan`` (thin argparse over
:mod:`pgan.inference` and :mod:`pgan.index`).

``pgan.cli`` calls :func:`register` with its subparsers object. faiss and
onnxruntime are imported by the commands that need them, not when the parser is built.
"""

from __future__ import annotations

import argparse
import json
import logging

from pgan.cli_options import add_command, add_device, add_group, add_out, add_parts, add_quiet, add_top_k
from pgan.errors import PganError

__all__ = ["register"]

log = logging.getLogger(__name__)


def _cmd_index_build(args: argparse.Namespace) -> int:
    from pgan.engine.distributed import env_dist_info
    from pgan.index import build_index

    report = build_index(args.images, args.out, args.checkpoint, index_type=args.index_type,
                         batch_size=args.batch_size, parts=args.parts, device=args.device, runtime=args.runtime,
                         onnx_path=args.onnx, flip=args.flip, progress=not args.quiet, backend=args.backend,
                         uri=args.uri, collection=args.collection, split=args.split)
    if env_dist_info().is_main:  # under torchrun rank 0 holds the merged report
        print(json.dumps(report.to_dict()))
    return 0


def _cmd_index_add(args: argparse.Namespace) -> int:
    from pgan.index import add_to_index

    report = add_to_index(args.index, args.images, args.checkpoint, batch_size=args.batch_size, parts=args.parts,
                          device=args.device, runtime=args.runtime, onnx_path=args.onnx, progress=not args.quiet,
                          split=args.split)
    print(json.dumps(report.to_dict()))
    return 0


def _cmd_index_remove(args: argparse.Namespace) -> int:
    from pgan.index import remove_from_index

    print(json.dumps(remove_from_index(args.index, args.paths, args.ids or (), args.before, compact=args.compact)))
    return 0


def _cmd_index_compact(args: argparse.Namespace) -> int:
    from pgan.index import GalleryIndex

    with GalleryIndex.open(args.index, readonly=False) as idx:
        idx.compact()
        info = idx.info()
    print(json.dumps(info, indent=2))
    return 0


def _cmd_index_info(args: argparse.Namespace) -> int:
    from pgan.index import GalleryIndex

    with GalleryIndex.open(args.index) as idx:
        info = idx.info()
        if args.skipped:
            info["skipped_files"] = [{"path": p, "reason": r} for p, r in idx.skipped()]
    print(json.dumps(info, indent=2))
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from pgan.index import GalleryIndex
    from pgan.index.search import draw_results, extractor_for, search_images
    from pgan.index.sightings import DEFAULT_MIN_SCORE, group_sightings

    if args.min_similarity is not None and not args.sightings:
        raise PganError("--min-similarity applies to the sightings only: add --sightings")
    min_score = DEFAULT_MIN_SCORE if args.min_similarity is None else args.min_similarity
    if not -1.0 <= min_score <= 1.0:
        raise PganError(f"--min-similarity must be between -1 and 1 (a cosine similarity), got {min_score}")
    with GalleryIndex.open(args.index) as idx:
        fx = extractor_for(idx, args.checkpoint, args.parts, args.device, args.runtime, args.onnx)
        results = search_images(idx, args.photos, args.top_k, camera=args.camera,
                                exclude_camera=args.exclude_camera, since=args.since, until=args.until,
                                vehicle_id=args.vehicle_id, extractor=fx)
    for r in results:
        if args.sightings:  # one line per query: its hits grouped by camera in time order
            print(json.dumps({"query": r.query, **group_sightings(r.hits, min_score).to_dict()}))
            continue
        for line in r.json_lines():
            print(json.dumps(line))
    if args.figure:
        log.info("wrote %s", draw_results(results, args.figure))  # stderr: stdout stays JSON lines
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pgan.inference.onnx import export_onnx
    from pgan.inference.quantize import quantize_int8

    out = export_onnx(args.checkpoint, args.out)
    written = {"fp32": str(out)}
    if args.int8:
        if not args.calibration:
            raise PganError("--int8 needs --calibration DIR|CSV (training images to calibrate on)")
        from pgan.index.gallery import csv_splits, list_gallery

        entries = list_gallery(args.calibration, "train" if csv_splits(args.calibration) else None)
        entries = entries[:: max(1, len(entries) // args.calibration_size)][: args.calibration_size]
        q = Path(args.int8_out) if args.int8_out else out.with_name(f"{out.stem}-int8.onnx")
        written["int8"] = str(quantize_int8(out, q, [e.path for e in entries], parts=args.parts))
    print(json.dumps(written))
    return 0


def _model_args(p: argparse.ArgumentParser, checkpoint_required: bool) -> None:
    p.add_argument("--checkpoint", required=checkpoint_required, metavar="FILE",
                   help="a checkpoint of pgan train" + ("" if checkpoint_required else " (unset: the index's)"))
    add_parts(p)
    add_device(p)
    p.add_argument("--runtime", default="torch", choices=["torch", "onnx"],
                   help="what runs the model: eager PyTorch, or onnxruntime on --onnx")
    p.add_argument("--onnx", metavar="FILE", help="the ONNX export to run with --runtime onnx (pgan export onnx)")


INDEX_HELP = "an index folder (pgan index build) or a milvus://HOST:PORT/COLLECTION handle"
IMAGES_HELP = ("a folder of images, or a CSV with a path column and optional camera_id (or camera), vehicle_id "
               "(or vehicle), timestamp and split columns")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``search``, ``index {build, add, info}`` and ``export {onnx}`` to ``pgan``'s subcommands."""
    index = add_group(sub, "index", help="gallery index: build | add | remove | compact | info",
                      dest="index_command",
                      metavar="ACTION")
    p = add_command(index, "build", help="embed a folder or CSV of images into an index: SQLite metadata + faiss "
                                         "(default) or Milvus vectors (resumable; torchrun shards it)",
                    example="pgan index build --checkpoint runs/custom_pgan/last.pt --images my.csv "
                            "--split gallery --out runs/index")
    _model_args(p, True)
    p.add_argument("--images", required=True, metavar="PATH", help=IMAGES_HELP)
    p.add_argument("--split", metavar="NAME",
                   help="only the rows of this split (train, query, gallery) of a CSV with a split column, which "
                        "needs it (the CSV of pgan data csv: --split gallery)")
    add_out(p, "folder", "the index (index.sqlite and its vector segments), or a milvus://HOST:PORT/COLLECTION "
                         "handle (the whole gallery in Milvus, nothing local)")
    p.add_argument("--index-type", default="auto",
                   help="faiss factory string: Flat (exact), HNSW32,Flat, IVF1024,PQ64, ...; auto: each "
                        "vector segment by its rows, Flat up to 100,000, IVF<4 sqrt(rows)>,PQ<d/4>x4fs,RFlat "
                        "beyond (codes + exact re-scoring, nprobe tuned to recall@10 0.99). --backend "
                        "milvus: HNSW<M> (auto: HNSW32) or Flat")
    p.add_argument("--backend", choices=["faiss", "milvus"],
                   help="where the vectors go: faiss (segment files in --out; unset: faiss for a new "
                        "index) or milvus (a collection at --uri); a resumed build keeps the index's own. "
                        "The metadata stays in --out/index.sqlite either way")
    p.add_argument("--uri", help="--backend milvus: a Milvus Lite file (gallery.db: embedded, one process at "
                                 "a time) or a Milvus server (http://host:19530)")
    p.add_argument("--collection", help="--backend milvus: the collection's name (unset: pgan_<--out "
                                        "folder name>); one that exists already is refused")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--flip", action="store_true", help="flip test-time augmentation (searches use it too)")
    add_quiet(p)
    p.set_defaults(func=_cmd_index_build)

    p = add_command(index, "add", help="add the images of a folder or CSV to an index (same model only)",
                    example="pgan index add --index runs/index --images new_photos/")
    _model_args(p, False)
    p.add_argument("--index", required=True, metavar="IDX", help=INDEX_HELP)
    p.add_argument("--images", required=True, metavar="PATH", help=IMAGES_HELP)
    p.add_argument("--split", metavar="NAME",
                   help="only the rows of this split (train, query, gallery) of a CSV with a split column, which "
                        "needs it (the CSV of pgan data csv: --split gallery)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    add_quiet(p)
    p.set_defaults(func=_cmd_index_add)

    p = add_command(index, "remove", help="remove images from an index by path, id or time (JSON report); "
                                          "searches never return them again",
                    example="pgan index remove --index runs/index --before 2024-01-01T00:00")
    p.add_argument("--index", required=True, metavar="IDX", help=INDEX_HELP)
    p.add_argument("paths", nargs="*", metavar="PATH", help="images to remove, as given to index build / add")
    p.add_argument("--ids", type=int, nargs="+", metavar="ID", help="image ids to remove (a hit's image_id)")
    p.add_argument("--before", metavar="TIME",
                   help="remove every image whose timestamp lies before TIME (digits such as 00030000, or ISO "
                        "8601 such as 2024-01-01T00:00)")
    p.add_argument("--compact", action="store_true", help="faiss: rewrite the vector segments without the removed "
                                                          "images now (unset: the next merge drops them)")
    p.set_defaults(func=_cmd_index_remove)

    p = add_command(index, "compact", help="merge an index's vector segments into one, dropping the vectors of "
                                           "removed images (JSON: index info)",
                    example="pgan index compact --index runs/index")
    p.add_argument("--index", required=True, metavar="IDX", help=INDEX_HELP)
    p.set_defaults(func=_cmd_index_compact)

    p = add_command(index, "info", help="what an index holds (JSON)", example="pgan index info --index runs/index")
    p.add_argument("--index", required=True, metavar="IDX", help=INDEX_HELP)
    p.add_argument("--skipped", action="store_true", help="list the files the build skipped, with the reason")
    p.set_defaults(func=_cmd_index_info)

    p = add_command(sub, "search", help="top-k gallery matches of query photos (JSON lines); --sightings: "
                                        "grouped by camera in time order",
                    example="pgan search --index runs/index --top-k 10 --exclude-camera 1 query.jpg")
    p.add_argument("--index", required=True, metavar="IDX", help=INDEX_HELP)
    p.add_argument("photos", nargs="+", help="query photos (image files)")
    add_top_k(p, 20)
    p.add_argument("--camera", type=int, help="only matches from this camera")
    p.add_argument("--exclude-camera", type=int, help="no matches from this camera (e.g. the query's)")
    p.add_argument("--vehicle-id", type=int, help="only matches of this vehicle id")
    p.add_argument("--since", help="only matches with a timestamp at or after this: digits (a frame number such "
                                   "as 00030000) or ISO 8601 (2024-05-01T08:00, no zone: UTC)")
    p.add_argument("--until", help="only matches with a timestamp at or before this (see --since)")
    p.add_argument("--figure", metavar="FILE", help="PNG: each query and its top-k with part boxes")
    p.add_argument("--sightings", action="store_true",
                   help="one JSON line per query: the top-k at least --min-similarity alike, grouped by camera "
                        "(cameras by best score), each camera's in timestamp order, with first/last seen")
    p.add_argument("--min-similarity", type=float, metavar="S",
                   help="with --sightings: the least cosine similarity of a sighting (unset: 0.5, not "
                        "calibrated: set it for your model)")
    _model_args(p, False)
    p.set_defaults(func=_cmd_search)

    export = add_group(sub, "export", help="export a trained model", dest="export_command", metavar="FORMAT")
    p = add_command(export, "onnx", help="the test-time network (images, masks -> F_fb), dynamic batch axis",
                    example="pgan export onnx --checkpoint runs/custom_pgan/last.pt --out model.onnx --int8 "
                            "--calibration my.csv")
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="a checkpoint of pgan train")
    add_out(p, "file", "the fp32 model (.onnx)")
    p.add_argument("--int8", action="store_true", help="also write a static int8 model (onnxruntime)")
    p.add_argument("--int8-out", metavar="FILE", help="where the int8 model goes (unset: <out stem>-int8.onnx)")
    p.add_argument("--calibration", metavar="PATH", help="folder or CSV of training images to calibrate int8 on")
    p.add_argument("--calibration-size", type=int, default=64, help="images used for calibration")
    add_parts(p)
    p.set_defaults(func=_cmd_export_onnx)
