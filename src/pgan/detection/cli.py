"""``pgan parts ...``: train / eval the part detector, extract parts, convert, proposals, grid.

Wired into the main parser by ``register(subparsers)``. Examples (the synthetic benchmark)::

    pgan parts train --voc data/synth/annotations_voc/image_train --out runs/partdet --minutes 30
    pgan parts eval --checkpoint runs/partdet/last.pt \\
        --voc data/synth/annotations_voc/image_query data/synth/annotations_voc/image_test
    pgan parts extract --checkpoint runs/partdet/last.pt --dataset synth --root data/synth
        # -> runs/partdet/parts_detector-<fingerprint>.jsonl (names say which source wrote a file;
        #    parts_gt* is only ever ground truth, see pgan.parts.boxfile.check_part_file_owner)
    pgan parts proposals --dataset synth --root data/synth --out runs/parts/parts_proposals.jsonl
    pgan parts discover --method dff --dataset custom --root my.csv --out runs/parts/parts_dff.jsonl
    pgan parts convert --from text --input my_boxes/ --dataset veri776 --root data/VeRi --out parts.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from pgan.cli_options import (
    add_command,
    add_device,
    add_group,
    add_num_parts,
    add_out,
    add_quiet,
    add_threads,
    set_torch_threads,
)
from pgan.errors import PganError

__all__ = ["register"]


def _samples(args: argparse.Namespace, classes: list[str] | None, keep_empty: bool):
    from pgan.detection.data import read_annotations

    return read_annotations(args.voc, args.coco, args.image_root, classes, args.strict_labels, keep_empty)


def _class_list(args: argparse.Namespace) -> list[str] | None:
    """None means "from the annotations" (``--classes auto``)."""
    from pgan.parts import PART_CLASSES

    if not args.classes:
        return list(PART_CLASSES)
    return None if args.classes == ["auto"] else list(args.classes)


def _cmd_train(args: argparse.Namespace) -> int:
    from pgan.detection.data import label_set
    from pgan.detection.model import DetectorConfig, read_checkpoint
    from pgan.detection.train import TrainSettings, train_detector

    set_torch_threads(args.threads)
    ckpt = Path(args.out) / "last.pt"
    if args.resume:
        if not ckpt.is_file():
            raise PganError(f"--resume: no detector checkpoint at {ckpt}")
        classes = list(read_checkpoint(ckpt)["config"]["classes"])
    else:
        if ckpt.is_file():
            raise PganError(f"{ckpt} exists; pass --resume to continue it or choose another --out")
        classes = _class_list(args)
    samples = _samples(args, classes, keep_empty=False)
    classes = classes or label_set(samples)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, minutes=args.minutes,
                             seed=args.seed, device=args.device, pretrained=not args.no_pretrained,
                             progress=not args.quiet, max_steps=args.max_steps)
    cfg = DetectorConfig(classes=classes, min_size=args.min_size, max_size=2 * args.min_size)
    result = train_detector(samples, args.out, settings, cfg, resume=args.resume)
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=2))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from pgan.detection.model import evaluate_detector, load_detector
    from pgan.utils.atomic import atomic_write_json

    set_torch_threads(args.threads)
    model, cfg, _ = load_detector(args.checkpoint, args.device)
    samples = _samples(args, cfg.classes, keep_empty=True)
    res = evaluate_detector(model, cfg.classes, samples, args.batch_size, args.iou, progress=not args.quiet)
    print(f"| class | AP@{args.iou:g} (%) | boxes |\n|---|---|---|")
    for cls, ap in res.per_class.items():
        print(f"| {cls} | {100 * ap:.1f} | {res.num_gt[cls]} |")
    print(f"| **mean** | **{100 * res.mean:.1f}** | {sum(res.num_gt.values())} |")
    out = Path(args.out) if args.out else Path(args.checkpoint).with_name("eval_ap.json")
    atomic_write_json(out, {**res.to_dict(), "images": len(samples)})
    print(f"wrote {out}")
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from pgan.detection.extract import detector_part_file, extract_parts

    set_torch_threads(args.threads)
    if not Path(args.checkpoint).is_file():
        raise PganError(f"detector checkpoint {args.checkpoint} does not exist")
    out = args.out or detector_part_file(args.checkpoint, Path(args.checkpoint).parent)
    report = extract_parts(args.checkpoint, args.dataset, args.root, out, args.num_parts, args.nms, args.min_score,
                           args.batch_size, args.device, not args.quiet, args.workers)
    print(json.dumps(report.to_dict(), indent=2))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from pgan.detection.convert import coco_results_to_parts, text_dir_to_parts
    from pgan.parts.boxfile import write_part_file
    from pgan.parts.extract import dataset_images

    records = dataset_images(args.dataset, args.root)
    classes = args.classes or None
    if getattr(args, "from") == "text":
        items, report = text_dir_to_parts(args.input, records, classes, args.num_parts)
    else:
        items, report = coco_results_to_parts(args.input, records, args.coco_ann, classes, args.num_parts)
    write_part_file(args.out, items)
    print(json.dumps({"out": args.out, "images": report.images, "boxes": report.boxes,
                      "images_without_boxes": len(report.missing), "clipped": report.clipped}, indent=2))
    return 0


def _cmd_proposals(args: argparse.Namespace) -> int:
    from pgan.parts.proposals import propose_parts

    report = propose_parts(args.dataset, args.root, args.out, args.num_parts, args.nms, progress=not args.quiet,
                           workers=args.workers)
    print(json.dumps(report.to_dict(), indent=2))
    return 0


def _cmd_grid(args: argparse.Namespace) -> int:
    from pgan.parts.extract import write_grid_file

    report = write_grid_file(args.dataset, args.root, args.out, args.num_parts, not args.quiet, args.workers)
    print(json.dumps(report.to_dict(), indent=2))
    return 0


def _annotation_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--voc", nargs="+", metavar="DIR",
                   help="folders of Pascal-VOC *.xml files (searched recursively)")
    g.add_argument("--coco", metavar="FILE", help="a COCO instances JSON")
    p.add_argument("--image-root", metavar="DIR",
                   help="where the annotated images are (VOC: <root>/<folder>/<filename>; COCO: "
                        "<root>/<file_name>)")
    p.add_argument("--strict-labels", action="store_true", help="classes outside the label set are errors")


def _dataset_args(p: argparse.ArgumentParser, out_help: str, out_required: bool = True) -> None:
    p.add_argument("--dataset", required=True, help="dataset reader name (custom, synth, veri776, vehicleid, ...)")
    p.add_argument("--root", required=True, help="dataset root folder (a custom dataset: its CSV)")
    add_out(p, "file", out_help, required=out_required)


def _workers(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=2, help="image-decoding threads")


def _common(p: argparse.ArgumentParser, device: bool = True) -> None:
    if device:
        add_device(p)
        add_threads(p)
    add_quiet(p)


def register(subparsers: argparse._SubParsersAction,
             more: Callable[[argparse._SubParsersAction], None] | None = None) -> argparse._SubParsersAction:
    """Add the ``parts`` command group to the ``pgan`` parser; ``more`` adds commands that need more than
    the detector may import (``pgan parts discover`` needs the re-ID backbones: :mod:`pgan.discovery_cli`)."""
    sub = add_group(subparsers, "parts", help="part regions: detector train / eval / extract, convert, proposals, "
                    "grid, discover", dest="parts_command", metavar="PARTS_COMMAND")

    p = add_command(sub, "train", help="train the part detector (Faster R-CNN, MobileNetV2-FPN) on VOC/COCO boxes",
                    example="pgan parts train --voc data/synth/annotations_voc/image_train --out runs/partdet "
                            "--minutes 30")
    _annotation_args(p)
    add_out(p, "folder", "run folder (checkpoint: <out>/last.pt)")
    p.add_argument("--classes", nargs="+", metavar="NAME",
                   help="label set (unset: the paper's 16 part classes; 'auto': every class in the annotations)")
    p.add_argument("--epochs", type=int, default=12, help="passes over the annotated images")
    p.add_argument("--batch-size", type=int, default=8, help="images per step")
    p.add_argument("--lr", type=float, default=0.02, help="SGD learning rate")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget (the schedule fits it)")
    p.add_argument("--min-size", type=int, default=160, help="detector input: the short image side in pixels")
    p.add_argument("--seed", type=int, default=0, help="seed of the data order and initialisation")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument("--no-pretrained", action="store_true", help="random initialisation (no ImageNet weights)")
    p.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)
    _common(p)
    p.set_defaults(func=_cmd_train)

    p = add_command(sub, "eval", help="box AP@0.5 per class and mean on an annotated held-out split",
                    example="pgan parts eval --checkpoint runs/partdet/last.pt --voc "
                            "data/synth/annotations_voc/image_test")
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="a checkpoint of pgan parts train")
    _annotation_args(p)
    p.add_argument("--iou", type=float, default=0.5, help="IoU a detection needs to match a ground-truth box")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    add_out(p, "file", "JSON results (unset: eval_ap.json beside the checkpoint)", required=False)
    _common(p)
    p.set_defaults(func=_cmd_eval)

    p = add_command(sub, "extract", help="run the detector over a whole dataset -> part-box file (resumable)",
                    example="pgan parts extract --checkpoint runs/partdet/last.pt --dataset synth "
                            "--root data/synth")
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="a checkpoint of pgan parts train")
    _dataset_args(p, "part-box file to write or continue (unset: parts_detector-<fingerprint>.jsonl beside the "
                     "checkpoint)", out_required=False)
    add_num_parts(p, 8, "boxes kept per image (the top N by score)")
    p.add_argument("--nms", type=float, default=0.45, help="per-class NMS IoU threshold")
    p.add_argument("--min-score", type=float, default=0.05, help="least detector confidence of a kept box")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    _workers(p)
    _common(p)
    p.set_defaults(func=_cmd_extract)

    p = add_command(sub, "convert", help="external detector output (text lines or COCO results) -> part-box file",
                    example="pgan parts convert --from text --input my_boxes/ --dataset veri776 --root data/VeRi "
                            "--out parts.jsonl")
    p.add_argument("--from", required=True, choices=("text", "coco"),
                   help="text: <input>/<split>/<image-stem>.txt with 'label score x1 y1 x2 y2' lines; "
                        "coco: a COCO detection-results JSON")
    p.add_argument("--input", required=True, metavar="PATH", help="the text folder or the results JSON")
    p.add_argument("--coco-ann", metavar="FILE",
                   help="COCO annotation JSON mapping numeric image/category ids to names")
    _dataset_args(p, "part-box file to write")
    p.add_argument("--classes", nargs="+", metavar="NAME", help="keep only these classes")
    add_num_parts(p, 0, "boxes kept per image, the best N by score (0: all)")
    p.set_defaults(func=_cmd_convert)

    p = add_command(sub, "proposals", help="training-free part proposals (no annotations) -> part-box file",
                    example="pgan parts proposals --dataset custom --root my.csv "
                            "--out runs/parts/parts_proposals.jsonl")
    _dataset_args(p, "part-box file to write or continue")
    add_num_parts(p, 16, "boxes kept per image (the model uses the top data.num_parts of them)")
    p.add_argument("--nms", type=float, default=0.45, help="IoU above which a lower-scored proposal is dropped")
    _workers(p)
    _common(p, device=False)
    p.set_defaults(func=_cmd_proposals)

    p = add_command(sub, "grid", help="uniform grid cells as a part-box file (the grid ablation via files)",
                    example="pgan parts grid --dataset synth --root data/synth --out runs/parts/parts_grid.jsonl")
    _dataset_args(p, "part-box file to write or continue")
    add_num_parts(p, 8, "grid cells per image")
    _workers(p)
    _common(p, device=False)
    p.set_defaults(func=_cmd_grid)
    if more is not None:
        more(sub)
    return sub
