"""Load test of ``pgan serve`` on loopback: eager PyTorch, ONNX fp32 and ONNX int8 services side by side.

1. Prepares (once; reused on a rerun) a small synthetic benchmark, a quickly trained PGAN
   model (the synthetic CPU recipe, ``--epochs`` epochs), a gallery index of its test split,
   the model's ONNX export (fp32) and its static int8 quantisation (calibrated on training
   images), and a second index built with the int8 model (its embeddings are another model's:
   the fp32 export serves the eager index, whose fingerprint it shares).
2. For each service in ``--services`` (default ``eager onnx-fp32 onnx-int8``), one after the
   other in the same run: starts ``python -m pgan serve`` as a subprocess on 127.0.0.1 (a free
   port, ``--threads`` model threads, ``--prep-threads`` preparation threads) and waits for
   ``/api/health``.
3. Runs ``--clients`` threads of searches (uploads of the query split's photos) for
   ``--seconds`` (and at most ``--requests`` per client, when given); every
   ``--corrupt-every``-th request of a client is instead a corrupt upload (truncated JPEG,
   random bytes, zero bytes, a decompression-bomb header), which must be refused with a 4xx
   (400; 413 for the bomb). Corrupt uploads are counted apart. An *error* is any other
   outcome: a failed connection, a 5xx (a 503 included), a valid search not answered 200, or a
   corrupt upload not refused.
4. Checks the server still answers correctly afterwards: fixed queries give the same ranked
   ids and scores (to 1e-5) as before the load.

Latency percentiles are over the valid searches (client-side wall time, upload included); the
clients run in this process, so on a small machine they take CPU from the server too.
Writes ``docs/serve_load.json`` (the raw figures, per service, and the ratios int8/eager and
fp32/eager) and prints a markdown table.

Usage: ``PYTHONPATH=src python benchmarks/serve_load.py [--seconds 40 --clients 8]``
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
SERVICES = ("eager", "onnx-fp32", "onnx-int8")
CALIBRATION_IMAGES = 32


def prepare(work: Path, epochs: int, parts: str) -> dict[str, Path]:
    """The data root, checkpoint, ONNX exports and indexes, each made only if missing."""
    from pgan.engine.train import train
    from pgan.index import build_index
    from pgan.inference import FeatureExtractor, export_onnx, quantize_int8
    from pgan.recipes import synth_cpu_config
    from pgan.synth import generate_synth, synth_config_from_dict

    data, run, gallery = work / "synth", work / "model", work / "gallery"
    generate_synth(data, synth_config_from_dict(SYNTH), progress=False)
    if not gallery.is_dir():  # outside the dataset's root: gallery boxes come from `parts`, as a query's do
        shutil.copytree(data / "image_test", gallery)
    ckpt = run / "last.pt"
    if not (run / "result.json").is_file():
        cfg = synth_cpu_config("pgan", str(data), str(run), 0, optim__epochs=epochs, optim__warmup_epochs=0.0,
                               optim__milestones=(100,), run__progress=False)
        train(cfg, resume=ckpt.is_file())
    fp32, int8 = work / "pgan.onnx", work / "pgan-int8.onnx"
    if not fp32.is_file():
        export_onnx(ckpt, fp32)
    if not int8.is_file():
        quantize_int8(fp32, int8, sorted((data / "image_train").glob("*.jpg"))[:CALIBRATION_IMAGES], parts=parts)
    paths = {"data": data, "checkpoint": ckpt, "onnx-fp32": fp32, "onnx-int8": int8,
             "index": work / "index", "index-int8": work / "index-int8"}
    for name, fx in (("index", lambda: FeatureExtractor(ckpt, parts=parts, device="cpu")),
                     ("index-int8", lambda: FeatureExtractor(int8, parts=parts, runtime="onnx", device="cpu"))):
        if not (paths[name] / "index.done").is_file():
            build_index(gallery, paths[name], extractor=fx(), progress=False)
            (paths[name] / "index.done").write_text("ok\n")
    return paths


def service_args(name: str, paths: dict[str, Path]) -> list[str]:
    """The ``pgan serve`` arguments that choose the model (and its index) of one service."""
    if name == "eager":
        return ["--index", str(paths["index"]), "--checkpoint", str(paths["checkpoint"])]
    index = paths["index-int8"] if name == "onnx-int8" else paths["index"]
    return ["--index", str(index), "--runtime", "onnx", "--onnx", str(paths[name])]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, model_args: list[str], port: int, log_file: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pgan", "serve", *model_args, "--host", "127.0.0.1", "--port", str(port),
           "--threads", str(args.threads), "--prep-threads", str(args.prep_threads), "--parts", args.parts,
           "--max-batch", str(args.max_batch), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
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
    """Requests until ``deadline`` (and at most ``n``, when ``n`` > 0)."""
    rng = random.Random(seed)
    with httpx.Client(base_url=base, timeout=60) as client:
        i = 0
        while time.monotonic() < deadline and (n <= 0 or i < n):
            i += 1
            if corrupt_every and i % corrupt_every == 0:
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


def _pct(lat: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(lat, q)), 1) if len(lat) else None


def run_load(args: argparse.Namespace, name: str, model_args: list[str], queries: list[tuple[bytes, int]]) -> dict:
    """One service, the whole client load, the after-load check -> its figures."""
    bad = corrupt_payloads(queries[0][0])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t_start = time.perf_counter()
    proc = start_server(args, model_args, port, args.work / f"server-{name}.log")
    startup = time.perf_counter() - t_start
    try:
        fixed = queries[:: max(1, len(queries) // 5)][:5]
        before = fixed_answers(base, fixed)  # also the warm-up
        info0 = httpx.get(f"{base}/api/info").json()
        tally = Tally()
        deadline = time.monotonic() + args.seconds
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
    batches = info1["inference"]["batches"] - info0["inference"]["batches"]
    images = info1["inference"]["images"] - info0["inference"]["images"]
    consistent = same_answers(before, after)
    return {
        "service": name, "runtime": info1.get("runtime"), "model_fingerprint": info1["model_fingerprint"],
        "requests": len(lat), "errors": len(tally.errors) + int(not consistent) + int(not alive),
        "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95), "p99_ms": _pct(lat, 99),
        "throughput_rps": round(len(lat) / wall, 2), "wall_s": round(wall, 1), "startup_s": round(startup, 1),
        "corrupt_uploads": tally.corrupt_sent, "corrupt_refused_4xx": tally.corrupt_refused,
        "answers_unchanged_after_load": consistent, "server_alive_after_load": alive,
        "top1_same_vehicle": round(tally.correct_top1 / max(len(lat), 1), 3),
        "mean_batch": round(images / max(batches, 1), 2), "gallery_size": info1["gallery_size"],
        "embedding_dim": info1["embedding_dim"], "error_samples": tally.errors[:10],
    }


def table(results: dict[str, dict]) -> str:
    """The markdown table of the services' figures."""
    lines = ["| service | valid searches | errors | corrupt refused | p50 ms | p95 ms | p99 ms | req/s "
             "| mean batch |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} ({r['runtime']}) | {r['requests']} | {r['errors']} | "
                     f"{r['corrupt_refused_4xx']}/{r['corrupt_uploads']} | {r['p50_ms']} | {r['p95_ms']} | "
                     f"{r['p99_ms']} | {r['throughput_rps']} | {r['mean_batch']} |")
    return "\n".join(lines)


