"""Part regions: the part-box file format, top-D selection, boxes -> feature-map masks, the part
sources a dataset draws its masks from, and the dataset-wide extraction loop.

Arrows: ``parts`` imports ``pgan.data`` (readers, records, and the ``MaskSource`` protocol its part
sources satisfy), never the other way; nothing here imports ``models``, ``detection`` or ``engine``.
"""

__all__ = ["PART_CLASSES"]

PART_CLASSES: tuple[str, ...] = (
    "anusigns", "backmirror", "carlight", "carrier", "cartopwindow", "entrylicense",
    "hungs", "layon", "lightcover", "logo", "newersign", "tissuebox", "plate",
    "safebelt", "wheel", "windglass",
)
"""The 16 vehicle part classes of the paper's Table I (the default detector label set)."""
