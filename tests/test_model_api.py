"""The timm-style model API: create_model / list_backbones and the forward_features / forward_head split."""

import pytest
import torch
from torch import nn

import pgan
from pgan.errors import PganError
from pgan.models.network import ModelOutput

SIZE = 64  # small inputs keep every backbone fast; all reach at least a 2x2 map at /16 or /32


def _masks(fmap: torch.Tensor, d: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    m = (torch.rand(fmap.shape[0], d, *fmap.shape[-2:], generator=g) > 0.5).float()
    m[:, -1] = 0  # one padding part: must get no weight and no NaN
    return m


def test_public_names_and_listing():
    assert {"create_model", "list_backbones", "__version__"} <= set(pgan.__all__)
    names = pgan.list_backbones()
    assert names == sorted(names) and {"resnet50", "mobilenet_v2", "googlenet", "vgg16"} <= set(names)
    assert pgan.list_backbones("resnet*") == ["resnet101", "resnet18", "resnet34", "resnet50"]
    assert pgan.list_backbones("nothing*") == []


@pytest.mark.parametrize("name", pgan.list_backbones())
def test_every_backbone_feeds_the_pgan_head(name):
    torch.manual_seed(0)
    model = pgan.create_model("pgan", backbone=name, num_classes=4, pretrained=False, reduced_dim=16,
                              num_parts=3)
    images = torch.randn(2, 3, SIZE, SIZE)
    fmap = model.forward_features(images)
    c = model.backbone.out_channels
    assert fmap.shape[:2] == (2, c) and min(fmap.shape[-2:]) >= 2
    masks = _masks(fmap, 3)
    out = model.forward_head(fmap, masks)
    assert isinstance(out, ModelOutput)
    assert out.embedding.shape == (2, 32) and out.logits.shape == (2, 4)
    assert out.feat_g.shape == out.feat_p.shape == (2, 16) and out.part_weights.shape == (2, 3)
    for t in (out.embedding, out.logits, out.feat_f, out.feat_g, out.feat_p, out.part_weights):
        assert torch.isfinite(t).all()
    assert torch.all(out.part_weights[:, -1] == 0)
    (out.logits.sum() + out.feat_f.sum() + out.feat_g.sum() + out.feat_p.sum()).backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert model.classifier.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("variant", ["baseline", "pgan", "nopam", "grid"])
def test_forward_is_forward_head_of_forward_features(variant):
    torch.manual_seed(1)
    model = pgan.create_model(variant, backbone="resnet18", num_classes=3, reduced_dim=8, num_parts=4).eval()
    images = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        fmap = model.forward_features(images)
        masks = _masks(fmap, 4)
        a = model(images, masks)
        b = model.forward_head(fmap, masks)
    torch.testing.assert_close(a.embedding, b.embedding, rtol=0, atol=0)


def test_a_user_backbone_feeds_the_head():
    torch.manual_seed(2)
    trunk = nn.Sequential(nn.Conv2d(3, 24, 3, stride=4, padding=1), nn.BatchNorm2d(24), nn.ReLU())
    trunk.out_channels = 24
    model = pgan.create_model("pgan", backbone=trunk, num_classes=5, reduced_dim=8, num_parts=2)
    images = torch.randn(4, 3, 32, 32)
    out = model(images, _masks(trunk(images), 2))
    assert out.embedding.shape == (4, 16) and out.logits.shape == (4, 5)
    out.logits.sum().backward()
    assert trunk[0].weight.grad.abs().sum() > 0
    base = pgan.create_model("baseline", backbone=trunk, num_classes=5).eval()
    assert base(images).embedding.shape == (4, 512)  # reduced to 2C' = 512, the paper's dimension
    plain = pgan.create_model("baseline", backbone=trunk, num_classes=5, baseline_reduce=False).eval()
    assert plain(images).embedding.shape == (4, 24)  # the trunk's own channels


def test_bad_backbones_are_one_clear_error():
    with pytest.raises(PganError, match="out_channels"):
        pgan.create_model("pgan", backbone=nn.Sequential(nn.Conv2d(3, 8, 3)), num_classes=3)
    with pytest.raises(PganError, match="backbone must be a name"):
        pgan.create_model("pgan", backbone=3, num_classes=3)
    with pytest.raises(PganError, match="unknown backbone"):
        pgan.create_model("pgan", backbone="resnet5000", num_classes=3)
