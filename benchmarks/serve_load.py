"""Load test of ``pgan serve`` on loopback: eager PyTorch, ONNX fp32 and ONNX int8 services side by side.

1. Prepares (once; reused on a rerun) a small synthetic benchmark, a quickly trained PGAN
   model (the synthetic CPU recipe, ``--epochs`` epochs), a gallery index of its test split,
   the model's ONNX export (fp32) and its static int8 quantisation (calibrated on training
   images), and a second index built with the int8 model (its embeddings are another model's:
   the fp32 export serves the eager index, whose fingerprint it shares). The ``baseline*``
   services get the same from a baseline model (no parts) trained with the same recipe, and the
   ``boxhead*`` services from PGAN trained with ``model.box_head=true`` (same recipe and seed,
   ``--boxhead-epochs`` epochs: see :data:`BOXHEAD_EPOCHS`), served
   with ``--parts model``: the network's own box head finds an upload's parts in the same forward
   pass, so the service makes no proposals.
2. For each service in ``--services`` (default ``eager onnx-fp32 onnx-int8 baseline
   baseline-onnx-int8 boxhead-onnx-int8``), one after the other in the same run: starts ``python -m pgan serve`` as
   a subprocess on 127.0.0.1 (a free port, ``--threads`` model threads, ``--prep-threads``
   preparation threads) and waits for ``/api/health``.
3. Runs ``--clients`` threads of searches (uploads of the query split's photos) for
   ``--seconds`` (and at most ``--requests`` per client, when given); every
   ``--corrupt-every``-th request of a client is instead a corrupt upload (truncated JPEG,
   random bytes, zero bytes, a decompression-bomb header), which must be refused with a 4xx
   (400; 413 for the bomb). Corrupt uploads are counted apart. An *error* is any other
   outcome: a failed connection, a 5xx (a 503 included), a valid search not answered 200, or a
   corrupt upload not refused.
4. Checks the server still answers correctly afterwards: fixed queries give the same ranked
   ids and scores (to 1e-5) as before the load.

Latency percentiles are over the valid searches (client-side wall time, upload included). The
client threads run in a separate process, pinned with ``os.sched_setaffinity`` to the last core
where the machine has two or more (the JSON's ``clients_run`` says what was done); on a small
machine they still take CPU from the server.

CPU per request: the server process's user + system time (psutil; every thread, and any child
process) from the start of the load to its end, over the requests it answered (valid searches and
corrupt uploads): ``server_cpu_ms_per_request`` (and ``..._per_valid_search``). ``mean_batch`` is
what ``/api/info`` reports (images over batches of the model thread during the load). Where that CPU
goes, per request (``stages_cpu_ms_per_request``), is measured afterwards in this process, one
thread, with ``time.process_time``, over the same uploads and with the library functions the service
calls: decoding (PIL), part boxes (``TestTimeParts.boxes``, i.e. the proposals), resizing and
normalising with the masks, the model (batches of 1 and of ``--max-batch``, per image) and the index
search (``GalleryIndex.search``, top 10). What the service spends beyond those stages (HTTP,
multipart parsing, JSON, threads handing work over) is ``other_cpu_ms_per_request``: the server's
figure minus the stages' sum, with the model counted at the service's mean batch (``a + b / batch``
through the batch-1 and batched figures: ``model_cpu_ms_at_mean_batch``); a difference, so noisy on
a busy machine.

Writes ``docs/serve_load.json`` (the raw figures, per service, and the ratios int8/eager and
fp32/eager; ``--out`` to write elsewhere) with the 1-minute load average at the start and at the
end, and prints a markdown table.

Usage: ``PYTHONPATH=src python benchmarks/serve_load.py [--seconds 40 --clients 8]``
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
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
import psutil

from pgan.utils.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
SYNTH = {"num_train_ids": 40, "num_test_ids": 20, "images_per_id": [6, 8], "num_cameras": 6,
         "image_size": 160, "seed": 0, "workers": 1}
SERVICES = ("eager", "onnx-fp32", "onnx-int8", "baseline", "baseline-onnx-int8", "boxhead-onnx-int8")
CALIBRATION_IMAGES = 32
# The box head needs longer than the other models' 2 epochs before its heat map clears the decoding
# threshold: on this synthetic set it found 0 parts a photo after 2 epochs, 1.7 after 6 and 2.7 after 12.
# The service's CPU does not depend on the weights (the network always renders D masks), but a head that
# finds nothing would make the service a PGAN with empty masks, so it trains 12 (the rows record the
# parts found per query: ``query_parts_per_photo``).
BOXHEAD_EPOCHS = 12
STAGES = ("decode", "part_boxes", "resize_normalise", "model_batch1", "index_search")  # one search, in order


MODELS = {"pgan": ("eager", "onnx-fp32", "onnx-int8"), "baseline": ("baseline", "baseline-onnx-int8"),
          "boxhead": ("boxhead-onnx-int8",)}
PREFIXES = ("baseline", "boxhead")  # services of the models other than the plain PGAN are named <prefix>-...


def model_of(service: str) -> str:
    """The model a service serves: ``pgan``, ``baseline`` or ``boxhead``."""
    return next((m for m in PREFIXES if service.startswith(m)), "pgan")


def service_parts(service: str, parts: str) -> str:
    """The part source of a service's uploads: the box-head model finds its own (``model``); the others use
    ``--parts``."""
    return "model" if model_of(service) == "boxhead" else parts


def prepare(work: Path, epochs: int, parts: str, services: list[str] | tuple[str, ...] = SERVICES,
            boxhead_epochs: int = BOXHEAD_EPOCHS) -> dict[str, Path]:
    """The data root and, for each model the services need, its checkpoint, ONNX exports and indexes,
    each made only if missing. Keys: ``data``; ``checkpoint``, ``onnx-fp32``, ``onnx-int8``, ``index``,
    ``index-int8`` (PGAN) and the same with ``baseline-`` and ``boxhead-`` in front. The box-head model
    trains ``boxhead_epochs`` (its files carry the number, so another value trains anew)."""
    from pgan.engine.train import train
    from pgan.index import build_index
    from pgan.inference import FeatureExtractor, export_onnx, quantize_int8
    from pgan.recipes import synth_cpu_config
    from pgan.synth import generate_synth, synth_config_from_dict

    data, gallery = work / "synth", work / "gallery"
    generate_synth(data, synth_config_from_dict(SYNTH), progress=False)
    if not gallery.is_dir():  # outside the dataset's root: gallery boxes come from `parts`, as a query's do
        shutil.copytree(data / "image_test", gallery)
    paths = {"data": data}
    for variant, served in MODELS.items():
        if not set(served) & set(services):
            continue
        pre = "" if variant == "pgan" else f"{variant}-"
        tag = f"boxhead-e{boxhead_epochs}" if variant == "boxhead" else variant
        run = work / ("model" if variant == "pgan" else tag)  # the PGAN folder keeps its first name
        ckpt = run / "last.pt"
        model_parts = service_parts(served[0], parts)
        if not (run / "result.json").is_file():
            extra = {"model__box_head": True} if variant == "boxhead" else {}
            cfg = synth_cpu_config("baseline" if variant == "baseline" else "pgan", str(data), str(run), 0,
                                   optim__epochs=boxhead_epochs if variant == "boxhead" else epochs,
                                   optim__warmup_epochs=0.0, optim__milestones=(100,), run__progress=False,
                                   **extra)
            train(cfg, resume=ckpt.is_file())
        fp32, int8 = work / f"{tag}.onnx", work / f"{tag}-int8.onnx"
        if not fp32.is_file():
            export_onnx(ckpt, fp32)
        if not int8.is_file():
            calibration = sorted((data / "image_train").glob("*.jpg"))[:CALIBRATION_IMAGES]
            quantize_int8(fp32, int8, calibration, parts=model_parts)
        index_pre = "" if variant == "pgan" else f"{tag}-"
        found = {"checkpoint": ckpt, "onnx-fp32": fp32, "onnx-int8": int8, "index": work / f"{index_pre}index",
                 "index-int8": work / f"{index_pre}index-int8"}
        for name, model, runtime in (("index", ckpt, "torch"), ("index-int8", int8, "onnx")):
            if not (found[name] / "index.done").is_file():
                fx = FeatureExtractor(model, parts=model_parts, runtime=runtime, device="cpu")
                build_index(gallery, found[name], extractor=fx, progress=False)
                (found[name] / "index.done").write_text("ok\n")
        paths.update({f"{pre}{k}": v for k, v in found.items()})
    return paths


def service_model(name: str, paths: dict[str, Path]) -> dict[str, Path | str]:
    """What one service serves: ``runtime`` (torch or onnx), ``model`` (checkpoint or ONNX file), ``index``."""
    model = model_of(name)
    pre = "" if model == "pgan" else f"{model}-"
    kind = name.removeprefix(model).lstrip("-") or "eager"
    if kind == "eager":
        return {"runtime": "torch", "model": paths[f"{pre}checkpoint"], "index": paths[f"{pre}index"]}
    index = paths[f"{pre}index-int8"] if kind == "onnx-int8" else paths[f"{pre}index"]
    return {"runtime": "onnx", "model": paths[f"{pre}{kind}"], "index": index}


def service_args(name: str, paths: dict[str, Path]) -> list[str]:
    """The ``pgan serve`` arguments that choose the model (and its index) of one service."""
    m = service_model(name, paths)
    if m["runtime"] == "torch":
        return ["--index", str(m["index"]), "--checkpoint", str(m["model"])]
    return ["--index", str(m["index"]), "--runtime", "onnx", "--onnx", str(m["model"])]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, model_args: list[str], port: int, log_file: Path, parts: str
                 ) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pgan", "serve", *model_args, "--host", "127.0.0.1", "--port", str(port),
           "--threads", str(args.threads), "--prep-threads", str(args.prep_threads), "--parts", parts,
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
        self.answered = 0  # requests the server sent a response to (any status)


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
                r = None
                try:
                    r = client.post("/api/search", files={"image": (name, payload, "image/jpeg")})
                    ok = r.status_code in (400, 413) and "error" in r.json()
                    why = f"corrupt {name}: {r.status_code}"
                except (httpx.HTTPError, ValueError) as exc:
                    ok, why = False, f"corrupt {name}: {type(exc).__name__}"
                with tally.lock:
                    tally.corrupt_sent += 1
                    tally.answered += r is not None
                    tally.corrupt_refused += ok
                    if not ok:
                        tally.errors.append(why)
                continue
            data, vid = queries[rng.randrange(len(queries))]
            t0 = time.perf_counter()
            r = None
            try:
                r = client.post("/api/search", files={"image": ("q.jpg", data, "image/jpeg")}, data={"topk": "10"})
                dt = time.perf_counter() - t0
                ok = r.status_code == 200
                top = r.json()["results"][0]["vehicle_id"] if ok else None
                why = f"search: {r.status_code} {r.text[:100]}"
            except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
                dt, ok, top, why = time.perf_counter() - t0, False, None, f"search: {type(exc).__name__}"
            with tally.lock:
                tally.answered += r is not None
                if ok:
                    tally.latencies.append(dt)
                    tally.correct_top1 += int(top == vid)
                else:
                    tally.errors.append(why)


def client_core() -> tuple[int | None, str]:
    """The core the client process is pinned to (the last one this process may use) and why; None where
    the machine has one core or no ``sched_setaffinity``."""
    if not hasattr(os, "sched_setaffinity"):
        return None, "os.sched_setaffinity is not available on this platform: clients not pinned"
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, "one core available: clients not pinned"
    return cores[-1], f"pinned to core {cores[-1]} of {cores}"


def client_process(conn, base: str, queries: list[tuple[bytes, int]], n: int, corrupt_every: int,
                   seconds: float, clients: int, core: int | None) -> None:
    """The client threads, in their own process: pin, say ready, wait for go, load, send the tally back."""
    if core is not None:
        os.sched_setaffinity(0, {core})
    bad = corrupt_payloads(queries[0][0])
    tally = Tally()
    conn.send("ready")
    conn.recv()
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=client_loop, args=(base, queries, n, corrupt_every, deadline, seed,
                                                          tally, bad)) for seed in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = psutil.Process().cpu_times()
    conn.send({"latencies": tally.latencies, "errors": tally.errors, "corrupt_sent": tally.corrupt_sent,
               "corrupt_refused": tally.corrupt_refused, "correct_top1": tally.correct_top1,
               "answered": tally.answered, "wall_s": wall,
               "cpu_s": cpu.user + cpu.system,
               "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None})
    conn.close()


def process_cpu_s(proc: psutil.Process) -> float:
    """User + system CPU seconds of a process: every thread, its waited-for children and the live ones."""
    t = proc.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in proc.children(recursive=True):
        try:
            c = child.cpu_times()
            total += c.user + c.system
        except psutil.NoSuchProcess:
            pass
    return total


def run_clients(args: argparse.Namespace, base: str, queries: list[tuple[bytes, int]], server: psutil.Process
                ) -> tuple[dict, float]:
    """The whole client load from a separate (pinned) process -> its tally and the server's CPU seconds
    from go to done."""
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    core, _ = client_core()
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=client_process, args=(child, base, queries, args.requests, args.corrupt_every,
                                                    args.seconds, args.clients, core), daemon=True)
    proc.start()
    try:
        if not parent.poll(120) or parent.recv() != "ready":
            raise SystemExit("the client process did not start")
        cpu0 = process_cpu_s(server)
        parent.send("go")
        if not parent.poll(args.seconds + 300):
            raise SystemExit("the client process did not finish")
        load = parent.recv()
        cpu1 = process_cpu_s(server)
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.terminate()
    return load, cpu1 - cpu0


def fixed_answers(base: str, queries: list[tuple[bytes, int]], parts: list[int] | None = None
                  ) -> list[list[tuple[int, float]]]:
    """Each query's ranked ``(image_id, score)``; ``parts`` (when given) gets the number of part boxes the
    service found in each query photo."""
    out = []
    for data, _ in queries:
        r = httpx.post(f"{base}/api/search", files={"image": ("q.jpg", data, "image/jpeg")}, data={"topk": "10"},
                       timeout=60)
        r.raise_for_status()
        body = r.json()
        out.append([(h["image_id"], h["score"]) for h in body["results"]])
        if parts is not None:
            parts.append(len(body["query"]["boxes"]))
    return out


def same_answers(a: list, b: list) -> bool:
    return all([i for i, _ in x] == [i for i, _ in y] and np.allclose([s for _, s in x], [s for _, s in y],
                                                                          atol=1e-5) for x, y in zip(a, b))


def _pct(lat: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(lat, q)), 1) if len(lat) else None


def decode_bytes(data: bytes):
    """An upload's bytes -> the ``DecodedImage`` the extractor takes (PIL, EXIF rotation, RGB)."""
    from PIL import Image, ImageOps

    from pgan.inference.images import DecodedImage

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        rgb = np.asarray(ImageOps.exif_transpose(img).convert("RGB"), dtype=np.uint8)
    return DecodedImage(rgb, None)


