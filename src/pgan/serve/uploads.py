"""Decoding untrusted images safely: size limits first, pixels from the header, a format allow-list.

The pixel count is read from the image header (``Image.open`` is lazy) and
checked before a single pixel is decoded, so a decompression bomb (a tiny file
that expands to gigabytes) is refused without allocating it. Only the formats
in :attr:`ServeSettings.formats` are tried, which keeps rarely used decoders
(and those that shell out, such as EPS) away from uploads.

``draft``: a JPEG is decoded directly at a reduced scale (1/2, 1/4 or 1/8, PIL's
``Image.draft``, done by the JPEG decoder itself) as long as both sides stay at least
``draft`` pixels, which cuts the decoding of a large photo several-fold; the model sees
160-256 px anyway. Other formats decode at full size.
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


_SWAPS_SIDES = {5, 6, 7, 8}  # EXIF orientations that exif_transpose turns by 90 degrees


def _open_checked(fp, what: str, max_pixels: int, formats: tuple[str, ...] | None,
                  draft: int = 0) -> tuple[Image.Image, tuple[int, int]]:
    """Open lazily, check the header's size, then decode; raises :class:`BadImage`. Returns the RGB
    image and the size the full image has (after EXIF rotation), which differs with ``draft``.

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
            if draft > 0 and img.format == "JPEG" and min(w, h) >= 2 * draft:
                img.draft("RGB", (draft, draft))  # both sides stay >= draft
            swapped = img.getexif().get(0x0112) in _SWAPS_SIDES
            img.load()
            img = ImageOps.exif_transpose(img)
            return img.convert("RGB"), ((h, w) if swapped else (w, h))
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


def decode_upload_reduced(data: bytes, settings: ServeSettings, what: str = "image",
                          draft: int = 0) -> tuple[Image.Image, tuple[int, int]]:
    """Bytes of an uploaded photo -> an RGB PIL image (a JPEG reduced while both sides stay >= ``draft``)
    and the photo's full ``(width, height)``; :class:`BadImage` naming what is wrong."""
    if not data:
        raise BadImage(f"{what}: the upload is empty (0 bytes)")
    if len(data) > settings.max_upload_bytes:
        raise BadImage(f"{what}: upload exceeds the limit of {settings.max_upload_bytes} bytes", status=413)
    return _open_checked(io.BytesIO(data), what, settings.max_pixels, settings.formats, draft)


def load_gallery_image(path: Path, settings: ServeSettings, what: str, draft: int = 0) -> Image.Image:
    """A gallery file (trusted more than an upload, but still size-checked) -> an RGB PIL image
    (a JPEG reduced while both sides stay >= ``draft``)."""
    with open(path, "rb") as fh:
        return _open_checked(fh, what, settings.max_pixels, None, draft)[0]


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
