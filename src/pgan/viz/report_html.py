"""Run folders and their offline ``report.html``: one page, images by relative path, no scripts.

Every ``pgan viz`` / ``analyze`` / ``bench`` run writes into one folder; the
report lists what the run wrote with the figures inline (``<img src="x.png">``
next to the HTML), so copying the folder keeps it readable without a network.
"""

from __future__ import annotations

import html
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pgan.errors import PganError
from pgan.utils.atomic import atomic_write_text

__all__ = ["Section", "markdown_table", "prepare_out_dir", "write_report"]

_CSS = """body{font-family:sans-serif;margin:24px;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #ddd}
figure{margin:12px 0}figcaption{font-size:90%;color:#555}code{background:#f4f4f4;padding:0 3px}"""


@dataclass
class Section:
    """One part of a report: a heading, paragraphs, an optional table, figures (relative paths)."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    table: list[list[str]] | None = None  # first row is the header
    images: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # other outputs to link (CSV, JSON, markdown)


def prepare_out_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) and check that files can be written there."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise PganError(f"output folder {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise PganError(f"output folder {out} is not writable: {exc.strerror or exc}") from None
    return out


def markdown_table(rows: list[list[str]]) -> str:
    """A GitHub markdown table; ``rows[0]`` is the header."""
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
    return "\n".join(lines) + "\n"


def _table_html(rows: list[list[str]]) -> str:
    head, *body = rows
    out = ["<table><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in body]
    return "\n".join(out) + "</table>"


def write_report(out_dir: str | os.PathLike, title: str, sections: list[Section],
                 meta: dict[str, str] | None = None) -> Path:
    """Write ``out_dir/report.html`` (atomically); image and file paths are relative to ``out_dir``."""
    out_dir = Path(out_dir)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    info = {"written": time.strftime("%Y-%m-%d %H:%M:%S"), **(meta or {})}
    parts.append("<p>" + "<br>".join(f"<b>{html.escape(k)}</b>: <code>{html.escape(str(v))}</code>"
                                     for k, v in info.items()) + "</p>")
    for sec in sections:
        parts.append(f"<h2>{html.escape(sec.title)}</h2>")
        parts += [f"<p>{html.escape(p)}</p>" for p in sec.paragraphs]
        if sec.table:
            parts.append(_table_html(sec.table))
        for img in sec.images:
            src = html.escape(Path(img).as_posix(), quote=True)
            parts.append(f"<figure><a href='{src}'><img src='{src}' alt='{src}'></a>"
                         f"<figcaption>{src}</figcaption></figure>")
        if sec.files:
            links = ", ".join(f"<a href='{html.escape(f, quote=True)}'>{html.escape(f)}</a>" for f in sec.files)
            parts.append(f"<p>Files: {links}</p>")
    parts.append("</body></html>\n")
    path = out_dir / "report.html"
    atomic_write_text(path, "\n".join(parts))
    return path
