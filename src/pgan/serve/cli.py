"""``pgan serve``: wired into the main parser by ``register(subparsers)``.

Example::

    pgan serve --index runs/index                      # http://127.0.0.1:8000
    pgan serve --index runs/index --host 0.0.0.0 --token "$(openssl rand -hex 16)"
"""

from __future__ import annotations

import argparse
import os

from pgan.errors import PganError

__all__ = ["register"]


def _cmd_serve(args: argparse.Namespace) -> int:
    from pgan.serve.server import serve
    from pgan.serve.settings import ServeSettings

    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise PganError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    token = args.token if args.token is not None else os.environ.get("PGAN_SERVE_TOKEN") or None
    settings = ServeSettings(max_upload_bytes=args.max_upload_mb * 2**20, max_pixels=args.max_pixels,
                             max_topk=args.max_topk, default_topk=min(args.topk, args.max_topk),
                             max_batch=args.max_batch, max_queue=args.max_queue, token=token)
    serve(args.index, args.checkpoint, host=args.host, port=args.port, settings=settings, parts=args.parts,
          device=args.device)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="search service: HTTP API + web page over a gallery index")
    p.add_argument("--index", required=True, help="a gallery index folder (`pgan index build`)")
    p.add_argument("--checkpoint", help="model checkpoint (default: the one the index was built with)")
    p.add_argument("--parts", help="part boxes of uploaded photos: 'proposals', 'grid' or a part-detector "
                   "checkpoint (default: the index's setting; a model trained on a part file, which cannot box "
                   "an upload, falls back to 'proposals' with a warning)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind; anything but loopback warns "
                   "(on loopback, requests must name 127.0.0.1, localhost or [::1] in their Host header)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", help="bearer token every API call must carry (or env PGAN_SERVE_TOKEN)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch intra-op threads for the model")
    p.add_argument("--topk", type=int, default=10, help="default number of results")
    p.add_argument("--max-topk", type=int, default=100)
    p.add_argument("--max-upload-mb", type=int, default=10)
    p.add_argument("--max-pixels", type=int, default=25_000_000)
    p.add_argument("--max-batch", type=int, default=8, help="queued queries embedded together")
    p.add_argument("--max-queue", type=int, default=64,
                   help="searches and image requests in progress at once; beyond, new ones get 503 at once")
    p.set_defaults(func=_cmd_serve)
