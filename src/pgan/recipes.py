"""The CPU recipe for the synthetic benchmark, shared by ``pgan demo`` and ``benchmarks/``.

Differences from the paper's GPU recipe, all for a 2-core CPU budget (each is
an ordinary config key, so the paper's values are one override away):

* MobileNetV2 (ImageNet weights available offline) instead of ResNet-50;
* 160x160 input with last stride 1 -> a 10x10 feature map (the paper: 224 -> 14x14);
* the first two backbone stages frozen (stride <= 4), images cached in RAM;
* a short schedule in epochs of the synthetic training set, warm-up scaled down.
"""

from __future__ import annotations

from pgan.config import Config, load_config, set_value

SYNTH_CPU = {
    "data.dataset": "synth",
    "data.input_size": (160, 160),
    "data.cache_images": True,
    "data.p": 16,
    "data.k": 4,
    "model.backbone": "mobilenet_v2",
    "model.pretrained": True,
    "model.frozen_stages": 2,
    "optim.lr": 3.5e-4,
    "optim.epochs": 24,
    "optim.warmup_epochs": 2.0,
    "optim.milestones": (16, 21),
}

# ``pgan bench ablation --dataset synth``: the default grids (variants, losses, parts: 11 distinct
# configs x 3 seeds = 33 runs) have to fit in about an hour on a 2-core CPU, i.e. about 3.5 minutes
# per run on one thread, so a third of SYNTH_CPU's schedule. Short schedules favour the baseline
# (PGAN's Refine heads start from scratch); the variants benchmark keeps the full SYNTH_CPU budget.
SYNTH_ABLATION_CPU = {**SYNTH_CPU, "optim.epochs": 8, "optim.warmup_epochs": 1.0, "optim.milestones": (6,)}


def synth_cpu_config(variant: str, data_root: str, out_dir: str, seed: int = 0, recipe: dict | None = None,
                     **extra) -> Config:
    """The synthetic-benchmark CPU recipe (``recipe``, default :data:`SYNTH_CPU`) for one variant;
    ``extra`` takes dotted keys with ``__`` for ``.`` (e.g. ``optim__epochs=2``)."""
    cfg = load_config()
    for key, value in (SYNTH_CPU if recipe is None else recipe).items():
        set_value(cfg, key, value, "synth recipe")
    set_value(cfg, "model.variant", variant)
    set_value(cfg, "data.root", data_root)
    set_value(cfg, "run.out_dir", out_dir)
    set_value(cfg, "run.seed", seed)
    for key, value in extra.items():
        set_value(cfg, key.replace("__", "."), value)
    return cfg
