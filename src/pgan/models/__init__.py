"""Backbones, the Part Attention Module, Refine blocks and the re-ID network variants; the network
built from a config (:mod:`pgan.models.build`) and read back from a training checkpoint
(:mod:`pgan.models.trained`: ``load_checkpoint``, ``load_trained``).

Arrows: ``models`` imports nothing from ``data``, ``parts``, ``engine``, ``detection``, ``synth`` or
``bench``; the training code and inference both build on it.
"""
