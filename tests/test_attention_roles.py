"""Part roles (identity vs shared) from the generator, the attention ratio, and the PAM switches."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from pgan.engine.train import param_groups
from pgan.evaluation.attention_roles import attention_spread, role_attention
from pgan.models.backbones import build_backbone
from pgan.models.network import ReidNet
from pgan.models.part_attention import PartAttention, masked_softmax, part_guided_map
from pgan.parts.boxfile import PartBox, read_part_file
from pgan.parts.roles import box_roles
from pgan.synth import SynthConfig, generate_synth
from pgan.synth.world import KINDS

ID_KINDS = set(KINDS) - {"wheel"}


def test_role_attention_ratio_values():
    # Uniform weights: every relative weight is 1, so the ratio is exactly 1.
    uni = role_attention([np.full(4, 0.25)], [["identity", "shared", "shared", "shared"]])
    assert uni.ratio == pytest.approx(1.0) and uni.relative["identity"] == pytest.approx(1.0)
    # Two images: identity parts get 3x and 2x a uniform share, shared ones 1/3 and 0.
    att = role_attention([np.array([0.75, 0.25, 0.0]), np.array([0.5, 0.0, 0.5, 0.0])],
                         [["identity", "shared"], ["identity", "shared", "clutter", "shared"]])
    # image 2: weights 0.5/0/0.5/0 -> only two valid parts (zero weight = padding/invalid here)
    assert att.count == {"identity": 2, "shared": 1, "clutter": 1}
    assert att.relative["identity"] == pytest.approx((1.5 + 1.0) / 2)
    assert att.relative["shared"] == pytest.approx(0.5)
    assert att.ratio == pytest.approx(2.5)
    assert att.share["identity"] == pytest.approx(1.25 / 2.0) and att.images == 2
    # No shared part at all: the ratio is undefined, not a division by zero.
    assert math.isnan(role_attention([np.array([1.0])], [["identity"]]).ratio)


def test_a_valid_part_counts_by_its_mask_even_when_its_weight_underflows():
    # Part 1's score is so far below the others that exp() underflows: a plain softmax gives it exactly 0.
    scores, valid = torch.tensor([[0.0, -5000.0, 3.0, 0.0]]), torch.tensor([[True, True, True, False]])
    assert torch.softmax(scores.masked_fill(~valid, float("-inf")), -1)[0, 1] == 0
    w = masked_softmax(scores, valid)
    assert w[0, 1] == torch.finfo(torch.float32).tiny and w[0, 3] == 0  # clamped, padding stays 0
    torch.testing.assert_close(w[0, [0, 2]], torch.softmax(torch.tensor([0.0, 3.0]), -1))
    # Through the network: the PAM's weight on part 1 underflows, its mask makes it count.
    torch.manual_seed(0)
    net = ReidNet(build_backbone("resnet18", pretrained=False), num_classes=3, variant="pgan", reduced_dim=8,
                  num_parts=4).eval()
    net.pam.scores = lambda feat, masks: scores.expand(len(feat), -1)
    masks = torch.zeros(1, 4, 4, 4)  # resnet18, last stride 1: a 64 px image gives a 4 x 4 map
    masks[0, 0, 0, 0] = masks[0, 1, 1, 1] = masks[0, 2, 0, 1] = 1
    out = net(torch.randn(1, 3, 64, 64), masks)
    assert out.part_valid.tolist() == [[True, True, True, False]] and 0 < out.part_weights[0, 1] < 1e-37
    roles = [["identity", "shared", "shared"]]
    w_net = out.part_weights.detach().numpy()
    for att in (role_attention(list(w_net), roles, list(out.part_valid.numpy())),  # by mask
                role_attention(list(w_net), roles)):  # by weight > 0: safe now that the weight is not 0
        assert att.count == {"identity": 1, "shared": 2, "clutter": 0}
        low, high = torch.softmax(torch.tensor([0.0, 3.0]), -1).tolist()
        assert att.relative["identity"] == pytest.approx(3 * low)
        assert att.relative["shared"] == pytest.approx(3 * high / 2)  # (3 x ~0 + 3 x high) / 2 parts
    # The rule by weight would drop part 1 and give the others a share of 1/2 instead of 1/3.
    w = np.array([[0.5, 0.0, 0.5, 0.0]])
    assert role_attention(list(w), roles).relative["shared"] == pytest.approx(1.0)
    assert role_attention(list(w), roles, [np.array([1, 1, 1, 0], bool)]).relative["shared"] == pytest.approx(0.75)
    spread = attention_spread(w, np.array([[1, 1, 1, 0]], bool))  # 0 log 0 = 0, normalised by log 3
    assert spread.entropy_median == pytest.approx(math.log(2) / math.log(3)) and spread.images == 1


def test_box_roles_keep_own_role_then_match_truth_at_iou_half():
    truth = [PartBox(0, 0, 10, 10, 1.0, "anusigns", "identity"),
             PartBox(20, 20, 40, 40, 1.0, "carlight", "shared")]
    boxes = [PartBox(1, 1, 10, 10, 0.9),  # IoU 0.81 with the identity box
             PartBox(20, 20, 40, 30, 0.8),  # IoU 0.5 with the shared box
             PartBox(50, 50, 60, 60, 0.7),  # overlaps nothing: clutter
             PartBox(0, 0, 10, 10, 1.0, "x", "shared")]  # its own role wins
    assert box_roles(boxes, truth) == ["identity", "shared", "clutter", "shared"]
    assert box_roles(boxes[:1], None) == [None]


def _boxes(root):
    return read_part_file(root / "parts_gt.jsonl")


@pytest.fixture(scope="module")
def roles_data(tmp_path_factory):
    small = dict(num_train_ids=6, num_test_ids=3, images_per_id=(5, 5), num_cameras=3, num_families=2,
                 image_size=96, seed=4, workers=1)
    out = {}
    hard = {"extra_shared_parts": True, "id_part_scale": 0.7, "box_scores": "detector"}
    for name, extra in {"std": {}, "scaled": {"id_part_scale": 0.7}, "hard": hard}.items():
        root = tmp_path_factory.mktemp(name)
        generate_synth(root, SynthConfig(**small, **extra), progress=False)
        out[name] = root
    return out


def test_generator_labels_every_box_with_its_role(roles_data):
    root = roles_data["std"]
    meta = json.loads((root / "synth_meta.json").read_text())
    items = _boxes(root)
    assert items
    for key, item in items.items():
        vid = str(int(key.split("/")[1][:4]))
        has_rim = "wheel" in meta["identity_parts"][vid]
        for b in item.boxes:
            assert b.role in ("identity", "shared")
            if b.label in ID_KINDS:
                assert b.role == "identity"
            elif b.label == "wheel":  # per box: the identity's own rim, or the family's plain one
                assert b.role == ("identity" if has_rim else "shared")
            else:
                assert b.role == "shared", b


def test_harder_setting_switches(roles_data):
    std, scaled, hard = (_boxes(roles_data[n]) for n in ("std", "scaled", "hard"))
    shared = {n: np.mean([sum(b.role == "shared" for b in it.boxes) for it in d.values()])
              for n, d in (("std", std), ("hard", hard))}
    assert shared["hard"] >= shared["std"] + 3  # family-level distractors
    assert shared["hard"] > 8  # more shared parts per image than D = 8 can hold
    # Same images, identity parts drawn at 0.7x: their boxes' areas shrink by about 0.49.
    ratios = [bs.area / bo.area for key in std for bo, bs in zip(std[key].boxes, scaled[key].boxes)
              if bo.label in ID_KINDS and bo.label == bs.label and bo.score == bs.score == 1.0]
    assert ratios and np.median(ratios) == pytest.approx(0.49, abs=0.08)
    # Detector-like scores: mostly distinct, no tie ordering left.
    scores = [b.score for it in hard.values() for b in it.boxes]
    assert min(scores) >= 0.5 * 0.25 and len(set(scores)) > 0.5 * len(scores)


def test_pam_switches():
    feat = torch.randn(3, 32, 6, 6)
    masks = torch.zeros(3, 4, 6, 6)
    masks[:, 0, :1, :1] = 1
    masks[:, 1, 1:5, 1:5] = 1
    masks[:, 2, 5:, :] = 1  # part 3 stays empty (padding)
    single = PartAttention(32, score="single", learn_temperature=True)
    w = single(feat, masks)
    assert torch.allclose(w[:, :3], torch.full((3, 3), 1 / 3)) and (w[:, 3] == 0).all()  # starts uniform
    w.mul(torch.arange(4.0)).sum().backward()
    assert single.log_temperature.grad is not None and single.psi[-1].weight.grad.abs().sum() > 0
    authors = PartAttention(32)
    assert not any(n == "log_temperature" for n, _ in authors.named_parameters())
    assert "log_temperature" not in authors.state_dict()  # old checkpoints keep loading
    # area mode: with equal weights every part adds the same mass to F_p whatever its size
    ones, wts = torch.ones(3, 1, 6, 6), torch.tensor([[0.5, 0.5, 0.0, 0.0]] * 3)
    extra = part_guided_map(ones, masks[:, :2], wts[:, :2], "area")[0, 0] - 1
    assert extra[masks[0, 0] > 0].sum() == pytest.approx(extra[masks[0, 1] > 0].sum())
    raw = part_guided_map(ones, masks[:, :2], wts[:, :2])[0, 0] - 1
    assert raw[masks[0, 1] > 0].sum() == pytest.approx(16 * raw[masks[0, 0] > 0].sum())
    model = torch.nn.ModuleDict({"pam": PartAttention(32), "head": torch.nn.Linear(4, 4)})
    groups = param_groups(model, 1e-3, 10.0)
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(1e-2)
    assert len(param_groups(model, 1e-3, 1.0)) == 1


def test_training_logs_the_attention_ratio(roles_data, tmp_path):
    from pgan.config import load_config
    from pgan.engine.train import train

    cfg = load_config(None, [
        f"data.root={roles_data['hard']}", "data.input_size=[64, 64]", "data.cache_images=true", "data.p=3",
        "data.k=4", "data.workers=1", "model.backbone=resnet18", "model.pretrained=false",
        "model.reduced_dim=32", "optim.epochs=2", "optim.warmup_epochs=0", "run.eval_every=1",
        f"run.out_dir={tmp_path}", "run.progress=false", "run.device=cpu", "model.part_map=area"])
    result = train(cfg)
    with open(tmp_path / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    ratios = [float(r["eval_attention_ratio"]) for r in rows]
    assert len(ratios) == 2 and all(0.0 < r < 10.0 for r in ratios)
    assert result["metrics"]["attention_ratio"] == pytest.approx(ratios[-1], rel=1e-4)


def test_attention_spread_uniform_collapsed_and_single_part_images():
    from pgan.evaluation.attention_roles import attention_spread

    w = np.array([[0.25, 0.25, 0.25, 0.25, 0.0],  # uniform over 4 valid parts: entropy 1, max 0.25
                  [0.97, 0.01, 0.01, 0.01, 0.0],  # collapsed
                  [1.0, 0.0, 0.0, 0.0, 0.0]])  # one valid part: not counted
    s = attention_spread(w)
    assert s.images == 2 and s.collapsed == 0.5
    ent_collapsed = -(0.97 * np.log(0.97) + 3 * 0.01 * np.log(0.01)) / np.log(4)
    assert s.entropy_median == pytest.approx((1.0 + ent_collapsed) / 2)
    assert s.max_weight_median == pytest.approx((0.25 + 0.97) / 2)
    assert np.isnan(attention_spread(np.array([[1.0, 0.0]])).entropy_median)


def test_eval_prints_retrieval_metrics_in_percent_and_attention_figures_as_they_are(tiny_checkpoint, run_cli,
                                                                                   capsys, tmp_path):
    out = tmp_path / "eval.json"
    assert run_cli("eval", "--checkpoint", tiny_checkpoint("pgan"), "--out", out) == 0
    printed = dict(line.strip("|").replace(" ", "").split("|") for line in capsys.readouterr().out.splitlines()
                   if line.startswith("| ") and "metric" not in line)
    metrics = json.loads(out.read_text())
    assert float(printed["mAP"]) == pytest.approx(100 * metrics["mAP"], abs=0.01)
    assert 0 < metrics["attention_entropy"] <= 1
    assert float(printed["attention_entropy"]) == pytest.approx(metrics["attention_entropy"], abs=1e-3)
    assert float(printed["attention_max"]) == pytest.approx(metrics["attention_max"], abs=1e-3)


def test_wheels_are_their_own_rows_and_the_ratio_without_them():
    from pgan.evaluation.attention_roles import attention_figures, separate_wheels

    roles = [["identity", "identity", "shared", "shared", "clutter"], ["identity", "shared", "shared"]]
    labels = [["sticker", "wheel", "wheel", "carlight", None], ["wheel", "logo", "wheel"]]
    assert separate_wheels(roles, labels) == [["identity", "identity_rim", "plain_wheel", "shared", "clutter"],
                                              ["identity_rim", "shared", "plain_wheel"]]
    # Image 0: five valid parts (relative weight = 5 w); image 1: the plain wheel's weight underflowed to
    # 0 but its mask counts it, so three valid parts (relative weight = 3 w).
    w = [np.array([0.1, 0.4, 0.3, 0.1, 0.1]), np.array([0.5, 0.5, 0.0])]
    valid = [np.ones(5, bool), np.ones(3, bool)]
    fig = attention_figures(w, roles, labels, valid)
    # With wheels (the old headline): identity 5x0.1, 5x0.4, 3x0.5; shared 5x0.3, 5x0.1, 3x0.5, 3x0.0.
    assert fig["attention_ratio"] == pytest.approx(((0.5 + 2.0 + 1.5) / 3) / ((1.5 + 0.5 + 1.5 + 0.0) / 4))
    # Without: identity is the sticker alone (0.5), shared the carlight and the logo ((0.5 + 1.5) / 2).
    assert fig["attention_ratio_no_wheels"] == pytest.approx(0.5 / 1.0)
    assert fig["attention_rel_identity_rim"] == pytest.approx((2.0 + 1.5) / 2)
    assert fig["attention_rel_plain_wheel"] == pytest.approx((1.5 + 0.0) / 2)
    assert fig["attention_rel_clutter"] == pytest.approx(0.5)
    # Without labels nothing is split (no ratio without wheels), and absent rows are left out.
    plain = attention_figures(w, roles, None, valid)
    assert "attention_ratio_no_wheels" not in plain and "attention_rel_identity_rim" not in plain
    assert plain["attention_ratio"] == fig["attention_ratio"]
    no_clutter = attention_figures([np.array([0.5, 0.5])], [["identity", "shared"]], [["logo", "wheel"]])
    assert "attention_rel_clutter" not in no_clutter and math.isnan(no_clutter["attention_ratio_no_wheels"])


def test_pam_diagnostics_averages_tied_ranks():
    from bench_helpers import load_benchmark

    bench = load_benchmark("pam_diagnostics")
    ranks = bench.average_ranks(np.array([3.0, 1.0, 2.0, 2.0, 1.0]))
    np.testing.assert_array_equal(ranks, [5, 1.5, 3.5, 3.5, 1.5])
    # Equal areas (common with binary masks): the correlation no longer depends on the parts' order.
    area = np.array([4.0, 4.0, 4.0, 1.0, 9.0])
    push = np.array([0.3, -0.2, 0.1, 0.0, 0.5])
    order = np.array([2, 0, 4, 1, 3])
    assert bench.spearman(area, push) == pytest.approx(bench.spearman(area[order], push[order]))
    assert bench.spearman(area, push) == pytest.approx(np.corrcoef([3, 3, 3, 1, 5], [4, 1, 3, 2, 5])[0, 1])
    assert math.isnan(bench.spearman(np.ones(4), push[:4]))
