"""pgan: Part-Guided Attention Network toolkit for vehicle re-identification.

The public Python API (timm-style)::

    import pgan
    model = pgan.create_model("pgan", backbone="resnet50", num_classes=576)
    pgan.list_backbones()

Importing the package has no side effects: nothing is registered, downloaded or
initialised until a function is called.
"""

from pgan.models.factory import create_model, list_backbones

__version__ = "0.1.0"

# One name per line, so branches that add names merge cleanly.
__all__ = [
    "__version__",
    "create_model",
    "list_backbones",
]
