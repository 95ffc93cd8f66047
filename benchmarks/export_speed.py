"""onnxruntime (fp32 and static int8) against PyTorch eager on CPU: the whole PGAN test-time network.

For each ``(backbone, input size)`` (default ResNet-50 at 224 px and MobileNetV2 at
160 px), a PGAN network (random weights, 8 parts, C' = 256, last stride 1) is
saved as a ``pgan train``-style checkpoint, exported with
:func:`pgan.inference.export_onnx` and quantised with
:func:`pgan.inference.quantize_int8` (calibrated on ``--calibration`` images, the
synthetic training split by default), then timed on batches of 1 and 32:
``images, masks -> F_fb`` only (decoding and part boxes excluded), one thread
everywhere (torch, onnxruntime ``intra_op_num_threads=1``), interleaved
repetitions (eager, fp32, int8, eager, ...), median of the thread's CPU time. It reports ms per batch,
images/s, the speed-up over eager
and the largest difference between onnxruntime fp32 and PyTorch, absolute and relative to the
largest embedding value (goal: 1e-4).

``--checkpoint CKPT`` (a trained model, e.g. the demo's ``runs/demo/pgan/last.pt``)
adds the accuracy check of int8: mAP of the synthetic test split with PyTorch,
onnxruntime fp32 and onnxruntime int8 embeddings (goal: int8 drop <= 0.5 points).

Usage: ``nice -n 10 python benchmarks/export_speed.py [--checkpoint runs/demo/pgan/last.pt]``
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pgan.config import load_config  # noqa: E402
from pgan.engine.checkpoint import save_checkpoint  # noqa: E402
from pgan.inference import FeatureExtractor, OnnxNetwork, export_onnx, quantize_int8  # noqa: E402
from pgan.models.build import build_network  # noqa: E402
from pgan.utils.atomic import atomic_write_json  # noqa: E402


def _random_checkpoint(backbone: str, size: int, path: Path, images: list[Path]) -> Path:
    """A checkpoint of an untrained PGAN network whose BatchNorm statistics are estimated on real images
    (a few forward passes in training mode), so activations have a trained network's scale; with
    default statistics deep features shrink towards denormal floats, which CPUs compute very slowly."""
    cfg = load_config(None, [f"model.backbone={backbone}", "model.pretrained=false", "model.variant=pgan",
                             f"data.input_size=[{size}, {size}]", "data.root=data/demo"])
    torch.manual_seed(0)
    net = build_network(cfg, num_classes=100, pretrained=False)
    save_checkpoint(path, model=net.state_dict(), config=cfg.to_dict(), num_classes=100)
    fx = FeatureExtractor(path, parts="proposals", device="cpu")
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the passes below
    net.train()
    with torch.no_grad():
        for i in range(0, 32, 8):
            x, masks, _ = fx.prepare(images[i:i + 8])
            net(torch.from_numpy(x), torch.from_numpy(masks))
    net.eval()
    save_checkpoint(path, model=net.state_dict(), config=cfg.to_dict(), num_classes=100)
    return path


def _inputs(fx: FeatureExtractor, calib: list[Path], batch: int) -> tuple[np.ndarray, np.ndarray]:
    picks = [calib[i % len(calib)] for i in range(batch)]
    x, m, _ = fx.prepare(picks)
    return x, m


def _interleaved_median_ms(fns: dict, repeats: int) -> dict[str, float]:
    """Median ms of each function, repetitions interleaved (A B C A B C ...); one warm-up call each.

    Times are this thread's CPU time (``time.thread_time``): with one intra-op thread both PyTorch and
    onnxruntime compute on the calling thread, and CPU time does not count the waits of a process
    that shares its cores with other jobs (wall time here was dominated by them)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.thread_time()
            fn()
            times[k].append(time.thread_time() - t)
    return {k: 1000 * float(np.median(v)) for k, v in times.items()}


