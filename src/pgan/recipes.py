"""The CPU recipe for the synthetic benchmark, shared by ``pgan demo`` and ``benchmarks/``.

Differences from the paper's GPU recipe, all for a 2-core CPU budget (each is
an ordinary config key, so the paper's values are one override away):

* MobileNetV2 (ImageNet weights available offline) instead of ResNet-50;
* 160x160 input with last stride 1 -> a 10x10 feature map (the paper: 224 -> 14x14);
* the first two backbone stages frozen (stride <= 4), images cached in RAM;
* a short schedule, warm-up scaled down.

Budgets in steps (batches of P x K = 64), so figures from before and after the
epoch change (``data.epoch``: an epoch was ``num_ids // P`` = 10 steps on the
160-identity benchmark set, it is now about one pass over every image, 28 steps)
can be compared: ``SYNTH_CPU`` is 9 epochs = 252 steps (was 24 x 10 = 240),
``SYNTH_ABLATION_CPU`` 3 epochs = 84 steps (was 8 x 10 = 80).

One source of truth: the dicts below. ``configs/synth_pgan.yaml`` and ``configs/synth_baseline.yaml``
are generated from them (``make configs``, i.e. :func:`write_synth_configs`); edit the dict, then
regenerate.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from pgan.config import Config, load_config, set_value
from pgan.utils.atomic import atomic_write_text

__all__ = ["SYNTH_ABLATION_CPU", "SYNTH_CPU", "synth_cpu_config", "synth_recipe_yaml", "write_synth_configs"]

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
    "optim.epochs": 9,  # 252 steps on the benchmark set (28 per epoch)
    "optim.warmup_epochs": 0.75,  # 21 steps
    "optim.milestones": (6, 8),  # steps 168 and 224
}

# ``pgan bench ablation --dataset synth`` and the issue-12 benchmarks (both settings): about a third
# of SYNTH_CPU's budget, so the grids fit on a 2-core CPU (about 4 minutes per run on one thread).
# Measured at the old 80-step budget, PGAN's gain over the baseline was larger (+3.6 mAP) than at 240
# steps (+1.5), so the short budget does not favour the baseline on this benchmark.
SYNTH_ABLATION_CPU = {**SYNTH_CPU, "optim.epochs": 3, "optim.warmup_epochs": 0.375,  # 84 steps, 10.5 warm-up
                      "optim.milestones": (2.25,)}  # step 63


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


def synth_recipe_yaml(variant: str, data_root: str = "data/synth") -> str:
    """The YAML recipe of :data:`SYNTH_CPU` for ``variant`` (what ``configs/synth_<variant>.yaml`` holds)."""
    values = {**SYNTH_CPU, "model.variant": variant, "data.root": data_root,
              "run.out_dir": f"runs/synth_{variant}"}
    nested: dict[str, dict] = {}
    for key, value in values.items():
        section, name = key.split(".", 1)
        nested.setdefault(section, {})[name] = list(value) if isinstance(value, tuple) else value
    lines = ["# GENERATED from pgan.recipes.SYNTH_CPU by `make configs`: edit src/pgan/recipes.py, then",
             f"# regenerate. The synthetic benchmark's CPU recipe ({variant}); the reasons for each value are in",
             f"# pgan.recipes' docstring. Generate the data first: pgan synth --out {data_root}"]
    for section, items in nested.items():
        lines.append(f"{section}:")
        lines += [f"  {name}: {yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
                  for name, value in items.items()]
    return "\n".join(lines) + "\n"


def write_synth_configs(out_dir: str | Path, variants: tuple[str, ...] = ("pgan", "baseline")) -> list[Path]:
    """Write ``synth_<variant>.yaml`` for each variant into ``out_dir`` (the repository's ``configs/``)."""
    paths = []
    for variant in variants:
        path = Path(out_dir) / f"synth_{variant}.yaml"
        atomic_write_text(path, synth_recipe_yaml(variant))
        paths.append(path)
    return paths
