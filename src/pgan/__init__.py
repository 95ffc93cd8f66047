"""pgan: Part-Guided Attention Network toolkit for vehicle re-identification.

The public Python API (timm-style)::

    import pgan
    model = pgan.create_model("pgan", backbone="resnet50", num_classes=576)
    pgan.list_backbones()

Importing the package has no side effects: nothing is registered, downloaded or
initialised until a function is called.

Public API: :func:`load_model` and :class:`FeatureExtractor` (:mod:`pgan.inference`),
:func:`create_model` and :func:`list_backbones` (:mod:`pgan.models.factory`), and
:class:`GalleryIndex` (:mod:`pgan.index`). Each is imported on first access (module
``__getattr__``, PEP 562): ``import pgan`` costs nothing (the ``pgan`` command's ``--help`` needs no
torch), and ``GalleryIndex`` needs faiss, a heavy optional dependency (the ``search`` extra).
"""

import importlib

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


# public name -> the module that defines it (imported on first access)
_LAZY = {"FeatureExtractor": "pgan.inference", "load_model": "pgan.inference",
         "create_model": "pgan.models.factory",
         "list_backbones": "pgan.models.factory", "GalleryIndex": "pgan.index"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later accesses skip this function
        return value
    raise AttributeError(f"module 'pgan' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
