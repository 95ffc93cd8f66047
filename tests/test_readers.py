"""Readers for VehicleID, VRIC, VERI-Wild and custom CSV on tiny fake trees in the official layouts."""

import pytest
from PIL import Image

from pgan.data.datasets import DATASETS, read_dataset
from pgan.errors import PganError
from pgan.evaluation import vehicleid_trials


def _jpg(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (len(path.name) * 7 % 256, 0, 0)).save(path)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_registry_names():
    assert {"vehicleid", "vric", "veriwild", "custom"} <= set(DATASETS)


# --- VehicleID ------------------------------------------------------------------------------------

def _fake_vehicleid(root):
    train = [("0000001", 10), ("0000002", 10), ("0000003", 11)]
    test = [("0000010", 20), ("0000011", 20), ("0000012", 20), ("0000013", 21), ("0000014", 21),
            ("0000015", 22)]
    for name, _ in train + test:
        _jpg(root / "image" / f"{name}.jpg")
    split = root / "train_test_split"
    _write(split / "train_list.txt", "".join(f"{n} {v}\n" for n, v in train))
    for size in (800, 1600, 2400):
        _write(split / f"test_list_{size}.txt", "".join(f"{n} {v}\n" for n, v in test) + "\n")
    return test


def test_vehicleid_reader(tmp_path):
    test = _fake_vehicleid(tmp_path)
    ds = read_dataset("vehicleid", tmp_path, test_size=800)
    assert [(r.pid, r.camid) for r in ds.train] == [(10, 0), (10, 0), (11, 0)]
    assert ds.train[0].key == "image/0000001.jpg" and ds.train[0].path.is_file()
    assert [r.pid for r in ds.meta["test"]] == [v for _, v in test]
    # trial 0: one gallery image per identity, everything else a query
    assert sorted(r.pid for r in ds.gallery) == [20, 21, 22]
    assert len(ds.query) == 3 and {r.camid for r in ds.query + ds.gallery} == {0}
    assert {r.key for r in ds.query + ds.gallery} == {r.key for r in ds.meta["test"]}
    again = read_dataset("vehicleid", tmp_path, test_size=800)
    assert [r.key for r in again.gallery] == [r.key for r in ds.gallery]
    # the protocol re-splits query + gallery; its trial 0 is the reader's split
    both = ds.query + ds.gallery
    _, g = vehicleid_trials(both, num_trials=1, seed=0)[0]
    assert {both[i].key for i in g} == {r.key for r in ds.gallery}


def test_vehicleid_errors(tmp_path):
    _fake_vehicleid(tmp_path)
    lst = tmp_path / "train_test_split" / "test_list_2400.txt"
    lst.write_text("0000010 20\n0000099 20\n")
    with pytest.raises(PganError, match=r"test_list_2400.txt:2: image 0000099.jpg not found"):
        read_dataset("vehicleid", tmp_path)
    lst.write_text("0000010 20\n0000011\n")
    with pytest.raises(PganError, match=r"test_list_2400.txt:2: expected 2 fields, got 1"):
        read_dataset("vehicleid", tmp_path)
    lst.write_text("0000010 car\n")
    with pytest.raises(PganError, match=r"test_list_2400.txt:1: vehicle id 'car' is not an integer"):
        read_dataset("vehicleid", tmp_path)
    with pytest.raises(PganError, match="test_size must be one of"):
        read_dataset("vehicleid", tmp_path, test_size=500)
    (tmp_path / "image").rename(tmp_path / "images_moved")
    with pytest.raises(PganError, match=r"missing folder .*image \(expected the VehicleID layout"):
        read_dataset("vehicleid", tmp_path)


# --- VRIC -----------------------------------------------------------------------------------------

def _fake_vric(root):
    rows = {"train": [("a_1.jpg", 1, 1), ("a_2.jpg", 1, 2), ("b_1.jpg", 2, 3)],
            "probe": [("p_1.jpg", 5, 1), ("p_2.jpg", 6, 4)],
            "gallery": [("g_1.jpg", 5, 2), ("g_2.jpg", 6, 3), ("g_3.jpg", 7, 1)]}
    for split, items in rows.items():
        for name, _, _ in items:
            _jpg(root / f"{split}_images" / name)
        _write(root / f"vric_{split}.txt", "".join(f"{n} {v} {c}\n" for n, v, c in items))


def test_vric_reader_and_errors(tmp_path):
    _fake_vric(tmp_path)
    ds = read_dataset("vric", tmp_path)
    assert [(r.pid, r.camid) for r in ds.train] == [(1, 1), (1, 2), (2, 3)]
    assert [(r.pid, r.camid) for r in ds.query] == [(5, 1), (6, 4)]
    assert len(ds.gallery) == 3 and ds.gallery[2].key == "gallery_images/g_3.jpg"
    _write(tmp_path / "vric_gallery.txt", "g_1.jpg 5 2\ng_2.jpg 6\n")
    with pytest.raises(PganError, match=r"vric_gallery.txt:2: expected 3 fields, got 2"):
        read_dataset("vric", tmp_path)
    _write(tmp_path / "vric_gallery.txt", "g_1.jpg 5 2\nmissing.jpg 6 3\n")
    with pytest.raises(PganError, match=r"vric_gallery.txt:2: image 'missing.jpg' not found"):
        read_dataset("vric", tmp_path)
    (tmp_path / "vric_probe.txt").unlink()
    with pytest.raises(PganError, match="missing list file .*vric_probe.txt"):
        read_dataset("vric", tmp_path)
    (tmp_path / "train_images").rename(tmp_path / "elsewhere")
    with pytest.raises(PganError, match="missing folder .*train_images"):
        read_dataset("vric", tmp_path)


