"""The synthetic benchmark's realism option: off by default (same files as before), pixels only (same
boxes), seeded, checked like the other keys, and it does make the images harder for saliency proposals."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pgan.synth.realism as realism
from pgan.cli import main
from pgan.errors import PganError
from pgan.parts.boxfile import PartBox, read_part_file
from pgan.parts.proposals import propose_boxes
from pgan.parts.roles import box_roles
from pgan.parts.selection import select_top_d
from pgan.synth import SynthConfig, generate_synth, synth_config_from_dict

TINY = dict(num_train_ids=4, num_test_ids=3, images_per_id=(4, 5), num_cameras=4, num_families=2,
            image_size=48, seed=3, workers=1)
# sha256 of the tiny set's text files as written by the generator before realism existed (commit c6442df);
# its whole tree (JPEGs too) was checked byte-identical by hand, but JPEG bytes may vary with Pillow's libjpeg.
BEFORE = {"parts_gt.jsonl": "35f566a7a6a0a5798263fc122fac9fa5e74e6ab09a2d66bf6c0cde0bee6c63b7",
          "synth_meta.json": "78c701b6f6ff1a0b30be50db5260a71d852beba356b0b1620bf22c1abe948195"}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny set without realism and with realism 1."""
    tmp = tmp_path_factory.mktemp("realism")
    generate_synth(tmp / "plain", SynthConfig(**TINY), progress=False)
    generate_synth(tmp / "real", SynthConfig(**TINY, realism=1.0), progress=False)
    return tmp / "plain", tmp / "real"


def test_realism_zero_writes_the_same_files_as_before(pair: tuple[Path, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    plain = _files(pair[0])
    for name, digest in BEFORE.items():
        assert hashlib.sha256(plain[name]).hexdigest() == digest, name
    assert "realism" not in json.loads(plain["synth_meta.json"])["config"]

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("realism code ran with realism 0")

    for fn in ("draw_clutter", "edge_occluder", "finish"):
        monkeypatch.setattr(f"pgan.synth.render.{fn}", never)
    generate_synth(tmp_path / "zero", SynthConfig(**TINY, realism=0.0), progress=False)
    assert _files(tmp_path / "zero") == plain
    # An existing dataset made without the key is reused by a config that spells out realism 0.
    assert generate_synth(pair[0], synth_config_from_dict({**TINY, "realism": 0}), progress=False)["reused"]


def test_realism_changes_pixels_not_boxes(pair: tuple[Path, Path]) -> None:
    plain, real = (_files(p) for p in pair)
    assert plain.keys() == real.keys()
    images = [k for k in plain if k.endswith(".jpg")]
    assert images and all(plain[k] != real[k] for k in images)
    for k in plain:
        if not k.endswith((".jpg", "synth_meta.json")):  # part file, VOC XML, name lists
            assert plain[k] == real[k], k
    meta = json.loads(real["synth_meta.json"])
    assert meta["config"]["realism"] == 1.0
    for key, item in read_part_file(pair[1] / "parts_gt.jsonl").items():
        assert Image.open(pair[1] / key).size == (item.width, item.height)


def test_realism_is_seeded_and_independent_of_workers(pair: tuple[Path, Path], tmp_path: Path) -> None:
    generate_synth(tmp_path / "w2", SynthConfig(**{**TINY, "workers": 2}, realism=1.0), progress=False)
    assert _files(tmp_path / "w2") == _files(pair[1])
    generate_synth(tmp_path / "half", SynthConfig(**TINY, realism=0.5), progress=False)
    half = _files(tmp_path / "half")
    assert all(half[k] != v for k, v in _files(pair[1]).items() if k.endswith(".jpg"))


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, math.inf, True, "1"])
def test_bad_realism_is_a_one_line_error(bad: object) -> None:
    with pytest.raises(PganError, match=r"^synth config: realism=.* must be a number in \[0, 1\]$") as err:
        synth_config_from_dict({"realism": bad})
    assert "\n" not in str(err.value)


def test_cli_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = ["num_train_ids=2", "num_test_ids=2", "images_per_id=[4,4]", "num_cameras=3", "num_families=1",
             "image_size=32", "workers=1"]
    assert main(["synth", "--out", str(tmp_path / "ds"), "--realism", "0.7", "--quiet", "--set", *small]) == 0
    assert json.loads((tmp_path / "ds" / "synth_meta.json").read_text())["config"]["realism"] == 0.7
    assert main(["synth", "--out", str(tmp_path / "bad"), "--realism", "2", "--quiet"]) == 2
    assert "realism=2.0 must be a number in [0, 1]" in capsys.readouterr().err


def test_texture_makes_a_flat_body_uneven() -> None:
    """Paint shading, grain and reflections on a flat-colour body: local contrast (the mean absolute
    Laplacian) rises from 0 inside the body, far more than on the road around it."""
    size = 64
    a = np.full((size, size, 3), 100.0, np.float32)
    veh = np.zeros((size, size), np.float32)
    veh[16:52, 8:56] = 1.0
    glass = PartBox(16.0, 18.0, 48.0, 30.0, 1.0, "windglass", "shared")
    realism.add_texture(a, np.random.default_rng(0), 1.0, veh, [glass])
    g = a.mean(-1)
    lap = np.abs(4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:])
    body, road = lap[18:50, 10:54].mean(), lap[:12, :].mean()
    assert body > 8.0 and body > 1.5 * road
    panel = a[32:50, 10:54].mean(-1)  # below the glass: shading, not only grain
    assert max(np.ptp(panel.mean(1)), np.ptp(panel.mean(0))) > 10.0
    assert a[18:30, 16:48].mean() > a[32:50, 10:54].mean()  # the glass has a bright streak


def _part_hit_share(root: Path) -> float:
    """Share of the top-8 saliency proposals that land on a ground-truth part (IoU >= 0.5)."""
    hits = total = 0
    for key, item in read_part_file(root / "parts_gt.jsonl").items():
        boxes = select_top_d(propose_boxes(np.asarray(Image.open(root / key).convert("RGB"))), 8)
        roles = box_roles(boxes, item.boxes, 0.5)
        hits += sum(r != "clutter" for r in roles)
        total += len(roles)
    return hits / max(1, total)


def test_realism_makes_proposals_miss_parts(tmp_path: Path) -> None:
    """The point of the option: saliency proposals hit parts far less often on realistic images.

    Measured on 40 images at 64 px (seeds 0, 2, 7, 9): about 0.32-0.53 of the proposals hit a part
    without realism and 0.16-0.32 with it, a drop of 40-60%; the test asks for 20%.
    """
    cfg = dict(num_train_ids=8, num_test_ids=2, images_per_id=(4, 4), num_cameras=4, num_families=3,
               image_size=64, seed=2, workers=1)
    generate_synth(tmp_path / "plain", SynthConfig(**cfg), progress=False)
    generate_synth(tmp_path / "real", SynthConfig(**cfg, realism=1.0), progress=False)
    plain, real = _part_hit_share(tmp_path / "plain"), _part_hit_share(tmp_path / "real")
    assert plain > 0.2 and real < 0.8 * plain, (plain, real)


def test_real_like_setting_is_the_hard_one_with_full_realism() -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "synth_variants.py"
    spec = importlib.util.spec_from_file_location("synth_variants", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    real_like = bench.SETTINGS["real-like"]
    assert real_like == {**bench.SETTINGS["hard"], "realism": 1.0}
    assert synth_config_from_dict(dict(real_like)).style.realism == 1.0
