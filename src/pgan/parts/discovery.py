"""Training-free part discovery from a CNN's own features (the ``dff`` and ``kmeans`` part sources).

For photos with no part labels, the saliency proposals (:mod:`pgan.parts.proposals`) look for
regions that differ from their surroundings; on real photos, with texture, reflections and
clutter, many of those are not parts. The methods here look for regions that *mean the same
thing in every image* instead, using the ImageNet backbone's feature maps:

* ``dff``: deep feature factorisation (Collins, Achanta and Susstrunk, "Deep Feature Factorization
  for Concept Discovery", ECCV 2018). The feature cells of the training images, one row each,
  form a non-negative matrix ``V (N*h*w, C)`` (post-ReLU features), factorised as ``V ~ W H`` with
  ``K`` components. Each row of ``H (K, C)`` is a concept (a wheel, a windscreen, a light, the
  road); an image's ``W`` column ``k``, reshaped to ``(h, w)``, is where concept ``k`` lies in it.
* ``kmeans``: the cells' L2-normalised features clustered into ``K`` centroids (spherical k-means,
  k-means++ start);
  an image's map ``k`` is where its cells are nearest centroid ``k``, weighted by their similarity.

Both are fitted once on the **training images only** (a :class:`PartBasis`, saved as ``.npz`` beside
the part file, loaded with ``allow_pickle=False``), then applied to every image. From each of an
image's ``K`` maps comes at most one box: the map is normalised by its maximum, thresholded at
``threshold`` (0.5), and the bounding box of the connected component holding the maximum is kept
(label ``dff3``, ``kmeans5``: the same label is the same concept in every image). Its score is the
component's share of the image's total activation (all maps), so a concept that covers much of the
vehicle ranks above a stray one. Components that are mostly image border (:attr:`PartBasis.background`:
mean activation on the outer ring of cells above that of the interior) are background (road,
sky, neighbouring cars) and give no box.

Both are written with plain torch (NMF by Lee and Seung's multiplicative updates, k-means by Lloyd
iterations), so they run on the training device with no extra dependency; every random start is
seeded. The feature function is given by the caller (``parts`` knows no network): any callable from
``(B, 3, H, W)`` ImageNet-normalised images to ``(B, C, h, w)`` maps, e.g.
``pgan.models.build_backbone("mobilenet_v2", pretrained=True, last_stride=1).eval()``.

Example::

    basis = fit_part_basis(train_images, features, method="dff", k=10)
    boxes = discovery_boxes_fn(basis, features)([uint8_chw_image])[0]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pgan.data.datasets import read_dataset
from pgan.data.records import ImageRecord
from pgan.errors import PganError
from pgan.parts.boxfile import PartBox, check_part_file_owner
from pgan.parts.extract import BoxesFn, dataset_images, run_extraction
from pgan.parts.proposals import components
from pgan.utils.atomic import atomic_open
from pgan.utils.images import load_rgb

__all__ = ["DISCOVERY_METHODS", "FeatureFn", "PartBasis", "basis_path", "border_share", "discover_parts",
           "discovery_boxes_fn", "features_of", "fit_part_basis", "load_images", "maps_to_boxes", "nmf",
           "prepare", "spherical_kmeans"]

log = logging.getLogger(__name__)

FeatureFn = Callable[[torch.Tensor], torch.Tensor]
"""ImageNet-normalised ``(B, 3, H, W)`` float images -> ``(B, C, h, w)`` non-negative feature maps."""

DISCOVERY_METHODS = ("dff", "kmeans")
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@dataclass
class PartBasis:
    """What a discovery method learned from the training images."""

    method: str  # "dff" or "kmeans"
    components: np.ndarray  # (K, C): NMF's H rows, or unit-norm k-means centroids
    background: np.ndarray  # (K,) bool: components that sit mostly on the image border
    input_size: int  # square input side the features were computed at

    @property
    def k(self) -> int:
        return int(self.components.shape[0])

    def save(self, path: str | Path) -> None:
        """Atomic ``.npz`` (plain arrays, no pickled objects)."""
        with atomic_open(path, "wb") as fh:
            np.savez(fh, method=np.array(self.method), components=self.components.astype(np.float32),
                     background=self.background.astype(bool), input_size=np.array(self.input_size))

    @classmethod
    def load(cls, path: str | Path) -> PartBasis:
        try:
            with np.load(path, allow_pickle=False) as z:
                basis = cls(str(z["method"]), z["components"], z["background"], int(z["input_size"]))
        except (OSError, KeyError, ValueError) as exc:
            raise PganError(f"{path} is not a part basis file ({exc})") from None
        if basis.method not in DISCOVERY_METHODS or basis.components.ndim != 2:
            raise PganError(f"{path} is not a part basis file (method {basis.method!r})")
        return basis


def prepare(images: Sequence[torch.Tensor], size: int) -> torch.Tensor:
    """``uint8 (3, H, W)`` images -> one ImageNet-normalised ``(B, 3, size, size)`` batch."""
    batch = torch.stack([F.interpolate(im[None].float() / 255.0, size=(size, size), mode="bilinear",
                                       align_corners=False)[0] for im in images])
    return (batch - _MEAN) / _STD


@torch.no_grad()
def features_of(images: Sequence[torch.Tensor], features: FeatureFn, size: int) -> torch.Tensor:
    """Non-negative feature maps ``(B, C, h, w)`` of ``uint8`` images (negative values clipped)."""
    return features(prepare(images, size)).float().clamp_min(0)


def nmf(v: torch.Tensor, k: int, iters: int = 200, seed: int = 0, h: torch.Tensor | None = None,
        eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """``V (n, c) ~ W (n, k) @ H (k, c)``, all non-negative, by multiplicative updates (Frobenius loss).

    With ``h`` given, only ``W`` is solved for (projecting new rows onto a fitted basis).
    """
    g = torch.Generator().manual_seed(seed)
    scale = float(v.mean().clamp_min(eps) / k) ** 0.5
    fixed = h is not None
    if fixed:  # each row is its own convex problem: a constant start makes a row's answer independent of
        w = torch.full((v.shape[0], k), scale).to(v)  # the other rows (an image's parts of its batch)
    else:  # fitting needs a random start to break the symmetry between components
        w = torch.rand(v.shape[0], k, generator=g).to(v) * scale + eps
        h = torch.rand(k, v.shape[1], generator=g).to(v) * scale + eps
    for _ in range(iters):
        if not fixed:
            h = h * (w.T @ v) / (w.T @ w @ h + eps)
        w = w * (v @ h.T) / (w @ (h @ h.T) + eps)
    return w, h


def spherical_kmeans(x: torch.Tensor, k: int, iters: int = 50, seed: int = 0) -> torch.Tensor:
    """Unit-norm centroids ``(k, c)`` of unit-norm rows ``x`` (cosine similarity, Lloyd iterations from a
    seeded k-means++ start: each next centroid drawn with probability proportional to its squared
    distance ``(1 - cos)^2`` from the nearest centroid so far)."""
    if x.shape[0] < k:
        raise PganError(f"k-means needs at least k={k} feature cells, got {x.shape[0]}")
    g = torch.Generator().manual_seed(seed)
    cent = [x[int(torch.randint(x.shape[0], (1,), generator=g))]]
    nearest = x @ cent[0]
    for _ in range(1, k):
        d2 = (1 - nearest).clamp_min(0) ** 2
        pick = int(torch.multinomial(d2 / d2.sum(), 1, generator=g)) if d2.sum() > 0 else \
            int(torch.randint(x.shape[0], (1,), generator=g))
        cent.append(x[pick])
        nearest = torch.maximum(nearest, x @ x[pick])
    cent = torch.stack(cent).clone()
    for _ in range(iters):
        assign = (x @ cent.T).argmax(1)
        for j in range(k):
            members = x[assign == j]
            if len(members):
                cent[j] = F.normalize(members.mean(0), dim=0)
            else:  # an empty cluster restarts at the cell farthest from every centroid
                cent[j] = x[(x @ cent.T).amax(1).argmin()]
    return cent


def _maps(basis: PartBasis, feats: torch.Tensor, iters: int = 60) -> torch.Tensor:
    """Part maps ``(B, K, h, w)`` >= 0 of feature maps ``(B, C, h, w)``."""
    b, c, hh, ww = feats.shape
    comp = torch.from_numpy(basis.components).to(feats)
    if basis.method == "dff":
        v = feats.permute(0, 2, 3, 1).reshape(-1, c)
        w, _ = nmf(v, basis.k, iters=iters, h=comp)
        return w.reshape(b, hh, ww, -1).permute(0, 3, 1, 2)
    unit = F.normalize(feats, dim=1)
    sim = torch.einsum("bchw,kc->bkhw", unit, comp)
    nearest = F.one_hot(sim.argmax(1), basis.k).permute(0, 3, 1, 2).to(sim)
    return nearest * sim.clamp_min(0)


def border_share(maps: torch.Tensor) -> torch.Tensor:
    """Per component ``(K,)``: mean activation on the outer ring of cells over that of the interior."""
    ring = torch.ones(maps.shape[-2:], dtype=torch.bool)
    ring[1:-1, 1:-1] = False
    outer = maps[..., ring].mean(dim=(0, 2))
    inner = maps[..., ~ring].mean(dim=(0, 2)) if (~ring).any() else torch.zeros_like(outer)
    return outer / inner.clamp_min(1e-8)


def fit_part_basis(images: Sequence[torch.Tensor], features: FeatureFn,
                   method: str = "dff", k: int = 10, input_size: int = 224, seed: int = 0,
                   batch_size: int = 16, max_cells: int = 60000, progress: bool = False) -> PartBasis:
    """Fit a :class:`PartBasis` on ``uint8 (3, H, W)`` training images (see the module docstring)."""
    if method not in DISCOVERY_METHODS:
        raise PganError(f"part discovery method {method!r} must be one of {', '.join(DISCOVERY_METHODS)}")
    if k < 2:
        raise PganError(f"part discovery needs k >= 2 components, got {k}")
    if not len(images):
        raise PganError("part discovery needs at least one training image")
    chunks = []
    for i in tqdm(range(0, len(images), batch_size), desc=f"{method} features", disable=not progress):
        chunks.append(features_of(images[i:i + batch_size], features, input_size))
    feats = torch.cat(chunks)  # (N, C, h, w)
    n, c, hh, ww = feats.shape
    rows = feats.permute(0, 2, 3, 1).reshape(-1, c)
    if rows.shape[0] > max_cells:  # a seeded subsample bounds the fit's memory and time
        g = torch.Generator().manual_seed(seed)
        rows = rows[torch.randperm(rows.shape[0], generator=g)[:max_cells]]
    if method == "dff":
        _, comp = nmf(rows, k, seed=seed)
    else:
        keep = rows.norm(dim=1) > 0
        comp = spherical_kmeans(F.normalize(rows[keep], dim=1), k, seed=seed)
    basis = PartBasis(method, comp.cpu().numpy(), np.zeros(k, dtype=bool), input_size)
    share = border_share(_maps(basis, feats))
    basis.background = (share > 1.0).cpu().numpy()
    if basis.background.all():  # never leave an image with no part at all: keep the most central half
        basis.background = (share > share.median()).cpu().numpy()
    log.info("%s part basis: %d components, %d of them background (border share %s)", method, k,
             int(basis.background.sum()), np.round(share.cpu().numpy(), 2).tolist())
    return basis


def maps_to_boxes(maps: np.ndarray, width: int, height: int, method: str, background: np.ndarray,
                  threshold: float = 0.5) -> list[PartBox]:
    """One box per foreground component ``(K, h, w)`` map, in an image's ``width x height`` pixels, best first."""
    k, hh, ww = maps.shape
    total = float(maps.sum()) + 1e-8
    out = []
    for j in range(k):
        m = maps[j]
        peak = float(m.max())
        if background[j] or peak <= 0:
            continue
        on = m >= threshold * peak
        py, px = np.unravel_index(int(m.argmax()), m.shape)
        for x1, y1, x2, y2, _ in components(on):
            if x1 <= px < x2 and y1 <= py < y2:
                inside = m[y1:y2, x1:x2] * on[y1:y2, x1:x2]
                sx, sy = width / ww, height / hh
                out.append(PartBox(x1 * sx, y1 * sy, x2 * sx, y2 * sy, round(float(inside.sum()) / total, 4),
                                   f"{method}{j}"))
                break
    return sorted(out, key=lambda b: -b.score)


