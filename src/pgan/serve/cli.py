"""``pgan serve``: wired into the main parser by ``register(subparsers)``.

Example::

    pgan serve --index runs/index                      # http://127.0.0.1:8000
    pgan serve --index runs/index --host 0.0.0.0 --token "$(openssl rand -hex 16)"
    pgan export onnx --checkpoint runs/demo/pgan/last.pt --out pgan.onnx
    pgan serve --index runs/index --runtime onnx --onnx pgan.onnx   # same index: the fp32 export's model
"""

from __future__ import annotations

import argparse
import os

from pgan.cli_options import add_command, add_device, add_parts, add_top_k, set_torch_threads
from pgan.errors import PganError

__all__ = ["register"]


def _cmd_serve(args: argparse.Namespace) -> int:
    from pgan.serve.server import serve
    from pgan.serve.settings import ServeSettings

    set_torch_threads(args.threads)
    if args.onnx is not None and args.runtime != "onnx":
        raise PganError("--onnx needs --runtime onnx")
    token = args.token if args.token is not None else os.environ.get("PGAN_SERVE_TOKEN") or None
    settings = ServeSettings(max_upload_bytes=args.max_upload_mb * 2**20, max_pixels=args.max_pixels,
                             max_topk=args.max_top_k, default_topk=min(args.top_k, args.max_top_k),
                             max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms, max_queue=args.max_queue,
                             token=token,
                             prep_threads=args.prep_threads, decode_side=args.decode_side)
    serve(args.index, args.checkpoint, host=args.host, port=args.port, settings=settings, parts=args.parts,
          device=args.device, runtime=args.runtime, onnx_path=args.onnx, threads=args.threads or 0)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "serve", help="search service: HTTP API + web page over a gallery index",
                    description="Serve searches over a gallery index: uploads are decoded and boxed in a "
                    "thread pool (--prep-threads), the model runs alone on one thread in batches "
                    "(--max-batch), with PyTorch or onnxruntime (--runtime onnx --onnx MODEL.onnx; "
                    "fp32 or the int8 export, whose index must be built with it).",
                    example=["pgan serve --index runs/index                      # http://127.0.0.1:8000",
                             "pgan serve --index runs/index --runtime onnx --onnx model.onnx"])
    p.add_argument("--index", required=True, metavar="IDX", help="a gallery index folder (pgan index build) or a "
                                                               "milvus://HOST:PORT/COLLECTION handle")
    p.add_argument("--checkpoint", metavar="FILE", help="model checkpoint (unset: the one the index was built "
                   "with; with --runtime onnx, the checkpoint the export must come from, unset: none needed)")
    p.add_argument("--runtime", default="torch", choices=["torch", "onnx"],
                   help="what runs the model: eager PyTorch, or onnxruntime on --onnx")
    p.add_argument("--onnx", metavar="FILE", help="the model to run with --runtime onnx (pgan export onnx "
                   "[--int8]); its fingerprint must match the index's: an int8 export needs an index built "
                   "with it")
    add_parts(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind; anything but loopback warns "
                   "(on loopback, requests must name 127.0.0.1, localhost or [::1] in their Host header)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--token", help="bearer token every API call must carry (or env PGAN_SERVE_TOKEN)")
    add_device(p)
    p.add_argument("--threads", type=int, metavar="N", help="intra-op threads of the model (torch, or "
                   "onnxruntime's session); unset: the library's own")
    p.add_argument("--prep-threads", type=int, default=2, metavar="N",
                   help="threads decoding uploads and finding their part boxes, beside the model's thread")
    p.add_argument("--decode-side", type=int, default=512, metavar="PX", help="JPEG uploads are decoded reduced "
                   "(1/2, 1/4, 1/8) while both sides stay at least this many pixels; 0: full size")
    add_top_k(p, 10, "results per query when a request does not say")
    p.add_argument("--max-top-k", type=int, default=100, metavar="K", help="most results a request may ask for")
    p.add_argument("--max-upload-mb", type=int, default=10, help="largest upload accepted")
    p.add_argument("--max-pixels", type=int, default=25_000_000, help="largest decoded image accepted")
    p.add_argument("--max-batch", type=int, default=8, help="most prepared queries run as one batch")
    p.add_argument("--batch-wait-ms", type=float, default=4.0, metavar="MS",
                   help="after a query arrives, how long the model's thread waits for more to batch with it")
    p.add_argument("--max-queue", type=int, default=64,
                   help="searches and image requests in progress at once; beyond, new ones get 503 at once")
    p.set_defaults(func=_cmd_serve)
