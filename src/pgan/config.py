"""Typed configuration: dataclasses, YAML recipes and dotted command-line overrides.

The library never needs this module: every builder takes plain arguments. The
config is the thin layer the CLI and recipes use.

A recipe is a YAML file whose sections mirror :class:`Config`; ``_base_: x.yaml``
(relative to the recipe) inherits another recipe. Overrides are ``section.key=value``
strings whose value is parsed as YAML (``optim.lr=3e-4``, ``loss.terms=[ce,f]``).
Unknown keys and wrongly typed values raise :class:`PganError` naming the key.

The defaults below ARE the paper's training recipe (Zhang et al., T-ITS 2020, Sec. IV-B; where the
paper and the authors' code differ, the comment says which one is followed): the one place it is
written. ``configs/_paper_base.yaml`` adds only machine settings on top.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pgan.errors import PganError

__all__ = ["Config", "DataConfig", "LEGACY_DEFAULTS", "LossConfig", "ModelConfig", "OptimConfig", "RunConfig",
           "apply_overrides", "check_values", "dump_config", "load_config", "restore_config", "set_value",
           "yaml_error_line"]


@dataclass
class DataConfig:
    dataset: str = "synth"  # a name in pgan.data.datasets.DATASETS
    root: str = "data/synth"
    test_subset: str | None = None  # VehicleID: 800 | 1600 | 2400 (default); VERI-Wild: small | medium | large
    part_source: str = "file"  # file | detector | official-masks | proposals | grid (pgan.parts.sources)
    part_file: str | None = None  # part-box file; default: see pgan.engine.build.default_part_file
    part_cache: str | None = None  # folder for derived part files (proposals); default <run.out_dir>/parts
    mask_root: str | None = None  # folder of the authors' per-image .npy masks (part_source=official-masks)
    missing_parts: str = "error"  # "error" or "empty" for images the part file lacks
    input_size: tuple[int, int] = (224, 224)  # (H, W), the paper's size
    num_parts: int = 8  # D
    mask_mode: str = "any"  # box -> mask: "any" overlap switches a cell on (ours) | "fraction": covered share
    p: int = 16  # identities per batch
    k: int = 4  # images per identity
    cache_images: bool = False  # decode every image once into RAM
    workers: int = 2  # DataLoader workers (without cache) / decoding threads (with cache)
    flip_p: float = 0.5
    erase_p: float = 0.5
    epoch: str = "images"  # "images": an epoch ~ every training image once (the paper's); "identities": old


@dataclass
class ModelConfig:
    variant: str = "pgan"  # baseline | grid | nopam | pgan | oracle (weights from ground-truth roles)
    backbone: str = "resnet50"
    pretrained: bool = True  # ImageNet weights; false = random initialisation
    last_stride: int = 1
    frozen_stages: int = 0  # freeze the first N backbone stages (a CPU-budget knob; 0 in the paper)
    reduced_dim: int = 256  # C'; the retrieval feature is 2C'
    # baseline: GAP -> Linear(C, 2C') -> BNNeck, the paper's fixed 512-d for every method (Tables II, III);
    # false: the backbone's C channels. Checkpoints from before the key load with false (LEGACY_DEFAULTS).
    baseline_reduce: bool = True
    temperature: float = 10.0  # PAM softmax temperature (authors' code)
    pam_score: str = "mean"  # PAM score head: "mean" of C outputs (authors') | "single" output
    learn_temperature: bool = False  # PAM temperature as a learnable scale
    temperature_warmup: float = 0.0  # epochs over which the PAM temperature rises from 1 to T (0: off)
    part_dropout: float = 0.0  # training only: drop each part's mask with this probability (against collapse)
    oracle_temperature: float = 1.0  # variant oracle: weights softmax(T_o x role score), see pgan.engine.oracle
    part_map: str = "raw"  # F_p = F_g (1 + sum w_i M_i) ("raw", authors') | "area" (masks scaled by 1/area)
    retrieval: str = "fb"  # "fb" (F_fb) or "concat" (F_fb, F_g, F_p)
    # part variants: keep the baseline's unreduced GAP feature as a second branch with its own losses;
    # retrieval concat(l2(global), l2(fused)). Not in the paper; see pgan.models.network (issue 20).
    global_branch: bool = False
    # the part head (PAM pooling, F_p, Refine) on F_g upsampled by this factor (bilinear); masks built at
    # that size. 1: the backbone's map (the authors'). Issue 18; see pgan.models.network
    part_upsample: int = 1
    # a part box head on the detached F_g, trained on the same part boxes, so a new photo's parts can come
    # from the network's own forward pass (--parts model); see pgan.models.box_head
    box_head: bool = False
    box_threshold: float = 0.3  # the box head's peak score below which a part is absent


@dataclass
class LossConfig:
    lambda_ce: float = 2.0  # the paper's lambda (authors used 1.0 for VehicleID)
    margin: float = 0.3
    label_smoothing: float = 0.0  # the authors' code uses none
    # against attention collapse (0: off): penalise PAM weights whose entropy, normalised by log(valid
    # parts), falls below this floor: entropy_weight x mean(relu(floor - H_norm))
    entropy_floor: float = 0.0
    entropy_weight: float = 1.0
    # per-part identity loss (issue 18; 0: off): weight x mean CE of a shared classifier on each valid
    # part's mask-pooled feature, for every variant with parts (adds the classifier to the model)
    part_id_weight: float = 0.0
    box_weight: float = 1.0  # the part box head's CenterNet loss (model.box_head only)
    terms: tuple[str, ...] = ("ce", "f", "g", "p")


@dataclass
class OptimConfig:
    lr: float = 1.75e-4
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    epochs: int = 130
    warmup_epochs: float = 10.0  # linear warm-up from warmup_factor x lr (authors' code)
    warmup_factor: float = 0.01
    # lr x gamma at each. The paper: x0.5 every 20 epochs (followed here); the authors' code steps at
    # 30, 50, ..., 130 after its 10-epoch warm-up (kept).
    milestones: tuple[float, ...] = (20, 40, 60, 80, 100, 120)
    gamma: float = 0.5
    pam_lr_mult: float = 1.0  # learning rate of the PAM's parameters relative to optim.lr
    box_lr_mult: float = 10.0  # learning rate of the part box head (model.box_head) relative to optim.lr


@dataclass
class RunConfig:
    out_dir: str = "runs/default"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # mixed precision, used on CUDA only
    eval_every: int = 0  # evaluate every N epochs (0: only after the last)
    flip_test: bool = False  # average features of the image and its mirror at test time
    rerank: bool = False  # k-reciprocal re-ranking at evaluation (memory grows with query x gallery)
    sync_bn: bool = False  # SyncBatchNorm across processes under torchrun (CUDA only)
    checkpoint_every: int = 0  # also checkpoint every N steps inside an epoch (exact mid-epoch resume); 0: off
    tensorboard: bool = False  # also write losses, lr and metrics as TensorBoard events beside metrics.csv
    progress: bool = True


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        return _plain(asdict(self))


LEGACY_DEFAULTS: dict[str, Any] = {
    "model.baseline_reduce": False,  # baselines were unreduced before the key existed (issue 18)
}
"""Keys whose default changed: the value a stored config that lacks the key was trained with."""


def restore_config(stored: dict, source: str) -> Config:
    """A :class:`Config` from a checkpoint's stored dict: defaults, then :data:`LEGACY_DEFAULTS` for keys
    the stored config lacks, then its values (``source`` names the file in errors)."""
    cfg = Config()
    for dotted, value in LEGACY_DEFAULTS.items():
        section, key = dotted.split(".")
        if key not in (stored.get(section) or {}):
            set_value(cfg, dotted, value, source)
    _merge(cfg, stored, f"{source} config")
    return cfg


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against a field type (with int->float and list->tuple coercion)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arg, where)
            except PganError as exc:
                errors.append(str(exc))
        raise PganError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise PganError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(value) != len(args):
            raise PganError(f"{where}: expected {len(args)} values, got {list(value)!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if tp is bool and not isinstance(value, bool):
        raise PganError(f"{where}: expected true or false, got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise PganError(f"{where}: expected an integer, got {value!r}")
    if tp is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # e.g. data.test_subset=800
    if tp in (float, str) and not isinstance(value, tp):
        raise PganError(f"{where}: expected a {tp.__name__}, got {value!r}")
    return value


def _merge(cfg: Config, data: dict, source: str) -> None:
    if not isinstance(data, dict):
        raise PganError(f"{source}: a recipe must be a mapping of sections")
    sections = {f.name for f in dataclasses.fields(Config)}
    for section, values in data.items():
        if section not in sections:
            raise PganError(f"{source}: unknown section {section!r}; valid: {', '.join(sorted(sections))}")
        if not isinstance(values, dict):
            raise PganError(f"{source}: section {section!r} must be a mapping")
        for key, value in values.items():
            set_value(cfg, f"{section}.{key}", value, source)


def set_value(cfg: Config, dotted: str, value: Any, source: str = "override") -> None:
    """Set ``section.key`` with type checking, e.g. ``set_value(cfg, "optim.lr", 1e-3)``."""
    parts = dotted.split(".")
    if len(parts) != 2:
        raise PganError(f"{source}: key {dotted!r} must look like section.key")
    section, key = parts
    if not hasattr(cfg, section) or not dataclasses.is_dataclass(getattr(cfg, section)):
        raise PganError(f"{source}: unknown section {section!r} in {dotted!r}")
    obj = getattr(cfg, section)
    hints = typing.get_type_hints(type(obj))
    if key not in hints:
        raise PganError(f"{source}: unknown key {dotted!r}; valid keys in {section}: {', '.join(sorted(hints))}")
    setattr(obj, key, _coerce(value, hints[key], f"{source}: {dotted}"))


def _load_yaml(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[dict, str]]:
    if not path.is_file():
        raise PganError(f"config file {path} does not exist")
    if path.resolve() in seen:
        raise PganError(f"{path}: _base_ chain loops back on itself")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PganError(yaml_error_line(path, exc)) from None
    if not isinstance(data, dict):
        raise PganError(f"{path}: a recipe must be a mapping of sections")
    layers: list[tuple[dict, str]] = []
    base = data.pop("_base_", None)
    if base is not None:
        layers += _load_yaml(path.parent / base, seen + (path.resolve(),))
    layers.append((data, str(path)))
    return layers


def yaml_error_line(path: str | Path, exc: yaml.YAMLError) -> str:
    """``file:line:column: message`` on one line, from a PyYAML error."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    message = "; ".join(p for p in parts if p) or str(exc).splitlines()[0]
    return f"{where}: not valid YAML: {' '.join(message.split())}"


