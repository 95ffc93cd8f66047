"""The gallery index: build, search, resume after a kill, bad files, mismatched models."""

import shutil

import numpy as np
import pytest

from pgan.errors import IndexMismatchError, PganError
from pgan.index import GalleryIndex, add_to_index, build_index, list_gallery
from pgan.index.store import SEGMENTS_DIR
from pgan.inference import FeatureExtractor


@pytest.fixture(scope="module")
def extractor(tiny_checkpoint):
    # The copied galleries lie outside the model's dataset, so their boxes come from proposals.
    return FeatureExtractor(tiny_checkpoint("pgan"), parts="proposals", device="cpu", batch_size=4)


@pytest.fixture
def gallery(tiny_synth, tmp_path):
    """A copy of the tiny gallery (16 images) to which tests may add bad files."""
    dst = tmp_path / "gallery"
    shutil.copytree(tiny_synth / "image_test", dst)
    return dst


class Failing:
    """An extractor that raises after ``after`` batches (a build killed mid-way) and counts what it embeds."""

    def __init__(self, inner, after=None):
        self.inner, self.after, self.calls, self.embedded = inner, after, 0, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def extract_with_parts(self, images):
        if self.after is not None and self.calls >= self.after:
            raise KeyboardInterrupt
        self.calls += 1
        self.embedded += len(images)
        return self.inner.extract_with_parts(images)


def test_build_and_search_finds_each_gallery_image_first(gallery, tmp_path, extractor):
    report = build_index(gallery, tmp_path / "idx", extractor=extractor, batch_size=4, progress=False)
    assert (report.total, report.added, report.already, report.skipped) == (16, 16, 0, [])
    idx = GalleryIndex.open(tmp_path / "idx")
    info = idx.info()
    assert info["size"] == len(idx) == 16 and info["dim"] == extractor.embedding_dim == 64
    assert info["index_type"] == "auto" and info["segment_types"] == {"Flat": 1}
    assert info["model_fingerprint"] == extractor.model_fingerprint
    assert info["complete"] and idx.checkpoint == extractor.checkpoint
    files = sorted(gallery.iterdir())
    hits = idx.search(extractor(files), topk=3)
    for f, h in zip(files, hits):
        assert [x.rank for x in h] == [1, 2, 3]
        assert h[0].path == str(f.resolve()) and h[0].score == pytest.approx(1.0, abs=1e-5)
        assert h[0].score >= h[1].score >= h[2].score
    first = hits[0][0]
    assert first.vehicle_id == int(files[0].name[:4]) and first.camera == int(files[0].name[6:9])
    assert len(first.boxes) == 8 and all(len(b) == 4 for b in first.boxes)
    assert idx.get(first.image_id) == type(first)(0, 0.0, *list(first.to_dict().values())[2:])
    assert idx.image_path(first.image_id) == files[0].resolve()
    assert idx.get(999) is None
    with pytest.raises(KeyError):
        idx.image_path(999)
    assert first.to_dict()["path"] == first.path
    assert info["parts"] == "proposals"


def test_search_boxes_new_photos_as_the_build_did(gallery, tmp_path, extractor):
    from pgan.index.search import search_images

    build_index(gallery, tmp_path / "idx", extractor=extractor, progress=False)
    photo = sorted(gallery.iterdir())[3]  # outside the model's dataset: proposals, as recorded at build
    res = search_images(tmp_path / "idx", [photo], topk=2, device="cpu")[0]
    assert res.hits[0].path == str(photo.resolve()) and res.hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert res.query_boxes and [[round(b.x1, 2), round(b.y1, 2), round(b.x2, 2), round(b.y2, 2)]
                                for b in res.query_boxes] == res.hits[0].boxes


def test_camera_filters_and_topk_beyond_the_gallery(gallery, tmp_path, extractor, caplog):
    build_index(gallery, tmp_path / "idx", extractor=extractor, progress=False)
    idx = GalleryIndex.open(tmp_path / "idx")
    q = extractor([sorted(gallery.iterdir())[0]])
    cams = {h.camera for h in idx.search(q, 16)[0]}
    assert len(cams) == 3
    only = idx.search(q, 16, camera=2)[0]
    assert only and {h.camera for h in only} == {2}
    assert len(only) == sum(1 for f in gallery.iterdir() if "_c002_" in f.name)
    assert 2 not in {h.camera for h in idx.search(q, 16, exclude_camera=2)[0]}
    assert [h.rank for h in only] == list(range(1, len(only) + 1))
    everything = idx.search(q, 100)[0]
    assert len(everything) == 16 and "exceeds the gallery" in caplog.text
    with pytest.raises(IndexMismatchError, match="64-d"):
        idx.search(np.zeros((1, 32), np.float32), 5)
    with pytest.raises(PganError, match="topk"):
        idx.search(q, 0)


