"""What annotation-free parts hit on the synthetic benchmark: identity parts, shared parts or neither.

For each source (the generator's ground truth as the reference, saliency proposals, DFF and k-means
parts fitted on the training split), the top-D boxes of every test image (query and gallery) are
matched to the ground-truth part boxes (:func:`pgan.parts.roles.selection_roles`): a box takes the
role of the ground-truth box it overlaps most at IoU >= 0.5 (``identity``: the vehicle's own part;
``shared``: a part its whole family has), else it is ``clutter`` (background, body panels, or a
box too loose to match). The same figures at IoU >= 0.25 say how many boxes are near a part but too
loose or too tight to count.

Writes ``docs/part_hits.json`` and prints the table. Part files are written once under ``--out``.

    python benchmarks/part_hits.py                       # the hard setting of benchmarks/synth_variants.py
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import synth_variants  # the sibling script (a script's folder is on sys.path): the hard setting's parameters
from pgan.data.datasets import read_dataset
from pgan.models.backbones import frozen_imagenet_backbone
from pgan.parts.boxfile import read_part_file
from pgan.parts.discovery import discover_parts
from pgan.parts.proposals import propose_parts
from pgan.parts.roles import box_roles
from pgan.parts.selection import select_top_d
from pgan.synth import generate_synth, synth_config_from_dict
from pgan.utils.atomic import atomic_write_json

ROLES = ("identity", "shared", "clutter")


def role_shares(selected: dict[str, list], truth: dict, min_iou: float) -> dict:
    """Share of all selected boxes per role, and the share of images with at least one identity part."""
    counts = dict.fromkeys(ROLES, 0)
    with_identity, images = 0, 0
    for key, boxes in selected.items():
        gt = truth.get(key)
        roles = box_roles(boxes, gt.boxes if gt is not None else None, min_iou)
        for r in roles:
            counts[r or "clutter"] += 1
        with_identity += "identity" in roles
        images += 1
    total = max(1, sum(counts.values()))
    return {**{r: counts[r] / total for r in ROLES}, "boxes_per_image": total / max(1, images),
            "images_with_identity_part": with_identity / max(1, images), "images": images}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", choices=list(synth_variants.SETTINGS), default="hard")
    ap.add_argument("--data", default=None, help="dataset folder (default data/bench-synth[-<setting>])")
    ap.add_argument("--out", default="runs/part_hits")
    ap.add_argument("--docs", default="docs")
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    suffix = "" if args.setting == "standard" else f"-{args.setting}"
    data = Path(args.data or f"data/bench-synth{suffix}")
    setting = synth_config_from_dict(dict(synth_variants.SETTINGS[args.setting]))
    generate_synth(data, setting, progress=args.progress)
    out = Path(args.out) / args.setting
    files = {"ground truth": data / "parts_gt.jsonl", "proposals": out / "parts_proposals.jsonl",
             "dff": out / "parts_dff.jsonl", "kmeans": out / "parts_kmeans.jsonl"}
    propose_parts("synth", str(data), str(files["proposals"]), progress=args.progress)
    features = frozen_imagenet_backbone("mobilenet_v2")
    for method in ("dff", "kmeans"):  # fitted on the training split only, at the benchmark's 160 px
        discover_parts("synth", data, files[method], features, method, input_size=160, progress=args.progress)
    ds = read_dataset("synth", data)
    test_keys = {r.key for r in [*ds.query, *ds.gallery]}
    truth = read_part_file(files["ground truth"])
    result: dict = {"setting": args.setting, "d": args.d, "sources": {}}
    for name, path in files.items():
        items = read_part_file(path)
        # Ground-truth boxes carry their role; the others are matched to the ground truth.
        selected = {k: select_top_d(items[k].boxes, args.d) for k in test_keys if k in items}
        result["sources"][name] = {f"iou{t}": role_shares(selected, truth, t) for t in (0.5, 0.25)}
    atomic_write_json(Path(args.docs) / f"part_hits_{args.setting}.json", result)
    print("| source | identity | shared | clutter | images with an identity part | (IoU >= 0.25: identity, "
          "shared, clutter) |\n|---|---|---|---|---|---|")
    for name, r in result["sources"].items():
        a, b = r["iou0.5"], r["iou0.25"]
        loose = ", ".join(f"{b[r]:.2f}" for r in ROLES)
        print(f"| {name} | {a['identity']:.2f} | {a['shared']:.2f} | {a['clutter']:.2f} | "
              f"{a['images_with_identity_part']:.2f} | {loose} |")


if __name__ == "__main__":
    main()