# --- VERI-Wild ------------------------------------------------------------------------------------

def _fake_veriwild(root, header=True):
    cams = {"00001/000001": 3, "00001/000002": 5, "00002/000003": 3,      # train
            "00010/000100": 7, "00010/000101": 8, "00011/000110": 7}      # test
    for item in cams:
        _jpg(root / "images" / f"{item}.jpg")
    split = root / "train_test_split"
    info = "id/image;Camera ID;Time;Model;Type;Color\n" if header else ""
    info += "".join(f"{k};{c};2018-03-1{c} 08:00:00;Audi;SUV;red\n" for k, c in cams.items())
    _write(split / "vehicle_info.txt", info)
    _write(split / "train_list.txt", "00001/000001\n00001/000002\n00002/000003\n")
    for n in (3000, 5000, 10000):
        _write(split / f"test_{n}.txt", "00010/000100\n00010/000101\n00011/000110\n")
        _write(split / f"test_{n}_query.txt", "00010/000100\n")


@pytest.mark.parametrize("header", [True, False])
def test_veriwild_reader(tmp_path, header):
    _fake_veriwild(tmp_path, header)
    ds = read_dataset("veriwild", tmp_path, size="large")
    assert [(r.pid, r.camid) for r in ds.train] == [(1, 3), (1, 5), (2, 3)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(10, 7), (10, 8), (11, 7)]
    assert [(r.pid, r.camid, r.key) for r in ds.query] == [(10, 7, "images/00010/000100.jpg")]
    assert ds.query[0].key in {r.key for r in ds.gallery}  # queries are part of the test list
    assert ds.meta["size"] == "large"


def test_veriwild_errors(tmp_path):
    _fake_veriwild(tmp_path)
    split = tmp_path / "train_test_split"
    _write(split / "test_3000_query.txt", "00010/000100\n00010/000999\n")
    with pytest.raises(PganError, match=r"test_3000_query.txt:2: image '00010/000999' has no camera"):
        read_dataset("veriwild", tmp_path)
    _write(split / "test_3000_query.txt", "00010_000100\n")
    with pytest.raises(PganError, match=r"test_3000_query.txt:1: expected '<vid>/<image id>'"):
        read_dataset("veriwild", tmp_path)
    (tmp_path / "images" / "00010" / "000101.jpg").unlink()
    _write(split / "test_3000_query.txt", "00010/000100\n")
    with pytest.raises(PganError, match=r"test_3000.txt:2: image 00010/000101.jpg not found"):
        read_dataset("veriwild", tmp_path)
    _write(split / "vehicle_info.txt", "id/image;Camera ID\n00001/000001;3\n00001/000002;x\n")
    with pytest.raises(PganError, match=r"vehicle_info.txt:3: camera id 'x' is not an integer"):
        read_dataset("veriwild", tmp_path)
    with pytest.raises(PganError, match="size must be one of small, medium, large"):
        read_dataset("veriwild", tmp_path, size="huge")
    (tmp_path / "train_test_split").rename(tmp_path / "split_moved")
    with pytest.raises(PganError, match="missing folder .*train_test_split"):
        read_dataset("veriwild", tmp_path)


# --- custom CSV -----------------------------------------------------------------------------------

def test_custom_csv_reader_and_errors(tmp_path):
    root = tmp_path / "mine"
    for name in ("a.jpg", "b.jpg", "q.jpg", "g1.jpg"):
        _jpg(root / "imgs" / name)
    outside = tmp_path / "outside" / "g2.jpg"
    _jpg(outside)
    csv_text = ("split,path,vehicle_id,camera_id,note\n"
                "train,imgs/a.jpg,1,0,x\ntrain,imgs/b.jpg,1,1,\nquery,imgs/q.jpg,7,2,\n"
                f"gallery,imgs/g1.jpg,7,3,\nGallery,{outside},8,2,\n")
    _write(root / "dataset.csv", csv_text)
    for arg in (root, root / "dataset.csv"):
        ds = read_dataset("custom", arg)
        assert [(r.pid, r.camid, r.key) for r in ds.train] == [(1, 0, "imgs/a.jpg"), (1, 1, "imgs/b.jpg")]
        assert [(r.pid, r.camid) for r in ds.query] == [(7, 2)]
        assert [r.key for r in ds.gallery] == ["imgs/g1.jpg", outside.as_posix()]
        assert ds.root == root
    bad = {"train,imgs/a.jpg,1,zero,\n": r"dataset.csv:2: camera_id 'zero' is not an integer",
           "test,imgs/a.jpg,1,0,\n": r"dataset.csv:2: split 'test' is not one of train, query, gallery",
           "train,imgs/nope.jpg,1,0,\n": r"dataset.csv:2: image 'imgs/nope.jpg' not found",
           "train,imgs/a.jpg\n": r"dataset.csv:2: expected 5 fields"}
    for row, msg in bad.items():
        _write(root / "dataset.csv", "split,path,vehicle_id,camera_id,note\n" + row)
        with pytest.raises(PganError, match=msg):
            read_dataset("custom", root)
    _write(root / "dataset.csv", "path,vehicle_name,camera_id,split\n")  # `vehicle` would be read as vehicle_id
    with pytest.raises(PganError, match=r"dataset.csv:1: header lacks column\(s\) vehicle_id or vehicle;"):
        read_dataset("custom", root)
    with pytest.raises(PganError, match="does not exist"):
        read_dataset("custom", tmp_path / "nothing")