def stage_cpu_ms(extractor, index, uploads: list[bytes], max_batch: int, topk: int = 10) -> dict[str, float]:
    """CPU ms per upload of each stage of a search, one thread, ``time.process_time``: decode, part boxes,
    resize + normalise (and masks), the model at batch 1 and at ``max_batch`` (per image), index search."""
    from pgan.inference.images import network_input

    def one(data: bytes, t: dict[str, float]) -> tuple[np.ndarray, np.ndarray | None]:
        c0 = time.process_time()
        d = decode_bytes(data)
        c1 = time.process_time()
        parts = extractor.parts.boxes([d])
        c2 = time.process_time()
        x = network_input(d, extractor.input_size).numpy()[None]
        m = extractor.parts.masks(parts, extractor.feat_size)
        c3 = time.process_time()
        emb = extractor.embed_prepared(x, m)
        c4 = time.process_time()
        index.search(emb, topk)
        c5 = time.process_time()
        for key, dt in zip(STAGES, (c1 - c0, c2 - c1, c3 - c2, c4 - c3, c5 - c4)):
            t[key] += dt
        return x[0], None if m is None else m[0]

    one(uploads[0], dict.fromkeys(STAGES, 0.0))  # warm-up (first-call costs, lazy imports)
    t = dict.fromkeys(STAGES, 0.0)
    prepared = [one(data, t) for data in uploads]
    out = {k: v / len(uploads) * 1000 for k, v in t.items()}
    batches = [prepared[i:i + max_batch] for i in range(0, len(prepared) - max_batch + 1, max_batch)]
    if batches:
        c0 = time.process_time()
        for b in batches:
            masks = None if b[0][1] is None else np.stack([m for _, m in b])
            extractor.embed_prepared(np.stack([x for x, _ in b]), masks)
        out[f"model_batch{max_batch}_per_image"] = (time.process_time() - c0) / (len(batches) * max_batch) * 1000
    return {k: round(v, 3) for k, v in out.items()}


