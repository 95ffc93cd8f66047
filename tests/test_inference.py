"""The inference API: same embeddings as ``pgan eval``, every input type, the part pipeline's errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from pgan.errors import NotAnImageError, PganError
from pgan.inference import FeatureExtractor, load_model


def _eval_embeddings(checkpoint, flip=False):
    """The gallery features exactly as ``pgan eval`` computes them (engine/build + engine/extract)."""
    from pgan.data.build import read_configured_dataset
    from pgan.engine.build import build_eval_sets, build_loader, build_part_source
    from pgan.engine.extract import extract_features
    from pgan.models.build import mask_size
    from pgan.models.trained import load_trained

    model, cfg = load_trained(checkpoint)
    cfg.data.cache_images = False
    ds = read_configured_dataset(cfg)
    feat = mask_size(model, tuple(cfg.data.input_size))
    sets = build_eval_sets(cfg, ds, build_part_source(cfg), feat)
    loader = build_loader(sets.gallery, cfg, batch_size=64, shuffle=False)
    feats = extract_features(model, loader, torch.device("cpu"), flip=flip, progress=False)
    return feats.feats.numpy(), [r.path for r in sets.gallery.records]


@pytest.mark.parametrize("variant,flip", [("pgan", False), ("pgan", True), ("baseline", False), ("grid", False)])
def test_same_embeddings_as_pgan_eval(tiny_checkpoint, variant, flip):
    ckpt = tiny_checkpoint(variant)
    expected, paths = _eval_embeddings(ckpt, flip)
    fx = FeatureExtractor(ckpt, device="cpu", batch_size=5, flip=flip)
    got, boxes = fx.extract_with_parts(paths)
    assert got.dtype == np.float32 and got.shape == expected.shape == (len(paths), fx.embedding_dim)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    if variant == "baseline":
        assert all(b == [] for b in boxes)
    elif variant == "grid":
        assert all(len(b) == 8 for b in boxes)
    else:
        assert all(1 <= len(b) <= 8 for b in boxes) and max(len(b) for b in boxes) == 8


def test_finer_part_map_and_part_loss_agree_from_training_to_inference(tiny_checkpoint):
    """model.part_upsample: training, ``pgan eval`` and the inference API all build masks at the finer size."""
    import csv

    ckpt = tiny_checkpoint("nopam", "model.part_upsample=2", "loss.part_id_weight=0.5")
    with open(ckpt.parent / "metrics.csv") as f:
        row = next(csv.DictReader(f))
    assert float(row["part_id"]) > 0  # the per-part identity loss was trained with
    tm = load_model(ckpt)
    assert tm.feat_size == (8, 8) and tm.network.part_upsample == 2  # resnet18's 4x4 at 64 px, twice as fine
    assert tm.fingerprint != load_model(tiny_checkpoint("nopam")).fingerprint
    expected, paths = _eval_embeddings(ckpt)
    got, _ = FeatureExtractor(ckpt, device="cpu", batch_size=5).extract_with_parts(paths)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_every_input_type_gives_the_same_embedding(tiny_checkpoint, tiny_synth):
    fx = FeatureExtractor(tiny_checkpoint("pgan"), parts="proposals", device="cpu")
    path = sorted((tiny_synth / "image_test").iterdir())[0]
    with Image.open(path) as im:
        pil = im.convert("RGB")
    arr = np.asarray(pil)
    ten = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    # In memory, an image has no path to look up in the part file: all four go through proposals.
    from pgan.inference.images import decode

    decoded = decode(path)
    decoded.path = None
    ref = fx([decoded])
    for item in (pil, arr, ten, ten.float() / 255):
        np.testing.assert_allclose(fx(item), ref, atol=1e-6)
    assert fx([arr, arr]).shape == (2, 64)
    assert fx(np.stack([arr, arr])).shape == (2, 64)


def test_load_model_and_fingerprint(tiny_checkpoint):
    a, b = load_model(tiny_checkpoint("pgan")), load_model(tiny_checkpoint("pgan"))
    assert not a.network.training and a.config.model.variant == "pgan"
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 16
    assert a.fingerprint != load_model(tiny_checkpoint("baseline")).fingerprint
    assert a.embedding_dim == 64 and a.feat_size == (4, 4) and a.needs_masks


def test_bad_inputs(tiny_checkpoint, tmp_path):
    fx = FeatureExtractor(tiny_checkpoint("pgan"), device="cpu")
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "b.jpg").write_text("hello")
    for name in ("a.jpg", "b.jpg", "missing.jpg"):
        with pytest.raises(NotAnImageError, match=f"cannot read image .*{name}"):
            fx([tmp_path / name])
    with pytest.raises(NotAnImageError, match=r"\(H, W, 3\) uint8"):
        fx(np.zeros((8, 8), np.float32))
    # A ground-truth-trained model cannot know the boxes of a new photo: it says so and what to pass.
    with pytest.raises(PganError, match="give parts .*'proposals'"):
        fx(np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(PganError, match="runtime"):
        FeatureExtractor(tiny_checkpoint("pgan"), runtime="tensorrt")
    with pytest.raises(PganError, match="parts="):
        FeatureExtractor(tiny_checkpoint("pgan"), parts=tmp_path / "nothing.pt")
    with pytest.raises(PganError, match="does not exist"):
        FeatureExtractor(tmp_path / "none.pt")


def test_relative_dataset_root_is_found_from_the_checkpoint(tmp_path, monkeypatch):
    from pgan.inference.parts import dataset_root

    (tmp_path / "proj" / "data" / "synth").mkdir(parents=True)
    (tmp_path / "proj" / "runs" / "demo").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    found = dataset_root("data/synth", tmp_path / "proj" / "runs" / "demo" / "last.pt")
    assert found == (tmp_path / "proj" / "data" / "synth").resolve()
    assert dataset_root("data/none", tmp_path / "proj" / "runs" / "demo" / "last.pt") == tmp_path / "data/none"


def test_part_file_override(tiny_checkpoint, tmp_path):
    from pgan.parts.boxfile import ImageParts, PartBox, write_part_file

    img = tmp_path / "new.png"
    Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(img)
    write_part_file(tmp_path / "parts.jsonl", [ImageParts(img.resolve().as_posix(), 60, 40,
                                                          [PartBox(0, 0, 30, 20, 0.9, "x")])])
    fx = FeatureExtractor(tiny_checkpoint("pgan"), parts=tmp_path / "parts.jsonl", device="cpu")
    _, boxes = fx.extract_with_parts([img])
    assert [(b.x1, b.y1, b.x2, b.y2) for b in boxes[0]] == [(0, 0, 30, 20)]
