"""Decoding untrusted images safely: size limits first, pixels from the header, a format allow-list.

The pixel count is read from the image header (``Image.open`` is lazy) and
checked before a single pixel is decoded, so a decompression bomb (a tiny file
that expands to gigabytes) is refused without allocating it. Only the formats
in :attr:`ServeSettings.formats` are tried, which keeps rarely used decoders
(and those that shell out, such as EPS) away from uploads.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from pgan.serve.settings import ServeSettings


class BadImage(ValueError):
    """An upload that is not an acceptable image; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _open_checked(fp, what: str, max_pixels: int, formats: tuple[str, ...] | None) -> Image.Image:
    """Open lazily, check the header's size, then decode; raises :class:`BadImage`.

    ``formats=None`` lets PIL try every decoder it has (gallery files, not uploads).
    """
    try:
        with warnings.catch_warnings():
            # PIL warns (DecompressionBombWarning) before our own, stricter check runs: make it an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp, formats=list(formats) if formats else None)
            w, h = img.size
            if w < 1 or h < 1:
                raise BadImage(f"{what}: image has no pixels ({w}x{h})")
            if w * h > max_pixels:
                raise BadImage(f"{what}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}",
                               status=413)
            img.load()
            img = ImageOps.exif_transpose(img)
            return img.convert("RGB")
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"{what}: refused as a decompression bomb ({exc})", status=413) from None
    except UnidentifiedImageError:
        accepted = f" in an accepted format ({', '.join(formats)})" if formats else ""
        raise BadImage(f"{what}: not an image{accepted}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadImage(f"{what}: corrupt or truncated image ({detail})") from None


def decode_upload(data: bytes, settings: ServeSettings, what: str = "image") -> Image.Image:
    """Bytes of an uploaded photo -> an RGB PIL image, or :class:`BadImage` naming what is wrong."""
    if not data:
        raise BadImage(f"{what}: the upload is empty (0 bytes)")
    if len(data) > settings.max_upload_bytes:
        raise BadImage(f"{what}: upload exceeds the limit of {settings.max_upload_bytes} bytes", status=413)
    return _open_checked(io.BytesIO(data), what, settings.max_pixels, settings.formats)


def load_gallery_image(path: Path, settings: ServeSettings, what: str) -> Image.Image:
    """A gallery file (trusted more than an upload, but still size-checked) -> an RGB PIL image."""
    with open(path, "rb") as fh:
        return _open_checked(fh, what, settings.max_pixels, None)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header only."""
    with Image.open(path) as img:
        return img.size


def image_media_type(path: Path) -> str | None:
    """The MIME type of the format PIL reads in the file's header (None: not an image PIL knows)."""
    try:
        with Image.open(path) as img:
            return Image.MIME.get(img.format or "")
    except (OSError, ValueError, SyntaxError):
        return None


def thumbnail_jpeg(img: Image.Image, size: int, quality: int = 85) -> bytes:
    """``img`` scaled down (aspect kept) so its longer side is at most ``size``, as JPEG bytes."""
    img = img.copy()
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
