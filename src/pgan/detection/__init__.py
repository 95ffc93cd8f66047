"""The part detector, a project of its own: training data (VOC / COCO), the Faster R-CNN model and its
backbone (built here from torchvision, independent of the re-ID network), training, box AP, extraction
of part-box files over a dataset, and conversion of external detectors' outputs.

Arrows: ``detection`` imports ``pgan.parts`` (the part-box format, top-D selection, the extraction
loop) and ``pgan.data`` readers; nothing in ``parts`` or ``models`` imports ``detection``.
"""