def discovery_boxes_fn(basis: PartBasis, features: FeatureFn, threshold: float = 0.5) -> BoxesFn:
    """A :data:`pgan.parts.extract.BoxesFn`: each image's discovered part boxes, in its own pixels."""
    def fn(images: list[torch.Tensor]) -> list[list[PartBox]]:
        maps = _maps(basis, features_of(images, features, basis.input_size)).cpu().numpy()
        return [maps_to_boxes(m, int(im.shape[-1]), int(im.shape[-2]), basis.method, basis.background, threshold)
                for m, im in zip(maps, images)]

    return fn


def basis_path(part_file: str | Path) -> Path:
    """Where the basis of a discovered part file is kept: ``parts_dff.jsonl`` -> ``parts_dff.basis.npz``."""
    p = Path(part_file)
    return p.with_name(p.name.removesuffix(".jsonl") + ".basis.npz")


def load_images(records: Sequence[ImageRecord]) -> list[torch.Tensor]:
    """Decoded ``uint8 (3, H, W)`` images; unreadable ones are skipped with a counted warning."""
    out, bad = [], 0
    for rec in records:
        try:
            out.append(load_rgb(rec.path))
        except PganError:
            bad += 1
    if bad:
        log.warning("part discovery: %d unreadable training images skipped", bad)
    return out


