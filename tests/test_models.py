import math

import pytest
import torch

from pgan.errors import PganError
from pgan.losses.combined import PganLoss
from pgan.losses.triplet import batch_hard_triplet
from pgan.models.backbones import BACKBONES, build_backbone
from pgan.models.network import VARIANTS, ReidNet
from pgan.models.part_attention import (
    PartAttention,
    attention_map,
    mask_guided_avg_pool,
    masked_softmax,
    part_guided_map,
)


def test_mgap_empty_mask_is_finite_with_gradient():
    feat = torch.randn(2, 5, 4, 4, requires_grad=True)
    masks = torch.zeros(2, 3, 4, 4)
    masks[0, 0, :2, :2] = 1
    pooled = mask_guided_avg_pool(feat, masks)
    assert pooled.shape == (2, 3, 5)
    torch.testing.assert_close(pooled[0, 0], feat[0, :, :2, :2].mean(dim=(1, 2)))
    assert torch.all(pooled[0, 1:] == 0) and torch.all(pooled[1] == 0)
    pooled.sum().backward()
    assert torch.isfinite(feat.grad).all()
    assert feat.grad[0, :, :2, :2].abs().sum() > 0 and feat.grad[1].abs().sum() == 0


def test_pam_weights_sum_to_one_over_valid_parts_and_ignore_padding():
    torch.manual_seed(0)
    pam = PartAttention(16)
    feat = torch.randn(3, 16, 5, 5)
    masks = torch.zeros(3, 4, 5, 5)
    masks[0, :2, 1:3, 1:3] = 1
    masks[1, :, :, :] = 1
    w = pam(feat, masks)  # row 2 has no part at all
    torch.testing.assert_close(w.sum(1), torch.tensor([1.0, 1.0, 0.0]))
    assert torch.all(w[0, 2:] == 0) and torch.isfinite(w).all()
    assert masked_softmax(torch.zeros(1, 2), torch.tensor([[False, False]])).sum() == 0


def test_pooling_and_part_map_with_fractional_masks():
    feat = torch.arange(2 * 2 * 2, dtype=torch.float32).view(1, 2, 2, 2).requires_grad_(True)
    masks = torch.zeros(1, 3, 2, 2)
    masks[0, 0, 0, 0], masks[0, 0, 1, 1] = 0.25, 0.5  # area 0.75: a weighted mean of two cells
    masks[0, 1, 0, 1] = 0.3  # area 0.3 < 1: pools as that one cell, not 0.3 of it
    masks[0, 2] = 1.0  # area 4
    pooled = mask_guided_avg_pool(feat, masks)
    f = feat.detach()[0]
    torch.testing.assert_close(pooled[0, 0], (0.25 * f[:, 0, 0] + 0.5 * f[:, 1, 1]) / 0.75)
    torch.testing.assert_close(pooled[0, 1], f[:, 0, 1])
    torch.testing.assert_close(pooled[0, 2], f.mean(dim=(1, 2)))
    pooled.sum().backward()
    assert torch.isfinite(feat.grad).all()
    # The area-normalised part map scales each mask by mean area / its own area, fractions included.
    w = torch.tensor([[0.5, 0.25, 0.25]])
    mean_area = (0.75 + 0.3 + 4.0) / 3
    explicit = sum(w[0, i] * masks[0, i] * mean_area / a for i, a in enumerate((0.75, 0.3, 4.0)))
    torch.testing.assert_close(attention_map(masks, w, "area")[0], explicit)
    assert masked_softmax(torch.zeros(1, 3), masks.flatten(2).amax(-1) > 0).min() > 0  # all three valid


