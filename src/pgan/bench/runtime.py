"""``pgan bench runtime``: milliseconds per image of each inference module (the paper's Table VII).

Modules: the part detector, building the part masks from its boxes, the re-ID
network (baseline and PGAN with the same backbone and input size, random
initialisation: timing does not depend on the weights) and the total. All
modules of one (device, batch) cell are timed *interleaved* in one run, after
warm-up, alternating their order every repeat, and reported as medians, so the
PGAN/baseline ratio is measured under the same machine load.

``plain-head`` times PGAN's head written the straightforward way (see
:func:`plain_head_embedding`): ``Refine_f`` over the whole concatenated map,
then the global average pool. The model itself computes the same embedding
with exact rewrites (``Refine.forward_pooled`` and ``forward_pooled_pair``), so
the two rows show what the efficient eval path saves.

Example::

    res = bench_runtime("resnet50", (224, 224), batch_sizes=(1, 32), repeats=5, threads=2)
    print(res.markdown())
"""

from __future__ import annotations

import logging
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from pgan.detection import model as part_detector
from pgan.errors import PganError
from pgan.models.backbones import build_backbone
from pgan.models.network import ReidNet
from pgan.models.part_attention import part_guided_map, uniform_part_weights
from pgan.parts.boxfile import PartBox
from pgan.parts.masks import boxes_to_masks

log = logging.getLogger(__name__)

MODULES = ("detector", "masks", "baseline", "pgan", "plain-head")
LABELS = {"detector": "part detector", "masks": "part masks (boxes -> masks)",
          "baseline": "re-ID network: baseline", "pgan": "re-ID network: PGAN",
          "plain-head": "re-ID network: PGAN with a plain head (whole-map Refine; for comparison)"}


@dataclass
class Timing:
    device: str
    batch: int
    module: str
    ms_per_image: float  # median over repeats
    ms_per_batch: float
    repeats: int


@dataclass
class RuntimeResult:
    backbone: str
    input_size: tuple[int, int]
    detector: str
    detector_stand_in: bool
    threads: int
    timings: list[Timing] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)  # "cpu/b32" -> median PGAN / median baseline
    paired_ratios: dict[str, float] = field(default_factory=dict)  # median over repeats of PGAN / baseline
    plain_ratios: dict[str, float] = field(default_factory=dict)  # plain-head / baseline
    plain_max_abs_diff: float = 0.0  # plain-head vs ReidNet embedding, relative to its largest entry
    gmacs: dict[str, float] = field(default_factory=dict)  # multiply-accumulates per image (load-independent)
    host: str = field(default_factory=platform.node)

    def ms(self, device: str, batch: int, module: str) -> float:
        for t in self.timings:
            if (t.device, t.batch, t.module) == (device, batch, module):
                return t.ms_per_image
        raise KeyError((device, batch, module))

    def cells(self) -> list[tuple[str, int]]:
        return list(dict.fromkeys((t.device, t.batch) for t in self.timings))

    def markdown(self) -> str:
        """Table VII's shape: one row per module, one column per (device, batch), ms per image."""
        cells = self.cells()
        det = LABELS["detector"] + (f" (stand-in: {self.detector})" if self.detector_stand_in
                                    else f" ({self.detector})")
        head = "| module (ms / image) | " + " | ".join(f"{d} batch {b}" for d, b in cells) + " |"
        lines = [f"Backbone {self.backbone}, input {self.input_size[0]}x{self.input_size[1]}, "
                 f"{self.threads} CPU threads, medians over interleaved repeats after warm-up.", "",
                 head, "|---|" + "---|" * len(cells)]
        for m in MODULES:
            label = det if m == "detector" else LABELS[m]
            lines.append(f"| {label} | " + " | ".join(f"{self.ms(d, b, m):.2f}" for d, b in cells) + " |")
        lines.append("| **total PGAN** (detector + masks + PGAN) | " + " | ".join(
            f"**{self.ms(d, b, 'detector') + self.ms(d, b, 'masks') + self.ms(d, b, 'pgan'):.2f}**"
            for d, b in cells) + " |")
        lines.append("| **PGAN / baseline** (re-ID network) | "
                     + " | ".join(f"**{self.ratios[f'{d}/b{b}']:.3f}**" for d, b in cells) + " |")
        lines.append("| PGAN / baseline, median of paired repeats | "
                     + " | ".join(f"{self.paired_ratios[f'{d}/b{b}']:.3f}" for d, b in cells) + " |")
        lines.append("| plain head / baseline (for comparison) | "
                     + " | ".join(f"{self.plain_ratios[f'{d}/b{b}']:.3f}" for d, b in cells) + " |")
        g = self.gmacs
        note = (f"\nMultiply-accumulates per image (load-independent): baseline {g['baseline']:.3f} G, PGAN "
                f"{g['pgan']:.3f} G ({g['pgan'] / g['baseline']:.3f}x), plain head "
                f"{g['plain-head']:.3f} G ({g['plain-head'] / g['baseline']:.3f}x). The model's embedding equals "
                f"the plain head's (max difference {self.plain_max_abs_diff:.1e} of the largest entry).")
        if self.detector_stand_in:
            note += (f" The part detector is a stand-in: torchvision {self.detector} "
                     "(random weights, 17 classes, same input size); pgan.detection.model was not available.")
        return "\n".join(lines) + "\n" + note + "\n"

    def to_dict(self) -> dict:
        return asdict(self)