_RANGES: tuple[tuple[str, float, float, bool], ...] = (
    # key, low, high, low_inclusive (every value must also be finite)
    ("optim.lr", 0.0, math.inf, False),
    ("optim.weight_decay", 0.0, math.inf, True),
    ("optim.warmup_epochs", 0.0, math.inf, True),
    ("optim.warmup_factor", 0.0, 1.0, False),
    ("optim.gamma", 0.0, math.inf, False),
    ("loss.margin", 0.0, math.inf, True),
    ("loss.lambda_ce", 0.0, math.inf, True),
    ("loss.label_smoothing", 0.0, 1.0, True),
    ("loss.entropy_floor", 0.0, 1.0, True),
    ("loss.entropy_weight", 0.0, math.inf, True),
    ("loss.part_id_weight", 0.0, math.inf, True),
    ("loss.box_weight", 0.0, math.inf, True),
    ("model.box_threshold", 0.0, 1.0, True),
    ("model.temperature_warmup", 0.0, math.inf, True),
    ("model.temperature", 0.0, math.inf, False),
    ("model.part_dropout", 0.0, 1.0, True),
    ("model.part_upsample", 1, 8, True),
    ("model.oracle_temperature", 0.0, math.inf, False),
    ("data.flip_p", 0.0, 1.0, True),
    ("data.erase_p", 0.0, 1.0, True),
    ("data.workers", 0, math.inf, True),
    ("run.eval_every", 0, math.inf, True),
    ("run.checkpoint_every", 0, math.inf, True),
    ("optim.pam_lr_mult", 0.0, math.inf, False),
    ("optim.box_lr_mult", 0.0, math.inf, False),
)


