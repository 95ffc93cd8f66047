"""Backbones, the Part Attention Module, Refine blocks and the re-ID network variants."""
