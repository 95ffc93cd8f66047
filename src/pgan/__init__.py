"""pgan: Part-Guided Attention Network toolkit for vehicle re-identification.

Importing the package has no side effects: nothing is registered, downloaded or
initialised until a function is called.

Public API: :func:`load_model` and :class:`FeatureExtractor` (:mod:`pgan.inference`),
and :class:`GalleryIndex` (:mod:`pgan.index`). ``GalleryIndex`` is imported on first
access (module ``__getattr__``) because it needs faiss, a heavy optional dependency
(the ``search`` extra); ``import pgan`` works without it.
"""

from pgan.inference import FeatureExtractor, load_model

__version__ = "0.1.0"
__all__ = ["FeatureExtractor", "GalleryIndex", "__version__", "load_model"]


def __getattr__(name: str):
    if name == "GalleryIndex":
        from pgan.index import GalleryIndex

        return GalleryIndex
    raise AttributeError(f"module 'pgan' has no attribute {name!r}")
