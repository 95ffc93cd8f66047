"""A synthetic near-identical-vehicle re-ID benchmark, written in the VeRi-776 layout.

Real vehicle re-ID sets cannot be downloaded everywhere, so tests, the demo and CPU benchmarks use this
generator. It keeps the paper's core difficulty: identities are spread over a few *families* (body type
+ colour + logo + lights) and look identical except for 3-5 small identity parts (annual service signs,
hanging ornaments, tissue boxes, roof carriers, stickers, new-driver signs, rims, ...), seen by cameras
with their own scale, light, blur, noise, clutter and occlusion.

Example::

    from pgan.data.datasets import read_dataset
    from pgan.synth import SynthConfig, generate_synth
    summary = generate_synth("data/synth", SynthConfig(num_train_ids=50, num_test_ids=25))
    ds = read_dataset("synth", summary["root"])   # the VeRi-776 reader

The output depends only on the config (every image has its own ``default_rng([seed, vid, index])``),
not on the number of workers. A finished dataset is recognised by its ``synth_meta.json`` and reused.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pgan.errors import PganError
from pgan.parts.boxfile import ImageParts, PartBox, write_part_file
from pgan.synth.render import BODIES, BOX_SCORES, RenderStyle, render_image
from pgan.synth.scene import CAR_COLOURS
from pgan.synth.world import Camera, Family, Identity, make_camera, make_families, make_identity, seeded_rng
from pgan.utils.atomic import atomic_write_json, atomic_write_text

GENERATOR_VERSION = 2  # 2: ground-truth boxes carry their role (identity | shared)
NAME_LISTS = {"image_train": "name_train.txt", "image_query": "name_query.txt", "image_test": "name_test.txt"}


@dataclass
class SynthConfig:
    """What to generate; ``difficulty`` (0..1) scales every nuisance. ``workers`` never changes the output."""

    num_train_ids: int = 200
    num_test_ids: int = 100
    images_per_id: tuple[int, int] = (8, 14)  # inclusive range, sampled per identity
    num_cameras: int = 8
    num_families: int = 6  # model+colour families; identities are spread over them (near-twins)
    image_size: int = 160  # square images, pixels
    difficulty: float = 0.5
    queries_per_id: int = 2  # query images per test identity, from distinct cameras
    seed: int = 0
    workers: int = 2
    # The harder setting's switches (see RenderStyle); the defaults give the standard benchmark.
    extra_shared_parts: bool = False
    id_part_scale: float = 1.0
    box_scores: str = "visibility"  # "visibility" | "detector"
    # Photo realism (0..1; see pgan.synth.realism): 0 writes the images of the generator before it.
    realism: float = 0.0

    @property
    def style(self) -> RenderStyle:
        return RenderStyle(self.extra_shared_parts, float(self.id_part_scale), self.box_scores,
                           float(self.realism))

    def __post_init__(self) -> None:
        if isinstance(self.images_per_id, list):
            self.images_per_id = tuple(self.images_per_id)  # type: ignore[assignment]
        check_config(self)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_config(cfg: SynthConfig) -> None:
    """Raise :class:`PganError` naming the first bad value of ``cfg``."""
    def fail(key: str, why: str) -> None:
        raise PganError(f"synth config: {key}={getattr(cfg, key)!r} {why}")

    ipi, d = cfg.images_per_id, cfg.difficulty
    if not (isinstance(ipi, (tuple, list)) and len(ipi) == 2 and all(map(_is_int, ipi)) and ipi[0] <= ipi[1]):
        fail("images_per_id", "must be two integers [min, max] with min <= max")
    if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= d <= 1.0:
        fail("difficulty", "must be a number in [0, 1]")
    minima = {"num_train_ids": 1, "num_test_ids": 1, "num_cameras": 2, "num_families": 1, "image_size": 32,
              "queries_per_id": 1, "seed": 0, "workers": 1}
    for key, lo in minima.items():
        if not _is_int(getattr(cfg, key)) or getattr(cfg, key) < lo:
            fail(key, f"must be an integer >= {lo}")
    if cfg.num_families > len(BODIES) * len(CAR_COLOURS):
        fail("num_families", f"must be <= {len(BODIES) * len(CAR_COLOURS)}")
    if cfg.num_train_ids + cfg.num_test_ids > 9999:
        fail("num_test_ids", "makes more than 9999 identities (names have 4-digit ids)")
    if cfg.num_cameras <= cfg.queries_per_id:
        fail("num_cameras", f"must be > queries_per_id ({cfg.queries_per_id}) for cross-camera queries")
    if not isinstance(cfg.extra_shared_parts, bool):
        fail("extra_shared_parts", "must be true or false")
    sc = cfg.id_part_scale
    if isinstance(sc, bool) or not isinstance(sc, (int, float)) or not 0.3 <= sc <= 1.5:
        fail("id_part_scale", "must be a number in [0.3, 1.5]")
    rl = cfg.realism
    if isinstance(rl, bool) or not isinstance(rl, (int, float)) or not 0.0 <= rl <= 1.0:
        fail("realism", "must be a number in [0, 1]")
    if cfg.box_scores not in BOX_SCORES:
        fail("box_scores", f"must be one of {', '.join(BOX_SCORES)}")
    if ipi[0] < cfg.queries_per_id + 2:
        fail("images_per_id", f"minimum must be >= queries_per_id + 2 = {cfg.queries_per_id + 2}")


def synth_config_from_dict(d: dict) -> SynthConfig:
    """Build a :class:`SynthConfig` from a plain dict (e.g. a YAML section); unknown keys are errors."""
    valid = [f.name for f in fields(SynthConfig)]
    for key in d:
        if key not in valid:
            raise PganError(f"unknown synth config key {key!r}; valid keys: {', '.join(valid)}")
    return SynthConfig(**d)



@dataclass(frozen=True)
class Shot:
    """One image to render: its index within the identity, camera, frame number and split folder."""

    index: int
    cam: int
    frame: int
    folder: str

    def name(self, vid: int) -> str:
        return f"{vid:04d}_c{self.cam:03d}_{self.frame:08d}_0.jpg"


def _shots(cfg: SynthConfig, vid: int, test: bool) -> list[Shot]:
    """Cameras, frames and splits of one identity's images (queries from distinct cameras for test ids).

    Each of the identity's ``k`` cameras gets at least one image and at most ``queries_per_id`` of them
    give a query, so every query keeps a gallery image of its identity from another camera.
    """
    r = seeded_rng(cfg.seed, vid, 4)
    lo, hi = cfg.images_per_id
    n = int(r.integers(lo, hi + 1))
    k_lo = max(2, cfg.queries_per_id + 1)
    k = int(r.integers(k_lo, min(cfg.num_cameras, n) + 1))
    cams = r.choice(cfg.num_cameras, k, replace=False) + 1
    per_image = r.permutation(np.concatenate([cams, r.choice(cams, n - k)]))
    frames = int(r.integers(1, 5000)) + np.cumsum(r.integers(5, 400, n))
    folders = ["image_test" if test else "image_train"] * n
    if test:
        for c in r.choice(cams, cfg.queries_per_id, replace=False):
            folders[int(r.choice(np.flatnonzero(per_image == c)))] = "image_query"
    return [Shot(i, int(per_image[i]), int(frames[i]), folders[i]) for i in range(n)]


def _voc_xml(folder: str, name: str, size: int, boxes: list[PartBox]) -> str:
    """Pascal-VOC annotation of one image (integer pixel edges; ``truncated`` when partly hidden)."""
    objs = "".join(
        f"  <object>\n    <name>{b.label}</name>\n    <truncated>{int(b.score < 1.0)}</truncated>\n"
        f"    <difficult>0</difficult>\n    <bndbox>\n      <xmin>{round(b.x1)}</xmin>\n"
        f"      <ymin>{round(b.y1)}</ymin>\n      <xmax>{round(b.x2)}</xmax>\n"
        f"      <ymax>{round(b.y2)}</ymax>\n"
        f"    </bndbox>\n  </object>\n" for b in boxes)
    return (f"<annotation>\n  <folder>{folder}</folder>\n  <filename>{name}</filename>\n  <size>\n"
            f"    <width>{size}</width>\n    <height>{size}</height>\n    <depth>3</depth>\n  </size>\n"
            f"{objs}</annotation>\n")


_WORLD: dict = {}


def _init_worker(cfg: SynthConfig, families: list[Family], cameras: dict[int, Camera], root: str) -> None:
    _WORLD.update(cfg=cfg, families=families, cameras=cameras, root=Path(root))


def _render_identity(task: tuple[Identity, list[Shot]]) -> list[ImageParts]:
    """Worker: render, save (JPEG + VOC XML) and return the part boxes of one identity's images."""
    ident, shots = task
    cfg, root = _WORLD["cfg"], _WORLD["root"]
    out = []
    for s in shots:
        rng = np.random.default_rng([cfg.seed, ident.vid, s.index])
        score_rng = np.random.default_rng([cfg.seed, ident.vid, s.index, 9])  # apart from the drawing
        real_rng = np.random.default_rng([cfg.seed, ident.vid, s.index, 7])  # so is realism: same boxes
        img, boxes = render_image(_WORLD["families"][ident.family], ident, _WORLD["cameras"][s.cam], rng,
                                  cfg.image_size, cfg.difficulty, cfg.style, score_rng, real_rng)
        name = s.name(ident.vid)
        img.save(root / s.folder / name, "JPEG", quality=90)
        (root / "annotations_voc" / s.folder / (name[:-4] + ".xml")).write_text(
            _voc_xml(s.folder, name, cfg.image_size, boxes), encoding="utf-8")
        out.append(ImageParts(f"{s.folder}/{name}", cfg.image_size, cfg.image_size, boxes))
    return out


