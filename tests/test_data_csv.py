"""``pgan data csv``: folder layouts and --pattern -> the custom CSV, splits by vehicle, one-line errors;
the custom reader and the gallery listing read ``camera``/``vehicle`` as ``camera_id``/``vehicle_id``."""

import csv
import re
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from pgan.data.datasets import read_dataset
from pgan.data.folder_csv import CSV_COLUMNS, assign_splits, name_ids, scan_folder, summarize
from pgan.errors import PganError
from pgan.index.gallery import csv_splits, list_gallery

REAL_DEV = Path(__file__).resolve().parents[2] / "shared" / "real-dev" / "images"
REAL_DEV_PATTERN = "(?P<vehicle>[a-z]+_[0-9]+)_cam(?P<camera>[0-9]+)"


def _img(path: Path, shade: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), (shade % 256, 40, 80)).save(path)
    return path


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _flat(root: Path, vehicles: int, cameras: int = 2, per_camera: int = 1) -> Path:
    """``root/car_<v>_cam<c>[_<i>].jpg`` for every vehicle, camera and image."""
    for v in range(vehicles):
        for c in range(1, cameras + 1):
            for i in range(per_camera):
                _img(root / f"car_{v:04d}_cam{c}_{i}.jpg", v * 7 + c)
    return root


def _by_split(rows) -> dict[str, list]:
    out: dict[str, list] = {"train": [], "query": [], "gallery": []}
    for r in rows:
        out[r.split].append(r)
    return out


def test_layout_vehicle_camera_prefix_writes_rows_the_reader_reads(tmp_path, run_cli, capsys):
    root = tmp_path / "photos"
    for v in ("0007", "0012", "0031"):
        for name in ("c1_a.jpg", "c1_b.jpg", "c2_a.png"):
            _img(root / v / name)
    (root / "README").write_text("about these photos")
    (root / "0007" / "notes.txt").write_text("x")
    out = root / "dataset.csv"
    assert run_cli("data", "csv", "--images", root, "--out", out) == 0
    printed = capsys.readouterr().out
    assert "| train | 6 | 2 | 2 |" in printed and "| query | 2 | 1 | 1 |" in printed
    assert "| gallery | 1 | 1 | 1 |" in printed and "2 non-image files skipped" in printed
    assert f"next: pgan train --config configs/custom_baseline.yaml data.root={out}" in printed
    rows = _rows(out)
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 9
    # Numeric names are the ids; paths are relative to the CSV's folder (it lies in the photos folder).
    # Camera names that are not numbers are numbered from 0 in sorted order (c1 -> 0, c2 -> 1).
    assert {(r["path"], r["vehicle_id"], r["camera_id"], r["vehicle_name"], r["camera_name"]) for r in rows} == {
        (f"{v}/{n}", str(int(v)), str(int(n[1]) - 1), v, n[:2]) for v in ("0007", "0012", "0031")
        for n in ("c1_a.jpg", "c1_b.jpg", "c2_a.png")}
    held = {r["vehicle_id"] for r in rows if r["split"] != "train"}
    assert len(held) == 1  # round(0.2 * 3) = 1 vehicle held out
    assert sorted(r["path"].split("/")[1] for r in rows if r["split"] == "query") == ["c1_a.jpg", "c1_b.jpg"]
    assert [r["path"].split("/")[1] for r in rows if r["split"] == "gallery"] == ["c2_a.png"]
    ds = read_dataset("custom", out)  # the extra name columns are ignored by the reader
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (6, 2, 1)
    assert {r.camid for r in ds.query} == {0} and {r.camid for r in ds.gallery} == {1}
    assert ds.query[0].key == ds.query[0].path.relative_to(root).as_posix()


