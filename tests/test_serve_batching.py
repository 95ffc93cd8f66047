"""The inference thread gathers uploads that arrive a few milliseconds apart into one batch (bounded wait,
bounded batch), and never holds back a call that is not an embedding."""

import threading
import time

import numpy as np
import pytest
from PIL import Image

from pgan.errors import PganError
from pgan.serve.settings import ServeSettings
from pgan.serve.worker import InferenceWorker


class _CountingExtractor:
    """A stand-in extractor that records the size of every batch it is given."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def extract_with_parts(self, images):
        self.sizes.append(len(images))
        return np.ones((len(images), 4), np.float32), [[] for _ in images]


def _submit_apart(worker: InferenceWorker, n: int, gap_s: float) -> list:
    futures = []
    for _ in range(n):
        futures.append(worker.submit_embed(Image.new("RGB", (8, 8))))
        time.sleep(gap_s)
    return futures


@pytest.mark.parametrize("max_batch,expected", [(8, [5]), (2, [2, 2, 1])])
def test_uploads_a_few_ms_apart_share_a_batch(max_batch, expected):
    fx = _CountingExtractor()
    worker = InferenceWorker(fx, max_batch=max_batch, batch_wait_ms=500)  # a wait far above the 2 ms gaps
    worker.start()
    try:
        futures = _submit_apart(worker, 5, 0.002)
        assert all(f.result(timeout=10).embedding.shape == (4,) for f in futures)
    finally:
        worker.stop()
    assert fx.sizes == expected  # bounded by max_batch; the wait ends as soon as a batch is full
    assert worker.batches == len(expected) and worker.images == 5


def test_without_a_wait_only_what_is_queued_is_batched():
    release = threading.Event()

    class _Blocking(_CountingExtractor):
        def extract_with_parts(self, images):
            release.wait(30)  # the first batch holds the thread while three more queue up
            return super().extract_with_parts(images)

    fx = _Blocking()
    worker = InferenceWorker(fx, max_batch=8, batch_wait_ms=0)
    worker.start()
    try:
        first = worker.submit_embed(Image.new("RGB", (8, 8)))
        time.sleep(0.2)  # the thread took the first job alone (no wait) and is inside the extractor
        rest = [worker.submit_embed(Image.new("RGB", (8, 8))) for _ in range(3)]
        release.set()
        for f in [first, *rest]:
            f.result(timeout=30)
    finally:
        worker.stop()
    assert fx.sizes == [1, 3]


def test_a_call_that_is_not_an_embedding_never_waits_for_company():
    worker = InferenceWorker(_CountingExtractor(), max_batch=8, batch_wait_ms=60_000)
    worker.start()
    try:
        done = threading.Event()
        future = worker.submit_call(done.set)
        future.result(timeout=30)  # a one-minute batching wait would time this out
        assert done.is_set()
    finally:
        worker.stop()


@pytest.mark.parametrize("value", [-1, 1001, float("nan"), True, "4"])
def test_bad_batch_wait_is_one_line(value):
    with pytest.raises(PganError, match="batch_wait_ms"):
        ServeSettings(batch_wait_ms=value)