def test_part_guided_map_equals_the_paper_formula():
    feat, masks = torch.randn(2, 6, 4, 4), (torch.rand(2, 3, 4, 4) > 0.5).float()
    w = torch.softmax(torch.randn(2, 3), -1)
    explicit = sum(w[:, i, None, None, None] * masks[:, i, None] * feat for i in range(3)) + feat
    torch.testing.assert_close(part_guided_map(feat, masks, w), explicit)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_forward_backward_shapes(variant):
    torch.manual_seed(0)
    bb = build_backbone("resnet18", pretrained=False, last_stride=1)
    model = ReidNet(bb, num_classes=5, variant=variant, reduced_dim=32, num_parts=4)
    x = torch.randn(8, 3, 64, 64)
    masks = (torch.rand(8, 4, 4, 4) > 0.6).float()
    masks[:, 3] = 0  # one padding part everywhere
    roles = torch.randn(8, 4) if variant == "oracle" else None
    out = model(x, masks, role_scores=roles)
    dim = 64  # 2 x reduced_dim, the baseline included (model.baseline_reduce, the paper's fixed dimension)
    assert out.embedding.shape == (8, dim) and out.logits.shape == (8, 5)
    labels = torch.arange(4).repeat_interleave(2)
    loss = PganLoss()(out, labels)
    assert torch.isfinite(loss.total)
    expected_terms = {"ce", "f"} if variant == "baseline" else {"ce", "f", "g", "p"}
    assert set(loss.parts) == expected_terms
    loss.total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    if variant in ("pgan", "grid"):
        assert model.pam.psi[0].parametrizations.weight.original0.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        emb = model(x, masks, role_scores=roles).embedding
    assert emb.shape == (8, dim) and torch.isfinite(emb).all()


def test_baseline_reduction_to_the_papers_dimension():
    torch.manual_seed(0)
    reduced = ReidNet(build_backbone("resnet18", pretrained=False), 5, variant="baseline", reduced_dim=32)
    plain = ReidNet(build_backbone("resnet18", pretrained=False), 5, variant="baseline", reduced_dim=32,
                    baseline_reduce=False)
    assert reduced.embedding_dim == 64 and plain.embedding_dim == 512 and plain.reduce is None
    assert reduced.reduce.weight.shape == (64, 512) and reduced.reduce.bias is None
    assert ReidNet(build_backbone("resnet18", pretrained=False), 5, variant="baseline").embedding_dim == 512
    x = torch.randn(4, 3, 64, 64)
    reduced.train()
    out = reduced(x)
    fg = reduced.forward_features(x)
    torch.testing.assert_close(out.feat_f, fg.mean(dim=(2, 3)) @ reduced.reduce.weight.T)  # triplet: reduced
    assert out.logits.shape == (4, 5) and out.embedding.shape == (4, 64)
    reduced.eval()
    emb, fg = reduced(x).embedding, reduced.forward_features(x)
    torch.testing.assert_close(emb, reduced.bnneck(fg.mean(dim=(2, 3)) @ reduced.reduce.weight.T))
    plain.eval()
    fg = plain.forward_features(x)
    torch.testing.assert_close(plain(x).embedding, plain.bnneck(fg.mean(dim=(2, 3))))


def test_global_branch_keeps_the_unreduced_baseline_feature_beside_the_fused_head():
    torch.manual_seed(0)
    net = ReidNet(build_backbone("resnet18", pretrained=False), 4, variant="nopam", reduced_dim=16, num_parts=3,
                  global_branch=True)
    assert net.embedding_dim == 512 + 32  # resnet18's C unreduced, then 2C'
    x, masks = torch.randn(8, 3, 64, 64), (torch.rand(8, 3, 4, 4) > 0.5).float()
    out = net(x, masks)
    fg = net.forward_features(x)
    torch.testing.assert_close(out.feat_global, fg.mean(dim=(2, 3)))
    assert out.logits_global.shape == (8, 4)
    loss = PganLoss()(out, torch.arange(4).repeat_interleave(2))
    assert set(loss.parts) == {"ce", "ce_global", "f", "g", "p", "global"}
    loss.total.backward()
    assert net.classifier_global.weight.grad.abs().sum() > 0 and net.bnneck_global.bias.grad is None
    assert set(PganLoss(terms=("ce",))(net(x, masks), torch.arange(4).repeat_interleave(2)).parts) == {
        "ce", "ce_global"}  # the global losses follow the ce / f switches
    net.eval()
    with torch.no_grad():
        emb, fg = net(x, masks).embedding, net.forward_features(x)
        fused = net.bnneck(net.refine_f.forward_pooled_pair(fg, net.forward_head(fg, masks, True).part_map))
        g = net.bnneck_global(fg.mean(dim=(2, 3)))
    assert emb.shape == (8, 544)
    torch.testing.assert_close(emb[:, :512], torch.nn.functional.normalize(g, dim=1))
    torch.testing.assert_close(emb[:, 512:], torch.nn.functional.normalize(fused, dim=1))
    base = ReidNet(build_backbone("resnet18", pretrained=False), 4, variant="baseline", reduced_dim=16,
                   global_branch=True)
    assert base.bnneck_global is None and base.embedding_dim == 32  # the baseline is its own global branch


