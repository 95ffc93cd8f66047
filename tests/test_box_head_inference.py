"""A box-head model at test time: parts="model", its ONNX export (images only) and int8, and its training."""

import csv

import numpy as np
import pytest
import torch

from pgan.errors import PganError
from pgan.inference import FeatureExtractor, OnnxNetwork, export_onnx

# threshold 0: every top-D peak is a part, so a barely trained head still gives boxes to compare
BOX_HEAD = ("model.box_head=true", "model.box_threshold=0.0")


@pytest.fixture(scope="module")
def box_ckpt(tiny_checkpoint):
    return tiny_checkpoint("pgan", *BOX_HEAD)


def _no_proposals(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("proposals were computed")

    import pgan.parts.proposals as proposals

    monkeypatch.setattr(proposals, "propose_boxes", refuse)
    monkeypatch.setattr(proposals, "proposal_boxes_fn", refuse)


def test_a_box_head_model_boxes_new_photos_itself_by_default_without_proposals(box_ckpt, tiny_synth, monkeypatch):
    _no_proposals(monkeypatch)
    paths = sorted((tiny_synth / "image_test").iterdir())[:5]
    fx = FeatureExtractor(box_ckpt, device="cpu", batch_size=2)
    assert fx.parts_from_model and fx.new_photo_parts == "model"
    x, masks, boxes = fx.prepare(paths)
    assert masks is None and boxes == [[]] * 5  # nothing is boxed before the network
    emb, parts = fx.extract_with_parts(paths)
    assert emb.shape == (5, fx.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert all(1 <= len(p) <= 8 for p in parts)  # threshold 0: every 3x3 peak of the 4x4 grid, at most D
    for p in parts:
        assert all(b.label == "model" and 0 <= b.x1 <= b.x2 <= 64 and 0 <= b.y1 <= b.y2 <= 64 for b in p)
        assert [b.score for b in p] == sorted((b.score for b in p), reverse=True)
    # the same as asking for it, and not what the proposals give
    np.testing.assert_allclose(FeatureExtractor(box_ckpt, parts="model", device="cpu")(paths), emb, atol=1e-6)
    assert FeatureExtractor(box_ckpt, parts="grid", device="cpu").new_photo_parts == "grid"


def test_parts_model_needs_a_box_head(tiny_checkpoint):
    with pytest.raises(PganError, match="box head"):
        FeatureExtractor(tiny_checkpoint("pgan"), parts="model", device="cpu")


def test_the_onnx_export_takes_images_only_and_returns_the_same_embedding_and_boxes(box_ckpt, tiny_synth,
                                                                                    tmp_path):
    onnx_file = export_onnx(box_ckpt, tmp_path / "m.onnx")
    net = OnnxNetwork(onnx_file, threads=1)
    assert net.input_names == ["images"] and net.has_box_head
    paths = sorted((tiny_synth / "image_test").iterdir())
    torch_fx = FeatureExtractor(box_ckpt, device="cpu", batch_size=7)
    x, _, _ = torch_fx.prepare(paths[:3])
    emb_t, boxes_t = torch_fx._torch_forward_boxes(x, None)
    emb_o, boxes_o = net.run_with_boxes(x, None)
    assert boxes_o.shape == (3, 8, 5) and (boxes_o[..., 4] > 0).sum(1).min() >= 1
    np.testing.assert_allclose(emb_o, emb_t, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(boxes_o, boxes_t, atol=1e-5)
    onnx_fx = FeatureExtractor(onnx_file, runtime="onnx", device="cpu", batch_size=7)
    assert onnx_fx.parts_from_model
    (a, pa), (b, pb) = onnx_fx.extract_with_parts(paths), torch_fx.extract_with_parts(paths)
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert [len(p) for p in pa] == [len(p) for p in pb]
    np.testing.assert_allclose([[q.x1, q.y2] for p in pa for q in p], [[q.x1, q.y2] for p in pb for q in p],
                               atol=1e-3)
    with pytest.raises(PganError, match="images only"):
        FeatureExtractor(onnx_file, runtime="onnx", parts="proposals", device="cpu")


def test_int8_quantisation_of_a_box_head_export(box_ckpt, tiny_synth, tmp_path):
    from pgan.inference import quantize_int8

    fp32 = export_onnx(box_ckpt, tmp_path / "m.onnx")
    q = quantize_int8(fp32, tmp_path / "m8.onnx", sorted((tiny_synth / "image_train").iterdir())[:24])
    fx8, fx = (FeatureExtractor(f, runtime="onnx", device="cpu") for f in (q, fp32))
    paths = sorted((tiny_synth / "image_test").iterdir())
    a, (b, pb) = fx(paths), fx8.extract_with_parts(paths)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.9
    assert all(len(p) >= 1 for p in pb)  # the decoding stays in float: peaks survive
    # The PAM's masked softmax stays in float: when the head finds fewer than D parts, the absent parts'
    # -inf scores gave a quantised copy an infinite scale.
    import onnx
    from onnx import numpy_helper

    params = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(q)).graph.initializer}
    assert all(np.isfinite(v).all() for k, v in params.items() if k.endswith("_scale"))
    assert not any("/pam/Where" in k or "/pam/Softmax" in k for k in params if k.endswith("_scale"))
    assert any(len(p) < 8 for p in pb)  # some photo had absent parts, so the case was calibrated


def test_training_lowers_the_box_loss_and_the_head_finds_the_proposals_better_than_chance(tiny_synth, tmp_path):
    from pgan.config import load_config
    from pgan.data.build import read_configured_dataset
    from pgan.engine.build import build_eval_sets, build_part_source
    from pgan.engine.train import train
    from pgan.models.box_head import render_masks
    from pgan.models.build import mask_size
    from pgan.models.trained import load_trained

    out = tmp_path / "run"
    train(load_config(None, [
        f"data.root={tiny_synth}", "data.input_size=[64, 64]", "data.cache_images=true", "data.p=4", "data.k=4",
        "data.workers=1", "data.part_source=proposals", "model.backbone=resnet18", "model.pretrained=false",
        "model.reduced_dim=32", "model.box_head=true", "optim.epochs=4", "optim.warmup_epochs=0",
        f"run.out_dir={out}", "run.progress=false", "run.device=cpu"]))
    with open(out / "metrics.csv") as fh:
        box = [float(r["box"]) for r in csv.DictReader(fh)]
    assert box[-1] < 0.8 * box[0]
    model, cfg = load_trained(out / "last.pt")
    cfg.run.progress = False
    sets = build_eval_sets(cfg, read_configured_dataset(cfg), build_part_source(cfg),
                           mask_size(model, tuple(cfg.data.input_size)))
    items = [sets.gallery[i] for i in range(len(sets.gallery))]
    x, props = torch.stack([it["image"] for it in items]), torch.stack([it["masks"] for it in items])
    with torch.no_grad():
        own, _, scores = model.part_box_head.decoder(model.part_box_head(model.forward_features(x)),
                                                     tuple(props.shape[-2:]))
    assert bool((scores > 0).any(1).all())  # every photo gets parts

    def best_iou(head, target):  # each proposal mask's best IoU with a head mask, over valid proposals
        inter = (target[:, :, None] * head[:, None]).flatten(3).sum(-1)
        union = ((target[:, :, None] + head[:, None]) > 0).flatten(3).sum(-1).clamp_min(1)
        valid = target.flatten(2).amax(-1) > 0
        return float((inter / union).amax(-1)[valid].mean())

    # chance: as many boxes per photo as the head gives, with uniformly random corners
    gen = torch.Generator().manual_seed(0)
    chance = []
    for _ in range(20):
        corners = torch.rand(*scores.shape, 2, 2, generator=gen).sort(dim=-2).values  # (B, D, lo/hi, x/y)
        boxes = corners.flatten(-2)[..., [0, 1, 2, 3]] * (scores > 0)[..., None]
        chance.append(best_iou(render_masks(boxes, *props.shape[-2:]), props))
    assert best_iou(own, props) > float(np.mean(chance)) + 0.05


def test_the_service_makes_one_network_call_and_returns_the_heads_boxes_in_full_pixels(box_ckpt, tiny_synth,
                                                                                       monkeypatch):
    import asyncio
    import io

    from PIL import Image

    from pgan.serve import ServeSettings
    from pgan.serve.pipeline import Pipeline
    from pgan.serve.uploads import decode_upload_reduced

    _no_proposals(monkeypatch)
    photo = Image.open(sorted((tiny_synth / "image_test").iterdir())[0]).convert("RGB").resize((1024, 512))
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", quality=95)
    settings = ServeSettings(decode_side=256)
    reduced, full = decode_upload_reduced(buf.getvalue(), settings, "image", settings.decode_side)
    assert full == (1024, 512) and reduced.size == (512, 256)
    fx = FeatureExtractor(box_ckpt, device="cpu")
    emb, boxes = fx.extract_with_parts([reduced])
    pipe = Pipeline(fx, settings)
    pipe.start()
    try:
        embedded, size = asyncio.run(pipe.embed_upload(buf.getvalue()))
    finally:
        pipe.stop()
    assert size == (1024, 512) and pipe.worker.batches == 1
    np.testing.assert_allclose(embedded.embedding, emb[0], atol=1e-5)
    assert len(embedded.boxes) == len(boxes[0]) >= 1
    for got, want in zip(embedded.boxes, boxes[0]):
        assert got.label == "model"
        corners = (want.x1, want.y1, want.x2, want.y2)
        assert [got.x1, got.y1, got.x2, got.y2] == pytest.approx([2 * v for v in corners])
