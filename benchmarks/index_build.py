"""Index build throughput on the demo's synthetic gallery, and its resume after a hard kill.

Runs ``pgan index build`` in a child process, kills it with SIGKILL after
``--kill-after`` seconds (no clean-up of any kind can run), counts the rows the
index kept, runs the same command again and checks that the second run embedded
exactly the missing files (nothing twice, nothing lost). Reports images/s of an
uninterrupted build too (a fresh index folder). One thread, under ``nice``.

Usage: ``nice -n 10 python benchmarks/index_build.py --checkpoint runs/demo/pgan/last.pt
--images data/demo-synth/image_test [--out docs/index_build.json]``
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="runs/demo/pgan/last.pt")
    ap.add_argument("--images", default="data/demo-synth/image_test")
    ap.add_argument("--kill-after", type=float, default=20.0)
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
        time.sleep(args.kill_after)
        child.send_signal(signal.SIGKILL)
        child.wait()
        kept = _rows(killed) if (killed / "index.sqlite").is_file() else 0
        print(f"killed after {args.kill_after:.0f} s: {kept} rows kept", flush=True)
        again = subprocess.run(_cmd(args.checkpoint, args.images, killed), env=env, capture_output=True, text=True)
        if again.returncode:
            raise SystemExit(again.stderr[-2000:])
        resumed = json.loads(again.stdout.strip().splitlines()[-1])
        print("resumed:", json.dumps(resumed), flush=True)
        result = {
            "images": report["total"], "indexed": report["added"], "skipped": report["skipped"],
            "images_per_s": report["images_per_s"], "build_wall_s": round(wall, 1),
            "killed_after_s": args.kill_after, "rows_kept_after_kill": kept,
            "resume_already": resumed["already"], "resume_added": resumed["added"],
            "nothing_twice_nothing_lost": resumed["already"] == kept
            and kept + resumed["added"] == report["added"] and _rows(killed) == report["added"],
            "checkpoint": args.checkpoint, "threads": 1,
        }
    print(json.dumps(result))
    atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
