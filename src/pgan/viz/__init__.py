"""Figures and reports: rank lists, part boxes, attention maps and statistics. Headless only."""
