"""The runtime benchmark: table and files, and the exact eval-path rewrites (no wall-clock thresholds)."""

import csv
import json

import numpy as np
import pytest
import torch

from pgan.bench.runtime import MODULES, plain_head_embedding, random_boxes, time_interleaved
from pgan.models.backbones import build_backbone
from pgan.models.network import ReidNet
from pgan.parts.masks import boxes_to_masks


def test_bench_runtime_writes_table_and_ratio(tmp_path, run_cli, capsys):
    out = tmp_path / "bench"
    assert run_cli("bench", "runtime", "--backbone", "resnet18", "--input", 64, "--batch-sizes", 1, 2,
                   "--repeats", 1, "--warmup", 0, "--threads", 1, "--devices", "cpu", "--reduced-dim", 32,
                   "--out", out) == 0
    table = (out / "runtime.md").read_text()
    for label in ("part detector", "part masks", "re-ID network: baseline", "re-ID network: PGAN",
                  "total PGAN", "PGAN / baseline"):
        assert label in table
    assert "| module (ms / image) | cpu batch 1 | cpu batch 2 |" in table
    with open(out / "runtime.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["batch"], r["module"]) for r in rows} == {(b, m) for b in ("1", "2") for m in MODULES}
    assert all(float(r["ms_per_image"]) > 0 for r in rows)
    res = json.loads((out / "runtime.json").read_text())
    assert set(res["ratios"]) == {"cpu/b1", "cpu/b2"} and all(v > 0 for v in res["ratios"].values())
    assert res["plain_max_abs_diff"] < 1e-3
    for r in rows:  # ms per image is the batch time over the batch size
        assert float(r["ms_per_batch"]) == pytest.approx(float(r["ms_per_image"]) * int(r["batch"]), abs=1e-3)
    assert "PGAN / baseline" in (out / "report.html").read_text()
    capsys.readouterr()
    assert run_cli("bench", "runtime", "--repeats", 0, "--out", out) == 2
    assert "repeats" in capsys.readouterr().err


@pytest.mark.parametrize("variant", ["pgan", "nopam", "grid"])
def test_eval_path_equals_the_plain_head(variant):
    torch.manual_seed(0)
    net = ReidNet(build_backbone("resnet18", pretrained=False), 10, variant=variant, reduced_dim=32)
    net.train()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for _ in range(2):
            net(x, torch.ones(3, 8, 4, 4))
    net.eval()
    masks = torch.from_numpy(np.stack([boxes_to_masks(b, 64, 64, 4, 4, 8) for b in random_boxes(3, 5, (64, 64))]))
    masks[1] = 0  # an image without parts
    with torch.no_grad():
        ref = net(x, masks).embedding
        got = plain_head_embedding(net, x, masks)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_time_interleaved_counts_every_repeat():
    calls = []
    times = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3,
                             warmup=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then alternating order
    assert all(t >= 0 for v in times.values() for t in v)


def test_concat_free_refine_is_exact_in_eval_and_falls_back_in_training():
    from pgan.models.refine import Refine

    torch.manual_seed(1)
    r = Refine(12, 16)
    a, b = torch.randn(4, 6, 5, 5), torch.randn(4, 6, 5, 5)
    r.train()
    with torch.no_grad():
        for _ in range(3):  # non-trivial running statistics
            r(torch.cat([a, b], 1) * 2 + 1)
        torch.testing.assert_close(r.forward_pooled_pair(a, b), r.forward_pooled(torch.cat([a, b], 1)))
    r.eval()
    with torch.no_grad():
        ref = r(torch.cat([a, b], 1)).mean(dim=(2, 3))
        torch.testing.assert_close(r.forward_pooled_pair(a, b), ref, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(ref, torch.zeros_like(ref))
