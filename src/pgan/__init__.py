"""pgan: Part-Guided Attention Network toolkit for vehicle re-identification.

The public Python API (timm-style)::

    import pgan
    model = pgan.create_model("pgan", backbone="resnet50", num_classes=576)
    pgan.list_backbones()

Importing the package has no side effects: nothing is registered, downloaded or
initialised until a function is called.

Public API: :func:`load_model` and :class:`FeatureExtractor` (:mod:`pgan.inference`),
and :class:`GalleryIndex` (:mod:`pgan.index`). ``GalleryIndex`` is imported on first
access (module ``__getattr__``) because it needs faiss, a heavy optional dependency
(the ``search`` extra); ``import pgan`` works without it.
"""

from pgan.inference import FeatureExtractor, load_model
from pgan.models.factory import create_model, list_backbones

__version__ = "0.1.0"

# One name per line, so branches that add names merge cleanly.
__all__ = [
    "FeatureExtractor",
    "GalleryIndex",
    "__version__",
    "create_model",
    "list_backbones",
    "load_model",
]


def __getattr__(name: str):
    # GalleryIndex needs faiss (the [search] extra): imported on first use, so `import pgan` works without it.
    if name == "GalleryIndex":
        from pgan.index import GalleryIndex

        return GalleryIndex
    raise AttributeError(f"module 'pgan' has no attribute {name!r}")