def test_layout_vehicle_camera_folders_with_string_names(tmp_path):
    root = tmp_path / "photos"
    for v in ("van", "bus", "taxi"):
        for cam in ("north", "east"):
            _img(root / v / cam / "001.jpg")
            _img(root / v / cam / "002.jpg")
    scan = scan_folder(root)
    assert scan.layout == "vehicle/camera/file" and len(scan.images) == 12 and scan.skipped == []
    first = scan.images[0]
    assert (first.rel, first.vehicle, first.camera) == ("bus/east/001.jpg", "bus", "east")
    rows = assign_splits(scan.images, seed=0)
    # Names that are not numbers: the sorted names numbered from 0.
    assert {(r.image.vehicle, r.vehicle_id) for r in rows} == {("bus", 0), ("taxi", 1), ("van", 2)}
    assert {(r.image.camera, r.camera_id) for r in rows} == {("east", 0), ("north", 1)}
    split = _by_split(rows)
    assert {r.image.camera for r in split["query"]} == {"east"}  # the lower camera id
    assert {r.image.camera for r in split["gallery"]} == {"north"}
    assert name_ids(["2", "10"]) == {"2": 2, "10": 10} and name_ids(["1", "01"]) == {"01": 0, "1": 1}


def test_pattern_on_flat_files_and_absolute_paths_outside_the_csv_folder(tmp_path, run_cli, capsys):
    root = _flat(tmp_path / "flat", vehicles=10)
    out = tmp_path / "elsewhere" / "my.csv"
    assert run_cli("data", "csv", "--images", root, "--out", out, "--pattern", REAL_DEV_PATTERN) == 0
    assert "layout: --pattern" in capsys.readouterr().out
    rows = _rows(out)
    assert len(rows) == 20 and all(Path(r["path"]).is_absolute() for r in rows)
    assert rows[0]["path"] == str((root / "car_0000_cam1_0.jpg").resolve())
    assert (rows[0]["vehicle_name"], rows[0]["vehicle_id"], rows[0]["camera_id"]) == ("car_0000", "0", "1")
    assert Counter(r["split"] for r in rows) == {"train": 16, "query": 2, "gallery": 2}
    ds = read_dataset("custom", out)
    assert {r.camid for r in ds.query} == {1} and {r.camid for r in ds.gallery} == {2}


def test_two_camera_split_rules_and_seeds(tmp_path):
    images = scan_folder(_flat(tmp_path / "flat", vehicles=20, per_camera=2), REAL_DEV_PATTERN).images
    rows = assign_splits(images, seed=0, test_fraction=0.2)
    split = _by_split(rows)
    assert len(rows) == 80 and Counter(r.split for r in rows) == {"train": 64, "query": 8, "gallery": 8}
    assert {r.camera_id for r in split["query"]} == {1} and {r.camera_id for r in split["gallery"]} == {2}
    test_vehicles = {r.vehicle_id for r in split["query"]}
    assert test_vehicles == {r.vehicle_id for r in split["gallery"]} and len(test_vehicles) == 4
    assert not test_vehicles & {r.vehicle_id for r in split["train"]}
    assert assign_splits(images, seed=0) == rows
    others = [{r.vehicle_id for r in assign_splits(images, seed=s) if r.split == "query"} for s in (1, 2, 3)]
    assert any(o != test_vehicles for o in others)
    half = assign_splits(images, seed=0, test_fraction=0.5)
    assert len({r.vehicle_id for r in half if r.split == "query"}) == 10
    s = summarize(rows)
    assert (s.images, s.vehicles, s.cameras) == ({"train": 64, "query": 8, "gallery": 8},
                                                 {"train": 16, "query": 4, "gallery": 4},
                                                 {"train": 2, "query": 1, "gallery": 1})