def ratios(results: dict[str, dict]) -> dict[str, float]:
    """Throughput and p95 latency of each ONNX service over the eager one's (same run)."""
    out = {}
    eager = results.get("eager")
    for name, short in (("onnx-int8", "int8"), ("onnx-fp32", "fp32")):
        r = results.get(name)
        if eager and r and eager["throughput_rps"] and eager["p95_ms"] and r["p95_ms"]:
            out[f"throughput_{short}_over_eager"] = round(r["throughput_rps"] / eager["throughput_rps"], 2)
            out[f"p95_{short}_over_eager"] = round(r["p95_ms"] / eager["p95_ms"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=ROOT / "data" / "serve-bench")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--parts", default="proposals", help="part source for photos (FeatureExtractor parts=)")
    ap.add_argument("--services", nargs="+", default=list(SERVICES), choices=SERVICES)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=40, help="load duration per service")
    ap.add_argument("--requests", type=int, default=0,
                    help="at most this many requests per client and service (corrupt uploads included); 0: no cap")
    ap.add_argument("--corrupt-every", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="the server's model threads (torch or onnxruntime)")
    ap.add_argument("--prep-threads", type=int, default=2, help="the server's decoding / part-box threads")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "serve_load.json")
    args = ap.parse_args()

    t0 = time.perf_counter()
    paths = prepare(args.work, args.epochs, args.parts)
    prepared_s = time.perf_counter() - t0
    photos = sorted((paths["data"] / "image_query").glob("*.jpg"))
    queries = [(p.read_bytes(), int(p.name[:4])) for p in photos]
    results = {}
    for name in args.services:
        results[name] = run_load(args, name, service_args(name, paths), queries)
        print(f"{name}: {results[name]['throughput_rps']} req/s, p95 {results[name]['p95_ms']} ms, "
              f"{results[name]['errors']} errors", flush=True)
    out = {"services": results, "ratios": ratios(results), "errors": sum(r["errors"] for r in results.values()),
           "clients": args.clients, "seconds_per_service": args.seconds, "requests_cap_per_client": args.requests,
           "corrupt_every": args.corrupt_every, "server_threads": args.threads, "prep_threads": args.prep_threads,
           "max_batch": args.max_batch, "parts": args.parts, "cpu_count": os.cpu_count(),
           "load_average_1min": round(os.getloadavg()[0], 2), "prepare_s": round(prepared_s, 1),
           "total_s": round(time.perf_counter() - t0, 1),
           "model": f"pgan mobilenet_v2 160 px, {args.epochs} epochs of the synthetic CPU recipe; int8: static "
                    f"QDQ calibrated on {CALIBRATION_IMAGES} training images, served with its own index"}
    out["table_md"] = table(results)
    atomic_write_json(args.out, out)
    print(out["table_md"])
    for key, value in out["ratios"].items():
        print(f"{key}: {value}")
    print(f"wrote {args.out} ({out['total_s']} s in all, {out['prepare_s']} s preparing)")
    if out["errors"]:
        samples = [e for r in results.values() for e in r["error_samples"]][:3]
        raise SystemExit(f"{out['errors']} errors: {samples}")


if __name__ == "__main__":
    main()
