"""Every dataset recipe loads, validates and starts training on a tiny fake tree in its official layout."""

from pathlib import Path

import pytest

from pgan.config import load_config
from pgan.data.datasets import read_dataset
from pgan.engine.train import train
from pgan.errors import PganError
from pgan.parts.boxfile import ImageParts, PartBox, write_part_file
from pgan.recipes import GENERATED, recipe_config, write_configs
from test_readers import _fake_vehicleid, _fake_veriwild, _fake_vric

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _fake_veri(root):
    from PIL import Image

    names = {"image_train": ["0001_c001_00000001_0.jpg", "0001_c002_00000002_0.jpg",
                             "0002_c001_00000003_0.jpg", "0002_c003_00000004_0.jpg"],
             "image_query": ["0005_c001_00000005_0.jpg"],
             "image_test": ["0005_c002_00000006_0.jpg", "0006_c001_00000007_0.jpg"]}
    for folder, files in names.items():
        (root / folder).mkdir(parents=True)
        for n in files:
            Image.new("RGB", (16, 16), (len(n) * 9 % 256, 30, 60)).save(root / folder / n)


FAKES = {"veri776": _fake_veri, "vehicleid": _fake_vehicleid, "vric": _fake_vric, "veriwild": _fake_veriwild}


@pytest.mark.parametrize("dataset", sorted(FAKES))
@pytest.mark.parametrize("variant", ["pgan", "baseline"])
def test_dataset_recipe_starts_training(tmp_path, dataset, variant):
    root = tmp_path / "data"
    FAKES[dataset](root)
    ds = read_dataset(dataset, root)
    keys = {r.key for r in ds.train + ds.query + ds.gallery + [*ds.meta.get("test", [])]}
    write_part_file(root / "parts.jsonl", [ImageParts(k, 8, 8, [PartBox(0, 0, 4, 4, 0.9, "logo")]) for k in keys])
    recipe = CONFIGS / f"{dataset}_{variant}.yaml"
    cfg = load_config(recipe, [f"data.root={root}", f"data.part_file={root / 'parts.jsonl'}",
                               "data.input_size=[32, 32]", "data.p=2", "data.k=2", "data.workers=0",
                               "model.backbone=resnet18", "model.pretrained=false", "optim.epochs=1",
                               "run.device=cpu", f"run.out_dir={tmp_path / 'run'}", "run.progress=false"])
    # What the recipe itself says (the paper's settings) survives the shrinking overrides.
    assert cfg.model.variant == variant and cfg.loss.margin == 0.3 and cfg.optim.lr == 1.75e-4
    assert cfg.data.flip_p == cfg.data.erase_p == 0.5 and cfg.model.last_stride == 1
    result = train(cfg)
    assert 0.0 <= result["metrics"]["mAP"] <= 1.0
    assert (tmp_path / "run" / "last.pt").is_file()


def test_gpu_recipe_on_cpu_machine_names_the_override(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = load_config(CONFIGS / "veri776_pgan.yaml", ["run.device=cuda"])
    with pytest.raises(PganError, match="run.device=cpu"):
        train(cfg)


def test_the_recipe_yamls_are_generated_from_the_builtin_recipes(tmp_path):
    # The dicts in pgan.recipes are the truth; the YAML writer must render them faithfully, and the files
    # in configs/ must be what it writes.
    for path in write_configs(tmp_path):
        assert load_config(path).to_dict() == recipe_config(path.stem).to_dict()
        assert path.read_text().startswith("# GENERATED")
        assert path.read_text() == (CONFIGS / path.name).read_text(), f"configs/{path.name}: run make configs"
    assert {p.stem for p in CONFIGS.glob("synth_*.yaml")} | {p.stem for p in CONFIGS.glob("custom_*.yaml")} \
        == set(GENERATED)


def test_the_own_photo_recipes_are_the_measured_ones():
    base = load_config(CONFIGS / "custom_baseline.yaml")
    pgan = load_config(CONFIGS / "custom_pgan.yaml")
    for cfg in (base, pgan):  # the real-dev 24-epoch schedule (docs/real_dev_24ep.md)
        assert cfg.data.dataset == "custom" and cfg.model.backbone == "mobilenet_v2"
        assert cfg.data.input_size == (160, 160) and (cfg.data.p, cfg.data.k) == (32, 2)
        assert cfg.optim.epochs == 24 and cfg.optim.milestones == (16, 21) and cfg.optim.warmup_epochs == 2.0
        assert cfg.model.baseline_reduce is False
    assert base.model.variant == "baseline"
    assert pgan.model.variant == "pgan" and pgan.model.global_branch and pgan.data.part_source == "proposals"


def _photo_csv(tmp_path, vehicles=4):
    from PIL import Image

    lines = ["path,vehicle_id,camera_id,split"]
    for v in range(vehicles):
        for cam in (1, 2):
            path = tmp_path / f"v{v}_c{cam}.jpg"
            Image.new("RGB", (48, 36), (40 * v, 70 * cam, 90)).save(path)
            split = "train" if v < vehicles // 2 else ("query" if cam == 1 else "gallery")
            lines.append(f"{path},{v},{cam},{split}")
    csv = tmp_path / "my.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


SHRINK = ["data.input_size=[32, 32]", "data.p=2", "data.workers=0", "optim.epochs=1", "run.device=cpu",
          "run.progress=false"]


@pytest.mark.parametrize("name", ["custom_pgan", "custom_baseline"])
def test_own_photo_recipe_trains_on_a_csv_without_part_file(tmp_path, name):
    csv = _photo_csv(tmp_path)
    cfg = load_config(CONFIGS / f"{name}.yaml", [f"data.root={csv}", f"run.out_dir={tmp_path / 'run'}", *SHRINK])
    result = train(cfg)
    assert 0.0 <= result["metrics"]["mAP"] <= 1.0
    if name == "custom_pgan":  # the proposals were computed from the photos into the run folder
        assert (tmp_path / "run" / "parts" / "parts_proposals.jsonl").is_file()


def test_a_missing_part_file_names_the_proposals_switch(tmp_path):
    csv = _photo_csv(tmp_path)
    cfg = load_config(CONFIGS / "custom_pgan.yaml", [f"data.root={csv}", "data.part_source=file",
                                                     f"run.out_dir={tmp_path / 'run'}", *SHRINK])
    with pytest.raises(PganError, match=r"does not exist.*data.part_source=proposals"):
        train(cfg)
    assert not (tmp_path / "run" / "last.pt").exists()  # refused before the first step


def test_the_paper_recipe_is_the_config_defaults():
    cfg = load_config(CONFIGS / "veri776_pgan.yaml")
    default = load_config()
    assert cfg.optim == default.optim and cfg.loss == default.loss
    assert cfg.model.backbone == "resnet50" and cfg.data.input_size == (224, 224)
    assert cfg.optim.milestones == (20, 40, 60, 80, 100, 120) and cfg.optim.epochs == 130
    assert cfg.data.workers == 8 and default.data.workers == 2
