"""``pgan parts discover``: annotation-free parts from the ImageNet backbone's features (DFF or k-means).

Example (your own photos, no part labels)::

    pgan parts discover --method dff --dataset custom --root my.csv --out runs/parts/parts_dff.jsonl
    pgan train --config configs/custom_pgan.yaml data.root=my.csv data.part_source=dff \\
        data.part_file=runs/parts/parts_dff.jsonl

The basis is fitted on the training split only and saved beside the part file
(``parts_dff.basis.npz``); a rerun reuses it and continues the file where it stopped.
"""

from __future__ import annotations

import argparse
import json

from pgan.cli_options import add_command, add_num_parts, add_out, add_quiet, add_threads, set_torch_threads

__all__ = ["DISCOVERY_CHOICES", "register"]

# pgan.parts.discovery.DISCOVERY_METHODS, spelled out so that building the parser imports no torch (a test
# checks the two agree)
DISCOVERY_CHOICES = ("dff", "kmeans")


def _cmd_discover(args: argparse.Namespace) -> int:
    from pgan.models.backbones import frozen_imagenet_backbone
    from pgan.parts.discovery import discover_parts

    set_torch_threads(args.threads)
    features = frozen_imagenet_backbone(args.backbone)
    report = discover_parts(args.dataset, args.root, args.out, features, args.method, k=args.num_parts,
                            input_size=args.input_size, seed=args.seed, max_fit_images=args.max_fit_images,
                            progress=not args.quiet, workers=args.workers)
    print(json.dumps(report.to_dict(), indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``discover`` to the ``pgan parts`` group."""
    p = add_command(sub, "discover",
                    help="annotation-free parts from ImageNet features (dff | kmeans) -> part file",
                    example="pgan parts discover --method dff --dataset custom --root my.csv "
                            "--out runs/parts/parts_dff.jsonl")
    p.add_argument("--method", choices=DISCOVERY_CHOICES, default="dff",
                   help="dff: non-negative factorisation of the features; kmeans: clusters of feature cells")
    p.add_argument("--dataset", required=True, help="dataset reader name (custom, synth, veri776, vehicleid, ...)")
    p.add_argument("--root", required=True, help="dataset root folder (a custom dataset: its CSV)")
    add_out(p, "file", "part-box file to write or continue (parts_dff*.jsonl, ...)")
    add_num_parts(p, 10, "components fitted: at most one box each per image")
    p.add_argument("--backbone", default="mobilenet_v2",
                   help="ImageNet backbone of the features (pgan.list_backbones())")
    p.add_argument("--input-size", type=int, default=224, help="square input side for the features")
    p.add_argument("--max-fit-images", type=int, default=400, help="training images the basis is fitted on")
    p.add_argument("--seed", type=int, default=0, help="seed of the fitting")
    p.add_argument("--workers", type=int, default=2, help="image-decoding threads")
    add_threads(p)
    add_quiet(p)
    p.set_defaults(func=_cmd_discover)