def measure_stages(name: str, paths: dict[str, Path], parts: str, uploads: list[bytes], max_batch: int
                   ) -> dict[str, float]:
    """:func:`stage_cpu_ms` of one service's model and index, loaded in this process with one thread."""
    import torch

    from pgan.index import GalleryIndex
    from pgan.inference import FeatureExtractor

    m = service_model(name, paths)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if m["runtime"] == "torch":
            fx = FeatureExtractor(m["model"], parts=parts, device="cpu")
        else:
            fx = FeatureExtractor(m["model"], parts=parts, runtime="onnx", device="cpu", threads=1)
        index = GalleryIndex.open(m["index"])
        try:
            return stage_cpu_ms(fx, index, uploads, max_batch)
        finally:
            index.close()
    finally:
        torch.set_num_threads(threads)


def _pct(lat: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(lat, q)), 1) if len(lat) else None


def service_row(name: str, info0: dict, info1: dict, load: dict, server_cpu_s: float, startup_s: float,
                consistent: bool, alive: bool, stages: dict[str, float] | None = None) -> dict:
    """One service's figures from what was measured: ``/api/info`` before and after the load, the client
    process's tally (``latencies`` in s, ``errors``, ``corrupt_sent``, ``corrupt_refused``, ``correct_top1``,
    ``answered``, ``wall_s``, ``cpu_s``), the server's CPU seconds over the load and the in-process stage
    timings."""
    lat = np.array(load["latencies"]) * 1000
    wall = load["wall_s"]
    inf0, inf1 = info0.get("inference") or {}, info1.get("inference") or {}
    batches = inf1.get("batches", 0) - inf0.get("batches", 0) if "batches" in inf1 else None
    images = inf1.get("images", 0) - inf0.get("images", 0) if "images" in inf1 else None
    answered = load["answered"]
    cpu_ms = server_cpu_s * 1000
    per_request = round(cpu_ms / answered, 2) if answered else None
    row = {
        "service": name, "runtime": info1.get("runtime"), "model_fingerprint": info1.get("model_fingerprint"),
        "requests": len(lat), "errors": len(load["errors"]) + int(not consistent) + int(not alive),
        "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95), "p99_ms": _pct(lat, 99),
        "throughput_rps": round(len(lat) / wall, 2) if wall else None, "wall_s": round(wall, 1),
        "startup_s": round(startup_s, 1),
        "corrupt_uploads": load["corrupt_sent"], "corrupt_refused_4xx": load["corrupt_refused"],
        "answers_unchanged_after_load": consistent, "server_alive_after_load": alive,
        "top1_same_vehicle": round(load["correct_top1"] / max(len(lat), 1), 3),
        "mean_batch": round(images / max(batches, 1), 2) if batches is not None and images is not None else None,
        "mean_batch_source": "/api/info inference.images / inference.batches over the load"
        if batches is not None else "not reported by /api/info",
        "gallery_size": info1.get("gallery_size"), "embedding_dim": info1.get("embedding_dim"),
        "answered_requests": answered, "server_cpu_s": round(server_cpu_s, 3),
        "server_cpu_ms_per_request": per_request,
        "server_cpu_ms_per_valid_search": round(cpu_ms / len(lat), 2) if len(lat) else None,
        "server_cpu_cores_busy": round(server_cpu_s / wall, 2) if wall else None,
        "client_cpu_ms_per_request": round(load["cpu_s"] * 1000 / answered, 2) if answered else None,
        "stages_cpu_ms_per_request": None, "other_cpu_ms_per_request": None,
        "error_samples": load["errors"][:10],
    }
    return service_row_with_stages(row, stages) if stages else row


