"""Figures: rank lists (and, later, part boxes and attention maps). Headless: PIL only."""
