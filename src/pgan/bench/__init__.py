"""Benchmark harnesses behind ``pgan bench``: the runtime table (``runtime``) and the ablation grids
(``ablation``). They sit above the library (engine, models, parts, detection, viz) and nothing in the
library imports them."""