def model_at_batch(stages: dict[str, float], batch: float | None) -> float:
    """The model's CPU ms per image at a mean batch ``batch``: ``a + b / batch`` through the measured batch-1
    and batched (``model_batch<N>_per_image``) figures; the batch-1 figure when either is missing."""
    one = stages["model_batch1"]
    batched = [(int(k[len("model_batch"):-len("_per_image")]), v) for k, v in stages.items()
               if k.startswith("model_batch") and k.endswith("_per_image")]
    if not batched or batch is None or batch <= 1 or batched[0][0] <= 1:
        return one
    n, per_image = batched[0]
    b = (one - per_image) * n / (n - 1)  # fixed cost per call, shared by the images of a batch
    return one - b + b / batch


def service_row_with_stages(row: dict, stages: dict[str, float]) -> dict:
    """``row`` with the stage timings and the remainder of the server's CPU per request they leave (the
    model counted at the service's mean batch, :func:`model_at_batch`)."""
    row = {**row, "stages_cpu_ms_per_request": stages}
    per_request = row.get("server_cpu_ms_per_request")
    model = model_at_batch(stages, row.get("mean_batch"))
    row["model_cpu_ms_at_mean_batch"] = round(model, 3)
    if per_request is not None:
        staged = sum(v for k, v in stages.items() if k in STAGES and k != "model_batch1") + model
        row["other_cpu_ms_per_request"] = round(per_request - staged, 2)
    return row