def _meta_config(cfg: SynthConfig) -> dict:
    d = asdict(cfg)
    d.pop("workers")  # does not change the output
    if not d["realism"]:
        d.pop("realism")  # the meta of a dataset without realism stays that of the generator before it
    d["images_per_id"] = list(d["images_per_id"])
    return d


def _existing(out: Path, cfg: SynthConfig) -> dict | None:
    """The meta of a complete dataset at ``out`` made with the same config, else None."""
    try:
        meta = json.loads((out / "synth_meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("version") != GENERATOR_VERSION or meta.get("config") != _meta_config(cfg):
        return None
    for folder, lst in NAME_LISTS.items():
        p = out / lst
        if not p.is_file() or len(p.read_text().split()) != meta["counts"][folder]:
            return None
    return meta


def _summary(out: Path, meta: dict, reused: bool, seconds: float) -> dict:
    c = meta["counts"]
    return {"root": str(out), "reused": reused, "seconds": round(seconds, 2),
            "num_train_ids": meta["config"]["num_train_ids"], "num_test_ids": meta["config"]["num_test_ids"],
            "num_images": sum(c.values()), "train": c["image_train"], "query": c["image_query"],
            "gallery": c["image_test"], "part_file": str(out / "parts_gt.jsonl"),
            "voc_dir": str(out / "annotations_voc"), "meta": str(out / "synth_meta.json")}


def _plan(cfg: SynthConfig) -> tuple[list[Family], dict[int, Camera], list[tuple[Identity, list[Shot]]]]:
    """The whole dataset as data: families, cameras and every identity with its shots."""
    families = make_families(cfg)
    cameras = {c: make_camera(cfg.seed, c) for c in range(1, cfg.num_cameras + 1)}
    r = seeded_rng(cfg.seed, 0, 5)  # spread train and test identities evenly over the families
    fam_of = np.concatenate([r.permutation(np.arange(n) % cfg.num_families)
                             for n in (cfg.num_train_ids, cfg.num_test_ids)])
    tasks = [(make_identity(cfg.seed, vid, int(fam_of[vid - 1])), _shots(cfg, vid, vid > cfg.num_train_ids))
             for vid in range(1, cfg.num_train_ids + cfg.num_test_ids + 1)]
    return families, cameras, tasks


def _build(tmp: Path, cfg: SynthConfig, progress: bool) -> dict:
    """Render and write the whole dataset into the empty folder ``tmp``; returns its meta."""
    families, cameras, tasks = _plan(cfg)
    for folder in NAME_LISTS:
        (tmp / "annotations_voc" / folder).mkdir(parents=True)
        (tmp / folder).mkdir()
    init = (cfg, families, cameras, str(tmp))
    items: list[ImageParts] = []
    total = sum(len(s) for _, s in tasks)
    with tqdm(total=total, desc="synth", unit="img", disable=not progress) as bar, ExitStack() as stack:
        if cfg.workers == 1:
            _init_worker(*init)
            stack.callback(_WORLD.clear)
            results: Iterable[list[ImageParts]] = map(_render_identity, tasks)
        else:
            pool = stack.enter_context(mp.get_context().Pool(cfg.workers, _init_worker, init))
            results = pool.imap_unordered(_render_identity, tasks, chunksize=4)
        for res in results:
            items.extend(res)
            bar.update(len(res))
    items.sort(key=lambda it: it.image)
    counts = {}
    for folder, lst in NAME_LISTS.items():
        names = [it.image.split("/", 1)[1] for it in items if it.image.startswith(folder + "/")]
        atomic_write_text(tmp / lst, "".join(n + "\n" for n in names))
        counts[folder] = len(names)
    write_part_file(tmp / "parts_gt.jsonl", items)
    meta = {"generator": "pgan.synth", "version": GENERATOR_VERSION, "config": _meta_config(cfg),
            "counts": counts, "families": [asdict(f) for f in families],
            "identity_family": {str(i.vid): i.family for i, _ in tasks},
            "identity_parts": {str(i.vid): [p.kind for p in i.parts] for i, _ in tasks}}
    atomic_write_json(tmp / "synth_meta.json", meta)  # written last: marks the dataset complete
    return meta


def generate_synth(out_dir: str | Path, cfg: SynthConfig, progress: bool = True) -> dict:
    """Write the benchmark under ``out_dir`` (VeRi-776 layout + part boxes) and return a summary dict.

    A complete dataset with the same config is reused as is. Otherwise it is built in a temporary
    sibling folder and renamed into place, so an interrupted run never leaves a half dataset; an older
    synthetic dataset there is replaced, any other non-empty folder is refused.
    """
    check_config(cfg)
    t0 = time.perf_counter()
    out = Path(out_dir).resolve()
    meta = _existing(out, cfg)
    if meta is not None:
        return _summary(out, meta, True, time.perf_counter() - t0)
    foreign = out.is_dir() and any(out.iterdir()) and not (out / "synth_meta.json").is_file()
    if foreign or (out.exists() and not out.is_dir()):
        raise PganError(f"{out} exists and is not a synthetic dataset; refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = (out.parent / f".{out.name}.{what}-{os.getpid()}" for what in ("tmp", "old"))
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        meta = _build(tmp, cfg, progress)
        if out.exists():
            out.rename(old)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return _summary(out, meta, False, time.perf_counter() - t0)
