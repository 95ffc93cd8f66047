"""``pgan index build | add | info``, ``pgan search`` and ``pgan export onnx`` end to end, in-process."""

import json

import pytest
from PIL import Image


def _lines(out):
    return [json.loads(line) for line in out.strip().splitlines()]


def test_index_build_info_search_and_figure(run_cli, tiny_synth, tiny_checkpoint, tmp_path, capsys):
    ckpt = tiny_checkpoint("pgan")
    idx = tmp_path / "idx"
    assert run_cli("index", "build", "--checkpoint", ckpt, "--images", tiny_synth / "image_test", "--out", idx,
                   "--quiet", "--device", "cpu") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["added"] == 16 and report["index_type"] == "auto" and report["images_per_s"] > 0
    assert run_cli("index", "info", "--index", idx) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["size"] == 16 and info["dim"] == 64 and info["checkpoint"] == str(ckpt.resolve())
    # Queries of the dataset: their ground-truth boxes come from the model's own part file.
    queries = sorted((tiny_synth / "image_query").iterdir())[:2]
    fig = tmp_path / "fig.png"
    assert run_cli("search", "--index", idx, *queries, "--top-k", "5", "--figure", fig, "--device", "cpu") == 0
    rows = _lines(capsys.readouterr().out)
    assert len(rows) == 10 and [r["rank"] for r in rows[:5]] == [1, 2, 3, 4, 5]
    assert {"query", "rank", "score", "path", "camera", "vehicle_id", "image_id", "boxes"} <= set(rows[0])
    assert rows[0]["query"] == str(queries[0]) and rows[0]["score"] >= rows[4]["score"]
    with Image.open(fig) as im:
        assert im.width > 5 * 112 and im.height > 2 * 112
    # --top-k beyond the gallery: everything, with a warning.
    assert run_cli("search", "--index", idx, queries[0], "--top-k", "100", "--device", "cpu") == 0
    assert len(_lines(capsys.readouterr().out)) == 16


def test_cli_bad_inputs_are_one_line_errors(run_cli, tiny_synth, tiny_checkpoint, tmp_path, capsys):
    ckpt = tiny_checkpoint("pgan")
    idx = tmp_path / "idx"
    assert run_cli("index", "build", "--checkpoint", ckpt, "--images", tiny_synth / "image_test", "--out", idx,
                   "--quiet", "--device", "cpu") == 0
    capsys.readouterr()
    (tmp_path / "photo.jpg").write_text("not a photo")
    (tmp_path / "empty").mkdir()
    cases = [
        (("search", "--index", idx, tmp_path / "photo.jpg"), "cannot read image"),
        (("search", "--index", tmp_path / "empty", tmp_path / "photo.jpg"), "not a gallery index"),
        (("index", "build", "--checkpoint", ckpt, "--images", tmp_path / "empty", "--out", tmp_path / "i2"),
         "holds no files"),
        (("index", "add", "--index", idx, "--images", tiny_synth / "image_query", "--checkpoint",
          tiny_checkpoint("baseline", "model.baseline_reduce=false")), "512-d"),
        (("search", "--index", idx, tiny_synth / "image_query" / sorted(
            p.name for p in (tiny_synth / "image_query").iterdir())[0], "--checkpoint", tiny_checkpoint("grid")),
         "built with model"),
        (("export", "onnx", "--checkpoint", ckpt, "--out", tmp_path / "m.onnx", "--int8"), "--calibration"),
    ]
    for argv, message in cases:
        assert run_cli(*argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("pgan: error:") and message in err and "\n" not in err, (argv, err)


@pytest.mark.slow
def test_export_onnx_int8_cli_and_index_with_onnx_runtime(run_cli, tiny_synth, tiny_checkpoint, tmp_path, capsys):
    ckpt = tiny_checkpoint("pgan")
    assert run_cli("export", "onnx", "--checkpoint", ckpt, "--out", tmp_path / "m.onnx", "--int8",
                   "--calibration", tiny_synth / "image_train", "--calibration-size", "16") == 0
    written = json.loads(capsys.readouterr().out)
    assert written == {"fp32": str(tmp_path / "m.onnx"), "int8": str(tmp_path / "m-int8.onnx")}
    assert run_cli("index", "build", "--checkpoint", ckpt, "--runtime", "onnx", "--onnx", tmp_path / "m.onnx",
                   "--images", tiny_synth / "image_test", "--out", tmp_path / "idx", "--quiet") == 0
    capsys.readouterr()
    # The fp32 export shares the checkpoint's fingerprint: PyTorch queries search an ONNX-built index.
    q = sorted((tiny_synth / "image_test").iterdir())[0]
    assert run_cli("search", "--index", tmp_path / "idx", q, "--top-k", "1", "--device", "cpu") == 0
    top = _lines(capsys.readouterr().out)[0]
    assert top["path"] == str(q.resolve()) and top["score"] == pytest.approx(1.0, abs=1e-4)
    # The int8 model embeds differently: refused on the fp32 index.
    assert run_cli("search", "--index", tmp_path / "idx", q, "--runtime", "onnx", "--onnx",
                   tmp_path / "m-int8.onnx") == 2
    assert "built with model" in capsys.readouterr().err
