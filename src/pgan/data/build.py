"""From a :class:`pgan.config.Config` to the dataset it names (the ``data`` section)."""

from __future__ import annotations

from pgan.config import Config
from pgan.data.datasets import read_dataset
from pgan.data.records import ReidDataset
from pgan.errors import PganError

__all__ = ["read_configured_dataset"]


def read_configured_dataset(cfg: Config) -> ReidDataset:
    """The dataset of ``cfg.data``, with its test subset (VehicleID size, VERI-Wild size) if set."""
    kwargs: dict = {}
    subset = cfg.data.test_subset
    if subset is not None:
        if cfg.data.dataset == "vehicleid":
            if subset not in ("800", "1600", "2400"):
                raise PganError(f"data.test_subset for vehicleid must be 800, 1600 or 2400, got {subset!r}")
            kwargs["test_size"] = int(subset)
        elif cfg.data.dataset == "veriwild":
            kwargs["size"] = subset
        else:
            raise PganError(f"data.test_subset applies to vehicleid and veriwild, not {cfg.data.dataset!r}")
    return read_dataset(cfg.data.dataset, cfg.data.root, **kwargs)
