"""CPU time of the saliency part proposals per photo: the array implementation against the loop reference.

On ``--n`` real-dev val photos (``<root>/val.txt``, then ``train.txt`` if val has fewer; or the first
``--n`` ``*.jpg`` of ``--folder``, e.g. the load test's 160 px query uploads), decoded once up front,
one thread (``torch.set_num_threads(1)``; run it with ``OMP_NUM_THREADS=1``):

* ``reference``: :func:`pgan.parts.proposals_reference.propose_boxes_reference` (the loop version that
  wrote the part files made before the array version), fed as search time fed it then: a ``(3, H, W)``
  copy of the decoded photo (``DecodedImage.chw_uint8``) turned back to ``(H, W, 3)``;
* ``array``: :func:`pgan.parts.proposals.propose_boxes` on the decoded ``(H, W, 3)`` array, as search time
  (``TestTimeParts``) and ``pgan parts proposals`` call it now.

Both are timed with ``time.process_time`` over the same photos, alternating in ``--repeats`` rounds (so
a load change on a shared machine hits both alike); the row reports each round's ms per photo and their
median, and the ratio. The stages of the array version (resize to the working scale, box filter, local
median, saliency, components and scores, NMS) are timed in one more pass. Box agreement: how many photos
have exactly the same boxes, and the mean IoU of each new box with its best-matching reference box.
Writes ``docs/proposal_speed.json`` (``--out``) with the 1-minute load average at the start.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/proposal_speed.py --root ../shared/real-dev
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/proposal_speed.py \
        --folder data/serve-bench/synth/image_query --out docs/proposal_speed_serve_bench.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pgan.inference.images import decode
from pgan.parts import proposals as P
from pgan.parts.boxfile import PartBox
from pgan.parts.proposals_reference import propose_boxes_reference
from pgan.utils.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]


def photo_paths(root: Path, n: int) -> list[Path]:
    names = (root / "val.txt").read_text().split()
    if len(names) < n:
        names += (root / "train.txt").read_text().split()
    return [root / "images" / name for name in names[:n]]


def mean_matched_iou(new: list[list[PartBox]], old: list[list[PartBox]]) -> float | None:
    """Mean over every new box of its best IoU with a reference box of the same photo (photos where
    either list is empty are left out)."""
    import torchvision

    vals = []
    for a, b in zip(new, old):
        if a and b:
            ta = torch.tensor([[x.x1, x.y1, x.x2, x.y2] for x in a])
            tb = torch.tensor([[x.x1, x.y1, x.x2, x.y2] for x in b])
            vals += torchvision.ops.box_iou(ta, tb).max(1).values.tolist()
    return round(float(np.mean(vals)), 4) if vals else None


def stage_ms(arrays: list[np.ndarray]) -> dict[str, float]:
    """ms of CPU per photo of each stage of :func:`pgan.parts.proposals.propose_boxes`."""
    tot = dict.fromkeys(("resize", "box_filter", "local_median", "saliency", "components_and_scores", "nms"), 0.0)
    for image in arrays:
        t = time.process_time()
        h0, w0 = image.shape[:2]
        scale = P.WORK_SIZE / max(h0, w0)
        w, h = max(8, round(w0 * scale)), max(8, round(h0 * scale))
        img = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
        t1 = time.process_time()
        fine = P._box_filter(img, 1)
        t2 = time.process_time()
        med = P._local_median(fine)
        t3 = time.process_time()
        sal = np.abs(fine - med).sum(-1)
        t4 = time.process_time()
        boxes, scores = P._score_candidates(sal)
        t5 = time.process_time()
        if len(boxes):
            P._nms(boxes, scores, 0.45)
        t6 = time.process_time()
        for key, dt in zip(tot, (t1 - t, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
            tot[key] += dt
    return {k: round(v / len(arrays) * 1000, 3) for k, v in tot.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=ROOT.parent / "shared" / "real-dev")
    ap.add_argument("--folder", type=Path, default=None, help="photos (*.jpg) of this folder instead of real-dev")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "proposal_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    paths = sorted(args.folder.glob("*.jpg"))[:args.n] if args.folder else photo_paths(args.root, args.n)
    decoded = [decode(p) for p in paths]
    arrays = [d.rgb for d in decoded]
    P.propose_boxes(arrays[0])  # imports (torchvision's NMS) and first-call costs out of the timing
    propose_boxes_reference(decoded[0].chw_uint8().permute(1, 2, 0).numpy())

    def reference() -> list[list[PartBox]]:
        return [propose_boxes_reference(d.chw_uint8().permute(1, 2, 0).numpy()) for d in decoded]

    def array() -> list[list[PartBox]]:
        return [P.propose_boxes(a) for a in arrays]

    if args.folder:
        where = args.folder.resolve()
        source = f"{where.relative_to(ROOT) if where.is_relative_to(ROOT) else where}: the first *.jpg by name"
    else:
        source = f"{args.root.name}: val.txt first (then train.txt)"
    rounds: dict[str, list[float]] = {"reference": [], "array": []}
    out: dict[str, list[list[PartBox]]] = {}
    for _ in range(args.repeats):
        for name, fn in (("reference", reference), ("array", array)):
            t = time.process_time()
            out[name] = fn()
            rounds[name].append(round((time.process_time() - t) / len(arrays) * 1000, 3))
    med = {k: statistics.median(v) for k, v in rounds.items()}
    same = sum(a == b for a, b in zip(out["array"], out["reference"]))
    sizes = np.array([a.shape[:2] for a in arrays])
    row = {
        "photos": len(arrays), "photo_source": source,
        "median_side_px": [int(np.median(sizes[:, 0])), int(np.median(sizes[:, 1]))],
        "reference_ms_per_photo": med["reference"], "array_ms_per_photo": med["array"],
        "reference_over_array": round(med["reference"] / med["array"], 2),
        "rounds_ms_per_photo": rounds, "array_stages_ms_per_photo": stage_ms(arrays),
        "photos_with_identical_boxes": same, "boxes": sum(len(b) for b in out["array"]),
        "mean_iou_new_box_to_best_reference_box": mean_matched_iou(out["array"], out["reference"]),
        "timer": "time.process_time (CPU of this process), one thread", "repeats": args.repeats,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_average_1min_at_start": round(load, 2),
        "cpu_count": os.cpu_count(), "numpy": np.__version__, "python": platform.python_version(),
        "work_size": P.WORK_SIZE,
    }
    atomic_write_json(args.out, row)
    print(f"reference {med['reference']:.2f} ms/photo, array {med['array']:.2f} ms/photo "
          f"({row['reference_over_array']}x); identical boxes on {same}/{len(arrays)} photos; "
          f"load average at start {load:.2f}; wrote {args.out}")


if __name__ == "__main__":
    main()
