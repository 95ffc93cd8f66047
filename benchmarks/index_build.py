"""Index build throughput on the demo's synthetic gallery, and its resume after a hard kill.

Runs ``pgan index build`` in a child process, kills it with SIGKILL once the
index holds ``--kill-at`` of the gallery (no clean-up of any kind can run), counts the rows the
index kept, runs the same command again and checks that the second run embedded
exactly the missing files (nothing twice, nothing lost). Reports images/s of an
uninterrupted build too (a fresh index folder), and, with ``--queries``, how often
``pgan search`` (the library call behind it) puts the query's vehicle in the top 5
(vehicle ids from the VeRi-style names; every gallery image counts, same camera
included, as for a user's search). One thread, under ``nice``.

Usage: ``nice -n 10 python benchmarks/index_build.py --checkpoint runs/demo/pgan/last.pt
--images data/demo/image_test [--out docs/index_build.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pgan.utils.atomic import atomic_write_json


def _cmd(checkpoint: str, images: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "pgan", "index", "build", "--checkpoint", checkpoint, "--images", images,
            "--out", str(out), "--device", "cpu", "--quiet", "--batch-size", "32"]


def _rows(index: Path) -> int:
    with sqlite3.connect(index / "index.sqlite") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])


def _top5(index: Path, queries: Path) -> dict:
    import torch

    from pgan.index.gallery import entry_from_name
    from pgan.index.search import search_images

    torch.set_num_threads(1)
    photos = sorted(queries.glob("*.jpg"))
    results = search_images(index, photos, topk=5, device="cpu")
    hit1 = [r.hits[0].vehicle_id == entry_from_name(Path(r.query)).vehicle_id for r in results]
    hit5 = [any(h.vehicle_id == entry_from_name(Path(r.query)).vehicle_id for h in r.hits) for r in results]
    out = {"queries": len(photos), "top1_same_vehicle": round(sum(hit1) / len(photos), 4),
           "top5_same_vehicle": round(sum(hit5) / len(photos), 4)}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="runs/demo/pgan/last.pt")
    ap.add_argument("--images", default="data/demo/image_test")
    ap.add_argument("--kill-at", type=float, default=0.4, help="share of the gallery indexed before the kill")
    ap.add_argument("--queries", default="data/demo/image_query")
    ap.add_argument("--out", default="docs/index_build.json")
    args = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "full"
        t = time.perf_counter()
        done = subprocess.run(_cmd(args.checkpoint, args.images, full), env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if done.returncode:
            raise SystemExit(done.stderr[-2000:])
        report = json.loads(done.stdout.strip().splitlines()[-1])
        print("uninterrupted:", json.dumps(report), f"wall {wall:.1f} s", flush=True)

        killed = Path(tmp) / "killed"
        child = subprocess.Popen(_cmd(args.checkpoint, args.images, killed), env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        t = time.perf_counter()
        while child.poll() is None:
            time.sleep(0.2)
            try:
                if (killed / "index.sqlite").is_file() and _rows(killed) >= args.kill_at * report["added"]:
                    break
            except sqlite3.OperationalError:  # the table is not created yet
                pass
        child.send_signal(signal.SIGKILL)
        child.wait()
        killed_after = time.perf_counter() - t
        kept = _rows(killed)
        print(f"killed after {killed_after:.1f} s: {kept} rows kept", flush=True)
        again = subprocess.run(_cmd(args.checkpoint, args.images, killed), env=env, capture_output=True, text=True)
        if again.returncode:
            raise SystemExit(again.stderr[-2000:])
        resumed = json.loads(again.stdout.strip().splitlines()[-1])
        print("resumed:", json.dumps(resumed), flush=True)
        result = {
            "images": report["total"], "indexed": report["added"], "skipped": report["skipped"],
            "images_per_s": report["images_per_s"], "build_wall_s": round(wall, 1),
            "killed_after_s": round(killed_after, 1), "rows_kept_after_kill": kept,
            "resume_already": resumed["already"], "resume_added": resumed["added"],
            "nothing_twice_nothing_lost": resumed["already"] == kept
            and kept + resumed["added"] == report["added"] and _rows(killed) == report["added"],
            "checkpoint": args.checkpoint, "threads": 1,
        }
        if args.queries:
            result.update(_top5(full, Path(args.queries)))
    print(json.dumps(result))
    atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
