"""Dataset readers by name.

``DATASETS`` maps a name to a reader ``(root) -> ReidDataset``. Readers follow
the official on-disk layouts, validate what they read, and raise
:class:`pgan.errors.PganError` naming the first offending file or line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pgan.data.datasets.custom_csv import read_custom_csv
from pgan.data.datasets.vehicleid import read_vehicleid
from pgan.data.datasets.veri776 import read_veri776
from pgan.data.datasets.veriwild import read_veriwild
from pgan.data.datasets.vric import read_vric
from pgan.data.records import ReidDataset
from pgan.errors import unknown_name

__all__ = ["DATASETS", "DatasetReader", "read_dataset"]

DatasetReader = Callable[..., ReidDataset]

DATASETS: dict[str, DatasetReader] = {
    "veri776": read_veri776,
    # The synthetic benchmark writes the VeRi-776 layout, so it shares the reader.
    "synth": read_veri776,
    "vehicleid": read_vehicleid,
    "vric": read_vric,
    "veriwild": read_veriwild,
    "custom": read_custom_csv,
}


def read_dataset(name: str, root: str | Path, **kwargs) -> ReidDataset:
    """Read a dataset by registry name, e.g. ``read_dataset("veri776", "data/VeRi")``."""
    if name not in DATASETS:
        raise unknown_name("dataset", name, list(DATASETS))
    ds = DATASETS[name](Path(root), **kwargs)
    ds.name = name
    return ds