def plain_head_embedding(model: ReidNet, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """PGAN's eval-mode retrieval feature ``f_b`` computed the straightforward way: Refine_f over
    the whole ``concat(F_g, F_p)`` map, then global average pooling (the reference for timing and
    for checking the model's exact rewrites)."""
    if model.variant not in ("pgan", "nopam", "grid") or model.retrieval != "fb" or model.training:
        raise ValueError("plain_head_embedding covers eval-mode pgan/nopam/grid with retrieval='fb'")
    fg = model.backbone(images)
    if model.spec.grid:
        masks = model.grid_masks(*fg.shape[-2:], fg).expand(fg.shape[0], -1, -1, -1)
    weights = model.pam(fg, masks) if model.pam is not None else uniform_part_weights(masks)
    fp = part_guided_map(fg, masks, weights)
    return model.bnneck(model.refine_f(torch.cat([fg, fp], dim=1)).mean(dim=(2, 3)))


def build_timing_detector(input_size: tuple[int, int], checkpoint: str | None = None
                          ) -> tuple[nn.Module, str, bool]:
    """``(detector, description, is_stand_in)``: a trained part detector (``checkpoint``), else pgan's
    detector with its default config and random weights, else (module absent) a torchvision stand-in."""
    if part_detector is not None:
        if checkpoint:
            det, cfg, _ = part_detector.load_detector(checkpoint)
            return det, f"pgan part detector {checkpoint}, short side {cfg.min_size} px", False
        cfg = part_detector.DetectorConfig()
        det = part_detector.build_detector(cfg, pretrained=False)
        return det, f"pgan part detector, random weights, short side {cfg.min_size} px", False
    if checkpoint:
        raise PganError("--detector-checkpoint needs pgan.detection.model, which is not installed")
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

    det = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=17,
                                            min_size=min(input_size), max_size=max(input_size))
    return det, "fasterrcnn_mobilenet_v3_large_fpn", True


def random_boxes(n: int, d: int, size: tuple[int, int], seed: int = 0) -> list[list[PartBox]]:
    """``n`` images of ``d`` random boxes each (stand-ins for detections)."""
    rng = np.random.default_rng(seed)
    h, w = size
    out = []
    for _ in range(n):
        xy = rng.uniform(0, 1, size=(d, 4)) * [w, h, w, h]
        out.append([PartBox(min(a, c), min(b, e), max(a, c), max(b, e), 0.9, "part") for a, b, c, e in xy])
    return out


