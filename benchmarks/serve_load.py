"""Load test of ``pgan serve`` on loopback: concurrent clients, latency percentiles, zero errors.

1. Prepares (once; reused on a rerun) a small synthetic benchmark, a quickly trained PGAN
   model (the synthetic CPU recipe, ``--epochs`` epochs) and a gallery index of its test split.
2. Starts ``python -m pgan serve`` as a subprocess on 127.0.0.1 (a free port, ``--threads``
   torch threads) and waits for ``/api/health``.
3. Runs ``--clients`` threads of ``--requests`` searches each (uploads of the query split's
   photos), bounded by ``--max-seconds``; every ``--corrupt-every``-th request of a client is
   instead a corrupt upload (truncated JPEG, random bytes, zero bytes, a decompression-bomb
   header), which must be answered 400/413. An *error* is any other outcome: a failed
   connection, a 5xx, a valid search not answered 200, or a corrupt upload not refused.
4. Checks the server still answers correctly afterwards: fixed queries give the same ranked
   ids and scores (to 1e-5) as before the load.

Latency percentiles are over the valid searches (client-side wall time, upload included).
Writes ``docs/serve_load.json``.

Usage: ``PYTHONPATH=src python benchmarks/serve_load.py [--clients 8 --requests 200]``
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import httpx
import numpy as np

from pgan.utils.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
SYNTH = {"num_train_ids": 40, "num_test_ids": 20, "images_per_id": [6, 8], "num_cameras": 6,
         "image_size": 160, "seed": 0, "workers": 1}


def prepare(work: Path, epochs: int, parts: str) -> tuple[Path, Path, Path]:
    """(data root, checkpoint, index folder), each made only if missing."""
    from pgan.engine.train import train
    from pgan.index import build_index
    from pgan.inference import FeatureExtractor
    from pgan.recipes import synth_cpu_config
    from pgan.synth import generate_synth, synth_config_from_dict

    data, run, index, gallery = work / "synth", work / "model", work / "index", work / "gallery"
    generate_synth(data, synth_config_from_dict(SYNTH), progress=False)
    if not gallery.is_dir():  # outside the dataset's root: gallery boxes come from `parts`, as a query's do
        shutil.copytree(data / "image_test", gallery)
    ckpt = run / "last.pt"
    if not (run / "result.json").is_file():
        cfg = synth_cpu_config("pgan", str(data), str(run), 0, optim__epochs=epochs, optim__warmup_epochs=0.0,
                               optim__milestones=(100,), run__progress=False)
        train(cfg, resume=ckpt.is_file())
    if not (index / "index.done").is_file():
        build_index(gallery, index, extractor=FeatureExtractor(ckpt, parts=parts, device="cpu"),
                    progress=False)
        (index / "index.done").write_text("ok\n")
    return data, ckpt, index


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index: Path, ckpt: Path, port: int, threads: int, parts: str, max_batch: int,
                 log_file: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pgan", "serve", "--index", str(index), "--checkpoint", str(ckpt),
           "--host", "127.0.0.1", "--port", str(port), "--threads", str(threads), "--parts", parts,
           "--max-batch", str(max_batch), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(cmd, stdout=log_file.open("w"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}; see {log_file}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"the server did not answer within 180 s; see {log_file}")


def corrupt_payloads(valid: bytes) -> list[tuple[str, bytes]]:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 49)) + chunk(b"IEND", b""))
    return [("truncated.jpg", valid[: len(valid) // 3]), ("random.jpg", random.Random(0).randbytes(4000)),
            ("empty.jpg", b""), ("bomb.png", bomb)]


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.corrupt_sent = self.corrupt_refused = self.correct_top1 = 0


def client_loop(base: str, queries: list[tuple[bytes, int]], n: int, corrupt_every: int, deadline: float,
                seed: int, tally: Tally, bad: list[tuple[str, bytes]]) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=base, timeout=60) as client:
        for i in range(n):
            if time.monotonic() > deadline:
                return
            if corrupt_every and i % corrupt_every == corrupt_every - 1:
                name, payload = bad[rng.randrange(len(bad))]
                try:
                    r = client.post("/api/search", files={"image": (name, payload, "image/jpeg")})
                    ok = r.status_code in (400, 413) and "error" in r.json()
                    why = f"corrupt {name}: {r.status_code}"
                except (httpx.HTTPError, ValueError) as exc:
                    ok, why = False, f"corrupt {name}: {type(exc).__name__}"
                with tally.lock:
                    tally.corrupt_sent += 1
                    tally.corrupt_refused += ok
                    if not ok:
                        tally.errors.append(why)
                continue
            data, vid = queries[rng.randrange(len(queries))]
            t0 = time.perf_counter()
            try:
                r = client.post("/api/search", files={"image": ("q.jpg", data, "image/jpeg")}, data={"topk": "10"})
                dt = time.perf_counter() - t0
                ok = r.status_code == 200
                top = r.json()["results"][0]["vehicle_id"] if ok else None
                why = f"search: {r.status_code} {r.text[:100]}"
            except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
                dt, ok, top, why = time.perf_counter() - t0, False, None, f"search: {type(exc).__name__}"
            with tally.lock:
                if ok:
                    tally.latencies.append(dt)
                    tally.correct_top1 += int(top == vid)
                else:
                    tally.errors.append(why)


def fixed_answers(base: str, queries: list[tuple[bytes, int]]) -> list[list[tuple[int, float]]]:
    out = []
    for data, _ in queries:
        r = httpx.post(f"{base}/api/search", files={"image": ("q.jpg", data, "image/jpeg")}, data={"topk": "10"},
                       timeout=60)
        r.raise_for_status()
        out.append([(h["image_id"], h["score"]) for h in r.json()["results"]])
    return out


def same_answers(a: list, b: list) -> bool:
    return all([i for i, _ in x] == [i for i, _ in y] and np.allclose([s for _, s in x], [s for _, s in y],
                                                                          atol=1e-5) for x, y in zip(a, b))


def run_load(args: argparse.Namespace, index: Path, ckpt: Path, queries: list[tuple[bytes, int]],
             max_batch: int, log_name: str) -> dict:
    """One server (``max_batch``), the whole client load, the after-load check -> figures."""
    bad = corrupt_payloads(queries[0][0])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(index, ckpt, port, args.threads, args.parts, max_batch, args.work / log_name)
    try:
        fixed = queries[:: max(1, len(queries) // 5)][:5]
        before = fixed_answers(base, fixed)
        info0 = httpx.get(f"{base}/api/info").json()["inference"]
        tally = Tally()
        deadline = time.monotonic() + args.max_seconds
        threads = [threading.Thread(target=client_loop, args=(base, queries, args.requests, args.corrupt_every,
                                                              deadline, seed, tally, bad))
                   for seed in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        info1 = httpx.get(f"{base}/api/info").json()
        after = fixed_answers(base, fixed)
        alive = proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)
    lat = np.array(tally.latencies) * 1000
    batches = info1["inference"]["batches"] - info0["batches"]
    images = info1["inference"]["images"] - info0["images"]
    consistent = same_answers(before, after)
    return {
        "requests": len(lat), "errors": len(tally.errors) + int(not consistent) + int(not alive),
        "p50_ms": round(float(np.percentile(lat, 50)), 1), "p95_ms": round(float(np.percentile(lat, 95)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1), "throughput_rps": round(len(lat) / wall, 2),
        "wall_s": round(wall, 1), "clients": args.clients, "requests_per_client": args.requests,
        "corrupt_uploads": tally.corrupt_sent, "corrupt_refused_4xx": tally.corrupt_refused,
        "answers_unchanged_after_load": consistent, "server_alive_after_load": alive,
        "top1_same_vehicle": round(tally.correct_top1 / max(len(lat), 1), 3),
        "mean_batch": round(images / max(batches, 1), 2), "max_batch": max_batch,
        "gallery_size": info1["gallery_size"], "embedding_dim": info1["embedding_dim"],
        "error_samples": tally.errors[:10],
    }


def _row(name: str, r: dict) -> str:
    return (f"| {name} | {r['requests']} | {r['errors']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
            f"{r['throughput_rps']} | {r['mean_batch']} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=ROOT / "data" / "serve-bench")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--parts", default="proposals", help="part source for photos (FeatureExtractor parts=)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=200, help="per client (corrupt uploads included)")
    ap.add_argument("--corrupt-every", type=int, default=10)
    ap.add_argument("--max-seconds", type=float, default=900, help="per server run")
    ap.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--no-compare", action="store_true", help="skip the unbatched (--max-batch 1) run")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "serve_load.json")
    args = ap.parse_args()

    data, ckpt, index = prepare(args.work, args.epochs, args.parts)
    photos = sorted((data / "image_query").glob("*.jpg"))
    queries = [(p.read_bytes(), int(p.name[:4])) for p in photos]
    result = run_load(args, index, ckpt, queries, args.max_batch, "server.log")
    result.update({"server_threads": args.threads, "parts": args.parts, "cpu_count": os.cpu_count(),
                   "model": f"pgan mobilenet_v2 160 px, {args.epochs} epochs of the synthetic CPU recipe"})
    rows = [_row(f"batched (max {args.max_batch})", result)]
    if not args.no_compare:
        single = run_load(args, index, ckpt, queries, 1, "server-unbatched.log")
        result["unbatched"] = single
        result["batching_speedup"] = round(result["throughput_rps"] / single["throughput_rps"], 2)
        result["errors"] += single["errors"]
        rows.append(_row("one at a time (max 1)", single))
    atomic_write_json(args.out, result)
    print("| server | requests | errors | p50 ms | p95 ms | p99 ms | throughput (req/s) | mean batch |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if "batching_speedup" in result:
        print(f"batching: {result['batching_speedup']}x the throughput of one query at a time (same run)")
    print(f"wrote {args.out}")
    if result["errors"]:
        raise SystemExit(f"{result['errors']} errors: {result['error_samples'][:3]}")


if __name__ == "__main__":
    main()
