"""The search page in a real browser: Debian's headless chromium driven by Playwright's Python API.

A real (tiny) model and gallery index; the server runs uvicorn on a free 127.0.0.1 port in a
thread, with a bearer token. The page is driven as a user would: enter the token, upload a
query photo of the synthetic test split, read the grid, switch to the sightings view and back,
click a result, upload a corrupt file.
The query photo is the first one whose top-1 (by the Python API) is its own vehicle: this
1-epoch model is not always right, and what is tested here is that the page shows the
service's answer. The screenshot goes to the test's temporary folder: running the suite never
rewrites a tracked file (``docs/serve_page.png`` is not a test's output).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pgan.serve import ServeSettings, create_app, load_service
from serve_helpers import build_tiny_index, running_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000  # per wait; every wait is bounded

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                 reason="Debian's chromium is not installed (apt-get install chromium; "
                                        ".ci/run installs it)")]


def _pick_query(index, extractor, queries: list[Path]) -> Path:
    hits = index.search(extractor(queries), topk=1)
    for q, h in zip(queries, hits):
        if h and h[0].vehicle_id == int(q.name[:4]):
            return q
    raise AssertionError("the tiny model ranks no query's own vehicle first")


def test_page_search_click_and_errors_in_chromium(tiny_synth, tiny_checkpoint, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    build_tiny_index(tiny_synth, tiny_checkpoint("pgan"), tmp_path)
    index, extractor = load_service(tmp_path / "index", device="cpu")
    query = _pick_query(index, extractor, sorted((tiny_synth / "image_query").glob("*.jpg")))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(query.read_bytes()[:200])
    screenshot = tmp_path / "serve_page.png"
    app = create_app(index, extractor, ServeSettings(token="t0ken"))
    with running_server(app) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            outside = []  # any request leaving the server (a CDN, a font) would break offline use
            page.on("request", lambda r: r.url.startswith((url, "blob:", "data:")) or outside.append(r.url))
            page.goto(url + "/")
            expect(page.locator("#token-row")).to_be_visible()  # /api/info answered 401
            page.fill("#token", "t0ken")
            page.click("#token-save")
            expect(page.locator("#info")).to_contain_text("gallery of 16 images")
            expect(page.locator("#token-row")).to_be_hidden()

            page.fill("#min-score", "-1")  # every match a sighting: the page is tested here, not the tiny model
            page.set_input_files("#file", str(query))
            cards = page.locator("#results .result")
            expect(cards).to_have_count(10)  # the default top-k
            assert cards.first.get_attribute("data-rank") == "1"
            assert cards.first.get_attribute("data-vehicle-id") == str(int(query.name[:4]))
            expect(cards.first).to_contain_text(f"vehicle {int(query.name[:4])}")
            assert page.locator("#query .box").count() > 0  # the query's part boxes are drawn
            assert page.locator("#results .box").count() > 0
            page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            page.screenshot(path=str(screenshot), full_page=True)

            page.click("#view-sightings")  # the same answer by camera, each camera's row in time order
            expect(page.locator("#results")).to_be_hidden()
            expect(page.locator("#sightings .result")).to_have_count(10)
            rows = page.locator("#sightings .camera")
            expect(rows.first.locator("h3")).to_contain_text("camera")
            for i in range(rows.count()):
                times = rows.nth(i).locator(".time").all_inner_texts()
                assert times == sorted(times, key=float), times  # synthetic frame numbers, earliest first
            page.click("#view-matches")
            expect(page.locator("#results")).to_be_visible()

            second = cards.nth(1).get_attribute("data-image-id")
            cards.nth(1).click()  # search with a result
            expect(page.locator("#query figcaption")).to_contain_text(f"gallery image {second}")
            expect(cards.first).to_have_attribute("data-image-id", second)  # an image finds itself first

            page.set_input_files("#file", str(bad))
            expect(page.locator("#error")).to_contain_text("corrupt or truncated image")
            page.fill("#gallery-id", "../../etc/passwd")
            page.click("#by-id button")
            expect(page.locator("#error")).to_contain_text("enter a gallery image id")
            page.fill("#gallery-id", f"{url}/api/images/{second}?size=64")  # a pasted image URL works
            page.click("#by-id button")
            expect(page.locator("#error")).to_be_hidden()
            expect(cards.first).to_have_attribute("data-image-id", second)
            assert outside == []
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