def count_gmacs(nets: dict[str, ReidNet], input_size: tuple[int, int], num_parts: int,
                feat: tuple[int, int]) -> dict[str, float]:
    """Multiply-accumulates per image (convolutions, matmuls, einsums) of baseline, PGAN, plain head."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, *input_size)
    masks = torch.from_numpy(np.stack([boxes_to_masks(b, input_size[1], input_size[0], *feat, num_parts)
                                       for b in random_boxes(1, num_parts, input_size)]))
    calls = {"baseline": lambda: nets["baseline"](x), "pgan": lambda: nets["pgan"](x, masks),
             "plain-head": lambda: plain_head_embedding(nets["pgan"], x, masks)}
    out = {}
    for name, fn in calls.items():
        with FlopCounterMode(display=False) as counter:
            fn()
        out[name] = counter.get_total_flops() / 2e9
    return out


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int,
                     sync: Callable[[], None] = lambda: None, inner: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function (mean of ``inner`` back-to-back calls), interleaved, the order
    reversed every other repeat."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
        sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            sync()
            t0 = time.perf_counter()
            for _ in range(inner):
                fns[name]()
            sync()
            times[name].append((time.perf_counter() - t0) / inner)
    return times


def _devices(names: list[str]) -> list[torch.device]:
    out = []
    for name in names:
        if name == "auto":
            out += [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
        elif name == "cuda" and not torch.cuda.is_available():
            raise PganError("--devices cuda: no CUDA device is visible")
        elif name in ("cpu", "cuda"):
            out.append(torch.device(name))
        else:
            raise PganError(f"--devices takes cpu, cuda or auto, got {name!r}")
    return list(dict.fromkeys(out))


@torch.no_grad()
def bench_runtime(backbone: str = "resnet50", input_size: tuple[int, int] = (224, 224),
                  batch_sizes: tuple[int, ...] = (1, 32), repeats: int = 5, warmup: int = 1,
                  devices: list[str] | None = None, threads: int | None = None, num_parts: int = 8,
                  reduced_dim: int = 256, seed: int = 0, detector_checkpoint: str | None = None
                  ) -> RuntimeResult:
    """Time every module at every batch size on every device (see the module docstring)."""
    if repeats < 1 or warmup < 0 or not batch_sizes or min(batch_sizes) < 1 or min(input_size) < 32:
        raise PganError(f"need repeats >= 1, warmup >= 0, batch sizes >= 1 and input >= 32 px "
                        f"(got repeats={repeats}, warmup={warmup}, batch sizes={list(batch_sizes)}, "
                        f"input={list(input_size)})")
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    nets = {v: ReidNet(build_backbone(backbone, pretrained=False), 576, variant=v, reduced_dim=reduced_dim,
                       num_parts=num_parts).eval() for v in ("baseline", "pgan")}
    detector, det_name, stand_in = build_timing_detector(input_size, detector_checkpoint)
    detector.eval()
    fh, fw = nets["pgan"].backbone(torch.zeros(1, 3, *input_size)).shape[-2:]
    res = RuntimeResult(backbone, tuple(input_size), det_name, stand_in, torch.get_num_threads())
    res.gmacs = count_gmacs(nets, input_size, num_parts, (fh, fw))
    for device in _devices(devices or ["auto"]):
        for m in (*nets.values(), detector):
            m.to(device)
        for b in batch_sizes:
            images = torch.randn(b, 3, *input_size, device=device)
            det_images = list(images.clamp(-2, 2).add(2).div(4))
            boxes = random_boxes(b, num_parts, input_size, seed)

            def make_masks(boxes=boxes, device=device) -> torch.Tensor:
                arr = np.stack([boxes_to_masks(bx, input_size[1], input_size[0], fh, fw, num_parts)
                                for bx in boxes])
                return torch.from_numpy(arr).to(device)

            masks = make_masks()
            fns = {"detector": lambda det_images=det_images: detector(det_images),
                   "masks": make_masks,
                   "baseline": lambda images=images: nets["baseline"](images),
                   "pgan": lambda images=images, masks=masks: nets["pgan"](images, masks),
                   "plain-head": lambda images=images, masks=masks: plain_head_embedding(nets["pgan"], images,
                                                                                            masks)}
            ref = nets["pgan"](images, masks).embedding
            diff = ((ref - fns["plain-head"]()).abs().max() / ref.abs().max().clamp_min(1e-30)).item()
            res.plain_max_abs_diff = max(res.plain_max_abs_diff, diff)
            # Small batches: several calls per timed sample, so each sample spans similar time.
            times = time_interleaved(fns, repeats, warmup, _sync(device), inner=max(1, 8 // b))
            log.info("%s batch %d: %s", device.type, b,
                     ", ".join(f"{k} {1e3 * statistics.median(v) / b:.2f} ms/img" for k, v in times.items()))
            for name, secs in times.items():
                med = statistics.median(secs)
                res.timings.append(Timing(device.type, b, name, 1e3 * med / b, 1e3 * med, repeats))
            key = f"{device.type}/b{b}"
            res.ratios[key] = statistics.median(times["pgan"]) / statistics.median(times["baseline"])
            res.paired_ratios[key] = statistics.median(p / q for p, q in zip(times["pgan"], times["baseline"]))
            res.plain_ratios[key] = statistics.median(times["plain-head"]) / statistics.median(times["baseline"])
    return res


def write_runtime_report(res: RuntimeResult, out_dir) -> list[str]:
    """``runtime.md``, ``runtime.json``, ``runtime.csv`` and ``report.html`` in ``out_dir``."""
    from pgan.utils.atomic import atomic_write_json, atomic_write_text
    from pgan.viz.report_html import Section, write_report

    table = res.markdown()
    atomic_write_text(out_dir / "runtime.md", "# Inference time per module (Table VII)\n\n" + table)
    atomic_write_json(out_dir / "runtime.json", res.to_dict())
    csv_lines = ["device,batch,module,ms_per_image,ms_per_batch,repeats"]
    csv_lines += [f"{t.device},{t.batch},{t.module},{t.ms_per_image:.4f},{t.ms_per_batch:.4f},{t.repeats}"
                  for t in res.timings]
    atomic_write_text(out_dir / "runtime.csv", "\n".join(csv_lines) + "\n")
    rows = [line.strip("|").split("|") for line in table.splitlines() if line.startswith("|")]
    rows = [[c.strip().replace("**", "") for c in r] for r in rows if not set("".join(r)) <= set("-")]
    text = [line for line in table.splitlines() if line and not line.startswith("|")]
    write_report(out_dir, "Inference time per module",
                 [Section("Runtime (ms per image)", text, table=rows,
                          files=["runtime.md", "runtime.json", "runtime.csv"])],
                 {"backbone": res.backbone, "input": f"{res.input_size[0]}x{res.input_size[1]}",
                  "torch": torch.__version__, "host": res.host})
    return ["runtime.md", "runtime.json", "runtime.csv", "report.html"]
