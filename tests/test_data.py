import numpy as np
import pytest
import torch
from PIL import Image

from pgan.config import load_config
from pgan.data.datasets import read_dataset
from pgan.data.datasets.veri776 import parse_veri_name
from pgan.data.image_dataset import ReidImageDataset
from pgan.data.records import ImageRecord
from pgan.data.sampler import IdentityBatchSampler
from pgan.data.transforms import JointTransform, hflip_pair
from pgan.engine.schedule import lr_factor
from pgan.errors import PganError


def test_parse_veri_name():
    assert parse_veri_name("0002_c012_00084680_1.jpg") == (2, 12)
    assert parse_veri_name("0776_c020_00000001_0.jpg") == (776, 20)
    for bad in ("0002_012_00084680_1.jpg", "abc.jpg", "0002_c012_00084680_1.png"):
        with pytest.raises(PganError, match="VeRi"):
            parse_veri_name(bad)


def _fake_veri(root, names_by_split):
    for folder, names in names_by_split.items():
        (root / folder).mkdir(parents=True)
        for n in names:
            Image.new("RGB", (8, 8), (len(n), 0, 0)).save(root / folder / n)


def test_veri_reader_and_errors(tmp_path):
    _fake_veri(tmp_path, {"image_train": ["0001_c001_00000001_0.jpg", "0003_c002_00000002_0.jpg"],
                          "image_query": ["0005_c001_00000003_0.jpg"],
                          "image_test": ["0005_c002_00000004_0.jpg", "0006_c001_00000005_0.jpg"]})
    ds = read_dataset("veri776", tmp_path)
    assert [(r.pid, r.camid) for r in ds.train] == [(1, 1), (3, 2)]
    assert ds.query[0].key == "image_query/0005_c001_00000003_0.jpg"
    assert len(ds.gallery) == 2
    (tmp_path / "name_test.txt").write_text("0005_c002_00000004_0.jpg\n0009_c001_00000009_0.jpg\n")
    with pytest.raises(PganError, match=r"name_test.txt:2: image '0009_c001_00000009_0.jpg' not found"):
        read_dataset("veri776", tmp_path)
    with pytest.raises(PganError, match="does not exist"):
        read_dataset("veri776", tmp_path / "nope")
    with pytest.raises(PganError, match="valid names"):
        read_dataset("veri777", tmp_path)


def test_sampler_pk_invariant_and_determinism_identity_epochs():
    pids = np.repeat(np.arange(10), [2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    s = IdentityBatchSampler(pids, p=4, k=3, seed=7, epoch="identities")
    batches = list(s)
    assert len(batches) == len(s) == 2
    seen = set()
    for b in batches:
        assert len(b) == 12
        ids = pids[b]
        uniq, counts = np.unique(ids, return_counts=True)
        assert len(uniq) == 4 and (counts == 3).all()
        assert not (set(uniq) & seen)  # no identity repeats within an epoch
        seen |= set(uniq)
    assert batches == list(IdentityBatchSampler(pids, p=4, k=3, seed=7, epoch="identities"))
    s.set_epoch(1)
    assert list(s) != batches
    # Two ranks: disjoint identities whose union is the single-process batch.
    r0, r1 = (list(IdentityBatchSampler(pids, 4, 3, seed=7, world_size=2, rank=r, epoch="identities"))
              for r in (0, 1))
    for full, a, b in zip(batches, r0, r1):
        assert a + b == full and not (set(pids[a]) & set(pids[b]))
    with pytest.raises(PganError, match="not divisible"):
        IdentityBatchSampler(pids, p=4, k=3, world_size=3)
    with pytest.raises(PganError, match="only 10"):
        IdentityBatchSampler(pids, p=16, k=3)


def test_flip_keeps_image_and_masks_aligned():
    image = torch.zeros(3, 20, 20)
    image[:, 4:8, 0:5] = 1.0  # a "part" at the left edge
    masks = torch.zeros(2, 4, 4)
    masks[0, 1, 0] = 1.0  # the cell over that part
    fi, fm = hflip_pair(image, masks)
    assert fi[:, 4:8, 15:20].min() == 1.0 and fm[0, 1, 3] == 1.0 and fm.sum() == 1
    # Random erasing never touches masks; with p=1 flips always happen.
    t = JointTransform(train=True, flip_p=1.0, erase_p=1.0)
    img_u8 = (image * 255).to(torch.uint8)
    out_img, out_masks = t(img_u8, masks)
    torch.testing.assert_close(out_masks, fm)
    assert out_img.shape == (3, 20, 20)


def test_dataset_cache_skips_corrupt_images(tmp_path, caplog):
    good = tmp_path / "a.jpg"
    Image.new("RGB", (30, 20), (255, 0, 0)).save(good)
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"not a jpeg")
    recs = [ImageRecord(good, 1, 1, "a.jpg"), ImageRecord(bad, 2, 1, "b.jpg")]
    ds = ReidImageDataset(recs, (16, 16), cache=True, progress=False)
    assert len(ds) == 1 and ds.dropped[0].key == "b.jpg" and "skipped 1 unreadable" in caplog.text
    item = ds[0]
    assert item["image"].shape == (3, 16, 16) and item["pid"] == 1
    with pytest.raises(PganError, match="cannot read image .*b.jpg"):
        ReidImageDataset(recs, (16, 16), cache=False)[1]


def test_lr_schedule():
    assert lr_factor(0.0) == pytest.approx(0.01)
    assert lr_factor(5.0) == pytest.approx(0.505)
    assert lr_factor(10.0) == 1.0 and lr_factor(29.9) == 1.0
    assert lr_factor(30.0) == 0.5 and lr_factor(55.0) == 0.25 and lr_factor(130.0) == 0.5 ** 6


def test_config_overrides_and_errors(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("model:\n  backbone: resnet50\noptim:\n  lr: 1.0e-3\n")
    child = tmp_path / "child.yaml"
    child.write_text("_base_: base.yaml\nmodel:\n  variant: grid\n")
    cfg = load_config(child, ["optim.epochs=3", "optim.weight_decay=1e-4", "loss.terms=[ce, f]",
                              "data.input_size=[128, 64]"])
    assert cfg.model.backbone == "resnet50" and cfg.model.variant == "grid" and cfg.optim.lr == 1e-3
    assert cfg.optim.weight_decay == 1e-4
    assert cfg.optim.epochs == 3 and cfg.loss.terms == ("ce", "f") and cfg.data.input_size == (128, 64)
    with pytest.raises(PganError, match="unknown key 'optim.lrr'"):
        load_config(None, ["optim.lrr=1"])
    with pytest.raises(PganError, match="optim.epochs: expected an integer"):
        load_config(None, ["optim.epochs=ten"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("modell:\n  variant: pgan\n")
    with pytest.raises(PganError, match="bad.yaml: unknown section 'modell'"):
        load_config(bad)
