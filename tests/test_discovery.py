"""Annotation-free part discovery (DFF, k-means): the factorisations, maps -> boxes, the basis file, resume."""

import json

import numpy as np
import pytest
import torch

from pgan.errors import PganError
from pgan.parts.boxfile import read_part_file
from pgan.parts.discovery import (
    PartBasis,
    basis_path,
    border_share,
    discover_parts,
    discovery_boxes_fn,
    fit_part_basis,
    maps_to_boxes,
    nmf,
    spherical_kmeans,
)


def conv_features():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 8, stride=8), torch.nn.ReLU()).eval()


def test_nmf_recovers_an_exact_low_rank_factorisation():
    g = torch.Generator().manual_seed(1)
    w, h = torch.rand(200, 3, generator=g), torch.rand(3, 12, generator=g)
    v = w @ h
    w2, h2 = nmf(v, 3, iters=800)
    assert (w2 >= 0).all() and (h2 >= 0).all()
    assert torch.linalg.norm(v - w2 @ h2) / torch.linalg.norm(v) < 0.02
    # Projecting onto a fixed basis solves only W: the true H gives back V.
    w3, _ = nmf(v, 3, iters=800, h=h)
    assert torch.linalg.norm(v - w3 @ h) / torch.linalg.norm(v) < 0.02


def test_spherical_kmeans_finds_separated_directions():
    dirs = torch.eye(4)
    x = torch.cat([dirs[i] + 0.05 * torch.randn(30, 4, generator=torch.Generator().manual_seed(i))
                   for i in range(4)])
    cent = spherical_kmeans(torch.nn.functional.normalize(x, dim=1), 4, seed=0)
    assert torch.allclose(cent.norm(dim=1), torch.ones(4), atol=1e-5)
    # every true direction has a centroid within 10 degrees
    assert ((cent @ dirs.T).amax(0) > 0.98).all()
    with pytest.raises(PganError, match="at least k=4"):
        spherical_kmeans(x[:3], 4)


def test_maps_to_boxes_one_box_per_foreground_component_in_image_pixels():
    maps = np.zeros((3, 4, 4), dtype=np.float32)
    maps[0, 0:2, 0:2] = 1.0  # top-left 2x2 cells
    maps[0, 3, 3] = 0.4  # below half the peak: not part of the box
    maps[1, 2:4, 1:4] = 0.5  # a bigger component
    maps[2, :, :] = 0.1  # background by flag
    boxes = maps_to_boxes(maps, 80, 40, "dff", np.array([False, False, True]))
    assert [b.label for b in boxes] == ["dff0", "dff1"]  # best (largest activation share: 4 vs 3) first
    b0, b1 = boxes
    assert (b0.x1, b0.y1, b0.x2, b0.y2) == (0, 0, 40, 20)
    assert (b1.x1, b1.y1, b1.x2, b1.y2) == (20, 20, 80, 40)
    total = maps.sum()
    assert b0.score == pytest.approx(4.0 / total, abs=1e-4) and b1.score == pytest.approx(3.0 / total, abs=1e-4)


def test_border_share_flags_components_on_the_image_border():
    maps = torch.zeros(2, 2, 6, 6)
    maps[:, 0, 2:4, 2:4] = 1.0  # centre
    maps[:, 1, 0, :] = 1.0  # top row
    share = border_share(maps)
    assert share[0] == 0 and share[1] > 1


@pytest.mark.parametrize("method", ["dff", "kmeans"])
def test_fit_and_boxes_on_synthetic_images(tiny_synth, method, tmp_path):
    from pgan.data.datasets import read_dataset
    from pgan.parts.discovery import load_images

    train = read_dataset("synth", tiny_synth).train
    features = conv_features()
    basis = fit_part_basis(load_images(train), features, method, k=4, input_size=64)
    assert basis.components.shape == (4, 16) and basis.background.shape == (4,)
    assert not basis.background.all()
    basis.save(tmp_path / "b.npz")
    again = PartBasis.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(again.components, basis.components.astype(np.float32))
    assert again.method == method and again.input_size == 64
    images = load_images(train[:3])
    boxes = discovery_boxes_fn(basis, features)(images)
    assert len(boxes) == 3 and all(len(b) <= 4 for b in boxes) and any(boxes)
    for im, bs in zip(images, boxes):
        for b in bs:
            assert 0 <= b.x1 < b.x2 <= im.shape[-1] and 0 <= b.y1 < b.y2 <= im.shape[-2]
            assert b.label.startswith(method) and 0 < b.score <= 1
        labels = [b.label for b in bs]
        assert len(labels) == len(set(labels))  # at most one box per component