def check_values(cfg: Config) -> None:
    """Range checks of numeric keys (finite, within bounds); :class:`PganError` naming the first bad key.

    Names (variants, backbones, datasets) are checked where their registries live
    (:func:`pgan.engine.build.validate_config`).
    """
    for key, low, high, low_inclusive in _RANGES:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        ok = math.isfinite(value) and (value >= low if low_inclusive else value > low) and value <= high
        if not ok:
            bound = "[" if low_inclusive else "("
            upper = "inf)" if math.isinf(high) else f"{high:g}]"
            raise PganError(f"{key}={value} is out of range: must be finite and in {bound}{low:g}, {upper}")
    betas = cfg.optim.betas
    if not all(math.isfinite(b) and 0.0 <= b < 1.0 for b in betas):
        raise PganError(f"optim.betas={list(betas)} must both be in [0, 1)")
    if any(not math.isfinite(m) or m < 0 for m in cfg.optim.milestones):
        raise PganError(f"optim.milestones={list(cfg.optim.milestones)} must be non-negative epochs")
    if cfg.model.temperature_warmup > cfg.optim.epochs:
        # the run would end (and evaluate) with the PAM below its temperature, a reloaded checkpoint at it
        raise PganError(f"model.temperature_warmup={cfg.model.temperature_warmup:g} is longer than the run "
                        f"(optim.epochs={cfg.optim.epochs}): the warm-up must end by the last epoch")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the recipe (and its ``_base_`` chain), then ``section.key=value`` overrides."""
    cfg = Config()
    if path is not None:
        for data, source in _load_yaml(Path(path)):
            _merge(cfg, data, source)
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """Apply ``section.key=value`` strings (values parsed as YAML) to ``cfg`` in place; returns it."""
    for item in overrides:
        if "=" not in item:
            raise PganError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        set_value(cfg, key.strip(), value, "override")
    return cfg


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