def test_more_cameras_veri_rule_and_single_camera_vehicles_train(tmp_path):
    root = _flat(tmp_path / "flat", vehicles=10, cameras=3, per_camera=3)
    for i in range(3):  # three vehicles seen by camera 2 only
        _img(root / f"van_{i:04d}_cam2_0.jpg")
        _img(root / f"van_{i:04d}_cam2_1.jpg")
    images = scan_folder(root, REAL_DEV_PATTERN).images
    rows = assign_splits(images, seed=5, test_fraction=0.3)
    split = _by_split(rows)
    held = {r.vehicle_id for r in split["query"]}
    assert len(held) == 4  # round(0.3 * 13)
    assert not {r.image.vehicle for r in rows if r.split != "train"} & {"van_0000", "van_0001", "van_0002"}
    # One query per held-out vehicle and camera; every held-out image is in the gallery (VeRi-776).
    pairs = Counter((r.vehicle_id, r.camera_id) for r in split["query"])
    assert pairs == {(v, c): 1 for v in held for c in (1, 2, 3)}
    assert len(split["gallery"]) == 4 * 9
    assert {r.image for r in split["query"]} <= {r.image for r in split["gallery"]}
    assert not held & {r.vehicle_id for r in split["train"]}
    assert summarize(rows).single_camera_vehicles == 3
    assert assign_splits(images, seed=5, test_fraction=0.3) == rows
    assert [r.image for r in assign_splits(images, seed=6, test_fraction=0.3) if r.split == "query"] != [
        r.image for r in split["query"]]


