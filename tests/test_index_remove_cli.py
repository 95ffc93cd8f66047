"""``pgan index remove`` / ``compact`` and ``pgan search --vehicle-id`` on a real (tiny) index: what is
removed is never found again, bad input is one line that changes nothing."""

from __future__ import annotations

import json
import shutil

import pytest

from pgan.index import GalleryIndex, build_index
from pgan.inference import FeatureExtractor


@pytest.fixture(scope="module")
def built(tiny_synth, tiny_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("remove-cli")
    shutil.copytree(tiny_synth / "image_test", root / "gallery")
    fx = FeatureExtractor(tiny_checkpoint("pgan"), parts="proposals", device="cpu", batch_size=8)
    build_index(root / "gallery", root / "index", extractor=fx, progress=False)
    return root, fx


def test_remove_by_path_id_and_time_then_compact(built, run_cli, capsys, tmp_path):
    root, fx = built
    shutil.copytree(root / "index", tmp_path / "index")
    idx_dir = tmp_path / "index"
    files = sorted((root / "gallery").iterdir())
    before = GalleryIndex.open(idx_dir)
    stamps = {h.image_id: int(h.timestamp) for h in (before.get(i) for i in range(16))}
    cut = sorted(stamps.values())[2]  # the two earliest sightings go by time
    early = sorted(i for i, t in stamps.items() if t < cut)
    by_path = before.search(fx([files[9]]), 1)[0][0].image_id
    before.close()
    for argv, message in ((["--ids", "99"], "no item with id 99; nothing was removed"),
                          ([str(root / "gallery" / "missing.jpg")], "holds no image"),
                          (["--before", "last tuesday"], "--before 'last tuesday' is not a time"),
                          ([], "say what to remove")):
        assert run_cli("index", "remove", "--index", idx_dir, *argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert len(GalleryIndex.open(idx_dir)) == 16  # nothing changed
    assert run_cli("index", "remove", "--index", idx_dir, files[9], "--ids", "4", "--before", f"{cut:08d}") == 0
    report = json.loads(capsys.readouterr().out)
    gone = sorted({by_path, 4, *early})
    assert report == {"removed": len(gone), "ids": gone, "size": 16 - len(gone)}
    assert run_cli("search", "--index", idx_dir, *files, "--top-k", "16", "--device", "cpu") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and not set(gone) & {r["image_id"] for r in rows}
    assert run_cli("index", "compact", "--index", idx_dir) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["searchable"] == 16 - len(gone) and info["tombstones"] == 0 and info["segments"] == 1


def test_search_by_vehicle_and_a_malformed_time(built, run_cli, capsys):
    root, _ = built
    files = sorted((root / "gallery").iterdir())
    vid = int(files[3].name[:4])
    assert run_cli("search", "--index", root / "index", files[3], "--top-k", "16", "--vehicle-id", vid,
                   "--device", "cpu") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(r["path"] for r in rows) == sorted(str(f.resolve()) for f in files if int(f.name[:4]) == vid)
    assert run_cli("search", "--index", root / "index", files[3], "--since", "soon", "--device", "cpu") == 2
    assert "since 'soon' is not a time" in capsys.readouterr().err