def run_load(args: argparse.Namespace, name: str, model_args: list[str], queries: list[tuple[bytes, int]]) -> dict:
    """One service, the whole client load (a separate process), the after-load check -> its figures."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t_start = time.perf_counter()
    proc = start_server(args, model_args, port, args.work / f"server-{name}.log", service_parts(name, args.parts))
    startup = time.perf_counter() - t_start
    try:
        fixed = queries[:: max(1, len(queries) // 5)][:5]
        parts: list[int] = []
        before = fixed_answers(base, fixed, parts)  # also the warm-up
        info0 = httpx.get(f"{base}/api/info").json()
        load, server_cpu = run_clients(args, base, queries, psutil.Process(proc.pid))
        info1 = httpx.get(f"{base}/api/info").json()
        after = fixed_answers(base, fixed)
        alive = proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)
    row = service_row(name, info0, info1, load, server_cpu, startup, same_answers(before, after), alive)
    return {**row, "query_parts_per_photo": round(float(np.mean(parts)), 2) if parts else None}


def table(results: dict[str, dict]) -> str:
    """The markdown table of the services' figures."""
    lines = ["| service | valid searches | errors | corrupt refused | p50 ms | p95 ms | p99 ms | req/s "
             "| mean batch | server CPU ms / request | parts found / query |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} ({r['runtime']}) | {r['requests']} | {r['errors']} | "
                     f"{r['corrupt_refused_4xx']}/{r['corrupt_uploads']} | {r['p50_ms']} | {r['p95_ms']} | "
                     f"{r['p99_ms']} | {r['throughput_rps']} | {r['mean_batch']} | "
                     f"{r.get('server_cpu_ms_per_request')} | {r.get('query_parts_per_photo')} |")
    return "\n".join(lines)


