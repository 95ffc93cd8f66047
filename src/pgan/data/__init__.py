"""Datasets: one reader per official layout (``datasets``), records and splits, the torch image
dataset with its joint image+mask transforms, the identity-balanced sampler, and ``build`` (config ->
dataset).

Arrows: ``data`` imports nothing from ``parts``. The image dataset takes part masks through the
small :class:`pgan.data.image_dataset.MaskSource` protocol, which ``pgan.parts.sources.PartSource``
extends; ``parts`` reads whole datasets (box extraction, discovery) through ``data.datasets``.
"""
