"""``pgan serve``: a search service over a gallery index, with an HTTP API and a web page.

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart). Example::

    from pgan.serve import ServeSettings, create_app, load_service
    index, extractor = load_service("runs/index")
    app = create_app(index, extractor, ServeSettings(max_topk=50))

Each name is imported on first access (PEP 562), so ``pgan serve --help`` needs no FastAPI.
"""

import importlib

__all__ = ["ServeSettings", "create_app", "load_service", "serve"]
_LAZY = {"create_app": "pgan.serve.app", "load_service": "pgan.serve.server", "serve": "pgan.serve.server",
         "ServeSettings": "pgan.serve.settings"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pgan.serve' has no attribute {name!r}")
