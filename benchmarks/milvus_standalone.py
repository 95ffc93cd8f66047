"""A Milvus standalone server for tests and benchmarks, from the ``milvus`` package (``pip install
'pgan[milvus]'``), in a folder of its own, reached at ``http://127.0.0.1:PORT``.

The package's config template leaves every component's ``ip`` empty (the first unicast address); the
server started here gets a copy with ``ip: 127.0.0.1``, so its components advertise and reach one
another on loopback and etcd listens on loopback only. Milvus 2.3.5 has no listen-address setting for
its gRPC ports: they still listen on every interface, so start it only where those ports are not
reachable from other machines (a test runner, a firewalled host).

Example::

    with standalone(Path("/tmp/mv")) as uri:
        build_index("gallery/", "runs/idx", checkpoint="last.pt", backend="milvus", uri=uri)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["missing", "standalone"]


def missing() -> str | None:
    """Why a standalone server cannot start here (None: it can)."""
    try:
        import milvus  # noqa: F401
        import pymilvus  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install 'pgan[milvus]')"
    return None


@contextmanager
def standalone(base_dir: Path, port: int | None = None) -> Iterator[str]:
    """A running Milvus standalone server with its data under ``base_dir``; yields ``http://127.0.0.1:PORT``
    (``port``: a free one when None) and stops the server on exit."""
    import socket

    from milvus import MilvusServer, MilvusServerConfig

    if port is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
    base_dir = Path(base_dir)
    base_dir.mkdir(parents=True, exist_ok=True)
    default = MilvusServerConfig()
    text = Path(default.template_file).read_text(encoding="utf-8")
    template = base_dir / "config.yaml.template"
    template.write_text(text.replace("  ip: # if not specify address", "  ip: 127.0.0.1 # if not specify address"),
                        encoding="utf-8")
    config = MilvusServerConfig(template=str(template))
    config.glog_conf_file = default.glog_conf_file  # set only for the package's own template
    server = MilvusServer(config, proxy_port=port)
    server.set_base_dir(str(base_dir / "data"))
    server.start()
    try:
        yield f"http://127.0.0.1:{server.listen_port}"
    finally:
        server.stop()
