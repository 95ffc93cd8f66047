"""The search page's figures in docs/: ``serve_page.png`` (the ranked matches) and ``serve_sightings.png``.

A docs command, not a test: the pictures in docs/ come from commands like this one, so they can be
taken again after the page changes (``make docs-figures``).

1. Prepares (once under ``--work``; reused on a rerun) a small synthetic set (``pgan synth``'s
   generator) and a PGAN MobileNetV2 model trained for ``--epochs`` epochs of the demo's CPU recipe;
   or takes a trained model with ``--checkpoint`` and its data root with ``--data`` (e.g. the demo's:
   ``--checkpoint runs/demo/pgan/last.pt --data data/demo``).
2. Indexes a copy of the test split outside the data root (gallery boxes from part proposals, as an
   uploaded photo's are), in a temporary folder.
3. Picks the query: ``--query``, else the first query photo (by name) whose top-1 by the Python API
   is its own vehicle; the page is what is shown, not the model's hit rate.
4. Serves the app with uvicorn on a free 127.0.0.1 port in a thread, and drives Debian's headless
   chromium with Playwright (no browser download): uploads the query, screenshots the ranked grid,
   sets ``min score`` to ``--min-score`` so that the sightings of several cameras show, switches to
   Sightings, screenshots it. Both PNGs are written atomically.

About two minutes of CPU with one thread on the default set.

Usage: ``PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/serve_page.py [--checkpoint CKPT --data ROOT]``
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000  # per page wait; every wait is bounded
# Small enough to train in about a minute and a half on one thread; six cameras, so sightings spread.
SYNTH = {"num_train_ids": 32, "num_test_ids": 12, "images_per_id": [6, 8], "num_cameras": 6,
         "image_size": 160, "seed": 0, "workers": 1}


def prepare(work: Path, epochs: int) -> tuple[Path, Path]:
    """The synthetic data root and a trained checkpoint under ``work``, each made only if missing."""
    from pgan.demo import DEMO_RECIPE
    from pgan.engine.train import train
    from pgan.recipes import synth_cpu_config
    from pgan.synth import generate_synth, synth_config_from_dict

    data, run = work / "synth", work / "model"
    generate_synth(data, synth_config_from_dict(SYNTH), progress=False)
    if not (run / "result.json").is_file():
        cfg = synth_cpu_config("pgan", str(data), str(run), 0, recipe=DEMO_RECIPE, optim__epochs=epochs,
                               data__workers=1, run__progress=False)
        train(cfg, resume=(run / "last.pt").is_file())
    return data, run / "last.pt"


def build_gallery(data: Path, checkpoint: Path, root: Path) -> Path:
    """Index a copy of ``data/image_test`` outside the data root: its boxes come from proposals, as an upload's."""
    from pgan.index import build_index

    shutil.copytree(data / "image_test", root / "gallery")
    build_index(root / "gallery", root / "index", checkpoint=checkpoint, parts="proposals", device="cpu",
                batch_size=16, progress=False)
    return root / "index"


def pick_query(index, extractor, queries: list[Path]) -> Path:
    """The first query photo whose top-1 is its own vehicle (VeRi-style names: ``VVVV_cCCC_...``)."""
    hits = index.search(extractor(queries), topk=1)
    for q, h in zip(queries, hits):
        if h and h[0].vehicle_id == int(q.name[:4]):
            return q
    raise SystemExit(f"no query photo of {queries[0].parent} ranks its own vehicle first; give --query")


@contextlib.contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", wait_s: float = 60.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port of ``host`` in a daemon thread; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + wait_s  # bounded: the lifespan warms the model up first
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise SystemExit(f"the server did not start within {wait_s:.0f} s")
        time.sleep(0.1)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def screenshots(url: str, query: Path, min_score: float, width: int = 1280) -> tuple[bytes, bytes]:
    """PNG bytes of the page after uploading ``query``: the ranked view, then the Sightings view."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url + "/")
            expect(page.locator("#info")).to_contain_text("gallery of")
            page.fill("#min-score", str(min_score))
            page.locator("#min-score").blur()  # no focus ring in the picture
            page.set_input_files("#file", str(query))
            expect(page.locator("#results .result").first).to_be_visible()
            page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            ranked = page.screenshot(full_page=True)
            page.click("#view-sightings")
            expect(page.locator("#sightings .camera").first).to_be_visible()
            page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            cameras = page.locator("#sightings .camera").count()
            status = page.locator("#status").inner_text()
            sightings = page.screenshot(full_page=True)
        finally:
            browser.close()
    print(f"query {query.name}, min score {min_score}: {status}", flush=True)
    if cameras < 2:
        print(f"WARNING: sightings on {cameras} camera(s) only; lower --min-score", flush=True)
    return ranked, sightings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="data/serve-page", help="where the synthetic set and model are kept")
    ap.add_argument("--epochs", type=int, default=4, help="training epochs of the default model")
    ap.add_argument("--checkpoint", help="a trained model instead (e.g. runs/demo/pgan/last.pt); needs --data")
    ap.add_argument("--data", help="its data root (VeRi layout: image_test, image_query), e.g. data/demo")
    ap.add_argument("--query", help="the query photo (default: the first query photo ranked right at top-1)")
    ap.add_argument("--min-score", type=float, default=0.7,
                    help="the page's min score field (Sightings); 0.7 suits the default model's scores")
    ap.add_argument("--out", default="docs", help="folder of serve_page.png and serve_sightings.png")
    args = ap.parse_args()
    if (args.checkpoint is None) != (args.data is None):
        raise SystemExit("--checkpoint and --data go together")
    if not Path(CHROMIUM).is_file():
        raise SystemExit(f"{CHROMIUM} is missing (apt-get install chromium)")

    import torch

    from pgan.serve import ServeSettings, create_app, load_service
    from pgan.utils.atomic import atomic_open

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if args.checkpoint:
        data, checkpoint = Path(args.data), Path(args.checkpoint)
    else:
        data, checkpoint = prepare(Path(args.work), args.epochs)
    print(f"model ready: {checkpoint} ({time.perf_counter() - t0:.0f} s)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        index, extractor = load_service(build_gallery(data, checkpoint, Path(tmp)), device="cpu", threads=1)
        queries = sorted((data / "image_query").glob("*.jpg"))
        query = Path(args.query) if args.query else pick_query(index, extractor, queries)
        with serve_in_thread(create_app(index, extractor, ServeSettings())) as url:
            ranked, sightings = screenshots(url, query, args.min_score)
    for name, png in (("serve_page.png", ranked), ("serve_sightings.png", sightings)):
        with atomic_open(Path(args.out) / name, "wb") as fh:
            fh.write(png)
        print(f"wrote {Path(args.out) / name} ({len(png) // 1024} KiB)", flush=True)
    print(f"done in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