def test_temperature_warmup_and_entropy_floor_switches():
    from pgan.config import Config
    from pgan.engine.train import temperature_hooks
    from pgan.losses.combined import entropy_shortfall
    from pgan.models.part_attention import temperature_warmup_scale, uniform_part_weights

    assert temperature_warmup_scale(0.0, 2.0, 10.0) == pytest.approx(0.1)  # T_eff = 1 at the start
    assert temperature_warmup_scale(1.0, 2.0, 10.0) == pytest.approx(0.55)  # halfway: T_eff = 5.5
    assert temperature_warmup_scale(2.0, 2.0, 10.0) == 1.0 and temperature_warmup_scale(0.3, 0.0, 10.0) == 1.0
    torch.manual_seed(0)
    net = ReidNet(build_backbone("resnet18", pretrained=False), 4, variant="pgan", reduced_dim=8, num_parts=3)
    cfg = Config()
    cfg.model.temperature_warmup = 2.0
    (hook,) = temperature_hooks(net, cfg)
    fg, masks = torch.randn(2, 512, 4, 4), (torch.rand(2, 3, 4, 4) > 0.3).float()
    sharp = net.pam(fg, masks)
    hook(0.0)
    assert net.pam.temperature_scale == pytest.approx(0.1)
    soft = net.pam(fg, masks)
    uniform = uniform_part_weights(masks)
    assert (soft - uniform).abs().sum() < (sharp - uniform).abs().sum()  # nearer uniform while warming up
    hook(5.0)
    torch.testing.assert_close(net.pam(fg, masks), sharp)
    cfg.model.temperature_warmup = 0.0
    assert temperature_hooks(net, cfg) == []
    from pgan.config import check_values

    cfg.optim.epochs, cfg.model.temperature_warmup = 3, 4.0  # would end the run (and its eval) still warming
    with pytest.raises(PganError, match="temperature_warmup=4 is longer than the run"):
        check_values(cfg)
    cfg.model.temperature_warmup = 3.0
    check_values(cfg)

    valid = torch.tensor([[True, True, True, True], [True, True, False, False], [True, False, False, False]])
    w = torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    # image 0 uniform (H_norm 1: no shortfall), image 1 one-hot over two parts (H_norm 0: shortfall = floor),
    # image 2 has one valid part and is left out
    assert float(entropy_shortfall(w, valid, 0.6)) == pytest.approx(0.3, abs=1e-6)
    out = net(torch.randn(4, 3, 64, 64), (torch.rand(4, 3, 4, 4) > 0.3).float())
    labels = torch.arange(2).repeat_interleave(2)
    loss = PganLoss(entropy_floor=1.0, entropy_weight=2.0)(out, labels)
    assert loss.parts["entropy"] > 0 and "entropy" not in PganLoss()(out, labels).parts
    with pytest.raises(PganError, match="entropy_floor"):
        PganLoss(entropy_floor=1.5)