def _one_line_error(run_cli, capsys, *argv) -> str:
    assert run_cli("data", "csv", *argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("pgan: error: ")
    return err


def test_bad_layouts_are_one_line_errors(tmp_path, run_cli, capsys):
    out = tmp_path / "out.csv"
    good = tmp_path / "good"
    for v in ("0001", "0002"):
        _img(good / v / "c1_x.jpg")
        _img(good / v / "c2_x.jpg")
    _img(good / "0002" / "nocamera.jpg")
    err = _one_line_error(run_cli, capsys, "--images", good, "--out", out)
    assert re.search(r"good/0002/nocamera\.jpg: does not match the layout DIR/<vehicle>/<camera>_\*\.jpg", err)
    flat = _flat(tmp_path / "flat", vehicles=2)
    _img(flat / "lorry_01_camA.jpg")
    err = _one_line_error(run_cli, capsys, "--images", flat, "--out", out, "--pattern", REAL_DEV_PATTERN)
    assert "lorry_01_camA.jpg: does not match --pattern" in err
    err = _one_line_error(run_cli, capsys, "--images", flat, "--out", out)
    assert "car_0000_cam1_0.jpg: does not match the layouts" in err and "--pattern" in err
    err = _one_line_error(run_cli, capsys, "--images", flat, "--out", out, "--pattern", "(?P<vehicle>car_[0-9]+)")
    assert "lacks the named group(s) camera" in err
    err = _one_line_error(run_cli, capsys, "--images", flat, "--out", out, "--pattern", "(?P<vehicle>[")
    assert "not a valid regular expression" in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.txt").write_text("nothing yet")
    assert "holds no images (1 other files skipped" in _one_line_error(
        run_cli, capsys, "--images", tmp_path / "empty", "--out", out)
    assert "does not exist" in _one_line_error(run_cli, capsys, "--images", tmp_path / "nope", "--out", out)
    one = tmp_path / "one"
    _img(one / "0001" / "c1_a.jpg")
    _img(one / "0001" / "c2_a.jpg")
    assert "the one vehicle '0001'" in _one_line_error(run_cli, capsys, "--images", one, "--out", out)
    cam = tmp_path / "cam"
    _img(cam / "0001" / "c1_a.jpg")
    _img(cam / "0002" / "c1_a.jpg")
    assert "the one camera 'c1'" in _one_line_error(run_cli, capsys, "--images", cam, "--out", out)
    ok = _flat(tmp_path / "ok", vehicles=2)
    assert "--test-fraction" in _one_line_error(run_cli, capsys, "--images", ok, "--out", out,
                                                "--pattern", REAL_DEV_PATTERN, "--test-fraction", "1")
    assert not out.exists()


def test_both_column_names_for_the_ids(tmp_path):
    for name in ("a.jpg", "q.jpg", "g.jpg"):
        _img(tmp_path / "imgs" / name)
    text = "path,vehicle,camera,split\nimgs/a.jpg,1,4,train\nimgs/q.jpg,2,5,query\nimgs/g.jpg,2,6,gallery\n"
    (tmp_path / "aliases.csv").write_text(text)
    ds = read_dataset("custom", tmp_path / "aliases.csv")
    assert [(r.pid, r.camid) for r in ds.train + ds.query + ds.gallery] == [(1, 4), (2, 5), (2, 6)]
    entries = list_gallery(tmp_path / "aliases.csv", split="gallery")
    assert [(e.path.name, e.vehicle_id, e.camera) for e in entries] == [("g.jpg", 2, 6)]
    # Both names present: the ``_id`` column is read by both readers.
    both = "path,camera_id,camera,vehicle_id,vehicle\nimgs/a.jpg,3,9,1,8\n"
    (tmp_path / "both.csv").write_text(both)
    assert [(e.vehicle_id, e.camera) for e in list_gallery(tmp_path / "both.csv")] == [(1, 3)]


def test_gallery_split_selection_and_refusals(tmp_path):
    root = _flat(tmp_path / "flat", vehicles=10)
    out = tmp_path / "my.csv"
    from pgan.data.folder_csv import write_custom_csv

    write_custom_csv(assign_splits(scan_folder(root, REAL_DEV_PATTERN).images), out)
    assert csv_splits(out) == ["gallery", "query", "train"] and csv_splits(root) == []
    gallery = list_gallery(out, split="gallery")
    assert len(gallery) == 2 and {e.camera for e in gallery} == {2}
    assert {e.path.name for e in list_gallery(out, split="GALLERY")} == {e.path.name for e in gallery}
    assert len(list_gallery(out, split="train")) == 16
    with pytest.raises(PganError, match=r"has a 'split' column \(gallery, query, train\): choose the rows to "
                                        r"index with --split NAME"):
        list_gallery(out)
    with pytest.raises(PganError, match=r"has no rows of split 'test' \(splits: gallery, query, train\)"):
        list_gallery(out, split="test")
    with pytest.raises(PganError, match=r"--split 'gallery' applies to a CSV with a 'split' column; .*flat is"):
        list_gallery(root, split="gallery")
    plain = tmp_path / "plain.csv"
    plain.write_text(f"path\n{root / 'car_0000_cam1_0.jpg'}\n")
    with pytest.raises(PganError, match="has no 'split' column"):
        list_gallery(plain, split="gallery")


@pytest.mark.slow
def test_real_dev_pattern(tmp_path, run_cli, capsys):
    if not REAL_DEV.is_dir():
        pytest.skip(f"{REAL_DEV} is not here")
    out = tmp_path / "real-dev.csv"
    assert run_cli("data", "csv", "--images", REAL_DEV, "--pattern", REAL_DEV_PATTERN, "--out", out) == 0
    printed = capsys.readouterr().out
    rows = _rows(out)
    assert len(rows) == 1014 and len({r["vehicle_name"] for r in rows}) == 507
    assert {r["camera_name"] for r in rows if r["split"] == "query"} == {"1"}
    assert {r["camera_name"] for r in rows if r["split"] == "gallery"} == {"2"}
    query = {r["vehicle_id"] for r in rows if r["split"] == "query"}
    assert query == {r["vehicle_id"] for r in rows if r["split"] == "gallery"} and len(query) == 101
    assert not query & {r["vehicle_id"] for r in rows if r["split"] == "train"}
    assert "| train | 812 | 406 | 2 |" in printed and "| query | 101 | 101 | 1 |" in printed
    ds = read_dataset("custom", out)
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (812, 101, 101)
