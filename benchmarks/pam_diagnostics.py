"""Why does the PAM prefer some parts? Per-role gradients, areas and weights of a trained PGAN run.

For a few P x K training batches of a trained run's own dataset, it runs the training loss and
records, for every selected part: its role (identity / shared / clutter, from the ground truth),
its mask area in feature cells, its PAM weight, and the gradient of the loss with respect to its
weight ``dL/dw_i``. The softmax moves weight towards parts whose ``-dL/dw_i`` is above the image's
weighted mean, so a gradient that grows with area steers the PAM to large parts whatever they
show. Writes ``<out>/pam_diagnostics.json`` and prints a table per run.

Wheels are their own roles (``identity_rim``, ``plain_wheel``; see
:func:`pgan.evaluation.attention_roles.separate_wheels`), so ``identity`` and ``shared`` leave them out.
The rank correlation gives tied values their average rank (``scipy.stats.rankdata``'s default when scipy
is installed, the same rule in numpy otherwise), so ties (equal areas are common with binary masks) no
longer depend on the order the parts came in. The loss is the run's own (its entropy floor and per-part
identity loss included).

    python benchmarks/pam_diagnostics.py runs/bench/synth_dev/pam/authors__pam_s0/last.pt \\
        runs/bench/synth_dev/pam/part_map___area_s0/last.pt --out docs
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from pgan.data.build import read_configured_dataset
from pgan.data.image_dataset import ReidImageDataset
from pgan.data.records import relabel
from pgan.data.sampler import IdentityBatchSampler
from pgan.engine.build import build_part_source
from pgan.evaluation.attention_roles import separate_wheels
from pgan.losses.combined import PganLoss
from pgan.models.build import build_network, mask_size
from pgan.models.trained import load_checkpoint
from pgan.parts.boxfile import read_part_file
from pgan.parts.roles import box_roles, match_truth
from pgan.parts.selection import select_top_d
from pgan.utils.atomic import atomic_write_json
from pgan.utils.seeding import seed_everything


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``x`` with ties given their average rank (``scipy.stats.rankdata(x)``)."""
    try:
        from scipy.stats import rankdata
    except ImportError:
        x = np.asarray(x, dtype=np.float64)
        values, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
        ends = np.cumsum(counts)  # the rank of each distinct value's last copy
        return ((ends - (counts - 1) / 2.0)[inverse]).astype(np.float64)
    return rankdata(x).astype(np.float64)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation with tied ranks averaged (nan for fewer than 3 values or a constant)."""
    if len(a) < 3:
        return float("nan")
    ra, rb = average_ranks(a), average_ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _config(ckpt: dict):
    from pgan.config import restore_config

    return restore_config(ckpt["config"], "checkpoint")


def diagnose(checkpoint: Path, batches: int = 6, trust: bool = False) -> dict:
    """Per-part records over ``batches`` training batches, summarised per role."""
    seed_everything(0)
    ckpt = load_checkpoint(checkpoint, trust=trust)
    cfg = _config(ckpt)
    model = build_network(cfg, ckpt["num_classes"], pretrained=False)
    model.load_state_dict(ckpt["model"])
    ds = read_configured_dataset(cfg)
    train_records, _ = relabel(ds.train)
    parts = build_part_source(cfg)
    feat = mask_size(model, tuple(cfg.data.input_size))
    data = ReidImageDataset(train_records, tuple(cfg.data.input_size), feat, parts, train=False, progress=False)
    sampler = IdentityBatchSampler(data.pids, cfg.data.p, cfg.data.k, seed=123)
    loader = DataLoader(data, batch_sampler=sampler)
    loss_fn = PganLoss(cfg.loss.lambda_ce, cfg.loss.margin, cfg.loss.label_smoothing, tuple(cfg.loss.terms),
                       entropy_floor=cfg.loss.entropy_floor, entropy_weight=cfg.loss.entropy_weight,
                       part_id_weight=cfg.loss.part_id_weight)
    truth = read_part_file(Path(cfg.data.root) / "parts_gt.jsonl")
    model.train()
    for m in model.modules():  # keep the trained BatchNorm statistics
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    rows = []
    for b, batch in enumerate(loader):
        if b == batches:
            break
        out = model(batch["image"], batch["masks"])
        out.part_weights.retain_grad()
        loss_fn(out, batch["pid"]).total.backward()
        grads, weights = out.part_weights.grad.numpy(), out.part_weights.detach().numpy()
        areas = batch["masks"].flatten(2).sum(-1).numpy()
        for j, idx in enumerate(batch["index"].tolist()):
            rec = train_records[idx]
            item = parts.boxes_for(rec.key)
            sel = select_top_d(item.boxes, cfg.data.num_parts) if item else []
            gt = truth.get(rec.key)
            gt_boxes = gt.boxes if gt else None
            labels = [m.label if m is not None else None for m in match_truth(sel, gt_boxes)]
            (roles,) = separate_wheels([box_roles(sel, gt_boxes)], [labels])
            n = int((areas[j] > 0).sum())
            gbar = float((weights[j] * grads[j]).sum())  # the softmax's reference: sum_k w_k g_k
            for i, role in enumerate(roles):
                if areas[j, i] > 0 and role is not None:
                    rows.append({"role": role, "area": float(areas[j, i]), "weight_rel": float(weights[j, i] * n),
                                 "grad": float(grads[j, i]), "push": float(-(grads[j, i] - gbar))})
        model.zero_grad(set_to_none=True)
    out: dict = {"checkpoint": str(checkpoint), "part_map": cfg.model.part_map, "parts": len(rows), "roles": {}}
    area = np.array([r["area"] for r in rows])
    push = np.array([r["push"] for r in rows])
    # Spearman rank correlation of "how hard the loss pushes a part's weight up" with its area.
    out["spearman_push_vs_area"] = spearman(area, push)
    for role in ("identity", "shared", "identity_rim", "plain_wheel", "clutter"):
        sel = [r for r in rows if r["role"] == role]
        if sel:
            keys = ("area", "weight_rel", "grad", "push")
            out["roles"][role] = {k: float(np.mean([r[k] for r in sel])) for k in keys}
            out["roles"][role]["n"] = len(sel)
            out["roles"][role]["abs_grad"] = float(np.mean([abs(r["grad"]) for r in sel]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--trust-checkpoint", action="store_true", help="load checkpoints of the old format")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = [diagnose(Path(c), args.batches, args.trust_checkpoint) for c in args.checkpoints]
    for r in results:
        print(f"\n{r['checkpoint']} (part_map={r['part_map']}, {r['parts']} parts; Spearman(push up, area) = "
              f"{r['spearman_push_vs_area']:.2f})")
        print("| role | parts | mean area (cells) | weight (x uniform) | mean |dL/dw| | mean push up |")
        print("|---|---|---|---|---|---|")
        for role, s in r["roles"].items():
            print(f"| {role} | {s['n']} | {s['area']:.1f} | {s['weight_rel']:.2f} | {s['abs_grad']:.2e} | "
                  f"{s['push']:+.2e} |")
    atomic_write_json(Path(args.out) / "pam_diagnostics.json", results)


if __name__ == "__main__":
    main()
