"""Results as a markdown table and as JSON written atomically.

Example::

    >>> print(markdown_table({"veri776": {"mAP": 0.793, "rank1": 0.965}}, metrics=("mAP", "rank1")))
    | run | mAP | rank1 |
    |---|---:|---:|
    | veri776 | 79.30 | 96.50 |
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from pgan.utils.atomic import atomic_write_json

DEFAULT_METRICS = ("mAP", "mINP", "rank1", "rank5", "rank10")


def _as_rows(results: Any) -> dict[str, Mapping[str, Any]]:
    if hasattr(results, "to_dict"):
        results = results.to_dict()
    if all(isinstance(v, Mapping) or hasattr(v, "to_dict") for v in results.values()) and results:
        return {str(k): (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in results.items()}
    return {str(results.get("dataset", "result")): results}


def _cell(value: Any, percent: bool) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{100 * value:.2f}" if percent else f"{value:.4f}"
    return str(value)


def markdown_table(results: Any, metrics: Sequence[str] = DEFAULT_METRICS, percent: bool = True,
                   with_std: bool = True) -> str:
    """A markdown table, one row per run.

    ``results``: a metrics dict (one row), a dict of such dicts keyed by run name,
    or objects with ``to_dict()`` (:class:`RankResult`, :class:`ProtocolResult`).
    Fractions are shown as percentages when ``percent``; a ``<metric>_std`` entry
    is shown as ``mean ± std`` when ``with_std``.
    """
    rows = _as_rows(results)
    lines = ["| run | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for name, row in rows.items():
        cells = []
        for m in metrics:
            cell = _cell(row.get(m, float("nan")), percent)
            if with_std and f"{m}_std" in row:
                cell += " ± " + _cell(row[f"{m}_std"], percent)
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results_json(path: str | os.PathLike, results: Any) -> None:
    """Write ``results`` (dicts, or objects with ``to_dict()``) as JSON, atomically."""
    atomic_write_json(path, _jsonable(results))


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return _jsonable(obj.to_dict())
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    return obj
