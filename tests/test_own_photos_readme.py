"""The README's own-photos block, run as a newcomer types it, on real photos (``../shared/real-dev``).

The commands are read from the README itself (between ``<!-- own-photos: begin -->`` and ``end``), so
the README cannot drift from what works. The only changes: the photos are a few dozen of real-dev's
(laid out as ``photos/<vehicle>/<camera>_*.jpg``, the layout the README names), each training gets
``optim.epochs=1``, and ``pgan serve`` gets a free port and is asked one upload before it is stopped.
Then the README's Python block runs on what the commands made, and its flat-file ``--pattern`` works
on the same photos as real-dev names them.
"""

import csv
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_DEV = ROOT.parent / "shared" / "real-dev"
NAME = re.compile(r"([a-z]+_\d+)_cam(\d+)\.jpg$")
VEHICLES = 45  # 36 train (the recipe's 32 vehicles per batch fit), 9 held out

pytestmark = pytest.mark.slow


def _block(text: str, name: str) -> str:
    m = re.search(rf"<!-- {name}: begin -->\n```\w+\n(.*?)```\n<!-- {name}: end -->", text, re.S)
    assert m, f"README.md has no {name} block"
    return m.group(1)


def _readme_commands() -> list[list[str]]:
    lines = _block((ROOT / "README.md").read_text(), "own-photos").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _photos(tmp: Path) -> list[Path]:
    """The first VEHICLES real-dev vehicles (both cameras): photos/<vehicle>/<camera>_<name> links, and the
    originals' paths (flat names, for the --pattern check)."""
    by_vehicle: dict[str, list[Path]] = {}
    for path in sorted((REAL_DEV / "images").glob("*.jpg")):
        m = NAME.match(path.name)
        by_vehicle.setdefault(m.group(1), []).append(path)
    chosen = [v for v, ps in sorted(by_vehicle.items()) if len(ps) == 2][:VEHICLES]
    flat = []
    for vehicle in chosen:
        for path in by_vehicle[vehicle]:
            cam = NAME.match(path.name).group(2)
            (tmp / "photos" / vehicle).mkdir(parents=True, exist_ok=True)
            (tmp / "photos" / vehicle / f"{cam}_{path.name}").symlink_to(path)
            (tmp / "flat").mkdir(exist_ok=True)
            (tmp / "flat" / path.name).symlink_to(path)
            flat.append(path)
    return flat


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.skipif(not (REAL_DEV / "images").is_dir(), reason="../shared/real-dev is not here")
def test_the_readme_own_photos_block_runs_on_real_photos(tmp_path):
    commands = _readme_commands()
    kinds = [" ".join(c[1:3]) for c in commands]
    assert [c[0] for c in commands] == ["pgan"] * len(commands)
    assert kinds[0] == "data csv" and "serve --index" in kinds[-1]
    assert {"train --config", "eval --checkpoint", "index build", "search --index"} <= set(kinds)
    _photos(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    pgan = [sys.executable, "-m", "pgan"]

    def run(argv: list[str]) -> str:
        done = subprocess.run([*pgan, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"pgan {' '.join(argv)} failed:\n{done.stderr[-3000:]}"
        return done.stdout

    trained = []
    for command in commands:
        argv = command[1:]
        if argv[0] == "train":
            out = json.loads(run([*argv, "optim.epochs=1"]))
            assert 0.0 <= out["metrics"]["mAP"] <= 1.0
            trained.append(argv)
        elif argv[0] == "serve":
            _serve_and_ask(pgan, argv, tmp_path, env)
        else:
            stdout = run(argv)
            if argv[:2] == ["data", "csv"]:
                rows = _rows(tmp_path / "my.csv")
                assert len(rows) == 2 * VEHICLES
                query = [r for r in rows if r["split"] == "query"]
                assert query and {r["camera_id"] for r in query} == {"1"}
                assert {r["camera_id"] for r in rows if r["split"] == "gallery"} == {"2"}
                shutil.copy(tmp_path / query[0]["path"], tmp_path / "query.jpg")  # a held-out cam1 photo
            elif argv[0] == "eval":
                metrics = json.loads((tmp_path / Path(argv[2]).with_name("eval.json")).read_text())
                assert 0.0 < metrics["mAP"] <= 1.0 and "mAP" in stdout
            elif argv[0] == "index":
                report = json.loads(stdout.strip().splitlines()[-1])
                gallery = [r for r in _rows(tmp_path / "my.csv") if r["split"] == "gallery"]
                assert report["added"] == report["total"] == len(gallery)  # the gallery split only
            elif argv[0] == "search":
                hits = [json.loads(line) for line in stdout.splitlines()]
                assert hits and hits[0]["rank"] == 1 and -1.0 <= hits[0]["score"] <= 1.0
    assert {a[2] for a in trained} == {"configs/custom_baseline.yaml", "configs/custom_pgan.yaml"}
    assert (tmp_path / "runs" / "custom_pgan" / "parts" / "parts_proposals.jsonl").is_file()

    # The README's Python block, on what the commands made.
    code = _block((ROOT / "README.md").read_text(), "python") + "\nassert hits and hits[0][0].rank == 1\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def _serve_and_ask(pgan: list[str], argv: list[str], cwd: Path, env: dict) -> None:
    """Start ``pgan serve`` on a free loopback port, upload query.jpg once (bounded waits), stop it."""
    import httpx

    port = _free_port()
    proc = subprocess.Popen([*pgan, *argv, "--port", str(port)], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):  # up to 2 minutes to load the model and the index
            if proc.poll() is not None:
                pytest.fail(f"pgan serve exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("pgan serve did not answer /api/health within 2 minutes")
        with open(cwd / "query.jpg", "rb") as fh:
            r = httpx.post(f"{url}/api/search", files={"image": ("query.jpg", fh, "image/jpeg")},
                           data={"topk": "5"}, timeout=60)
        assert r.status_code == 200, r.text
        assert len(r.json()["results"]) == 5
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.skipif(not (REAL_DEV / "images").is_dir(), reason="../shared/real-dev is not here")
def test_the_readme_flat_file_pattern_reads_real_dev_names(tmp_path):
    readme = (ROOT / "README.md").read_text()
    pattern = re.search(r"--pattern\s+'([^']+)'", " ".join(readme.split())).group(1)
    flat = _photos(tmp_path)
    subprocess.run([sys.executable, "-m", "pgan", "data", "csv", "--images", str(tmp_path / "flat"), "--pattern",
                    pattern, "--out", str(tmp_path / "flat.csv")], check=True, capture_output=True)
    rows = _rows(tmp_path / "flat.csv")
    assert len(rows) == len(flat) == 2 * VEHICLES
    assert {r["camera_id"] for r in rows if r["split"] == "query"} == {"1"}