def stage_table(results: dict[str, dict]) -> str:
    """CPU ms per request of each stage (one thread, in-process), beside the server's measured figure."""
    head = [*STAGES, "model per image, batched", "model at mean batch", "server total", "other"]
    lines = ["| service | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name, r in results.items():
        st = r.get("stages_cpu_ms_per_request") or {}
        batched = next((v for k, v in st.items() if k.endswith("_per_image")), None)
        cells = [st.get(k) for k in STAGES] + [batched] + [r.get(k) for k in (
            "model_cpu_ms_at_mean_batch", "server_cpu_ms_per_request", "other_cpu_ms_per_request")]
        lines.append(f"| {name} | " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def ratios(results: dict[str, dict]) -> dict[str, float]:
    """Throughput and p95 latency of each ONNX service over the eager one's (same run)."""
    out = {}
    eager = results.get("eager")
    for name, short in (("onnx-int8", "int8"), ("onnx-fp32", "fp32"), ("boxhead-onnx-int8", "boxhead_int8")):
        r = results.get(name)
        if eager and r and eager["throughput_rps"] and eager["p95_ms"] and r["p95_ms"]:
            out[f"throughput_{short}_over_eager"] = round(r["throughput_rps"] / eager["throughput_rps"], 2)
            out[f"p95_{short}_over_eager"] = round(r["p95_ms"] / eager["p95_ms"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=ROOT / "data" / "serve-bench")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--boxhead-epochs", type=int, default=BOXHEAD_EPOCHS,
                    help="epochs of the box-head model (its head needs more to find parts)")
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
    ap.add_argument("--no-stages", action="store_true", help="skip the in-process per-stage CPU measurement")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "serve_load.json")
    args = ap.parse_args()

    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    paths = prepare(args.work, args.epochs, args.parts, args.services, args.boxhead_epochs)
    prepared_s = time.perf_counter() - t0
    photos = sorted((paths["data"] / "image_query").glob("*.jpg"))
    queries = [(p.read_bytes(), int(p.name[:4])) for p in photos]
    results = {}
    for name in args.services:
        results[name] = run_load(args, name, service_args(name, paths), queries)
        if not args.no_stages:
            stages = measure_stages(name, paths, service_parts(name, args.parts), [q for q, _ in queries],
                                    args.max_batch)
            results[name] = service_row_with_stages(results[name], stages)
        print(f"{name}: {results[name]['throughput_rps']} req/s, p95 {results[name]['p95_ms']} ms, "
              f"{results[name]['server_cpu_ms_per_request']} ms server CPU per request, "
              f"{results[name]['errors']} errors", flush=True)
    core, how = client_core()
    out = {"services": results, "ratios": ratios(results), "errors": sum(r["errors"] for r in results.values()),
           "clients": args.clients, "seconds_per_service": args.seconds, "requests_cap_per_client": args.requests,
           "corrupt_every": args.corrupt_every, "server_threads": args.threads, "prep_threads": args.prep_threads,
           "max_batch": args.max_batch, "parts": args.parts, "cpu_count": os.cpu_count(),
           "clients_run": {"process": "separate (multiprocessing), its own threads, one per client",
                           "pinned_core": core, "how": how,
                           "server": "not pinned (python -m pgan serve, every core it may use)"},
           "server_cpu": "psutil user + system of the server process (all threads, children included) from the "
                         "start of the load to its end, over the answered requests (valid + corrupt)",
           "stages": None if args.no_stages else
           "in this process after each service's load, one thread (torch and onnxruntime), time.process_time, "
           "over the query uploads; other = server CPU per request - (decode + part boxes + resize/normalise + "
           "model at the service's mean batch + index search); model at mean batch m = a + b / m through the "
           "batch-1 and batched figures",
           "load_average_1min_at_start": round(load_start, 2),
           "load_average_1min": round(os.getloadavg()[0], 2), "prepare_s": round(prepared_s, 1),
           "total_s": round(time.perf_counter() - t0, 1),
           "model": f"pgan mobilenet_v2 160 px, {args.epochs} epochs of the synthetic CPU recipe; int8: static "
                    f"QDQ calibrated on {CALIBRATION_IMAGES} training images, served with its own index; "
                    f"baseline: the same recipe's baseline variant (no parts); boxhead: PGAN with model.box_head="
                    f"true (same recipe and seed, {args.boxhead_epochs} epochs), served with --parts model "
                    f"(no proposals)"}
    out["table_md"] = table(results)
    if not args.no_stages:
        out["stage_table_md"] = stage_table(results)
    atomic_write_json(args.out, out)
    print(out["table_md"])
    if not args.no_stages:
        print(out["stage_table_md"])
    for key, value in out["ratios"].items():
        print(f"{key}: {value}")
    print(f"wrote {args.out} ({out['total_s']} s in all, {out['prepare_s']} s preparing; load average "
          f"{out['load_average_1min_at_start']} at the start)")
    if out["errors"]:
        samples = [e for r in results.values() for e in r["error_samples"]][:3]
        raise SystemExit(f"{out['errors']} errors: {samples}")


if __name__ == "__main__":
    main()