def test_oracle_weights_are_a_fixed_softmax_over_role_scores():
    from pgan.engine.oracle import role_scores

    assert role_scores(["identity", "shared", "clutter", None], 6).tolist() == [1, 0, -1, -1, 0, 0]
    torch.manual_seed(0)
    net = ReidNet(build_backbone("resnet18", pretrained=False), 5, variant="oracle", reduced_dim=8, num_parts=4,
                  oracle_temperature=2.0).eval()
    assert net.pam is None and not any("pam" in n for n, _ in net.named_parameters())
    masks = torch.zeros(2, 4, 4, 4)
    masks[0, :3, :2, :2] = 1  # image 0: three parts (identity, shared, clutter) and a padding slot
    masks[1, :2, 2:, 2:] = 1  # image 1: two identity parts
    scores = torch.tensor([[1.0, 0.0, -1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    w = net(torch.randn(2, 3, 64, 64), masks, role_scores=scores).part_weights
    e2 = math.exp(2.0)
    z = e2 + 1 + 1 / e2
    torch.testing.assert_close(w, torch.tensor([[e2 / z, 1 / z, 1 / (e2 * z), 0.0], [0.5, 0.5, 0.0, 0.0]]))
    with pytest.raises(PganError, match="variant 'oracle' needs role scores"):
        net(torch.randn(2, 3, 64, 64), masks)
    with pytest.raises(PganError, match=r"role scores are \(2, 3\)"):
        net(torch.randn(2, 3, 64, 64), masks, role_scores=scores[:, :3])


def test_eval_skips_unused_branches_and_concat_retrieval():
    bb = build_backbone("resnet18", pretrained=False)
    model = ReidNet(bb, num_classes=3, variant="pgan", reduced_dim=16, num_parts=2).eval()
    calls = []
    model.refine_g.register_forward_hook(lambda *a: calls.append("g"))
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32), torch.ones(2, 2, 2, 2))
    assert calls == []
    cat = ReidNet(build_backbone("resnet18", pretrained=False), 3, "pgan", reduced_dim=16, num_parts=2,
                  retrieval="concat").eval()
    with torch.no_grad():
        assert cat(torch.randn(2, 3, 32, 32), torch.ones(2, 2, 2, 2)).embedding.shape == (2, 64)


def test_masks_at_wrong_resolution_and_unknown_names():
    model = ReidNet(build_backbone("resnet18", pretrained=False), 3, "pgan", reduced_dim=16, num_parts=2)
    with pytest.raises(PganError, match="feature map"):
        model(torch.randn(2, 3, 32, 32), torch.ones(2, 2, 5, 5))
    with pytest.raises(PganError, match="valid names: .*resnet50"):
        build_backbone("resnet9000")
    with pytest.raises(PganError, match="valid names: baseline, grid, nopam, oracle, pgan"):
        ReidNet(build_backbone("resnet18", pretrained=False), 3, "attention-is-all")


def test_last_stride_and_frozen_stages():
    bb = build_backbone("mobilenet_v2", pretrained=False, last_stride=1, frozen_stages=2)
    assert bb(torch.zeros(1, 3, 160, 160)).shape == (1, 1280, 10, 10)
    assert bb.stride == 16 and set(BACKBONES) >= {"resnet50", "mobilenet_v2"}
    assert not any(p.requires_grad for p in bb.stages[0].parameters())
    bb.train()
    assert not bb.stages[1].training and bb.stages[2].training
    r = build_backbone("resnet50", pretrained=False, last_stride=1)
    assert r(torch.zeros(1, 3, 224, 224)).shape == (1, 2048, 14, 14)


def test_batch_hard_triplet_hand_case():
    feats = torch.tensor([[0.0], [1.0], [3.0], [3.5]])
    labels = torch.tensor([0, 0, 1, 1])
    # anchor 0: hardest pos 1.0, hardest neg 3.0 -> relu(1-3+0.3)=0; anchor 1: pos 1, neg 2 -> 0
    # anchor 2: pos 0.5, neg 2 -> 0; anchor 3: pos 0.5, neg 2.5 -> 0.
    # With margin 2.0: anchor 0: 1-3+2=0, anchor 1: 1-2+2=1, anchor 2: 0.5-2+2=0.5, anchor 3: 0.5-2.5+2=0.
    assert batch_hard_triplet(feats, labels, 0.3).item() == pytest.approx(0.0, abs=1e-5)
    assert batch_hard_triplet(feats, labels, 2.0).item() == pytest.approx((0.0 + 1.0 + 0.5 + 0.0) / 4, abs=1e-5)


def test_refine_pooled_equals_pooling_the_map():
    from pgan.models.refine import Refine

    torch.manual_seed(0)
    r = Refine(64, 32)
    x = torch.randn(4, 64, 6, 6, requires_grad=True)
    for mode in (True, False):
        r.train(mode)
        torch.testing.assert_close(r.forward_pooled(x), r(x).mean(dim=(2, 3)), rtol=1e-5, atol=1e-5)
    ga = torch.autograd.grad(r.forward_pooled(x).sum(), x)[0]
    gb = torch.autograd.grad(r(x).mean(dim=(2, 3)).sum(), x)[0]
    torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name,channels", [("googlenet", 1024), ("vgg16", 512), ("resnet34", 512)])
def test_more_backbones_last_stride(name, channels):
    bb = build_backbone(name, pretrained=False, last_stride=1)
    assert bb.out_channels == channels and len(bb.stages) == 5
    with torch.no_grad():
        assert bb.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, channels, 4, 4)


