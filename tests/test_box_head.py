"""The part box head (pgan.models.box_head): decoding, mask rendering, targets, loss and its wiring."""

import numpy as np
import pytest
import torch

from pgan.models.box_head import (
    ANY_SHRINK,
    BoxHead,
    box_head_loss,
    box_targets,
    decode_boxes,
    masks_to_boxes,
    render_masks,
)
from pgan.parts.boxfile import PartBox
from pgan.parts.masks import boxes_to_masks


def _pred(h: int, w: int, peaks: dict) -> torch.Tensor:
    """A head output with heat logit -10 everywhere and ``peaks[(r, c)] = (logit, w, h, ox, oy)``."""
    pred = torch.zeros(1, 5, h, w)
    pred[0, 0] = -10.0
    for (r, c), values in peaks.items():
        pred[0, :, r, c] = torch.tensor(values)
    return pred


def test_decoding_a_hand_built_heatmap_gives_its_boxes_best_first_and_drops_weak_peaks():
    logit = float(np.log(0.9 / 0.1))  # sigmoid 0.9
    pred = _pred(4, 4, {(1, 1): (logit, 2.0, 1.0, 0.5, 0.5), (3, 2): (0.0, 1.0, 2.0, 0.0, 0.0),
                        (3, 3): (-2.0, 1.0, 1.0, 0.5, 0.5)})  # sigmoid 0.5; 0.12 < threshold
    boxes, scores = decode_boxes(pred, 3, threshold=0.3)
    assert scores[0].tolist() == pytest.approx([0.9, 0.5, 0.0])
    # centre (1.5, 1.5) cells, 2 x 1 cells -> x 0.5..2.5, y 1..2 over 4 cells
    assert boxes[0, 0].tolist() == pytest.approx([0.125, 0.25, 0.625, 0.5])
    # centre (2, 3) cells, 1 x 2 cells -> x 1.5..2.5, y 2..4
    assert boxes[0, 1].tolist() == pytest.approx([0.375, 0.5, 0.625, 1.0])
    assert boxes[0, 2].tolist() == [0.0, 0.0, 0.0, 0.0]
    masks = render_masks(boxes, 4, 4, "any")
    assert masks[0, 0].tolist() == [[0, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert masks[0, 1].tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0]]
    assert masks[0, 2].sum() == 0  # absent part: empty mask


def test_only_the_peak_of_a_neighbourhood_counts_and_slots_past_the_grid_are_empty():
    pred = _pred(2, 2, {(0, 0): (3.0, 1.0, 1.0, 0.5, 0.5), (0, 1): (2.0, 1.0, 1.0, 0.5, 0.5)})
    boxes, scores = decode_boxes(pred, 6, threshold=0.1)
    assert boxes.shape == (1, 6, 4) and scores.shape == (1, 6)
    assert (scores[0] > 0).tolist() == [True, False, False, False, False, False]  # (0, 1) is not a 3x3 peak


