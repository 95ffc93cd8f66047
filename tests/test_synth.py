"""The synthetic benchmark: layout, splits, ground truth, determinism, idempotence, config errors."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import pytest

from pgan.data.datasets.veri776 import VERI_NAME, read_veri776
from pgan.errors import PganError
from pgan.parts import PART_CLASSES
from pgan.parts.boxfile import read_part_file
from pgan.synth import SynthConfig, generate_synth, synth_config_from_dict

TINY = dict(num_train_ids=4, num_test_ids=3, images_per_id=(4, 5), num_cameras=4, num_families=2,
            image_size=48, seed=3, workers=1)
IDENTITY_PARTS = {"anusigns", "hungs", "tissuebox", "carrier", "newersign", "entrylicense", "layon",
                  "safebelt", "wheel"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "ds"
    summary = generate_synth(root, SynthConfig(**TINY), progress=False)
    assert not summary["reused"]
    assert summary["num_images"] == summary["train"] + summary["query"] + summary["gallery"]
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_is_veri776(tiny: Path) -> None:
    ds = read_veri776(tiny)
    assert {r.pid for r in ds.train} == {1, 2, 3, 4}
    assert {r.pid for r in ds.query} == {r.pid for r in ds.gallery} == {5, 6, 7}
    assert {r.camid for r in ds.train + ds.query + ds.gallery} <= {1, 2, 3, 4}
    for folder, lst in (("image_train", "name_train.txt"), ("image_query", "name_query.txt"),
                        ("image_test", "name_test.txt")):
        names = (tiny / lst).read_text().split()
        assert names == sorted(names) == sorted(p.name for p in (tiny / folder).glob("*.jpg"))
        assert all(VERI_NAME.match(n) and n.endswith("_0.jpg") for n in names)
    frames = defaultdict(list)
    for r in ds.train + ds.query + ds.gallery:
        frames[r.pid].append(int(r.path.name.split("_")[2]))
    assert all(len(set(f)) == len(f) for f in frames.values())
    meta = json.loads((tiny / "synth_meta.json").read_text())
    assert set(meta["identity_family"]) == {str(v) for v in range(1, 8)}
    assert "workers" not in meta["config"] and meta["counts"]["image_query"] == 3 * 2


def test_every_query_has_a_cross_camera_match(tiny: Path) -> None:
    ds = read_veri776(tiny)
    for pid in {r.pid for r in ds.query}:
        qcams = [r.camid for r in ds.query if r.pid == pid]
        assert len(qcams) == 2 and len(set(qcams)) == 2
        gcams = {r.camid for r in ds.gallery if r.pid == pid}
        assert all(gcams - {c} for c in qcams)


def test_part_file_covers_every_image(tiny: Path) -> None:
    ds = read_veri776(tiny)
    parts = read_part_file(tiny / "parts_gt.jsonl")
    assert set(parts) == {r.key for r in ds.train + ds.query + ds.gallery}
    for item in parts.values():
        assert (item.width, item.height) == (48, 48) and len(item.boxes) >= 3
        for b in item.boxes:
            assert 0 <= b.x1 <= b.x2 <= 48 and 0 <= b.y1 <= b.y2 <= 48
            assert b.label in PART_CLASSES and 0.25 <= b.score <= 1.0


def test_voc_xml_matches_part_file(tiny: Path) -> None:
    parts = read_part_file(tiny / "parts_gt.jsonl")
    for key, item in parts.items():
        folder, name = key.split("/")
        root = ET.parse(tiny / "annotations_voc" / folder / (name[:-4] + ".xml")).getroot()
        assert root.findtext("filename") == name and root.findtext("size/width") == "48"
        corners = ("xmin", "ymin", "xmax", "ymax")
        objs = [(o.findtext("name"), *(int(o.findtext(f"bndbox/{t}")) for t in corners))
                for o in root.iter("object")]
        assert objs == [(b.label, round(b.x1), round(b.y1), round(b.x2), round(b.y2)) for b in item.boxes]


def test_same_output_for_any_worker_count_and_different_seed(tiny: Path, tmp_path: Path) -> None:
    generate_synth(tmp_path / "w2", SynthConfig(**{**TINY, "workers": 2}), progress=False)
    assert _files(tmp_path / "w2") == _files(tiny)
    generate_synth(tmp_path / "s4", SynthConfig(**{**TINY, "seed": 4}), progress=False)
    ours = set(_files(tiny).values())
    theirs = [b for k, b in _files(tmp_path / "s4").items() if k.endswith(".jpg")]
    assert not ours.intersection(theirs)


def test_second_call_reuses_and_a_new_config_replaces(tiny: Path, tmp_path: Path) -> None:
    stamp = {p: p.stat().st_mtime_ns for p in tiny.rglob("*")}
    assert generate_synth(tiny, SynthConfig(**{**TINY, "workers": 2}), progress=False)["reused"]
    assert {p: p.stat().st_mtime_ns for p in tiny.rglob("*")} == stamp
    root = tmp_path / "ds"
    generate_synth(root, SynthConfig(**TINY), progress=False)
    clean = generate_synth(root, SynthConfig(**{**TINY, "difficulty": 0.0}), progress=False)
    assert not clean["reused"]
    assert json.loads((root / "synth_meta.json").read_text())["config"]["difficulty"] == 0
    assert not list(tmp_path.glob(".ds.*"))  # no temporary or old folders left behind
    # Without nuisance nothing is clipped or occluded and every image shows >= 2 identity parts.
    for item in read_part_file(root / "parts_gt.jsonl").values():
        assert all(b.score == 1.0 for b in item.boxes)
        assert len({b.label for b in item.boxes} & IDENTITY_PARTS) >= 2


def test_an_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pgan.synth.generate as synth

    def boom(task: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "_render_identity", boom)
    with pytest.raises(KeyboardInterrupt):
        generate_synth(tmp_path / "ds", SynthConfig(**TINY), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PganError, match="not a synthetic dataset"):
        generate_synth(tmp_path, SynthConfig(**TINY), progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_config_from_dict() -> None:
    cfg = synth_config_from_dict({"num_train_ids": 3, "images_per_id": [4, 6], "difficulty": 1})
    assert cfg.images_per_id == (4, 6) and cfg.num_train_ids == 3
    cases = [({"colour": 1}, "unknown synth config key 'colour'"), ({"difficulty": 1.5}, "difficulty"),
             ({"image_size": 16}, "image_size"), ({"images_per_id": [2, 3]}, "images_per_id"),
             ({"num_cameras": 2, "queries_per_id": 2}, "num_cameras"), ({"workers": "2"}, "workers")]
    for bad, match in cases:
        with pytest.raises(PganError, match=match):
            synth_config_from_dict(bad)