def test_part_dropout_drops_whole_masks_in_training_only():
    from pgan.models.network import drop_parts

    torch.manual_seed(0)
    masks = torch.ones(64, 8, 4, 4)
    dropped = drop_parts(masks, 0.25)
    per_part = dropped.flatten(2).amax(-1)
    assert set(per_part.unique().tolist()) == {0.0, 1.0}  # a part is kept whole or dropped whole
    assert (dropped.flatten(2).amin(-1) == per_part).all()
    assert 0.18 < 1 - per_part.mean().item() < 0.32  # about p of 512 parts dropped
    bb = build_backbone("resnet18", pretrained=False, last_stride=1)
    model = ReidNet(bb, num_classes=5, variant="pgan", reduced_dim=32, num_parts=4, part_dropout=0.5)
    x, m = torch.randn(4, 3, 64, 64), torch.ones(4, 4, 4, 4)
    model.eval()
    with torch.no_grad():  # no dropout at test time: every valid part keeps a weight
        assert (model(x, m).part_weights > 0).all()
    with pytest.raises(PganError, match="part_dropout"):
        ReidNet(bb, num_classes=5, variant="pgan", part_dropout=1.0)


@pytest.mark.parametrize("variant", ["pgan", "nopam", "grid", "oracle"])
def test_part_upsample_runs_the_part_head_on_a_finer_map(variant):
    from pgan.models.build import mask_size

    torch.manual_seed(0)
    net = ReidNet(build_backbone("resnet18", pretrained=False, last_stride=1), 4, variant=variant, reduced_dim=16,
                  num_parts=3, part_upsample=2)
    assert mask_size(net, (64, 64)) == (8, 8)  # the backbone's 4x4, twice as fine
    x = torch.randn(8, 3, 64, 64)
    masks = (torch.rand(8, 3, 8, 8) > 0.6).float()
    masks[:, 2] = 0  # a padding part
    roles = torch.randn(8, 3) if variant == "oracle" else None
    seen = []
    if net.pam is not None:
        net.pam.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[-2:]))
    out = net(x, masks, return_maps=True, role_scores=roles)
    assert out.part_map.shape == (8, 512, 8, 8) and out.embedding.shape == (8, 32)
    if net.pam is not None:
        assert seen == [(8, 8)]  # the PAM pools on the upsampled map
    # F_p is built from the bilinearly upsampled F_g
    fg = torch.nn.functional.interpolate(net.forward_features(x), scale_factor=2, mode="bilinear",
                                         align_corners=False)
    torch.testing.assert_close(out.part_map, part_guided_map(fg, net.grid_masks(8, 8, fg).expand(8, -1, -1, -1)
                                                             if variant == "grid" else masks, out.part_weights))
    loss = PganLoss()(out, torch.arange(4).repeat_interleave(2))
    loss.total.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    assert net.backbone.stages[-1][-1].conv2.weight.grad.abs().sum() > 0
    net.eval()
    with torch.no_grad():
        emb = net(x, masks, role_scores=roles).embedding
        assert emb.shape == (8, 32) and torch.isfinite(emb).all()
        if variant != "grid":  # masks at the backbone's resolution: the error names the switch
            with pytest.raises(PganError, match=r"part masks are \(4, 4\).*\(8, 8\).*part_upsample=2"):
                net(x, masks[..., ::2, ::2], role_scores=roles)
    with pytest.raises(PganError, match="part_upsample"):
        ReidNet(build_backbone("resnet18", pretrained=False), 4, variant=variant, part_upsample=0)