@pytest.mark.parametrize("mode", ["any", "fraction"])
def test_torch_rendering_equals_numpy_boxes_to_masks(mode):
    rng = np.random.default_rng(0)
    img_w, img_h, fh, fw = 128, 64, 5, 7
    boxes = []
    for _ in range(40):
        x1, x2 = sorted(rng.uniform(-10, img_w + 10, 2))
        y1, y2 = sorted(rng.uniform(-10, img_h + 10, 2))
        boxes.append(PartBox(float(x1), float(y1), float(x2), float(y2), 1.0, "p"))
    boxes += [PartBox(0, 0, 0, 10, 1.0, "flat"), PartBox(16, 8, 32, 16, 1.0, "on-edges"),
              PartBox(130, 10, 140, 20, 1.0, "outside")]
    expected = boxes_to_masks(boxes, img_w, img_h, fh, fw, len(boxes), mode=mode)
    norm = torch.tensor([[b.x1 / img_w, b.y1 / img_h, b.x2 / img_w, b.y2 / img_h] for b in boxes],
                        dtype=torch.float64)[None]
    got = render_masks(norm, fh, fw, mode)[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_boxes_recovered_from_any_masks_render_back_to_the_same_masks_with_a_quarter_cell_to_spare():
    masks = torch.zeros(1, 3, 5, 5)
    masks[0, 0, 1:3, 2:5] = 1
    masks[0, 1, 4, 0] = 1
    boxes, valid = masks_to_boxes(masks, "any")
    assert valid[0].tolist() == [True, True, False]
    assert boxes[0, 0].tolist() == pytest.approx([(2 + ANY_SHRINK) / 5, (1 + ANY_SHRINK) / 5,
                                                  (5 - ANY_SHRINK) / 5, (3 - ANY_SHRINK) / 5])
    torch.testing.assert_close(render_masks(boxes, 5, 5, "any"), masks)
    # every edge may move by just under a quarter cell without a cell flipping
    nudged = boxes + torch.tensor([0.24, -0.24, -0.24, 0.24]) / 5 * valid[..., None]
    torch.testing.assert_close(render_masks(nudged, 5, 5, "any"), masks)


def test_fraction_masks_give_back_their_boxes():
    box = torch.tensor([[[0.1, 0.15, 0.75, 0.9]]], dtype=torch.float64)  # more than a cell each way on 4 x 4
    masks = render_masks(box, 4, 4, "fraction")
    got, valid = masks_to_boxes(masks, "fraction")
    assert bool(valid.all())
    torch.testing.assert_close(got, box)


def test_targets_put_a_unit_peak_and_the_regression_at_each_centre_cell():
    masks = torch.zeros(2, 2, 4, 4)
    masks[0, 0, 0:2, 0:2] = 1  # any-box (0.25..1.75) cells -> centre (1, 1), size 1.5
    masks[1, 1, 2:4, 1:4] = 1  # x 1.25..3.75, y 2.25..3.75 -> centre (2.5, 3.0) -> cell (row 3, col 2)
    t = box_targets(masks, 4, 4, "any")
    assert t.centres[0].nonzero().tolist() == [[1, 1]] and t.centres[1].nonzero().tolist() == [[3, 2]]
    assert t.heat[0, 1, 1] == 1.0 and t.heat[1, 3, 2] == 1.0
    assert float(t.heat[0].max()) == 1.0 and float(t.heat[0, 3, 3]) < 0.01
    assert t.reg[0, :, 1, 1].tolist() == pytest.approx([1.5, 1.5, 0.0, 0.0])
    assert t.reg[1, :, 3, 2].tolist() == pytest.approx([2.5, 1.5, 0.5, 0.0])
    assert t.reg[0].abs().sum() == pytest.approx(3.0)  # nothing outside the centre


def test_the_loss_is_smaller_for_the_prediction_that_matches_the_targets():
    masks = torch.zeros(1, 2, 4, 4)
    masks[0, 0, 0:2, 0:2] = 1
    t = box_targets(masks, 4, 4, "any")
    good = torch.cat([torch.logit(t.heat.clamp(1e-3, 1 - 1e-3))[:, None], t.reg], dim=1)
    bad = torch.zeros(1, 5, 4, 4)
    assert float(box_head_loss(good, masks)) < 0.05 < float(box_head_loss(bad, masks))
    dec, scores = decode_boxes(good, 2)
    torch.testing.assert_close(render_masks(dec, 4, 4), masks)  # and it decodes back to the masks


def test_a_box_head_model_trains_the_same_reid_weights_and_uses_its_own_masks_without_masks_given():
    from pgan import create_model

    def make(**kwargs):
        torch.manual_seed(0)
        trunk = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=8, padding=1), torch.nn.ReLU())
        trunk.out_channels = 8
        return create_model("pgan", backbone=trunk, num_classes=4, reduced_dim=8, num_parts=3, **kwargs)

    plain, with_head = make(), make(box_head=True)
    same = {k: v for k, v in with_head.state_dict().items() if not k.startswith("part_box_head.")}
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in same.items())
    x, masks = torch.randn(2, 3, 32, 32), torch.zeros(2, 3, 4, 4)
    masks[:, 0, :2, :2] = 1
    out = with_head.train()(x, masks)
    assert out.box_pred.shape == (2, 5, 4, 4) and out.box_masks is masks
    out.box_pred.sum().backward()
    assert with_head.backbone[0].weight.grad is None  # the head sees a detached feature map
    with_head.eval()
    with torch.no_grad():
        own = with_head(x)
        assert own.part_boxes.shape == (2, 3, 5) and own.part_valid is not None
        given = with_head(x, masks)
        assert given.part_boxes is None
        with_head.parts_from_head = True
        torch.testing.assert_close(with_head(x, masks).embedding, own.embedding)


def test_the_box_head_needs_a_variant_that_takes_masks():
    from pgan import create_model
    from pgan.errors import PganError

    with pytest.raises(PganError, match="box_head"):
        create_model("grid", backbone="resnet18", num_classes=4, box_head=True)
    assert isinstance(create_model("nopam", backbone="resnet18", num_classes=4, box_head=True).part_box_head,
                      BoxHead)