def test_killed_build_resumes_without_embedding_twice(gallery, tmp_path, extractor):
    first = Failing(extractor, after=2)
    with pytest.raises(KeyboardInterrupt):
        build_index(gallery, tmp_path / "idx", extractor=first, batch_size=4, progress=False)
    assert first.embedded == 8
    partial = GalleryIndex.open(tmp_path / "idx")
    assert len(partial) == 8
    hits = partial.search(np.ones((1, 64), np.float32), 20)[0]  # every committed batch is searchable
    assert sorted(h.image_id for h in hits) == list(range(8))
    second = Failing(extractor)
    report = build_index(gallery, tmp_path / "idx", extractor=second, batch_size=4, progress=False)
    assert second.embedded == 8 and report.already == 8 and report.added == 8
    build_index(gallery, tmp_path / "fresh", extractor=extractor, batch_size=4, progress=False)
    a, b = GalleryIndex.open(tmp_path / "idx"), GalleryIndex.open(tmp_path / "fresh")
    ids_a, va = a.vectors()
    ids_b, vb = b.vectors()
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_allclose(va, vb, atol=1e-6)
    assert [a.get(i).path for i in ids_a] == [b.get(i).path for i in ids_b]
    assert a.info()["complete"]


def test_bad_files_are_skipped_counted_and_logged(gallery, tmp_path, extractor):
    (gallery / "empty.jpg").write_bytes(b"")
    good = sorted(gallery.glob("*.jpg"))[0].read_bytes()
    (gallery / "truncated.jpg").write_bytes(good[:60])
    (gallery / "notes.txt").write_text("not an image")
    report = build_index(gallery, tmp_path / "idx", extractor=extractor, batch_size=4, progress=False)
    assert report.added == 16 and len(report.skipped) == 3
    idx = GalleryIndex.open(tmp_path / "idx")
    logged = idx.skipped()
    assert sorted(p.rsplit("/", 1)[1] for p, _ in logged) == ["empty.jpg", "notes.txt", "truncated.jpg"]
    assert all("cannot read image" in reason for _, reason in logged)
    assert idx.info()["skipped"] == 3 and len(idx) == 16


def test_empty_or_missing_gallery_is_one_line_error(tmp_path, extractor):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PganError, match="holds no files"):
        build_index(tmp_path / "empty", tmp_path / "idx", extractor=extractor)
    with pytest.raises(PganError, match="does not exist"):
        list_gallery(tmp_path / "nope")
    with pytest.raises(PganError, match="not a gallery index"):
        GalleryIndex.open(tmp_path / "empty")


def test_another_model_is_refused(gallery, tmp_path, extractor, tiny_checkpoint):
    from pgan.index import add_to_index

    build_index(gallery, tmp_path / "idx", extractor=extractor, progress=False)
    other = FeatureExtractor(tiny_checkpoint("baseline", "model.baseline_reduce=false"), device="cpu")
    with pytest.raises(IndexMismatchError, match="512-d"):
        add_to_index(tmp_path / "idx", gallery, extractor=other)
    with pytest.raises(IndexMismatchError, match="built with model"):
        GalleryIndex.open(tmp_path / "idx").check_model("0123456789abcdef", 64)
    with pytest.raises(IndexMismatchError):
        build_index(gallery, tmp_path / "idx", extractor=other)


def test_add_appends_new_files_only(gallery, tmp_path, extractor, tiny_synth):
    from pgan.index import add_to_index

    build_index(gallery, tmp_path / "idx", extractor=extractor, progress=False)
    counting = Failing(extractor)
    report = add_to_index(tmp_path / "idx", tiny_synth / "image_query", extractor=counting, progress=False)
    n_query = len(list((tiny_synth / "image_query").iterdir()))
    assert report.added == counting.embedded == n_query
    idx = GalleryIndex.open(tmp_path / "idx")
    assert len(idx) == 16 + n_query and idx.info()["complete"]
    assert add_to_index(tmp_path / "idx", gallery, extractor=counting, progress=False).added == 0