def test_a_small_part_covers_less_of_the_image_on_the_finer_map():
    from pgan.models.build import mask_size
    from pgan.parts.boxfile import PartBox
    from pgan.parts.masks import box_to_mask

    bb = build_backbone("resnet18", pretrained=False, last_stride=1)
    coarse = mask_size(ReidNet(bb, 4, variant="nopam"), (160, 160))
    fine = mask_size(ReidNet(bb, 4, variant="nopam", part_upsample=2), (160, 160))
    assert coarse == (10, 10) and fine == (20, 20)
    # A sticker one coarse cell wide (16 px), offset by half a cell: it straddles four coarse cells but
    # exactly four fine ones.
    box = PartBox(8, 8, 24, 24)
    for mode in ("any", "fraction"):
        m1, m2 = box_to_mask(box, 160, 160, *coarse, mode=mode), box_to_mask(box, 160, 160, *fine, mode=mode)
        support1, support2 = (m1 > 0).mean(), (m2 > 0).mean()  # share of the image the mask touches
        assert support2 < support1 and support1 == pytest.approx(0.04) and support2 == pytest.approx(0.01)
    frac1, frac2 = box_to_mask(box, 160, 160, *coarse, mode="fraction"), box_to_mask(box, 160, 160, *fine,
                                                                                       mode="fraction")
    assert frac1.max() == pytest.approx(0.25) and frac2.max() == 1.0  # quarter coarse cells, whole fine ones
    assert frac1.sum() / frac1.size == pytest.approx(frac2.sum() / frac2.size)  # the box's area, either way


@pytest.mark.parametrize("variant", ["pgan", "nopam"])
def test_per_part_identity_loss(variant):
    from pgan.losses.combined import part_identity_loss

    torch.manual_seed(0)
    net = ReidNet(build_backbone("resnet18", pretrained=False), 4, variant=variant, reduced_dim=16, num_parts=3,
                  part_id=True)
    x, labels = torch.randn(8, 3, 64, 64), torch.arange(4).repeat_interleave(2)
    masks = torch.zeros(8, 3, 4, 4)
    masks[:, 0, :2, :2] = 1
    masks[:4, 1, 2:, :] = 0.5
    masks[5] = 0  # an image without parts; part 2 is empty everywhere
    out = net(x, masks)
    assert out.part_logits.shape == (8, 3, 4)
    assert (out.part_logits[~out.part_valid] == 0).all() and out.part_valid.sum() == 7 + 4
    loss = PganLoss(part_id_weight=0.5)(out, labels)
    assert set(loss.parts) == {"ce", "f", "g", "p", "part_id"} and math.isfinite(loss.parts["part_id"])
    assert "part_id" not in PganLoss()(out, labels).parts
    valid = out.part_valid
    explicit = torch.nn.functional.cross_entropy(out.part_logits[valid], labels[:, None].expand(8, 3)[valid])
    assert loss.parts["part_id"] == pytest.approx(0.5 * float(explicit.detach()), rel=1e-5)
    garbage = out.part_logits.detach().clone()
    garbage[~valid] = 1e4  # empty parts' logits do not count
    torch.testing.assert_close(part_identity_loss(garbage, valid, labels), explicit.detach())
    assert float(part_identity_loss(garbage, torch.zeros_like(valid), labels)) == 0.0
    loss.total.backward()
    assert net.part_classifier.weight.grad.abs().sum() > 0 and net.part_bn.weight.grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    # the term's own gradient reaches the backbone
    net.zero_grad()
    part_identity_loss(net(x, masks).part_logits, valid, labels).backward()
    assert net.backbone.stages[-1][-1].conv2.weight.grad.abs().sum() > 0
    net.eval()
    with torch.no_grad():
        assert net(x, masks).part_logits is None  # training only
    plain = ReidNet(build_backbone("resnet18", pretrained=False), 4, variant=variant, reduced_dim=16, num_parts=3)
    assert plain.part_classifier is None and plain(x, masks).part_logits is None
    with pytest.raises(PganError, match="part_id_weight"):
        PganLoss(part_id_weight=0.5)(plain(x, masks), labels)
    base = ReidNet(build_backbone("resnet18", pretrained=False), 4, variant="baseline", part_id=True)
    assert base.part_bn is None  # no parts, no per-part classifier
