"""The sharded build: two gloo processes under torchrun give the index a single process gives."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pgan
from pgan.index import GalleryIndex, build_index
from pgan.inference import FeatureExtractor


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_process_build_matches_single_process(tiny_synth, tiny_checkpoint, tmp_path):
    ckpt = tiny_checkpoint("pgan")
    gallery = tiny_synth / "image_test"
    single = build_index(gallery, tmp_path / "single", ckpt, device="cpu", batch_size=4, progress=False)
    src = str(Path(pgan.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "pgan", "index", "build", "--checkpoint", str(ckpt),
           "--images", str(gallery), "--out", str(tmp_path / "ddp"), "--device", "cpu", "--batch-size", "4",
           "--quiet"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = GalleryIndex.open(tmp_path / "single"), GalleryIndex.open(tmp_path / "ddp")
    assert len(b) == single.added == 16 and b.info()["complete"]
    ids_a, va = a.vectors()
    ids_b, vb = b.vectors()
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_allclose(va, vb, atol=1e-5)
    assert [a.get(i).path for i in ids_a] == [b.get(i).path for i in ids_b]
    assert not (tmp_path / "ddp" / "shards").exists()
    q = FeatureExtractor(ckpt, device="cpu")(sorted(gallery.iterdir())[:3])
    assert [h[0].image_id for h in a.search(q, 1)] == [h[0].image_id for h in b.search(q, 1)]
