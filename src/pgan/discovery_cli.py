"""``pgan parts discover``: annotation-free parts from the ImageNet backbone's features (DFF or k-means).

Example (your own photos, no part labels)::

    pgan parts discover --method dff --dataset custom --root my_photos.csv --out runs/parts/parts_dff.jsonl
    pgan train --config configs/my.yaml data.part_source=dff data.part_file=runs/parts/parts_dff.jsonl

The basis is fitted on the training split only and saved beside the part file
(``parts_dff.basis.npz``); a rerun reuses it and continues the file where it stopped.
"""

from __future__ import annotations

import argparse
import json

from pgan.errors import PganError
from pgan.models.backbones import BACKBONES, frozen_imagenet_backbone
from pgan.parts.discovery import DISCOVERY_METHODS, discover_parts

__all__ = ["register"]


def _cmd_discover(args: argparse.Namespace) -> int:
    if args.threads:
        import torch

        if args.threads < 1:
            raise PganError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    features = frozen_imagenet_backbone(args.backbone)
    report = discover_parts(args.dataset, args.root, args.out, features, args.method, k=args.k,
                            input_size=args.input_size, seed=args.seed, max_fit_images=args.max_fit_images,
                            progress=not args.quiet, workers=args.workers)
    print(json.dumps(report.to_dict(), indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``discover`` to the ``pgan parts`` group."""
    p = sub.add_parser("discover", help="annotation-free parts from ImageNet features (dff | kmeans) -> part file")
    p.add_argument("--method", choices=DISCOVERY_METHODS, default="dff")
    p.add_argument("--dataset", required=True, help="dataset reader name (custom, veri776, synth, ...)")
    p.add_argument("--root", required=True, help="dataset root folder (or the CSV of a custom dataset)")
    p.add_argument("--out", required=True, help="part-box file to write or continue (parts_dff*.jsonl, ...)")
    p.add_argument("--k", type=int, default=10, help="components fitted (at most one box each per image)")
    p.add_argument("--backbone", default="mobilenet_v2", choices=list(BACKBONES))
    p.add_argument("--input-size", type=int, default=224, help="square input side for the features")
    p.add_argument("--max-fit-images", type=int, default=400, help="training images the basis is fitted on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="image-decoding threads")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_discover)
