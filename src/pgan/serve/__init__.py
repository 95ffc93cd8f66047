"""``pgan serve``: a search service over a gallery index, with an HTTP API and a web page.

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart). Example::

    from pgan.serve import ServeSettings, create_app, load_service
    index, extractor = load_service("runs/index")
    app = create_app(index, extractor, ServeSettings(max_topk=50))
"""

from pgan.serve.app import create_app
from pgan.serve.server import load_service, serve
from pgan.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "load_service", "serve"]
