"""Helpers of the serve tests: small stand-ins for the gallery index and the extractor, a test server.

The fake embedding of an image is its mean colour (L2-normalised, padded to 4-d), so an image
finds itself and its same-coloured siblings first, as a trained model would.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pgan.parts.boxfile import PartBox

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (200, 30, 200)]


def _embed(img: Image.Image) -> np.ndarray:
    mean = np.asarray(img.convert("RGB"), dtype=np.float32).reshape(-1, 3).mean(0) / 255.0
    v = np.concatenate([mean, [0.05]]).astype(np.float32)
    return v / np.linalg.norm(v)


class FakeExtractor:
    embedding_dim = 4
    model_fingerprint = "f" * 16

    def __init__(self) -> None:
        self.calls: list[int] = []  # batch sizes seen

    def extract_with_parts(self, images):
        self.calls.append(len(images))
        feats = np.stack([_embed(im) for im in images])
        boxes = [[PartBox(1, 2, im.width / 2, im.height / 2, 0.9, "light")] for im in images]
        return feats, boxes

    def __call__(self, images):
        return self.extract_with_parts(images)[0]


@dataclass
class FakeHit:
    rank: int
    score: float
    image_id: int
    path: str
    camera: int | None
    vehicle_id: int | None
    timestamp: str | None = None
    boxes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class FakeIndex:
    """Gallery of ``n`` small PNGs: image i shows colour i % 6 (its 'vehicle'), taken by camera i % 3.
    ``times`` (id -> timestamp, empty at first) gives images a timestamp."""

    model_fingerprint = FakeExtractor.model_fingerprint

    def __init__(self, folder: Path, n: int = 12) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.paths, self.meta = {}, {}
        rng = np.random.default_rng(0)
        for i in range(n):
            arr = np.clip(np.array(COLOURS[i % 6]) + rng.integers(-20, 20, (24, 32, 3)), 0, 255).astype(np.uint8)
            p = folder / f"{i % 6:04d}_c{i % 3:03d}_{i}.png"
            Image.fromarray(arr).save(p)
            self.paths[100 + i] = p  # ids deliberately not 0..n-1
            self.meta[100 + i] = (i % 3, i % 6)
        self.vectors = {k: _embed(Image.open(p)) for k, p in self.paths.items()}
        self.times: dict[int, str | None] = {}
        self.checkpoint = "fake.pt"

    def __len__(self) -> int:
        return len(self.paths)

    def info(self) -> dict:
        return {"size": len(self), "dim": 4, "index_type": "Flat", "model_fingerprint": self.model_fingerprint,
                "checkpoint": "/somewhere/fake.pt"}

    def image_path(self, image_id: int) -> Path:
        return self.paths[image_id]  # KeyError if unknown, as the real index

    def vector(self, image_id: int) -> np.ndarray:
        return self.vectors[image_id]  # the stored vector, as the real index

    def get(self, image_id: int) -> FakeHit:
        cam, vid = self.meta[image_id]
        return FakeHit(0, 0.0, image_id, str(self.paths[image_id]), cam, vid, self.times.get(image_id),
                       boxes=[[0, 0, 4, 4, 1.0, "logo"]])

    def search(self, embeddings, topk, camera=None):
        ids = [k for k in self.paths if camera is None or self.meta[k][0] == camera]
        out = []
        for q in np.asarray(embeddings):
            scores = sorted(((float(self.vectors[k] @ q), k) for k in ids), reverse=True)[:topk]
            out.append([FakeHit(r + 1, s, k, str(self.paths[k]), self.meta[k][0], self.meta[k][1],
                                self.times.get(k), boxes=[[0, 0, 4, 4, 1.0, "logo"]])
                        for r, (s, k) in enumerate(scores)])
        return out


@contextlib.contextmanager
def running_server(app, host: str = "127.0.0.1"):
    """Serve ``app`` with uvicorn on a free loopback port in a daemon thread; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(600):  # bounded: at most 60 s for the lifespan (model warm-up) to finish
        if server.started:
            break
        if not thread.is_alive():
            raise RuntimeError("the test server failed to start")
        time.sleep(0.1)
    else:
        raise RuntimeError("the test server did not start within 60 s")
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def build_tiny_index(tiny_synth: Path, checkpoint: Path, root: Path) -> Path:
    """An index of the tiny test split, copied outside the dataset so its boxes come from proposals."""
    import shutil

    from pgan.index import build_index

    shutil.copytree(tiny_synth / "image_test", root / "gallery")
    build_index(root / "gallery", root / "index", checkpoint=checkpoint, parts="proposals", device="cpu",
                batch_size=8, progress=False)
    return root / "index"