def discover_parts(dataset: str, root: str | Path, out: str | Path, features: FeatureFn, method: str = "dff",
                   k: int = 10, input_size: int = 224, seed: int = 0, max_fit_images: int = 400,
                   batch_size: int = 16, progress: bool = True, workers: int = 2):
    """Fit ``method`` on (up to ``max_fit_images`` of) the training images, then write every image's boxes
    to the part file ``out`` (resumable; the basis is saved first, beside it, and reused on a rerun)."""
    check_part_file_owner(out, method)
    bpath = basis_path(out)
    if bpath.is_file():
        basis = PartBasis.load(bpath)
        if basis.method != method:
            raise PganError(f"{bpath} holds a {basis.method} basis, not {method}; remove it or name another file")
    else:
        train = read_dataset(dataset, root).train
        if len(train) > max_fit_images:  # a seeded subsample, spread over the whole split
            idx = np.random.default_rng(seed).choice(len(train), max_fit_images, replace=False)
            train = [train[i] for i in sorted(idx)]
        basis = fit_part_basis(load_images(train), features, method, k, input_size, seed, batch_size,
                               progress=progress)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        basis.save(bpath)
    return run_extraction(dataset_images(dataset, root), out, discovery_boxes_fn(basis, features), batch_size,
                          progress, workers, desc=f"{method} parts")
