"""Part regions: the part-box file format, top-D selection and boxes -> feature-map masks."""

PART_CLASSES: tuple[str, ...] = (
    "anusigns", "backmirror", "carlight", "carrier", "cartopwindow", "entrylicense",
    "hungs", "layon", "lightcover", "logo", "newersign", "tissuebox", "plate",
    "safebelt", "wheel", "windglass",
)
"""The 16 vehicle part classes of the paper's Table I (the default detector label set)."""