def test_discover_parts_writes_the_basis_first_and_resumes(tiny_synth, tmp_path):
    out = tmp_path / "parts_dff.jsonl"
    features = conv_features()
    report = discover_parts("synth", tiny_synth, out, features, "dff", k=4, input_size=64, progress=False)
    assert basis_path(out).is_file() and report.written == report.total > 0
    first = read_part_file(out)
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:5]) + "\n" + lines[5][:10])  # an interrupted append
    report = discover_parts("synth", tiny_synth, out, features, "dff", k=4, input_size=64, progress=False)
    assert report.already == 5 and report.written == report.total - 5
    assert read_part_file(out) == first  # the same basis, so the same boxes
    other = tmp_path / "parts_kmeans.jsonl"
    basis_path(other).write_bytes(basis_path(out).read_bytes())  # a basis left by another method
    with pytest.raises(PganError, match="holds a dff basis, not kmeans"):
        discover_parts("synth", tiny_synth, other, features, "kmeans", progress=False)


def test_a_bad_basis_file_is_one_line_and_never_unpickled(tmp_path):
    bad = tmp_path / "x.npz"
    np.savez(bad, method=np.array([{"a": 1}], dtype=object), components=np.zeros((2, 2)))
    with pytest.raises(PganError, match="is not a part basis file"):
        PartBasis.load(bad)
    (tmp_path / "y.npz").write_text("not a zip")
    with pytest.raises(PganError, match="is not a part basis file"):
        PartBasis.load(tmp_path / "y.npz")


def test_a_dff_model_gets_boxes_for_a_new_photo_from_its_basis(tiny_synth, tmp_path):
    """Serving / searching a model trained on dff parts: a photo outside the dataset gets boxes from the
    basis saved beside the model's part file (the same pipeline as training), with the ImageNet backbone."""
    from pgan.config import load_config
    from pgan.inference.images import decode
    from pgan.inference.parts import TestTimeParts
    from pgan.models.backbones import frozen_imagenet_backbone

    part_file = tmp_path / "parts_dff.jsonl"
    features = frozen_imagenet_backbone("mobilenet_v2")
    discover_parts("synth", tiny_synth, part_file, features, "dff", k=4, input_size=64, max_fit_images=12,
                   progress=False)
    cfg = load_config(None, [f"data.root={tiny_synth}", "data.part_source=dff", f"data.part_file={part_file}",
                             "model.backbone=mobilenet_v2", "model.variant=pgan"])
    ttp = TestTimeParts(cfg)
    assert ttp.compute_name.startswith("dff ")
    photo = np.random.default_rng(0).integers(0, 255, (96, 80, 3), dtype=np.uint8)  # not in any part file
    (boxes,) = ttp.boxes([decode(photo)])
    assert (boxes.width, boxes.height) == (80, 96) and 0 < len(boxes.boxes) <= 4
    assert all(b.label.startswith("dff") and b.x2 <= 80 and b.y2 <= 96 for b in boxes.boxes)
    # Trained with the default part file (data.part_cache, no data.part_file): the same basis is found.
    cached = load_config(None, [f"data.root={tiny_synth}", "data.part_source=dff", f"data.part_cache={tmp_path}",
                                "model.backbone=mobilenet_v2", "model.variant=pgan"])
    assert TestTimeParts(cached).compute_name == ttp.compute_name
    with pytest.raises(PganError, match="trained on part source 'kmeans'"):
        TestTimeParts(cfg, parts="kmeans")
    with pytest.raises(PganError, match="basis .*nothere.basis.npz does not exist"):
        TestTimeParts(cfg, parts=str(tmp_path / "nothere.basis.npz"))


def test_pgan_parts_discover_passes_every_option_through(tiny_synth, tmp_path, run_cli, capsys, monkeypatch):
    import pgan.models.backbones as backbones

    # no ImageNet file needed (the command imports the backbone when it runs)
    monkeypatch.setattr(backbones, "frozen_imagenet_backbone", lambda name: conv_features())
    out = tmp_path / "parts_kmeans.jsonl"
    assert run_cli("parts", "discover", "--method", "kmeans", "--dataset", "synth", "--root", tiny_synth,
                   "--out", out, "--num-parts", "3", "--input-size", "64", "--max-fit-images", "5", "--quiet") == 0
    report = json.loads(capsys.readouterr().out)
    basis = PartBasis.load(basis_path(out))
    assert basis.method == "kmeans" and basis.k == 3 and basis.input_size == 64
    assert report["written"] == report["total"] > 0