def bench_model(backbone: str, size: int, calib: list[Path], batches: list[int], repeats: int,
                work: Path) -> list[dict]:
    ckpt = _random_checkpoint(backbone, size, work / f"{backbone}.pt", calib)
    fp32 = export_onnx(ckpt, work / f"{backbone}.onnx")
    int8 = quantize_int8(fp32, work / f"{backbone}-int8.onnx", calib[:32], parts="proposals")
    fx = FeatureExtractor(ckpt, parts="proposals", device="cpu")
    ort32, ort8 = OnnxNetwork(fp32, threads=1), OnnxNetwork(int8, threads=1)
    rows = []
    for b in batches:
        x, m = _inputs(fx, calib, b)
        ref = fx._torch_forward(x, m)
        diff = float(np.abs(ort32.run(x, m) - ref).max())
        rel = diff / float(np.abs(ref).max())
        reps = repeats if b == 1 else max(3, repeats // 4)
        ms = _interleaved_median_ms({"eager": lambda x=x, m=m: fx._torch_forward(x, m),
                                     "fp32": lambda x=x, m=m: ort32.run(x, m),
                                     "int8": lambda x=x, m=m: ort8.run(x, m)}, reps)
        eager, o32, o8 = ms["eager"], ms["fp32"], ms["int8"]
        row = {"backbone": backbone, "input": size, "batch": b, "eager_ms": round(eager, 2),
               "onnx_fp32_ms": round(o32, 2), "onnx_int8_ms": round(o8, 2),
               "fp32_speedup": round(eager / o32, 2), "int8_speedup": round(eager / o8, 2),
               "eager_img_s": round(1000 * b / eager, 1), "onnx_fp32_img_s": round(1000 * b / o32, 1),
               "onnx_int8_img_s": round(1000 * b / o8, 1), "max_abs_diff_fp32": diff,
               "max_rel_diff_fp32": rel}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def accuracy(checkpoint: Path, work: Path, calib_n: int = 128) -> dict:
    """mAP on the checkpoint's synthetic test split with PyTorch, ONNX fp32 and ONNX int8 embeddings."""
    from pgan.data.datasets import read_dataset
    from pgan.evaluation import evaluate_protocol
    from pgan.inference import load_model

    cfg = load_model(checkpoint).config
    ds = read_dataset(cfg.data.dataset, cfg.data.root)
    fp32 = export_onnx(checkpoint, work / "trained.onnx")
    train = [r.path for r in ds.train]
    calib = train[:: max(1, len(train) // calib_n)][:calib_n]
    int8 = quantize_int8(fp32, work / "trained-int8.onnx", calib)
    out = {"checkpoint": str(checkpoint), "calibration_images": len(calib), "queries": len(ds.query),
           "gallery": len(ds.gallery)}
    for name, fx in (("torch", FeatureExtractor(checkpoint, device="cpu")),
                     ("onnx_fp32", FeatureExtractor(fp32, runtime="onnx")),
                     ("onnx_int8", FeatureExtractor(int8, runtime="onnx"))):
        q, g = fx([r.path for r in ds.query]), fx([r.path for r in ds.gallery])
        res = evaluate_protocol(cfg.data.dataset, q, g, ds.query, ds.gallery)
        out[f"mAP_{name}"] = round(100 * res.metrics["mAP"], 2)
        out[f"rank1_{name}"] = round(100 * res.metrics["rank1"], 2)
        print(name, out[f"mAP_{name}"], flush=True)
    out["int8_mAP_drop"] = round(out["mAP_torch"] - out["mAP_onnx_int8"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet50:224", "mobilenet_v2:160"])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--calibration", default="data/demo/image_train")
    ap.add_argument("--checkpoint", help="a trained checkpoint for the int8 mAP check")
    ap.add_argument("--accuracy-only", action="store_true",
                    help="keep the speed rows already in --out and (re)measure the int8 accuracy only")
    ap.add_argument("--out", default="docs/export_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    calib = sorted(Path(args.calibration).glob("*.jpg"))
    if not calib:
        raise SystemExit(f"no calibration images in {args.calibration} (run 'make demo' or pass --calibration)")
    result: dict = {"threads": 1, "torch": torch.__version__, "rows": []}
    if args.accuracy_only:
        result = json.loads(Path(args.out).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        for spec in [] if args.accuracy_only else args.models:
            backbone, size = spec.split(":")
            result["rows"] += bench_model(backbone, int(size), calib, args.batches, args.repeats, Path(tmp))
        if args.checkpoint:
            result["accuracy"] = accuracy(Path(args.checkpoint), Path(tmp))
            print(json.dumps(result["accuracy"]))
    atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