@pytest.mark.parametrize("kind", ["HNSW32,Flat", "IVF4,Flat"])
def test_approximate_index_types_are_recorded_and_search(gallery, tmp_path, extractor, kind):
    build_index(gallery, tmp_path / "idx", extractor=extractor, index_type=kind, progress=False,
                params={"nprobe": 4})
    idx = GalleryIndex.open(tmp_path / "idx")
    assert idx.info()["index_type"] == kind and idx.params["nprobe"] == 4
    files = sorted(gallery.iterdir())[:4]
    assert [h[0].path for h in idx.search(extractor(files), 1)] == [str(f.resolve()) for f in files]


def test_bad_index_types(gallery, tmp_path, extractor):
    with pytest.raises(PganError, match="invalid faiss index type"):
        build_index(gallery, tmp_path / "a", extractor=extractor, index_type="Nonsense42")
    # Too few vectors to train a PQ: the rows stay in an exact segment until a later merge can train one.
    build_index(gallery, tmp_path / "b", extractor=extractor, index_type="IVF4,PQ8", progress=False)
    idx = GalleryIndex.open(tmp_path / "b")
    assert idx.info()["segment_types"] == {"Flat": 1} and idx.index_type == "IVF4,PQ8"
    files = sorted(gallery.iterdir())[:4]
    hits = idx.search(extractor(files), 1)
    assert [h[0].path for h in hits] == [str(f.resolve()) for f in files]
    assert all(h[0].score == pytest.approx(1.0, abs=1e-5) for h in hits)


def test_csv_gallery_with_metadata(tmp_path, gallery, extractor):
    files = sorted(gallery.iterdir())[:3]
    csv = tmp_path / "g.csv"
    csv.write_text("path,camera,vehicle_id,timestamp\n" + "".join(
        f"gallery/{f.name},{7},{100 + i},2024-01-0{i + 1}T10:00\n" for i, f in enumerate(files)))
    build_index(csv, tmp_path / "idx", extractor=extractor, progress=False)
    idx = GalleryIndex.open(tmp_path / "idx")
    hit = idx.search(extractor([files[1]]), 1)[0][0]
    assert (hit.camera, hit.vehicle_id, hit.timestamp) == (7, 101, "2024-01-02T10:00")
    assert not (tmp_path / "idx" / "shards").exists() and (tmp_path / "idx" / SEGMENTS_DIR).is_dir()


def test_csv_split_column_indexes_one_split_and_needs_split(tmp_path, gallery, extractor, run_cli, capsys):
    files = sorted(gallery.iterdir())
    parts = {"train": files[0:4], "query": files[4:6], "gallery": files[6:9]}
    csv = tmp_path / "my.csv"  # the custom-dataset CSV, with the camera column under its other name
    csv.write_text("path,vehicle_id,camera,split\n" + "".join(
        f"gallery/{f.name},{10 + i},{1 if split == 'query' else 2},{split}\n"
        for split, fs in parts.items() for i, f in enumerate(fs)))
    report = build_index(csv, tmp_path / "idx", extractor=extractor, split="gallery", progress=False)
    assert (report.total, report.added) == (3, 3)
    with GalleryIndex.open(tmp_path / "idx") as idx:
        assert idx.paths() == {str(f.resolve()) for f in parts["gallery"]}
        hit = idx.search(extractor([parts["gallery"][1]]), 1)[0][0]
        assert (hit.vehicle_id, hit.camera) == (11, 2)
    report = add_to_index(tmp_path / "idx", csv, extractor=extractor, split="query", progress=False)
    assert (report.total, report.added, report.already) == (2, 2, 0)
    with GalleryIndex.open(tmp_path / "idx") as idx:
        assert idx.paths() == {str(f.resolve()) for f in parts["gallery"] + parts["query"]}
    with pytest.raises(PganError, match=r"my.csv has a 'split' column \(gallery, query, train\): choose the rows "
                                        r"to index with --split NAME"):
        build_index(csv, tmp_path / "other", extractor=extractor)
    # The CLI refuses before any model is loaded (the checkpoint need not exist), in one line.
    for argv, message in [
        (("--images", csv), "has a 'split' column (gallery, query, train)"),
        (("--images", csv, "--split", "test"), "has no rows of split 'test'"),
        (("--images", gallery, "--split", "gallery"), "--split 'gallery' applies to a CSV with a 'split' column"),
    ]:
        assert run_cli("index", "build", "--checkpoint", tmp_path / "none.pt", "--out", tmp_path / "i2",
                       *argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("pgan: error: ") and message in err, err
